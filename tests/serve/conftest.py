"""Fixtures for the server's tests: the bundled checkpoint exported, and real `python -m serve`
processes (tests.support.server.ServerProcess) talked to over HTTP."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.server import REPO, ServerProcess

# The bundled model's size: what it was trained at.
SHAPES_IMG_SIZE = 320


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("serve-models")


@pytest.fixture(scope="session")
def exported(models_dir, shapes_checkpoint) -> dict[str, Path]:
    """The bundled checkpoint at 320 in both layouts, by the real command line, once a session:
    the exactness, runtime, decode and thread-layout tests all read these files."""
    paths = {"raw": models_dir / "shapes-raw.onnx", "end2end": models_dir / "shapes-end2end.onnx"}
    for layout, path in paths.items():
        command = [
            sys.executable, "-m", "export", "--weights", str(shapes_checkpoint),
            "--img-size", str(SHAPES_IMG_SIZE), "--output", str(path),
        ]  # fmt: skip
        if layout == "end2end":
            command.append("--end2end")
        done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stdout + done.stderr
    return paths


@pytest.fixture
def start_server(tmp_path):
    """Start `python -m serve` with extra env; every server started is killed at teardown."""
    started: list[ServerProcess] = []

    def start(env: dict[str, str] | None = None, args: tuple[str, ...] = (), wait: bool = True):
        server = ServerProcess(tmp_path / f"srv{len(started)}", env or {}, args)
        started.append(server)
        return server.wait_ready() if wait else server

    yield start
    for server in started:
        server.close()


@pytest.fixture(scope="session")
def server(tmp_path_factory, head_model_path):
    """One shared server on the head model with default settings."""
    srv = ServerProcess(tmp_path_factory.mktemp("server"), {"MODEL_PATH": str(head_model_path)})
    try:
        yield srv.wait_ready()
    finally:
        srv.close()
