"""Every case of the bad-request corpus against the real server: the documented answer, no leak,
no CORS, and after each one /ping is 200 and a good request still gets the same detections."""

from __future__ import annotations

import pytest

from reliability.corpus import CASES, GOOD, Case
from reliability.soak import same_detections
from reliability.wire import NO_ANSWER, Answer, build, exchange
from tests.support.reliability import port_of

LEAKS = ("Traceback", "/work", ".py", "site-packages", "/tmp", "/root", 'File "')


def send(server, case: Case, origin: bool = False) -> Answer:
    data = case.build()
    if origin:  # a browser's cross-origin request
        head, sep, body = data.partition(b"\r\n\r\n")
        data = head + b"\r\nOrigin: https://evil.example" + sep + body
    return exchange("127.0.0.1", port_of(server), data, timeout=30, half_close=case.half_close)


@pytest.fixture(scope="module")
def baseline(live_server) -> list[dict]:
    answer = send(live_server, GOOD)
    assert answer.status == 200
    detections = answer.json()["detections"]
    assert detections, "the test model finds something in the good picture"
    return detections


def test_the_corpus_has_at_least_30_kinds_with_unique_names():
    names = [case.name for case in CASES]
    assert len(names) >= 30 and len(set(names)) == len(names)
    assert sum(case.status >= 400 for case in CASES) >= 30


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_request_gets_its_documented_answer_and_the_server_keeps_serving(
    live_server, baseline, case
):
    answer = send(live_server, case, origin=True)
    assert answer.status == case.status, answer.body[:300]
    assert answer.status < 500
    text = answer.body.decode("latin-1")
    for leak in LEAKS:
        assert leak not in text, f"{leak!r} in {text[:300]!r}"
    assert not [h for h in answer.headers if h.startswith("access-control-")]
    if answer.status >= 400 and case.json_body:
        assert answer.headers["content-type"].startswith("application/json")
        body = answer.json()
        assert body["status"] == case.status and body["error"] and body["request_id"]
        for word in case.words:
            assert word in body["error"], body
    if answer.status == NO_ANSWER:
        assert answer.body == b""

    ping = exchange("127.0.0.1", port_of(live_server), build("GET", "/ping"), timeout=5)
    assert ping.status == 200
    good = send(live_server, GOOD)
    assert good.status == 200
    assert same_detections(good.json()["detections"], baseline)


def test_odd_but_valid_pictures_are_served_at_their_own_size(live_server):
    for name, size in (("1 x 10000 PNG", (1, 10000)), ("10000 x 1 PNG", (10000, 1))):
        case = next(c for c in CASES if c.name == name)
        answer = send(live_server, case)
        assert answer.status == 200
        assert answer.json()["image"] == {"width": size[0], "height": size[1]}
