"""Fixtures for the reliability tests: the slow ONNX model (the head model is the suite's, in
tests/conftest.py), and a real server on 127.0.0.1 (tests.support.server.local_server)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.models import slow_model
from tests.support.reliability import SERVER_ENV
from tests.support.server import ServerProcess, local_server


@pytest.fixture(scope="session")
def slow_model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """About 0.3 s per inference on two cores."""
    return slow_model(
        tmp_path_factory.mktemp("reliability-models") / "slow.onnx", size=128, layers=40
    )


@pytest.fixture(scope="module")
def live_server(head_model_path: Path) -> Iterator[ServerProcess]:
    with local_server(head_model_path, env=SERVER_ENV) as server:
        yield server
