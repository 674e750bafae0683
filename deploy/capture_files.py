"""Where `capture --out DIR` writes a record's image: inside DIR only, under names the tool makes.

A record's eventId is read from S3, where anyone who can write the capture prefix (the endpoint's
execution role included) can put any text: it never becomes a path. A file name is a readable,
sanitised slug of the id (ASCII [A-Za-z0-9._-], at most 64 characters, never starting with a dot)
plus the first 12 hex digits of the id's SHA-256, so that distinct ids never share a file and the
same record saved twice lands on the same file; the extension comes from a fixed map of content
types. The folder the user named is resolved once (a symlink the user made there is the user's
choice); each file is created directly inside it, and a symlink already sitting at a file's name
is refused rather than followed (O_NOFOLLOW).
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
from pathlib import Path

from deploy.errors import UserError

EXTENSIONS = {"image/jpeg": ".jpg", "image/png": ".png", "application/json": ".json"}
SLUG_CHARS = re.compile(r"[^A-Za-z0-9._-]+")
SLUG_MAX = 64
DIGEST_CHARS = 12


def file_name(event_id: str, content_type: str) -> str:
    """`SLUG-DIGEST.EXT`: made by the tool, whatever the id holds."""
    slug = SLUG_CHARS.sub("_", event_id)[:SLUG_MAX].strip("._-") or "record"
    digest = hashlib.sha256(event_id.encode("utf-8", "surrogatepass")).hexdigest()[:DIGEST_CHARS]
    return f"{slug}-{digest}{EXTENSIONS.get(content_type, '.bin')}"


class Folder:
    """The --out folder of one `capture` run: each record gets its own file inside it."""

    def __init__(self, path: Path):
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UserError(f"--out {path}: cannot make the folder ({exc.strerror})") from exc
        self.root = path.resolve()
        self._used: set[str] = set()

    def save(self, event_id: str, content_type: str, data: bytes) -> Path:
        name = file_name(event_id, content_type)
        stem, dot, extension = name.rpartition(".")
        copy = 2
        while name in self._used:  # the same id twice in one run: both kept
            name = f"{stem}-{copy}{dot}{extension}"
            copy += 1
        self._used.add(name)
        target = self.root / name
        if target.parent != self.root:  # cannot happen with the names above; kept as the rule
            raise UserError(f"refusing to write {name!r} outside {self.root}")
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0)
        try:
            fd = os.open(target, flags, 0o644)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise UserError(
                    f"{target} is a symbolic link; capture does not write through one",
                    "remove it or choose another --out",
                ) from exc
            raise UserError(f"cannot write {target} ({exc.strerror})") from exc
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        return target
