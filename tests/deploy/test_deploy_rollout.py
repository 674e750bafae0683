"""`update --canary/--linear --rollback-alarms`: the alarms are made for real in moto's CloudWatch;
update_endpoint (which moto lacks) and the describe_endpoint answers of a rollout go through
botocore's Stubber, which checks DeploymentConfig against botocore's own model."""

from __future__ import annotations

import pytest

from deploy import names
from tests.deploy.test_deploy_update import (
    NEW_CONFIG,
    NEW_MODEL,
    NOW,
    STAMP,
    arn,
    endpoint_answer,
    expect_creates,
    expect_running_environment,
    expect_tagged_delete,
)
from tests.support.aws import IMAGE, NEW_IMAGE, by_digest, not_in_policy, state


@pytest.fixture
def deployed(moto, cli, tmp_path, monkeypatch):
    made = cli("up", "--image", IMAGE, "--instance-type", "ml.c5.xlarge", "--poll", "0")
    assert made.code == 0, made.err
    monkeypatch.setattr(names, "stamp", lambda now=None: STAMP)
    return state(tmp_path)["endpoint"]


def rollout_answer(endpoint: str, old: str, variant_status: str, message: str = "") -> dict:
    """describe_endpoint while the new fleet takes traffic: PendingDeploymentSummary."""
    status = {"Status": variant_status, "StatusMessage": message, "StartTime": NOW}
    pending = {
        "EndpointConfigName": NEW_CONFIG,
        "StartTime": NOW,
        "ProductionVariants": [
            {"VariantName": "AllTraffic", "CurrentWeight": 0.1, "VariantStatus": [status]}
        ],
    }
    return endpoint_answer(endpoint, "Updating", old, PendingDeploymentSummary=pending)


def test_a_canary_whose_alarm_fires_rolls_back_with_exit_1_naming_the_alarm(
    deployed, cli, stubbed, moto, tmp_path, api_calls
):
    endpoint, old_config = deployed["name"], deployed["config"]
    errors, latency = f"{endpoint}-rollback-5xx", f"{endpoint}-rollback-p99-latency"
    sm = stubbed.stub("sagemaker")
    expect_running_environment(sm, deployed["model"])
    sm.add_response(
        "describe_endpoint",
        endpoint_answer(endpoint, "InService", old_config),
        {"EndpointName": endpoint},
    )
    expect_creates(sm, by_digest(moto, NEW_IMAGE))
    deployment = {
        "BlueGreenUpdatePolicy": {
            "TrafficRoutingConfiguration": {
                "Type": "CANARY",
                "WaitIntervalInSeconds": 60,
                "CanarySize": {"Type": "CAPACITY_PERCENT", "Value": 10},
            },
            "TerminationWaitInSeconds": 60,
            # 2 x 600 s to start and pass /ping, 2 bakes, one more before the old fleet goes
            "MaximumExecutionTimeoutInSeconds": 2 * 600 + 2 * 60 + 60 + 600,
        },
        "AutoRollbackConfiguration": {"Alarms": [{"AlarmName": errors}, {"AlarmName": latency}]},
    }
    sm.add_response(
        "update_endpoint",
        {"EndpointArn": arn("endpoint", endpoint)},
        {
            "EndpointName": endpoint,
            "EndpointConfigName": NEW_CONFIG,
            "DeploymentConfig": deployment,
        },
    )
    answers = [
        rollout_answer(endpoint, old_config, "ActivatingTraffic"),
        rollout_answer(endpoint, old_config, "Baking", "Baking for 60 seconds"),
        endpoint_answer(endpoint, "RollingBack", old_config),
        endpoint_answer(endpoint, "InService", old_config, FailureReason="Rolled back."),
    ]
    for answer in answers:
        sm.add_response("describe_endpoint", answer, {"EndpointName": endpoint})
    expect_tagged_delete(sm, "endpoint-config", NEW_CONFIG)
    expect_tagged_delete(sm, "model", NEW_MODEL)

    # CloudWatch's part: while the canary bakes, the 5xx alarm goes to ALARM (moto evaluates no
    # alarm itself, so the test sets the state CloudWatch would set from the metric).
    cw = moto.client("cloudwatch")
    calls = []

    def alarm_fires_while_baking(**_):
        calls.append(1)
        if len(calls) == 3:
            cw.set_alarm_state(
                AlarmName=errors,
                StateValue="ALARM",
                StateReason="Threshold Crossed: 1 datapoint [4.0] was greater than the threshold "
                "(0.0).",
            )

    stubbed.client("sagemaker").meta.events.register(
        "before-parameter-build.sagemaker.DescribeEndpoint", alarm_fires_while_baking
    )

    result = cli(
        *("update", "--image", NEW_IMAGE, "--canary", "10", "--bake", "60", "--poll", "0"),
        aws=stubbed,
    )

    assert result.code == 1
    stubbed.verify()
    line = result.error_line()
    assert f"SageMaker rolled the update back: alarm {errors} (Invocation5XXErrors: " in line
    assert "Threshold Crossed: 1 datapoint [4.0]" in line and f"it still runs {old_config}" in line
    assert f"endpoint {endpoint}: Updating (shifting traffic, new fleet weight 0.1)" in result.err
    assert "Updating (baking, new fleet weight 0.1: Baking for 60 seconds)" in result.err
    assert f"endpoint {endpoint}: RollingBack (rolling back)" in result.err
    assert "rollout: canary 10 %, 60 s bake per step" in result.err

    made = {a["AlarmName"]: a for a in cw.describe_alarms(AlarmNamePrefix=endpoint)["MetricAlarms"]}
    assert sorted(made) == [errors, latency]
    assert made[errors]["MetricName"] == "Invocation5XXErrors" and made[errors]["Threshold"] == 0
    assert made[latency]["ExtendedStatistic"] == "p99"
    # ml.c5.xlarge (4 vCPUs), model baked in (yolov7-tiny sized): 2 x 282.4 ms x 2/4 = 282.4 ms
    assert made[latency]["Threshold"] == pytest.approx(282_400)
    dims = {d["Name"]: d["Value"] for d in made[latency]["Dimensions"]}
    assert dims == {"EndpointName": endpoint, "VariantName": "AllTraffic"}
    now = state(tmp_path)
    assert now["endpoint"]["config"] == old_config
    assert NEW_MODEL not in {r["name"] for r in now["resources"]}
    assert not_in_policy(api_calls) == []

    # status (moto) shows the alarms' states; down removes them from the emulator
    shown = cli("status")
    assert f"alarm      {errors}  ALARM  (Invocation5XXErrors)" in shown.out
    assert f"alarm      {latency}  OK  (ModelLatency)" in shown.out
    down = cli("down", "--poll", "0")
    assert down.code == 0, down.err
    assert f"alarm {errors}" in down.out
    assert cw.describe_alarms(AlarmNamePrefix=endpoint)["MetricAlarms"] == []
    assert moto.client("sagemaker").list_endpoint_configs()["EndpointConfigs"] == []
    assert not_in_policy(api_calls) == []


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("--canary", "80"), "--canary must be 1 to 50"),
        (("--linear", "5"), "--linear must be 10 to 50"),
        (("--linear", "20", "--bake", "5"), "--bake is for --canary and --all-at-once"),
        (("--canary", "10", "--bake", "4000"), "must be between 0 and 3600 seconds"),
        (("--canary", "10", "--rollback-alarms", "auto", "x"), "not a mix"),
        (("--canary", "10", "--rollback-alarms", "yolov7-nope"), "no CloudWatch alarm named"),
        (("--linear", "20", "--rollback-alarms", "none", "--latency-p99-ms", "5"), "--latency"),
    ],
)
def test_bad_rollout_options_are_refused_with_nothing_created(moto, cli, tmp_path, args, says):
    assert cli("up", "--image", IMAGE, "--instance-type", "ml.c5.xlarge", "--poll", "0").code == 0
    before = state(tmp_path)
    result = cli("update", "--image", NEW_IMAGE, *args, "--poll", "0")
    assert result.code == 2
    assert says in result.error_line()
    assert len(moto.client("sagemaker").list_models()["Models"]) == 1
    assert moto.client("cloudwatch").describe_alarms()["MetricAlarms"] == []
    assert state(tmp_path)["resources"] == before["resources"]
