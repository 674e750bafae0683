"""Images too big for real time, against the real `python -m serve`:
- the server takes a ~20 MB, 50 MP JPEG under an async endpoint's limits and refuses it with its
  JSON 413 under the real-time ones;
- real-time `invoke` of a photo over the payload limit sends it shrunk and maps the boxes back to
  the original's pixels; over what any re-encoding fits, it says to use --async."""

from __future__ import annotations

import io
import json
import urllib.error
import urllib.request

import cv2
import numpy as np
import pytest
from botocore.response import StreamingBody

from demo.shapes import make_image
from deploy import payload
from deploy.async_inference import ASYNC_ENVIRONMENT
from deploy.errors import UserError
from tests.support.aws import DIRECT, write_state
from tests.support.reference import found_truth
from tests.support.server import local_server

MIB = 1024 * 1024


@pytest.fixture(scope="module")
def fifty_megapixels(tmp_path_factory) -> bytes:
    """8190 x 6100 (49.96 MP) of shapes and sensor-like noise, ~20 MB as JPEG."""
    tile, _ = make_image(np.random.default_rng(5), 610, 819)
    image = np.tile(tile, (10, 10, 1))
    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 92])
    assert ok and 15e6 < data.size < 4 * 6 * MIB  # under waitress's 4x: the app itself answers
    return data.tobytes()


def post(url: str, body: bytes) -> tuple[int, dict]:
    request = urllib.request.Request(
        f"{url}/invocations", data=body, headers={"Content-Type": "image/jpeg"}, method="POST"
    )
    try:
        with DIRECT.open(request, timeout=120) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as exc:
        assert exc.headers["Content-Type"].startswith("application/json")
        return exc.code, json.loads(exc.read())


def test_server_takes_a_50_megapixel_jpeg_under_async_limits_only(shapes_onnx, fifty_megapixels):
    with local_server(shapes_onnx, env=ASYNC_ENVIRONMENT) as server:
        status, answer = post(server.url, fifty_megapixels)
    assert status == 200, answer
    assert answer["image"] == {"width": 8190, "height": 6100}
    assert answer["detections"]
    with local_server(shapes_onnx) as server:  # the real-time defaults: 6 MiB
        status, answer = post(server.url, fifty_megapixels)
    assert status == 413
    assert f"{len(fifty_megapixels)} bytes" in answer["error"] and answer["status"] == 413


@pytest.fixture(scope="module")
def big_photo(tmp_path_factory):
    """A 12 MP JPEG at quality 100: 10.6 MiB, over the 6 MiB real-time limit, and its truth."""
    image, truth = make_image(np.random.default_rng(12), 3024, 4032)
    path = tmp_path_factory.mktemp("photos") / "phone.jpg"
    assert cv2.imwrite(str(path), image, [cv2.IMWRITE_JPEG_QUALITY, 100])
    assert path.stat().st_size > payload.REALTIME_LIMIT
    return path, truth


def test_invoke_shrinks_an_oversized_photo_and_maps_boxes_back(moto, cli, shapes_onnx, big_photo):
    path, truth = big_photo
    with local_server(shapes_onnx) as server:  # the real-time limits: 6 MiB
        result = cli("invoke", path, "--url", server.url, "--json")
    assert result.code == 0, result.err
    assert "over the 6.0 MiB payload limit: sending it as a JPEG (quality 90" in result.err
    assert "at its full 4032x3024; boxes are mapped back" in result.err
    data = json.loads(result.out)
    assert data["image"] == {"width": 4032, "height": 3024}
    assert data["sent_image"]["bytes"] <= payload.REALTIME_LIMIT
    assert found_truth(data["detections"], truth) >= 0.8, (data["detections"], truth)


def test_shrinking_keeps_at_least_the_models_resolution_and_maps_back(big_photo):
    path, _ = big_photo
    data = path.read_bytes()
    fitted = payload.fit(path, data, "image/jpeg", 600_000)
    assert fitted.resized and max(fitted.sent) >= payload.MIN_LONG_SIDE
    assert len(fitted.body) <= 600_000 and fitted.content_type == "image/jpeg"
    sent_w, sent_h = fitted.sent
    answer = {"detections": [{"box": [0, 0, sent_w, sent_h]}], "image": {}}
    assert fitted.map_back(answer)["detections"][0]["box"] == [0, 0, 4032, 3024]
    assert payload.fit(path, data, "image/jpeg", len(data)).body is data  # fits: untouched
    with pytest.raises(UserError, match="even a 1280x960 JPEG of it is larger") as info:
        payload.fit(path, data, "image/jpeg", 20_000)
    assert "invoke --async" in info.value.line()


def test_an_oversized_file_that_is_no_image_points_to_async(moto, cli, tmp_path):
    junk = tmp_path / "huge.jpg"
    junk.write_bytes(np.random.default_rng(0).integers(0, 256, 7 * MIB, np.uint8).tobytes())
    result = cli("invoke", junk, "--url", "http://127.0.0.1:9")  # refused before any request
    assert result.code == 2
    line = result.error_line()
    assert "cannot be decoded" in line and "invoke --async" in line


def test_serverless_invoke_fits_its_4_mb_limit(moto, cli, stubbed, big_photo, tmp_path):
    path, _ = big_photo
    write_state(tmp_path, endpoint={"name": "yolov7-s", "serverless": {"memory_mb": 2048}})
    sent: list[bytes] = []
    runtime = stubbed.client("sagemaker-runtime")
    runtime.meta.events.register(
        "before-parameter-build.sagemaker-runtime.InvokeEndpoint",
        lambda params, **_: sent.append(params["Body"]),
    )
    answer = {"detections": [{"box": [10, 10, 20, 20], "score": 0.9, "label": "circle"}]}
    body = json.dumps({**answer, "image": {"width": 0, "height": 0}}).encode()
    stubbed.stub("sagemaker-runtime").add_response(
        "invoke_endpoint",
        {"Body": StreamingBody(io.BytesIO(body), len(body)), "ContentType": "application/json"},
    )
    result = cli("invoke", path, "--json", aws=stubbed)
    assert result.code == 0, result.err
    (request,) = sent
    assert len(request) <= payload.SERVERLESS_LIMIT and request[:3] == b"\xff\xd8\xff"
    data = json.loads(result.out)
    sent_w = data["sent_image"]["width"]
    assert data["detections"][0]["box"][0] == pytest.approx(10 * 4032 / sent_w, abs=0.01)
