"""The shipped IAM documents: least privilege, scoped to the project's names and tag.

That every API call the code makes is allowed is checked where the calls happen (the lifecycle,
push, update and cost tests record them); here: the shape of the documents themselves."""

from __future__ import annotations

import fnmatch
import json

import pytest

from deploy import config, names
from deploy.autoscaling import backlog as scale_to_zero
from tests.support.aws import ROOT

IAM = ROOT / "iam"
OPERATOR = json.loads((IAM / "deploy-operator-policy.json").read_text())
EXECUTION = json.loads((IAM / "sagemaker-execution-role-policy.json").read_text())
TRUST = json.loads((IAM / "sagemaker-execution-role-trust.json").read_text())
OUR_ACCOUNT = {"aws:ResourceAccount": "${aws:PrincipalAccount}"}
TAG_CONDITIONS = {f"aws:RequestTag/{config.TAG_KEY}", f"aws:ResourceTag/{config.TAG_KEY}"}


def listed(value) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def statements(document: dict) -> list[dict]:
    assert document["Version"] == "2012-10-17"
    return document["Statement"]


@pytest.mark.parametrize("document", [OPERATOR, EXECUTION], ids=["operator", "execution"])
def test_no_wildcard_actions_and_no_deny_tricks(document):
    for statement in statements(document):
        assert statement["Effect"] == "Allow"
        assert "NotAction" not in statement and "NotResource" not in statement
        for action in listed(statement["Action"]):
            name = action.partition(":")[2]
            assert name and "*" not in name, action  # no "sagemaker:*", no "Describe*"
    assert "FullAccess" not in json.dumps(document)


def test_operator_writes_are_tied_to_our_tag():
    for statement in statements(OPERATOR):
        actions = listed(statement["Action"])
        writes = [
            a
            for a in actions
            if a.startswith(("sagemaker:", "ecr:"))
            and a.split(":")[1].startswith(("Create", "Update", "Delete", "Stop", "Add", "Tag"))
        ]
        if writes:
            conditions = statement.get("Condition", {}).get("StringEquals", {})
            assert TAG_CONDITIONS & set(conditions), statement["Sid"]
            assert set(conditions.values()) == {config.TAG_VALUE}


def test_resources_are_scoped_to_the_project_prefix():
    unscoped = {
        # actions that AWS does not let a policy scope to a resource
        "ecr:GetAuthorizationToken",
        "pricing:DescribeServices",
        "pricing:GetProducts",
        "pricing:GetAttributeValues",
        "application-autoscaling:DescribeScalableTargets",
        "application-autoscaling:DescribeScalingPolicies",
        "cloudwatch:DescribeAlarms",
        "cloudwatch:GetMetricData",
        "cloudwatch:GetMetricStatistics",
        "cloudwatch:PutMetricData",
        "ec2:DescribeSubnets",
        "ec2:DescribeSecurityGroups",
        "ec2:DescribeVpcs",
        "ec2:DescribeNetworkInterfaces",
        "ec2:DescribeDhcpOptions",
    }
    conditioned = {
        "AutoscaleSageMakerVariantsOnly",
        "SageMakerMetricsOnly",
        "VpcNetworkInterfacesInThisAccount",
    }
    for document in (OPERATOR, EXECUTION):
        for statement in statements(document):
            resources = listed(statement["Resource"])
            if resources == ["*"]:
                assert statement["Sid"] in conditioned or set(listed(statement["Action"])) <= (
                    unscoped
                ), statement["Sid"]
                continue
            for resource in resources:
                if resource == "arn:aws:kms:*:*:key/*":  # any key the user names, but ours
                    assert statement["Condition"]["StringEquals"] == OUR_ACCOUNT, statement["Sid"]
                    continue
                assert (
                    "/yolov7-" in resource
                    or ":::yolov7-" in resource
                    or ":log-stream:yolov7-" in resource
                    or ":sns:*:*:yolov7-" in resource
                    or ":alarm:yolov7-" in resource
                    or resource.endswith(("/aws/sagemaker/TransformJobs", "scalable-target/*"))
                    or "AWSServiceRoleForApplicationAutoScaling_SageMakerEndpoint" in resource
                ), resource


def test_the_names_the_tool_makes_fall_inside_the_policy():
    made = names.deployment(config.DEFAULT_PREFIX, names.stamp())
    arns = [
        f"arn:aws:sagemaker:eu-west-1:123456789012:model/{made.model}",
        f"arn:aws:sagemaker:eu-west-1:123456789012:endpoint-config/{made.config}",
        f"arn:aws:sagemaker:eu-west-1:123456789012:endpoint/{made.endpoint}",
        "arn:aws:sagemaker:eu-west-1:123456789012:transform-job/"
        + names.transform_job(config.DEFAULT_PREFIX, names.stamp()),
        "arn:aws:ecr:eu-west-1:123456789012:repository/yolov7-serve",
        "arn:aws:s3:::yolov7-sagemaker-123456789012-eu-west-1",
        "arn:aws:iam::123456789012:role/yolov7-sagemaker-execution",
        "arn:aws:cloudwatch:eu-west-1:123456789012:alarm:"
        + scale_to_zero.alarm_name(made.endpoint),
    ]
    patterns = [r for s in statements(OPERATOR) for r in listed(s["Resource"])]
    for arn in arns:
        assert any(fnmatch.fnmatchcase(arn, p) for p in patterns), arn


def test_pass_role_only_to_sagemaker():
    (statement,) = [s for s in statements(OPERATOR) if "iam:PassRole" in listed(s["Action"])]
    assert statement["Condition"] == {
        "StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}
    }
    assert statement["Resource"] == "arn:aws:iam::*:role/yolov7-*"


def test_only_sagemaker_may_assume_the_execution_role_and_only_for_this_account():
    (statement,) = statements(TRUST)
    assert statement["Principal"] == {"Service": "sagemaker.amazonaws.com"}
    assert statement["Action"] == "sts:AssumeRole"
    assert statement["Condition"] == {"StringEquals": {"aws:SourceAccount": "ACCOUNT_ID"}}


def test_kms_use_is_only_through_the_services_that_need_it():
    """Encrypt, decrypt and grants only via S3/SageMaker/ECR, grants only for AWS resources."""
    for document in (OPERATOR, EXECUTION):
        for statement in statements(document):
            actions = [a for a in listed(statement["Action"]) if a.startswith("kms:")]
            if not actions or actions == ["kms:DescribeKey"]:
                continue
            via = listed(statement["Condition"]["StringLike"]["kms:ViaService"])
            assert via and all(
                v.split(".")[0] in ("s3", "sagemaker", "ecr") and v.endswith(".amazonaws.com")
                for v in via
            ), statement["Sid"]
            if "kms:CreateGrant" in actions:
                assert statement["Condition"]["Bool"] == {"kms:GrantIsForAWSResource": "true"}
