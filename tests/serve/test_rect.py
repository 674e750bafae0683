"""`python -m export --rect`: an export whose height and width are symbolic, served on each photo's
smallest rectangle of multiples of the largest stride, as the official detect.py letterboxes
(`auto=True`): a 16:9 photo at 640 runs at 640 x 384, 60 % of the square's pixels.

The server's answers equal detect.py's pipeline (tests/support/reference.py with a stride, written
independently of serve/letterbox.py) on onnxruntime and on OpenVINO, for both layouts; an INT8
`--rect` export passes the export's gate and finds what the FP32 one finds.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from demo.shapes import write_samples
from serve.errors import ModelError
from serve.letterbox import letterbox, letterboxed_shape
from serve.model_info import Port, read_model_info
from tests.serve.test_serve_exactness import PICTURE_IDS, PICTURES, bgr, served
from tests.support.reference import (
    assert_same_detections,
    reference_detect,
    reference_detect_end2end,
    reference_letterbox,
)
from tests.support.server import REPO, ServerProcess

IMG_SIZE, STRIDE = 320, 32


def _export(checkpoint: Path, output: Path, *extra: str) -> Path:
    command = [
        sys.executable, "-m", "export", "--weights", str(checkpoint), "--img-size", str(IMG_SIZE),
        "--rect", "--output", str(output), *extra,
    ]  # fmt: skip
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr[-2000:]
    return output


@pytest.fixture(scope="module")
def rect_exports(tmp_path_factory, shapes_checkpoint) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("rect")
    calibration = write_samples(folder / "calibration", 64, seed=5, sizes=[(320, 320), (320, 256)])
    return {
        "raw": _export(shapes_checkpoint, folder / "rect.onnx"),
        "end2end": _export(shapes_checkpoint, folder / "rect-e2e.onnx", "--end2end"),
        "int8": _export(
            shapes_checkpoint,
            folder / "rect-int8.onnx",
            *("--precision", "int8", "--calibration", str(calibration.parent)),
        ),
    }


def _server(tmp_path_factory, model: Path, **env: str):
    srv = ServerProcess(tmp_path_factory.mktemp("rect-server"), {"MODEL_PATH": str(model), **env})
    try:
        yield srv.wait_ready()
    finally:
        srv.close()


@pytest.fixture(scope="module")
def rect_onnxruntime(tmp_path_factory, rect_exports):
    yield from _server(tmp_path_factory, rect_exports["raw"])


@pytest.fixture(scope="module")
def rect_openvino(tmp_path_factory, rect_exports):
    yield from _server(
        tmp_path_factory, rect_exports["raw"], SERVE_RUNTIME="openvino", SERVE_PRECISION="fp32"
    )


def session(path: Path) -> ort.InferenceSession:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


# --- the letterbox ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("size", "height", "width", "expected"),
    [
        (640, 720, 1280, (384, 640)),  # zidane.jpg: 360 rows, padded up to 384
        (640, 1080, 810, (640, 480)),  # bus.jpg: 480 columns, already a multiple
        (320, 90, 150, (192, 320)),  # smaller than S: scaled up, then padded
        (320, 401, 97, (320, 96)),  # 77.4 -> 77 columns, padded to 96
        (320, 319, 321, (320, 320)),  # nearly square: the square
    ],
)
def test_the_rectangle_is_detect_py_s(size, height, width, expected):
    assert letterboxed_shape(size, height, width, STRIDE) == expected
    image = np.random.default_rng(0).integers(0, 255, (height, width, 3), dtype=np.uint8)
    ours = letterbox(image, size, STRIDE)
    assert ours.shape[:2] == expected
    np.testing.assert_array_equal(ours, reference_letterbox(image, size, STRIDE))


def test_without_a_stride_the_letterbox_stays_square():
    assert letterboxed_shape(640, 720, 1280) == (640, 640)


# --- the export -------------------------------------------------------------------------------


def test_a_rect_export_takes_any_multiple_of_the_stride(rect_exports):
    model = onnx.load(str(rect_exports["raw"]))
    dims = model.graph.input[0].type.tensor_type.shape.dim
    assert [d.HasField("dim_value") for d in dims] == [True, True, False, False]
    assert {p.key: p.value for p in model.metadata_props}["rect_stride"] == str(STRIDE)
    runner = session(rect_exports["raw"])
    for height, width in [(192, 320), (320, 96), (320, 320)]:
        x = np.random.default_rng(1).random((1, 3, height, width), dtype=np.float32)
        rows = runner.run(None, {"images": x})[0]
        cells = sum((height // s) * (width // s) for s in (8, 16, 32))
        assert rows.shape == (1, 3 * cells, 8)


def test_rect_metadata_on_a_square_input_is_refused():
    inputs = [Port("images", (1, 3, 320, 320))]
    outputs = [Port("output", (1, 6300, 8))]
    with pytest.raises(ModelError, match="rect_stride=32 needs an input of dynamic height"):
        read_model_info({"rect_stride": "32", "nc": "3"}, inputs, outputs, "m")


# --- the server -------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "data"), PICTURES, ids=PICTURE_IDS)
def test_onnxruntime_answers_as_detect_py_on_the_rectangle(
    rect_onnxruntime, rect_exports, name, data
):
    expected = reference_detect(session(rect_exports["raw"]), bgr(data), IMG_SIZE, stride=STRIDE)
    assert_same_detections(served(rect_onnxruntime, data), expected)


@pytest.mark.parametrize(("name", "data"), PICTURES, ids=PICTURE_IDS)
def test_openvino_answers_as_detect_py_on_the_rectangle(rect_openvino, rect_exports, name, data):
    expected = reference_detect(session(rect_exports["raw"]), bgr(data), IMG_SIZE, stride=STRIDE)
    assert_same_detections(served(rect_openvino, data), expected)


def test_openvino_answers_the_same_once_each_shape_has_its_own_compile(rect_openvino, rect_exports):
    """After each photo's first request (the dynamic-shape compile), OpenVINO compiles its shape in
    the background; /ping says so until done, and the answers stay detect.py's."""
    for _, data in PICTURES:
        served(rect_openvino, data)
    deadline = time.monotonic() + 120
    while "compiling" in (ping := rect_openvino.request("GET", "/ping").json()):
        assert ping["compiling"] == "shapes"
        assert time.monotonic() < deadline, "the shapes did not compile"
        time.sleep(0.05)
    records = rect_openvino.log_records()
    ready = [r["shape"] for r in records if r["message"] == "static shape ready"]
    assert len({tuple(shape) for shape in ready}) == 2  # SERVE_STATIC_SHAPES's default
    for _, data in PICTURES:
        expected = reference_detect(session(rect_exports["raw"]), bgr(data), IMG_SIZE, STRIDE)
        assert_same_detections(served(rect_openvino, data), expected)


def test_the_end2end_layout_answers_as_detect_py_on_the_rectangle(tmp_path_factory, rect_exports):
    reference = session(rect_exports["end2end"])
    for server in _server(tmp_path_factory, rect_exports["end2end"]):
        for _, data in PICTURES:
            expected = reference_detect_end2end(reference, bgr(data), IMG_SIZE, stride=STRIDE)
            assert_same_detections(served(server, data), expected)


def test_an_int8_rect_export_finds_what_fp32_finds(
    tmp_path_factory, rect_exports, rect_onnxruntime
):
    """The INT8 export passed its gate (the fixture's exit 0, judged on each held-out image's
    rectangle); served, it finds the FP32 server's detections on the shapes pictures of every
    aspect (the photos carry none of the model's classes: what it finds there is noise)."""
    for server in _server(tmp_path_factory, rect_exports["int8"]):
        assert server.request("GET", "/ping").json()["precision"] == "int8"
        found = total = 0
        for name, data in PICTURES:
            if not name.startswith("shapes-"):
                continue
            exact = served(rect_onnxruntime, data)
            quantized = served(server, data)
            total += len(exact)
            found += sum(
                any(q["label"] == e["label"] and _iou(q["box"], e["box"]) > 0.5 for q in quantized)
                for e in exact
            )
        assert total > 10 and found / total >= 0.97


def _iou(a: list[float], b: list[float]) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - w * h
    return w * h / union if union else 0.0
