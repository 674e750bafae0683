"""Reliability and security, measured: a corpus of bad requests, a soak, and their helpers."""

from __future__ import annotations

import signal
import sys


def stop_cleanly_on_sigterm() -> None:
    """SIGTERM (`kill`, a CI runner's cancel) ends a run as Ctrl-C does: the `with` blocks unwind,
    so the server it started is stopped rather than left running, orphaned, on its port."""
    signal.signal(signal.SIGTERM, lambda _signum, _frame: sys.exit(128 + signal.SIGTERM))
