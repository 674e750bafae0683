"""`--env`: no secret-looking name reaches a model, the state records names only, and `update`
carries over the values the running model holds (read from moto's SageMaker, not the file)."""

from __future__ import annotations

import pytest

from deploy import async_inference, config
from deploy.environment import check_pair, looks_secret
from deploy.errors import UserError
from serve.config import VARIABLES
from tests.support.aws import ACCOUNT, IMAGE, NEW_IMAGE, REGION, SECRET_KEY, state
from tests.support.update_sagemaker import UpdatingSageMaker

VALUE = "value-never-in-the-state-5e1b"
SECRET_ARN = f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:yolov7/db-AbCdEf"
UP = ("up", "--image", IMAGE, "--instance-type", "ml.c5.xlarge", "--poll", "0")

SECRET_NAMES = [
    "DB_PASSWORD",
    "db_passwd",
    "DBPASSWORD",
    "API_KEY",
    "apiKey",
    "OPENAI_APIKEY",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_ACCESS_KEY_ID",
    "AWS_SESSION_TOKEN",
    "GITHUBTOKEN",
    "ClientSecret",
    "GOOGLE_APPLICATION_CREDENTIALS",
    "PRIVATE_PEM",
    "SIGNING_KEYS",
]
ORDINARY_NAMES = ["MONKEY_COUNT", "KEYBOARD_LAYOUT", "TOKENIZER_PATH", "HOST", "A", "PASSAGE"]


@pytest.mark.parametrize("name", SECRET_NAMES)
def test_secret_looking_names_are_recognised(name):
    assert looks_secret(name)


@pytest.mark.parametrize(
    "name",
    ORDINARY_NAMES
    + [v.name for v in VARIABLES]
    + list(config.SERVE_ENV.values())
    + list(async_inference.ASYNC_ENVIRONMENT),
)
def test_ordinary_names_and_the_servers_own_settings_pass(name):
    assert not looks_secret(name)


def test_a_secrets_manager_arn_is_a_reference_and_passes():
    check_pair("DB_SECRET_ARN", SECRET_ARN)
    check_pair("DB_PASSWORD", SECRET_ARN)
    with pytest.raises(UserError, match="looks like a secret"):
        check_pair("DB_PASSWORD", SECRET_ARN + "\nhunter2")


def test_a_secret_looking_name_is_refused_in_one_line_with_nothing_created(moto, cli, tmp_path):
    result = cli(*UP, "--env", "A=1", "--env", f"DB_PASSWORD={VALUE}")
    assert result.code == 2
    line = result.error_line()
    assert line.startswith("error: --env DB_PASSWORD: the name looks like a secret")
    assert "AWS Secrets Manager" in line and "execution role" in line
    assert VALUE not in result.text
    sm = moto.client("sagemaker")
    assert (
        sm.list_models()["Models"] == [] and sm.list_transform_jobs()["TransformJobSummaries"] == []
    )
    assert not (tmp_path / ".deploy" / "state.json").exists()


def test_a_pair_without_equals_is_refused_without_echoing_it(moto, cli):
    result = cli(*UP, "--env", f"hunter2{VALUE}")
    assert result.code == 2
    assert "is not KEY=VALUE" in result.error_line() and VALUE not in result.text


def test_the_state_records_names_and_the_model_the_values(moto, cli, tmp_path):
    made = cli(*UP, "--env", f"A={VALUE}", "--conf", "0.3")
    assert made.code == 0, made.err
    text = (tmp_path / ".deploy" / "state.json").read_text()
    assert VALUE not in text and "0.3" not in text
    recorded = state(tmp_path)["endpoint"]
    assert recorded["environment_names"] == ["A", "YOLO_CONF"]
    model = moto.client("sagemaker").describe_model(ModelName=recorded["model"])
    assert model["PrimaryContainer"]["Environment"] == {"A": VALUE, "YOLO_CONF": "0.3"}


def new_model_environment(moto, old_model: str) -> dict[str, str]:
    sm = moto.client("sagemaker")
    made = [m["ModelName"] for m in sm.list_models()["Models"] if m["ModelName"] != old_model]
    assert len(made) == 1, made
    return sm.describe_model(ModelName=made[0])["PrimaryContainer"]["Environment"]


def test_update_carries_the_running_models_values_over(moto, cli, tmp_path, monkeypatch):
    """The update runs to the end (moto's missing UpdateEndpoint added by the test support); the
    new model that serves holds the values that ran, read from SageMaker, not from the state."""
    UpdatingSageMaker(at_once=True).install(monkeypatch)
    assert cli(*UP, "--env", f"A={VALUE}").code == 0
    old_model = state(tmp_path)["endpoint"]["model"]

    result = cli("update", "--image", NEW_IMAGE, "--poll", "0")

    assert result.code == 0, result.err
    assert new_model_environment(moto, old_model) == {"A": VALUE}
    assert "update: environment" not in result.err  # nothing changed there
    assert VALUE not in (tmp_path / ".deploy" / "state.json").read_text()


def test_update_env_adds_to_what_runs_and_logs_names_only(moto, cli, tmp_path, monkeypatch):
    UpdatingSageMaker(at_once=True).install(monkeypatch)
    assert cli(*UP, "--env", f"A={VALUE}").code == 0
    old_model = state(tmp_path)["endpoint"]["model"]

    result = cli("update", "--env", "B=2", "--poll", "0")

    assert result.code == 0, result.err
    assert "update: environment -> A, B" in result.err
    assert VALUE not in result.text and SECRET_KEY not in result.text
    assert new_model_environment(moto, old_model) == {"A": VALUE, "B": "2"}


def test_update_refuses_a_secret_looking_name_before_anything_is_made(moto, cli, tmp_path):
    assert cli(*UP).code == 0
    result = cli("update", "--env", f"GITHUB_TOKEN={VALUE}", "--poll", "0")
    assert result.code == 2
    assert "--env GITHUB_TOKEN: the name looks like a secret" in result.error_line()
    assert len(moto.client("sagemaker").list_models()["Models"]) == 1
