"""Credentials: --assume-role through moto's STS, and no secret ever reaching output or state."""

from __future__ import annotations

from deploy.aws import connect
from tests.support.aws import ACCOUNT, IMAGE, SECRET_KEY, state

DEPLOYER = f"arn:aws:iam::{ACCOUNT}:role/yolov7-deployer"


def test_assume_role_first_then_work_as_that_role(moto, cli, capsys):
    aws = connect(assume_role=DEPLOYER, external_id="ext-123")
    creds = aws.session.get_credentials().get_frozen_credentials()
    assert creds.access_key.startswith("ASIA") and creds.token  # temporary STS credentials
    assert aws.identity()["arn"].startswith(f"arn:aws:sts::{ACCOUNT}:assumed-role/yolov7-deployer/")

    result = cli("status", aws=aws)
    assert result.code == 0, result.err
    assert "identity   arn:aws:sts::123456789012:assumed-role/yolov7-deployer/" in result.out
    for secret in (creds.secret_key, creds.token, SECRET_KEY):
        assert secret not in result.text


def test_assume_role_from_the_command_line_in_a_child_process(moto, cli_process, tmp_path):
    made = cli_process(
        "--assume-role", DEPLOYER, "up", "--image", IMAGE, "--instance-type", "ml.c5.xlarge",
        "--poll", "0",
    )  # fmt: skip
    assert made.code == 0, made.err
    assert f"assumed role: arn:aws:sts::{ACCOUNT}:assumed-role/yolov7-deployer/" in made.err
    shown = cli_process("status", "--assume-role", DEPLOYER)
    assert "assumed-role/yolov7-deployer/yolov7-sagemaker-deploy-" in shown.out
    saved = (tmp_path / ".deploy" / "state.json").read_text()
    for text in (made.text, shown.text, saved):
        assert SECRET_KEY not in text and "ASIA" not in text
    assert state(tmp_path)["endpoint"]["status"] == "InService"


def test_a_malformed_role_arn_is_an_input_error(moto, cli_process):
    result = cli_process("status", "--assume-role", "yolov7-deployer")
    assert result.code == 2
    assert result.error_line() == (
        "error: --assume-role 'yolov7-deployer' is not an IAM role ARN. Expected "
        "arn:aws:iam::ACCOUNT:role/NAME."
    )


def test_debug_tracebacks_still_carry_no_secret(moto, cli_process):
    result = cli_process("--debug", "status", "--profile", "missing-profile")
    assert result.code == 2
    assert "Traceback" in result.err  # --debug shows it
    assert SECRET_KEY not in result.text
