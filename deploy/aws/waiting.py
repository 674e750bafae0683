"""Waiting on SageMaker with a live progress line, decided by botocore's own waiter definitions.

A plain `waiter.wait()` is silent for up to an hour. Here the describe call is made in a loop and
every answer is judged by the acceptors of the named botocore waiter (`endpoint_in_service`,
`endpoint_deleted`, `transform_job_completed_or_stopped`): success, failure or keep waiting are
exactly what botocore would decide, with the waiter's delay and attempt budget as defaults. Between
polls a terminal shows the status and the elapsed time on one refreshed line; a log (not a TTY)
gets one line per status change.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, Any

from botocore import xform_name
from botocore.exceptions import ClientError

from deploy.errors import AwsError


def elapsed(seconds: float) -> str:
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class ProgressLine:
    """One line on a terminal, rewritten in place; on a pipe, one line per change."""

    def __init__(self, stream: IO[str] | None = None) -> None:
        self.stream: IO[str] = stream or sys.stderr
        isatty = getattr(self.stream, "isatty", None)
        self.tty = bool(isatty and isatty())
        self._last_key: str | None = None
        self._open = False

    def show(self, text: str, key: str | None = None) -> None:
        if self.tty:
            self.stream.write("\r\x1b[2K" + text)
            self.stream.flush()
            self._open = True
        elif key != self._last_key:
            self.stream.write(text + "\n")
            self.stream.flush()
        self._last_key = key

    def close(self) -> None:
        if self.tty and self._open:
            self.stream.write("\n")
            self.stream.flush()
        self._open = False


@dataclass
class WaitResult:
    response: dict[str, Any]
    seconds: float
    state: str  # "success" or "failure"


def wait_for(
    client: Any,
    waiter_name: str,
    params: dict[str, Any],
    *,
    label: str,
    status_of: Callable[[dict[str, Any]], str],
    detail: Callable[[dict[str, Any]], str] | None = None,
    poll: float | None = None,
    timeout: float | None = None,
    progress: ProgressLine | None = None,
    stuck: tuple[str, ...] = (),
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> WaitResult:
    """Describe until the botocore waiter's acceptors say success or failure.

    Returns on success and on failure (the caller reads FailureReason); a status in `stuck` also
    counts as failure. Raises AwsError when the time budget runs out, and re-raises a ClientError
    that no acceptor expects.
    """
    waiter_config = client.get_waiter(waiter_name).config
    describe = getattr(client, xform_name(waiter_config.operation))
    delay = waiter_config.delay if poll is None else max(0.0, poll)
    budget = waiter_config.delay * waiter_config.max_attempts if timeout is None else timeout
    progress = progress or ProgressLine()
    start = clock()
    try:
        while True:
            error = None
            try:
                response = describe(**params)
            except ClientError as exc:
                response, error = exc.response, exc
            state = next(
                (a.state for a in waiter_config.acceptors if a.matcher_func(response)), None
            )
            if error is not None and state is None:
                raise error
            status = status_of(response) if error is None else "gone"
            if state is None and status in stuck:
                state = "failure"
            extra = detail(response) if (detail and error is None) else ""
            spent = clock() - start
            progress.show(_line(label, status, extra, spent), key=f"{status}|{extra}")
            if state in ("success", "failure"):
                return WaitResult(response=response, seconds=spent, state=state)
            if spent >= budget:
                raise AwsError(
                    f"gave up waiting for {label} after {elapsed(spent)} (status {status})",
                    "run `status` to look again, or `down` to remove it",
                )
            next_poll = clock() + delay
            while (now := clock()) < next_poll:
                sleep(min(1.0, next_poll - now))
                if progress.tty:
                    progress.show(_line(label, status, extra, clock() - start), key=None)
    finally:
        progress.close()


def _line(label: str, status: str, extra: str, spent: float) -> str:
    text = f"{label}: {status}"
    if extra:
        text += f" ({extra})"
    return f"{text}  [{elapsed(spent)}]"
