"""serve/admission.py in one process, with real threads: the bounds, FIFO turns, the deadline,
clients that have gone, the hold-time estimate. Over HTTP: tests/reliability/test_overload.py."""

from __future__ import annotations

import threading
import time

import falcon.testing
import pytest

from serve.admission import (
    ADMITTED,
    EXPIRED,
    GONE,
    REFUSED,
    RESERVED_THREADS,
    Admission,
    HoldTime,
    Limits,
    Refused,
    request_turn,
)
from serve.errors import Overloaded


class Holder:
    """A thread that takes a turn and holds it until released."""

    def __init__(self, admission: Admission, gone=lambda: False):
        self.entered = threading.Event()
        self.release = threading.Event()
        self.error: Refused | None = None
        self.waited: float | None = None
        self.thread = threading.Thread(target=self._run, args=(admission, gone), daemon=True)
        self.thread.start()

    def _run(self, admission: Admission, gone) -> None:
        try:
            with admission.turn(gone) as waited:
                self.waited = waited
                self.entered.set()
                self.release.wait(10)
        except Refused as refused:
            self.error = refused

    def finish(self) -> None:
        self.release.set()
        self.thread.join(10)


def until(condition, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


def test_limits_leave_threads_for_ping_and_refusals():
    limits = Limits.for_server(inference_slots=2, threads=32, deadline=1.0)
    assert limits.permits == 3
    assert limits.max_waiting == 32 - 3 - RESERVED_THREADS
    assert Limits.for_server(2, threads=4, deadline=1.0).max_waiting == 0


def test_hold_time_moves_towards_new_measurements():
    hold = HoldTime(smoothing=0.5)
    assert hold.seconds is None
    hold.add(1.0)
    hold.add(3.0)
    assert hold.seconds == pytest.approx(2.0)


def test_a_full_queue_refuses_at_once_with_retry_after():
    admission = Admission(Limits(permits=1, deadline=60.0, max_waiting=1))
    running, waiting = Holder(admission), Holder(admission)
    running.entered.wait(5)
    until(lambda: admission.waiting == 1)
    started = time.monotonic()
    with pytest.raises(Refused) as refused, admission.turn():
        pass
    assert time.monotonic() - started < 0.1
    assert refused.value.outcome == REFUSED and refused.value.retry_after >= 1
    assert "waiting" in refused.value.why
    running.finish()
    waiting.entered.wait(5)
    waiting.finish()
    assert admission.counts[REFUSED] == 1 and waiting.error is None


def test_turns_go_in_arrival_order():
    admission = Admission(Limits(permits=1, deadline=60.0, max_waiting=10))
    order: list[int] = []
    first = Holder(admission)
    first.entered.wait(5)

    def take(index: int) -> None:
        with admission.turn():
            order.append(index)

    threads = []
    for index in range(5):
        thread = threading.Thread(target=take, args=(index,))
        thread.start()
        threads.append(thread)
        until(lambda n=index: admission.waiting == n + 1)
    first.finish()
    for thread in threads:
        thread.join(10)
    assert order == [0, 1, 2, 3, 4]


def test_the_time_bound_refuses_what_would_not_finish_within_the_deadline():
    """Hold time 1 s, 1 permit, deadline 2 s: the first waiter is let in (it would take the next
    permit at once), the second would end at about 3 s: refused."""
    admission = Admission(Limits(permits=1, deadline=2.0, max_waiting=10))
    admission.hold.add(1.0)
    running = Holder(admission)
    running.entered.wait(5)
    first = Holder(admission)
    until(lambda: admission.waiting == 1)
    with pytest.raises(Refused) as refused, admission.turn():
        pass
    assert refused.value.outcome == REFUSED and "within 2 s" in refused.value.why
    running.finish()
    first.entered.wait(5)
    first.finish()
    assert first.error is None


def test_a_request_that_waited_past_the_deadline_is_refused_not_run():
    admission = Admission(Limits(permits=1, deadline=0.2, max_waiting=10))
    running = Holder(admission)
    running.entered.wait(5)
    late = Holder(admission)
    late.thread.join(5)
    assert late.error is not None and late.error.outcome == EXPIRED
    assert not late.entered.is_set() and "deadline" in late.error.why
    assert admission.waiting == 0
    running.finish()
    assert admission.counts[EXPIRED] == 1


def test_a_waiter_whose_client_has_gone_leaves_the_queue_without_running():
    admission = Admission(Limits(permits=1, deadline=60.0, max_waiting=10))
    running = Holder(admission)
    running.entered.wait(5)
    gone = threading.Event()
    waiter = Holder(admission, gone.is_set)
    after = Holder(admission)
    until(lambda: admission.waiting == 2)
    gone.set()
    waiter.thread.join(5)
    assert waiter.error is not None and waiter.error.outcome == GONE
    assert admission.waiting == 1
    running.finish()
    after.entered.wait(5)  # the permit went to the next waiter, not to the one that left
    after.finish()
    assert not waiter.entered.is_set() and admission.counts[GONE] == 1


def test_permits_are_all_returned():
    admission = Admission(Limits(permits=2, deadline=60.0, max_waiting=50))
    errors: list[Exception] = []

    def work() -> None:
        try:
            with admission.turn():
                time.sleep(0.001)
        except Exception as exc:  # collected, asserted below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(40)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert not errors
    assert admission.hold.seconds is not None and admission.hold.seconds < 0.5
    holders = [Holder(admission), Holder(admission)]  # both permits free again
    for holder in holders:
        assert holder.entered.wait(5)
        holder.finish()


def test_a_client_gone_before_its_turn_is_not_run_even_with_a_permit_free():
    admission = Admission(Limits(permits=1, deadline=60.0, max_waiting=10))
    ran = []
    with pytest.raises(Refused) as refused, admission.turn(lambda: True):
        ran.append(True)
    assert refused.value.outcome == GONE and not ran
    holder = Holder(admission)  # the permit was given back
    assert holder.entered.wait(5)
    holder.finish()


def test_a_request_turn_records_its_outcome_and_answers_a_refusal_503():
    """The turn of an HTTP request (serve/app.py, serve/video_invocations.py): the client check
    from waitress's environ, the outcome in req.context, Overloaded with Retry-After."""
    admission = Admission(Limits(permits=1, deadline=60.0, max_waiting=10))
    req = falcon.testing.create_req()
    with request_turn(admission, req, units=lambda: 4) as waited:
        assert req.context.admission == ADMITTED and waited >= 0
    gone = falcon.testing.create_req()
    gone.env["waitress.client_disconnected"] = lambda: True
    ran = []
    with pytest.raises(Overloaded) as overloaded, request_turn(admission, gone):
        ran.append(True)
    assert gone.context.admission == GONE and not ran
    assert overloaded.value.status == falcon.HTTP_503
    assert overloaded.value.headers["Retry-After"] == "1"
    holder = Holder(admission)  # both turns gave their permit back
    assert holder.entered.wait(5)
    holder.finish()
