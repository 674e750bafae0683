"""Fixtures for the reliability tests: the serve tests' small ONNX model, and real servers on
127.0.0.1 started by demo.local_server."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

_HERE = Path(__file__).resolve().parent
for _path in (str(_HERE.parent / "serve"), str(_HERE)):  # serve_models; reliability_helpers
    if _path not in sys.path:
        sys.path.insert(0, _path)

from reliability_helpers import SERVER_ENV  # noqa: E402
from serve_models import head_model, slow_model  # noqa: E402

from demo.local_server import LocalServer, local_server  # noqa: E402


@pytest.fixture(scope="session")
def reliability_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("reliability-models")


@pytest.fixture(scope="session")
def head_model_path(reliability_models: Path) -> Path:
    return head_model(reliability_models / "head.onnx", size=128)


@pytest.fixture(scope="session")
def slow_model_path(reliability_models: Path) -> Path:
    """About 0.3 s per inference on two cores."""
    return slow_model(reliability_models / "slow.onnx", size=128, layers=40)


@pytest.fixture(scope="module")
def live_server(head_model_path: Path) -> Iterator[LocalServer]:
    with local_server(head_model_path, env=SERVER_ENV) as server:
        yield server
