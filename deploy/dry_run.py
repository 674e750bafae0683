"""`--dry-run`'s output: the calls a command would make, one per line (or all of them as JSON)."""

from __future__ import annotations

import json
from typing import Any

from deploy.requests import Call

# Shown as a count, not in full, on the one-line form (`--json` has them whole).
SUMMARISED = ("Tags",)


def _flat(prefix: str, value: Any) -> list[tuple[str, Any]]:
    if isinstance(value, dict):
        if prefix.endswith("Environment"):
            return [(prefix, ",".join(sorted(value)) or "{}")]  # names only: values may be long
        return [pair for key, item in value.items() for pair in _flat(f"{prefix}.{key}", item)]
    if isinstance(value, list) and value and all(isinstance(item, dict) for item in value):
        if len(value) == 1:
            return _flat(prefix, value[0])
        return [
            pair for index, item in enumerate(value) for pair in _flat(f"{prefix}.{index}", item)
        ]
    if isinstance(value, list):
        return [(prefix, ",".join(map(str, value)))]
    return [(prefix, value)]


def _shown(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def line(call: Call) -> str:
    """One call: `sagemaker CreateModel ModelName=X PrimaryContainer.Image=Y ...`."""
    parts = [call.service, call.operation]
    for key, value in call.params.items():
        if key in SUMMARISED:
            parts.append(f"{key}=({len(value)})")
            continue
        parts += [f"{name.lstrip('.')}={_shown(item)}" for name, item in _flat(f".{key}", value)]
    return " ".join(parts)


def render(calls: list[Call], as_json: bool) -> str:
    if as_json:
        return json.dumps(
            [
                {"service": c.service, "operation": c.operation, "parameters": c.params}
                for c in calls
            ],
            indent=2,
            default=str,
        )
    return "\n".join(line(call) for call in calls)
