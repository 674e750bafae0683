"""`status`'s last hour, `logs` and `capture` show what the test put into moto: metric data in
CloudWatch, the container's JSON lines in CloudWatch Logs, capture records in S3 in SageMaker's
JSON Lines format. Percentiles are checked with botocore's Stubber: moto computes none."""

from __future__ import annotations

import base64
import json
import logging
import time
import types
from datetime import UTC, datetime, timedelta

import cv2
import numpy as np
import pytest

from deploy import logs as logs_module
from deploy import metrics
from deploy.capture_files import file_name
from deploy.context import Context
from deploy.state import StateFile
from serve.logs import JsonFormatter
from tests.support.aws import IMAGE, REGION, StubbedAws, not_in_policy, state

BUCKET = "yolov7-capture-observe"


def up(cli, *extra: str) -> dict:
    made = cli("up", "--image", IMAGE, "--instance-type", "ml.c5.xlarge", "--poll", "0", *extra)
    assert made.code == 0, made.err
    return made


def test_status_shows_the_last_hour_that_cloudwatch_holds(moto, cli, tmp_path, api_calls):
    up(cli)
    endpoint = state(tmp_path)["endpoint"]["name"]
    cw = moto.client("cloudwatch")
    dims = [
        {"Name": "EndpointName", "Value": endpoint},
        {"Name": "VariantName", "Value": "AllTraffic"},
    ]
    when = datetime.now(UTC) - timedelta(minutes=20)

    def put(namespace: str, metric: str, *values: float) -> None:
        data = [
            {"MetricName": metric, "Dimensions": dims, "Value": v, "Timestamp": when}
            for v in values
        ]
        cw.put_metric_data(Namespace=namespace, MetricData=data)

    put("AWS/SageMaker", "Invocations", 40, 2)
    put("AWS/SageMaker", "Invocation4XXErrors", 3)
    put("AWS/SageMaker", "Invocation5XXErrors", 1)
    put("AWS/SageMaker", "ModelLatency", 50_000, 70_000)  # microseconds
    put("AWS/SageMaker", "OverheadLatency", 2_000, 4_000)
    put("/aws/sagemaker/Endpoints", "CPUUtilization", 30, 90)
    put("/aws/sagemaker/Endpoints", "MemoryUtilization", 20, 25)
    old = datetime.now(UTC) - timedelta(hours=3)  # outside the hour: not counted
    cw.put_metric_data(
        Namespace="AWS/SageMaker",
        MetricData=[
            {"MetricName": "Invocations", "Dimensions": dims, "Value": 1000, "Timestamp": old}
        ],
    )

    shown = cli("status")
    assert shown.code == 0, shown.err
    assert "last hour  42 invocations, 3 4xx, 1 5xx; 1/1 instances" in shown.out
    assert "model p50 n/a p99 n/a (avg 60.0 ms); overhead p50 n/a p99 n/a (avg 3.0 ms)" in shown.out
    assert "instances  CPU avg 60.0 % max 90.0 %; memory avg 22.5 % max 25.0 %" in shown.out

    as_json = json.loads(cli("status", "--json").out)["last_hour"]
    assert as_json["invocations"] == 42 and as_json["errors_5xx"] == 1
    assert as_json["model_latency_avg_ms"] == 60.0 and as_json["model_latency_p99_ms"] is None
    assert not_in_policy(api_calls) == []


def test_status_reads_p50_and_p99_from_extended_statistics(tmp_path):
    aws = StubbedAws()
    cw = aws.stub("cloudwatch")
    cw.add_response("get_metric_data", {"MetricDataResults": []})
    for p50, p99 in ((51_000.0, 88_000.0), (1_500.0, 2_900.0)):
        cw.add_response(
            "get_metric_statistics",
            {
                "Datapoints": [
                    {"Timestamp": datetime.now(UTC), "ExtendedStatistics": {"p50": p50, "p99": p99}}
                ]
            },
        )
    ctx = Context(store=StateFile(tmp_path / "s.json"), state={})
    ctx.use_aws(aws)
    figures = metrics.last_hour(ctx, "yolov7-x")
    aws.verify()
    assert (figures["model_latency_p50_ms"], figures["model_latency_p99_ms"]) == (51.0, 88.0)
    assert (figures["overhead_latency_p50_ms"], figures["overhead_latency_p99_ms"]) == (1.5, 2.9)
    assert figures["invocations"] is None
    line = metrics.render(figures, [], "")[1]
    assert "model p50 51.0 ms p99 88.0 ms" in line


def server_lines() -> list[str]:
    """Log lines exactly as `python -m serve` writes them (serve/logs.py's formatter)."""
    formatter = JsonFormatter()

    def line(message: str, level=logging.INFO, **fields) -> str:
        record = logging.LogRecord("serve", level, __file__, 1, message, None, None)
        record.fields = fields
        return formatter.format(record)

    return [
        line("model loaded", model="shapes-yolov7-tiny", seconds=0.31),
        line(
            "request",
            method="POST",
            path="/invocations",
            status=200,
            bytes=812,
            latency_ms=52.13,
            detections=6,
            request_id="4f1c2a",
        ),
        line(
            "request",
            level=logging.WARNING,
            method="POST",
            path="/invocations",
            status=415,
            bytes=90,
            latency_ms=0.4,
            detections=None,
            request_id="77aa",
        ),
        "waitress serving on http://0.0.0.0:8080",
    ]


def put_logs(moto, endpoint: str, lines: list[str], stream: str = "AllTraffic/i-0abc") -> None:
    client = moto.client("logs")
    group = f"/aws/sagemaker/Endpoints/{endpoint}"
    if not client.describe_log_groups(logGroupNamePrefix=group)["logGroups"]:
        client.create_log_group(logGroupName=group)
        client.create_log_stream(logGroupName=group, logStreamName=stream)
    now = int(time.time() * 1000)
    events = [{"timestamp": now - 60_000 + i, "message": m} for i, m in enumerate(lines)]
    client.put_log_events(logGroupName=group, logStreamName=stream, logEvents=events)


def test_logs_renders_the_servers_json_lines(moto, cli, tmp_path, api_calls):
    up(cli)
    endpoint = state(tmp_path)["endpoint"]["name"]
    missing = cli("logs")
    assert missing.code == 2
    assert f"no logs yet: log group /aws/sagemaker/Endpoints/{endpoint}" in missing.error_line()

    put_logs(moto, endpoint, server_lines())
    shown = cli("logs", "--since", "10m")
    assert shown.code == 0, shown.err
    lines = shown.out.splitlines()
    assert len(lines) == 4
    assert (
        "INFO   model loaded  model=shapes-yolov7-tiny seconds=0.31  [AllTraffic/i-0abc]"
        in lines[0]
    )
    assert lines[1].endswith(
        "INFO   POST /invocations 200  52.1 ms  6 detections  id 4f1c2a  [AllTraffic/i-0abc]"
    )
    assert "WARNING  POST /invocations 415  0.4 ms  id 77aa" in lines[2]
    assert lines[3] == "waitress serving on http://0.0.0.0:8080  [AllTraffic/i-0abc]"
    assert cli("logs", "--since", "soon").code == 2
    assert not_in_policy(api_calls) == []
    # `logs` reads by polling: after `down` the group holds no subscription of ours
    assert cli("down", "--poll", "0").code == 0
    group = f"/aws/sagemaker/Endpoints/{endpoint}"
    assert (
        moto.client("logs").describe_subscription_filters(logGroupName=group)["subscriptionFilters"]
        == []
    )


def test_logs_follow_prints_new_lines_until_interrupted(moto, cli, tmp_path, monkeypatch):
    up(cli)
    endpoint = state(tmp_path)["endpoint"]["name"]
    put_logs(moto, endpoint, ["first"])
    polls = []

    def sleep(_seconds):
        polls.append(1)
        if len(polls) == 1:
            put_logs(moto, endpoint, ["second"])
            return
        raise KeyboardInterrupt

    monkeypatch.setattr(logs_module, "time", types.SimpleNamespace(sleep=sleep))
    shown = cli("logs", "--follow")
    assert shown.code == 0, shown.err
    assert [line.split("  [")[0] for line in shown.out.splitlines()] == ["first", "second"]


def capture_record(picture: bytes, answer: dict, event_id: str) -> str:
    """One line as SageMaker's data capture writes it: the image base64, the JSON as JSON."""
    return json.dumps(
        {
            "captureData": {
                "endpointInput": {
                    "observedContentType": "image/png",
                    "mode": "INPUT",
                    "data": base64.b64encode(picture).decode(),
                    "encoding": "BASE64",
                },
                "endpointOutput": {
                    "observedContentType": "application/json",
                    "mode": "OUTPUT",
                    "data": json.dumps(answer),
                    "encoding": "JSON",
                },
            },
            "eventMetadata": {"eventId": event_id, "inferenceTime": "2030-01-01T00:00:01Z"},
            "eventVersion": "0",
        }
    )


@pytest.fixture
def capture_bucket(moto):
    moto.client("s3").create_bucket(
        Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION}
    )
    return f"s3://{BUCKET}/captures"


def test_capture_configures_sagemaker_and_decodes_its_records(
    moto, cli, tmp_path, capture_bucket, api_calls
):
    up(cli, "--capture", capture_bucket, "--capture-percent", "50")
    record = state(tmp_path)["endpoint"]
    sm = moto.client("sagemaker")
    captured = sm.describe_endpoint_config(EndpointConfigName=record["config"])["DataCaptureConfig"]
    assert captured["EnableCapture"] is True and captured["InitialSamplingPercentage"] == 50
    assert captured["DestinationS3Uri"] == capture_bucket
    assert captured["CaptureContentTypeHeader"] == {"JsonContentTypes": ["application/json"]}
    assert {o["CaptureMode"] for o in captured["CaptureOptions"]} == {"Input", "Output"}
    assert f"capture    {capture_bucket}" in cli("status").out

    picture = cv2.imencode(".png", np.full((16, 24, 3), 200, np.uint8))[1].tobytes()
    answers = [
        {"detections": [{"label": "circle", "score": 0.995, "box": [254.4, 152.6, 308.2, 206.3]}]},
        {"detections": [{"label": "square", "score": 0.9, "box": [1, 2, 3, 4]}]},
    ]
    key = f"captures/{record['name']}/AllTraffic/2030/01/01/00/00-01-000-ab12.jsonl"
    body = "\n".join(capture_record(picture, a, f"event-{i}") for i, a in enumerate(answers))
    moto.client("s3").put_object(Bucket=BUCKET, Key=key, Body=body.encode())

    out = tmp_path / "seen"
    shown = cli("capture", "--last", "1", "--out", out)
    assert shown.code == 0, shown.err
    assert "2030-01-01T00:00:01Z  event event-1  image/png" in shown.out
    assert "square  0.900" in shown.out and "circle" not in shown.out
    assert (out / file_name("event-1", "image/png")).read_bytes() == picture
    both = cli("capture", "--last", "5", "--out", out, "--json")
    assert [json.loads(line)["event_id"] for line in both.out.splitlines()] == [
        "event-1",
        "event-0",
    ]
    assert (out / file_name("event-0", "image/png")).read_bytes() == picture
    assert not_in_policy(api_calls) == []

    # down: the endpoint config carrying the DataCaptureConfig is gone from the emulator
    assert cli("down", "--poll", "0").code == 0
    assert sm.list_endpoint_configs()["EndpointConfigs"] == []
    assert moto.client("cloudwatch").describe_alarms()["MetricAlarms"] == []


@pytest.mark.parametrize(
    ("extra", "says"),
    [
        (("--capture-percent", "50"), "--capture-percent needs --capture"),
        (("--capture", "s3://yolov7-capture-observe/c", "--capture-percent", "0"), "between 1"),
        (("--capture", "http://nope"), "is not an s3://bucket/key URI"),
        (
            ("--capture", "s3://yolov7-capture-observe/c", "--serverless-memory", "2048"),
            "serverless endpoints do not support data capture",
        ),
    ],
)
def test_bad_capture_options_are_refused_with_nothing_created(moto, cli, extra, says):
    result = cli("up", "--image", IMAGE, "--poll", "0", *extra)
    assert result.code == 2
    assert says in result.error_line()
    assert moto.client("sagemaker").list_models()["Models"] == []


def test_capture_without_capture_configured_says_how(moto, cli):
    up(cli)
    result = cli("capture")
    assert result.code == 2
    assert "does not capture data" in result.error_line()
