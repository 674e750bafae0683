"""Per-request detection options: parsed from the custom-attributes header or the JSON body."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from serve.config import MAX_DET_LIMIT
from serve.errors import BadOption

KEYS = ("conf", "iou", "max_det", "classes", "agnostic")


@dataclass(frozen=True)
class Options:
    conf: float = 0.25
    iou: float = 0.45
    max_det: int = 300
    classes: tuple[int, ...] | None = None  # None: every class
    agnostic: bool = False


def from_custom_attributes(header: str | None, keys: Sequence[str] = KEYS) -> dict[str, str]:
    """`conf=0.3,iou=0.5,max_det=100,classes=0;2,agnostic=true` -> {key: text}.

    CustomAttributes is a general-purpose channel, so items with other keys (or no `=`) are
    ignored; a known key given twice keeps the last value.
    """
    found: dict[str, str] = {}
    for item in (header or "").split(","):
        key, sep, value = item.partition("=")
        key = key.strip().lower()
        if sep and key in keys:
            found[key] = value.strip()
    return found


def resolve(
    defaults: Options, overrides: Mapping[str, Any], names: Sequence[str], nc: int | None
) -> Options:
    """Apply validated overrides (text from the header, or JSON values) to the defaults."""
    changes: dict[str, Any] = {}
    for key, value in overrides.items():
        if key == "conf" or key == "iou":
            changes[key] = _unit_float(key, value)
        elif key == "max_det":
            changes[key] = _max_det(value)
        elif key == "classes":
            changes[key] = _classes(value, names, nc)
        elif key == "agnostic":
            changes[key] = _bool(key, value)
        else:
            raise BadOption(key, f"unknown option; known: {', '.join(KEYS)}")
    return replace(defaults, **changes)


def _unit_float(key: str, value: Any) -> float:
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise BadOption(key, f"{_show(value)} is not a number") from None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise BadOption(key, "expected a number between 0 and 1")
    if not (math.isfinite(value) and 0.0 <= value <= 1.0):
        raise BadOption(key, f"{_show(value)} is not between 0 and 1")
    return float(value)


def _max_det(value: Any) -> int:
    if isinstance(value, str):
        try:
            value = int(value)
        except ValueError:
            raise BadOption("max_det", f"{_show(value)} is not an integer") from None
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadOption("max_det", f"expected an integer 1-{MAX_DET_LIMIT}")
    if not 1 <= value <= MAX_DET_LIMIT:
        raise BadOption("max_det", f"{value} is not between 1 and {MAX_DET_LIMIT}")
    return value


def _bool(key: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "1", "yes"):
        return True
    if isinstance(value, str) and value.lower() in ("false", "0", "no"):
        return False
    raise BadOption(key, f"{_show(value)} is not true or false")


def _classes(value: Any, names: Sequence[str], nc: int | None) -> tuple[int, ...] | None:
    """Class ids or names: `0;2` / `person;car` in the header, a list (or that text) in JSON."""
    if isinstance(value, str):
        items: list[Any] = [part.strip() for part in value.split(";") if part.strip()]
    elif isinstance(value, list):
        items = value
    else:
        raise BadOption("classes", "expected a list of class ids or names")
    if not items:
        raise BadOption("classes", "no class given")
    ids: list[int] = []
    for item in items:
        if isinstance(item, str) and item.lstrip("-").isdigit():
            item = int(item)
        if isinstance(item, bool):
            raise BadOption("classes", f"{_show(item)} is not a class id or name")
        if isinstance(item, int):
            if item < 0 or (nc is not None and item >= nc):
                limit = f"0-{nc - 1}" if nc else "non-negative"
                raise BadOption("classes", f"class id {item} is out of range ({limit})")
            ids.append(item)
        elif isinstance(item, str) and item in names:
            ids.append(names.index(item))
        else:
            raise BadOption("classes", f"{_show(item)} is not a class id or name")
    return tuple(sorted(set(ids)))


def _show(value: Any) -> str:
    """A client's value, quoted and cut short for an error message."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
