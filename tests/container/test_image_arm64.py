"""The arm64 image (issue 25): built for linux/arm64 on an arm64 debootstrap base, run under qemu,
answering as the amd64 server does on the same model, pushed as an arm64 Docker v2s2 manifest.

Both runtimes' images: onnxruntime's (the default) and OpenVINO's (`RUNTIME=openvino`, whose
aarch64 wheel is manylinux_2_35: bookworm's glibc 2.36 takes it).

Slow (the build and every start run under emulation): marked arm64, so only `make test-arm64`
runs it. It needs qemu-user-static registered with binfmt_misc (docs/container.md, "arm64").
Two emulation-only workarounds, neither needed on a real Graviton: an ARM /proc/cpuinfo
bind-mounted over the x86 one qemu-user shows (onnxruntime's aarch64 build crashes reading the
x86 one), and OPENBLAS_NUM_THREADS=1 (numpy's OpenBLAS threads hang under qemu).
"""

from __future__ import annotations

import json
import subprocess
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from container.engine import REPO, Container, Engine, running
from serve.runtimes import RUNTIMES
from tests.container.conftest import make_image
from tests.container.test_registry import Registry, push_and_read_back
from tests.support.containers import SAMPLES, detect, unavailable
from tests.support.cpuinfo import write_graviton_cpuinfo

pytestmark = pytest.mark.arm64

ARM64_BASE = "localhost/yolov7-test-base:bookworm-arm64"
QEMU_AARCH64 = Path("/proc/sys/fs/binfmt_misc/qemu-aarch64")
BOX_PX, SCORE = 1.0, 1e-3  # the tolerances against the amd64 server
READY_S = 300  # a start under qemu: about 10 s here alone, far more on a shared machine


def build_arm64(engine: Engine, baked: Path, runtime: str) -> str:
    """`make image PLATFORM=linux/arm64 RUNTIME=runtime` on the arm64 base (made when missing)."""
    if engine.name != "podman":
        unavailable("the arm64 test base is made for podman (debootstrap + podman import)")
    if not QEMU_AARCH64.exists() or "enabled" not in QEMU_AARCH64.read_text():
        unavailable("qemu-aarch64 is not registered with binfmt_misc (qemu-user-static)")
    script = REPO / "container" / "make_test_base.sh"
    done = subprocess.run(
        ["bash", str(script), ARM64_BASE, "arm64"], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return make_image(engine, baked, runtime=runtime, platform="linux/arm64", base=ARM64_BASE)


@pytest.fixture(scope="module")
def arm64_image(engine: Engine, models: dict[str, Path]) -> Iterator[str]:
    tag = build_arm64(engine, models["baked"], "onnxruntime")
    try:
        yield tag
    finally:
        engine.remove_image(tag)


@pytest.fixture(scope="module")
def openvino_arm64_image(engine: Engine, models: dict[str, Path]) -> Iterator[str]:
    tag = build_arm64(engine, models["baked"], "openvino")
    try:
        yield tag
    finally:
        engine.remove_image(tag)


# The Graviton's core for qemu-user (QEMU_CPU, read by the interpreter in the container): qemu 10
# answers /proc/cpuinfo itself from the CPU it emulates (its default, max, has bf16), so that is
# what makes the server see a Graviton2 (no bf16) or a Graviton3 (bf16).
QEMU_CPUS = {2: "neoverse-n1", 3: "neoverse-v1"}


def emulated(tmp_path: Path, generation: int) -> tuple[dict[str, str], tuple[str, ...]]:
    """A Graviton of this generation under qemu; the cpuinfo bind-mount is for qemu builds that
    pass the host's x86 /proc/cpuinfo through (containers-here.md saw onnxruntime crash on it)."""
    cpuinfo = write_graviton_cpuinfo(tmp_path, generation)
    env = {"OPENBLAS_NUM_THREADS": "1", "QEMU_CPU": QEMU_CPUS[generation]}
    return env, ("--volume", f"{cpuinfo}:/proc/cpuinfo:ro")


def detect_ping(url: str) -> dict:
    with urllib.request.urlopen(f"{url}/ping", timeout=30) as answer:
        return json.loads(answer.read())


@contextmanager
def graviton_server(
    engine: Engine, image: str, port: int, tmp_path: Path, generation: int, serves: tuple[str, str]
) -> Iterator[Container]:
    """The image's server on an emulated Graviton of this generation, its /ping checked to say
    `serves` (runtime, precision)."""
    env, options = emulated(tmp_path, generation=generation)
    with running(engine, image, port, env=env, options=options, timeout=READY_S) as container:
        ping = detect_ping(container.url)
        assert (ping["runtime"], ping["precision"]) == serves, ping
        yield container


def assert_answers_as_amd64(url: str, expected: dict) -> None:
    """Every sample within fp32's bounds of the amd64 server's answer on the baked model."""
    for sample in SAMPLES:
        assert_close(detect(url, sample), expected["baked"][sample.name], sample.name)
    assert expected["baked"]["shapes-00.png"]["detections"], "nothing found proves nothing"


def assert_close(got: dict, want: dict, name: str) -> None:
    assert got["model"] == want["model"], name
    found, expected = got["detections"], want["detections"]
    assert len(found) == len(expected), (name, len(found), len(expected))
    for a, b in zip(found, expected, strict=True):
        assert a["class_id"] == b["class_id"], (name, a, b)
        assert abs(a["score"] - b["score"]) <= SCORE, (name, a, b)
        assert max(abs(x - y) for x, y in zip(a["box"], b["box"], strict=True)) <= BOX_PX, (a, b)


def test_arm64_image_config_says_arm64(engine: Engine, arm64_image: str):
    assert engine("image", "inspect", "--format", "{{.Architecture}}", arm64_image).strip() == (
        "arm64"
    )
    machine = engine(
        "run", "--rm", *engine.limits, "--entrypoint", "uname", arm64_image, "-m", timeout=120
    )
    assert machine.strip() == "aarch64"


def test_arm64_image_on_graviton2_answers_as_the_amd64_server_in_fp32(
    engine: Engine, arm64_image: str, expected: dict, port_8080: int, tmp_path: Path
):
    serves = ("onnxruntime", "fp32")
    with graviton_server(engine, arm64_image, port_8080, tmp_path, 2, serves) as container:
        assert_answers_as_amd64(container.url, expected)
        print(f"arm64 under qemu: ready after {container.ready_after:.1f} s")


def test_arm64_image_on_graviton3_turns_on_bf16_fastmath_and_says_so(
    engine: Engine, arm64_image: str, expected: dict, port_8080: int, tmp_path: Path
):
    serves = ("onnxruntime", "bf16")
    with graviton_server(engine, arm64_image, port_8080, tmp_path, 3, serves) as container:
        got = detect(container.url, SAMPLES[1])
        # bf16 GEMMs move scores by more than fp32's 1e-3: same objects, not the same numbers.
        want = expected["baked"][SAMPLES[1].name]["detections"]
        assert got["detections"] and abs(len(got["detections"]) - len(want)) <= 1, got


def test_arm64_push_stores_an_arm64_docker_v2s2_manifest(
    engine: Engine, arm64_image: str, trusting_registry: Registry
):
    _, config = push_and_read_back(engine, arm64_image, trusting_registry)
    assert (config["os"], config["architecture"]) == ("linux", "arm64")


def ready_record(logs: str) -> dict:
    records = [json.loads(line) for line in logs.splitlines() if line[:1] == "{"]
    return next(r for r in records if r["message"] == "ready")


def test_openvino_arm64_image_is_arm64_with_the_aarch64_cpu_plugin(
    engine: Engine, openvino_arm64_image: str, tmp_path: Path
):
    env, options = emulated(tmp_path, generation=3)
    # The plugin's own default on aarch64 is f16 (measured: INFERENCE_PRECISION_HINT), which is
    # why the server always passes its hint (f32 unless bf16 is chosen) and never the default.
    probe = (
        "import platform, openvino as ov; c = ov.Core(); "
        "print(platform.machine(), *c.available_devices, c.get_property('CPU', "
        "'INFERENCE_PRECISION_HINT').to_string())"
    )
    envs = [arg for key, value in env.items() for arg in ("--env", f"{key}={value}")]
    out = engine(
        "run", "--rm", *engine.limits, *envs, *options, "--entrypoint", "python",
        openvino_arm64_image, "-c", probe, timeout=300,
    )  # fmt: skip
    assert out.split()[-3:] == ["aarch64", "CPU", "f16"], out
    assert engine(
        "image", "inspect", "--format", "{{.Architecture}}", openvino_arm64_image
    ).strip() == ("arm64")


# Why SERVE_PRECISION=auto picks fp32 for OpenVINO on each Graviton: on Graviton3, a CPU with
# bf16, because its bf16 hint is not enabled on arm64 here.
OPENVINO_FP32_WHY = {
    2: "auto: the CPU has no bf16 instructions",
    3: f"auto: {RUNTIMES['openvino'].arm_fp32_why}",
}


@pytest.mark.parametrize("generation", [2, 3])
def test_openvino_arm64_image_stays_fp32_and_answers_as_the_amd64_server(
    engine: Engine,
    openvino_arm64_image: str,
    expected: dict,
    port_8080: int,
    tmp_path: Path,
    generation: int,
):
    """SERVE_PRECISION=auto: OpenVINO picks fp32 on both Gravitons, so the answers are held to
    fp32's bounds without forcing anything."""
    image, serves = openvino_arm64_image, ("openvino", "fp32")
    with graviton_server(engine, image, port_8080, tmp_path, generation, serves) as container:
        ready = ready_record(container.logs())
        assert ready["precision_why"] == OPENVINO_FP32_WHY[generation], ready
        assert_answers_as_amd64(container.url, expected)
        print(f"OpenVINO arm64, Graviton{generation}: ready after {container.ready_after:.1f} s")
