"""Admission control: a bounded queue in front of the compute of /invocations.

waitress hands a request to one of SERVE_THREADS worker threads and queues the rest without bound,
so under a burst the server used to work through requests whose callers had long given up (a
SageMaker caller gives up after 60 s and the container is never told). Here a request takes a
permit before it decodes and infers (permits: the inference slots plus one, so that one request
decodes while the slots infer) and waits for one in a FIFO queue that is bounded twice:

- in time: a newcomer is admitted only when its permit is expected to come, and its own work to
  end, within half of SERVE_QUEUE_DEADLINE; the expectation comes from a moving average of how
  long a request holds its permit (Little's law: permits / hold = requests per second). The other
  half absorbs the estimate's error (hold times move with photo sizes and with whatever else the
  CPUs run), so that few admitted requests reach the deadline;
- in count: at most `max_waiting` wait, so that waitress keeps threads free for /ping and for
  refusals (a thread that waits is one waitress cannot give to /ping).

Past either bound the answer is an immediate 503 with Retry-After. A waiter whose client has
disconnected (waitress's `client_disconnected`) leaves the queue without being computed, and one
that waited longer than the deadline is answered 503 instead of being computed.

`request_turn` is the turn of one HTTP request (serve/app.py for a photo, serve/video_invocations.py
for a clip): it tells the admission about the client and turns a refusal into the 503 answer.
"""

from __future__ import annotations

import math
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import falcon

from serve.errors import Overloaded

POLL_SECONDS = 0.05  # how often a waiter looks at its client and its deadline
SMOOTHING = 0.2  # weight of the newest hold time in the moving average
ADMIT_SHARE = 0.5  # of the deadline, for the expected wait and work of a newcomer
RESERVED_THREADS = 2  # waitress threads never given to waiters: /ping and refusals take them

# Outcomes, counted and logged with each request they concern.
ADMITTED = "admitted"
REFUSED = "refused"  # the queue was full: 503 at once
EXPIRED = "expired"  # waited longer than the deadline: 503 instead of being computed
GONE = "gone"  # the client disconnected while it waited: dropped


class Refused(Exception):
    """Not computed: `outcome` says why, `retry_after` (seconds) when to try again."""

    def __init__(self, outcome: str, why: str, retry_after: int):
        super().__init__(why)
        self.outcome, self.why, self.retry_after = outcome, why, retry_after


@dataclass(frozen=True)
class Limits:
    permits: int  # requests computing at once
    deadline: float  # seconds an admitted request may take, its wait included
    max_waiting: int  # requests waiting for a permit at most

    @classmethod
    def for_server(cls, inference_slots: int, threads: int, deadline: float) -> Limits:
        """Permits: the slots and one decoding beside them; waiters: the threads left once the
        permits and RESERVED_THREADS are taken (none when SERVE_THREADS is that small)."""
        permits = inference_slots + 1
        return cls(permits, deadline, max(0, threads - permits - RESERVED_THREADS))


class HoldTime:
    """Moving average of how long a request holds its permit (seconds); None before the first."""

    def __init__(self, smoothing: float = SMOOTHING):
        self._smoothing = smoothing
        self.seconds: float | None = None

    def add(self, seconds: float) -> None:
        if self.seconds is None:
            self.seconds = seconds
        else:
            self.seconds += self._smoothing * (seconds - self.seconds)


class _Waiter:
    __slots__ = ("granted", "woken")

    def __init__(self) -> None:
        self.granted = False
        self.woken = threading.Event()


class Admission:
    def __init__(self, limits: Limits, clock: Callable[[], float] = time.monotonic):
        self.limits = limits
        self.hold = HoldTime()
        self.counts: Counter[str] = Counter()
        self._clock = clock
        self._lock = threading.Lock()
        self._running = 0
        self._queue: deque[_Waiter] = deque()

    @property
    def waiting(self) -> int:
        return len(self._queue)

    def expected_wait(self, ahead: int) -> float:
        """Seconds until a permit comes for a request with `ahead` waiters before it, all permits
        busy: each permit frees once per hold time, on average."""
        hold = self.hold.seconds or 0.0
        return (ahead + 1) * hold / self.limits.permits

    def _retry_after(self) -> int:
        return max(1, math.ceil(self.expected_wait(len(self._queue))))

    @contextmanager
    def turn(
        self, gone: Callable[[], bool] = lambda: False, units: Callable[[], int] | None = None
    ) -> Iterator[float]:
        """Hold a permit for the block; yields the seconds waited for it. Raises Refused (queue
        full, deadline passed while waiting, client gone) without running the block.

        `units`: how many images' work the block did (a video: its frames, counted when it
        ends), so that the hold time stays the time of one image and a clip does not make the
        queue look minutes long."""
        arrived = self._clock()
        waiter = self._enter()
        if waiter is not None:
            self._wait(waiter, arrived, gone)
        if gone():  # hung up before a wait, or as its permit came
            with self._lock:
                self._release_locked()
                self.counts[GONE] += 1
            raise Refused(GONE, "the client disconnected before its turn", 1)
        started = self._clock()
        try:
            yield started - arrived
        finally:
            held = (self._clock() - started) / max(1, units() if units else 1)
            with self._lock:
                self.hold.add(held)
                self._release_locked()

    def _enter(self) -> _Waiter | None:
        """None: a permit is ours at once; else our place in the queue. Refused when full."""
        limits = self.limits
        with self._lock:
            if self._running < limits.permits and not self._queue:
                self._running += 1
                self.counts[ADMITTED] += 1
                return None
            ahead = len(self._queue)
            finish = self.expected_wait(ahead) + (self.hold.seconds or 0.0)
            # The first waiter is always let in (the count allowing): it takes the next permit
            # the moment one frees, so that no permit idles between arrivals.
            late = ahead > 0 and finish > ADMIT_SHARE * limits.deadline
            if ahead >= limits.max_waiting or late:
                self.counts[REFUSED] += 1
                why = (
                    f"overloaded: {ahead} requests are waiting; this one would not be answered "
                    f"within {limits.deadline:g} s"
                )
                raise Refused(REFUSED, why, self._retry_after())
            waiter = _Waiter()
            self._queue.append(waiter)
            self.counts[ADMITTED] += 1
            return waiter

    def _wait(self, waiter: _Waiter, arrived: float, gone: Callable[[], bool]) -> None:
        while not waiter.woken.wait(POLL_SECONDS):
            waited = self._clock() - arrived
            if gone():
                outcome, why = GONE, "the client disconnected before its turn"
            elif waited > self.limits.deadline:
                outcome = EXPIRED
                why = (
                    f"overloaded: waited {waited:.1f} s for a turn, longer than the "
                    f"{self.limits.deadline:g} s deadline"
                )
            else:
                continue
            with self._lock:
                if waiter.granted:  # the permit came as we gave up: pass it on
                    self._release_locked()
                else:
                    self._queue.remove(waiter)
                self.counts[outcome] += 1
                retry_after = self._retry_after()
            raise Refused(outcome, why, retry_after)

    def _release_locked(self) -> None:
        """Hand the permit to the oldest waiter, or free it."""
        if self._queue:
            waiter = self._queue.popleft()
            waiter.granted = True
            waiter.woken.set()
        else:
            self._running -= 1


def client_gone(req: falcon.Request) -> Callable[[], bool]:
    """waitress's check that the client has disconnected; never gone where waitress cannot tell
    (channel_request_lookahead 0, another server)."""
    return req.env.get("waitress.client_disconnected") or _connected


def _connected() -> bool:
    return False


@contextmanager
def request_turn(
    admission: Admission, req: falcon.Request, units: Callable[[], int] | None = None
) -> Iterator[float]:
    """`admission.turn` for one request: yields the seconds waited; records the outcome in
    `req.context.admission` (logged with the request) and answers a refusal with Overloaded."""
    try:
        with admission.turn(client_gone(req), units) as waited:
            req.context.admission = ADMITTED
            yield waited
    except Refused as refused:
        req.context.admission = refused.outcome
        raise Overloaded(refused.why, refused.retry_after) from None
