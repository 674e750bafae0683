"""Waiting for AWS: the live progress line, the timeout, the waiter budget."""

from __future__ import annotations

import io

import pytest

from deploy.aws import waiting
from tests.support.aws import StubbedAws


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def endpoint(status: str) -> dict:
    return {
        "EndpointName": "e",
        "EndpointArn": "arn:aws:sagemaker:eu-west-1:1:endpoint/e",
        "EndpointStatus": status,
        "CreationTime": 0,
        "LastModifiedTime": 0,
        "ProductionVariants": [
            {"VariantName": "AllTraffic", "CurrentInstanceCount": 0, "DesiredInstanceCount": 1}
        ],
    }


def test_the_progress_line_is_rewritten_in_place_on_a_terminal():
    aws = StubbedAws()
    stub = aws.stub("sagemaker")
    for status in ("Creating", "Creating", "InService"):
        stub.add_response("describe_endpoint", endpoint(status), {"EndpointName": "e"})
    screen, clock = Terminal(), FakeClock()
    result = waiting.wait_for(
        aws.client("sagemaker"),
        "endpoint_in_service",
        {"EndpointName": "e"},
        label="endpoint e",
        status_of=lambda r: r["EndpointStatus"],
        poll=3,
        progress=waiting.ProgressLine(screen),
        clock=clock,
        sleep=clock.sleep,
    )
    assert result.state == "success" and result.seconds == 6
    frames = screen.getvalue().split("\r\x1b[2K")
    assert frames[1] == "endpoint e: Creating  [0:00]"
    assert "endpoint e: Creating  [0:02]" in frames  # ticks between polls
    assert frames[-1] == "endpoint e: InService  [0:06]\n"


def test_waiting_gives_up_after_the_timeout():
    aws = StubbedAws()
    stub = aws.stub("sagemaker")
    for _ in range(3):
        stub.add_response("describe_endpoint", endpoint("Creating"))
    clock = FakeClock()
    with pytest.raises(waiting.AwsError, match=r"gave up waiting for endpoint e after 0:10"):
        waiting.wait_for(
            aws.client("sagemaker"),
            "endpoint_in_service",
            {"EndpointName": "e"},
            label="endpoint e",
            status_of=lambda r: r["EndpointStatus"],
            poll=5,
            timeout=10,
            progress=waiting.ProgressLine(io.StringIO()),
            clock=clock,
            sleep=clock.sleep,
        )


def test_the_waiter_budget_comes_from_botocore():
    aws = StubbedAws()
    config = aws.client("sagemaker").get_waiter("endpoint_in_service").config
    assert (config.delay, config.max_attempts) == (30, 120)  # what wait_for defaults to
