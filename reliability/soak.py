"""`python -m reliability.soak`: mixed good and bad requests at a fixed concurrency, for a time,
with bursts.

Starts `python -m serve` on 127.0.0.1 (the bundled checkpoint, exported once to /tmp, unless
--model or --url is given), warms it up with every case of the corpus (each sent by every client
at once), then keeps --concurrency
clients busy. Every --burst-every seconds, --burst-clients more clients send good requests as fast
as they are answered for --burst-seconds: the server refuses what it cannot answer in time (503
with Retry-After, serve/admission.py). The steady clients retry a refusal after its Retry-After,
with jitter, as `invoke` does; the burst clients do not.

Every good request's detections are compared with the first good answer: one that is not 200
(after its retries) or differs is "lost". Reports requests served, answers by status, refusals,
latency percentiles, the server's RSS and thread count after warm-up and at the end, and how far
RSS moved over the last half of the run (at most its last half hour). Exit code 1 when a good
request was lost, a bad one got an answer other than the documented one, a refusal was not a JSON
503 with Retry-After, or any other 5xx was seen.
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from reliability import stop_cleanly_on_sigterm
from reliability.corpus import BODY_LIMIT, CASES, GOOD, Case, cases
from reliability.wire import Answer, exchange

ROOT = Path(__file__).resolve().parent.parent
BUNDLED = ROOT / "weights" / "shapes-yolov7-tiny.pt"
# How long a steady client keeps retrying a refused request before it counts it as lost: as long
# as SageMaker lets a caller wait, longer than any burst here.
RETRY_BUDGET_S = 60.0
RSS_EVERY_S = 5.0  # RSS samples for the flatness figure (more often in a run under 500 s)
FLAT_WINDOW_S = 1800.0  # the flatness figure covers at most the last half hour
CACHE = Path("/tmp/yolov7-sagemaker-reliability")


def proc_status(pid: int) -> dict[str, int]:
    """RSS (KiB) and thread count of a process, from /proc."""
    fields: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "Threads"):
            fields[key] = int(value.split()[0])
    return fields


def same_detections(a: list[dict], b: list[dict]) -> bool:
    """Same classes in the same order, boxes within 0.5 px, scores within 1e-3."""
    if len(a) != len(b):
        return False
    for x, y in zip(a, b, strict=True):
        if x["class_id"] != y["class_id"] or abs(x["score"] - y["score"]) > 1e-3:
            return False
        if max(abs(p - q) for p, q in zip(x["box"], y["box"], strict=True)) > 0.5:
            return False
    return True


def answer_is_right(case: Case, answer: Answer, baseline: list[dict] | None) -> bool:
    """The documented status, a JSON body where the app answers, and for the good request the
    baseline's detections."""
    if answer.status != case.status:
        return False
    if case is GOOD and baseline is not None:
        return same_detections(answer.json()["detections"], baseline)
    if case.json_body and answer.status >= 400:
        return answer.headers.get("content-type", "").startswith("application/json")
    return True


def is_refusal(answer: Answer) -> bool:
    """The admission's refusal: 503, JSON, with Retry-After (serve/admission.py)."""
    return (
        answer.status == 503
        and "retry-after" in answer.headers
        and answer.headers.get("content-type", "").startswith("application/json")
    )


def spread_pct(samples: list[tuple[float, int]], since: float) -> float | None:
    """(max - min) / min of the samples taken at or after `since`, in percent."""
    values = [value for at, value in samples if at >= since]
    if len(values) < 2:
        return None
    return round((max(values) / min(values) - 1) * 100, 2)


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


@dataclass(frozen=True)
class Bursts:
    every: float  # seconds between bursts
    seconds: float  # how long one lasts
    clients: int  # extra clients, each sending good requests back to back


@dataclass
class Report:
    duration_s: float  # warm-up load included
    concurrency: int
    requests: int = 0
    good_requests: int = 0
    good_lost: int = 0
    bad_requests: int = 0
    bad_unexpected: int = 0
    server_errors: int = 0  # 5xx, refusals excepted
    client_exceptions: int = 0
    refusals: int = 0  # 503 with Retry-After: retried by steady clients, not by burst ones
    bad_refusals: int = 0  # a 503 without JSON or Retry-After
    bursts: int = 0
    burst_requests: int = 0
    burst_answered: int = 0
    by_status: dict[str, int] = field(default_factory=dict)
    mismatches: dict[str, int] = field(default_factory=dict)  # case name -> count
    latency_ms: dict[str, dict[str, float]] = field(default_factory=dict)
    rps: float = 0.0
    rss_start_kib: int | None = None
    rss_end_kib: int | None = None
    rss_peak_kib: int | None = None
    rss_growth_pct: float | None = None
    rss_late_window_s: float | None = None  # the window of the figure below
    rss_late_spread_pct: float | None = None  # max / min - 1 of RSS over it, bursts excepted
    rss_samples_kib: list[tuple[float, int]] = field(default_factory=list)  # (s from start, KiB)
    threads_start: int | None = None
    threads_end: int | None = None

    @property
    def ok(self) -> bool:
        return not (
            self.good_lost
            or self.bad_unexpected
            or self.server_errors
            or self.client_exceptions
            or self.bad_refusals
        )


class Soak:
    def __init__(
        self,
        host: str,
        port: int,
        pid: int | None,
        concurrency: int,
        seed: int,
        corpus: tuple[Case, ...] = CASES,
    ):
        self.host, self.port, self.pid = host, port, pid
        self.cases = corpus
        self.concurrency = concurrency
        self.seed = seed
        self.baseline: list[dict] | None = None
        self._lock = threading.Lock()
        self._status: Counter[str] = Counter()
        self._mismatch: Counter[str] = Counter()
        self._latency: dict[str, list[float]] = {"good": [], "bad": []}
        self._counts: Counter[str] = Counter()
        self._rss_peak = 0
        self._rss_samples: list[tuple[float, int]] = []
        self._bursting = threading.Event()

    def send(self, case: Case) -> Answer:
        return exchange(self.host, self.port, case.build(), timeout=30, half_close=case.half_close)

    def send_retrying(self, case: Case, rng: random.Random) -> Answer:
        """Send; after a refusal, wait its Retry-After (at most 2 s, with jitter) and resend, for
        up to RETRY_BUDGET_S."""
        give_up = time.monotonic() + RETRY_BUDGET_S
        answer = self.send(case)
        while self._refused(answer) and time.monotonic() < give_up:
            time.sleep(self._pause(answer, rng))
            answer = self.send(case)
        return answer

    @staticmethod
    def _pause(answer: Answer, rng: random.Random) -> float:
        """A refused caller's pause: its Retry-After (at most 2 s), jittered."""
        return min(2.0, float(answer.headers.get("retry-after", "1"))) * rng.uniform(0.5, 1.0)

    def _refused(self, answer: Answer) -> bool:
        """Counts a 503; True when it is a well-formed refusal (to be retried)."""
        if answer.status != 503:
            return False
        refusal = is_refusal(answer)
        with self._lock:
            self._counts["refusals" if refusal else "bad_refusals"] += 1
        return refusal

    def warm_up(self) -> None:
        """The first good answer is the baseline; then every case from every client at once, then
        good requests."""
        first = self.send(GOOD)
        if first.status != 200:
            raise SystemExit(f"soak: the good request got {first.status}: {first.body[:200]!r}")
        self.baseline = first.json()["detections"]
        # Every case from every client at once: the memory that `concurrency` requests of one
        # kind ask for together (four 6 MiB bodies, buffered by waitress: 29 MiB, which the
        # OpenVINO server keeps for reuse, serve/memory.py) is taken now, not in the measured part.
        with ThreadPoolExecutor(self.concurrency) as clients:
            for case in self.cases:
                list(clients.map(self._send_quietly, [case] * self.concurrency))
        for _ in range(20):
            self.send(GOOD)

    def _send_quietly(self, case: Case) -> None:
        with suppress(OSError):  # the measured part counts these, where it matters
            self.send(case)

    def _one(self, case: Case, rng: random.Random) -> None:
        good = case is GOOD
        try:
            answer = self.send_retrying(case, rng)
        except OSError:
            with self._lock:
                self._counts["client_exceptions"] += 1
                self._counts["good_lost" if good else "bad_unexpected"] += 1
                self._mismatch[case.name] += 1
            return
        right = answer_is_right(case, answer, self.baseline)
        with self._lock:
            self._counts["good" if good else "bad"] += 1
            self._status[str(answer.status)] += 1
            self._latency["good" if good else "bad"].append(answer.seconds * 1000)
            if answer.status >= 500 and not is_refusal(answer):
                self._counts["server_errors"] += 1
            if not right:
                self._counts["good_lost" if good else "bad_unexpected"] += 1
                self._mismatch[case.name] += 1

    def _worker(self, index: int, deadline: float, bad_share: float) -> None:
        rng = random.Random(self.seed * 1000 + index)
        while time.monotonic() < deadline:
            self._one(rng.choice(self.cases) if rng.random() < bad_share else GOOD, rng)

    def _burst_client(self, until: float) -> None:
        """Good requests back to back until `until`; a refusal is counted, not retried, and the
        client pauses its Retry-After before its next request, as a caller told so does."""
        rng = random.Random(self.seed)
        while time.monotonic() < until:
            try:
                answer = self.send(GOOD)
            except OSError:
                with self._lock:
                    self._counts["client_exceptions"] += 1
                continue
            refused = self._refused(answer)
            with self._lock:
                self._counts["burst_requests"] += 1
                self._status[str(answer.status)] += 1
            if refused:
                time.sleep(self._pause(answer, rng))
                continue
            with self._lock:
                if answer_is_right(GOOD, answer, self.baseline):
                    self._counts["burst_answered"] += 1
                else:
                    self._counts["good_lost"] += 1
                    self._mismatch["burst: " + GOOD.name] += 1
                    if answer.status >= 500:
                        self._counts["server_errors"] += 1

    def _bursts(self, stop: threading.Event, plan: Bursts) -> None:
        """Every plan.every seconds, plan.clients burst clients for plan.seconds."""
        while not stop.wait(plan.every):
            until = time.monotonic() + plan.seconds
            with self._lock:
                self._counts["bursts"] += 1
            clients = [
                threading.Thread(target=self._burst_client, args=(until,), daemon=True)
                for _ in range(plan.clients)
            ]
            self._bursting.set()
            for client in clients:
                client.start()
            for client in clients:
                client.join()
            self._bursting.clear()

    def _sample(self, stop: threading.Event, warm_until: float, every: float) -> None:
        """RSS peak every half second; the start figures once the warm-up load has run."""
        while self.pid and not stop.wait(0.5):
            try:
                status = proc_status(self.pid)
            except (OSError, KeyError):
                return
            now = time.monotonic()
            if now >= warm_until:
                self._start = self._start or status
                self._rss_peak = max(self._rss_peak, status["VmRSS"])
                last = self._rss_samples[-1][0] if self._rss_samples else 0.0
                # The flatness figure compares the steady load's RSS; a burst's own memory (its
                # connections, bodies and refusals) shows in the peak.
                if now - last >= every and not self._bursting.is_set():
                    self._rss_samples.append((now, status["VmRSS"]))

    def run(
        self,
        duration: float,
        warm_up: float,
        bad_share: float = 0.5,
        bursts: Bursts | None = None,
    ) -> Report:
        """Every case once, then the mixed load for `warm_up` + `duration` seconds; RSS is
        measured from the end of the warm-up load (allocator arenas and caches filled)."""
        self.warm_up()
        self._start: dict[str, int] = {}
        began = time.monotonic()
        deadline = began + warm_up + duration
        stop = threading.Event()
        every = min(RSS_EVERY_S, max(0.5, duration / 100))
        sampler = threading.Thread(
            target=self._sample, args=(stop, began + warm_up, every), daemon=True
        )
        sampler.start()
        workers = [
            threading.Thread(target=self._worker, args=(i, deadline, bad_share), daemon=True)
            for i in range(self.concurrency)
        ]
        if bursts is not None:
            workers.append(threading.Thread(target=self._bursts, args=(stop, bursts), daemon=True))
        for worker in workers:
            worker.start()
        for worker in workers[: self.concurrency]:
            worker.join()
        elapsed = time.monotonic() - began
        stop.set()
        for worker in workers[self.concurrency :]:
            worker.join()
        sampler.join()
        end = proc_status(self.pid) if self.pid else {}
        report = self._report(elapsed, self._start, end)
        if self._rss_samples:
            window = min(FLAT_WINDOW_S, duration / 2)
            report.rss_late_window_s = round(window, 1)
            report.rss_late_spread_pct = spread_pct(self._rss_samples, time.monotonic() - window)
            report.rss_samples_kib = [(round(at - began, 1), kib) for at, kib in self._rss_samples]
        return report

    def _report(self, elapsed: float, start: dict[str, int], end: dict[str, int]) -> Report:
        counts = self._counts
        report = Report(
            duration_s=round(elapsed, 1),
            concurrency=self.concurrency,
            good_requests=counts["good"],
            good_lost=counts["good_lost"],
            bad_requests=counts["bad"],
            bad_unexpected=counts["bad_unexpected"],
            server_errors=counts["server_errors"],
            client_exceptions=counts["client_exceptions"],
            refusals=counts["refusals"],
            bad_refusals=counts["bad_refusals"],
            bursts=counts["bursts"],
            burst_requests=counts["burst_requests"],
            burst_answered=counts["burst_answered"],
            by_status=dict(sorted(self._status.items())),
            mismatches=dict(self._mismatch),
        )
        report.requests = report.good_requests + report.bad_requests
        report.rps = round(report.requests / elapsed, 1) if elapsed else 0.0
        every = [*self._latency["good"], *self._latency["bad"]]
        for name, values in (*self._latency.items(), ("all", every)):
            report.latency_ms[name] = {
                f"p{q}": round(percentile(values, q), 1) for q in (50, 90, 99, 100)
            }
        if start and end:
            report.rss_start_kib, report.rss_end_kib = start["VmRSS"], end["VmRSS"]
            report.rss_peak_kib = max(self._rss_peak, end["VmRSS"])
            report.rss_growth_pct = round((end["VmRSS"] / start["VmRSS"] - 1) * 100, 2)
            report.threads_start, report.threads_end = start["Threads"], end["Threads"]
        return report


def default_model(img_size: int = 320) -> Path:
    """The bundled checkpoint exported to ONNX at `img_size` once, cached under /tmp."""
    target = CACHE / f"shapes-yolov7-tiny-{img_size}.onnx"
    if not target.is_file():
        CACHE.mkdir(parents=True, exist_ok=True)
        partial = target.with_suffix(".partial.onnx")
        size = str(img_size)
        command = [sys.executable, "-m", "export", "--weights", str(BUNDLED), "--img-size", size]
        subprocess.run([*command, "--output", str(partial)], cwd=ROOT, check=True)
        partial.replace(target)
    return target


@contextmanager
def target(args: argparse.Namespace) -> Iterator[tuple[str, int, int | None]]:
    """(host, port, server pid or None) of the server under test."""
    if args.url:
        parts = urlsplit(args.url)
        yield parts.hostname or "127.0.0.1", parts.port or 80, args.pid
        return
    from demo.local_server import local_server

    model = Path(args.model) if args.model else default_model(args.img_size)
    with local_server(model, env=server_env(args)) as server:
        port = int(server.url.rsplit(":", 1)[1])
        yield "127.0.0.1", port, server.process.pid


def server_env(args: argparse.Namespace) -> dict[str, str]:
    """--env KEY=VALUE pairs for the server started here (e.g. an async endpoint's limits)."""
    env = {}
    for pair in args.env or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise SystemExit(f"soak: --env {pair!r} is not KEY=VALUE")
        env[key] = value
    return env


def print_report(report: Report) -> None:
    print(f"soak: {report.duration_s} s at concurrency {report.concurrency}")
    print(
        f"  requests {report.requests} ({report.rps}/s): good {report.good_requests}, "
        f"bad {report.bad_requests}"
    )
    print(f"  answers by status: {report.by_status}")
    if report.bursts:
        print(
            f"  bursts {report.bursts}: {report.burst_requests} requests, "
            f"{report.burst_answered} answered"
        )
    print(
        f"  refusals (503 + Retry-After, retried by steady clients) {report.refusals}; "
        f"malformed 503s {report.bad_refusals}"
    )
    for name, values in report.latency_ms.items():
        text = ", ".join(f"{k} {v} ms" for k, v in values.items())
        print(f"  latency {name}: {text}")
    if report.rss_start_kib is not None:
        print(
            f"  RSS after warm-up {report.rss_start_kib / 1024:.1f} MiB, end "
            f"{report.rss_end_kib / 1024:.1f} MiB ({report.rss_growth_pct:+.2f} %), peak "
            f"{report.rss_peak_kib / 1024:.1f} MiB; threads {report.threads_start} -> "
            f"{report.threads_end}"
        )
    if report.rss_late_spread_pct is not None:
        print(
            f"  RSS over the last {report.rss_late_window_s:g} s, between bursts: within "
            f"{report.rss_late_spread_pct:.2f} % (max / min - 1)"
        )
    print(
        f"  good requests lost: {report.good_lost}; bad requests with another answer: "
        f"{report.bad_unexpected}; 5xx: {report.server_errors}"
    )
    if report.mismatches:
        print(f"  mismatches: {report.mismatches}")
    print("  OK" if report.ok else "  FAILED")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m reliability.soak", description=__doc__)
    parser.add_argument("--duration", type=float, default=300.0, help="seconds (default 300)")
    parser.add_argument("--concurrency", type=int, default=8, help="clients (default 8)")
    parser.add_argument(
        "--warm-up",
        type=float,
        help="seconds of the same load before RSS is first measured (default: 10 %% of the "
        "duration, 3-30 s); its requests are checked and counted too",
    )
    parser.add_argument("--bad-share", type=float, default=0.5, help="share of bad requests")
    parser.add_argument("--model", help="ONNX model to serve (default: the bundled one)")
    parser.add_argument(
        "--img-size",
        type=int,
        default=320,
        help="without --model: the size the bundled checkpoint is exported at (default 320)",
    )
    parser.add_argument("--url", help="soak a running server instead of starting one")
    parser.add_argument("--pid", type=int, help="with --url: its process id, for RSS")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--burst-every", type=float, default=0.0, help="seconds between bursts (default: none)"
    )
    parser.add_argument("--burst-seconds", type=float, default=10.0, help="length of a burst")
    parser.add_argument(
        "--burst-clients", type=int, default=24, help="extra clients during a burst (default 24)"
    )
    parser.add_argument("--json", help="also write the report here, as JSON")
    parser.add_argument(
        "--env",
        action="append",
        metavar="KEY=VALUE",
        help="server environment, e.g. MAX_BODY_BYTES=67108864 (the corpus follows that limit)",
    )
    args = parser.parse_args(argv)
    stop_cleanly_on_sigterm()
    limit = int(server_env(args).get("MAX_BODY_BYTES") or BODY_LIMIT)
    video_limit = int(server_env(args).get("MAX_VIDEO_BYTES") or 0)
    with target(args) as (host, port, pid):
        warm_up = args.warm_up if args.warm_up is not None else min(30, max(3, args.duration / 10))
        bursts = (
            Bursts(args.burst_every, args.burst_seconds, args.burst_clients)
            if args.burst_every > 0
            else None
        )
        report = Soak(host, port, pid, args.concurrency, args.seed, cases(limit, video_limit)).run(
            args.duration, warm_up, args.bad_share, bursts
        )
    print_report(report)
    if args.json:
        document: dict[str, Any] = {**asdict(report), "ok": report.ok}
        Path(args.json).write_text(json.dumps(document, indent=2) + "\n")
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
