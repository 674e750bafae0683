"""A JPEG at least twice the model input on its long side is decoded at half size (libjpeg's DCT
scaling) unless SERVE_EXACT_DECODE=1; the answer is still in the original image's pixels and agrees
with the exact decode within what docs/serving.md ("Big photos") measured. Everything else (PNG,
small JPEGs, drawn answers) is decoded exactly.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from demo.evaluate import iou
from demo.shapes import make_image
from reliability.corpus import with_app1
from serve.config import ConfigError, Settings
from serve.decode import decode_for_model, decode_image, read_header, reduction_factor
from tests.support.images import exif
from tests.support.server import ServerProcess

IMG_SIZE = 320
# Measured on 12 MP photos (docs/serving.md): matched detections moved at most 0.94 letterbox px
# (1.8 px at 640) and their scores 0.024 (0.041 at 640); the bounds leave room for other photos.
MAX_SHIFT_LETTERBOX_PX = 2.0
MAX_SCORE_DIFF = 0.05


def phone_photo(width: int, height: int, seed: int) -> tuple[bytes, list[dict]]:
    """A JPEG (quality 90) of shapes drawn at a quarter of the size and enlarged, plus sensor
    noise: smooth edges and fine grain like a phone's photo. Returns its true boxes too."""
    rng = np.random.default_rng(seed)
    small, shapes = make_image(rng, height // 4, width // 4)
    image = cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC).astype(np.float32)
    image += rng.normal(0, 3, image.shape).astype(np.float32)
    ok, data = cv2.imencode(
        ".jpg", image.clip(0, 255).astype(np.uint8), [cv2.IMWRITE_JPEG_QUALITY, 90]
    )
    assert ok
    scale = width / (width // 4)
    truth = [{"box": [v * scale for v in s.box], "class_id": s.class_id} for s in shapes]
    return data.tobytes(), truth


def rotated(jpeg: bytes, orientation: int) -> bytes:
    """The JPEG with a minimal EXIF segment holding only the orientation tag."""
    return with_app1(jpeg, exif([(0x0112, 3, 1, orientation)]))


@pytest.fixture(scope="module")
def model(exported):
    return exported["raw"]


@pytest.fixture(scope="module")
def servers(tmp_path_factory, model):
    """(default, exact): the same model, with and without reduced decoding."""
    default = ServerProcess(tmp_path_factory.mktemp("default"), {"MODEL_PATH": str(model)})
    exact = ServerProcess(
        tmp_path_factory.mktemp("exact"), {"MODEL_PATH": str(model), "SERVE_EXACT_DECODE": "1"}
    )
    try:
        yield default.wait_ready(), exact.wait_ready()
    finally:
        default.close()
        exact.close()


@pytest.fixture(scope="module")
def photo() -> tuple[bytes, list[dict]]:
    return phone_photo(4032, 3024, seed=11)


def answer(server: ServerProcess, data: bytes, **headers: str) -> dict:
    resp = server.invoke(data, "image/jpeg", **headers)
    assert resp.status == 200, resp.body[:300]
    return resp.json()


def assert_agree(reduced: list[dict], exact: list[dict], long_side: int) -> None:
    """Each exact detection has a reduced one of its class with IoU > 0.8 (and the reverse),
    corners within MAX_SHIFT_LETTERBOX_PX letterbox pixels, scores within MAX_SCORE_DIFF."""
    max_shift = MAX_SHIFT_LETTERBOX_PX * long_side / IMG_SIZE
    for ours, theirs in ((exact, reduced), (reduced, exact)):
        for det in ours:
            same = [d for d in theirs if d["class_id"] == det["class_id"]]
            best = max(same, key=lambda d: iou(d["box"], det["box"]), default=None)
            assert best is not None and iou(best["box"], det["box"]) > 0.8, det
            assert np.abs(np.subtract(best["box"], det["box"])).max() <= max_shift, (det, best)
            assert abs(best["score"] - det["score"]) <= MAX_SCORE_DIFF, (det, best)


def confident(detections: list[dict]) -> list[dict]:
    # The shapes model also reports faint guesses in big photos (score < 0.5) that either path
    # may drop or keep, and boxes in the letterbox's padding that clipping flattens to nothing;
    # the confident boxes inside the picture are its answers.
    def inside(box: list[float]) -> bool:
        return box[2] > box[0] and box[3] > box[1]

    return [d for d in detections if d["score"] >= 0.5 and inside(d["box"])]


# --- the rule ---------------------------------------------------------------------------------


def test_only_a_jpeg_twice_the_model_input_on_its_long_side_is_reduced():
    def header(fmt_ext: str, width: int, height: int):
        image = np.zeros((height, width, 3), np.uint8)
        return read_header(cv2.imencode(fmt_ext, image)[1].tobytes())

    assert reduction_factor(header(".jpg", 4000, 1000), 2000) == 2  # the long side counts
    assert reduction_factor(header(".jpg", 1000, 4000), 2000) == 2
    assert reduction_factor(header(".jpg", 3999, 3999), 2000) == 1
    assert reduction_factor(header(".jpg", 4032, 3024), 640) == 2  # never more than 1/2
    assert reduction_factor(header(".png", 4032, 3024), 320) == 1
    # everyday photos (under 4 MP) stay exact whatever the input: bus.jpg, zidane.jpg at 320
    assert reduction_factor(header(".jpg", 1080, 810), 320) == 1
    assert reduction_factor(header(".jpg", 2304, 1728), 320) == 1  # 3.98 MP
    assert reduction_factor(header(".jpg", 2400, 1700), 320) == 2  # 4.08 MP


def test_a_reduced_decode_keeps_the_original_size_odd_or_rotated():
    data, _ = phone_photo(2501, 1777, seed=3)  # 4.4 MP, odd on both sides
    decoded = decode_for_model(data, 10**8, IMG_SIZE)
    assert (decoded.width, decoded.height, decoded.factor) == (2501, 1777, 2)
    assert decoded.pixels.shape == (889, 1251, 3)  # rounded up
    turned = decode_for_model(rotated(data, 6), 10**8, IMG_SIZE)
    assert (turned.width, turned.height, turned.factor) == (1777, 2501, 2)
    assert decode_image(rotated(data, 6), 10**8).shape == (2501, 1777, 3)
    exact = decode_for_model(data, 10**8, None)
    assert (exact.width, exact.height, exact.factor) == (2501, 1777, 1)


def test_serve_exact_decode_is_read_and_checked():
    assert Settings.from_env({}).exact_decode is False
    assert Settings.from_env({"SERVE_EXACT_DECODE": "1"}).exact_decode is True
    with pytest.raises(ConfigError, match="SERVE_EXACT_DECODE"):
        Settings.from_env({"SERVE_EXACT_DECODE": "maybe"})


# --- over HTTP --------------------------------------------------------------------------------


def test_a_12_mp_photo_answers_in_its_own_pixels_and_agrees_with_the_exact_decode(servers, photo):
    default, exact = servers
    data, truth = photo
    reduced_answer, exact_answer = answer(default, data), answer(exact, data)
    assert reduced_answer["image"] == exact_answer["image"] == {"width": 4032, "height": 3024}
    assert_agree(
        confident(reduced_answer["detections"]), confident(exact_answer["detections"]), 4032
    )
    assert reduced_answer["detections"] != exact_answer["detections"], "the reduced path ran"
    for shape in truth:  # both find every drawn shape where it was drawn
        for found in (reduced_answer, exact_answer):
            assert any(
                d["class_id"] == shape["class_id"] and iou(d["box"], shape["box"]) > 0.8
                for d in confident(found["detections"])
            ), shape


def test_a_rotated_12_mp_photo_is_reported_at_its_turned_size(servers, photo):
    default, exact = servers
    data = rotated(photo[0], 6)
    reduced_answer, exact_answer = answer(default, data), answer(exact, data)
    assert reduced_answer["image"] == exact_answer["image"] == {"width": 3024, "height": 4032}
    assert_agree(
        confident(reduced_answer["detections"]), confident(exact_answer["detections"]), 4032
    )


def test_png_and_small_jpegs_are_decoded_exactly(servers, photo):
    default, exact = servers
    pixels = cv2.imdecode(np.frombuffer(photo[0], np.uint8), cv2.IMREAD_COLOR)
    big_png = cv2.imencode(".png", pixels[::3, ::3])[1].tobytes()  # 1344 x 1008: a PNG
    small_jpeg = phone_photo(636, 480, seed=5)[0]  # under twice 320 on its long side
    for data in (big_png, small_jpeg):
        assert answer(default, data)["detections"] == answer(exact, data)["detections"]


def test_a_drawn_answer_is_the_full_picture_with_the_same_detections(servers, photo):
    default, _ = servers
    drawn = default.invoke(photo[0], "image/jpeg", Accept="image/png")
    assert drawn.status == 200
    picture = cv2.imdecode(np.frombuffer(drawn.body, np.uint8), cv2.IMREAD_COLOR)
    assert picture.shape == (3024, 4032, 3)
    count = len(answer(default, photo[0])["detections"])
    assert drawn.headers["x-amzn-sagemaker-custom-attributes"] == f"detections={count}"
