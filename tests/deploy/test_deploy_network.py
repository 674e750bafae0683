"""VPC, network isolation and KMS (deploy/network.py, deploy/encryption.py) against moto's server:
what the emulator holds after `up`, `transform`, `package`, and bad input refused before anything
is created. moto's SageMaker keeps EnableNetworkIsolation through tests/support/aws.py's patch."""

from __future__ import annotations

import argparse
from dataclasses import replace
from types import SimpleNamespace

import pytest

from deploy.commands import update as update_command
from deploy.spec import Spec
from tests.support.aws import IMAGE, not_in_policy, state

BUCKET = "yolov7-net-test"
TYPE = ("--instance-type", "ml.c5.xlarge")  # moto knows no ml.c6i


@pytest.fixture
def net(moto):
    """Two default-VPC subnets, the default VPC's security group, and an enabled key."""
    ec2 = moto.client("ec2")
    default_vpc = ec2.describe_vpcs(Filters=[{"Name": "isDefault", "Values": ["true"]}])["Vpcs"]
    vpc = default_vpc[0]["VpcId"]
    subnets = ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vpc]}])["Subnets"]
    groups = ec2.describe_security_groups(Filters=[{"Name": "vpc-id", "Values": [vpc]}])
    key = moto.client("kms").create_key()["KeyMetadata"]["Arn"]
    moto.client("s3").create_bucket(
        Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"}
    )
    return {
        "subnets": ",".join(s["SubnetId"] for s in subnets[:2]),
        "group": groups["SecurityGroups"][0]["GroupId"],
        "key": key,
    }


def nothing_created(moto) -> None:
    sm = moto.client("sagemaker")
    assert sm.list_models()["Models"] == []
    assert sm.list_endpoint_configs()["EndpointConfigs"] == []
    assert sm.list_endpoints()["Endpoints"] == []


def test_up_in_a_vpc_with_a_key_and_capture(moto, cli, net, tmp_path, api_calls):
    made = cli(
        "up", "--image", IMAGE, *TYPE, "--poll", "0",
        "--vpc-subnets", net["subnets"], "--security-groups", net["group"],
        "--kms-key", net["key"], "--capture", f"s3://{BUCKET}/capture",
    )  # fmt: skip
    assert made.code == 0, made.err
    recorded = state(tmp_path)["endpoint"]
    sm = moto.client("sagemaker")
    model = sm.describe_model(ModelName=recorded["model"])
    assert model["VpcConfig"] == {
        "Subnets": net["subnets"].split(","),
        "SecurityGroupIds": [net["group"]],
    }
    assert model["EnableNetworkIsolation"] is True
    config = sm.describe_endpoint_config(EndpointConfigName=recorded["config"])
    assert config["KmsKeyId"] == net["key"]
    assert config["DataCaptureConfig"]["KmsKeyId"] == net["key"]
    assert recorded["kms_key"] == net["key"]
    assert recorded["vpc_subnets"] == net["subnets"].split(",")
    assert recorded["network_isolation"] is True
    assert not_in_policy(api_calls) == []
    assert "ec2:DescribeSubnets" in api_calls and "kms:DescribeKey" in api_calls


def test_an_alias_is_recorded_as_the_key_arn(moto, cli, net, tmp_path):
    moto.client("kms").create_alias(AliasName="alias/yolov7-net", TargetKeyId=net["key"])
    made = cli("up", "--image", IMAGE, *TYPE, "--poll", "0", "--kms-key", "alias/yolov7-net")
    assert made.code == 0, made.err
    assert state(tmp_path)["endpoint"]["kms_key"] == net["key"]


@pytest.mark.parametrize(("flag", "isolated"), [((), True), (("--no-network-isolation",), False)])
def test_isolation_is_on_unless_turned_off(moto, cli, tmp_path, flag, isolated):
    made = cli("up", "--image", IMAGE, *TYPE, "--poll", "0", *flag)
    assert made.code == 0, made.err
    model = state(tmp_path)["endpoint"]["model"]
    described = moto.client("sagemaker").describe_model(ModelName=model)
    assert described["EnableNetworkIsolation"] is isolated
    assert not described.get("VpcConfig")  # moto answers {} for none


def test_serverless_runs_without_isolation_and_says_why(moto, cli, tmp_path):
    made = cli("up", "--image", IMAGE, "--serverless-memory", "2048", "--poll", "0")
    assert made.code == 0, made.err
    assert "serverless endpoints cannot run isolated" in made.err
    model = state(tmp_path)["endpoint"]["model"]
    assert (
        moto.client("sagemaker").describe_model(ModelName=model)["EnableNetworkIsolation"] is False
    )


def test_update_changes_the_key_and_keeps_the_vpc(moto, cli, net, tmp_path):
    """update's change set (moto 5.2.1 answers UpdateEndpoint with a 500, so the change set and
    the Spec it makes are checked, not the swap: tests/deploy/test_deploy_update.py covers that)."""
    made = cli(
        "up", "--image", IMAGE, *TYPE, "--poll", "0",
        "--vpc-subnets", net["subnets"], "--security-groups", net["group"],
    )  # fmt: skip
    assert made.code == 0, made.err
    recorded = state(tmp_path)["endpoint"]
    parser = argparse.ArgumentParser()
    update_command.add_arguments(parser)
    ctx_state = {"endpoint": recorded}
    ctx = SimpleNamespace(state=ctx_state)
    changes = update_command.change_set(ctx, parser.parse_args(["--kms-key", net["key"]]), recorded)
    assert changes == {"kms_key": net["key"]}
    wanted = replace(Spec.from_recorded(recorded, {}), **changes)
    assert wanted.config_settings() == {"KmsKeyId": net["key"]}
    assert wanted.model_settings()["VpcConfig"]["Subnets"] == net["subnets"].split(",")
    off = update_command.change_set(
        ctx, parser.parse_args(["--no-vpc", "--no-network-isolation"]), recorded
    )
    assert off == {"vpc_subnets": [], "security_groups": [], "network_isolation": False}
    assert replace(Spec.from_recorded(recorded, {}), **off).model_settings() == {
        "EnableNetworkIsolation": False
    }


def test_async_output_is_encrypted_with_the_key(moto, cli, net, tmp_path):
    made = cli(
        "up", "--async", "--image", IMAGE, *TYPE, "--poll", "0",
        "--output", f"s3://{BUCKET}/photos/output", "--kms-key", net["key"],
    )  # fmt: skip
    assert made.code == 0, made.err
    recorded = state(tmp_path)["endpoint"]
    config = moto.client("sagemaker").describe_endpoint_config(
        EndpointConfigName=recorded["config"]
    )
    assert config["AsyncInferenceConfig"]["OutputConfig"]["KmsKeyId"] == net["key"]
    assert config["KmsKeyId"] == net["key"]


def test_transform_job_gets_the_key_and_its_own_vpc_model(moto, cli, net, tmp_path, api_calls):
    made = cli("up", "--image", IMAGE, *TYPE, "--poll", "0")
    assert made.code == 0, made.err
    moto.client("s3").put_object(Bucket=BUCKET, Key="batch/in/a.jpg", Body=b"\xff\xd8 not used")
    job = cli(
        "transform", "--input", f"s3://{BUCKET}/batch/in/", "--output", f"s3://{BUCKET}/batch/out/",
        *TYPE, "--kms-key", net["key"], "--vpc-subnets", net["subnets"],
        "--security-groups", net["group"], "--no-wait",
    )  # fmt: skip
    assert job.code == 0, job.err
    sm = moto.client("sagemaker")
    name = state(tmp_path)["transform_jobs"][-1]["name"]
    described = sm.describe_transform_job(TransformJobName=name)
    assert described["TransformOutput"]["KmsKeyId"] == net["key"]
    assert described["TransformResources"]["VolumeKmsKeyId"] == net["key"]
    model = sm.describe_model(ModelName=described["ModelName"])
    assert described["ModelName"] != state(tmp_path)["endpoint"]["model"]
    assert model["VpcConfig"]["SecurityGroupIds"] == [net["group"]]
    assert model["EnableNetworkIsolation"] is True
    ledger = [(r["type"], r["name"]) for r in state(tmp_path)["resources"]]
    assert ("model", described["ModelName"]) in ledger  # `down` removes it
    assert not_in_policy(api_calls) == []


def test_package_uploads_with_sse_kms(moto, cli, net, tmp_path):
    onnx = tmp_path / "tiny.onnx"
    onnx.write_bytes(b"not really onnx, packaging does not parse it")
    packed = cli("package", onnx, "--bucket", BUCKET, "--kms-key", net["key"])
    assert packed.code == 0, packed.err
    key = packed.out.strip().partition(f"s3://{BUCKET}/")[2]
    head = moto.client("s3").head_object(Bucket=BUCKET, Key=key)
    assert head["ServerSideEncryption"] == "aws:kms"
    assert head["SSEKMSKeyId"] == net["key"]
    assert state(tmp_path)["model_data"]["kms_key"] == net["key"]


def test_push_creates_a_kms_encrypted_repository(moto, cli, net, fake_cli, build_context):
    fake_cli("docker")
    pushed = cli(
        "push", "--context", build_context, "--repository", "yolov7-kms", "--kms-key", net["key"]
    )
    assert pushed.code == 0, pushed.err
    repository = moto.client("ecr").describe_repositories(repositoryNames=["yolov7-kms"])
    encryption = repository["repositories"][0]["encryptionConfiguration"]
    assert encryption == {"encryptionType": "KMS", "kmsKey": net["key"]}


def _other_vpc_subnet(moto) -> str:
    ec2 = moto.client("ec2")
    vpc = ec2.create_vpc(CidrBlock="10.9.0.0/16")["Vpc"]["VpcId"]
    return ec2.create_subnet(VpcId=vpc, CidrBlock="10.9.1.0/24")["Subnet"]["SubnetId"]


def _disabled_key(moto) -> str:
    kms = moto.client("kms")
    key = kms.create_key()["KeyMetadata"]
    kms.disable_key(KeyId=key["KeyId"])  # moto's DisableKey takes the id, not the ARN
    return key["Arn"]


BAD = {
    "subnet in another VPC": (
        lambda moto, net: ["--vpc-subnets", f"{net['subnets']},{_other_vpc_subnet(moto)}",
                           "--security-groups", net["group"]],
        "must share one VPC",
    ),
    "unknown subnet": (
        lambda moto, net: ["--vpc-subnets", "subnet-0123456789abcdef0",
                           "--security-groups", net["group"]],
        "subnet-0123456789abcdef0 does not exist",
    ),
    "missing security group": (
        lambda moto, net: ["--vpc-subnets", net["subnets"],
                           "--security-groups", "sg-0123456789abcdef0"],
        "sg-0123456789abcdef0 does not exist",
    ),
    "subnets without groups": (
        lambda moto, net: ["--vpc-subnets", net["subnets"]],
        "--vpc-subnets needs --security-groups",
    ),
    "unknown key": (
        lambda moto, net: ["--kms-key", "alias/yolov7-nobody"],
        "does not exist",
    ),
    "disabled key": (lambda moto, net: ["--kms-key", _disabled_key(moto)], "is Disabled"),
    "key in another region": (
        lambda moto, net: ["--kms-key", net["key"].replace("eu-west-1", "us-east-1")],
        "is in us-east-1, not eu-west-1",
    ),
    "volume key on local NVMe": (
        lambda moto, net: ["--kms-key", net["key"], "--instance-type", "ml.c5d.xlarge"],
        "local NVMe",
    ),
    "serverless in a VPC": (
        lambda moto, net: ["--serverless-memory", "2048", "--vpc-subnets", net["subnets"],
                           "--security-groups", net["group"]],
        "serverless endpoints support neither a VPC nor network isolation",
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", list(BAD))
def test_bad_network_or_key_is_one_line_and_nothing_is_created(moto, cli, net, case):
    options, said = BAD[case]
    result = cli("up", "--image", IMAGE, *TYPE, "--poll", "0", *options(moto, net))
    assert result.code == 2, result.text
    assert said in result.error_line()
    nothing_created(moto)


def test_transform_with_a_bad_subnet_creates_no_model_or_job(moto, cli, net, tmp_path):
    assert cli("up", "--image", IMAGE, *TYPE, "--poll", "0").code == 0
    moto.client("s3").put_object(Bucket=BUCKET, Key="batch/in/a.jpg", Body=b"x")
    models = moto.client("sagemaker").list_models()["Models"]
    refused = cli(
        "transform", "--input", f"s3://{BUCKET}/batch/in/",
        "--vpc-subnets", _other_vpc_subnet(moto), "--security-groups", net["group"], "--no-wait",
    )  # fmt: skip
    assert refused.code == 2
    assert "must share one VPC" in refused.error_line()
    assert moto.client("sagemaker").list_models()["Models"] == models
    assert moto.client("sagemaker").list_transform_jobs()["TransformJobSummaries"] == []
