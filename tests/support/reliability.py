"""Helpers of the reliability tests: the servers' settings, a server's port, and a soak run as a
user runs it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.support.server import TEST_THREADS, ServerProcess

# Small and steady, like tests/serve: 16 waitress threads, 2 onnxruntime threads.
SERVER_ENV = TEST_THREADS


def port_of(server: ServerProcess) -> int:
    return int(server.url.rsplit(":", 1)[1])


def run_soak(
    repo_root: Path,
    report_path: Path,
    model: Path,
    duration: int,
    concurrency: int,
    warm_up: int,
    server_env: dict[str, str] | None = None,
    extra: tuple[str, ...] = (),
) -> dict:
    """`python -m reliability.soak` against `model`, as a user runs it; its JSON report, once it
    exited 0 (a failed soak exits 1 and the assertion shows its output)."""
    command = [
        *(sys.executable, "-m", "reliability.soak", "--duration", str(duration)),
        *("--concurrency", str(concurrency), "--warm-up", str(warm_up)),
        *("--model", str(model), "--json", str(report_path)),
        *(f"--env={key}={value}" for key, value in (server_env or {}).items()),
        *extra,
    ]
    result = subprocess.run(
        command, cwd=repo_root, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads(report_path.read_text())
