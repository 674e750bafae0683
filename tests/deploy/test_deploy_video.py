"""A video clip through an asynchronous endpoint against moto's server, SageMaker's part played by
the test (tests/support/async_sagemaker.py) and the real `python -m serve` answering: up --async
sizes the container for clips -> invoke --async clip.mp4 (progress, per-frame summary, --save
JSON or the annotated mp4, an hour's InvocationTimeoutSeconds) -> transform over the clips
(JSON Lines) -> down."""

from __future__ import annotations

import json

import pytest

from deploy.video import ASYNC_VIDEO_BYTES, ASYNC_VIDEO_SECONDS, VIDEO_INVOCATION_TIMEOUT_S
from tests.support.async_sagemaker import AsyncSageMaker
from tests.support.aws import IMAGE, REGION, not_in_policy, state
from tests.support.video import moving_shapes, read_frames, write_clip

BUCKET = "yolov7-async-clips"
OUTPUT = f"s3://{BUCKET}/clips/output"

pytestmark = pytest.mark.slow  # exports the bundled checkpoint, runs a server, ~20 inferences


@pytest.fixture
def clips_bucket(moto):
    s3 = moto.client("s3")
    s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})


def test_a_clip_through_an_async_endpoint_and_a_transform_job(
    moto, cli, clips_bucket, shapes_onnx, sagemaker_like_server, api_calls, monkeypatch, tmp_path
):
    sm = moto.client("sagemaker")
    sagemaker = AsyncSageMaker(moto).install(monkeypatch)
    packaged = cli("package", shapes_onnx)
    assert packaged.code == 0, packaged.err
    up = cli(
        *("up", "--async", "--image", IMAGE, "--instance-type", "ml.c5.xlarge"),
        *("--output", OUTPUT, "--poll", "0"),
    )
    assert up.code == 0, up.err
    recorded = state(tmp_path)["endpoint"]
    environment = sm.describe_model(ModelName=recorded["model"])["PrimaryContainer"]["Environment"]
    assert environment["MAX_VIDEO_BYTES"] == str(ASYNC_VIDEO_BYTES) == str(1024**3)
    assert environment["SERVE_VIDEO_SECONDS"] == str(ASYNC_VIDEO_SECONDS)
    assert ASYNC_VIDEO_SECONDS < VIDEO_INVOCATION_TIMEOUT_S == 3600
    sagemaker.container_url = sagemaker_like_server(packaged.out.strip(), environment, moto)

    pictures, truth = moving_shapes(20, seed=21)
    clip = write_clip(tmp_path / "street.mp4", pictures)
    answer = cli("invoke", "--async", clip, "--poll", "0.05", "--timeout", "120")
    assert answer.code == 0, answer.err
    assert "async: 1/1 answers" in answer.err  # the progress line
    lines = answer.out.strip().splitlines()
    with_shapes = sum(bool(boxes) for boxes in truth)
    assert lines[0].startswith(f"20 frames computed, {with_shapes} with detections (320x320")
    labels = {line.split()[0] for line in lines[1:-1]}
    assert labels and labels <= {"circle", "square", "triangle"}
    assert "(async, s3://" in lines[-1]
    (request,) = sagemaker.requests
    assert request["content_type"] == "video/mp4" and request["status"] == 200
    assert request["invocation_timeout"] == VIDEO_INVOCATION_TIMEOUT_S
    assert request["input"].endswith("/street.mp4")

    # --save OUT.json: the whole answer; --save OUT.mp4: the annotated clip beside the JSON
    saved = cli("invoke", "--async", clip, "--save", tmp_path / "answer.json", "--poll", "0.05")
    assert saved.code == 0, saved.err
    document = json.loads((tmp_path / "answer.json").read_text())
    assert [f["frame"] for f in document["frames"]] == list(range(20))
    assert sagemaker.requests[-1]["accept"] == "application/json"
    drawn = cli("invoke", "--async", clip, "--save", tmp_path / "boxes.mp4", "--poll", "0.05")
    assert drawn.code == 0, drawn.err
    assert [r["accept"] for r in sagemaker.requests[-2:]] == ["application/json", "video/mp4"]
    frames = read_frames(tmp_path / "boxes.mp4")
    assert len(frames) == 20 and frames[0].shape == (320, 320, 3)

    # a clip with frame options, sent with the --invocation-timeout asked for
    shorter = cli(
        *("invoke", "--async", clip, "--invocation-timeout", "600", "--json"),
        *("--poll", "0.05"),
    )
    assert shorter.code == 0, shorter.err
    assert sagemaker.requests[-1]["invocation_timeout"] == 600
    assert len(json.loads(shorter.out)["frames"]) == 20

    # transform over the uploaded clips: one JSON line per frame
    batch = cli("transform", "--content-type", "video/mp4", "--poll", "0")
    assert batch.code == 0, batch.err
    job = sm.describe_transform_job(TransformJobName=state(tmp_path)["transform_jobs"][-1]["name"])
    assert job["TransformInput"]["ContentType"] == "video/mp4"
    assert job["TransformOutput"]["Accept"] == "application/jsonlines"

    gone = cli("down", "--delete-model-data", "--poll", "0")
    assert gone.code == 0, gone.err
    assert sm.list_endpoints()["Endpoints"] == []
    assert not_in_policy(api_calls) == []


def test_a_clip_over_the_endpoint_video_limit_is_refused_before_upload(
    moto, cli, clips_bucket, monkeypatch, tmp_path
):
    AsyncSageMaker(moto).install(monkeypatch)
    up = cli(
        *("up", "--async", "--image", IMAGE, "--instance-type", "ml.c5.xlarge"),
        *("--output", OUTPUT, "--poll", "0", "--env", "MAX_VIDEO_BYTES=1000"),
    )
    assert up.code == 0, up.err
    pictures, _ = moving_shapes(5, seed=2)
    clip = write_clip(tmp_path / "big.mp4", pictures)
    refused = cli("invoke", "--async", clip)
    assert refused.code == 2
    line = refused.error_line()
    assert "big.mp4" in line and "MAX_VIDEO_BYTES" in line
    assert cli("down", "--poll", "0").code == 0
