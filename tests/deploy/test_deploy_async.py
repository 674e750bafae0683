"""Asynchronous endpoints against moto's server, with SageMaker's part played by the test
(tests/support/async_sagemaker.py) and the real `python -m serve` answering: up --async ->
invoke --async (a 12 MP photo) -> autoscale --min 0 -> status -> transform over the same inputs ->
down. Then the bad inputs: one `error:` line each, and nothing half created."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from demo.shapes import make_image
from deploy.async_inference import ASYNC_MAX_BODY_BYTES
from deploy.video import ASYNC_VIDEO_BYTES, ASYNC_VIDEO_SECONDS
from tests.support.async_sagemaker import AsyncSageMaker
from tests.support.aws import IMAGE, REGION, ROOT, TAG, not_in_policy, state
from tests.support.reference import found_truth

BUCKET = "yolov7-async-photos"
OUTPUT = f"s3://{BUCKET}/photos/output"
TOPICS = ("yolov7-answers", "yolov7-failures")
MISSING_TOPIC = f"arn:aws:sns:{REGION}:123456789012:yolov7-nope"


def twelve_megapixel_photo(path) -> list:
    """A 4032 x 3024 JPEG (a phone's 12 MP) of shapes the bundled model knows, and its truth."""
    image, truth = make_image(np.random.default_rng(12), 3024, 4032)
    assert cv2.imwrite(str(path), image, [cv2.IMWRITE_JPEG_QUALITY, 95])
    return truth


@pytest.fixture
def photos_bucket(moto):
    s3 = moto.client("s3")
    s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
    sns = moto.client("sns")
    return [sns.create_topic(Name=name)["TopicArn"] for name in TOPICS]


def test_async_whole_life_up_invoke_scale_to_zero_down(
    moto,
    cli,
    photos_bucket,
    shapes_onnx,
    sagemaker_like_server,
    api_calls,
    monkeypatch,
    tmp_path,
):
    sm, s3 = moto.client("sagemaker"), moto.client("s3")
    aas, cloudwatch = moto.client("application-autoscaling"), moto.client("cloudwatch")
    success, error = photos_bucket
    sagemaker = AsyncSageMaker(moto).install(monkeypatch)

    packaged = cli("package", shapes_onnx)
    assert packaged.code == 0, packaged.err
    model_data = packaged.out.strip()

    # up --async: the config moto recorded, the container's async limits
    up = cli(
        *(
            "up",
            "--async",
            "--image",
            IMAGE,
            "--instance-type",
            "ml.c5.xlarge",
            "--output",
            OUTPUT,
            "--conf",
            "0.3",
        ),
        *("--notify-success", success, "--notify-error", error),
        *("--max-concurrent-per-instance", "2", "--poll", "0"),
    )
    assert up.code == 0, up.err
    recorded = state(tmp_path)["endpoint"]
    endpoint = recorded["name"]
    assert "asynchronous" in up.err
    config = sm.describe_endpoint_config(EndpointConfigName=recorded["config"])
    assert config["AsyncInferenceConfig"] == {
        "OutputConfig": {
            "S3OutputPath": f"s3://{BUCKET}/photos/output",
            "S3FailurePath": f"s3://{BUCKET}/photos/failure",
            "NotificationConfig": {"SuccessTopic": success, "ErrorTopic": error},
        },
        "ClientConfig": {"MaxConcurrentInvocationsPerInstance": 2},
    }
    environment = sm.describe_model(ModelName=recorded["model"])["PrimaryContainer"]["Environment"]
    assert environment == {
        "MAX_BODY_BYTES": str(ASYNC_MAX_BODY_BYTES),
        "MAX_IMAGE_PIXELS": "50000000",
        "SERVE_QUEUE_DEADLINE": "3600",
        "MAX_VIDEO_BYTES": str(ASYNC_VIDEO_BYTES),
        "SERVE_VIDEO_SECONDS": str(ASYNC_VIDEO_SECONDS),
        "YOLO_CONF": "0.3",
    }
    assert recorded["async_inference"]["input"] == f"s3://{BUCKET}/photos/input/"

    # invoke --async: a 12 MP photo (over the real-time limit's comfort), answered by our server
    sagemaker.container_url = sagemaker_like_server(model_data, environment, moto)
    photo = tmp_path / "phone.jpg"
    truth = twelve_megapixel_photo(photo)
    answer = cli("invoke", "--async", photo, "--json", "--poll", "0.05", "--timeout", "60")
    assert answer.code == 0, answer.err
    data = json.loads(answer.out)
    assert data["image"] == {"width": 4032, "height": 3024}
    assert found_truth(data["detections"], truth) >= 0.8, (data["detections"], truth)
    assert "async: 1/1 answers" in answer.err
    (request,) = sagemaker.requests
    assert request["input"].startswith(f"s3://{BUCKET}/photos/input/")
    assert request["input"].endswith("/phone.jpg") and request["content_type"] == "image/jpeg"
    assert request["accept"] == "application/json" and request["status"] == 200
    bucket, _, key = request["input"][5:].partition("/")
    assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == photo.read_bytes()
    stamp = key.split("/")[-2]
    assert request["output"].startswith(f"s3://{BUCKET}/photos/output/{stamp}/")
    out_key = request["output"][5:].partition("/")[2]
    assert json.loads(s3.get_object(Bucket=BUCKET, Key=out_key)["Body"].read()) == data

    # the table and the annotated picture, as the real-time invoke prints them
    table = cli("invoke", "--async", photo, "--max-det", "2", "--save", tmp_path / "out.jpg")
    assert table.code == 0, table.err
    lines = table.out.strip().splitlines()
    assert lines[0].split() == ["#", "label", "score", "x1", "y1", "x2", "y2"]
    assert lines[-1].startswith("2 detections, 4032x3024 image") and "(async, s3://" in lines[-1]
    assert [r["attributes"] for r in sagemaker.requests[1:]] == ["max_det=2", "max_det=2"]
    saved = cv2.imread(str(tmp_path / "out.jpg"))
    assert saved is not None and saved.shape[:2] == (3024, 4032)

    # a failure object instead of an output: the good answer printed, one error line, exit 1
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff" + b"not really a jpeg" * 100)
    small = ROOT / "samples" / "shapes" / "shapes-00.png"
    failed = cli("invoke", "--async", small, broken, "--poll", "0.05", "--timeout", "60")
    assert failed.code == 1
    line = failed.error_line()
    assert "broken.jpg" in line and "HTTP 400" in line and "-error.out" in line
    assert "320x320 image" in failed.out  # the other answer is still shown
    assert [r["status"] for r in sagemaker.requests[-2:]] == [200, 400]

    # --no-wait: where the answers will be
    queued = cli("invoke", "--async", photo, "--no-wait")
    assert queued.code == 0, queued.err
    assert sagemaker.requests[-1]["output"] in queued.out

    # autoscale --min 0: backlog target tracking, and the alarm + step policy that leave zero
    scaled = cli("autoscale", "--min", "0", "--max", "2")
    assert scaled.code == 0, scaled.err
    resource = f"endpoint/{endpoint}/variant/AllTraffic"
    (target,) = aas.describe_scalable_targets(ServiceNamespace="sagemaker", ResourceIds=[resource])[
        "ScalableTargets"
    ]
    assert (target["MinCapacity"], target["MaxCapacity"]) == (0, 2)
    policies = {
        p["PolicyType"]: p
        for p in aas.describe_scaling_policies(ServiceNamespace="sagemaker", ResourceId=resource)[
            "ScalingPolicies"
        ]
    }
    tracking = policies["TargetTrackingScaling"]["TargetTrackingScalingPolicyConfiguration"]
    assert tracking["TargetValue"] == 5.0
    assert tracking["CustomizedMetricSpecification"]["MetricName"] == (
        "ApproximateBacklogSizePerInstance"
    )
    assert tracking["CustomizedMetricSpecification"]["Dimensions"] == [
        {"Name": "EndpointName", "Value": endpoint}
    ]
    step = policies["StepScaling"]
    assert step["StepScalingPolicyConfiguration"]["StepAdjustments"] == [
        {"MetricIntervalLowerBound": 0.0, "ScalingAdjustment": 1}
    ]
    (alarm,) = cloudwatch.describe_alarms()["MetricAlarms"]
    assert alarm["MetricName"] == "HasBacklogWithoutCapacity"
    assert alarm["Namespace"] == "AWS/SageMaker"
    assert alarm["AlarmActions"] == [step["PolicyARN"]]
    assert TAG in cloudwatch.list_tags_for_resource(ResourceARN=alarm["AlarmArn"])["Tags"]

    shown = cli("status")
    assert shown.code == 0, shown.err
    assert "autoscale  0-2 instances, target 5 queued requests/instance" in shown.out
    assert f"async      backlog n/a (no data in 15 min), 1 instances; s3://{BUCKET}" in shown.out

    # transform over the very inputs the async calls uploaded (the shared layout)
    batch = cli("transform", "--content-type", "image/jpeg", "--poll", "0")
    assert batch.code == 0, batch.err
    job = sm.describe_transform_job(TransformJobName=state(tmp_path)["transform_jobs"][-1]["name"])
    assert job["TransformInput"]["DataSource"]["S3DataSource"]["S3Uri"] == (
        f"s3://{BUCKET}/photos/input/"
    )
    assert job["TransformOutput"]["S3OutputPath"] == f"s3://{BUCKET}/photos/output/"

    # down: the alarm, both policies, the target, the endpoint and its config and model
    gone = cli("down", "--delete-model-data", "--poll", "0")
    assert gone.code == 0, gone.err
    assert f"alarm {alarm['AlarmName']}" in gone.out
    assert cloudwatch.describe_alarms()["MetricAlarms"] == []
    assert aas.describe_scaling_policies(ServiceNamespace="sagemaker")["ScalingPolicies"] == []
    assert aas.describe_scalable_targets(ServiceNamespace="sagemaker")["ScalableTargets"] == []
    assert sm.list_endpoints()["Endpoints"] == []
    assert sm.list_endpoint_configs()["EndpointConfigs"] == []
    assert sm.list_models()["Models"] == []
    assert not (tmp_path / ".deploy" / "state.json").exists()

    made = set(api_calls)
    assert {"sagemaker:InvokeEndpointAsync", "cloudwatch:PutMetricAlarm"} <= made
    assert {"cloudwatch:DeleteAlarms", "sns:GetTopicAttributes", "s3:GetObject"} <= made
    assert not_in_policy(api_calls) == []


# --- bad input: one line, exit 1 or 2, nothing half created -------------------------------------


def nothing_created(moto, tmp_path) -> None:
    sm = moto.client("sagemaker")
    assert sm.list_models()["Models"] == [] and sm.list_endpoint_configs()["EndpointConfigs"] == []
    assert sm.list_endpoints()["Endpoints"] == []
    path = tmp_path / ".deploy" / "state.json"
    assert not path.exists() or not state(tmp_path).get("resources")


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        (("--output", "https://example.com/out"), "is not an s3:// URI"),
        (("--output", "s3://yolov7-no-such-bucket/out"), "yolov7-no-such-bucket does not exist"),
        (("--output", OUTPUT, "--failure", "s3://yolov7-missing-too/f"), "--failure: the S3"),
        (("--output", OUTPUT, "--notify-success", "arn:aws:sns:eu-west-1:1:x"), "not an SNS"),
        (("--output", OUTPUT, "--notify-error", MISSING_TOPIC), "does not exist"),
        (("--output", OUTPUT, "--max-concurrent-per-instance", "0"), "between 1 and 1000"),
        (("--output", OUTPUT, "--serverless-memory", "2048"), "not serverless"),
        ((), "--async needs --output"),
    ],
    ids=["not-s3", "missing-bucket", "missing-failure-bucket", "bad-topic", "missing-topic",
         "concurrency-0", "serverless", "no-output"],
)  # fmt: skip
def test_up_async_bad_input_is_one_line_and_creates_nothing(
    moto, cli, photos_bucket, tmp_path, extra, words
):
    result = cli("up", "--async", "--image", IMAGE, *extra, "--no-wait")
    assert result.code == 2, result.text
    assert words in result.error_line()
    nothing_created(moto, tmp_path)


def test_a_config_aws_rejects_leaves_only_what_down_removes(moto, cli, photos_bucket, tmp_path):
    # moto's list of instance types stands in for any endpoint config that AWS refuses
    result = cli("up", "--async", "--image", IMAGE, "--instance-type", "ml.c6i.xlarge", "--output",
                 OUTPUT, "--no-wait")  # fmt: skip
    assert result.code == 2 and "CreateEndpointConfig" in result.error_line()
    assert [r["type"] for r in state(tmp_path)["resources"]] == ["model"]
    assert cli("down").code == 0
    nothing_created(moto, tmp_path)
    assert not (tmp_path / ".deploy" / "state.json").exists()


def test_async_options_without_async_are_refused(moto, cli, tmp_path):
    result = cli("up", "--image", IMAGE, "--output", OUTPUT, "--no-wait")
    assert result.code == 2 and "Add --async" in result.error_line()
    nothing_created(moto, tmp_path)


def test_min_zero_on_a_real_time_endpoint_is_refused_and_registers_nothing(moto, cli):
    assert cli("up", "--image", IMAGE, "--instance-type", "ml.c5.xlarge", "--poll", "0").code == 0
    result = cli("autoscale", "--min", "0", "--max", "2")
    assert result.code == 2
    assert "--min 0 needs an asynchronous endpoint" in result.error_line()
    aas = moto.client("application-autoscaling")
    assert aas.describe_scalable_targets(ServiceNamespace="sagemaker")["ScalableTargets"] == []
    assert moto.client("cloudwatch").describe_alarms()["MetricAlarms"] == []
    plain = cli("invoke", "--async", __file__)
    assert plain.code == 2 and "not an asynchronous endpoint" in plain.error_line()


def test_invoke_async_waits_only_as_long_as_told(moto, cli, photos_bucket, monkeypatch, tmp_path):
    AsyncSageMaker(moto).install(monkeypatch)  # no container: the request stays queued
    assert (
        cli(
            "up",
            "--async",
            "--image",
            IMAGE,
            "--instance-type",
            "ml.c5.xlarge",
            "--output",
            OUTPUT,
            "--poll",
            "0",
        ).code
        == 0
    )
    picture = tmp_path / "a.png"
    cv2.imwrite(str(picture), np.zeros((8, 8, 3), np.uint8))
    result = cli("invoke", "--async", picture, "--poll", "0.05", "--timeout", "0.3")
    assert result.code == 1
    line = result.error_line()
    assert "gave up waiting after 0:00 for 1 answer(s)" in line and "/photos/output/" in line
    missing = cli("invoke", "--async", tmp_path / "nope.jpg")
    assert missing.code == 2 and "no image file" in missing.error_line()
    down = cli("down", "--poll", "0")
    assert down.code == 0, down.err
    nothing_created(moto, tmp_path)


def test_scale_to_zero_is_undone_by_off_and_by_down_without_state(
    moto, cli, photos_bucket, tmp_path
):
    up = ("up", "--async", "--image", IMAGE, "--instance-type", "ml.c5.xlarge", "--output", OUTPUT)
    assert cli(*up, "--poll", "0").code == 0
    aas, cloudwatch = moto.client("application-autoscaling"), moto.client("cloudwatch")
    assert cli("autoscale", "--min", "0", "--max", "3").code == 0
    assert len(cloudwatch.describe_alarms()["MetricAlarms"]) == 1
    assert cli("autoscale", "--min", "1", "--max", "3").code == 0  # off zero: no alarm needed
    assert cloudwatch.describe_alarms()["MetricAlarms"] == []
    policies = aas.describe_scaling_policies(ServiceNamespace="sagemaker")["ScalingPolicies"]
    assert [p["PolicyType"] for p in policies] == ["TargetTrackingScaling"]
    assert cli("autoscale", "--off").code == 0
    assert cloudwatch.describe_alarms()["MetricAlarms"] == []
    assert aas.describe_scaling_policies(ServiceNamespace="sagemaker")["ScalingPolicies"] == []
    assert aas.describe_scalable_targets(ServiceNamespace="sagemaker")["ScalableTargets"] == []
    assert cli("autoscale", "--min", "0", "--max", "3", "--target", "2").code == 0
    endpoint = state(tmp_path)["endpoint"]["name"]
    (tmp_path / ".deploy" / "state.json").unlink()  # the state is lost
    gone = cli("down", "--endpoint", endpoint, "--poll", "0")
    assert gone.code == 0, gone.err
    assert cloudwatch.describe_alarms()["MetricAlarms"] == []
    assert aas.describe_scaling_policies(ServiceNamespace="sagemaker")["ScalingPolicies"] == []
    assert aas.describe_scalable_targets(ServiceNamespace="sagemaker")["ScalableTargets"] == []
    nothing_created(moto, tmp_path)


def test_the_async_environment_gives_every_concurrent_invocation_a_thread():
    from deploy.async_inference import environment

    assert environment({})["SERVE_QUEUE_DEADLINE"] == "3600"
    assert "SERVE_THREADS" not in environment({}, max_concurrent=4)
    assert environment({}, max_concurrent=100)["SERVE_THREADS"] == "108"
    assert environment({"SERVE_THREADS": "50"}, max_concurrent=100)["SERVE_THREADS"] == "50"
