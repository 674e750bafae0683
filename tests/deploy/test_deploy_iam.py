"""The shipped IAM documents: least privilege, pinned to the account, scoped to the project's names
and tag, and a tag gate that cannot be bypassed.

That every API call the code makes is allowed is checked where the calls happen (the lifecycle,
push, update and cost tests record them, `not_in_policy`); here: what the documents allow and
deny, evaluated by tests/support/iam_eval.py (its own tests: test_deploy_iam_evaluator.py) on the
documents rendered for an account, and their shape."""

from __future__ import annotations

import json
import re

import pytest

from deploy import alarms, config, iam_policies, names
from deploy.autoscaling import backlog as scale_to_zero
from deploy.errors import UserError
from tests.support.aws import ROOT
from tests.support.iam_eval import Request, allowed

IAM = ROOT / "iam"
RAW_OPERATOR = json.loads((IAM / "deploy-operator-policy.json").read_text())
RAW_EXECUTION = json.loads((IAM / "sagemaker-execution-role-policy.json").read_text())
RAW_TRUST = json.loads((IAM / "sagemaker-execution-role-trust.json").read_text())

US, OTHER, REGION = "111122223333", "444455556666", "eu-west-1"
OPERATOR = [iam_policies.render(RAW_OPERATOR, US, REGION)]
EXECUTION = [iam_policies.render(RAW_EXECUTION, US, REGION)]
TAG = f"aws:RequestTag/{config.TAG_KEY}"
HAS = f"aws:ResourceTag/{config.TAG_KEY}"
OURS = config.TAG_VALUE
TAG_CONDITIONS = {TAG, HAS}

MODEL = f"arn:aws:sagemaker:{REGION}:{US}:model/yolov7-model-20300101-000000"
REPO = f"arn:aws:ecr:{REGION}:{US}:repository/yolov7-serve"
ALARM = (
    f"arn:aws:cloudwatch:{REGION}:{US}:alarm:"
    + alarms.names_for("yolov7-20300101-000000")["errors"]
)
TOPIC = f"arn:aws:sns:{REGION}:{US}:yolov7-answers"


def listed(value) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def statements(document: dict) -> list[dict]:
    assert document["Version"] == "2012-10-17"
    return document["Statement"]


def tagging(tags: dict[str, str]) -> dict:
    """The request context of a call that sets `tags`."""
    return {**{f"aws:RequestTag/{k}": v for k, v in tags.items()}, "aws:TagKeys": list(tags)}


def resource_tags(tags: dict[str, str]) -> dict:
    return {f"aws:ResourceTag/{k}": v for k, v in tags.items()}


STAMP = tagging({config.TAG_KEY: OURS})
SOMEONE_ELSES = [{}, {"team": "vision"}, {config.TAG_KEY: "someone-else"}]


# --- the tag gate ---------------------------------------------------------------------------------


@pytest.mark.parametrize("theirs", SOMEONE_ELSES, ids=["untagged", "other-tag", "other-owner"])
def test_stamping_our_tag_on_someone_elses_resource_is_denied(theirs):
    resource = resource_tags(theirs)
    assert not allowed(OPERATOR, Request("sagemaker:AddTags", MODEL, {**STAMP, **resource}))
    assert not allowed(OPERATOR, Request("ecr:TagResource", REPO, {**STAMP, **resource}))
    if theirs.get(config.TAG_KEY):  # another owner's tag is never overwritten
        target = f"arn:aws:application-autoscaling:{REGION}:{US}:scalable-target/x"
        context = {**STAMP, **resource}
        assert not allowed(
            OPERATOR, Request("application-autoscaling:TagResource", target, context)
        )
    if theirs.get(config.TAG_KEY):  # an alarm that carries another owner's tag
        assert not allowed(
            OPERATOR, Request("cloudwatch:TagResource", ALARM, {**STAMP, **resource})
        )
    # and none of them may then be changed or deleted
    for action in ("sagemaker:DeleteModel", "sagemaker:UpdateEndpoint", "sagemaker:DeleteEndpoint"):
        assert not allowed(
            OPERATOR, Request(action, MODEL.replace("model/", "endpoint/"), resource)
        )
    assert not allowed(OPERATOR, Request("sagemaker:DeleteModel", MODEL, resource))
    assert not allowed(OPERATOR, Request("ecr:DeleteRepository", REPO, resource))
    assert not allowed(OPERATOR, Request("ecr:PutImage", REPO, resource))
    assert not allowed(OPERATOR, Request("cloudwatch:DeleteAlarms", ALARM, resource))


def test_tagging_is_allowed_as_part_of_our_creates_only():
    for create, kind in [
        ("CreateModel", "model"),
        ("CreateEndpointConfig", "endpoint-config"),
        ("CreateEndpoint", "endpoint"),
        ("CreateTransformJob", "transform-job"),
    ]:
        arn = f"arn:aws:sagemaker:{REGION}:{US}:{kind}/yolov7-x"
        assert allowed(OPERATOR, Request(f"sagemaker:{create}", arn, STAMP))
        # SageMaker authorises the Tags of a Create* as AddTags with sagemaker:TaggingAction
        implied = {**STAMP, "sagemaker:TaggingAction": create}
        assert allowed(OPERATOR, Request("sagemaker:AddTags", arn, implied))
        assert not allowed(OPERATOR, Request(f"sagemaker:{create}", arn, {}))  # untagged create
        assert not allowed(
            OPERATOR, Request(f"sagemaker:{create}", arn, tagging({config.TAG_KEY: "x"}))
        )
        assert not allowed(
            OPERATOR, Request("sagemaker:AddTags", arn, {**implied, TAG: "someone-else"})
        )
    # a later AddTags, even on our own model, is not something the tool does: denied
    assert not allowed(OPERATOR, Request("sagemaker:AddTags", MODEL, {**STAMP, HAS: OURS}))
    # ECR authorises a create's tags on CreateRepository itself: no ecr:TagResource at all
    assert allowed(OPERATOR, Request("ecr:CreateRepository", REPO, STAMP))
    assert not allowed(OPERATOR, Request("ecr:CreateRepository", REPO, {}))
    assert not allowed(OPERATOR, Request("ecr:TagResource", REPO, {**STAMP, HAS: OURS}))
    # CloudWatch checks cloudwatch:TagResource for PutMetricAlarm's Tags on the new alarm
    assert allowed(OPERATOR, Request("cloudwatch:PutMetricAlarm", ALARM, STAMP))
    assert allowed(OPERATOR, Request("cloudwatch:TagResource", ALARM, STAMP))
    assert allowed(OPERATOR, Request("cloudwatch:PutMetricAlarm", ALARM, {**STAMP, HAS: OURS}))
    assert not allowed(OPERATOR, Request("cloudwatch:PutMetricAlarm", ALARM, {}))


def test_alarms_outside_our_names_cannot_be_tagged_written_or_deleted():
    for name in ("prod-cpu", "yolov7-prod-cpu", "TargetTracking-endpoint/yolov7-x-AlarmHigh-1"):
        arn = f"arn:aws:cloudwatch:{REGION}:{US}:alarm:{name}"
        assert not allowed(OPERATOR, Request("cloudwatch:TagResource", arn, STAMP))
    for name in ("prod-cpu", "yolov7-prod-cpu"):
        arn = f"arn:aws:cloudwatch:{REGION}:{US}:alarm:{name}"
        assert not allowed(OPERATOR, Request("cloudwatch:PutMetricAlarm", arn, STAMP))
        assert not allowed(OPERATOR, Request("cloudwatch:DeleteAlarms", arn, {HAS: OURS}))


def test_the_known_limit_of_cloudwatch_an_untagged_alarm_with_our_name():
    """CloudWatch has no tag-on-create condition key: an untagged alarm that someone named like ours
    (PREFIX-...-rollback-...) can be stamped. docs/security.md says so; this keeps it true."""
    assert allowed(OPERATOR, Request("cloudwatch:TagResource", ALARM, STAMP))


def test_deletes_and_updates_only_what_carries_our_tag():
    assert allowed(OPERATOR, Request("sagemaker:DeleteModel", MODEL, {HAS: OURS}))
    assert not allowed(OPERATOR, Request("sagemaker:DeleteModel", MODEL, {}))
    assert allowed(OPERATOR, Request("ecr:DeleteRepository", REPO, {HAS: OURS}))
    assert allowed(OPERATOR, Request("ecr:PutImage", REPO, {HAS: OURS}))
    assert allowed(OPERATOR, Request("cloudwatch:DeleteAlarms", ALARM, {HAS: OURS}))
    assert allowed(OPERATOR, Request("ecr:PutLifecyclePolicy", REPO, {HAS: OURS}))
    assert not allowed(OPERATOR, Request("ecr:PutLifecyclePolicy", REPO, {}))
    # the scan gate: findings of the project's repositories are read; a scan is started only in
    # a repository this tool made (its tag)
    assert allowed(OPERATOR, Request("ecr:DescribeImageScanFindings", REPO))
    assert allowed(OPERATOR, Request("ecr:StartImageScan", REPO, {HAS: OURS}))
    assert not allowed(OPERATOR, Request("ecr:StartImageScan", REPO, {}))
    elsewhere = REPO.replace(US, OTHER)
    assert not allowed(OPERATOR, Request("ecr:DescribeImageScanFindings", elsewhere))


# --- pinned to the account ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "action, bucket_path",
    [
        ("s3:PutObject", "yolov7-sagemaker/model.tar.gz"),
        ("s3:GetObject", "yolov7-photos/out/a.out"),
        ("s3:DeleteObject", "yolov7-sagemaker/model.tar.gz"),
        ("s3:ListBucket", "yolov7-sagemaker"),
        ("s3:PutBucketPolicy", "yolov7-sagemaker"),
        ("s3:DeleteBucket", "yolov7-sagemaker"),
    ],
)
def test_s3_only_in_buckets_this_account_owns(action, bucket_path):
    arn = f"arn:aws:s3:::{bucket_path}"
    assert allowed(OPERATOR, Request(action, arn, {"s3:ResourceAccount": US}))
    assert not allowed(OPERATOR, Request(action, arn, {"s3:ResourceAccount": OTHER}))  # sniped
    assert not allowed(OPERATOR, Request(action, arn, {}))
    if action in ("s3:PutObject", "s3:GetObject", "s3:ListBucket"):
        assert allowed(EXECUTION, Request(action, arn, {"s3:ResourceAccount": US}))
        assert not allowed(EXECUTION, Request(action, arn, {"s3:ResourceAccount": OTHER}))


def test_create_bucket_is_never_for_another_account():
    arn = "arn:aws:s3:::yolov7-sagemaker-111122223333-eu-west-1"
    assert allowed(OPERATOR, Request("s3:CreateBucket", arn, {}))  # the new bucket is the caller's
    assert not allowed(OPERATOR, Request("s3:CreateBucket", arn, {"s3:ResourceAccount": OTHER}))
    assert not allowed(OPERATOR, Request("s3:CreateBucket", "arn:aws:s3:::other-bucket", {}))


def test_other_accounts_sns_ecr_sagemaker_kms_roles_are_denied():
    def elsewhere(arn: str) -> str:
        return arn.replace(US, OTHER)

    assert allowed(OPERATOR, Request("sns:GetTopicAttributes", TOPIC))
    assert not allowed(OPERATOR, Request("sns:GetTopicAttributes", elsewhere(TOPIC)))
    assert allowed(EXECUTION, Request("sns:Publish", TOPIC))
    assert not allowed(EXECUTION, Request("sns:Publish", elsewhere(TOPIC)))
    assert not allowed(OPERATOR, Request("ecr:DescribeRepositories", elsewhere(REPO)))
    assert not allowed(EXECUTION, Request("ecr:BatchGetImage", elsewhere(REPO)))
    assert not allowed(OPERATOR, Request("sagemaker:CreateModel", elsewhere(MODEL), STAMP))
    assert not allowed(OPERATOR, Request("sagemaker:DeleteModel", elsewhere(MODEL), {HAS: OURS}))
    assert not allowed(OPERATOR, Request("cloudwatch:DeleteAlarms", elsewhere(ALARM), {HAS: OURS}))
    role = f"arn:aws:iam::{US}:role/yolov7-sagemaker-execution"
    to_sagemaker = {"iam:PassedToService": "sagemaker.amazonaws.com"}
    assert allowed(OPERATOR, Request("iam:PassRole", role, to_sagemaker))
    assert not allowed(OPERATOR, Request("iam:PassRole", elsewhere(role), to_sagemaker))
    assert not allowed(
        OPERATOR, Request("iam:PassRole", role, {"iam:PassedToService": "ec2.amazonaws.com"})
    )
    key = f"arn:aws:kms:{REGION}:{US}:key/1234abcd-12ab-34cd-56ef-1234567890ab"
    assert allowed(OPERATOR, Request("kms:DescribeKey", key))
    assert not allowed(OPERATOR, Request("kms:DescribeKey", elsewhere(key)))


def test_kms_only_through_the_services_that_need_it():
    key = f"arn:aws:kms:{REGION}:{US}:key/1234abcd-12ab-34cd-56ef-1234567890ab"
    grant = {
        "kms:GrantIsForAWSResource": True,
        "kms:ViaService": f"sagemaker.{REGION}.amazonaws.com",
    }
    assert allowed(OPERATOR, Request("kms:CreateGrant", key, grant))
    assert not allowed(
        OPERATOR, Request("kms:CreateGrant", key, {**grant, "kms:GrantIsForAWSResource": False})
    )
    assert not allowed(
        OPERATOR, Request("kms:CreateGrant", key, {"kms:GrantIsForAWSResource": True})
    )
    s3 = {"kms:ViaService": f"s3.{REGION}.amazonaws.com"}
    assert allowed(OPERATOR, Request("kms:GenerateDataKey", key, s3))
    assert not allowed(OPERATOR, Request("kms:GenerateDataKey", key, {}))  # direct: no
    assert allowed(EXECUTION, Request("kms:Decrypt", key, s3))
    assert not allowed(
        EXECUTION, Request("kms:Decrypt", key, {"kms:ViaService": f"ec2.{REGION}.amazonaws.com"})
    )
    assert not allowed(
        OPERATOR, Request("kms:Decrypt", key, {"kms:ViaService": "s3.us-east-1.amazonaws.com"})
    )


ARN = re.compile(r"arn:aws:(?P<service>[^:]*):(?P<region>[^:]*):(?P<account>[^:]*):")
NO_ACCOUNT_FIELD = {"s3"}  # bucket and object ARNs have no account (and no region)


@pytest.mark.parametrize("document", [RAW_OPERATOR, RAW_EXECUTION], ids=["operator", "execution"])
def test_every_arn_is_pinned_to_the_account_placeholder(document):
    """The sweep: each Allow's ARNs name ACCOUNT_ID (never `*`); an S3 ARN, which has no account
    field, only under an s3:ResourceAccount / aws:ResourceAccount condition on ACCOUNT_ID."""
    for statement in statements(document):
        condition = statement.get("Condition", {})
        for resource in listed(statement["Resource"]):
            if resource == "*":
                continue
            found = ARN.match(resource)
            assert found, resource
            if found["service"] in NO_ACCOUNT_FIELD:
                pins = {
                    value
                    for operator in ("StringEquals", "StringEqualsIfExists")
                    for key, value in condition.get(operator, {}).items()
                    if key in ("s3:ResourceAccount", "aws:ResourceAccount")
                }
                assert pins == {iam_policies.ACCOUNT}, (statement["Sid"], resource)
                if "StringEqualsIfExists" in condition:  # only where the bucket does not exist yet
                    assert listed(statement["Action"]) == ["s3:CreateBucket"], statement["Sid"]
            else:
                assert found["account"] == iam_policies.ACCOUNT, (statement["Sid"], resource)
                assert found["region"] in ("", iam_policies.REGION), (statement["Sid"], resource)


def test_rendering_fills_every_placeholder_and_checks_its_input():
    for name, document in iam_policies.rendered(US, REGION).items():
        assert iam_policies.placeholders(document) == set(), name
        assert US in json.dumps(document), name
    everywhere = iam_policies.render(RAW_OPERATOR, US)
    assert f"arn:aws:sagemaker:*:{US}:model/yolov7-*" in json.dumps(everywhere)
    assert iam_policies.placeholders(RAW_OPERATOR) == {"ACCOUNT_ID", "REGION"}
    for bad in ("12345", "1111222233334", "ACCOUNT_ID", "*"):
        with pytest.raises(UserError):
            iam_policies.render(RAW_OPERATOR, bad)
    with pytest.raises(UserError):
        iam_policies.render(RAW_OPERATOR, US, "eu-west-1:*")


def test_the_iam_command_writes_the_documents_for_one_account(cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "policies"
    result = cli("iam", "--account", US, "--region", REGION, "--out", out)
    assert result.code == 0, result.err
    assert sorted(result.out.split()) == sorted(str(out / n) for n in iam_policies.DOCUMENTS)
    trust = json.loads((out / "sagemaker-execution-role-trust.json").read_text())
    assert trust["Statement"][0]["Condition"] == {"StringEquals": {"aws:SourceAccount": US}}
    operator = json.loads((out / "deploy-operator-policy.json").read_text())
    assert operator == OPERATOR[0]
    assert not (tmp_path / ".deploy" / "state.json").exists()  # no AWS call, no state


@pytest.mark.parametrize("args", [["--account", "12345"], ["--account", US, "--region", "mars"]])
def test_the_iam_command_refuses_bad_input_and_writes_nothing(cli, tmp_path, monkeypatch, args):
    monkeypatch.chdir(tmp_path)
    result = cli("iam", *args, "--out", tmp_path / "policies")
    assert result.code == 2
    assert result.err.startswith("error: ") and result.err.count("\n") == 1, result.err
    assert not (tmp_path / "policies").exists()


# --- shape ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("document", [RAW_OPERATOR, RAW_EXECUTION], ids=["operator", "execution"])
def test_no_wildcard_actions_and_no_deny_tricks(document):
    for statement in statements(document):
        assert statement["Effect"] == "Allow"
        assert "NotAction" not in statement and "NotResource" not in statement
        for action in listed(statement["Action"]):
            name = action.partition(":")[2]
            assert name and "*" not in name, action  # no "sagemaker:*", no "Describe*"
    assert "FullAccess" not in json.dumps(document)


def test_operator_writes_are_tied_to_our_tag():
    for statement in statements(RAW_OPERATOR):
        writes = [
            a
            for a in listed(statement["Action"])
            if a.startswith(("sagemaker:", "ecr:"))
            and a.split(":")[1].startswith(
                (
                    "Create",
                    "Update",
                    "Delete",
                    "Stop",
                    "Add",
                    "Tag",
                    "Put",
                    "Start",
                    "Initiate",
                    "Upload",
                    "Complete",
                )
            )
        ]
        if writes:
            conditions = statement.get("Condition", {}).get("StringEquals", {})
            assert TAG_CONDITIONS & set(conditions), statement["Sid"]
            assert {conditions[k] for k in TAG_CONDITIONS & set(conditions)} == {OURS}


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
    conditioned = {"AutoscaleSageMakerVariantsOnly", "SageMakerMetricsOnly"}
    for document in (RAW_OPERATOR, RAW_EXECUTION):
        for statement in statements(document):
            resources = listed(statement["Resource"])
            if resources == ["*"]:
                assert statement["Sid"] in conditioned or set(listed(statement["Action"])) <= (
                    unscoped
                ), statement["Sid"]
                continue
            for resource in resources:
                assert (
                    "/yolov7-" in resource
                    or ":::yolov7-" in resource
                    or ":log-stream:yolov7-" in resource
                    or ":sns:REGION:ACCOUNT_ID:yolov7-" in resource
                    or ":alarm:yolov7-" in resource
                    or resource.endswith(("/aws/sagemaker/TransformJobs", "scalable-target/*"))
                    or "AWSServiceRoleForApplicationAutoScaling_SageMakerEndpoint" in resource
                    or re.fullmatch(r"arn:aws:kms:REGION:ACCOUNT_ID:key/\*", resource)
                    or re.fullmatch(
                        r"arn:aws:ec2:REGION:ACCOUNT_ID:(network-interface|subnet|security-group)/\*",
                        resource,
                    )
                ), resource


def test_the_names_the_tool_makes_fall_inside_the_policy():
    made = names.deployment(config.DEFAULT_PREFIX, names.stamp())
    sm = f"arn:aws:sagemaker:{REGION}:{US}"
    cases = [
        ("sagemaker:CreateModel", f"{sm}:model/{made.model}", STAMP),
        ("sagemaker:CreateEndpointConfig", f"{sm}:endpoint-config/{made.config}", STAMP),
        ("sagemaker:CreateEndpoint", f"{sm}:endpoint/{made.endpoint}", STAMP),
        (
            "sagemaker:CreateTransformJob",
            f"{sm}:transform-job/" + names.transform_job(config.DEFAULT_PREFIX, names.stamp()),
            STAMP,
        ),
        ("ecr:CreateRepository", f"arn:aws:ecr:{REGION}:{US}:repository/yolov7-serve", STAMP),
        (
            "s3:CreateBucket",
            f"arn:aws:s3:::yolov7-sagemaker-{US}-{REGION}",
            {},
        ),
        (
            "iam:PassRole",
            f"arn:aws:iam::{US}:role/yolov7-sagemaker-execution",
            {"iam:PassedToService": "sagemaker.amazonaws.com"},
        ),
        (
            "cloudwatch:PutMetricAlarm",
            f"arn:aws:cloudwatch:{REGION}:{US}:alarm:" + scale_to_zero.alarm_name(made.endpoint),
            STAMP,
        ),
    ] + [
        ("cloudwatch:PutMetricAlarm", f"arn:aws:cloudwatch:{REGION}:{US}:alarm:{name}", STAMP)
        for name in alarms.names_for(made.endpoint).values()
    ]
    for action, arn, context in cases:
        assert allowed(OPERATOR, Request(action, arn, context)), (action, arn)


def test_pass_role_only_to_sagemaker():
    (statement,) = [s for s in statements(RAW_OPERATOR) if "iam:PassRole" in listed(s["Action"])]
    assert statement["Condition"] == {
        "StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}
    }
    assert statement["Resource"] == "arn:aws:iam::ACCOUNT_ID:role/yolov7-*"


def test_only_sagemaker_may_assume_the_execution_role_and_only_for_this_account():
    (statement,) = statements(RAW_TRUST)
    assert statement["Principal"] == {"Service": "sagemaker.amazonaws.com"}
    assert statement["Action"] == "sts:AssumeRole"
    assert statement["Condition"] == {"StringEquals": {"aws:SourceAccount": "ACCOUNT_ID"}}


def test_kms_use_is_only_through_the_services_that_need_it():
    """Encrypt, decrypt and grants only via S3/SageMaker/ECR, grants only for AWS resources."""
    for document in (RAW_OPERATOR, RAW_EXECUTION):
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
