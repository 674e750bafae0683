"""The suite may use only what a fresh machine has: the venv made from the requirement files, and
the system directories. A program installed by hand anywhere else (pip --user, /usr/local/bin, a
pyenv shim) once hid a missing install step: schemathesis ran here and failed on a clean clone."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SYSTEM_DIRS = ("/usr/sbin", "/usr/bin", "/sbin", "/bin")
VENV_BIN = Path(sys.executable).parent
SHELL_WORDS = {"test", "echo", "touch", "rm"}


def test_under_make_path_holds_only_the_venv_and_the_system_directories():
    if "MAKELEVEL" not in os.environ:
        if os.environ.get("CI") == "true":
            pytest.fail("CI runs the README's `make test`, which sets the PATH this test checks")
        pytest.skip("run through `make test` to check the PATH it sets")
    entries = os.environ["PATH"].split(os.pathsep)
    assert entries[0] == str(VENV_BIN), entries
    assert set(entries[1:]) <= set(SYSTEM_DIRS), entries


def test_every_make_target_starts_its_programs_from_the_venv():
    make = shutil.which("make", path=os.pathsep.join(SYSTEM_DIRS))
    if make is None:
        pytest.skip("make is not installed")
    targets = ("env", "lint", "test", "demo", "bench", "image")
    done = subprocess.run(
        [make, "--dry-run", "--always-make", "--no-print-directory", *targets],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    programs = {shlex.split(line)[0] for line in done.stdout.splitlines() if line.strip()}
    assert programs, done.stdout
    for program in programs - SHELL_WORDS:
        path = Path(program)
        assert path.is_absolute(), f"{program} would be looked up on PATH"
        # The one program from outside the venv: the machine's Python, which creates it.
        assert path.parent == VENV_BIN or path.name.startswith("python"), program
