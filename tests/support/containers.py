"""Helpers of the container tests: samples, one request, a free port 8080, the venv's hadolint, and
skip-or-fail when tools are missing."""

from __future__ import annotations

import json
import os
import socket
import sys
import urllib.request
from pathlib import Path

import pytest

from container.engine import REPO

SAMPLES = (REPO / "samples" / "bus.jpg", REPO / "samples" / "shapes" / "shapes-00.png")
CONTENT_TYPES = {".jpg": "image/jpeg", ".png": "image/png"}


def unavailable(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI=true: .ci/run must install it)")
    pytest.skip(reason)


def detect(url: str, image: Path) -> dict:
    request = urllib.request.Request(
        f"{url}/invocations",
        data=image.read_bytes(),
        headers={"Content-Type": CONTENT_TYPES[image.suffix], "Accept": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def port_is_free(port: int) -> bool:
    with socket.socket() as s:
        # As waitress does: sockets of an earlier run left in TIME_WAIT do not hold the port.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def hadolint_path() -> str | None:
    """The venv's hadolint (requirements-test.txt), never one found on PATH."""
    beside_python = Path(sys.executable).parent / "hadolint"
    return str(beside_python) if beside_python.is_file() else None
