"""`update` as a transaction, against moto's server: every way it can stop after autoscaling was
deregistered for an instance type change leaves autoscaling registered again (or marked paused
for `status`), the new model and config removed or recorded, and the state naming the config that
serves; `down` then leaves nothing.

moto lacks UpdateEndpoint: tests.support.update_sagemaker adds it inside moto's server. Failures
SageMaker does not produce on its own (expired credentials, Ctrl-C) are raised in deploy's own
botocore clients (`faults`), just before the named operation would be sent.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
from botocore.exceptions import ClientError

from deploy import names
from deploy.config import USER_AGENT
from tests.support.aws import IMAGE, state
from tests.support.update_sagemaker import UpdatingSageMaker

STAMP = "20300101-000000"
NEW_MODEL, NEW_CONFIG = f"yolov7-model-{STAMP}", f"yolov7-config-{STAMP}"
SCALED = {
    "ServiceNamespace": "sagemaker",
    "ScalableDimension": "sagemaker:variant:DesiredInstanceCount",
}


@dataclass
class Faults:
    """Raise in deploy's clients: `rule(operation, earlier operations)` returns what to raise."""

    rule: Callable[[str, list[str]], BaseException | None] | None = None
    seen: list[str] = field(default_factory=list)


@pytest.fixture
def faults(monkeypatch) -> Faults:
    from botocore.client import BaseClient

    injected = Faults()
    original = BaseClient._make_api_call

    def call(self, operation_name, api_params):
        if USER_AGENT in (self.meta.config.user_agent_extra or ""):
            failure = injected.rule(operation_name, injected.seen) if injected.rule else None
            injected.seen.append(operation_name)
            if failure is not None:
                raise failure
        return original(self, operation_name, api_params)

    monkeypatch.setattr(BaseClient, "_make_api_call", call)
    return injected


def expired(operation: str) -> ClientError:
    error = {"Code": "ExpiredTokenException", "Message": "The security token has expired"}
    return ClientError({"Error": error, "ResponseMetadata": {"HTTPStatusCode": 400}}, operation)


@pytest.fixture
def sagemaker(monkeypatch, moto) -> UpdatingSageMaker:
    return UpdatingSageMaker().install(monkeypatch)


@pytest.fixture
def scaled(moto, cli, sagemaker, tmp_path, monkeypatch):
    """A real `up` and `autoscale` on moto; later name stamps frozen (the new names are known)."""
    made = cli("up", "--image", IMAGE, "--instance-type", "ml.c5.xlarge", "--poll", "0")
    assert made.code == 0, made.err
    scaling = cli("autoscale", "--min", "2", "--max", "6", "--target", "300")
    assert scaling.code == 0, scaling.err
    monkeypatch.setattr(names, "stamp", lambda now=None: STAMP)
    return state(tmp_path)["endpoint"]


def change_type(cli, *extra):
    return cli("update", "--instance-type", "ml.c5.2xlarge", "--poll", "0", *extra)


def registered(moto, endpoint: str) -> tuple[list, list]:
    aas = moto.client("application-autoscaling")
    rid = f"endpoint/{endpoint}/variant/AllTraffic"
    targets = aas.describe_scalable_targets(ResourceIds=[rid], **SCALED)["ScalableTargets"]
    policies = aas.describe_scaling_policies(ResourceId=rid, **SCALED)["ScalingPolicies"]
    return targets, policies


def assert_autoscaling_back(moto, tmp_path, endpoint: str) -> None:
    targets, policies = registered(moto, endpoint)
    assert [(t["MinCapacity"], t["MaxCapacity"]) for t in targets] == [(2, 6)]
    assert [p["PolicyName"] for p in policies] == [f"{endpoint}-invocations"]
    record = state(tmp_path)["autoscaling"]
    assert "paused_for_update" not in record and (record["min"], record["max"]) == (2, 6)


def live_config(moto, endpoint: str) -> str:
    return moto.client("sagemaker").describe_endpoint(EndpointName=endpoint)["EndpointConfigName"]


def exists(moto, kind: str, name: str) -> bool:
    sm = moto.client("sagemaker")
    try:
        if kind == "model":
            sm.describe_model(ModelName=name)
        else:
            sm.describe_endpoint_config(EndpointConfigName=name)
    except ClientError:
        return False
    return True


def assert_new_ones_removed(moto, tmp_path) -> None:
    assert not exists(moto, "model", NEW_MODEL) and not exists(moto, "config", NEW_CONFIG)
    ledger = {r["name"] for r in state(tmp_path)["resources"]}
    assert not {NEW_MODEL, NEW_CONFIG} & ledger


def assert_down_leaves_nothing(cli, moto, endpoint: str) -> None:
    gone = cli("down", "--poll", "0")
    assert gone.code == 0, gone.err
    sm = moto.client("sagemaker")
    assert sm.list_endpoints()["Endpoints"] == []
    assert sm.list_endpoint_configs()["EndpointConfigs"] == []
    assert sm.list_models()["Models"] == []
    assert registered(moto, endpoint) == ([], [])


@pytest.mark.parametrize(
    ("code", "exit_code", "said"),
    [
        ("ValidationException", 2, "AWS rejected UpdateEndpoint as invalid"),
        ("ThrottlingException", 1, "AWS kept throttling UpdateEndpoint after 3 attempts"),
    ],
)
def test_a_refused_update_endpoint_removes_the_new_config_and_registers_autoscaling_again(
    scaled, cli, moto, sagemaker, tmp_path, code, exit_code, said
):
    endpoint, old_config = scaled["name"], scaled["config"]
    sagemaker.refuse = (code, "no")

    result = change_type(cli)

    assert result.code == exit_code
    line = result.error_line()
    assert said in line and f"{endpoint} runs {old_config}" in line
    assert "nothing is left to finish" in line
    assert "deregistered autoscaling" in result.err
    assert_autoscaling_back(moto, tmp_path, endpoint)
    assert_new_ones_removed(moto, tmp_path)
    now = state(tmp_path)
    assert now["endpoint"]["config"] == live_config(moto, endpoint) == old_config
    assert "pending_update" not in now["endpoint"]
    assert now["endpoint"]["instance_type"] == "ml.c5.xlarge"
    assert_down_leaves_nothing(cli, moto, endpoint)


def test_a_wait_that_times_out_leaves_the_update_pending_until_status_settles_it(
    scaled, cli, moto, sagemaker, tmp_path
):
    endpoint, old_config = scaled["name"], scaled["config"]

    result = change_type(cli, "--timeout", "0")

    assert result.code == 1
    line = result.error_line()
    assert "gave up waiting for endpoint" in line
    assert f"the update to {NEW_CONFIG} may still be running" in line
    assert "autoscaling is paused" in line and "python -m deploy status" in line
    now = state(tmp_path)
    # Still Updating on SageMaker's side: nothing can be registered on it yet; all is recorded.
    assert registered(moto, endpoint) == ([], [])
    assert now["autoscaling"]["paused_for_update"] is True
    assert now["endpoint"]["pending_update"]["config"] == NEW_CONFIG
    assert now["endpoint"]["config"] == live_config(moto, endpoint) == old_config
    ledger = {r["name"] for r in now["resources"]}
    assert {NEW_MODEL, NEW_CONFIG} <= ledger

    # SageMaker gives up on it: `status` drops the new config and puts autoscaling back.
    sagemaker.roll_back(endpoint, "the new fleet did not pass /ping")
    looked = cli("status")
    assert looked.code == 0, looked.err
    assert f"dropped {NEW_CONFIG}" in looked.err
    assert_autoscaling_back(moto, tmp_path, endpoint)
    assert_new_ones_removed(moto, tmp_path)
    now = state(tmp_path)
    assert now["endpoint"]["config"] == live_config(moto, endpoint) == old_config
    assert "pending_update" not in now["endpoint"]
    assert_down_leaves_nothing(cli, moto, endpoint)


def test_credentials_that_expire_during_the_wait_leave_marks_that_status_settles_later(
    scaled, cli, moto, sagemaker, tmp_path, faults
):
    endpoint, old_config, old_model = scaled["name"], scaled["config"], scaled["model"]
    faults.rule = lambda op, seen: expired(op) if "UpdateEndpoint" in seen else None

    result = change_type(cli)

    assert result.code == 1
    line = result.error_line()
    assert "the AWS credentials have expired (ExpiredTokenException on DescribeEndpoint)" in line
    assert f"the update to {NEW_CONFIG} may still be running" in line
    assert "not now: the AWS credentials have expired" in line
    now = state(tmp_path)
    assert now["autoscaling"]["paused_for_update"] is True
    assert now["endpoint"]["pending_update"]["config"] == NEW_CONFIG
    assert now["endpoint"]["config"] == live_config(moto, endpoint) == old_config
    assert {NEW_MODEL, NEW_CONFIG} <= {r["name"] for r in now["resources"]}

    # Fresh credentials, and SageMaker finished meanwhile: `status` adopts the new config.
    faults.rule = None
    sagemaker.finish(endpoint)
    looked = cli("status")
    assert looked.code == 0, looked.err
    assert f"adopted {NEW_CONFIG}" in looked.err
    assert_autoscaling_back(moto, tmp_path, endpoint)
    now = state(tmp_path)
    assert now["endpoint"]["config"] == live_config(moto, endpoint) == NEW_CONFIG
    assert now["endpoint"]["model"] == NEW_MODEL
    assert now["endpoint"]["instance_type"] == "ml.c5.2xlarge"
    assert "pending_update" not in now["endpoint"]
    assert not exists(moto, "model", old_model) and not exists(moto, "config", old_config)
    assert_down_leaves_nothing(cli, moto, endpoint)


@pytest.mark.parametrize(
    ("at", "after"),
    [
        ("DeregisterScalableTarget", None),  # halfway through pausing autoscaling
        ("UpdateEndpoint", None),  # before the request left: SageMaker never saw it
        ("DescribeEndpoint", "UpdateEndpoint"),  # during the wait
    ],
)
def test_ctrl_c_puts_back_what_it_can_and_says_how_to_finish(
    scaled, cli, moto, sagemaker, tmp_path, faults, at, after
):
    endpoint, old_config = scaled["name"], scaled["config"]
    fired: list[str] = []

    def rule(op: str, seen: list[str]) -> BaseException | None:
        if op == at and not fired and (after is None or after in seen):
            fired.append(op)
            return KeyboardInterrupt()
        return None

    faults.rule = rule

    result = change_type(cli)

    assert fired == [at]
    assert result.code == 130
    assert "Traceback" not in result.text
    lines = [text for text in result.err.splitlines() if text.startswith("interrupted: ")]
    assert len(lines) == 1 and f"{endpoint} runs {old_config}" in lines[0]
    now = state(tmp_path)
    assert now["endpoint"]["config"] == live_config(moto, endpoint) == old_config
    if after is None:  # SageMaker never took it: all undone at once
        assert "nothing is left to finish" in lines[0]
        assert_autoscaling_back(moto, tmp_path, endpoint)
        assert_new_ones_removed(moto, tmp_path)
    else:  # the update goes on at SageMaker: recorded, and settled by `status` once it is done
        assert "python -m deploy status" in lines[0]
        assert now["autoscaling"]["paused_for_update"] is True
        assert now["endpoint"]["pending_update"]["model"] == NEW_MODEL
        still = cli("status")
        assert still.code == 0 and "settles once it is InService" in still.err
        sagemaker.finish(endpoint)
        looked = cli("status")
        assert looked.code == 0, looked.err
        assert_autoscaling_back(moto, tmp_path, endpoint)
        assert state(tmp_path)["endpoint"]["config"] == live_config(moto, endpoint) == NEW_CONFIG
    assert_down_leaves_nothing(cli, moto, endpoint)


def test_down_right_after_an_interrupted_update_leaves_nothing(
    scaled, cli, moto, sagemaker, tmp_path, faults
):
    endpoint = scaled["name"]
    faults.rule = lambda op, seen: (
        KeyboardInterrupt()
        if op == "DescribeEndpoint" and seen[-1:] == ["UpdateEndpoint"]
        else None
    )
    assert change_type(cli).code == 130
    now = state(tmp_path)
    assert now["endpoint"]["pending_update"]["config"] == NEW_CONFIG
    assert now["autoscaling"]["paused_for_update"] is True
    faults.rule = None
    assert_down_leaves_nothing(cli, moto, endpoint)  # still Updating: both configs are ledgered


def test_an_update_that_completes_re_registers_autoscaling_on_moto(
    scaled, cli, moto, sagemaker, tmp_path
):
    endpoint, old_config = scaled["name"], scaled["config"]
    sagemaker.at_once = True

    result = change_type(cli)

    assert result.code == 0, result.err
    assert_autoscaling_back(moto, tmp_path, endpoint)
    now = state(tmp_path)
    assert now["endpoint"]["config"] == live_config(moto, endpoint) == NEW_CONFIG
    assert not exists(moto, "config", old_config)
    assert_down_leaves_nothing(cli, moto, endpoint)
