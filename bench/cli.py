"""`python -m bench`: every measurement of issue 6 in one run, on this machine.

For each model (full-size yolov7-tiny and yolov7, random weights, official checkpoint layout):
bare session.run (the limit); serve's pipeline in-process; our server and the PyTorch + FastAPI
baseline over HTTP on 127.0.0.1 at each concurrency (load from a separate process); cold starts;
and, for the first model, variants of ours (end2end NMS, thread settings, INT8) and graph
optimisation levels. INT8's effect on accuracy is measured on the bundled shapes model. Writes a
table to stdout, out/bench/results.json and out/bench/chart.png.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path

import onnxruntime
import torch

from bench import bare, models, report
from bench import profile as spying
from bench.accuracy import int8_accuracy
from bench.load import latency_summary
from bench.monitor import TreeMonitor
from bench.servers import Running, baseline, ours
from demo.local_server import ROOT
from serve.config import available_cpus

IMAGES = [ROOT / "samples" / "bus.jpg", ROOT / "samples" / "zidane.jpg"]
LOAD_MARGIN_S = 300.0  # the load process is killed if it outlives its duration by this much
SIMD_FLAGS = {"avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8"}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    p.add_argument("--models", default="yolov7-tiny,yolov7", help="comma-separated families")
    p.add_argument("--img-size", type=int, default=640)
    p.add_argument("--duration", type=float, default=8.0, help="seconds of load per measurement")
    p.add_argument("--concurrency", default="1,2,4,8", help="comma-separated levels")
    p.add_argument("--variant-concurrency", default="1,4", help="levels for the variants")
    p.add_argument(
        "--rounds", type=int, default=2, help="windows per measurement, in alternating order"
    )
    p.add_argument("--cold-starts", type=int, default=3, help="cold starts per server")
    p.add_argument("--bare-seconds", type=float, default=4.0, help="time per bare measurement")
    p.add_argument("--accuracy-images", type=int, default=100)
    p.add_argument("--no-variants", action="store_true", help="skip the variants of ours")
    p.add_argument("--no-profile", action="store_true", help="skip py-spy on our server (c=1)")
    p.add_argument("--out", type=Path, default=ROOT / "out" / "bench")
    p.add_argument(
        "--smoke",
        action="store_true",
        help="seconds, not minutes: yolov7-tiny at 320, 1 s loads, levels 1 and 4 (CI)",
    )
    args = p.parse_args(argv)
    if args.smoke:
        args.models, args.img_size, args.duration = "yolov7-tiny", 320, 1.0
        args.concurrency, args.variant_concurrency = "1,4", "1"
        args.cold_starts, args.bare_seconds, args.accuracy_images = 1, 0.5, 10
        args.no_profile, args.rounds = True, 1
    args.levels = [int(c) for c in args.concurrency.split(",")]
    args.variant_levels = [int(c) for c in args.variant_concurrency.split(",")]
    if args.duration <= 0 or args.rounds < 1 or min(args.levels + args.variant_levels) < 1:
        p.error("--duration and --rounds must be > 0, concurrency levels >= 1")
    return args


_T0 = time.monotonic()


def say(text: str) -> None:
    print(f"[bench {time.monotonic() - _T0:5.0f} s] {text}", file=sys.stderr, flush=True)


def machine() -> dict:
    cpu, flags = "unknown", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and cpu == "unknown":
                cpu = line.split(":", 1)[1].strip()
            elif line.startswith("flags") and not flags:
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return {
        "cpu_model": cpu,
        "cpu_flags": sorted(flags & SIMD_FLAGS),  # what INT8 and float kernels can use
        "logical_cpus": os.cpu_count(),
        "cpus_available": available_cpus(),
        "memory_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1e9, 1),
        "load_average_at_start": os.getloadavg(),
        "python": platform.python_version(),
        "onnxruntime": onnxruntime.__version__,
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
    }


def load(server: Running, concurrency: int, duration: float) -> dict:
    """One load level from a separate process, with the server's tree monitored meanwhile."""
    command = [
        sys.executable,
        "-m",
        "bench.load",
        "--url",
        server.url,
        "--images",
        ",".join(str(p) for p in IMAGES),
        "--concurrency",
        str(concurrency),
        "--duration",
        str(duration),
    ]
    with TreeMonitor(server.pid) as monitor:
        done = subprocess.run(
            command, cwd=ROOT, capture_output=True, text=True, timeout=duration + LOAD_MARGIN_S
        )
    if done.returncode != 0:
        raise RuntimeError(f"load generator failed: {done.stderr[-1000:]}")
    result = json.loads(done.stdout)
    result.update(monitor.result())
    return result


Start = Callable[[], AbstractContextManager[Running]]


def merge(runs: list[dict]) -> dict:
    """One load level measured in several windows, as if in one."""
    latencies = [v for r in runs for v in r["latencies_ms"]]
    requests = sum(r["requests"] for r in runs)
    elapsed = sum(r["elapsed_s"] for r in runs)
    cpu, wall = sum(r["cpu_seconds"] for r in runs), sum(r["wall_s"] for r in runs)
    stages: dict[str, float] = {}
    for r in runs:
        for stage, mean in r["server_stages_ms"].items():
            stages[stage] = stages.get(stage, 0.0) + mean * r["requests"] / max(requests, 1)
    return {
        "concurrency": runs[0]["concurrency"],
        "windows": len(runs),
        "duration_s": sum(r["duration_s"] for r in runs),
        "elapsed_s": elapsed,
        "requests": requests,
        "errors": sum(r["errors"] for r in runs),
        "error_kinds": sorted({e for r in runs for e in r["error_kinds"]}),
        "throughput_rps": requests / elapsed if elapsed > 0 else 0.0,
        **latency_summary(latencies),
        "throughput_rps_per_window": [r["throughput_rps"] for r in runs],
        "server_stages_ms": stages,
        "cpu_seconds": cpu,
        "cpu_cores_busy": cpu / wall if wall > 0 else 0.0,
        "cpu_ms_per_request": 1000 * cpu / max(requests, 1),
        "rss_peak_mb": max(r["rss_peak_mb"] for r in runs),
        "latencies_ms": latencies,
    }


def side_by_side(
    starts: dict[str, Start],
    levels: dict[str, list[int]],
    duration: float,
    rounds: int,
    in_process: dict[str, bare.BareRun],
) -> dict:
    """Start every server, then at each concurrency load them one after another, in `rounds`
    windows of duration/rounds each, the order reversed every round (A B, B A: a drift in what
    else runs on the machine cancels out). At the lowest level the in-process measurements (the
    limit) take their turns too, so that the ratios compare like with like."""
    window = duration / rounds
    found: dict[str, dict] = {}
    with contextlib.ExitStack() as stack:
        servers = {name: stack.enter_context(start()) for name, start in starts.items()}
        all_levels = sorted({c for wanted in levels.values() for c in wanted})
        for c in all_levels:
            names = [n for n in servers if c in levels[n]]
            if c == all_levels[0]:
                names += list(in_process)
            windows: dict[str, list[dict]] = {n: [] for n in names}
            for k in range(rounds):
                for name in names if k % 2 == 0 else names[::-1]:
                    if name in in_process:
                        in_process[name].measure(window)
                    else:
                        windows[name].append(load(servers[name], c, window))
            for name in servers:
                if windows.get(name):
                    run = merge(windows[name])
                    found.setdefault(name, {"levels": []})["levels"].append(run)
                    say(
                        f"  {name} c={c}: {run['throughput_rps']:.2f} req/s, p50 "
                        f"{run.get('p50_ms', float('nan')):.1f} ms, "
                        f"{run['cpu_ms_per_request']:.0f} CPU ms/request, {run['errors']} errors"
                    )
        for name, server in servers.items():
            found[name]["cold_start_s"] = server.ready_after
            found[name]["rss_peak_mb"] = max(r["rss_peak_mb"] for r in found[name]["levels"])
    for name, run in in_process.items():
        found[name] = run.result()
        say(f"  {name} (in-process): p50 {found[name]['p50_ms']:.1f} ms")
    return found


def cold_starts(start: Start, count: int) -> list[float]:
    times = []
    for _ in range(count):
        with start() as server:
            times.append(server.ready_after)
    return times


def profile_server(server: Running, target: Path, duration: float) -> dict:
    """py-spy on our server while one client sends requests; shares of time per step."""
    spy = spying.record(server.pid, duration + 1, target)
    if spy is None:
        return {"error": "py-spy is not installed (pip install -r requirements-bench.txt)"}
    time.sleep(0.5)  # let py-spy attach
    run = load(server, 1, duration)
    try:
        _, err = spy.communicate(timeout=duration + 30)
    except subprocess.TimeoutExpired:
        spy.kill()
        _, err = spy.communicate()
    if not target.exists():
        return {"error": (err or "py-spy failed").strip()[-300:]}
    return {
        "p50_ms": run.get("p50_ms"),
        "collapsed_stacks": target.name,
        **spying.summarize(target),
    }


def bench_model(family: str, args: argparse.Namespace, variants: bool) -> dict:
    folder = args.out / "models"
    say(f"{family}: building the checkpoint and exporting ONNX at {args.img_size}")
    exported = models.prepare(family, folder, args.img_size, end2end=variants)
    result: dict = {"img_size": args.img_size, "size": models.size_of(exported.checkpoint, 640)}
    cpus = available_cpus()

    in_process = {
        "bare": bare.BareRun(exported.raw, IMAGES, args.img_size, cpus),
        "pipeline": bare.PipelineRun(exported.raw, IMAGES, cpus),
    }

    starts: dict[str, Start] = {
        "ours": lambda: ours(exported.raw),
        "pytorch_fastapi": lambda: baseline(exported.checkpoint, args.img_size),
    }
    levels = {"ours": args.levels, "pytorch_fastapi": args.levels}
    configs: dict[str, tuple[Path, dict[str, str]]] = {}
    if variants:
        say(f"{family}: INT8 dynamic quantization")
        int8 = models.quantize_int8(exported.raw, folder / f"{family}-int8.onnx")
        configs = {
            "end2end": (exported.end2end, {}),
            "intra_op_1": (exported.raw, {"ORT_INTRA_OP_THREADS": "1"}),
            "inter_op_2": (exported.raw, {"ORT_INTER_OP_THREADS": "2"}),
            "int8": (int8, {}),
        }
        for name, (model, env) in configs.items():
            starts[name] = lambda m=model, e=env: ours(m, e)
            levels[name] = args.variant_levels
    say(f"{family}: {', '.join([*starts, *in_process])} side by side")
    loaded = side_by_side(starts, levels, args.duration, args.rounds, in_process)
    for name in ("bare", "pipeline", "ours", "pytorch_fastapi"):
        result[name] = loaded.pop(name)
    say(f"{family}: cold starts")
    more = args.cold_starts - 1
    result["ours"]["cold_starts_s"] = [
        result["ours"]["cold_start_s"],
        *cold_starts(lambda: ours(exported.raw), more),
    ]
    result["pytorch_fastapi"]["cold_starts_s"] = [
        result["pytorch_fastapi"]["cold_start_s"],
        *cold_starts(lambda: baseline(exported.checkpoint, args.img_size), more),
    ]

    if variants and not args.no_profile:
        say(f"{family}: profiling our server at concurrency 1 with py-spy")
        with ours(exported.raw) as server:
            result["profile"] = profile_server(
                server, args.out / f"profile-ours-{family}.txt", args.duration
            )

    if variants:
        result["variants"] = run_variants(exported, args, cpus)
        result["variants"]["servers"] = {
            name: {"model": model.name, "env": env, **loaded[name]}
            for name, (model, env) in configs.items()
        }
    return result


def run_variants(exported: models.Exported, args: argparse.Namespace, cpus: int) -> dict:
    """In-process variants: optimisation levels (serve has no variable for them), threads, INT8
    and end2end under bare session.run."""
    family = exported.family
    say(f"{family}: graph optimisation levels and threads under bare session.run")
    found: dict = {
        "optimization_levels_bare": [
            bare.bare_run(exported.raw, IMAGES, args.img_size, cpus, args.bare_seconds, level=lv)
            for lv in bare.LEVELS
        ],
        "threads_bare": [
            bare.bare_run(exported.raw, IMAGES, args.img_size, n, args.bare_seconds)
            for n in sorted({1, cpus})
        ],
    }
    found["concurrent_runs_bare"] = [
        bare.concurrent_runs(exported.raw, IMAGES, args.img_size, intra, k, args.bare_seconds)
        for intra in sorted({1, cpus})
        for k in (1, 4)
    ]
    for name in ("int8", "end2end"):
        model = args.out / "models" / (f"{family}-{name}.onnx")
        found[f"{name}_bare"] = bare.bare_run(model, IMAGES, args.img_size, cpus, args.bare_seconds)
    return found


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # SIGTERM unwinds like Ctrl-C, so that every server started is stopped on the way out
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    results: dict = {
        "machine": machine(),
        "settings": {
            "models": args.models.split(","),
            "img_size": args.img_size,
            "duration_s": args.duration,
            "concurrency": args.levels,
            "variant_concurrency": args.variant_levels,
            "images": [p.name for p in IMAGES],
            "smoke": args.smoke,
        },
        "models": {},
    }
    for i, family in enumerate(args.models.split(",")):
        variants = i == 0 and not args.no_variants
        results["models"][family] = bench_model(family, args, variants)
    say("INT8 accuracy on the shapes model")
    results["int8_accuracy"] = int8_accuracy(args.out / "models", args.accuracy_images)
    results["machine"]["load_average_at_end"] = os.getloadavg()
    results["elapsed_s"] = time.monotonic() - started
    report.add_ratios(results)
    print(report.table(results))
    (args.out / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    report.chart(results, args.out / "chart.png")
    say(
        f"wrote {args.out / 'results.json'} and {args.out / 'chart.png'} "
        f"in {results['elapsed_s']:.0f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
