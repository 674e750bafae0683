"""A server's refusal (503: overloaded, serve/admission.py) retried with capped exponential
backoff and full jitter, as the `invoke` client does.

botocore's standard and adaptive retry modes (deploy/aws/session.py) retry SageMaker's own
ServiceUnavailable (HTTP 503) and InternalFailure (500), and throttling errors, but not the
container's refusal: SageMaker hands that to the caller as ModelError (HTTP 424, with
OriginalStatusCode 503), which no botocore mode retries, and without the container's Retry-After.
So the refusal is recognized here and retried: each wait drawn uniformly between 0 and
min(CAP_S, BASE_S * 2^(attempt - 1)) (full jitter: callers refused together do not come back
together), and at least the server's Retry-After when it gave one (a direct --url call).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import TypeVar

from deploy.errors import DeployError

T = TypeVar("T")

ATTEMPTS = 5
BASE_S = 0.5
CAP_S = 8.0


class Refusal(Exception):
    """The server refused the request for now; `error` is what the caller sees once the
    attempts are spent, `retry_after` the server's Retry-After in seconds, when it gave one."""

    def __init__(self, error: DeployError, retry_after: float | None = None):
        super().__init__(str(error))
        self.error, self.retry_after = error, retry_after


def delay(attempt: int, retry_after: float | None, draw: Callable[[], float]) -> float:
    """Seconds to wait after the `attempt`-th refusal (1-based); `draw` gives [0, 1)."""
    ceiling = min(CAP_S, BASE_S * 2 ** (attempt - 1))
    wait = draw() * ceiling
    if retry_after is not None:
        wait = max(wait, min(CAP_S, retry_after) * (1 + 0.5 * draw()))
    return wait


def with_backoff(
    call: Callable[[], T],
    note: Callable[[str], None] = lambda text: None,
    attempts: int = ATTEMPTS,
    sleep: Callable[[float], None] = time.sleep,
    draw: Callable[[], float] = random.random,
) -> T:
    """call(), again after each Refusal, `attempts` times in all; then the last refusal's error,
    saying how many attempts were refused."""
    for attempt in range(1, attempts + 1):
        try:
            return call()
        except Refusal as refusal:
            if attempt == attempts:
                error = refusal.error
                error.message = f"{error.message.rstrip('. ')} (refused {attempts} times)"
                error.args = (error.message, *error.args[1:])
                raise error from refusal
            wait = delay(attempt, refusal.retry_after, draw)
            note(f"the server is overloaded (503); attempt {attempt + 1} in {wait:.1f} s")
            sleep(wait)
    raise AssertionError("unreachable: the loop returns or raises")
