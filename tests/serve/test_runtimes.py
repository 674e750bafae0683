"""The runtime seam: SERVE_RUNTIME=onnxruntime|openvino and SERVE_PRECISION=auto|fp32|bf16.

OpenVINO fp32 must answer as the official pipeline does on onnxruntime (boxes within 1 px,
scores within 1e-3), bf16 must agree with fp32 where the CPU has it, /ping and the ready line say
what runs, and a choice that cannot work is refused before the server listens.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort
import pytest

from demo.evaluate import Tally, iou, match
from demo.shapes import make_image
from serve.config import ConfigError, Settings
from serve.runtimes import RUNTIMES
from serve.runtimes.precision import choose, cpu_flags
from tests.serve.test_serve_lifecycle import assert_fails_fast_with_one_line
from tests.support.cpuinfo import graviton_cpuinfo
from tests.support.images import encode, shapes_image
from tests.support.reference import (
    assert_same_detections,
    reference_detect,
    reference_detect_end2end,
)
from tests.support.server import REPO, SAMPLES, ServerProcess

IMG_SIZE = 320
PICTURES = [
    ("bus", (SAMPLES / "bus.jpg").read_bytes()),
    ("zidane", (SAMPLES / "zidane.jpg").read_bytes()),
    *[
        (f"shapes-{w}x{h}", encode(shapes_image(w, h, seed), ".png"))
        for w, h, seed in [(320, 320, 0), (640, 480, 1), (333, 517, 2), (1000, 200, 3)]
    ],
]
PICTURE_IDS = [name for name, _ in PICTURES]


def _cpu_has_bf16() -> bool:
    """Read independently of serve: the flags line of /proc/cpuinfo."""
    text = Path("/proc/cpuinfo").read_text()
    flags = next(
        (line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")),
        [],
    )
    return "avx512_bf16" in flags or "amx_bf16" in flags


CPU_BF16 = _cpu_has_bf16()


def bgr(data: bytes) -> np.ndarray:
    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)


def served(server: ServerProcess, data: bytes) -> list[dict]:
    resp = server.invoke(data, "application/octet-stream")
    assert resp.status == 200, resp.body[:300]
    return resp.json()["detections"]


def ready_line(server: ServerProcess) -> dict:
    return next(r for r in server.log_records() if r["message"] == "ready")


def _server(tmp_path_factory, model: Path, **env: str):
    env = {"MODEL_PATH": str(model), **env}
    srv = ServerProcess(tmp_path_factory.mktemp("runtime-server"), env)
    try:
        yield srv.wait_ready()
    finally:
        srv.close()


@pytest.fixture(scope="module")
def openvino_fp32(tmp_path_factory, exported):
    yield from _server(
        tmp_path_factory, exported["raw"], SERVE_RUNTIME="openvino", SERVE_PRECISION="fp32"
    )


@pytest.fixture(scope="module")
def openvino_end2end(tmp_path_factory, exported):
    yield from _server(
        tmp_path_factory, exported["end2end"], SERVE_RUNTIME="openvino", SERVE_PRECISION="fp32"
    )


@pytest.fixture(scope="module")
def openvino_auto(tmp_path_factory, exported):
    yield from _server(tmp_path_factory, exported["raw"], SERVE_RUNTIME="openvino")


# --- OpenVINO fp32 answers as the official pipeline on onnxruntime ----------------------------


@pytest.mark.parametrize(("name", "data"), PICTURES, ids=PICTURE_IDS)
def test_openvino_fp32_answers_equal_the_official_pipeline_on_onnxruntime(
    openvino_fp32, exported, name, data
):
    reference = ort.InferenceSession(str(exported["raw"]), providers=["CPUExecutionProvider"])
    expected = reference_detect(reference, bgr(data), IMG_SIZE)
    assert_same_detections(served(openvino_fp32, data), expected)


def test_openvino_fp32_runs_the_end2end_layout_as_onnxruntime(openvino_end2end, exported):
    reference = ort.InferenceSession(str(exported["end2end"]), providers=["CPUExecutionProvider"])
    for _, data in PICTURES:
        expected = reference_detect_end2end(reference, bgr(data), IMG_SIZE)
        assert_same_detections(served(openvino_end2end, data), expected)


def test_ping_and_ready_line_say_openvino_fp32(openvino_fp32):
    ping = openvino_fp32.request("GET", "/ping").json()
    assert ping == {
        "status": "ok",
        "model": "shapes-yolov7-tiny",
        "runtime": "openvino",
        "precision": "fp32",
        "float_precision": "fp32",
    }
    ready = ready_line(openvino_fp32)
    assert (ready["runtime"], ready["precision"], ready["precision_why"]) == (
        "openvino",
        "fp32",
        "asked",
    )


# --- auto: bf16 where the CPU has it, and it agrees with fp32 ---------------------------------


def test_auto_precision_is_bf16_exactly_where_the_cpu_has_it(openvino_auto):
    expected = "bf16" if CPU_BF16 else "fp32"
    assert openvino_auto.request("GET", "/ping").json()["precision"] == expected
    ready = ready_line(openvino_auto)
    assert ready["precision"] == expected and ready["precision_why"].startswith("auto: ")
    if not CPU_BF16:
        assert "no bf16" in ready["precision_why"]


@pytest.mark.skipif(not CPU_BF16, reason="the CPU has no bf16: auto is fp32 (tested above)")
def test_bf16_detections_agree_with_fp32_on_generated_shapes(openvino_auto, openvino_fp32):
    rng = np.random.default_rng(7)
    agreed = total = 0
    tallies = {"fp32": Tally(), "bf16": Tally()}
    for _ in range(40):
        image, shapes = make_image(rng)
        truth = [{"box": s.box, "class_id": s.class_id} for s in shapes]
        data = encode(image, ".png")
        fp32, bf16 = served(openvino_fp32, data), served(openvino_auto, data)
        tallies["fp32"].add(match(fp32, truth))
        tallies["bf16"].add(match(bf16, truth))
        total += max(len(fp32), len(bf16))
        free = list(bf16)
        for det in fp32:
            same = [
                d
                for d in free
                if d["class_id"] == det["class_id"] and iou(d["box"], det["box"]) > 0.8
            ]
            if same:
                free.remove(max(same, key=lambda d: iou(d["box"], det["box"])))
                agreed += 1
    assert total > 60, "the shapes model finds the drawn shapes"
    assert agreed / total >= 0.97, f"bf16 agrees on {agreed}/{total}"
    for figure in ("precision", "recall"):
        fp32, bf16 = getattr(tallies["fp32"], figure), getattr(tallies["bf16"], figure)
        assert abs(bf16 - fp32) <= 0.01, (figure, fp32, bf16)


def test_sigterm_while_openvino_compiles_in_the_background_exits_0(start_server, int8_export):
    """An INT8 export's INT8 graph compiles after the warm-up, so it runs right after the server
    is ready (0.3-1.2 s): a SIGTERM then must wait for it and exit 0, not abort (which an exit
    under a compile did about one time in five: three starts)."""
    env = {
        "MODEL_PATH": str(int8_export["int8"]),
        "SERVE_RUNTIME": "openvino",
        "ORT_INTRA_OP_THREADS": "2",  # two threads and two slots: there is a narrow layout
        "SERVE_INFERENCE_SLOTS": "2",
    }
    waited = 0
    for _ in range(3):
        server = start_server(env)
        assert server.terminate() == 0, server.stderr_text()
        assert "terminate called" not in server.stderr_text()
        messages = [r["message"] for r in server.log_records()]
        assert "stopped" in messages and "int8 ready" in messages
        waited += messages.index("stopped") < messages.index("int8 ready")
    assert waited, "every compile ended before the SIGTERM: the waiting path did not run"


# --- the default stays onnxruntime ------------------------------------------------------------


def test_default_runtime_is_onnxruntime_fp32_and_says_so(server):
    ping = server.request("GET", "/ping").json()
    assert (ping["runtime"], ping["precision"]) == ("onnxruntime", "fp32")
    ready = ready_line(server)
    assert (ready["runtime"], ready["precision"]) == ("onnxruntime", "fp32")
    why = "onnxruntime's CPU provider has no bf16" if CPU_BF16 else "no bf16 instructions"
    assert why in ready["precision_why"]


# --- choices that cannot work: one line, exit 2, before listening -----------------------------


@pytest.mark.parametrize(
    ("env", "words"),
    [
        ({"SERVE_RUNTIME": "tensorflow"}, ["SERVE_RUNTIME", "onnxruntime, openvino"]),
        ({"SERVE_PRECISION": "fp8"}, ["SERVE_PRECISION", "auto, fp32, bf16"]),
        ({"SERVE_PRECISION": "bf16"}, ["SERVE_PRECISION=bf16", "onnxruntime"]),
    ],
)
def test_a_choice_that_cannot_work_is_refused_with_one_line(
    start_server, head_model_path, env, words
):
    server = start_server({"MODEL_PATH": str(head_model_path), **env}, wait=False)
    assert_fails_fast_with_one_line(server, *words)
    assert server.proc.returncode == 2


def _without(package: str, folder: Path) -> str:
    """A PYTHONPATH under which `package` is not installed: sys.modules[name] = None is how Python
    spells it (import raises ImportError, importlib.util.find_spec answers None)."""
    folder.mkdir()
    (folder / "sitecustomize.py").write_text(f"import sys\nsys.modules[{package!r}] = None\n")
    return f"{folder}:{REPO}"


def test_openvino_not_installed_is_refused_naming_what_to_install(
    start_server, head_model_path, tmp_path
):
    env = {
        "MODEL_PATH": str(head_model_path),
        "SERVE_RUNTIME": "openvino",
        "PYTHONPATH": _without("openvino", tmp_path / "hide"),
    }
    server = start_server(env, wait=False)
    assert_fails_fast_with_one_line(server, "SERVE_RUNTIME=openvino", "requirements-openvino.txt")
    assert server.proc.returncode == 2


def test_openvino_serves_without_onnxruntime_installed(start_server, head_model_path, tmp_path):
    """What an image built for OpenVINO alone relies on."""
    env = {
        "MODEL_PATH": str(head_model_path),
        "SERVE_RUNTIME": "openvino",
        "SERVE_PRECISION": "fp32",
        "PYTHONPATH": _without("onnxruntime", tmp_path / "hide"),
    }
    server = start_server(env)
    assert server.request("GET", "/ping").json()["runtime"] == "openvino"
    resp = server.invoke((SAMPLES / "bus.jpg").read_bytes())
    assert resp.status == 200 and resp.json()["detections"]


@pytest.mark.skipif(CPU_BF16, reason="the CPU has bf16")
def test_bf16_without_bf16_instructions_is_refused(start_server, head_model_path):
    env = {
        "MODEL_PATH": str(head_model_path),
        "SERVE_RUNTIME": "openvino",
        "SERVE_PRECISION": "bf16",
    }
    server = start_server(env, wait=False)
    assert_fails_fast_with_one_line(server, "SERVE_PRECISION=bf16", "no bf16 instructions")


# --- the choice itself ------------------------------------------------------------------------

AVX512_BF16 = frozenset({"avx512f", "avx512_vnni", "avx512_bf16"})
AMX = frozenset({"avx512f", "amx_tile", "amx_bf16", "amx_int8"})
VNNI_ONLY = frozenset({"avx512f", "avx512_vnni"})


@pytest.mark.parametrize(
    ("runtime", "asked", "flags", "precision"),
    [
        ("openvino", "auto", AVX512_BF16, "bf16"),
        ("openvino", "auto", AMX, "bf16"),
        ("openvino", "auto", VNNI_ONLY, "fp32"),
        ("openvino", "fp32", AMX, "fp32"),
        ("openvino", "bf16", AVX512_BF16, "bf16"),
        ("onnxruntime", "auto", AMX, "fp32"),
        ("onnxruntime", "auto", VNNI_ONLY, "fp32"),
        ("onnxruntime", "fp32", AMX, "fp32"),
    ],
)
def test_precision_follows_the_cpu_and_the_runtime(runtime, asked, flags, precision):
    assert choose(runtime, asked, flags).precision == precision


@pytest.mark.parametrize(
    ("runtime", "flags", "words"),
    [
        ("onnxruntime", AMX, "no bf16 path"),
        ("openvino", VNNI_ONLY, "no bf16 instructions"),
    ],
)
def test_bf16_that_cannot_run_is_a_config_error(runtime, flags, words):
    with pytest.raises(ConfigError, match=words):
        choose(runtime, "bf16", flags)


def test_cpu_flags_are_read_from_cpuinfo(tmp_path):
    x86 = tmp_path / "x86"
    x86.write_text("processor\t: 0\nflags\t\t: fpu avx512f avx512_bf16\n\nprocessor\t: 1\n")
    assert cpu_flags(x86) == {"fpu", "avx512f", "avx512_bf16"}
    arm = tmp_path / "arm"
    arm.write_text("processor\t: 0\nFeatures\t: fp asimd bf16\n")
    assert cpu_flags(arm) == {"fp", "asimd", "bf16"}
    assert cpu_flags(tmp_path / "absent") == frozenset()
    assert cpu_flags() == cpu_flags("/proc/cpuinfo")


@pytest.mark.parametrize(
    ("generation", "runtime", "asked", "precision", "why"),
    [
        (3, "onnxruntime", "auto", "bf16", "arm64 CPU has bf16"),
        (2, "onnxruntime", "auto", "fp32", "no bf16 instructions"),
        (3, "onnxruntime", "bf16", "bf16", "asked"),
        (3, "onnxruntime", "fp32", "fp32", "asked"),
        (3, "openvino", "auto", "fp32", "not enabled on arm64"),
        (2, "openvino", "auto", "fp32", "no bf16 instructions"),
    ],
)
def test_graviton_cpuinfo_decides_arm64_bf16_fastmath(
    tmp_path, generation, runtime, asked, precision, why
):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(graviton_cpuinfo(generation, vcpus=4))
    choice = choose(runtime, asked, cpu_flags(cpuinfo))
    assert (choice.precision, why in choice.why) == (precision, True), choice


@pytest.mark.parametrize(
    ("generation", "runtime", "words"),
    [(2, "onnxruntime", "Graviton3 or later"), (3, "openvino", "not enabled on arm64")],
)
def test_bf16_asked_on_graviton_without_a_path_is_a_config_error(
    tmp_path, generation, runtime, words
):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(graviton_cpuinfo(generation))
    with pytest.raises(ConfigError, match=words):
        choose(runtime, "bf16", cpu_flags(cpuinfo))


def test_onnxruntime_bf16_is_refused_on_x86_and_loads_fastmath_on_arm64(exported, monkeypatch):
    """The session config key exists in this onnxruntime (an unknown key would load silently, so
    the load on an aarch64-named machine proves only that the path runs; /ping under emulation is
    checked by tests/container/test_image_arm64.py)."""
    from serve.errors import ModelError
    from serve.runtimes import BF16, Threads
    from serve.runtimes import onnxruntime as ort_runtime

    threads = Threads(intra_op=2, inter_op=1)
    monkeypatch.setattr(ort_runtime.platform, "machine", lambda: "x86_64")
    with pytest.raises(ModelError, match="no bf16 path on x86"):
        ort_runtime.load(exported["raw"], threads, BF16, 1)
    monkeypatch.setattr(ort_runtime.platform, "machine", lambda: "aarch64")
    loaded = ort_runtime.load(exported["raw"], threads, BF16, 2)
    assert loaded.precision == BF16


def test_settings_read_runtime_and_precision():
    assert (Settings.from_env({}).runtime, Settings.from_env({}).precision) == (
        "onnxruntime",
        "auto",
    )
    settings = Settings.from_env({"SERVE_RUNTIME": "OpenVINO", "SERVE_PRECISION": " BF16 "})
    assert (settings.runtime, settings.precision) == ("openvino", "bf16")
    assert set(RUNTIMES) == {"onnxruntime", "openvino"}


def test_both_runtimes_read_the_same_onnx_metadata(exported):
    from serve.runtimes import Threads, import_runtime

    loaded = {
        name: import_runtime(name).load(exported["raw"], Threads(1, 1), "fp32", 1)
        for name in RUNTIMES
    }
    onnx_meta, openvino_meta = loaded["onnxruntime"].metadata, loaded["openvino"].metadata
    assert onnx_meta == openvino_meta and json.loads(onnx_meta["names"]) == [
        "circle",
        "square",
        "triangle",
    ]
    assert loaded["onnxruntime"].inputs == loaded["openvino"].inputs
    assert loaded["onnxruntime"].outputs == loaded["openvino"].outputs
