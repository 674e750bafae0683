"""Plain-text renderings that several commands share: tables, detections, a deployment."""

from __future__ import annotations

import unicodedata
from pathlib import Path

from deploy.aws.waiting import elapsed
from deploy.deployment import Outcome


def printable(text: str, limit: int = 120) -> str:
    """`text` safe for a terminal: control and format characters (escape sequences, newlines,
    NUL, bidi overrides) shown as escapes, and at most `limit` characters shown."""
    shown = "".join(
        c if not unicodedata.category(c).startswith("C") else ascii(c)[1:-1] for c in text
    )
    return shown if len(shown) <= limit else f"{shown[:limit]}... ({len(text)} characters)"


def table(rows: list[list[str]], header: list[str], right: set[int] | None = None) -> str:
    right = right or set()
    widths = [len(h) for h in header]
    for row in rows:
        widths = [max(w, len(c)) for w, c in zip(widths, row, strict=True)]

    def fmt(row: list[str]) -> str:
        cells = [
            c.rjust(w) if i in right else c.ljust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        return "  ".join(cells).rstrip()

    return "\n".join([fmt(header), *(fmt(r) for r in rows)])


def detections(data: dict, round_trip_s: float, target: str) -> str:
    found = data.get("detections") or []
    rows = []
    for index, det in enumerate(found, 1):
        box = det.get("box") or [0, 0, 0, 0]
        label = det.get("label")
        if label is None:
            label = f"class{det.get('class_id', '?')}"
        rows.append(
            [
                str(index),
                str(label),
                f"{float(det.get('score', 0)):.3f}",
                *(f"{float(v):.1f}" for v in box[:4]),
            ]
        )
    lines = []
    if rows:
        header = ["#", "label", "score", "x1", "y1", "x2", "y2"]
        lines.append(table(rows, header, right={0, 2, 3, 4, 5, 6}))
    image = data.get("image") or {}
    timing = data.get("timing_ms") or {}
    summary = [f"{len(found)} detection{'s' if len(found) != 1 else ''}"]
    if image:
        summary.append(f"{image.get('width')}x{image.get('height')} image")
    if data.get("model"):
        summary.append(f"model {data['model']}")
    total = None
    if isinstance(timing, dict) and timing:
        # the server's own steps (decode, preprocess, inference, ...) add up to its time
        total = timing.get("total")
        if total is None:
            total = sum(v for v in timing.values() if isinstance(v, int | float))
    if total is not None:
        summary.append(f"server {float(total):.1f} ms")
    summary.append(f"round trip {round_trip_s * 1000:.1f} ms")
    summary.append(f"from {target}")
    lines.append(", ".join(summary))
    return "\n".join(lines)


def outcome(result: Outcome, state_path: Path, region: str) -> str:
    lines = [
        f"endpoint  {result.endpoint}  {result.status}"
        + (f" after {elapsed(result.seconds)}" if result.seconds is not None else ""),
        f"config    {result.config}",
        f"model     {result.model}",
        f"region    {region}",
        f"state     {state_path}",
    ]
    if result.deleted:
        lines.append(f"removed   {', '.join(result.deleted)}")
    if not result.waited:
        lines.append("not waiting: follow it with `python -m deploy status`")
    else:
        lines.append("next      python -m deploy invoke IMAGE.jpg  (then autoscale, cost, down)")
    return "\n".join(lines)
