"""Run `python -m serve` on 127.0.0.1 for as long as a `with` block lasts (demo, benchmarks)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class LocalServer:
    url: str
    process: subprocess.Popen
    started: float  # time.monotonic() at process start
    ready_after: float  # seconds from process start to the first 200 from /ping
    settled_after: float  # ... to the first /ping without "compiling" (later on OpenVINO INT8)


def wait_for_ping(url: str, process: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited with code {process.returncode} before /ping")
        try:
            with urllib.request.urlopen(f"{url}/ping", timeout=1) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.02)
    raise RuntimeError(f"/ping was not 200 within {timeout:.0f} s")


def wait_until_settled(url: str, timeout: float) -> None:
    """Until /ping no longer says "compiling": an INT8 export on OpenVINO answers from its float
    view until its INT8 graph has compiled in the background (serve/runtimes/openvino.py)."""
    deadline = time.monotonic() + timeout
    while True:
        with urllib.request.urlopen(f"{url}/ping", timeout=5) as response:
            if "compiling" not in json.loads(response.read() or b"{}"):
                return
        if time.monotonic() > deadline:
            raise RuntimeError(f"/ping still said compiling after {timeout:.0f} s")
        time.sleep(0.02)


@contextlib.contextmanager
def local_server(
    model: Path, env: dict[str, str] | None = None, timeout: float = 60.0, quiet: bool = True
) -> Iterator[LocalServer]:
    """The server on a free port, once /ping is 200 and nothing compiles in the background."""
    port = free_port()
    child_env = {
        **os.environ,
        "MODEL_PATH": str(model),
        "SERVE_HOST": "127.0.0.1",
        "SAGEMAKER_BIND_TO_PORT": str(port),
        **(env or {}),
    }
    out = subprocess.DEVNULL if quiet else None
    started = time.monotonic()
    process = subprocess.Popen(
        [sys.executable, "-m", "serve", "serve"], cwd=ROOT, env=child_env, stdout=out, stderr=out
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_ping(url, process, timeout)
        ready = time.monotonic()
        wait_until_settled(url, timeout)
        yield LocalServer(url, process, started, ready - started, time.monotonic() - started)
    finally:
        stop(process)


def stop(process: subprocess.Popen, grace: float = 30.0) -> None:
    """SIGTERM, as SageMaker sends it; SIGKILL only if the server has not drained in `grace` s."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
