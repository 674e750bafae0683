"""The small pure steps on their own: decode, letterbox, NMS, scale back, options, metadata."""

from __future__ import annotations

import contextlib
import struct
import zlib

import cv2
import numpy as np
import pytest

from serve.decode import decode_image, read_header
from serve.errors import BadOption, ImageTooLarge, ModelError, UnreadableImage
from serve.letterbox import letterbox, scale_boxes, to_tensor
from serve.model_info import Port, read_model_info
from serve.nms import greedy_nms, non_max_suppression
from serve.options import Options, from_custom_attributes, resolve
from tests.support.images import encode, shapes_image
from tests.support.reference import reference_letterbox, reference_nms, reference_tensor


@contextlib.contextmanager
def raises_http(error: type, words: str):
    """Like pytest.raises(match=...), for falcon errors (whose message is the description)."""
    with pytest.raises(error) as caught:
        yield
    assert words in caught.value.description, caught.value.description


# --- decode -----------------------------------------------------------------------------------


@pytest.mark.parametrize("ext", [".jpg", ".png", ".webp", ".bmp"])
@pytest.mark.parametrize(("width", "height"), [(1, 1), (37, 211), (640, 480)])
def test_header_size_matches_the_decoded_size_for_every_format(ext, width, height):
    data = encode(shapes_image(width, height, seed=width), ext)
    header = read_header(data)
    assert (header.width, header.height, header.complete) == (width, height, True)
    assert decode_image(data, 10**8).shape == (height, width, 3)


def test_lossless_and_extended_webp_headers_are_read():
    image = shapes_image(123, 45, seed=0)
    lossless = encode(image, ".webp", [cv2.IMWRITE_WEBP_QUALITY, 101])
    assert lossless[12:16] == b"VP8L"
    assert (read_header(lossless).width, read_header(lossless).height) == (123, 45)
    lossy = encode(image, ".webp", [cv2.IMWRITE_WEBP_QUALITY, 80])
    extended = lossy[:12] + b"VP8X" + struct.pack("<I", 10) + b"\0" * 4
    extended += (122).to_bytes(3, "little") + (44).to_bytes(3, "little") + lossy[12:]
    assert (read_header(extended).width, read_header(extended).height) == (123, 45)


def test_progressive_jpeg_and_data_after_the_end_marker_are_accepted():
    image = shapes_image(300, 200, seed=1)
    progressive = encode(image, ".jpg", [cv2.IMWRITE_JPEG_PROGRESSIVE, 1])
    assert decode_image(progressive, 10**8).shape == (200, 300, 3)
    trailer = encode(image, ".jpg") + b"\0\0motion-photo-mp4" * 100
    assert decode_image(trailer, 10**8).shape == (200, 300, 3)


def test_grey_and_alpha_pictures_decode_to_three_channels():
    grey = encode(np.full((20, 30), 77, np.uint8), ".png")
    rgba = encode(np.full((20, 30, 4), 77, np.uint8), ".png")
    assert decode_image(grey, 10**8).shape == (20, 30, 3)
    assert decode_image(rgba, 10**8).shape == (20, 30, 3)


def _png_claiming(width: int, height: int) -> bytes:
    chunk = b"IHDR" + struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + chunk + struct.pack(">I", zlib.crc32(chunk))
    )


def _jpeg_claiming(width: int, height: int) -> bytes:
    sof = b"\xff\xc0" + struct.pack(">HBHHB", 11, 8, height, width, 1) + b"\x01\x11\x00"
    return b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00" + sof


def _bmp_claiming(width: int, height: int) -> bytes:
    header = struct.pack("<IiiHHI", 40, width, -height, 1, 24, 0) + b"\0" * 20
    return b"BM" + struct.pack("<IHHI", 0, 0, 0, 54) + header


def _webp_claiming(width: int, height: int) -> bytes:
    body = b"VP8X" + struct.pack("<I", 10) + b"\0" * 4
    body += (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little")
    return b"RIFF" + struct.pack("<I", len(body) + 4) + b"WEBP" + body


@pytest.mark.parametrize("claiming", [_png_claiming, _jpeg_claiming, _bmp_claiming, _webp_claiming])
def test_pixel_bombs_are_refused_from_the_header_in_every_format(claiming):
    with raises_http(ImageTooLarge, "10001 x 10000"):
        decode_image(claiming(10001, 10000), max_pixels=100_000_000)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\xff\xd8\xff",
        b"GIF89a" + b"\0" * 40,
        b"II*\0" + b"\0" * 40,
        b"<svg/>",
        b"RIFF\0\0\0\0WEBP",
    ],
    ids=["empty", "jpeg-soi-only", "gif", "tiff", "svg", "webp-header-only"],
)
def test_unsupported_or_cut_headers_are_unreadable(data):
    with pytest.raises(UnreadableImage):
        decode_image(data, 10**8)


@pytest.mark.parametrize("claiming", [_png_claiming, _jpeg_claiming, _bmp_claiming, _webp_claiming])
def test_a_header_alone_is_refused_as_truncated_before_decoding(claiming):
    with raises_http(UnreadableImage, "truncated"):
        decode_image(claiming(5000, 5000), max_pixels=100_000_000)


def test_corrupt_jpeg_structure_is_unreadable():
    good = encode(shapes_image(50, 50, seed=0), ".jpg")
    with raises_http(UnreadableImage, "truncated"):
        decode_image(good[:-2], 10**8)  # no end-of-image marker
    with raises_http(UnreadableImage, "corrupt"):
        decode_image(good[:20] + b"\x00" + good[21:], 10**8)  # a marker after APP0 expected


# --- letterbox and the way back -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("width", "height", "size"),
    [
        (810, 1080, 320),
        (1280, 720, 640),
        (333, 517, 320),
        (101, 99, 64),
        (320, 320, 320),
        (5, 3, 32),
    ],
)
def test_letterbox_equals_the_reference(width, height, size):
    image = shapes_image(width, height, seed=width)
    out = letterbox(image, size)
    assert out.shape == (size, size, 3)
    np.testing.assert_array_equal(out, reference_letterbox(image, size))
    np.testing.assert_array_equal(to_tensor(out), reference_tensor(out))
    assert to_tensor(out).dtype == np.float32 and to_tensor(out).shape == (1, 3, size, size)


def test_letterbox_leaves_an_image_of_the_right_size_untouched():
    image = shapes_image(64, 64, seed=0)
    np.testing.assert_array_equal(letterbox(image, 64), image)


def test_letterbox_pads_with_114_split_as_the_reference():
    out = letterbox(np.zeros((10, 31, 3), np.uint8), 64)  # resized to 64 x 21: 43 rows of padding
    column = out[:, 5, 0]
    assert (column[:21] == 114).all() and (column[21:42] == 0).all() and (column[42:] == 114).all()


def test_scale_boxes_undoes_the_letterbox_and_clips():
    # 200 x 100 at 64: gain 0.32, the picture occupies rows 16..48
    boxes = np.array([[0.0, 16.0, 64.0, 48.0], [-5.0, 0.0, 70.0, 64.0], [32.0, 32.0, 32.0, 32.0]])
    out = scale_boxes(boxes, 64, 100, 200)
    np.testing.assert_allclose(out[0], [0, 0, 200, 100])
    np.testing.assert_allclose(out[1], [0, 0, 200, 100])
    np.testing.assert_allclose(out[2], [100, 50, 100, 50])


# --- NMS --------------------------------------------------------------------------------------


def _rows(*rows) -> np.ndarray:
    return np.array(rows, dtype=np.float32)


def test_nms_equals_the_reference_on_random_candidates():
    rng = np.random.default_rng(0)
    for trial in range(20):
        nc = [1, 3, 80][trial % 3]
        count = int(rng.integers(1, 400))
        rows = np.zeros((count, 5 + nc), np.float32)
        rows[:, :2] = rng.uniform(0, 320, (count, 2))
        rows[:, 2:4] = rng.uniform(5, 120, (count, 2))
        rows[:, 4:] = rng.uniform(0, 1, (count, 1 + nc))
        for options in ({}, {"agnostic": True}, {"iou": 0.2, "conf": 0.1, "max_det": 7}):
            got = non_max_suppression(rows, **options)
            expected = np.array(reference_nms(rows, **options), np.float32).reshape(-1, 6)
            np.testing.assert_allclose(got, expected, atol=1e-4)


def test_objectness_and_score_must_exceed_conf_strictly():
    rows = _rows(
        [10, 10, 4, 4, 0.25, 1.0, 0.0],  # obj == conf: out
        [50, 50, 4, 4, 0.5, 0.5, 0.0],  # score 0.25 == conf: out
        [90, 90, 4, 4, 0.6, 0.5, 0.0],  # score 0.3: in
    )
    out = non_max_suppression(rows, conf=0.25)
    assert out.shape == (1, 6)
    np.testing.assert_allclose(out[0], [88, 88, 92, 92, 0.3, 0], rtol=1e-6)


def test_single_class_models_score_by_objectness_alone():
    out = non_max_suppression(_rows([10, 10, 4, 4, 0.8, 0.1]), conf=0.25)
    np.testing.assert_allclose(out[:, 4], [0.8])


def test_overlapping_boxes_of_different_classes_survive_unless_agnostic():
    rows = _rows([50, 50, 20, 20, 0.9, 1, 0], [51, 50, 20, 20, 0.8, 0, 1])
    assert non_max_suppression(rows).shape[0] == 2
    assert non_max_suppression(rows, agnostic=True).shape[0] == 1
    assert non_max_suppression(rows, classes=[1])[:, 5].tolist() == [1]


def test_iou_equal_to_the_threshold_does_not_suppress():
    boxes = np.array([[0, 0, 10, 10], [0, 0, 10, 5]], np.float32)  # IoU exactly 0.5
    assert greedy_nms(boxes, np.array([0.9, 0.8], np.float32), 0.5, 10).tolist() == [0, 1]
    assert greedy_nms(boxes, np.array([0.9, 0.8], np.float32), 0.49, 10).tolist() == [0]


def test_degenerate_boxes_suppress_nothing_and_max_det_caps():
    boxes = np.array([[5, 5, 5, 5], [5, 5, 5, 5], [0, 0, 1, 1]], np.float32)
    assert sorted(greedy_nms(boxes, np.array([0.9, 0.8, 0.7], np.float32), 0.45, 10)) == [0, 1, 2]
    assert greedy_nms(boxes, np.array([0.9, 0.8, 0.7], np.float32), 0.45, 2).tolist() == [0, 1]


def test_nothing_above_conf_gives_an_empty_answer():
    assert non_max_suppression(_rows([1, 1, 1, 1, 0.1, 0.9, 0.9]), conf=0.25).shape == (0, 6)
    assert non_max_suppression(np.zeros((0, 8), np.float32)).shape == (0, 6)


# --- options ----------------------------------------------------------------------------------


def test_custom_attributes_keep_known_keys_and_ignore_the_rest():
    header = " conf=0.3, iou=0.5 ,max_det=100,classes=0;2,agnostic=true,trace_id=xyz,junk"
    assert from_custom_attributes(header) == {
        "conf": "0.3",
        "iou": "0.5",
        "max_det": "100",
        "classes": "0;2",
        "agnostic": "true",
    }
    assert from_custom_attributes(None) == {}


def test_options_resolve_header_text_and_json_values():
    names = ("person", "car", "dog")
    got = resolve(
        Options(),
        {"conf": "0.3", "iou": 0.5, "max_det": "7", "classes": "dog;0", "agnostic": "yes"},
        names,
        3,
    )
    assert got == Options(conf=0.3, iou=0.5, max_det=7, classes=(0, 2), agnostic=True)
    assert resolve(Options(conf=0.4), {}, names, 3) == Options(conf=0.4)
    assert resolve(Options(), {"classes": ["car", 2]}, names, 3).classes == (1, 2)


@pytest.mark.parametrize(
    ("key", "value"),
    [("conf", "2"), ("conf", "inf"), ("iou", None), ("max_det", True), ("max_det", "1001"),
     ("classes", "3"), ("classes", "-1"), ("classes", "cat"), ("classes", {}), ("agnostic", 1)],
)  # fmt: skip
def test_bad_option_values_raise_400_naming_the_key(key, value):
    with pytest.raises(BadOption) as caught:
        resolve(Options(), {key: value}, ("person", "car", "dog"), 3)
    assert caught.value.key == key and f"'{key}'" in caught.value.description


# --- model metadata ---------------------------------------------------------------------------

IMAGES = [Port("images", (1, 3, 320, 320))]
RAW = [Port("output", (1, 6300, 8))]
END2END = [Port("detections", ("num_detections", 7))]
META = {
    "names": '["circle", "square", "triangle"]',
    "nc": "3",
    "img_size": "320",
    "layout": "raw",
    "model_name": "shapes",
}


def test_contract_metadata_is_read():
    info = read_model_info(META, IMAGES, RAW, "file-stem")
    assert (info.name, info.names, info.nc, info.img_size, info.layout) == (
        "shapes",
        ("circle", "square", "triangle"),
        3,
        320,
        "raw",
    )
    assert (info.input_name, info.output_name) == ("images", "output")


def test_end2end_metadata_gives_the_baked_thresholds():
    meta = dict(META, layout="end2end", end2end_conf="0.3", end2end_iou="0.5", end2end_max_det="99")
    info = read_model_info(meta, IMAGES, END2END, "x")
    assert (info.layout, info.end2end_conf, info.end2end_iou, info.end2end_max_det) == (
        "end2end",
        0.3,
        0.5,
        99,
    )


def test_plain_onnx_falls_back_to_the_documented_defaults():
    raw = read_model_info({}, IMAGES, [Port("out0", (1, 6300, 85))], "yolov7")
    assert (raw.name, raw.nc, raw.img_size, raw.layout, raw.output_name) == (
        "yolov7",
        80,
        320,
        "raw",
        "out0",
    )
    assert raw.names[:2] == ("class0", "class1") and raw.label(99) == "class99"
    dynamic = read_model_info({}, [Port("x", ("batch", 3, "h", "w"))], END2END, "e2e")
    assert (dynamic.img_size, dynamic.layout, dynamic.nc) == (640, "end2end", None)


@pytest.mark.parametrize(
    ("meta", "inputs", "outputs", "words"),
    [
        ({**META, "nc": "4"}, IMAGES, RAW, "8 columns"),
        ({**META, "names": "circle"}, IMAGES, RAW, "names"),
        ({**META, "nc": "three"}, IMAGES, RAW, "nc"),
        ({**META, "layout": "grid"}, IMAGES, RAW, "layout"),
        ({**META, "img_size": "640"}, IMAGES, RAW, "img_size"),
        ({}, [Port("images", (1, 3, 320, 256))], RAW, "square"),
        ({}, [Port("images", (1, 320, 320))], RAW, "input"),
        ({}, IMAGES + IMAGES, RAW, "inputs"),
        ({}, IMAGES, [Port("o", (10, 5))], "layout"),
        ({}, [Port("images", (1, 3, 320, 320), "tensor(uint8)")], RAW, "float32"),
    ],
)
def test_models_outside_the_contract_are_refused_with_a_reason(meta, inputs, outputs, words):
    with pytest.raises(ModelError, match=words):
        read_model_info(meta, inputs, outputs, "m")
