"""The policy evaluator of tests/support/iam_eval.py on IAM's documented rules, so that the tests
of the shipped documents (test_deploy_iam.py) cannot pass because the evaluator says yes to all."""

from __future__ import annotations

import pytest

from tests.support.iam_eval import (
    ALLOW,
    EXPLICIT_DENY,
    IMPLICIT_DENY,
    Request,
    allowed,
    arn_like,
    condition_holds,
    evaluate,
)


def policy(*statements):
    return [{"Version": "2012-10-17", "Statement": list(statements)}]


def test_nothing_is_allowed_by_default_and_an_explicit_deny_wins():
    read = {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::b/*"}
    deny = {"Effect": "Deny", "Action": "s3:*", "Resource": "*"}
    request = Request("s3:GetObject", "arn:aws:s3:::b/k")
    assert evaluate(policy(), request) == IMPLICIT_DENY
    assert evaluate(policy(read), request) == ALLOW
    assert evaluate(policy(read, deny), request) == EXPLICIT_DENY
    assert evaluate(policy(read), Request("s3:PutObject", "arn:aws:s3:::b/k")) == IMPLICIT_DENY


def test_actions_are_case_insensitive_wildcards_resources_case_sensitive():
    doc = policy({"Effect": "Allow", "Action": "iam:Get*", "Resource": "arn:aws:s3:::Bucket/*"})
    assert allowed(doc, Request("IAM:getuser", "arn:aws:s3:::Bucket/a/b:c"))  # * spans / and :
    assert not allowed(doc, Request("iam:ListUsers", "arn:aws:s3:::Bucket/a"))
    assert not allowed(doc, Request("iam:GetUser", "arn:aws:s3:::bucket/a"))
    single = policy({"Effect": "Allow", "Action": "s3:?etObject", "Resource": "*"})
    assert allowed(single, Request("s3:GetObject", "x"))
    assert not allowed(single, Request("s3:ListObject", "x"))


def test_not_action_and_not_resource():
    # IAM's example: everything except IAM.
    doc = policy({"Effect": "Allow", "NotAction": "iam:*", "Resource": "*"})
    assert allowed(doc, Request("s3:GetObject", "arn:aws:s3:::b/k"))
    assert not allowed(doc, Request("iam:CreateUser", "arn:aws:iam::111122223333:user/x"))
    other = policy({"Effect": "Allow", "Action": "s3:*", "NotResource": "arn:aws:s3:::secret*"})
    assert allowed(other, Request("s3:GetObject", "arn:aws:s3:::public/k"))
    assert not allowed(other, Request("s3:GetObject", "arn:aws:s3:::secret/k"))


def test_a_missing_key_fails_a_condition_except_negated_operators_if_exists_and_null():
    # "If the key ... is not present in the request context, the values do not match and the
    # condition is false; ... StringNotLike or ArnNotLike ... the condition is true."
    assert not condition_holds("StringEquals", "aws:RequestTag/team", "a", {})
    assert not condition_holds("StringLike", "aws:RequestTag/team", "*", {})
    assert condition_holds("StringNotEquals", "aws:RequestTag/team", "a", {})
    assert condition_holds("StringNotLike", "aws:RequestTag/team", "a*", {})
    assert condition_holds("StringEqualsIfExists", "aws:ResourceTag/team", "a", {})
    assert not condition_holds(
        "StringEqualsIfExists", "aws:ResourceTag/team", "a", {"aws:ResourceTag/team": "b"}
    )
    assert condition_holds("Null", "aws:TokenIssueTime", "true", {})
    assert not condition_holds("Null", "aws:TokenIssueTime", "false", {})
    assert condition_holds("Null", "aws:TokenIssueTime", "false", {"aws:TokenIssueTime": "t"})


def test_values_of_a_key_are_alternatives_keys_and_operators_must_all_hold():
    statement = {
        "Effect": "Allow",
        "Action": "ec2:RunInstances",
        "Resource": "*",
        "Condition": {
            "StringEquals": {"aws:RequestTag/env": ["dev", "test"], "aws:RequestTag/team": "ml"},
            "Bool": {"aws:SecureTransport": "true"},
        },
    }
    doc = policy(statement)
    good = {"aws:RequestTag/env": "test", "aws:RequestTag/team": "ml", "aws:SecureTransport": True}
    assert allowed(doc, Request("ec2:RunInstances", "x", good))
    assert allowed(doc, Request("ec2:RunInstances", "x", {**good, "AWS:REQUESTTAG/ENV": "dev"}))
    assert not allowed(
        doc, Request("ec2:RunInstances", "x", {**good, "aws:RequestTag/env": "prod"})
    )
    assert not allowed(
        doc, Request("ec2:RunInstances", "x", {**good, "aws:SecureTransport": False})
    )
    del good["aws:RequestTag/team"]
    assert not allowed(doc, Request("ec2:RunInstances", "x", good))
    assert not condition_holds(
        "StringEquals", "k", "Dev", {"k": "dev"}
    )  # values are case-sensitive


def test_set_operators():
    # IAM's warning: ForAllValues is true when the key is missing or empty.
    assert condition_holds("ForAllValues:StringEquals", "aws:TagKeys", ["a", "b"], {})
    assert condition_holds(
        "ForAllValues:StringEquals", "aws:TagKeys", ["a", "b"], {"aws:TagKeys": ["a"]}
    )
    assert not condition_holds(
        "ForAllValues:StringEquals", "aws:TagKeys", ["a"], {"aws:TagKeys": ["a", "c"]}
    )
    assert not condition_holds("ForAnyValue:StringEquals", "aws:TagKeys", ["a"], {})
    assert condition_holds(
        "ForAnyValue:StringEquals", "aws:TagKeys", ["a"], {"aws:TagKeys": ["c", "a"]}
    )
    assert not condition_holds(
        "ForAnyValue:StringEquals", "aws:TagKeys", ["a"], {"aws:TagKeys": ["c"]}
    )
    with pytest.raises(TypeError):  # a set under a single-valued operator is a policy bug
        condition_holds("StringEquals", "aws:TagKeys", "a", {"aws:TagKeys": ["a"]})


def test_arn_like_compares_field_by_field():
    assert arn_like("arn:aws:iam::*:role/x-*", "arn:aws:iam::111122223333:role/x-1")
    assert not arn_like("arn:aws:iam::*:role/x-*", "arn:aws:iam::111122223333:user/x-1")
    assert not arn_like("arn:aws:s3:::b", "not-an-arn")
    assert condition_holds(
        "ArnLike",
        "aws:SourceArn",
        "arn:aws:sagemaker:*:111122223333:*",
        {"aws:SourceArn": "arn:aws:sagemaker:eu-west-1:111122223333:endpoint/e"},
    )
    assert not condition_holds(
        "ArnLike",
        "aws:SourceArn",
        "arn:aws:sagemaker:*:111122223333:*",
        {"aws:SourceArn": "arn:aws:sagemaker:eu-west-1:444455556666:endpoint/e"},
    )


def test_policy_variables_are_refused_rather_than_misread():
    doc = policy(
        {"Effect": "Allow", "Action": "s3:*", "Resource": "arn:aws:s3:::b/${aws:username}/*"}
    )
    with pytest.raises(ValueError):
        allowed(doc, Request("s3:GetObject", "arn:aws:s3:::b/u/k"))
