"""Shared fixtures: the repository root and the bundled assets."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# The independent reference pipeline (tests/serve/serve_reference.py) serves the export tests too.
if str(ROOT / "tests" / "serve") not in sys.path:
    sys.path.insert(0, str(ROOT / "tests" / "serve"))


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def shapes_checkpoint() -> Path:
    return ROOT / "weights" / "shapes-yolov7-tiny.pt"
