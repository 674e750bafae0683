"""`invoke`: through sagemaker-runtime (Stubber) and through --url against the real server."""

from __future__ import annotations

import io
import json

import pytest
from botocore.response import StreamingBody

from tests.support.aws import ROOT, write_state
from tests.support.server import free_port, local_server
from tests.support.video import moving_shapes, write_clip

PICTURE = ROOT / "samples" / "shapes" / "shapes-01.png"
ANSWER = {
    "detections": [
        {"box": [54.2, 151.0, 86.4, 183.1], "score": 0.9312, "class_id": 1, "label": "square"},
        {"box": [227.0, 268.5, 259.9, 300.0], "score": 0.8801, "class_id": 0, "label": "circle"},
    ],
    "image": {"width": 320, "height": 320},
    "model": "shapes-yolov7-tiny",
    "timing_ms": {"decode": 1.2, "preprocess": 0.8, "inference": 14.1, "postprocess": 0.4},
}


def streaming(data: bytes) -> StreamingBody:
    return StreamingBody(io.BytesIO(data), len(data))


def write_endpoint_state(home, **endpoint) -> None:
    write_state(home, endpoint={"name": "yolov7-e", "model": "yolov7-model-x", **endpoint})


def test_invoke_sends_raw_bytes_and_thresholds_as_custom_attributes(moto, cli, stubbed, tmp_path):
    write_endpoint_state(tmp_path, instance_type="ml.c5.xlarge")
    body = PICTURE.read_bytes()
    runtime = stubbed.stub("sagemaker-runtime")
    expected = {
        "EndpointName": "yolov7-e",
        "Body": body,
        "ContentType": "image/png",
        "CustomAttributes": "conf=0.3,iou=0.5,max_det=100",
    }
    runtime.add_response(
        "invoke_endpoint",
        {
            "Body": streaming(json.dumps(ANSWER).encode()),
            "ContentType": "application/json",
            "CustomAttributes": "detections=2",
            "InvokedProductionVariant": "AllTraffic",
        },
        {**expected, "Accept": "application/json"},
    )
    jpeg = b"\xff\xd8\xff\xe0" + b"\x00" * 64
    runtime.add_response(
        "invoke_endpoint",
        {"Body": streaming(jpeg), "ContentType": "image/jpeg"},
        {**expected, "Accept": "image/jpeg"},
    )
    saved = tmp_path / "pictures" / "out.jpg"
    result = cli(
        "invoke", PICTURE, "--conf", "0.3", "--iou", "0.5", "--max-det", "100", "--save", saved,
        aws=stubbed,
    )  # fmt: skip
    assert result.code == 0, result.err
    stubbed.verify()
    lines = result.out.splitlines()
    assert lines[0].split() == ["#", "label", "score", "x1", "y1", "x2", "y2"]
    assert lines[1].split() == ["1", "square", "0.931", "54.2", "151.0", "86.4", "183.1"]
    assert lines[3].startswith(
        "2 detections, 320x320 image, model shapes-yolov7-tiny, server 16.5 ms, round trip "
    )
    assert lines[3].endswith("from endpoint yolov7-e")
    assert saved.read_bytes() == jpeg


def test_invoke_json_prints_the_servers_answer(moto, cli, stubbed, tmp_path):
    write_endpoint_state(tmp_path)
    runtime = stubbed.stub("sagemaker-runtime")
    runtime.add_response(
        "invoke_endpoint",
        {"Body": streaming(json.dumps(ANSWER).encode()), "ContentType": "application/json"},
    )
    result = cli("invoke", PICTURE, "--json", aws=stubbed)
    assert result.code == 0 and json.loads(result.out) == ANSWER


def test_a_container_error_names_the_log_group(moto, cli, stubbed, tmp_path):
    write_endpoint_state(tmp_path)
    runtime = stubbed.stub("sagemaker-runtime")
    runtime.add_client_error(
        "invoke_endpoint",
        "ModelError",
        "Received client error (400) from primary with message "
        '"{"error": "cannot decode the image", "status": 400}".',
        http_status_code=424,
    )
    result = cli("invoke", PICTURE, aws=stubbed)
    assert result.code == 1
    line = result.error_line()
    assert "the container behind yolov7-e returned an error: Received client error (400)" in line
    assert "CloudWatch log group /aws/sagemaker/Endpoints/yolov7-e" in line


def test_invoke_rejects_bad_thresholds_before_sending(moto, cli, tmp_path):
    write_endpoint_state(tmp_path)
    result = cli("invoke", PICTURE, "--conf", "1.5")
    assert result.code == 2
    assert result.error_line() == "error: --conf must be between 0 and 1."


@pytest.fixture(scope="module")
def local_serve(shapes_onnx):
    """`python -m serve` with the exported model on loopback: the --url target."""
    with local_server(shapes_onnx) as server:
        yield server.url


def test_invoke_url_reports_the_servers_400_as_an_input_error(moto, cli, local_serve, tmp_path):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 this is not really a JPEG")
    result = cli("invoke", broken, "--url", local_serve)
    assert result.code == 2
    line = result.error_line()
    assert line.startswith(f"error: {local_serve}/invocations answered HTTP 400: ")


def test_invoke_url_that_nobody_listens_on(moto, cli):
    url = f"http://127.0.0.1:{free_port()}"
    result = cli("invoke", PICTURE, "--url", url)
    assert result.code == 1
    assert result.error_line().startswith(f"error: could not reach {url}/invocations: ")


def test_invoke_url_table_against_our_server(moto, cli, local_serve):
    result = cli("invoke", PICTURE, "--url", local_serve + "/", "--conf", "0.5")
    assert result.code == 0, result.err
    assert (
        "model shapes-yolov7-tiny" in result.out and f"from {local_serve}/invocations" in result.out
    )


def test_invoke_url_prints_a_clips_per_frame_summary(moto, cli, local_serve, tmp_path):
    pictures, truth = moving_shapes(6, seed=31)
    clip = write_clip(tmp_path / "clip.mp4", pictures)
    result = cli("invoke", clip, "--url", local_serve)
    assert result.code == 0, result.err
    lines = result.out.strip().splitlines()
    with_shapes = sum(bool(boxes) for boxes in truth)
    assert lines[0].startswith(f"6 frames computed, {with_shapes} with detections (320x320")
    assert local_serve in lines[-1]


def test_invoke_of_a_clip_on_a_real_time_endpoint_points_to_async(moto, cli, tmp_path):
    write_endpoint_state(tmp_path)
    clip = write_clip(tmp_path / "clip.mp4", moving_shapes(2, seed=1)[0])
    result = cli("invoke", clip)
    assert result.code == 2
    assert "clip.mp4 is a video clip: send it with --async" in result.error_line()
