"""The server's one place on disk: a private directory made at start inside SERVE_TMPDIR.

Nothing else of the server writes to disk: photos and answers stay in memory (waitress is told
never to spill them, serve/server.py). What must be a file (a video clip handed to a decoder that
reads files) goes here, under a name the server makes, and is removed when its request ends,
whatever happens. Library temporary files (Python's tempfile, OpenCV) are pointed here too, so
the directory is the server's whole footprint, and it is removed at exit.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from serve.config import route_temp_files

# A suffix names a format (".mp4"); it never carries anything a client sent.
_SUFFIX = re.compile(r"(\.[a-z0-9]{1,8})?")


class ScratchError(OSError):
    """The private directory cannot be made where SERVE_TMPDIR points."""


class Scratch:
    """A directory only this process may enter (mode 0700), and per-request files inside it."""

    def __init__(self, root: Path):
        self.root = root

    @classmethod
    def create(cls, parent: str) -> Scratch:
        """Make the private directory inside `parent` and send library temp files there."""
        try:
            root = Path(tempfile.mkdtemp(prefix="serve-", dir=parent))  # mode 0700, unique
        except OSError as exc:
            raise ScratchError(
                f"SERVE_TMPDIR={parent}: cannot make the server's private directory there "
                f"({exc.strerror or exc}); point SERVE_TMPDIR at a writable folder, or mount "
                "one (docker run --read-only --tmpfs /tmp)"
            ) from None
        route_temp_files(str(root))
        tempfile.tempdir = str(root)  # read once by tempfile; the environment is set for the rest
        return cls(root)

    @contextlib.contextmanager
    def file(self, suffix: str = "") -> Iterator[Path]:
        """A new empty file (mode 0600) for one request, removed when the block ends."""
        if not _SUFFIX.fullmatch(suffix):
            raise ValueError(f"suffix {suffix!r}: expected a dot and 1-8 lowercase letters/digits")
        fd, name = tempfile.mkstemp(suffix=suffix, dir=self.root)
        os.close(fd)
        path = Path(name)
        try:
            yield path
        finally:
            path.unlink(missing_ok=True)

    def remove(self) -> None:
        """Remove the directory and anything left in it (at exit)."""
        shutil.rmtree(self.root, ignore_errors=True)
