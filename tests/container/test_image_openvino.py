"""`make image RUNTIME=openvino`: the image runs OpenVINO, holds neither onnxruntime nor what
OpenVINO serves no model with, and answers like the onnxruntime server."""

from __future__ import annotations

import json

from container.engine import Engine, running
from tests.support.containers import SAMPLES, detect
from tests.support.server import ping, wait_until_settled


def test_openvino_image_holds_only_its_runtime(engine: Engine, openvino_image: str):
    probe = (
        "import importlib.util as u, pathlib, openvino; "
        "print(*[m for m in ('torch', 'boto3', 'pip', 'cv2', 'simplejpeg', 'onnxruntime',"
        " 'openvino', 'onnx')"
        " if u.find_spec(m)]); "
        "libs = pathlib.Path(openvino.__file__).parent / 'libs'; "
        "print(*sorted(p.name for p in libs.glob('libopenvino_*plugin.so')))"
    )
    out = engine(
        "run", "--rm", *engine.limits, "--entrypoint", "python", openvino_image, "-c", probe
    ).splitlines()
    assert out[0].split() == ["cv2", "simplejpeg", "openvino"]
    assert out[1].split() == ["libopenvino_intel_cpu_plugin.so"]  # no GPU/NPU/AUTO plugins


def test_openvino_image_answers_like_the_onnxruntime_server(
    engine: Engine, openvino_image: str, expected: dict, port_8080: int
):
    # fp32, so that the answers can be held to the exactness bounds; bf16's agreement is
    # tests/serve/test_runtimes.py's.
    env = {"SERVE_PRECISION": "fp32"}
    with running(engine, openvino_image, port_8080, env=env) as container:
        assert ping(container.url)["runtime"] == "openvino"
        assert ping(container.url)["precision"] == "fp32"
        for sample in SAMPLES:
            got = detect(container.url, sample)["detections"]
            want = expected["baked"][sample.name]["detections"]
            assert [d["class_id"] for d in got] == [d["class_id"] for d in want], sample.name
            for g, w in zip(got, want, strict=True):
                assert max(abs(a - b) for a, b in zip(g["box"], w["box"], strict=True)) <= 1.0
                assert abs(g["score"] - w["score"]) <= 1e-3
        code, _ = container.stop_with_sigterm()
        assert code == 0, container.logs()


def test_openvino_image_starts_an_int8_export_on_its_float_view(
    engine: Engine, openvino_image: str, int8_export: dict, port_8080: int, tmp_path
):
    """The trimmed OpenVINO install builds the view and hands over to the INT8 graph."""
    mounted = tmp_path / "opt-ml-model"
    mounted.mkdir()
    (mounted / "model.onnx").write_bytes(int8_export["int8"].read_bytes())
    mounted.chmod(0o755)
    (mounted / "model.onnx").chmod(0o644)
    options = ("--volume", f"{mounted}:/opt/ml/model:ro")
    with running(engine, openvino_image, port_8080, options=options) as container:
        wait_until_settled(container.url, 60)
        answer = ping(container.url)
        assert (answer["runtime"], answer["precision"]) == ("openvino", "int8")
        records = [json.loads(line) for line in container.logs().splitlines() if line[:1] == "{"]
        ready = next(r for r in records if r["message"] == "ready")
        assert ready["compiling"] == "int8" and ready["precision"] == ready["float_precision"]
        assert "int8 ready" in [r["message"] for r in records]
        assert detect(container.url, SAMPLES[0])["detections"] is not None
        code, _ = container.stop_with_sigterm()
        assert code == 0, container.logs()
