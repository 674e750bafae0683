"""The corpus and a short soak against the server in its other configurations: an async
endpoint's limits (the Environment `up --async` gives the model: a 64 MiB body, the 50 MP pixel
guard kept), the OpenVINO runtime (precision auto: bf16 where the CPU has it), and the bundled
model's INT8 export (`python -m export --precision int8`) on each runtime."""

from __future__ import annotations

from pathlib import Path

import pytest

from deploy.async_inference import ASYNC_ENVIRONMENT, ASYNC_MAX_BODY_BYTES
from reliability.corpus import BODY_LIMIT, GOOD, cases
from reliability.soak import same_detections
from reliability.wire import NO_ANSWER, build, exchange
from tests.support.reliability import SERVER_ENV, port_of, run_soak
from tests.support.server import local_server

# The corpus and a short soak per served configuration (10-20 s each).
pytestmark = pytest.mark.slow

ASYNC_VIDEO_BYTES = int(ASYNC_ENVIRONMENT["MAX_VIDEO_BYTES"])
# name -> (the server's environment, its body limit, which model: the small head or INT8)
CONFIGURATIONS = {
    "async-limits": (ASYNC_ENVIRONMENT, ASYNC_MAX_BODY_BYTES, "head"),
    "openvino": ({"SERVE_RUNTIME": "openvino"}, BODY_LIMIT, "head"),
    "int8": ({}, BODY_LIMIT, "int8"),
    "int8-openvino": ({"SERVE_RUNTIME": "openvino"}, BODY_LIMIT, "int8"),
}
EXPECTED_PING = {  # what /ping must say, so that each configuration is the one it is named after
    "openvino": {"runtime": "openvino"},
    "int8": {"runtime": "onnxruntime", "precision": "int8"},
    "int8-openvino": {"runtime": "openvino", "precision": "int8"},
}


def model_path(request: pytest.FixtureRequest, which: str) -> Path:
    if which == "int8":
        return request.getfixturevalue("int8_export")["int8"]
    return request.getfixturevalue("head_model_path")


@pytest.fixture(scope="module", params=sorted(CONFIGURATIONS))
def configuration(request):
    env, body_limit, which = CONFIGURATIONS[request.param]
    with local_server(model_path(request, which), env={**SERVER_ENV, **env}) as server:
        video_limit = int(env.get("MAX_VIDEO_BYTES", 0))
        yield request.param, server, cases(body_limit, video_limit)


def test_the_size_cases_follow_the_async_limit():
    names = [case.name for case in cases(ASYNC_MAX_BODY_BYTES, ASYNC_VIDEO_BYTES)]
    # waitress accepts a body up to the video limit (1 GiB) there: it refuses one above
    assert "body 1 byte over 64 MiB" in names and "Content-Length of 1074 MB, no body" in names
    assert len(names) == len(set(names))


def test_every_case_gets_its_documented_answer(configuration):
    name, server, corpus = configuration
    port = port_of(server)
    ping = exchange("127.0.0.1", port, build("GET", "/ping")).json()
    expected = EXPECTED_PING.get(name, {})
    assert {key: ping[key] for key in expected} == expected

    def send(case):
        return exchange("127.0.0.1", port, case.build(), timeout=30, half_close=case.half_close)

    baseline = send(GOOD).json()["detections"]
    wrong = {}
    for case in corpus:
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


@pytest.mark.parametrize("name", sorted(CONFIGURATIONS))
def test_short_soak(name, request, tmp_path, repo_root):
    server_env, _, which = CONFIGURATIONS[name]
    # OpenVINO makes its second compile after /ping says ready (0.15-0.8 s here): the RSS and
    # thread counts the soak compares start after it
    warm_up = 4 if server_env.get("SERVE_RUNTIME") == "openvino" else 2
    model = model_path(request, which)
    report = run_soak(
        repo_root,
        tmp_path / "soak.json",
        model,
        duration=8,
        concurrency=4,
        warm_up=warm_up,
        server_env=server_env,
    )
    assert report["ok"] and report["good_lost"] == 0 and report["server_errors"] == 0
    assert report["bad_unexpected"] == 0 and report["good_requests"] > 20
    assert report["threads_end"] == report["threads_start"]
    assert report["rss_growth_pct"] < 10, report  # the default configuration's bar
