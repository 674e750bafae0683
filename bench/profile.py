"""Where our server's time goes: py-spy samples it while one client sends requests, and the
samples are grouped by the pipeline step they were in (a Python frame's share includes the C
code it called: onnxruntime, OpenCV, numpy)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

# step -> substrings of "function (file" that mark it, checked innermost first
STEPS = {
    "session.run (onnxruntime)": ("run (onnxruntime/",),
    "decode_image (cv2.imdecode)": ("decode_image (serve/decode.py",),
    "letterbox": ("letterbox (serve/letterbox.py",),
    "to_tensor": ("to_tensor (serve/letterbox.py",),
    "nms + scale back": ("non_max_suppression (serve/nms.py", "scale_boxes (serve/"),
    "JSON answer": ("_answer (serve/app.py", "json/encoder.py", "falcon/media/json.py"),
    "request log": ("process_response (serve/app.py", "logging/"),
    "waitress (HTTP I/O)": ("waitress/",),
    "falcon (routing, media)": ("falcon/",),
}


def record(pid: int, seconds: float, output: Path) -> subprocess.Popen | None:
    """Start py-spy on `pid` for `seconds`; None when py-spy is not installed."""
    spy = Path(sys.executable).parent / "py-spy"  # requirements-bench.txt's, never PATH's
    if not spy.is_file():
        return None
    command = [spy, "record", "--pid", str(pid), "--format", "raw", "--output", str(output)]
    command += ["--duration", str(max(1, round(seconds))), "--rate", "250", "--nonblocking"]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def summarize(collapsed: Path) -> dict:
    """Share of the busy samples per step, from py-spy's collapsed stacks."""
    counts = {step: 0 for step in STEPS}
    counts["other"] = 0
    total = 0
    for line in collapsed.read_text().splitlines():
        stack, _, number = line.rpartition(" ")
        if not number.isdigit():
            continue
        samples = int(number)
        total += samples
        frames = stack.split(";")
        for frame in reversed(frames):
            step = next((s for s, keys in STEPS.items() if any(k in frame for k in keys)), None)
            if step:
                counts[step] += samples
                break
        else:
            counts["other"] += samples
    shares = {k: v / total for k, v in counts.items() if v} if total else {}
    return {"samples": total, "share": dict(sorted(shares.items(), key=lambda kv: -kv[1]))}
