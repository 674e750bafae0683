"""`python -m bench`: every measurement of issues 6 and 12 in one run, on this machine.

For each model (full-size yolov7-tiny and yolov7, random weights, official checkpoint layout):
bare session.run (the limit) and its peers (bare OpenVINO infer in fp32 and bf16, both runtimes on
the INT8 QDQ model); serve's pipeline in-process; our server in every configuration (runtime x
precision x model x threads, bench/configs.py) and the PyTorch + FastAPI baseline over HTTP on
127.0.0.1 (load from a separate process); cold starts; for the first model a 12 MP photo beside
the ~1 MP ones, graph optimisation levels and thread layouts. Every configuration's accuracy is
measured on the bundled shapes model, and each speed figure is printed next to it, with its cost
per million images and issue 12's goals (met or missed). Writes a table to stdout,
out/bench/results.json and out/bench/chart.png.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import json
import math
import os
import platform
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path

import cv2
import onnxruntime
import torch

from bench import bare, compute_bound, cost, decoding, goals, models, report
from bench import profile as spying
from bench.accuracy import configuration_accuracy
from bench.configs import ALL, EXACT, MODELS, Config, available
from bench.load import latency_summary
from bench.monitor import TreeMonitor
from bench.photos import twelve_megapixel
from bench.servers import Running, baseline, ours
from demo.local_server import ROOT
from serve.config import available_cpus
from serve.letterbox import letterboxed_shape
from serve.runtimes import INT8

IMAGES = [ROOT / "samples" / "bus.jpg", ROOT / "samples" / "zidane.jpg"]
BASELINES = ("pytorch_fastapi", "pytorch_fastapi_rect")  # on the square, on the rectangle
LOAD_MARGIN_S = 300.0  # the load process is killed if it outlives its duration by this much
SIMD_FLAGS = {
    "avx2",
    "fma",
    "avx512f",
    "avx512_vnni",
    "avx_vnni",
    "avx512_bf16",
    "amx_int8",
    "amx_bf16",
    "asimddp",  # Arm dot product (Graviton)
    "bf16",  # Arm bf16 (Graviton 3 and later)
    "i8mm",  # Arm int8 matrix multiply (Graviton 3 and later)
    "sve",  # Arm scalable vectors (Graviton 3 and later)
}
# the 12 MP photo goes through the default and the configurations a user would switch to for it
# (and yolov7, the second model, runs only these)
BIG_PHOTO_CONFIGS = (EXACT, "ort_int8", "ov_fp32", "ov_bf16", "ov_int8", "ov_int8_ir_rect")
# one of each code path: runtime x model, and bf16 (fp32 on openvino: the INT8 models)
SMOKE_CONFIGS = f"{EXACT},ort_int8,ov_bf16,ov_int8,ov_int8_ir_rect"


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
    p.add_argument(
        "--shapes-calibration",
        type=int,
        default=64,
        help="generated images for the shapes model's INT8 export (1 in 4 held out)",
    )
    p.add_argument(
        "--calibration-images",
        type=int,
        default=4,
        help="calibration images for the random-weight models' INT8 (speed only)",
    )
    p.add_argument(
        "--configs", default="", help="comma-separated configurations (default: every one)"
    )
    p.add_argument(
        "--price-per-hour",
        type=float,
        default=cost.DEFAULT_PRICE_PER_HOUR,
        help=f"instance price in USD per hour (default: {cost.DEFAULT_INSTANCE}, assumed)",
    )
    p.add_argument("--instance", default=cost.DEFAULT_INSTANCE, help="the priced instance's name")
    p.add_argument(
        "--instance-vcpus",
        type=int,
        default=cost.DEFAULT_INSTANCE_VCPUS,
        help="its vCPUs: the measured throughput is scaled to them",
    )
    p.add_argument(
        "--cpu-ghz",
        type=float,
        default=None,
        help="the clock for the compute bound (default: cpu MHz in /proc/cpuinfo)",
    )
    p.add_argument("--no-big-photo", action="store_true", help="skip the 12 MP photo")
    p.add_argument("--no-variants", action="store_true", help="skip the variants of ours")
    p.add_argument("--no-profile", action="store_true", help="skip py-spy on our server (c=1)")
    p.add_argument("--out", type=Path, default=ROOT / "out" / "bench")
    p.add_argument(
        "--smoke",
        action="store_true",
        help="seconds, not minutes: yolov7-tiny at 320, 1 s loads, levels 1 and 4 (CI)",
    )
    args = p.parse_args(argv)
    args.photo_scale = 1.0
    if args.smoke:
        args.models, args.img_size, args.duration = "yolov7-tiny", 320, 1.0
        args.concurrency, args.variant_concurrency = "1,4", "1"
        args.cold_starts, args.bare_seconds, args.accuracy_images = 1, 0.3, 10
        args.no_profile, args.rounds = True, 1
        args.shapes_calibration, args.calibration_images = 16, 2
        args.photo_scale = 0.5  # a 3 MP photo: the same code path, a quarter of the decoding
        args.configs = args.configs or SMOKE_CONFIGS
    args.levels = [int(c) for c in args.concurrency.split(",")]
    args.variant_levels = [int(c) for c in args.variant_concurrency.split(",")]
    if args.duration <= 0 or args.rounds < 1 or min(args.levels + args.variant_levels) < 1:
        p.error("--duration and --rounds must be > 0, concurrency levels >= 1")
    if args.price_per_hour <= 0 or args.instance_vcpus < 1:
        p.error("--price-per-hour must be > 0 and --instance-vcpus >= 1")
    if args.shapes_calibration < 16 or args.calibration_images < 1:
        p.error("--shapes-calibration must be >= 16 (12 + 4 held out), --calibration-images >= 1")
    args.config_names = [n for n in args.configs.split(",") if n]
    known = {c.name for c in ALL}
    unknown = [n for n in args.config_names if n not in known]
    if unknown:
        p.error(f"unknown configuration {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    if args.config_names and EXACT not in args.config_names:
        p.error(f"--configs must include {EXACT}, the exact configuration the others are judged by")
    return args


_T0 = time.monotonic()


def say(text: str) -> None:
    print(f"[bench {time.monotonic() - _T0:5.0f} s] {text}", file=sys.stderr, flush=True)


# arm64's /proc/cpuinfo has no "model name": the CPU is its implementer and part numbers.
ARM_PARTS = {
    ("0x41", "0xd0c"): "Neoverse N1 (AWS Graviton2)",
    ("0x41", "0xd40"): "Neoverse V1 (AWS Graviton3)",
    ("0x41", "0xd4f"): "Neoverse V2 (AWS Graviton4)",
    ("0x41", "0xd49"): "Neoverse N2",
}


def cpu_name(cpuinfo: str) -> str:
    """x86's `model name`; on arm64 the part (`CPU implementer`/`CPU part`) by name, else raw."""
    fields: dict[str, str] = {}
    for line in cpuinfo.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() not in fields:
            fields[key.strip()] = value.strip()
    if fields.get("model name"):
        return fields["model name"]
    implementer, part = fields.get("CPU implementer"), fields.get("CPU part")
    if implementer and part:
        known = ARM_PARTS.get((implementer.lower(), part.lower()))
        return known or f"arm64 CPU implementer {implementer} part {part}"
    return "unknown"


def machine() -> dict:
    cpu, flags = "unknown", set()
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        text = ""
    cpu = cpu_name(text)
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):  # x86, arm64
            flags = set(value.split())
            break
    return {
        "cpu_model": cpu,
        "cpu_flags": sorted(flags & SIMD_FLAGS),  # what INT8 and float kernels can use
        "logical_cpus": os.cpu_count(),
        "cpus_available": available_cpus(),
        "memory_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1e9, 1),
        "load_average_at_start": os.getloadavg(),
        "python": platform.python_version(),
        "onnxruntime": onnxruntime.__version__,
        "openvino": _version("openvino"),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
    }


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def load(server: Running, concurrency: int, duration: float, images: list[Path] = IMAGES) -> dict:
    """One load level from a separate process, with the server's tree monitored meanwhile."""
    command = [
        sys.executable,
        "-m",
        "bench.load",
        "--url",
        server.url,
        "--images",
        ",".join(str(p) for p in images),
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
    big_photo: tuple[list[str], Path] | None = None,
) -> dict:
    """Start every server, then at each concurrency load them one after another, in `rounds`
    windows of duration/rounds each, the order reversed every round (A B, B A: a drift in what
    else runs on the machine cancels out). At the lowest level the in-process measurements (the
    limit) take their turns too, so that the ratios compare like with like. `big_photo` (names,
    photo): then those servers take the photo alone at concurrency 1, in the same way."""
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
        if big_photo is not None:  # the same servers, so no start is repeated
            names, photo = big_photo
            say(f"  the {photo.name} photo at c=1 through {', '.join(names)}")
            windows = {n: [] for n in names}
            for k in range(rounds):
                for name in names if k % 2 == 0 else names[::-1]:
                    windows[name].append(load(servers[name], 1, window, [photo]))
            for name in names:
                found[name]["big_photo"] = merge(windows[name])
        for name, server in servers.items():
            found[name]["first_start_s"] = server.ready_after  # beside the servers started before
            found[name]["ping"] = server.ping
            found[name]["rss_peak_mb"] = max(r["rss_peak_mb"] for r in found[name]["levels"])
    for name, run in in_process.items():
        found[name] = run.result()
        say(f"  {name} (in-process): p50 {found[name]['p50_ms']:.1f} ms")
    return found


def cold_starts(starts: dict[str, Start], count: int) -> dict[str, dict[str, list[float]]]:
    """`count` cold starts of each server with no other one running (in side_by_side the others
    wait idle or finish compiling in the background), the order reversed every round: seconds to
    the first /ping 200 ("ready") and to the first without "compiling" ("settled")."""
    times = {name: {"ready": [], "settled": []} for name in starts}
    for k in range(count):
        for name in list(starts) if k % 2 == 0 else list(starts)[::-1]:
            with starts[name]() as server:
                times[name]["ready"].append(server.ready_after)
                times[name]["settled"].append(server.settled_after or server.ready_after)
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


def selected(family: str, args: argparse.Namespace, variants: bool) -> list[Config]:
    configs, skipped = available(family)
    for name, why in skipped.items():
        say(f"{family}: {name} skipped: {why}")
    if args.config_names:
        configs = [c for c in configs if c.name in args.config_names]
    if not variants:  # thread layouts and end2end are measured on the first model only
        configs = [c for c in configs if c.name == EXACT or c.name in BIG_PHOTO_CONFIGS]
    return configs


def bench_model(family: str, args: argparse.Namespace, variants: bool, photo: Path | None) -> dict:
    folder = args.out / "models"
    say(f"{family}: building the checkpoint and exporting ONNX at {args.img_size}")
    configs = selected(family, args, variants)
    end2end = any(c.model == "end2end" for c in configs)
    exported = models.prepare(family, folder, args.img_size, end2end=end2end)
    result: dict = {
        "img_size": args.img_size,
        "size": models.size_of(exported.checkpoint, 640),
        "skipped": available(family)[1],
    }
    cpus = available_cpus()
    paths = {"fp32": exported.raw, "rect": exported.rect, "end2end": exported.end2end}
    for name in sorted({c.model for c in configs}):
        kind = MODELS[name]
        if kind.precision != INT8:
            continue
        say(f"{family}: INT8 {name} ({kind.int8_quantizer or 'onnxruntime'}, {kind.int8_format})")
        paths[name] = models.quantize_int8(
            exported.rect if kind.rect else exported.raw,
            folder / f"{family}-{name}{kind.suffix}",
            IMAGES,
            args.calibration_images,
            kind,
        )
    stride = models.rect_stride(exported.rect)

    in_process: dict[str, bare.BareRun] = {
        "bare": bare.BareRun(exported.raw, IMAGES, args.img_size, cpus),
        # the like-for-like peer of the --rect configurations: FP32 on the same rectangles
        "bare_rect": bare.BareRun(exported.rect, IMAGES, args.img_size, cpus, stride=stride),
        "pipeline": bare.PipelineRun(exported.raw, IMAGES, cpus),
    }
    # the bare peers: each runtime x precision x model that a server configuration runs
    peers = [
        c
        for c in configs
        if c.name != EXACT and c.intra_op is None and c.inter_op == 1 and c.model != "end2end"
    ]
    for c in peers:
        model, rect = paths[c.model], stride if MODELS[c.model].rect else None
        in_process[f"bare_{c.name}"] = (
            bare.OpenVinoBareRun(model, IMAGES, args.img_size, cpus, c.precision, rect)
            if c.runtime == "openvino"
            else bare.BareRun(model, IMAGES, args.img_size, cpus, stride=rect)
        )

    def start(c: Config) -> Start:
        return lambda: ours(paths[c.model], c.env(), c.expect(), prime=IMAGES)

    starts: dict[str, Start] = {c.name: start(c) for c in configs}
    starts["pytorch_fastapi"] = lambda: baseline(exported.checkpoint, args.img_size)
    # the like-for-like peer of the --rect configurations (detect.py letterboxes so too)
    starts["pytorch_fastapi_rect"] = lambda: baseline(exported.checkpoint, args.img_size, stride)
    levels = {name: args.variant_levels for name in starts}
    levels[EXACT] = levels["pytorch_fastapi"] = args.levels
    say(f"{family}: {', '.join([*starts, *in_process])} side by side")
    big = None
    if photo is not None:
        big = ([c.name for c in configs if c.name in BIG_PHOTO_CONFIGS], photo)
    loaded = side_by_side(starts, levels, args.duration, args.rounds, in_process, big)
    for name in ("bare", "bare_rect", "pipeline", *BASELINES):
        result[name] = loaded.pop(name)
    result["bare_peers"] = {c.name: loaded.pop(f"bare_{c.name}") for c in peers}
    result["configs"] = {
        c.name: {
            "what": c.what,
            "runtime": c.runtime,
            "precision": c.precision,
            "expected_ping": c.expect(),
            "model": paths[c.model].name,
            "model_kind": c.model,
            "rect": MODELS[c.model].rect,
            "env": c.env(),
            **loaded[c.name],
        }
        for c in configs
    }
    result["ours"] = result["configs"][EXACT]
    # the share of the square's pixels that a --rect model computes on the bench's photos
    result["rect_pixel_share"] = statistics.fmean(
        math.prod(letterboxed_shape(args.img_size, *cv2.imread(str(p)).shape[:2], stride))
        / args.img_size**2
        for p in IMAGES
    )
    say(f"{family}: cold starts, each server alone, in turns")
    started = cold_starts(starts, args.cold_starts)
    for name, times in started.items():
        run = result[name] if name in BASELINES else result["configs"][name]
        run["cold_starts_s"], run["settled_starts_s"] = times["ready"], times["settled"]
        run["cold_start_s"] = statistics.median(times["ready"])
        run["settled_s"] = statistics.median(times["settled"])

    if photo is not None:
        height, width = cv2.imread(str(photo)).shape[:2]
        result["big_photo"] = {
            "image": photo.name,
            "size": f"{width}x{height}",
            "megabytes": photo.stat().st_size / 1e6,
            "configs": {name: result["configs"][name].pop("big_photo") for name in big[0]},
        }

    if variants and not args.no_profile:
        say(f"{family}: profiling our server at concurrency 1 with py-spy")
        with ours(exported.raw) as server:
            result["profile"] = profile_server(
                server, args.out / f"profile-ours-{family}.txt", args.duration
            )

    if variants:
        result["variants"] = run_variants(exported, args, cpus)
    return result


def run_variants(exported: models.Exported, args: argparse.Namespace, cpus: int) -> dict:
    """In-process variants: optimisation levels (serve has no variable for them), threads and
    end2end under bare session.run."""
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
    if exported.end2end is not None:
        found["end2end_bare"] = bare.bare_run(
            exported.end2end, IMAGES, args.img_size, cpus, args.bare_seconds
        )
    return found


def precision_of(run: dict) -> str:
    """The precision a configuration's arithmetic runs in, for its compute bound."""
    return "int8" if run["expected_ping"]["precision"] == "int8" else run["precision"]


def add_efficiency(results: dict, args: argparse.Namespace) -> None:
    """Every configuration's speed against the CPU's compute bound at its precision
    (bench/compute_bound.py): at c=1 the bound over the p50, at c=4 over 1 / throughput."""
    found = compute_bound.peak(results["machine"]["cpus_available"], ghz=args.cpu_ghz)
    results["compute_bound"] = {p: found.how(p) for p in compute_bound.ELEMENT_BITS}
    for m in results["models"].values():
        gflops = m["size"]["gflops"] * (m["img_size"] / 640) ** 2
        for run in m["configs"].values():
            share = m.get("rect_pixel_share", 1.0) if run.get("rect") else 1.0
            bound = found.bound_ms(gflops * share, precision_of(run))
            c1 = goals.level(run["levels"], 1)
            c4 = goals.level(run["levels"], goals.THROUGHPUT_LEVEL)
            run["efficiency"] = {
                "bound_ms": bound,
                "c1": bound / c1["p50_ms"],
                "c4": bound * c4["throughput_rps"] / 1000,
            }


def add_costs(results: dict, args: argparse.Namespace) -> None:
    """Every configuration's cost per million images at its throughput at c=4 (or nearest)."""
    scale = args.instance_vcpus / max(results["machine"]["cpus_available"], 1)
    results["cost"] = {
        "instance": args.instance,
        "usd_per_hour": args.price_per_hour,
        "instance_vcpus": args.instance_vcpus,
        "throughput_scale": scale,
        "assumption": (
            f"{args.price_per_hour} USD/h for {args.instance} "
            + (
                f"(on-demand, us-east-1, as of {cost.PRICE_DATE}; not fetched)"
                if args.price_per_hour == cost.DEFAULT_PRICE_PER_HOUR
                else "(given)"
            )
            + f"; throughput scaled x{scale:g} from {results['machine']['cpus_available']} to "
            f"{args.instance_vcpus} vCPUs"
        ),
    }
    for m in results["models"].values():
        for run in [*m["configs"].values(), *(m[name] for name in BASELINES)]:
            c4 = goals.level(run["levels"], goals.THROUGHPUT_LEVEL)
            run["usd_per_million"] = cost.per_million(
                c4["throughput_rps"], args.price_per_hour, scale
            )


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
    families = args.models.split(",")
    first = families[0]
    say("accuracy of every configuration on the shapes model")
    results["accuracy"] = configuration_accuracy(
        args.out / "models",
        selected(first, args, not args.no_variants),
        args.accuracy_images,
        args.shapes_calibration,
    )
    photo = None
    if not args.no_big_photo:
        photo = twelve_megapixel(
            IMAGES[1], args.out / "images" / "photo-12mp.jpg", scale=args.photo_scale
        )
    say("the exact decode: OpenCV's and the server's, side by side")
    results["decoding"] = decoding.compare_in_new_process([*IMAGES, *([photo] if photo else [])])
    for i, family in enumerate(families):
        variants = i == 0 and not args.no_variants
        results["models"][family] = bench_model(family, args, variants, photo if i == 0 else None)
    results["machine"]["load_average_at_end"] = os.getloadavg()
    results["elapsed_s"] = time.monotonic() - started
    report.add_ratios(results)
    add_costs(results, args)
    add_efficiency(results, args)
    results["goals"] = goals.evaluate(results)
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
