"""`python -m deploy template`: CloudFormation that cfn-lint accepts, that carries the security
settings, that holds exactly what `up` sends (checked against moto's server), and that is
written without a single AWS call."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import yaml
from botocore.client import BaseClient

from deploy import names
from deploy import template as cfn
from deploy.requests import Call
from deploy.spec import Spec
from tests.support.aws import IMAGE, REGION, ROLE, by_digest

SUBNETS = ["subnet-0a1b2c3d4e5f60001", "subnet-0a1b2c3d4e5f60002"]
GROUPS = ["sg-0a1b2c3d4e5f60003"]
KEY = "arn:aws:kms:eu-west-1:123456789012:key/0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"
ASYNC_OUTPUT = "s3://yolov7-async-photos/answers/output"
CAPTURE = "s3://yolov7-capture/endpoint"


def cfn_lint(*paths) -> subprocess.CompletedProcess:
    """cfn-lint from this interpreter's environment (requirements-test.txt pins it)."""
    return subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from cfnlint.runner import main; sys.exit(main())",
            *map(str, paths),
            "--regions",
            REGION,
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )


def resources(template: dict, kind: str) -> list[dict]:
    return [r["Properties"] for r in template["Resources"].values() if r["Type"] == kind]


def async_secured_template() -> dict:
    """An async endpoint with capture, VPC, isolation and KMS. Spec's VPC/KMS options belong to
    another command's work, so this one is built from the Spec (the CLI path is the same)."""
    spec = Spec(
        image=IMAGE,
        role=ROLE,
        instance_type="ml.c5.xlarge",
        async_inference={
            "config": {"OutputConfig": {"S3OutputPath": ASYNC_OUTPUT, "KmsKeyId": KEY}},
            "input": "s3://yolov7-async-photos/answers/input/",
            "output": ASYNC_OUTPUT + "/",
            "failure": "s3://yolov7-async-photos/answers/failure/",
        },
        data_capture={
            "EnableCapture": True,
            "InitialSamplingPercentage": 20,
            "DestinationS3Uri": CAPTURE,
            "KmsKeyId": KEY,
            "CaptureOptions": [{"CaptureMode": "Input"}, {"CaptureMode": "Output"}],
        },
        vpc_subnets=SUBNETS,
        security_groups=GROUPS,
        kms_key=KEY,
    ).check()
    return cfn.build(spec, "yolov7-secured", names.tags_for("yolov7"))


def test_templates_lint_clean_and_carry_the_settings(moto, cli, api_calls, tmp_path):
    plain, serverless, scaled = (tmp_path / n for n in ("plain.json", "sl.yaml", "scaled.yml"))
    common = ("--image", IMAGE, "--role", ROLE, "--endpoint-name", "yolov7-tpl")
    made = [
        cli("template", *common, "--out", plain),
        cli("template", *common, "--serverless-memory", "2048", "--out", serverless),
        cli(
            "template",
            *common,
            "--async",
            "--output",
            ASYNC_OUTPUT,
            "--autoscale",
            "--min",
            "0",
            "--max",
            "3",
            "--rollback-alarms",
            "--tag",
            "team=vision",
            "--out",
            scaled,
        ),
    ]
    assert [m.code for m in made] == [0, 0, 0], [m.err for m in made]
    secured = tmp_path / "secured.json"
    secured.write_text(json.dumps(async_secured_template()))
    linted = cfn_lint(plain, serverless, scaled, secured)
    assert linted.returncode == 0, linted.stdout + linted.stderr
    assert api_calls == []  # no AWS call at all, not even a read

    # a plain endpoint: isolated, no VPC, no key; role and image are parameters with defaults
    template = json.loads(plain.read_text())
    assert template["Parameters"]["ExecutionRoleArn"]["Default"] == ROLE
    assert template["Parameters"]["Image"]["Default"] == IMAGE  # no state: no digest known
    assert "is named by tag" in made[0].err
    (model,) = resources(template, "AWS::SageMaker::Model")
    assert model["EnableNetworkIsolation"] is True and "VpcConfig" not in model
    assert model["PrimaryContainer"]["Image"] == {"Ref": "Image"}
    (config,) = resources(template, "AWS::SageMaker::EndpointConfig")
    assert "KmsKeyId" not in config
    (endpoint,) = resources(template, "AWS::SageMaker::Endpoint")
    assert endpoint["EndpointName"] == "yolov7-tpl"
    assert {"Key": "managed-by", "Value": "yolov7-sagemaker-deploy"} in endpoint["Tags"]

    # serverless (YAML): SageMaker allows neither isolation nor a volume key there
    template = yaml.safe_load(serverless.read_text())
    (model,) = resources(template, "AWS::SageMaker::Model")
    assert "EnableNetworkIsolation" not in model
    (config,) = resources(template, "AWS::SageMaker::EndpointConfig")
    assert config["ProductionVariants"][0]["ServerlessConfig"] == {
        "MemorySizeInMB": 2048,
        "MaxConcurrency": 5,
    }

    # async from zero: backlog tracking + step policy + the alarm that wakes it; rollback alarms
    template = yaml.safe_load(scaled.read_text())
    (target,) = resources(template, "AWS::ApplicationAutoScaling::ScalableTarget")
    assert (target["MinCapacity"], target["MaxCapacity"]) == (0, 3)
    assert {"Key": "managed-by", "Value": "yolov7-sagemaker-deploy"} in target["Tags"]
    policies = resources(template, "AWS::ApplicationAutoScaling::ScalingPolicy")
    assert sorted(p["PolicyType"] for p in policies) == ["StepScaling", "TargetTrackingScaling"]
    alarm_names = sorted(a["AlarmName"] for a in resources(template, "AWS::CloudWatch::Alarm"))
    assert alarm_names == [
        "yolov7-tpl-backlog-without-capacity",
        "yolov7-tpl-rollback-5xx",
        "yolov7-tpl-rollback-p99-latency",
    ]
    (endpoint,) = resources(template, "AWS::SageMaker::Endpoint")
    rollback = endpoint["DeploymentConfig"]["AutoRollbackConfiguration"]["Alarms"]
    assert rollback == [
        {"AlarmName": {"Ref": "RollbackErrorsAlarm"}},
        {"AlarmName": {"Ref": "RollbackLatencyAlarm"}},
    ]
    assert {"Key": "team", "Value": "vision"} in endpoint["Tags"]

    # async + capture + VPC + KMS: every setting where SageMaker reads it
    template = json.loads(secured.read_text())
    (model,) = resources(template, "AWS::SageMaker::Model")
    assert model["EnableNetworkIsolation"] is True
    assert model["VpcConfig"] == {"SecurityGroupIds": GROUPS, "Subnets": SUBNETS}
    (config,) = resources(template, "AWS::SageMaker::EndpointConfig")
    assert config["KmsKeyId"] == KEY
    assert config["DataCaptureConfig"]["KmsKeyId"] == KEY
    assert config["AsyncInferenceConfig"]["OutputConfig"]["KmsKeyId"] == KEY


def test_template_refuses_bad_input_in_one_line(moto, cli, tmp_path):
    common = ("--image", IMAGE, "--role", ROLE)
    for args, said in (
        (("--out", tmp_path / "t.txt"), "neither JSON nor YAML"),
        (("--min", "2"), "--min is for autoscaling"),
        (("--serverless-memory", "2048", "--autoscale"), "serverless endpoint scales by itself"),
        (("--autoscale", "--min", "0"), "--min 0 needs an asynchronous endpoint"),
        (("--image", "not-an-image"), "is not a full image URI"),
    ):
        result = cli("template", *common, *args)
        assert result.code == 2, result.text
        assert said in result.error_line()
        assert result.out == ""
    assert list(tmp_path.glob("t.*")) == []


@pytest.fixture
def sent(monkeypatch) -> dict[str, dict]:
    """The kwargs of the last CreateModel / CreateEndpointConfig / CreateEndpoint sent."""
    calls: dict[str, dict] = {}
    original = BaseClient._make_api_call

    def record(self, operation_name, api_params):
        if operation_name.startswith("Create"):
            calls[operation_name] = json.loads(json.dumps(api_params))
        return original(self, operation_name, api_params)

    monkeypatch.setattr(BaseClient, "_make_api_call", record)
    return calls


def test_template_holds_what_up_sends(moto, cli, sent, tmp_path):
    options = (
        "--image",
        IMAGE,
        "--instance-type",
        "ml.c5.xlarge",
        "--instance-count",
        "2",
        "--conf",
        "0.3",
        "--capture",
        CAPTURE,
        "--capture-percent",
        "50",
        "--tag",
        "team=vision",
        "--endpoint-name",
        "yolov7-same",
        "--no-model-data",
    )
    up = cli("up", *options, "--poll", "0")
    assert up.code == 0, up.err
    made = cli("template", *options, "--role", ROLE, "--out", tmp_path / "t.json")
    assert made.code == 0, made.err
    template = json.loads((tmp_path / "t.json").read_text())
    # the image by the digest `up` recorded for that tag: no AWS call, and what `up` sent
    assert template["Parameters"]["Image"]["Default"] == by_digest(moto, IMAGE)
    assert "pinned to sha256:" in made.err
    resolve = {
        json.dumps({"Ref": "ExecutionRoleArn"}): ROLE,
        json.dumps({"Ref": "Image"}): by_digest(moto, IMAGE),
    }

    def resolved(value):
        if isinstance(value, dict):
            if json.dumps(value) in resolve:
                return resolve[json.dumps(value)]
            return {k: resolved(v) for k, v in value.items()}
        if isinstance(value, list):
            return [resolved(v) for v in value]
        return value

    (model,) = resources(template, "AWS::SageMaker::Model")
    (config,) = resources(template, "AWS::SageMaker::EndpointConfig")
    (endpoint,) = resources(template, "AWS::SageMaker::Endpoint")
    created_model = sent["CreateModel"]
    created_config = sent["CreateEndpointConfig"]
    # Exactly the kwargs, but for the names the stack generates and links.
    assert resolved(model) == {k: v for k, v in created_model.items() if k != "ModelName"}
    variant = dict(config["ProductionVariants"][0], ModelName=created_model["ModelName"])
    expected = {k: v for k, v in created_config.items() if k != "EndpointConfigName"}
    assert dict(config, ProductionVariants=[variant]) == expected
    assert endpoint["Tags"] == sent["CreateEndpoint"]["Tags"]
    assert endpoint["EndpointName"] == sent["CreateEndpoint"]["EndpointName"]

    # and what moto holds from `up` reads back the same
    sm = moto.client("sagemaker")
    live_model = sm.describe_model(ModelName=created_model["ModelName"])
    assert live_model["ExecutionRoleArn"] == ROLE
    assert live_model["PrimaryContainer"]["Image"] == by_digest(moto, IMAGE)
    assert live_model["PrimaryContainer"]["Environment"] == model["PrimaryContainer"]["Environment"]
    live_config = sm.describe_endpoint_config(
        EndpointConfigName=created_config["EndpointConfigName"]
    )
    live_variant = live_config["ProductionVariants"][0]
    for key in ("InstanceType", "InitialInstanceCount", "InitialVariantWeight", "VariantName"):
        assert live_variant[key] == config["ProductionVariants"][0][key]
    assert live_config["DataCaptureConfig"]["DestinationS3Uri"] == CAPTURE
    assert live_config["DataCaptureConfig"]["InitialSamplingPercentage"] == 50
    live_tags = sm.list_tags(ResourceArn=live_config["EndpointConfigArn"])["Tags"]
    assert sorted(live_tags, key=lambda t: t["Key"]) == config["Tags"]


def test_build_refuses_a_call_it_cannot_express():
    spec = Spec(image=IMAGE, role=ROLE)
    with pytest.raises(ValueError, match="DeleteModel"):
        cfn.build(spec, "e", {}, [Call("sagemaker", "delete_model", {"ModelName": "m"})])
