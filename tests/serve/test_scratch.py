"""serve/scratch.py: the server's private directory and its per-request files; and the real
server making it at start, refusing to start without it, removing it at exit."""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

import pytest

from serve.config import TEMP_VARIABLES
from serve.scratch import Scratch, ScratchError


@pytest.fixture
def scratch(tmp_path, monkeypatch) -> Scratch:
    """A Scratch in tmp_path; the process-wide settings it changes are put back afterwards."""
    for name in TEMP_VARIABLES:
        monkeypatch.setenv(name, "unchanged")
    monkeypatch.setattr(tempfile, "tempdir", None)
    made = Scratch.create(str(tmp_path))
    yield made
    made.remove()


def test_the_directory_is_private_and_library_temp_files_go_there(scratch: Scratch, tmp_path):
    assert scratch.root.parent == tmp_path and scratch.root.name.startswith("serve-")
    assert stat.S_IMODE(scratch.root.stat().st_mode) == 0o700
    assert {os.environ[name] for name in TEMP_VARIABLES} == {str(scratch.root)}
    with tempfile.NamedTemporaryFile() as library_file:
        assert Path(library_file.name).parent == scratch.root


def test_a_request_file_is_new_private_inside_and_removed_after(scratch: Scratch):
    with scratch.file(".mp4") as first, scratch.file(".mp4") as second:
        assert first != second and first.parent == scratch.root == second.parent
        assert first.suffix == ".mp4" and first.stat().st_size == 0
        assert stat.S_IMODE(first.stat().st_mode) == 0o600
        first.write_bytes(b"clip")
    assert list(scratch.root.iterdir()) == []


def test_a_request_file_is_removed_when_the_request_fails_or_removed_it_itself(scratch: Scratch):
    with pytest.raises(RuntimeError), scratch.file() as path:
        path.write_bytes(b"clip")
        raise RuntimeError("decoder failed")
    with scratch.file() as path:
        path.unlink()  # a consumer that moved or removed it: no error on the way out
    assert list(scratch.root.iterdir()) == []


@pytest.mark.parametrize("suffix", ["../x", "/tmp/x", ".mp4/../../x", "mp4", ".MP4", ".a\n", "."])
def test_a_suffix_cannot_carry_a_path(scratch: Scratch, suffix: str):
    with pytest.raises(ValueError), scratch.file(suffix):
        pass
    assert list(scratch.root.iterdir()) == []


def test_remove_takes_everything_left(scratch: Scratch):
    (scratch.root / "left-over").write_bytes(b"x")
    scratch.remove()
    assert not scratch.root.exists()


def test_a_parent_that_cannot_hold_it_is_one_readable_error(tmp_path):
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("")
    with pytest.raises(ScratchError, match=r"SERVE_TMPDIR=.*file: cannot make .*--tmpfs /tmp"):
        Scratch.create(str(not_a_dir))


def test_the_server_makes_it_at_start_and_removes_it_at_exit(
    start_server, head_model_path, tmp_path
):
    parent = tmp_path / "serve-tmp"
    parent.mkdir()
    server = start_server({"MODEL_PATH": str(head_model_path), "SERVE_TMPDIR": str(parent)})
    made = list(parent.iterdir())
    assert len(made) == 1 and made[0].name.startswith("serve-"), made
    assert stat.S_IMODE(made[0].stat().st_mode) == 0o700
    assert server.terminate() == 0
    assert list(parent.iterdir()) == []


def test_the_server_does_not_start_without_it(start_server, head_model_path, tmp_path):
    server = start_server(
        {"MODEL_PATH": str(head_model_path), "SERVE_TMPDIR": str(tmp_path / "missing")},
        wait=False,
    )
    assert server.wait_exit(60) == 2
    lines = server.log_text().strip().splitlines()
    assert len(lines) == 1 and "SERVE_TMPDIR=" in lines[0] and "cannot start" in lines[0], lines
