"""The local state file: what this tool created, so later commands need no names.

JSON, written atomically after every resource that is created or deleted, so that an interrupted
`up` still leaves a state from which `down` removes everything. It holds names, ARNs, the region,
the image URI, the model data and the tags: never a credential.

Layout (version 1):
  {
    "version": 1, "tool": "yolov7-sagemaker-deploy",
    "region": "eu-west-1", "prefix": "yolov7",
    "tags": {"managed-by": "yolov7-sagemaker-deploy", "yolov7-deployment": "yolov7"},
    "image": {"uri", "repository", "repository_arn", "repository_created", "pushed_at"},
    "model_data": {"uri", "bucket", "key", "source", "sha256", "bucket_created", "uploaded_at"},
    "endpoint": {"name", "arn", "config", "model", "variant", "image", "model_data",
                 "instance_type", "instance_count", "serverless", "environment", "role",
                 "startup_timeout", "data_capture", "created_at", "updated_at"},
    "autoscaling": {"resource_id", "min", "max", "target", "policy"},
    "rollback_alarms": {"names", "created", "p99_ms", "how"},  # update --rollback-alarms auto
    "transform_jobs": [{"name", "input", "output", "status", "created_at"}],
    "resources": [{"type": "model" | "endpoint-config" | "endpoint", "name", "arn"}]
  }
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

VERSION = 1

# The state's type: every module names it, so that its declared shape has one home.
State = dict[str, Any]


def now_iso() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat()


def empty() -> dict:
    return {"version": VERSION, "tool": config.TOOL, "resources": [], "transform_jobs": []}


class StateFile:
    def __init__(self, path: Path | str):
        self.path = Path(path)

    def exists(self) -> bool:
        return self.path.is_file()

    def load(self) -> dict:
        if not self.path.is_file():
            return empty()
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
        if data.get("version") != VERSION:
            raise UserError(
                f"{self.path} has state version {data.get('version')}, this tool reads {VERSION}"
            )
        data.setdefault("resources", [])
        data.setdefault("transform_jobs", [])
        return data

    def save(self, data: dict) -> None:
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


def check_region(state: dict, region: str) -> None:
    """A state belongs to one region: refuse to mix."""
    recorded = state.get("region")
    if recorded and recorded != region and has_resources(state):
        raise UserError(
            f"the state file records resources in {recorded}, not {region}",
            f"pass --region {recorded}, or use another --state for {region}",
        )


def has_resources(state: dict) -> bool:
    return bool(
        state.get("resources")
        or state.get("endpoint")
        or state.get("autoscaling")
        or state.get("image")
        or state.get("model_data")
        or state.get("rollback_alarms")
    )


def remember(state: dict, kind: str, name: str, arn: str | None) -> None:
    """Add a created resource to the ledger that `down` walks."""
    forget(state, kind, name)
    state["resources"].append({"type": kind, "name": name, "arn": arn})


def forget(state: dict, kind: str, name: str) -> None:
    state["resources"] = [
        r for r in state.get("resources", []) if not (r["type"] == kind and r["name"] == name)
    ]


def resources(state: dict, kind: str) -> list[dict]:
    return [r for r in state.get("resources", []) if r["type"] == kind]
