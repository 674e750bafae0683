"""The thread layout both runtimes share: an inference alone on every thread, two at once on a
share each.

One inference alone is fastest on all `intra_op` threads; two at once run more images per second
when each keeps to its share of the CPUs than when both spread over all of them (measured for
both runtimes: docs/serving.md "Concurrency"). So a runtime compiles the model twice, wide and
narrow, and each inference takes the wide one when no other is running and the narrow one when it
starts beside another.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Generic, TypeVar

from serve.runtimes import Threads

T = TypeVar("T")


def narrow_threads(threads: Threads, requests: int) -> int | None:
    """Threads per inference of the narrow layout, or None where it would be the wide one (one
    inference at a time, or one thread already)."""
    share = max(1, threads.intra_op // max(1, requests))
    return None if share >= threads.intra_op else share


class WideNarrow(Generic[T]):
    """Hands out the wide runner to an inference that runs alone, the narrow one otherwise."""

    def __init__(self, wide: T, narrow: T | None = None):
        self.wide = wide
        self.narrow = wide if narrow is None else narrow
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)  # notified when the last inference ends
        self._running = 0  # inferences in flight

    @property
    def layouts(self) -> int:
        """1 when there is only the wide runner, 2 with a narrow one."""
        return 1 if self.narrow is self.wide else 2

    @property
    def running(self) -> int:
        """Inferences in flight now."""
        with self._lock:
            return self._running

    def wait_idle(self, timeout: float) -> bool:
        """Wait up to `timeout` s for the inferences in flight to end; True when none is left."""
        with self._idle:
            return self._idle.wait_for(lambda: self._running == 0, timeout)

    def add_narrow(self, narrow: T) -> None:
        """A narrow runner made after the wide one started serving: inferences started from now on
        beside another take it."""
        with self._lock:
            self.narrow = narrow

    @contextlib.contextmanager
    def pick(self) -> Iterator[T]:
        with self._lock:
            runner = self.wide if self._running == 0 else self.narrow
            self._running += 1
        try:
            yield runner
        finally:
            with self._idle:
                self._running -= 1
                if self._running == 0:
                    self._idle.notify_all()
