"""The local state file: what this tool created, so later commands need no names.

JSON, written atomically after every resource that is created or deleted, so that an interrupted
`up` still leaves a state from which `down` removes everything. It holds names, ARNs, the region,
the image URI, the model data and the tags: never a credential. Its shape is declared, versioned
and checked in deploy/schema.py (and drawn in docs/architecture.md).
"""

from __future__ import annotations

import json
import os
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from deploy import config
from deploy.errors import UserError
from deploy.schema import (
    READABLE_VERSIONS,
    VERSION,
    ResourceKind,
    ResourceRecord,
    State,
    check,
    empty,
    upgrade,
)


def now_iso() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat()


class StateFile:
    def __init__(self, path: Path | str):
        self.path = Path(path)

    def exists(self) -> bool:
        return self.path.is_file()

    def load(self) -> dict[str, Any]:
        """The file's JSON as written, once it is known to be ours and of a version we read."""
        if not self.path.is_file():
            return dict(empty())
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise UserError(
                f"cannot read the state file {self.path}: {exc}",
                "fix or remove it, or point --state elsewhere",
            ) from exc
        if not isinstance(data, dict) or data.get("tool") != config.TOOL:
            raise UserError(
                f"{self.path} is not a {config.TOOL} state file", "point --state elsewhere"
            )
        if data.get("version") not in READABLE_VERSIONS:
            raise UserError(
                f"{self.path} has state version {data.get('version')}, this tool reads "
                f"{', '.join(map(str, READABLE_VERSIONS))}"
            )
        return data

    def read(self) -> State:
        """What commands work with: the file upgraded to this version and held to its schema. An
        older file is written back at once: its upgrade drops values that must not stay on disk."""
        data = self.load()
        written = data.get("version")
        state = check(upgrade(data), str(self.path))
        if written != VERSION and self.exists():
            self.save(state)
        return state

    def save(self, data: State | dict[str, Any]) -> None:
        """Write atomically: a crash mid-write never leaves half a file."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        ignore = self.path.parent / ".gitignore"
        if self.path.parent.name == ".deploy" and not ignore.exists():
            ignore.write_text("# written by python -m deploy: local state, not for git\n*\n")
        fd, tmp = tempfile.mkstemp(prefix=".state-", suffix=".json", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(data, handle, indent=2, sort_keys=True, default=str)
                handle.write("\n")
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


def check_region(state: State, region: str) -> None:
    """A state belongs to one region: refuse to mix."""
    recorded = state.get("region")
    if recorded and recorded != region and has_resources(state):
        raise UserError(
            f"the state file records resources in {recorded}, not {region}",
            f"pass --region {recorded}, or use another --state for {region}",
        )


def has_resources(state: State) -> bool:
    return bool(
        state.get("resources")
        or state.get("endpoint")
        or state.get("autoscaling")
        or state.get("image")
        or state.get("model_data")
        or state.get("rollback_alarms")
    )


def remember(state: State, kind: ResourceKind, name: str, arn: str | None) -> None:
    """Add a created resource to the ledger that `down` walks."""
    forget(state, kind, name)
    state.setdefault("resources", []).append({"type": kind, "name": name, "arn": arn})


def forget(state: State, kind: ResourceKind, name: str) -> None:
    state["resources"] = [
        r for r in state.get("resources", []) if not (r["type"] == kind and r["name"] == name)
    ]


def resources(state: State, kind: ResourceKind) -> list[ResourceRecord]:
    return [r for r in state.get("resources", []) if r["type"] == kind]
