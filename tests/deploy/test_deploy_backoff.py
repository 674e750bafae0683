"""deploy/backoff.py: the container's refusal (503) retried with capped, jittered backoff, through
sagemaker-runtime (a Stubber: SageMaker hands the refusal over as ModelError, 424) and the delays
themselves."""

from __future__ import annotations

import json

import pytest

from deploy.backoff import BASE_S, CAP_S, Refusal, delay, with_backoff
from deploy.errors import DeployError
from tests.deploy.test_deploy_invoke import ANSWER, PICTURE, streaming, write_endpoint_state

REFUSAL = (
    'Received server error (503) from primary with message "{"error": "overloaded: 12 requests '
    'are waiting; this one would not be answered within 1 s", "status": 503}".'
)


def test_delays_are_jittered_below_a_growing_capped_ceiling():
    assert [delay(n, None, lambda: 0.999999) for n in (1, 2, 3)] == pytest.approx(
        [BASE_S, 2 * BASE_S, 4 * BASE_S], rel=1e-5
    )
    assert delay(20, None, lambda: 0.999999) == pytest.approx(CAP_S, rel=1e-5)
    assert delay(3, None, lambda: 0.0) == 0.0  # full jitter: anywhere from zero


def test_the_servers_retry_after_is_a_floor():
    assert 2.0 <= delay(1, 2.0, lambda: 0.5) <= 3.0
    assert delay(1, 3600.0, lambda: 0.0) == CAP_S  # never longer than the cap


def test_with_backoff_retries_refusals_then_gives_the_last_error():
    waits: list[float] = []
    calls = iter([Refusal(DeployError("busy")), Refusal(DeployError("busy")), "answer"])

    def call() -> str:
        item = next(calls)
        if isinstance(item, Exception):
            raise item
        return item

    assert with_backoff(call, sleep=waits.append, draw=lambda: 0.5) == "answer"
    assert waits == [0.5 * BASE_S, 0.5 * 2 * BASE_S]

    def always() -> str:
        raise Refusal(DeployError("HTTP 503: overloaded"))

    with pytest.raises(DeployError, match=r"overloaded \(refused 3 times\)"):
        with_backoff(always, attempts=3, sleep=waits.append)


def test_other_errors_are_not_retried():
    calls = []

    def call() -> str:
        calls.append(1)
        raise DeployError("HTTP 400: bad image")

    with pytest.raises(DeployError):
        with_backoff(call, sleep=lambda s: None)
    assert calls == [1]


def _refuse(runtime, times: int) -> None:
    for _ in range(times):
        runtime.add_client_error(
            "invoke_endpoint",
            "ModelError",
            REFUSAL,
            http_status_code=424,
            modeled_fields={"OriginalStatusCode": 503, "OriginalMessage": "overloaded"},
        )


def test_invoke_retries_the_containers_503_and_succeeds(moto, cli, stubbed, tmp_path):
    write_endpoint_state(tmp_path)
    runtime = stubbed.stub("sagemaker-runtime")
    _refuse(runtime, 2)
    runtime.add_response(
        "invoke_endpoint",
        {"Body": streaming(json.dumps(ANSWER).encode()), "ContentType": "application/json"},
    )
    result = cli("invoke", PICTURE, "--json", aws=stubbed)
    assert result.code == 0, result.err
    assert json.loads(result.out) == ANSWER
    assert result.err.count("overloaded (503)") == 2
    runtime.assert_no_pending_responses()


@pytest.mark.slow
def test_invoke_gives_up_after_five_refusals_naming_them(moto, cli, stubbed, tmp_path):
    write_endpoint_state(tmp_path)
    runtime = stubbed.stub("sagemaker-runtime")
    _refuse(runtime, 5)
    result = cli("invoke", PICTURE, aws=stubbed)
    assert result.code == 1
    line = result.error_line()
    assert "returned an error: Received server error (503)" in line
    assert "(refused 5 times)" in line


def test_a_container_error_other_than_503_is_not_retried(moto, cli, stubbed, tmp_path):
    write_endpoint_state(tmp_path)
    runtime = stubbed.stub("sagemaker-runtime")
    runtime.add_client_error(
        "invoke_endpoint",
        "ModelError",
        'Received client error (400) from primary with message "bad image".',
        http_status_code=424,
        modeled_fields={"OriginalStatusCode": 400},
    )
    result = cli("invoke", PICTURE, aws=stubbed)
    assert result.code == 1 and "refused" not in result.error_line()
    runtime.assert_no_pending_responses()
