"""A pose model (yolov7-w6-pose layout) served over HTTP: every detection carries its 17 COCO
keypoints, equal to an independent implementation of the official pose pipeline (letterbox,
decode, NMS carrying keypoints, scaling back) on real photos at 640 and 960, in both layouts;
/ping says pose; the drawn answer shows the skeleton (issue 23)."""

from __future__ import annotations

import re

import cv2
import numpy as np
import onnxruntime as ort
import pytest

from export.keypoint import COCO_KEYPOINTS
from serve.errors import ModelError
from serve.keypoints import VISIBLE
from serve.model_info import Port, read_model_info
from serve.render import draw
from tests.support.reference_pose import (
    assert_same_poses,
    reference_pose_detect,
    reference_pose_detect_end2end,
)
from tests.support.server import SAMPLES, ServerProcess

PHOTOS = {name: (SAMPLES / f"{name}.jpg").read_bytes() for name in ("bus", "zidane")}
MIN_PEOPLE = 5  # random weights, biased objectness: the comparison must be of real detections


def bgr(data: bytes) -> np.ndarray:
    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)


def session(path) -> ort.InferenceSession:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def served(server: ServerProcess, data: bytes) -> list[dict]:
    resp = server.invoke(data, "image/jpeg")
    assert resp.status == 200, resp.body[:300]
    return resp.json()["detections"]


def _server(tmp_path_factory, path):
    srv = ServerProcess(tmp_path_factory.mktemp("pose-server"), {"MODEL_PATH": str(path)})
    return srv.wait_ready()


@pytest.fixture(scope="module")
def servers(tmp_path_factory, pose_exported):
    started = {name: _server(tmp_path_factory, path) for name, path in pose_exported.items()}
    try:
        yield started
    finally:
        for srv in started.values():
            srv.close()


@pytest.mark.parametrize("photo", sorted(PHOTOS))
def test_raw_layout_keypoints_equal_the_official_pose_pipeline_at_640(
    servers, pose_exported, photo
):
    data = PHOTOS[photo]
    expected = reference_pose_detect(session(pose_exported["raw"]), bgr(data), 640)
    got = served(servers["raw"], data)
    assert len(expected) >= MIN_PEOPLE
    assert all(len(d["keypoints"]) == 17 for d in got)
    assert_same_poses(got, expected)


def test_raw_layout_keypoints_equal_the_official_pose_pipeline_at_960(servers, pose_exported):
    data = PHOTOS["zidane"]
    expected = reference_pose_detect(session(pose_exported["raw960"]), bgr(data), 960)
    assert len(expected) >= MIN_PEOPLE
    assert_same_poses(served(servers["raw960"], data), expected)


@pytest.mark.parametrize("photo", sorted(PHOTOS))
def test_end2end_layout_keypoints_equal_the_pipeline_and_the_raw_layout(
    servers, pose_exported, photo
):
    data = PHOTOS[photo]
    from_graph = served(servers["end2end"], data)
    expected = reference_pose_detect_end2end(session(pose_exported["end2end"]), bgr(data), 640)
    assert len(expected) >= MIN_PEOPLE
    assert_same_poses(from_graph, expected)
    assert_same_poses(from_graph, served(servers["raw"], data))


def test_keypoints_are_clipped_to_the_image_like_boxes(servers):
    """zidane.jpg is 1280 x 720: letterboxed with bands above and below, where random keypoints
    land; the official pipeline clips them to the image, and so does the server."""
    people = served(servers["raw"], PHOTOS["zidane"])
    points = np.array([p["keypoints"] for p in people])
    assert points[..., 0].min() >= 0 and points[..., 0].max() <= 1280
    assert points[..., 1].min() >= 0 and points[..., 1].max() <= 720
    assert ((points[..., 1] == 0) | (points[..., 1] == 720)).any()  # some really were clipped


def test_ping_says_the_task_is_pose_and_names_the_keypoints(servers):
    answer = servers["raw"].request("GET", "/ping").json()
    assert answer["task"] == "pose" and answer["keypoints"] == list(COCO_KEYPOINTS)


def test_the_drawn_answer_shows_the_visible_keypoints(servers):
    data, one = PHOTOS["bus"], {"X_Amzn_SageMaker_Custom_Attributes": "max_det=1"}
    resp = servers["raw"].invoke(data, "image/jpeg", **one)  # one person: no one else's limbs
    people = resp.json()["detections"]
    assert len(people) == 1
    resp = servers["raw"].invoke(data, "image/jpeg", Accept="image/png", **one)  # lossless
    assert resp.status == 200 and resp.headers["content-type"] == "image/png"
    picture = bgr(resp.body)
    colors = np.array([(0, 255, 0), (255, 128, 0), (255, 51, 255)])  # face, arms, legs (BGR)
    visible = [k for p in people for k in p["keypoints"] if k[2] >= VISIBLE]
    assert visible
    for x, y, _ in visible:
        pixel = picture[min(round(y), picture.shape[0] - 1), min(round(x), picture.shape[1] - 1)]
        # a limb drawn later (anti-aliased) may blend into a point's centre by a few levels
        assert np.abs(colors - pixel.astype(int)).max(axis=1).min() <= 40, (x, y, pixel)


def test_keypoints_under_half_are_hidden_as_the_official_drawing_does():
    image = np.full((200, 300, 3), 90, np.uint8)
    boxes, scores, classes = np.array([[20.0, 30, 200, 180]]), np.array([0.9]), np.array([0])
    keypoints = np.zeros((1, 17, 3))
    keypoints[0, :, 0], keypoints[0, :, 1] = np.linspace(40, 180, 17), 100
    plain = draw(image, boxes, scores, classes, str)
    keypoints[0, :, 2] = 0.49
    assert np.array_equal(draw(image, boxes, scores, classes, str, keypoints), plain)
    keypoints[0, 3, 2] = keypoints[0, 5, 2] = 0.5  # two visible, not linked by the skeleton
    drawn = draw(image, boxes, scores, classes, str, keypoints)
    changed = np.argwhere((drawn != plain).any(axis=2))
    assert len(changed)
    assert np.abs(changed[:, 1] - keypoints[0, [3, 5], 0][:, None]).min(axis=0).max() <= 10


def _info(meta: dict[str, str], columns: int):
    outputs = [Port("output", (1, 25500, columns))]
    return read_model_info(meta, [Port("images", (1, 3, 640, 640))], outputs, "m")


def test_model_info_reads_the_pose_metadata_and_refuses_what_does_not_fit():
    meta = {"task": "pose", "nkpt": "17", "nc": "1", "names": '["person"]'}
    info = _info(meta, 57)
    assert (info.task, info.nkpt, info.keypoint_names[0]) == ("pose", 17, "keypoint0")
    assert _info({"nc": "1"}, 6).task == "detect"
    for bad, columns, message in [
        ({**meta, "task": "segment"}, 57, "task='segment'"),
        ({**meta, "nkpt": "0"}, 57, "needs 'nkpt'"),
        ({**meta, "keypoint_names": '["nose"]'}, 57, "1 keypoint_names but nkpt=17"),
        (meta, 6, "5 + nc + 3 * nkpt = 57"),
    ]:
        with pytest.raises(ModelError, match=re.escape(message)):
            _info(bad, columns)


def test_pose_answers_conform_to_the_openapi_schema(servers):
    import jsonschema
    import yaml

    from tests.support.server import REPO

    spec = yaml.safe_load((REPO / "serve" / "openapi.yaml").read_text())
    ping = spec["paths"]["/ping"]["get"]["responses"]["200"]["content"]["application/json"]
    jsonschema.validate(servers["raw"].request("GET", "/ping").json(), ping["schema"])
    answer = servers["end2end"].invoke(PHOTOS["zidane"], "image/jpeg").json()
    assert answer["detections"] and answer["detections"][0]["keypoints"]
    jsonschema.validate(answer, spec["components"]["schemas"]["Detections"])


@pytest.mark.slow
def test_a_reduced_decode_scales_keypoints_to_the_original_like_boxes(pose_exported):
    """A big JPEG decoded at half size (serve/decode.py): keypoints, like boxes, are reported in
    the original's pixels (twice the reduced image's) and clipped to it."""
    from serve.detector import Detector
    from serve.options import Options

    detector = Detector(pose_exported["raw"])
    detector.load()
    image = bgr(PHOTOS["zidane"])
    height, width = image.shape[:2]
    exact = detector.detect(image, Options())
    reduced = detector.detect(image, Options(), reduction=2, original_size=(2 * width, 2 * height))
    assert len(exact) >= MIN_PEOPLE and exact.keypoints is not None
    assert reduced.keypoints is not None
    np.testing.assert_allclose(reduced.boxes, 2 * exact.boxes)
    np.testing.assert_allclose(reduced.keypoints[..., :2], 2 * exact.keypoints[..., :2])
    np.testing.assert_array_equal(reduced.keypoints[..., 2], exact.keypoints[..., 2])
