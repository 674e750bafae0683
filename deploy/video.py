"""Video clips on the deploy side: which files are clips, how long SageMaker lets one run, and the
per-frame summary `invoke --async` prints for a clip's answer (serve/video_invocations.py)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

VIDEO_TYPES = {
    ".mp4": "video/mp4",
    ".m4v": "video/mp4",
    ".mov": "video/quicktime",
    ".avi": "video/x-msvideo",
    ".mkv": "video/x-matroska",
    ".webm": "video/webm",
}
MIB = 1024 * 1024
GIB = 1024 * MIB
# SageMaker lets an asynchronous request run at most an hour (InvocationTimeoutSeconds): a clip
# gets all of it. The container's clip budget ends a minute before, so that the frames computed
# by then are answered (incomplete) rather than lost to SageMaker's timeout.
VIDEO_INVOCATION_TIMEOUT_S = 3600
ASYNC_VIDEO_SECONDS = VIDEO_INVOCATION_TIMEOUT_S - 60
ASYNC_VIDEO_BYTES = GIB  # SageMaker's asynchronous payload limit
# Batch Transform: one clip a record, one line per frame.
TRANSFORM_ACCEPT = "application/jsonlines"


def is_video(path: Path) -> bool:
    return path.suffix.lower() in VIDEO_TYPES


def content_type(path: Path) -> str | None:
    return VIDEO_TYPES.get(path.suffix.lower())


def is_video_type(content_type: str) -> bool:
    return content_type.split(";")[0].strip().lower().startswith("video/")


def summary(data: dict[str, Any], seconds: float, target: str) -> str:
    """A clip's answer in a few lines: frames, frames with detections, detections per class."""
    frames = data.get("frames") or []
    video = data.get("video") or {}
    counts: Counter[str] = Counter()
    with_detections = 0
    for frame in frames:
        found = frame.get("detections") or []
        with_detections += bool(found)
        counts.update(str(d.get("label", d.get("class_id"))) for d in found)
    lines = [
        f"{len(frames)} frames computed, {with_detections} with detections "
        f"({video.get('width')}x{video.get('height')}, {video.get('fps')} fps, "
        f"{video.get('duration')} s clip)"
    ]
    for label, count in counts.most_common():
        lines.append(f"  {label:<16} {count} detections")
    if data.get("incomplete"):
        lines.append(f"incomplete: {data.get('reason')}")
    lines.append(f"{sum(counts.values())} detections in {seconds:.1f} s from {target}")
    return "\n".join(lines)
