"""`logs [--since 10m] [--follow]`: the endpoint's CloudWatch Logs, our JSON lines made readable.

SageMaker sends the container's stdout to the log group /aws/sagemaker/Endpoints/NAME, one stream
per variant and instance. The server writes one JSON object per line (serve/logs.py); a request
line becomes `time  LEVEL  POST /invocations 200  52.1 ms  6 detections  id ...  [instance]`.
Any other line (waitress, a crash before logging starts) is shown as it is. `--follow` polls
FilterLogEvents every few seconds; it subscribes to nothing, so there is nothing to remove.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import ClientError

from deploy.aws import paging
from deploy.aws.not_found import is_not_found
from deploy.aws.sagemaker import log_group
from deploy.context import Context
from deploy.errors import UserError

SINCE = re.compile(r"^(\d+)([smhd])$")
UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}
FOLLOW_POLL_S = 3.0


def parse_since(text: str) -> int:
    """'10m' -> 600 (seconds); s, m, h and d are understood."""
    found = SINCE.match(text.strip())
    if not found or int(found.group(1)) == 0:
        raise UserError(f"--since {text!r} is not a duration", "for example 30s, 10m, 2h or 1d")
    return int(found.group(1)) * UNIT_S[found.group(2)]


def render(message: str, stream: str = "") -> str:
    """One log event as one readable line."""
    try:
        entry = json.loads(message)
    except ValueError:
        entry = None
    where = f"  [{stream}]" if stream else ""
    if not isinstance(entry, dict) or "message" not in entry:
        return message.rstrip("\n") + where
    parts = [str(entry.get("time", "")), f"{entry.get('level', ''):<5}"]
    if entry.get("message") == "request" and "status" in entry:
        parts.append(f"{entry.get('method', '?')} {entry.get('path', '?')} {entry['status']}")
        if entry.get("latency_ms") is not None:
            parts.append(f"{float(entry['latency_ms']):.1f} ms")
        if entry.get("detections") is not None:
            count = entry["detections"]
            parts.append(f"{count} detection{'' if count == 1 else 's'}")
    else:
        parts.append(str(entry["message"]))
        shown = {"time", "level", "logger", "message", "request_id", "exception"}
        extra = [f"{k}={v}" for k, v in entry.items() if k not in shown]
        if extra:
            parts.append(" ".join(extra))
    if entry.get("request_id"):
        parts.append(f"id {entry['request_id']}")
    line = "  ".join(p for p in parts if p) + where
    if entry.get("exception"):
        line += "\n" + str(entry["exception"])
    return line


def events(
    logs_client: Any, group: str, start_ms: int, end_ms: int | None = None
) -> Iterator[dict[str, Any]]:
    kwargs: dict[str, Any] = {"logGroupName": group, "startTime": start_ms}
    if end_ms is not None:
        kwargs["endTime"] = end_ms
    yield from paging.items(logs_client, "filter_log_events", "events", **kwargs)


def show(
    ctx: Context,
    since_s: int,
    follow: bool = False,
    write: Callable[[str], None] = print,
    sleep: Callable[[float], None] | None = None,
) -> int:
    """Print the events; returns how many. Ctrl-C ends --follow (exit 0)."""
    endpoint = (ctx.state.get("endpoint") or {}).get("name")
    if not endpoint:
        raise UserError("nothing is deployed in this state", "run `up` first")
    group = log_group(endpoint)
    client = ctx.aws.client("logs")
    start = int((datetime.now(UTC).timestamp() - since_s) * 1000)
    seen: set[str] = set()
    shown = 0
    try:
        while True:
            try:
                batch = sorted(events(client, group, start), key=lambda e: e.get("timestamp", 0))
            except ClientError as exc:
                if not is_not_found(exc):
                    raise
                if not follow:
                    raise UserError(
                        f"no logs yet: log group {group} does not exist",
                        "the container writes it once it starts; try again in a minute",
                    ) from None
                batch = []
            for event in batch:
                key = event.get("eventId") or f"{event.get('timestamp')}{event.get('message')}"
                if key in seen:
                    continue
                seen.add(key)
                write(render(event.get("message", ""), event.get("logStreamName", "")))
                shown += 1
                start = max(start, int(event.get("timestamp", 0)))
            if not follow:
                return shown
            (sleep or time.sleep)(FOLLOW_POLL_S)
    except KeyboardInterrupt:
        return shown
