"""`capture`: the newest data-capture records, images saved and detections printed."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from deploy import capture, output
from deploy.capture import Record
from deploy.capture_files import Folder
from deploy.context import Context
from deploy.errors import EXIT_OK

NAME = "capture"
HELP = "the newest data-capture records: images saved, detections printed"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--last", type=int, default=5, metavar="N", help="records (5)")
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("capture"),
        help="folder for the images (named SLUG-SHA256.EXT by the tool, never by the record)",
    )
    parser.add_argument("--json", action="store_true", help="records as JSON (images still saved)")


def run(ctx: Context, args: argparse.Namespace) -> int:
    records = capture.last(ctx, args.last)
    if not records:
        print("no captured records yet", file=sys.stderr)
    folder = Folder(args.out) if any(r.input_bytes for r in records) else None
    for record in records:
        saved = None
        if folder and record.input_bytes:
            saved = folder.save(record.event_id, record.input_type, record.input_bytes)
        if args.json:
            print(json.dumps(as_json(record, saved)))
        else:
            print(render(record, saved))
    return EXIT_OK


def as_json(record: Record, saved: Path | None) -> dict[str, Any]:
    return {
        "event_id": record.event_id,
        "time": record.time,
        "key": record.key,
        "input_type": record.input_type,
        "input_bytes": len(record.input_bytes),
        "saved": str(saved) if saved else None,
        "output_type": record.output_type,
        "output": record.output,
    }


def render(record: Record, saved: Path | None) -> str:
    # Every text below comes from a record anyone with write access to the prefix can make.
    shown = output.printable
    head = f"{shown(record.time)}  event {shown(record.event_id)}  {shown(record.input_type)} "
    head += f"{len(record.input_bytes)} bytes"
    if saved:
        head += f" -> saved {saved}"
    if isinstance(record.output, dict) and "detections" in record.output:
        found = record.output["detections"] or []
        rows = [
            [
                str(i),
                shown(str(d.get("label", d.get("class_id", "?"))), 40),
                f"{float(d.get('score', 0)):.3f}",
                *(f"{float(v):.1f}" for v in (d.get("box") or [0, 0, 0, 0])[:4]),
            ]
            for i, d in enumerate(found, 1)
        ]
        table = output.table(
            rows, ["#", "label", "score", "x1", "y1", "x2", "y2"], {0, 2, 3, 4, 5, 6}
        )
        return f"{head}\n{table if rows else '(no detections)'}"
    return f"{head}\nanswer ({shown(record.output_type)}): {shown(str(record.output), 2000)}"
