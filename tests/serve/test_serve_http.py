"""SageMaker's HTTP contract and every kind of bad input, against a real waitress server."""

from __future__ import annotations

import base64
import json
import struct
import zlib

import cv2
import numpy as np
import pytest

from tests.support.images import decode, encode, shapes_image
from tests.support.server import SAMPLES, Response

BUS = (SAMPLES / "bus.jpg").read_bytes()
ZIDANE = (SAMPLES / "zidane.jpg").read_bytes()


def assert_json_error(resp: Response, status: int, *words: str) -> dict:
    assert resp.status == status, resp.body[:300]
    assert resp.headers["content-type"].startswith("application/json")
    body = resp.json()
    assert body["status"] == status
    assert isinstance(body["error"], str) and body["error"]
    for word in words:
        assert word in body["error"], body
    assert "Traceback" not in body["error"] and "/tmp" not in body["error"]
    return body


def assert_still_serving(server) -> None:
    resp = server.invoke(ZIDANE)
    assert resp.status == 200, resp.body[:300]
    assert resp.json()["image"] == {"width": 1280, "height": 720}


# --- the contract -----------------------------------------------------------------------------


def test_ping_answers_200_with_a_small_json_body_once_ready(server):
    resp = server.request("GET", "/ping")
    assert resp.status == 200
    assert resp.json() == {
        "status": "ok",
        "model": "test-model",
        "runtime": "onnxruntime",
        "precision": "fp32",
        "float_precision": "fp32",
    }


def test_head_ping_answers_200_without_a_body(server):
    resp = server.request("HEAD", "/ping")
    assert resp.status == 200
    assert resp.body == b""


def test_execution_parameters_answer_single_record_batches_within_the_body_limit(server):
    resp = server.request("GET", "/execution-parameters")
    assert resp.status == 200
    assert resp.json() == {
        "MaxConcurrentTransforms": 4,
        "BatchStrategy": "SINGLE_RECORD",
        "MaxPayloadInMB": 6,
    }


def test_jpeg_gets_detections_in_original_pixels_sorted_by_score(server):
    resp = server.invoke(BUS)
    assert resp.status == 200
    assert resp.headers["content-type"] == "application/json"
    body = resp.json()
    assert set(body) == {"detections", "image", "model", "timing_ms"}
    assert body["image"] == {"width": 810, "height": 1080}
    assert body["model"] == "test-model"
    assert set(body["timing_ms"]) == {"decode", "preprocess", "inference", "postprocess"}
    dets = body["detections"]
    assert dets, "the test head model finds something on every photo"
    scores = [d["score"] for d in dets]
    assert scores == sorted(scores, reverse=True)
    for det in dets:
        assert set(det) == {"box", "score", "class_id", "label"}
        x1, y1, x2, y2 = det["box"]
        assert 0 <= x1 <= x2 <= 810 and 0 <= y1 <= y2 <= 1080
        assert 0.25 < det["score"] <= 1
        assert det["label"] == ["circle", "square", "triangle"][det["class_id"]]
    assert resp.headers["x-amzn-sagemaker-custom-attributes"] == f"detections={len(dets)}"


@pytest.mark.parametrize(
    ("content_type", "ext"),
    [
        ("image/jpeg", ".jpg"),
        ("image/png", ".png"),
        ("image/webp", ".webp"),
        ("image/bmp", ".bmp"),
        ("application/x-image", ".png"),
        ("application/octet-stream", ".jpg"),
        ("image/png; charset=binary", ".png"),
    ],
)
def test_every_accepted_content_type_is_served(server, content_type, ext):
    image = shapes_image(200, 150, seed=3)
    resp = server.invoke(encode(image, ext), content_type)
    assert resp.status == 200, resp.body[:300]
    assert resp.json()["image"] == {"width": 200, "height": 150}


def test_body_without_content_type_is_sniffed_as_an_image(server):
    resp = server.request("POST", "/invocations", ZIDANE)
    assert resp.status == 200
    assert resp.json()["image"]["width"] == 1280


def test_json_body_with_base64_image_gets_the_same_answer_as_raw_bytes(server):
    raw = server.invoke(BUS).json()
    for text in (
        base64.b64encode(BUS).decode(),
        base64.encodebytes(BUS).decode(),  # wrapped at 76 columns
        "data:image/jpeg;base64," + base64.b64encode(BUS).decode(),
        base64.urlsafe_b64encode(BUS).decode(),
    ):
        resp = server.invoke(json.dumps({"image": text}).encode(), "application/json")
        assert resp.status == 200, resp.body[:300]
        assert resp.json()["detections"] == raw["detections"]


# --- options ----------------------------------------------------------------------------------


def _dets(resp: Response) -> list[dict]:
    assert resp.status == 200, resp.body[:300]
    return resp.json()["detections"]


def test_options_in_the_custom_attributes_header_narrow_the_answer(server):
    everything = _dets(server.invoke(BUS))
    assert len(everything) > 3
    confident = _dets(server.invoke(BUS, X_Amzn_SageMaker_Custom_Attributes="conf=0.5"))
    assert confident == [d for d in everything if d["score"] > 0.5]
    assert (
        _dets(server.invoke(BUS, X_Amzn_SageMaker_Custom_Attributes="max_det=3")) == everything[:3]
    )
    squares = _dets(server.invoke(BUS, X_Amzn_SageMaker_Custom_Attributes="classes=1"))
    assert squares and {d["class_id"] for d in squares} == {1}
    by_name = _dets(server.invoke(BUS, X_Amzn_SageMaker_Custom_Attributes="classes=square;circle"))
    assert {d["class_id"] for d in by_name} <= {0, 1}
    several = "conf=0.3, iou=0.3, max_det=5, classes=0;2, agnostic=true, trace=abc"
    dets = _dets(server.invoke(BUS, X_Amzn_SageMaker_Custom_Attributes=several))
    assert len(dets) <= 5 and all(d["score"] > 0.3 and d["class_id"] in (0, 2) for d in dets)


def test_agnostic_nms_keeps_no_more_than_per_class_nms(server):
    per_class = _dets(server.invoke(BUS, X_Amzn_SageMaker_Custom_Attributes="iou=0.2"))
    agnostic = _dets(server.invoke(BUS, X_Amzn_SageMaker_Custom_Attributes="iou=0.2,agnostic=true"))
    assert len(agnostic) < len(per_class)


def test_options_in_the_json_body_win_over_the_header(server):
    body = json.dumps({"image": base64.b64encode(BUS).decode(), "max_det": 2, "classes": [1]})
    dets = _dets(
        server.invoke(
            body.encode(), "application/json", X_Amzn_SageMaker_Custom_Attributes="max_det=10"
        )
    )
    assert len(dets) == 2 and {d["class_id"] for d in dets} == {1}


@pytest.mark.parametrize(
    ("header", "key"),
    [
        ("conf=abc", "conf"),
        ("conf=1.5", "conf"),
        ("conf=nan", "conf"),
        ("iou=-0.1", "iou"),
        ("max_det=0", "max_det"),
        ("max_det=2.5", "max_det"),
        ("max_det=100000", "max_det"),
        ("classes=7", "classes"),
        ("classes=dog", "classes"),
        ("classes=", "classes"),
        ("agnostic=maybe", "agnostic"),
    ],
)
def test_bad_option_in_the_header_gets_400_naming_the_key(server, header, key):
    resp = server.invoke(ZIDANE, X_Amzn_SageMaker_Custom_Attributes=header)
    assert_json_error(resp, 400, f"'{key}'")
    assert_still_serving(server)


@pytest.mark.parametrize(
    ("options", "key"),
    [
        ({"conf": "high"}, "conf"),
        ({"conf": True}, "conf"),
        ({"iou": [0.5]}, "iou"),
        ({"max_det": 1.5}, "max_det"),
        ({"classes": 1}, "classes"),
        ({"classes": [True]}, "classes"),
        ({"agnostic": "sometimes"}, "agnostic"),
        ({"cnof": 0.5}, "cnof"),
    ],
)
def test_bad_option_in_the_json_body_gets_400_naming_the_key(server, options, key):
    body = json.dumps({"image": base64.b64encode(ZIDANE).decode(), **options}).encode()
    resp = server.invoke(body, "application/json")
    assert_json_error(resp, 400, f"'{key}'")
    assert_still_serving(server)


# --- bad input: each gets a JSON error, and the next request is served -------------------------


def test_empty_body_gets_400_and_server_keeps_serving(server):
    assert_json_error(server.invoke(b""), 400, "empty")
    assert_still_serving(server)


def test_bytes_that_are_no_image_get_400_and_server_keeps_serving(server):
    noise = np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes()
    assert_json_error(server.invoke(noise, "application/octet-stream"), 400, "not a supported")
    assert_json_error(server.invoke(b"GIF89a" + noise, "image/png"), 400, "not a supported")
    assert_still_serving(server)


@pytest.mark.parametrize("keep", [0.999, 0.9, 0.5, 0.01])
def test_truncated_jpeg_gets_400_and_server_keeps_serving(server, keep):
    resp = server.invoke(BUS[: int(len(BUS) * keep)])
    assert_json_error(resp, 400, "truncated")
    assert_still_serving(server)


@pytest.mark.parametrize("ext", [".png", ".webp", ".bmp"])
def test_truncated_png_webp_bmp_get_400_and_server_keeps_serving(server, ext):
    data = encode(shapes_image(300, 200, seed=1), ext)
    assert_json_error(server.invoke(data[: len(data) * 2 // 3], "image/png"), 400, "truncated")
    assert_still_serving(server)


def test_wrong_content_type_gets_415_and_server_keeps_serving(server):
    for content_type in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data"):
        resp = server.invoke(ZIDANE, content_type)
        assert_json_error(resp, 415, content_type, "image/jpeg")
    assert_still_serving(server)


def test_body_over_the_limit_gets_413_and_server_keeps_serving(server):
    body = BUS + b"\0" * (6 * 1024 * 1024 + 1 - len(BUS))
    assert_json_error(server.invoke(body), 413, "6291457 bytes", "6291456")
    assert_still_serving(server)


def _png_header_claiming(width: int, height: int) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    return (
        b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + chunk + struct.pack(">I", zlib.crc32(chunk))
    )


def test_image_whose_header_claims_too_many_pixels_gets_413_before_decoding(server):
    # 60000 x 60000 would need 10 GiB decoded; the header alone is refused (default 50 MP).
    bomb = _png_header_claiming(60000, 60000) + zlib.compress(b"\0" * 100000)
    assert_json_error(server.invoke(bomb, "image/png"), 413, "3600000000 pixels")
    assert_still_serving(server)


def test_malformed_json_gets_400_and_server_keeps_serving(server):
    for body in (b'{"image": ', b"\xff\xfe", b"[1, 2]", b'"text"', b"{}", b'{"image": 5}'):
        assert_json_error(server.invoke(body, "application/json"), 400)
    assert_still_serving(server)


def test_bad_base64_gets_400_and_server_keeps_serving(server):
    for text in ("not base64 at all!", "QUJD=x", "é"):
        resp = server.invoke(json.dumps({"image": text}).encode(), "application/json")
        assert_json_error(resp, 400, "base64")
    resp = server.invoke(json.dumps({"image": "aGVsbG8gd29ybGQ="}).encode(), "application/json")
    assert_json_error(resp, 400, "not a supported image")
    assert_still_serving(server)


def test_unsupported_accept_gets_406_and_server_keeps_serving(server):
    for accept in ("text/html", "image/gif", "application/xml", "image/jpeg;q=0"):
        assert_json_error(server.invoke(ZIDANE, Accept=accept), 406, "application/json")
    assert_still_serving(server)


def test_wrong_method_and_unknown_path_get_json_errors(server):
    assert_json_error(server.request("GET", "/invocations"), 405)
    assert_json_error(server.request("POST", "/ping"), 405)
    assert_json_error(server.request("GET", "/nope"), 404)
    assert_still_serving(server)


def test_broken_http_gets_an_answer_and_server_keeps_serving(server):
    import socket

    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(b"POST /invocations HTTP/1.1\r\nContent-Length: nope\r\n\r\n")
        assert sock.recv(100).startswith(b"HTTP/1.1 400")
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(b"POST /invocations HTTP/1.1\r\nContent-Length: 100\r\n\r\nshort")
    assert_still_serving(server)


# --- answers ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("accept", "magic"), [("image/jpeg", b"\xff\xd8\xff"), ("image/png", b"\x89PNG")]
)
def test_accept_image_returns_the_picture_with_boxes_at_original_size(server, accept, magic):
    resp = server.invoke(BUS, Accept=accept)
    assert resp.status == 200
    assert resp.headers["content-type"] == accept
    assert resp.body.startswith(magic)
    picture = decode(resp.body)
    assert picture.shape == (1080, 810, 3)
    original = cv2.imdecode(np.frombuffer(BUS, np.uint8), cv2.IMREAD_COLOR)
    assert np.abs(picture.astype(int) - original.astype(int)).max() > 100  # boxes were drawn
    count = len(server.invoke(BUS).json()["detections"])
    assert resp.headers["x-amzn-sagemaker-custom-attributes"] == f"detections={count}"


def test_accept_wildcards_pick_json_first(server):
    assert server.invoke(ZIDANE, Accept="*/*").headers["content-type"] == "application/json"
    assert server.invoke(ZIDANE, Accept="image/*").headers["content-type"] == "image/jpeg"


def test_errors_are_json_even_when_a_picture_was_asked_for(server):
    assert_json_error(server.invoke(b"nothing", Accept="image/png"), 400)


def test_no_cors_headers_on_any_answer(server):
    answers = [
        server.invoke(ZIDANE, Origin="https://evil.example"),
        server.request("OPTIONS", "/invocations", headers={"Origin": "https://evil.example"}),
        server.request("GET", "/ping", headers={"Origin": "https://evil.example"}),
    ]
    for resp in answers:
        assert not [h for h in resp.headers if h.startswith("access-control-")]


def test_each_request_writes_one_json_log_line_with_its_request_id(server):
    resp = server.invoke(ZIDANE)
    request_id = resp.headers["x-request-id"]
    lines = [r for r in server.log_records() if r.get("request_id") == request_id]
    assert len(lines) == 1
    line = lines[0]
    assert line["message"] == "request" and line["level"] == "INFO"
    assert line["method"] == "POST" and line["path"] == "/invocations" and line["status"] == 200
    assert line["bytes"] == len(resp.body)
    assert line["detections"] == len(resp.json()["detections"])
    assert line["latency_ms"] > 0


def test_a_sane_incoming_request_id_is_kept_and_a_hostile_one_replaced(server):
    assert server.invoke(ZIDANE, X_Request_Id="abc-123").headers["x-request-id"] == "abc-123"
    hostile = server.invoke(ZIDANE, X_Request_Id='x" \\n{"level": "ERROR"}')
    assert hostile.headers["x-request-id"] != 'x" \\n{"level": "ERROR"}'
    assert len(hostile.headers["x-request-id"]) == 32
