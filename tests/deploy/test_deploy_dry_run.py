"""`up --dry-run` and `update --dry-run` against moto's server: every check runs, the calls are
printed (and are the ones a real run then sends), nothing is created, the state is untouched."""

from __future__ import annotations

import json

from botocore.client import BaseClient

from tests.support.aws import IMAGE, NEW_IMAGE, by_digest, not_in_policy, state

READS = ("Describe", "List", "Get", "BatchGet", "Head")


def writes(calls: list[str]) -> list[str]:
    return [c for c in calls if not c.split(":", 1)[1].startswith(READS)]


def held(moto) -> tuple[list, list, list]:
    sm = moto.client("sagemaker")
    return (
        [m["ModelName"] for m in sm.list_models()["Models"]],
        [c["EndpointConfigName"] for c in sm.list_endpoint_configs()["EndpointConfigs"]],
        [e["EndpointName"] for e in sm.list_endpoints()["Endpoints"]],
    )


def test_up_dry_run_prints_the_calls_creates_nothing_and_matches_up(
    moto, cli, api_calls, tmp_path, monkeypatch
):
    options = ("--image", IMAGE, "--instance-type", "ml.c5.xlarge", "--endpoint-name", "yolov7-dry")
    shown = cli("up", *options, "--dry-run")
    assert shown.code == 0, shown.err
    lines = shown.out.splitlines()
    assert [line.split()[:2] for line in lines] == [
        ["sagemaker", "CreateModel"],
        ["sagemaker", "CreateEndpointConfig"],
        ["sagemaker", "CreateEndpoint"],
    ]
    # the image by the digest ECR holds: what was checked is what runs
    assert f"PrimaryContainer.Image={by_digest(moto, IMAGE)}" in lines[0]
    assert "EnableNetworkIsolation=true" in lines[0]
    assert "ProductionVariants.InstanceType=ml.c5.xlarge" in lines[1]
    assert "EndpointName=yolov7-dry" in lines[2]
    assert held(moto) == ([], [], [])
    assert not (tmp_path / ".deploy" / "state.json").exists()
    assert api_calls and writes(api_calls) == []  # the checks read ECR; nothing else
    assert not_in_policy(api_calls) == []

    planned = json.loads(cli("up", *options, "--dry-run", "--json").out)
    sent: list[dict] = []
    original = BaseClient._make_api_call

    def record(self, operation_name, api_params):
        if operation_name.startswith("Create"):
            sent.append({"operation": operation_name, "parameters": api_params})
        return original(self, operation_name, api_params)

    monkeypatch.setattr(BaseClient, "_make_api_call", record)
    made = cli("up", *options, "--poll", "0")
    assert made.code == 0, made.err
    # The same calls with the same parameters, but for the names' timestamps.
    stamp = state(tmp_path)["endpoint"]["model"].rsplit("-model-", 1)[1]
    planned_stamp = planned[0]["parameters"]["ModelName"].rsplit("-model-", 1)[1]
    restamped = json.loads(json.dumps(planned).replace(planned_stamp, stamp))
    assert [{k: c[k] for k in ("operation", "parameters")} for c in restamped] == sent


def test_up_dry_run_still_refuses_what_up_refuses(moto, cli, tmp_path):
    missing = IMAGE.rsplit(":", 1)[0] + ":never-pushed"
    result = cli("up", "--image", missing, "--dry-run")
    assert result.code == 2
    assert "is not in ECR" in result.error_line()
    assert result.out == ""
    assert cli("up", "--image", IMAGE, "--json").code == 2  # --json is --dry-run's


def test_update_dry_run_lists_the_swap_and_the_autoscaling_pause(moto, cli, api_calls, tmp_path):
    assert cli("up", "--image", IMAGE, "--instance-type", "ml.c5.xlarge", "--poll", "0").code == 0
    assert cli("autoscale", "--min", "1", "--max", "3").code == 0
    before = (tmp_path / ".deploy" / "state.json").read_bytes()
    recorded = state(tmp_path)["endpoint"]
    models = held(moto)
    api_calls.clear()

    shown = cli(
        "update",
        "--image",
        NEW_IMAGE,
        "--instance-type",
        "ml.c5.2xlarge",
        "--canary",
        "20",
        "--dry-run",
        "--json",
    )
    assert shown.code == 0, shown.err
    calls = json.loads(shown.out)
    assert [c["operation"] for c in calls] == [
        "PutMetricAlarm",
        "PutMetricAlarm",
        "CreateModel",
        "CreateEndpointConfig",
        "DeleteScalingPolicy",
        "DeregisterScalableTarget",
        "UpdateEndpoint",
        "DeleteEndpointConfig",
        "DeleteModel",
        "RegisterScalableTarget",
        "PutScalingPolicy",
    ]
    by_name = {c["operation"]: c["parameters"] for c in calls}
    assert by_name["CreateModel"]["PrimaryContainer"]["Image"] == by_digest(moto, NEW_IMAGE)
    update = by_name["UpdateEndpoint"]
    assert update["EndpointName"] == recorded["name"]
    assert update["EndpointConfigName"] == by_name["CreateEndpointConfig"]["EndpointConfigName"]
    policy = update["DeploymentConfig"]["BlueGreenUpdatePolicy"]["TrafficRoutingConfiguration"]
    assert policy["CanarySize"] == {"Type": "CAPACITY_PERCENT", "Value": 20}
    assert by_name["DeleteModel"] == {"ModelName": recorded["model"]}
    assert by_name["DeleteEndpointConfig"] == {"EndpointConfigName": recorded["config"]}
    assert by_name["RegisterScalableTarget"]["MaxCapacity"] == 3

    # nothing made, nothing removed, the state byte for byte as it was
    assert held(moto) == models
    assert moto.client("cloudwatch").describe_alarms()["MetricAlarms"] == []
    aas = moto.client("application-autoscaling")
    assert len(aas.describe_scalable_targets(ServiceNamespace="sagemaker")["ScalableTargets"]) == 1
    assert (tmp_path / ".deploy" / "state.json").read_bytes() == before
    assert writes(api_calls) == []
    assert not_in_policy(api_calls) == []

    plain = cli("update", "--env", "YOLO_CONF=0.4", "--dry-run")
    assert plain.code == 0, plain.err
    assert [line.split()[1] for line in plain.out.splitlines()] == [
        "CreateModel",
        "CreateEndpointConfig",
        "UpdateEndpoint",
        "DeleteEndpointConfig",
        "DeleteModel",
    ]
    assert "PrimaryContainer.Environment=YOLO_CONF" in plain.out.splitlines()[0]
