"""Credentials: --assume-role through moto's STS, and no secret ever reaching output or state."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

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


def test_assumed_credentials_near_expiry_are_renewed_on_the_next_call(moto):
    """The session's clock is moved to 100 s before expiry: the next call assumes the role again
    through moto's STS (new keys each time) and succeeds with the new keys."""
    ahead = [timedelta(0)]
    aws = connect(assume_role=DEPLOYER, clock=lambda: datetime.now(UTC) + ahead[0])
    credentials = aws.session.get_credentials()
    first = credentials.get_frozen_credentials()
    sts = aws.client("sts")
    assert sts.get_caller_identity()["Arn"].startswith(f"arn:aws:sts::{ACCOUNT}:assumed-role/")
    assert credentials.get_frozen_credentials().access_key == first.access_key  # still fresh

    s3 = aws.client("s3")  # another client from the same session
    signed: list[str] = []  # the access key each request is signed with (not a secret)
    s3.meta.events.register(
        "before-send",
        lambda request, **_: signed.append(
            request.headers["Authorization"].decode().split("Credential=")[1].split("/")[0]
        ),
    )
    ahead[0] = timedelta(seconds=3600 - 100)
    answer = s3.list_buckets()

    assert answer["ResponseMetadata"]["HTTPStatusCode"] == 200
    ahead[0] = timedelta(0)  # back to now: the renewed keys are fresh, no further renewal
    renewed = credentials.get_frozen_credentials()
    assert signed == [renewed.access_key]  # the call itself went out with the new keys
    assert renewed.access_key != first.access_key and renewed.access_key.startswith("ASIA")
    assert renewed.secret_key != first.secret_key
    assert sts.get_caller_identity()["Arn"].startswith(f"arn:aws:sts::{ACCOUNT}:assumed-role/")


@pytest.mark.parametrize("seconds", [900, 7200, 43200])
def test_duration_reaches_assume_role(moto, seconds):
    aws = connect(assume_role=DEPLOYER, duration=seconds)
    expires = datetime.fromisoformat(aws.assumed_role["expires"])
    left = (expires - datetime.now(UTC)).total_seconds()
    assert seconds - 60 < left <= seconds  # moto's Expiration is now + DurationSeconds
    assert aws.identity()["arn"].startswith(f"arn:aws:sts::{ACCOUNT}:assumed-role/")


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("--assume-role", DEPLOYER, "--duration", "899"), "--duration '899' must be whole"),
        (("--assume-role", DEPLOYER, "--duration", "43201"), "from 900 to 43200"),
        (("--assume-role", DEPLOYER, "--duration", "1h"), "--duration '1h' must be whole"),
        (("--duration", "3600"), "--duration sets the lifetime of --assume-role's credentials"),
    ],
)
def test_a_bad_duration_is_one_line_and_exit_2(moto, cli_process, args, says):
    result = cli_process("status", *args)
    assert result.code == 2
    assert says in result.error_line()
    assert SECRET_KEY not in result.text


def test_duration_from_the_command_line_is_used(moto, cli_process):
    result = cli_process("--assume-role", DEPLOYER, "--duration", "1800", "status")
    assert result.code == 0, result.err
    assert f"assumed role: arn:aws:sts::{ACCOUNT}:assumed-role/yolov7-deployer/" in result.err
    assert SECRET_KEY not in result.text and "ASIA" not in result.text
