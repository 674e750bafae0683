"""`down` against moto: idempotent, and it deletes only what carries this tool's tag."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError

from tests.support.aws import IMAGE, ROLE, state


def up(cli, *extra):
    result = cli("up", "--image", IMAGE, "--instance-type", "ml.c5.xlarge", "--poll", "0", *extra)
    assert result.code == 0, result.err
    return result


def foreign_deployment(sm, name: str) -> None:
    """An endpoint someone else made by hand: no managed-by tag."""
    sm.create_model(
        ModelName=f"{name}-model", ExecutionRoleArn=ROLE, PrimaryContainer={"Image": IMAGE}
    )
    sm.create_endpoint_config(
        EndpointConfigName=f"{name}-config",
        ProductionVariants=[
            {
                "VariantName": "AllTraffic",
                "ModelName": f"{name}-model",
                "InstanceType": "ml.c5.xlarge",
                "InitialInstanceCount": 1,
            }
        ],
    )
    sm.create_endpoint(EndpointName=name, EndpointConfigName=f"{name}-config")


def test_down_twice_deletes_once_then_says_nothing_to_delete(moto, cli, tmp_path):
    sm = moto.client("sagemaker")
    up(cli)
    first = cli("down", "--poll", "0")
    assert first.code == 0, first.err
    assert [line.split()[0] for line in first.out.splitlines()[:3]] == ["deleted"] * 3
    assert sm.list_endpoints()["Endpoints"] == [] and sm.list_models()["Models"] == []
    assert not (tmp_path / ".deploy" / "state.json").exists()
    second = cli("down", "--poll", "0")
    assert (second.code, second.out.strip()) == (0, "nothing to delete")


def test_down_skips_what_was_deleted_behind_its_back(moto, cli, tmp_path):
    sm = moto.client("sagemaker")
    up(cli)
    recorded = state(tmp_path)["endpoint"]
    sm.delete_endpoint(EndpointName=recorded["name"])  # someone used the console
    result = cli("down", "--poll", "0")
    assert result.code == 0, result.err
    assert f"gone     endpoint {recorded['name']} (already)" in result.out
    assert f"deleted  endpoint-config {recorded['config']}" in result.out
    assert f"deleted  model {recorded['model']}" in result.out


def test_down_refuses_an_endpoint_it_did_not_create(moto, cli):
    sm = moto.client("sagemaker")
    foreign_deployment(sm, "prod-detector")
    result = cli("down", "--endpoint", "prod-detector", "--poll", "0")
    assert result.code == 2
    assert "REFUSED  endpoint prod-detector (not tagged managed-by)" in result.out
    assert "refused to delete 1 resource(s)" in result.error_line()
    # untouched: the endpoint, its config and its model
    assert sm.describe_endpoint(EndpointName="prod-detector")["EndpointStatus"] == "InService"
    sm.describe_endpoint_config(EndpointConfigName="prod-detector-config")
    sm.describe_model(ModelName="prod-detector-model")


def test_down_refuses_a_recorded_resource_that_lost_its_tag(moto, cli, tmp_path):
    sm = moto.client("sagemaker")
    up(cli)
    recorded = state(tmp_path)["endpoint"]
    arn = sm.describe_model(ModelName=recorded["model"])["ModelArn"]
    sm.delete_tags(ResourceArn=arn, TagKeys=["managed-by"])
    result = cli("down", "--poll", "0")
    assert result.code == 2
    assert f"REFUSED  model {recorded['model']}" in result.out
    assert sm.describe_model(ModelName=recorded["model"])["ModelName"] == recorded["model"]
    with pytest.raises(ClientError):
        sm.describe_endpoint(EndpointName=recorded["name"])
    # the refusal is remembered: running down again still refuses, and deletes nothing else
    again = cli("down", "--poll", "0")
    assert again.code == 2 and f"REFUSED  model {recorded['model']}" in again.out


def test_down_by_endpoint_name_without_state_finds_config_and_model(moto, cli, tmp_path):
    sm = moto.client("sagemaker")
    up(cli, "--endpoint-name", "yolov7-lost-state")
    (tmp_path / ".deploy" / "state.json").unlink()  # the state file is gone
    result = cli("down", "--endpoint", "yolov7-lost-state", "--poll", "0")
    assert result.code == 0, result.err
    assert sm.list_endpoints()["Endpoints"] == []
    assert sm.list_endpoint_configs()["EndpointConfigs"] == []
    assert sm.list_models()["Models"] == []


def test_dry_run_lists_and_deletes_nothing(moto, cli, tmp_path):
    sm = moto.client("sagemaker")
    up(cli)
    result = cli("down", "--dry-run")
    assert result.code == 0
    name = state(tmp_path)["endpoint"]["name"]
    assert result.out.splitlines()[:2] == [
        "would delete (if tagged by this tool):",
        f"endpoint {name}",
    ]
    assert sm.describe_endpoint(EndpointName=name)["EndpointStatus"] == "InService"


def test_a_half_made_up_is_cleaned_by_down(moto, cli, tmp_path):
    """moto rejects the instance type at CreateEndpointConfig: the model exists, down removes it."""
    sm = moto.client("sagemaker")
    failed = cli("up", "--image", IMAGE, "--instance-type", "ml.c6i.xlarge", "--poll", "0")
    assert failed.code == 2  # ValidationException: input error
    assert "AWS rejected CreateEndpointConfig as invalid" in failed.error_line()
    assert len(sm.list_models()["Models"]) == 1
    assert [r["type"] for r in state(tmp_path)["resources"]] == ["model"]
    result = cli("down", "--poll", "0")
    assert result.code == 0, result.err
    assert sm.list_models()["Models"] == []


def test_down_keeps_the_repository_and_model_data_unless_asked(moto, cli, tmp_path):
    onnx = tmp_path / "tiny.onnx"
    onnx.write_bytes(b"\x08\x07onnx")
    packaged = cli("package", onnx)
    assert packaged.code == 0, packaged.err
    up(cli)
    result = cli("down", "--poll", "0")
    assert result.code == 0, result.err
    assert f"kept     model data {packaged.out.strip()} (--delete-model-data)" in result.out
    assert state(tmp_path)["model_data"]["uri"] == packaged.out.strip()  # the state stays
    bucket, _, key = packaged.out.strip()[5:].partition("/")
    assert moto.client("s3").head_object(Bucket=bucket, Key=key)["ContentLength"] > 0
    again = cli("down", "--poll", "0")
    assert again.out.splitlines()[0] == "nothing to delete" and "kept     model data" in again.out
    last = cli("down", "--delete-model-data")
    assert last.code == 0 and "deleted  model data" in last.out
    assert not (tmp_path / ".deploy" / "state.json").exists()
