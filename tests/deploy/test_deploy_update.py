"""`update` with botocore's Stubber (moto does not implement UpdateEndpoint).

The deployment is first made for real against moto with `up`; the update then runs on Stubber
clients that expect, in order and with exact parameters, the calls a zero-downtime update makes:
describe, create model, create config, update_endpoint, describe until InService, then delete the
old config and model after checking their tag.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from deploy import names
from tests.support.aws import (
    ACCOUNT,
    IMAGE,
    NEW_IMAGE,
    REGION,
    ROLE,
    TAG,
    by_digest,
    not_in_policy,
    put_image,
    state,
)

NOW = datetime(2030, 1, 1, 0, 0, tzinfo=UTC)
STAMP = "20300101-000000"
NEW_MODEL, NEW_CONFIG = f"yolov7-model-{STAMP}", f"yolov7-config-{STAMP}"
TAGS = [TAG, {"Key": "yolov7-deployment", "Value": "yolov7"}]
TAG_MAP = {t["Key"]: t["Value"] for t in TAGS}


def arn(kind: str, name: str) -> str:
    return f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:{kind}/{name}"


def endpoint_answer(name: str, status: str, config: str, count: int = 1, **extra) -> dict:
    return {
        "EndpointName": name,
        "EndpointArn": arn("endpoint", name),
        "EndpointConfigName": config,
        "ProductionVariants": [
            {
                "VariantName": "AllTraffic",
                "DeployedImages": [
                    {
                        "SpecifiedImage": IMAGE,
                        "ResolvedImage": IMAGE.split(":v")[0] + "@sha256:" + "cd" * 32,
                        "ResolutionTime": NOW,
                    }
                ],
                "CurrentWeight": 1.0,
                "DesiredWeight": 1.0,
                "CurrentInstanceCount": count,
                "DesiredInstanceCount": count,
            }
        ],
        "EndpointStatus": status,
        "CreationTime": NOW,
        "LastModifiedTime": NOW,
        **extra,
    }


def expect_describe(sm, name: str, status: str, config: str, count: int = 1, **extra) -> None:
    answer = endpoint_answer(name, status, config, count, **extra)
    sm.add_response("describe_endpoint", answer, {"EndpointName": name})


def expect_creates(sm, image: str, instance_type: str = "ml.c5.xlarge", count: int = 1) -> None:
    sm.add_response(
        "create_model",
        {"ModelArn": arn("model", NEW_MODEL)},
        {
            "ModelName": NEW_MODEL,
            "ExecutionRoleArn": ROLE,
            "PrimaryContainer": {"Image": image, "Mode": "SingleModel"},
            "EnableNetworkIsolation": True,  # on by default on instances
            "Tags": TAGS,
        },
    )
    sm.add_response(
        "create_endpoint_config",
        {"EndpointConfigArn": arn("endpoint-config", NEW_CONFIG)},
        {
            "EndpointConfigName": NEW_CONFIG,
            "ProductionVariants": [
                {
                    "VariantName": "AllTraffic",
                    "ModelName": NEW_MODEL,
                    "InitialVariantWeight": 1.0,
                    "InstanceType": instance_type,
                    "InitialInstanceCount": count,
                    "ContainerStartupHealthCheckTimeoutInSeconds": 600,
                }
            ],
            "Tags": TAGS,
        },
    )


def expect_running_environment(sm, model: str, environment: dict | None = None) -> None:
    """The state records env names only: update reads the running model's values first."""
    container = {"Image": IMAGE, **({"Environment": environment} if environment else {})}
    sm.add_response(
        "describe_model",
        {
            "ModelName": model,
            "ModelArn": arn("model", model),
            "CreationTime": NOW,
            "PrimaryContainer": container,
        },
        {"ModelName": model},
    )


def expect_tagged_delete(sm, kind: str, name: str) -> None:
    if kind == "endpoint-config":
        sm.add_response(
            "describe_endpoint_config",
            {
                "EndpointConfigName": name,
                "EndpointConfigArn": arn(kind, name),
                "ProductionVariants": [{"VariantName": "AllTraffic", "ModelName": "m"}],
                "CreationTime": NOW,
            },
            {"EndpointConfigName": name},
        )
        sm.add_response("list_tags", {"Tags": TAGS}, {"ResourceArn": arn(kind, name)})
        sm.add_response("delete_endpoint_config", {}, {"EndpointConfigName": name})
    else:
        sm.add_response(
            "describe_model",
            {"ModelName": name, "ModelArn": arn(kind, name), "CreationTime": NOW},
            {"ModelName": name},
        )
        sm.add_response("list_tags", {"Tags": TAGS}, {"ResourceArn": arn(kind, name)})
        sm.add_response("delete_model", {}, {"ModelName": name})


@pytest.fixture
def deployed(moto, cli, tmp_path, monkeypatch):
    """A real `up` against moto; later name stamps are frozen so Stubber can expect them."""
    made = cli("up", "--image", IMAGE, "--instance-type", "ml.c5.xlarge", "--poll", "0")
    assert made.code == 0, made.err
    monkeypatch.setattr(names, "stamp", lambda now=None: STAMP)
    return state(tmp_path)["endpoint"]


def test_update_swaps_in_a_new_model_then_deletes_the_old_one(
    deployed, cli, stubbed, moto, tmp_path, api_calls
):
    endpoint, old_config, old_model = deployed["name"], deployed["config"], deployed["model"]
    sm = stubbed.stub("sagemaker")
    expect_running_environment(sm, old_model)
    sm.add_response(
        "describe_endpoint",
        endpoint_answer(endpoint, "InService", old_config),
        {"EndpointName": endpoint},
    )
    expect_creates(sm, by_digest(moto, NEW_IMAGE))
    sm.add_response(
        "update_endpoint",
        {"EndpointArn": arn("endpoint", endpoint)},
        {"EndpointName": endpoint, "EndpointConfigName": NEW_CONFIG},
    )
    for status, config in (
        ("Updating", old_config),
        ("Updating", old_config),
        ("InService", NEW_CONFIG),
    ):
        sm.add_response(
            "describe_endpoint",
            endpoint_answer(endpoint, status, config),
            {"EndpointName": endpoint},
        )
    expect_tagged_delete(sm, "endpoint-config", old_config)
    expect_tagged_delete(sm, "model", old_model)

    result = cli("update", "--image", NEW_IMAGE, "--poll", "0", aws=stubbed)

    assert result.code == 0, result.err
    stubbed.verify()
    assert f"update: image -> {NEW_IMAGE}" in result.err
    assert f"endpoint {endpoint}: Updating" in result.err
    assert f"endpoint {endpoint}: InService" in result.err
    assert f"removed   {old_config}, {old_model}" in result.out
    now = state(tmp_path)
    assert (now["endpoint"]["config"], now["endpoint"]["model"]) == (NEW_CONFIG, NEW_MODEL)
    assert now["endpoint"]["image"] == NEW_IMAGE
    ledger = {(r["type"], r["name"]) for r in now["resources"]}
    assert ("model", NEW_MODEL) in ledger and ("model", old_model) not in ledger
    assert ("endpoint-config", old_config) not in ledger
    assert not_in_policy(api_calls) == []


def test_a_rolled_back_update_reports_why_and_removes_the_new_model(
    deployed, cli, stubbed, moto, tmp_path
):
    endpoint, old_config = deployed["name"], deployed["config"]
    reason = (
        "The primary container for production variant AllTraffic did not pass the ping health "
        "check. Please check CloudWatch logs for this endpoint."
    )
    sm = stubbed.stub("sagemaker")
    expect_running_environment(sm, deployed["model"])
    sm.add_response(
        "describe_endpoint",
        endpoint_answer(endpoint, "InService", old_config),
        {"EndpointName": endpoint},
    )
    expect_creates(sm, by_digest(moto, NEW_IMAGE))
    sm.add_response("update_endpoint", {"EndpointArn": arn("endpoint", endpoint)})
    expect_describe(sm, endpoint, "Updating", old_config)
    expect_describe(sm, endpoint, "RollingBack", old_config)
    expect_describe(sm, endpoint, "InService", old_config, FailureReason=reason)
    expect_tagged_delete(sm, "endpoint-config", NEW_CONFIG)
    expect_tagged_delete(sm, "model", NEW_MODEL)

    result = cli("update", "--image", NEW_IMAGE, "--poll", "0", aws=stubbed)

    assert result.code == 1
    stubbed.verify()
    line = result.error_line()
    assert reason in line and f"it still runs {old_config}" in line
    assert f"/aws/sagemaker/Endpoints/{endpoint}" in line
    now = state(tmp_path)
    assert now["endpoint"]["config"] == old_config and now["endpoint"]["image"] == IMAGE
    assert NEW_MODEL not in {r["name"] for r in now["resources"]}


def test_an_instance_type_change_pauses_autoscaling_and_keeps_its_capacity(
    deployed, cli, stubbed, moto, tmp_path
):
    endpoint, old_config, old_model = deployed["name"], deployed["config"], deployed["model"]
    scaled = cli("autoscale", "--min", "2", "--max", "6", "--target", "300")  # real, on moto
    assert scaled.code == 0, scaled.err
    resource = {
        "ServiceNamespace": "sagemaker",
        "ResourceId": f"endpoint/{endpoint}/variant/AllTraffic",
        "ScalableDimension": "sagemaker:variant:DesiredInstanceCount",
    }
    sm, aas = stubbed.stub("sagemaker"), stubbed.stub("application-autoscaling")
    expect_running_environment(sm, old_model)
    # the autoscaler had scaled out to 3: the new config starts with 3, not 1
    expect_describe(sm, endpoint, "InService", old_config, 3)
    expect_creates(sm, by_digest(moto, IMAGE), instance_type="ml.c5.2xlarge", count=3)
    policy = f"{endpoint}-invocations"
    aas.add_response("delete_scaling_policy", {}, {"PolicyName": policy, **resource})
    aas.add_response("deregister_scalable_target", {}, resource)
    sm.add_response("update_endpoint", {"EndpointArn": arn("endpoint", endpoint)})
    expect_describe(sm, endpoint, "InService", NEW_CONFIG, 3)
    expect_tagged_delete(sm, "endpoint-config", old_config)
    expect_tagged_delete(sm, "model", old_model)
    aas.add_response(
        "register_scalable_target",
        {"ScalableTargetARN": f"arn:aws:application-autoscaling:{REGION}:{ACCOUNT}:x"},
        {
            **resource,
            "MinCapacity": 2,
            "MaxCapacity": 6,
            "Tags": {t["Key"]: t["Value"] for t in TAGS},
        },
    )
    aas.add_response(
        "put_scaling_policy",
        {"PolicyARN": f"arn:aws:autoscaling:{REGION}:{ACCOUNT}:scalingPolicy:x"},
        {
            "PolicyName": policy,
            **resource,
            "PolicyType": "TargetTrackingScaling",
            "TargetTrackingScalingPolicyConfiguration": {
                "TargetValue": 300.0,
                "PredefinedMetricSpecification": {
                    "PredefinedMetricType": "SageMakerVariantInvocationsPerInstance"
                },
                "ScaleInCooldown": 300,
                "ScaleOutCooldown": 60,
            },
        },
    )

    result = cli("update", "--instance-type", "ml.c5.2xlarge", "--poll", "0", aws=stubbed)

    assert result.code == 0, result.err
    stubbed.verify()
    assert "deregistered autoscaling for the instance type change" in result.err
    assert "registered autoscaling again" in result.err
    now = state(tmp_path)
    assert now["endpoint"]["instance_type"] == "ml.c5.2xlarge"
    assert (now["autoscaling"]["min"], now["autoscaling"]["max"]) == (2, 6)


def test_update_refuses_while_the_endpoint_is_still_creating(deployed, cli, stubbed):
    sm = stubbed.stub("sagemaker")
    expect_running_environment(sm, deployed["model"])
    sm.add_response("describe_endpoint", endpoint_answer(deployed["name"], "Creating", "c"))
    result = cli("update", "--image", NEW_IMAGE, aws=stubbed)
    assert result.code == 2
    assert "is Creating, not InService" in result.error_line()
    stubbed.verify()


def test_update_without_a_deployment_is_an_input_error(moto, cli):
    result = cli("update", "--image", NEW_IMAGE)
    assert result.code == 2
    assert result.error_line() == "error: nothing is deployed in this state. Run `up` first."


def test_update_to_a_graviton_type_picks_the_arm64_image_push_recorded(
    deployed, cli, tmp_path, moto
):
    """After `push --platform linux/amd64,linux/arm64`, moving to ml.c7g deploys the arm64 image
    and staying on x86 changes no image."""
    from deploy.state import StateFile

    store = StateFile(tmp_path / ".deploy" / "state.json")
    recorded = store.read()
    arm64 = IMAGE.rsplit(":", 1)[0] + ":v1-arm64"
    recorded["image"] = {
        "uri": IMAGE,
        "repository": "yolov7-serve",
        "architectures": {"amd64": IMAGE, "arm64": arm64},
    }
    store.save(recorded)
    put_image(moto, arm64)
    moved = cli("update", "--instance-type", "ml.c7g.xlarge", "--dry-run", "--poll", "0")
    assert moved.code == 0, moved.err
    assert f"update: image -> {arm64}" in moved.err
    stayed = cli("update", "--instance-count", "2", "--dry-run", "--poll", "0")
    assert stayed.code == 0, stayed.err
    assert "update: image" not in stayed.err
