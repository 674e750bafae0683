"""The load generator, run as its own process: `python -m bench.load --url ... --concurrency N`.

N threads, each with one keep-alive HTTP connection to 127.0.0.1, POST the images in turn for
`--duration` seconds after one warm-up request each; every request's latency is recorded. Prints
one JSON object on stdout: counts, throughput, latency percentiles, the server's own per-stage
timings (when its answers carry `timing_ms`) and the raw latencies.
"""

from __future__ import annotations

import argparse
import http.client
import json
import statistics
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

CONTENT_TYPES = {".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".png": "image/png"}
REQUEST_TIMEOUT_S = 120.0


@dataclass
class Worker:
    latencies_ms: list[float] = field(default_factory=list)
    ends: list[float] = field(default_factory=list)
    stages: dict[str, list[float]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)


def percentile(values: list[float], q: float) -> float:
    """Linear-interpolated percentile (q in 0..100) of a non-empty list."""
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    pos = (len(ordered) - 1) * q / 100
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def latency_summary(values_ms: list[float]) -> dict[str, float]:
    if not values_ms:
        return {}
    return {
        "p50_ms": percentile(values_ms, 50),
        "p95_ms": percentile(values_ms, 95),
        "p99_ms": percentile(values_ms, 99),
        "mean_ms": statistics.fmean(values_ms),
        "min_ms": min(values_ms),
        "max_ms": max(values_ms),
    }


def _post(conn: http.client.HTTPConnection, body: bytes, content_type: str) -> tuple[int, bytes]:
    conn.request(
        "POST",
        "/invocations",
        body=body,
        headers={"Content-Type": content_type, "Accept": "application/json"},
    )
    response = conn.getresponse()
    return response.status, response.read()


def _work(
    host: str,
    port: int,
    bodies: list[tuple[bytes, str]],
    offset: int,
    start: threading.Barrier,
    deadline: list[float],
    out: Worker,
) -> None:
    conn = http.client.HTTPConnection(host, port, timeout=REQUEST_TIMEOUT_S)
    try:
        _post(conn, *bodies[offset % len(bodies)])  # warm-up: connection and caches
    except (OSError, http.client.HTTPException) as exc:
        out.errors.append(f"warm-up: {exc}")
    start.wait()
    i = offset
    while time.perf_counter() < deadline[0]:  # bounded: the deadline is fixed before the loop
        body, content_type = bodies[i % len(bodies)]
        i += 1
        began = time.perf_counter()
        try:
            status, data = _post(conn, body, content_type)
        except (OSError, http.client.HTTPException) as exc:
            out.errors.append(type(exc).__name__)
            conn.close()
            conn = http.client.HTTPConnection(host, port, timeout=REQUEST_TIMEOUT_S)
            continue
        ended = time.perf_counter()
        if status != 200:
            out.errors.append(f"HTTP {status}")
            continue
        out.latencies_ms.append((ended - began) * 1000)
        out.ends.append(ended)
        try:
            timings = json.loads(data).get("timing_ms", {})
        except ValueError:
            timings = {}
        for stage, value in timings.items():
            out.stages.setdefault(stage, []).append(float(value))
    conn.close()


def generate(url: str, images: list[Path], concurrency: int, duration: float) -> dict:
    """Run the load and summarise it (also usable in-process by tests)."""
    parts = urlsplit(url)
    if parts.hostname != "127.0.0.1" or parts.port is None:
        raise ValueError(f"the load targets 127.0.0.1:<port> only, not {url}")
    bodies = [(p.read_bytes(), CONTENT_TYPES[p.suffix.lower()]) for p in images]
    workers = [Worker() for _ in range(concurrency)]
    deadline = [float("inf")]
    began: list[float] = []

    def release() -> None:  # runs once, when every worker has done its warm-up
        began.append(time.perf_counter())
        deadline[0] = began[0] + duration

    barrier = threading.Barrier(concurrency, action=release)
    threads = [
        threading.Thread(
            target=_work,
            args=(parts.hostname, parts.port, bodies, k, barrier, deadline, workers[k]),
            daemon=True,
        )
        for k in range(concurrency)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=duration + 2 * REQUEST_TIMEOUT_S + 10)
    latencies = [v for w in workers for v in w.latencies_ms]
    ends = [v for w in workers for v in w.ends]
    stages: dict[str, list[float]] = {}
    for w in workers:
        for stage, values in w.stages.items():
            stages.setdefault(stage, []).extend(values)
    errors = [e for w in workers for e in w.errors]
    elapsed = (max(ends) - began[0]) if ends and began else duration
    return {
        "concurrency": concurrency,
        "duration_s": duration,
        "elapsed_s": elapsed,
        "requests": len(latencies),
        "errors": len(errors),
        "error_kinds": sorted(set(errors))[:5],
        "throughput_rps": len(latencies) / elapsed if elapsed > 0 else 0.0,
        **latency_summary(latencies),
        "server_stages_ms": {k: statistics.fmean(v) for k, v in stages.items()},
        "latencies_ms": [round(v, 3) for v in latencies],
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.load", description=__doc__)
    p.add_argument("--url", required=True, help="http://127.0.0.1:PORT")
    p.add_argument("--images", required=True, help="comma-separated image files, sent in turn")
    p.add_argument("--concurrency", type=int, default=1)
    p.add_argument("--duration", type=float, default=10.0, help="seconds of timed load")
    args = p.parse_args(argv)
    if args.concurrency < 1 or args.duration <= 0:
        p.error("--concurrency must be >= 1 and --duration > 0")
    images = [Path(s) for s in args.images.split(",")]
    try:
        result = generate(args.url, images, args.concurrency, args.duration)
    except ValueError as exc:
        print(f"bench.load: error: {exc}", file=sys.stderr)
        return 2
    json.dump(result, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
