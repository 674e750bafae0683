"""Start our server or the PyTorch + FastAPI baseline on 127.0.0.1 and time its cold start."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from demo.__main__ import post
from demo.local_server import (
    ROOT,
    free_port,
    local_server,
    stop,
    wait_for_ping,
    wait_until_settled,
)

START_TIMEOUT_S = 180.0


@dataclass
class Running:
    url: str
    pid: int
    ready_after: float  # seconds from process start to the first 200 from /ping
    ping: dict = field(default_factory=dict)  # what /ping answered once ready
    # ... to the first /ping without "compiling" (OpenVINO on an INT8 export: until then its
    # float view answers); measurements start after it
    settled_after: float | None = None


BENCH_QUEUE_DEADLINE = "60"


@contextlib.contextmanager
def ours(
    model: Path,
    env: dict[str, str] | None = None,
    expect: dict[str, str] | None = None,
    prime: Sequence[Path] = (),
) -> Iterator[Running]:
    """`python -m serve` with `model`; `env` adds server variables (ORT_INTRA_OP_THREADS, ...).
    `expect`: what /ping must report (runtime, precision, float_precision), so that a figure is
    never filed under a configuration the server did not run. `prime`: photos sent once each
    before it is handed over, then /ping waited on until it compiles nothing (OpenVINO compiles a
    `--rect` export for each shape it sees): what is measured is the server in its steady state.

    Its queue deadline is SageMaker's 60 s unless `env` says otherwise: bench's clients wait for
    their answers at a fixed concurrency (up to 8 for a model of a second an inference), and
    what a burst does to the default deadline is reliability.overload's measurement."""
    env = {"SERVE_QUEUE_DEADLINE": BENCH_QUEUE_DEADLINE, **(env or {})}
    with local_server(model, env=env, timeout=START_TIMEOUT_S) as server:
        ping = read_ping(server.url)
        wrong = {k: ping.get(k) for k, v in (expect or {}).items() if ping.get(k) != v}
        if wrong:
            raise RuntimeError(f"server runs {wrong}, not the {expect} asked ({env})")
        for photo in prime:
            post(server.url, photo, "application/json")
        wait_until_settled(server.url, START_TIMEOUT_S)
        yield Running(
            server.url, server.process.pid, server.ready_after, ping, server.settled_after
        )


def read_ping(url: str) -> dict:
    with urllib.request.urlopen(f"{url}/ping", timeout=10) as answer:
        return json.loads(answer.read() or b"{}")


@contextlib.contextmanager
def baseline(weights: Path, img_size: int, rect_stride: int | None = None) -> Iterator[Running]:
    """`python -m bench.baseline_fastapi` on a free port of 127.0.0.1 (`rect_stride`: on each
    photo's smallest rectangle)."""
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "bench.baseline_fastapi",
        "--weights",
        str(weights),
        "--img-size",
        str(img_size),
        "--port",
        str(port),
        *(["--rect-stride", str(rect_stride)] if rect_stride else []),
    ]
    # stderr goes to a file, shown if it fails to start (a pipe could fill up and block it)
    with tempfile.TemporaryFile() as log:
        started = time.monotonic()
        process = subprocess.Popen(
            command, cwd=ROOT, env=dict(os.environ), stdout=subprocess.DEVNULL, stderr=log
        )
        try:
            yield _started(process, f"http://127.0.0.1:{port}", started, log)
        finally:
            stop(process)


def _started(process: subprocess.Popen, url: str, started: float, log: IO[bytes]) -> Running:
    try:
        wait_for_ping(url, process, START_TIMEOUT_S)
    except RuntimeError as exc:
        log.seek(0)
        error = log.read().decode(errors="replace")[-2000:]
        raise RuntimeError(f"baseline did not start: {exc}\n{error}") from None
    return Running(url, process.pid, time.monotonic() - started)
