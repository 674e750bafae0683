"""The server's answers equal the official pipeline's: same classes, boxes within 1 px, scores
within 1e-3, for both ONNX layouts, on the bundled checkpoint exported by `python -m export`.

The official pipeline is re-implemented independently in tests/support/reference.py and run with
onnxruntime on the same file; the server is asked over HTTP.

The servers run in the default configuration: the official pipeline decodes every image in full,
and so does the server below 4 MP (bigger JPEGs are decoded at half size, which agrees within the
bounds test_reduced_decode.py checks, not within 1 px).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort
import pytest

from tests.support.images import encode, shapes_image
from tests.support.reference import (
    assert_same_detections,
    reference_detect,
    reference_detect_end2end,
)
from tests.support.server import SAMPLES, ServerProcess

IMG_SIZE = 320

# (width, height, seed): square, landscape, portrait, odd sizes, extreme aspect, smaller than S.
SHAPE_PICTURES = [
    (320, 320, 0),
    (640, 480, 1),
    (333, 517, 2),
    (1000, 200, 3),
    (150, 90, 4),
    (1280, 720, 5),
    (97, 401, 6),
    (321, 319, 7),
]


def pictures() -> list[tuple[str, bytes]]:
    out = [
        ("bus", (SAMPLES / "bus.jpg").read_bytes()),
        ("zidane", (SAMPLES / "zidane.jpg").read_bytes()),
    ]
    for width, height, seed in SHAPE_PICTURES:
        out.append((f"shapes-{width}x{height}", encode(shapes_image(width, height, seed), ".png")))
    return out


PICTURES = pictures()
PICTURE_IDS = [name for name, _ in PICTURES]


def bgr(data: bytes) -> np.ndarray:
    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)


def served(server: ServerProcess, data: bytes, attributes: str = "") -> list[dict]:
    headers = {"X_Amzn_SageMaker_Custom_Attributes": attributes} if attributes else {}
    resp = server.invoke(data, "application/octet-stream", **headers)
    assert resp.status == 200, resp.body[:300]
    return resp.json()["detections"]


def session(path: Path) -> ort.InferenceSession:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


@pytest.fixture(scope="module")
def raw_server(tmp_path_factory, exported):
    srv = ServerProcess(tmp_path_factory.mktemp("raw-server"), {"MODEL_PATH": str(exported["raw"])})
    try:
        yield srv.wait_ready()
    finally:
        srv.close()


@pytest.fixture(scope="module")
def end2end_server(tmp_path_factory, exported):
    srv = ServerProcess(
        tmp_path_factory.mktemp("e2e-server"), {"MODEL_PATH": str(exported["end2end"])}
    )
    try:
        yield srv.wait_ready()
    finally:
        srv.close()


@pytest.fixture(scope="module")
def head_server(tmp_path_factory, head_model_path):
    srv = ServerProcess(
        tmp_path_factory.mktemp("head-server"), {"MODEL_PATH": str(head_model_path)}
    )
    try:
        yield srv.wait_ready()
    finally:
        srv.close()


# --- the bundled checkpoint -------------------------------------------------------------------


@pytest.mark.parametrize(("name", "data"), PICTURES, ids=PICTURE_IDS)
def test_raw_layout_answers_equal_the_official_pipeline(raw_server, exported, name, data):
    expected = reference_detect(session(exported["raw"]), bgr(data), IMG_SIZE)
    assert_same_detections(served(raw_server, data), expected)


@pytest.mark.parametrize(("name", "data"), PICTURES, ids=PICTURE_IDS)
def test_end2end_layout_answers_equal_the_official_pipeline_and_the_raw_layout(
    raw_server, end2end_server, exported, name, data
):
    from_graph = served(end2end_server, data)
    expected = reference_detect_end2end(session(exported["end2end"]), bgr(data), IMG_SIZE)
    assert_same_detections(from_graph, expected)
    assert_same_detections(from_graph, served(raw_server, data))


def test_the_checkpoint_finds_drawn_shapes_with_confidence(raw_server):
    data = encode(shapes_image(320, 320, seed=0), ".png")
    dets = served(raw_server, data)
    assert dets and dets[0]["score"] > 0.9
    assert dets[0]["label"] in {"circle", "square", "triangle"}


@pytest.mark.parametrize(
    ("attributes", "options"),
    [
        ("conf=0.5", {"conf": 0.5}),
        ("iou=0.3", {"iou": 0.3}),
        ("iou=0.7,conf=0.1", {"iou": 0.7, "conf": 0.1}),
        ("agnostic=true", {"agnostic": True}),
        ("classes=1", {"classes": [1]}),
        ("classes=circle;triangle", {"classes": [0, 2]}),
        ("max_det=2", {"max_det": 2}),
    ],
)
def test_raw_layout_options_follow_the_official_semantics(
    raw_server, exported, attributes, options
):
    ref = session(exported["raw"])
    for _, data in PICTURES[:4]:
        expected = reference_detect(ref, bgr(data), IMG_SIZE, **options)
        assert_same_detections(served(raw_server, data, attributes), expected)


@pytest.mark.parametrize(
    "attributes", ["conf=0.6", "classes=0;2", "max_det=2", "conf=0.4,classes=1"]
)
def test_end2end_layout_applies_stricter_request_options_like_the_raw_layout(
    raw_server, end2end_server, attributes
):
    for _, data in PICTURES:
        assert_same_detections(
            served(end2end_server, data, attributes), served(raw_server, data, attributes)
        )


def test_end2end_layout_cannot_loosen_the_thresholds_baked_in_at_export(end2end_server):
    data = PICTURES[0][1]
    loose = served(end2end_server, data, "conf=0.05")
    assert loose == served(end2end_server, data)
    assert all(d["score"] > 0.25 for d in loose)


# --- the test head model (no exporter involved) -----------------------------------------------


@pytest.mark.parametrize(("name", "data"), PICTURES, ids=PICTURE_IDS)
def test_test_head_model_answers_equal_the_official_pipeline(
    head_server, head_model_path, name, data
):
    expected = reference_detect(session(head_model_path), bgr(data), 128)
    assert expected, "the head model detects plenty"
    assert_same_detections(served(head_server, data), expected)
