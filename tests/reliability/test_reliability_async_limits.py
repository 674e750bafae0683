"""The corpus and a short soak against a server with an async endpoint's limits (the Environment
`up --async` gives the model: a 64 MiB body, the 50 MP pixel guard kept)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from reliability_helpers import SERVER_ENV, port_of

from demo.local_server import local_server
from deploy.async_inference import ASYNC_ENVIRONMENT, ASYNC_MAX_BODY_BYTES
from reliability.corpus import GOOD, cases
from reliability.soak import same_detections
from reliability.wire import NO_ANSWER, build, exchange

CORPUS = cases(ASYNC_MAX_BODY_BYTES)


@pytest.fixture(scope="module")
def async_server(head_model_path):
    with local_server(head_model_path, env={**SERVER_ENV, **ASYNC_ENVIRONMENT}) as server:
        yield server


def test_the_size_cases_follow_the_async_limit():
    names = [case.name for case in CORPUS]
    assert "body 1 byte over 64 MiB" in names and "Content-Length of 268 MB, no body" in names
    assert len(names) == len(set(names))


def test_every_case_gets_its_documented_answer_under_async_limits(async_server):
    port = port_of(async_server)

    def send(case):
        return exchange("127.0.0.1", port, case.build(), timeout=30, half_close=case.half_close)

    baseline = send(GOOD).json()["detections"]
    wrong = {}
    for case in CORPUS:
        answer = send(case)
        if answer.status != case.status:
            wrong[case.name] = answer.status
        elif answer.status >= 400 and case.json_body:
            body = answer.json()
            if body["status"] != case.status or not all(w in body["error"] for w in case.words):
                wrong[case.name] = body
        elif answer.status == NO_ANSWER and answer.body:
            wrong[case.name] = answer.body[:100]
        assert exchange("127.0.0.1", port, build("GET", "/ping"), timeout=5).status == 200
    assert wrong == {}
    assert same_detections(send(GOOD).json()["detections"], baseline)


def test_short_soak_under_async_limits(head_model_path, tmp_path, repo_root):
    report_path = tmp_path / "soak.json"
    env = [f"--env={key}={value}" for key, value in ASYNC_ENVIRONMENT.items()]
    command = [
        *(sys.executable, "-m", "reliability.soak", "--duration", "8", "--concurrency", "4"),
        *("--warm-up", "2", "--model", str(head_model_path), "--json", str(report_path), *env),
    ]
    result = subprocess.run(
        command, cwd=repo_root, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(report_path.read_text())
    assert report["ok"] and report["good_lost"] == 0 and report["server_errors"] == 0
    assert report["bad_unexpected"] == 0 and report["good_requests"] > 20
    assert report["threads_end"] == report["threads_start"]
