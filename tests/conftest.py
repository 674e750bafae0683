"""Shared fixtures: the repository root and the bundled assets."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def shapes_checkpoint() -> Path:
    return ROOT / "weights" / "shapes-yolov7-tiny.pt"
