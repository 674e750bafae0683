"""The programs tests start, taken from this interpreter's environment (the venv), never PATH.

A program found only on PATH would hide a missing line in requirements-test.txt: on a fresh
machine it exists only inside .venv/bin. Each is started as `python -m MODULE` where the package
supports it, else as the console script beside sys.executable.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

# Installed by requirements-test.txt; each one as the venv starts it.
MODULES = {"schemathesis": "schemathesis.cli"}


def venv_script(name: str) -> str:
    """The console script `name` beside sys.executable; a test failure saying what to install."""
    path = Path(sys.executable).parent / name
    if not path.is_file():
        pytest.fail(
            f"{name} is not installed in {path.parent} (pip install -r requirements-test.txt)"
        )
    return str(path)


def venv_command(name: str) -> list[str]:
    """argv[:n] that runs the program `name` from the venv."""
    if name in MODULES:
        return [sys.executable, "-m", MODULES[name]]
    return [venv_script(name)]
