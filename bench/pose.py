"""`python -m bench.pose`: yolov7-w6-pose served at 640 and 960 in each runtime (issue 23).

The model is the published yolov7-w6-pose layer graph at its published widths (119 layers, about
80 M parameters; tests.support.checkpoints.build_full_size_pose) with random weights, saved in the
official layout and exported by `python -m export`'s own code: speed does not depend on the
weights. For each size and each runtime configuration the real server (`python -m serve`) is
loaded from a separate process over 127.0.0.1 with the bundled photos: p50 latency at
concurrency 1, throughput at concurrency 4, and the server's CPU time per request (all of its
processes, read from /proc) at both. Writes a table to stdout and out/bench/pose.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from dataclasses import dataclass
from pathlib import Path

from bench import models
from bench.cli import load
from bench.servers import ours
from demo.local_server import ROOT
from serve.config import available_cpus
from serve.runtimes import BF16, DEFAULT_RUNTIME, FP32, RUNTIMES, installed
from serve.runtimes.precision import cpu_bf16, cpu_flags
from tests.support.checkpoints import build_full_size_pose, checkpoint_dict, save_checkpoint

SIZES = (640, 960)


@dataclass(frozen=True)
class Runtime:
    name: str  # what the table says
    runtime: str
    precision: str

    def env(self) -> dict[str, str]:
        if self.runtime == DEFAULT_RUNTIME:
            return {}
        return {"SERVE_RUNTIME": self.runtime, "SERVE_PRECISION": self.precision}

    def expect(self) -> dict[str, str]:
        return {"runtime": self.runtime, "precision": self.precision, "task": "pose"}


def runtimes() -> list[Runtime]:
    """FP32 in every installed runtime, and bf16 where the runtime and the CPU have it."""
    bf16 = cpu_bf16(cpu_flags()) is not None
    found = []
    for spec in RUNTIMES.values():
        if not installed(spec):
            continue
        found.append(Runtime(f"{spec.bench}_fp32", spec.name, FP32))
        if spec.bf16 and bf16:
            found.append(Runtime(f"{spec.bench}_bf16", spec.name, BF16))
    return found


def prepare(folder: Path, sizes: tuple[int, ...], width: int) -> tuple[Path, dict[int, Path]]:
    """The checkpoint and its exports, reused from an earlier run of the same width."""
    folder.mkdir(parents=True, exist_ok=True)
    checkpoint = folder / f"yolov7-w6-pose-w{width}-random.pt"
    if not checkpoint.exists():
        save_checkpoint(checkpoint_dict(build_full_size_pose(width), "stripped"), checkpoint)
    exported = {}
    for size in sizes:
        path = folder / f"yolov7-w6-pose-w{width}-{size}.onnx"
        exported[size] = path if path.exists() else models.export_onnx(checkpoint, path, size)
    return checkpoint, exported


def measure(model: Path, runtime: Runtime, duration: float) -> dict:
    with ours(model, runtime.env(), runtime.expect()) as server:
        load(server, 1, min(duration, 2.0))  # warm-up: first runs allocate and compile
        one, four = load(server, 1, duration), load(server, 4, duration)
    return {
        "p50_ms": one["p50_ms"],
        "p95_ms": one["p95_ms"],
        "throughput_rps_c4": four["throughput_rps"],
        "p50_ms_c4": four["p50_ms"],
        "cpu_ms_per_request_c1": 1000 * one["cpu_seconds"] / max(one["requests"], 1),
        "cpu_ms_per_request_c4": 1000 * four["cpu_seconds"] / max(four["requests"], 1),
        "requests": one["requests"] + four["requests"],
        "errors": one["errors"] + four["errors"],
        "ready_after_s": server.ready_after,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.pose", description=__doc__)
    p.add_argument("--sizes", default="640,960", help="comma-separated input sizes (x64)")
    p.add_argument("--duration", type=float, default=10.0, help="seconds of load per level")
    p.add_argument("--out", type=Path, default=ROOT / "out" / "bench")
    p.add_argument("--width", type=int, default=64, help="base width (64: the published model)")
    args = p.parse_args(argv)
    sizes = tuple(int(s) for s in args.sizes.split(","))
    if any(s <= 0 or s % 64 for s in sizes) or args.duration <= 0 or args.width < 1:
        p.error("--sizes must be positive multiples of 64, --duration > 0, --width >= 1")
    checkpoint, exported = prepare(args.out / "pose", sizes, args.width)
    size = models.size_of(checkpoint, sizes[0])
    rows = []
    for img_size in sizes:
        for runtime in runtimes():
            row: dict[str, object] = {"img_size": img_size, "config": runtime.name}
            row.update(measure(exported[img_size], runtime, args.duration))
            rows.append(row)
            print(
                f"w6-pose {img_size:4d} {runtime.name:9s} p50 {row['p50_ms']:7.1f} ms  "
                f"c=4 {row['throughput_rps_c4']:5.2f} img/s  CPU "
                f"{row['cpu_ms_per_request_c1']:6.0f} ms/req (c=1) "
                f"{row['cpu_ms_per_request_c4']:6.0f} (c=4)  errors {row['errors']}",
                flush=True,
            )
    result = {
        "model": "yolov7-w6-pose layout, random weights (speed does not depend on them)",
        "width": args.width,
        "params_m": round(size["params_m"], 2),
        f"gflops_at_{sizes[0]}": round(size["gflops"], 1),
        "cpus": available_cpus(),
        "cpu": platform.processor() or platform.machine(),
        "load_avg_at_end": os.getloadavg(),
        "duration_s": args.duration,
        "rows": rows,
    }
    (args.out / "pose.json").write_text(json.dumps(result, indent=2))
    print(json.dumps({k: v for k, v in result.items() if k != "rows"}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
