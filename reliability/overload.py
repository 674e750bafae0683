"""`python -m reliability.overload`: what a burst beyond capacity does to the server.

1. quiet: --quiet requests one at a time; their p50 latency.
2. capacity: --concurrency clients (closed loop: each sends when its last answer came) for
   --capacity-seconds; answers per second.
3. burst: arrivals at --factor x capacity (open loop: Poisson arrivals, whatever the answers)
   for --burst-seconds, each from a client that gives up after --deadline seconds (SageMaker's
   callers give up too, and the server is never told). Each arrival ends as one of: answered
   within the deadline (goodput), refused (503), timed out, or another error.
4. back to normal: one request --after seconds after the last arrival; its latency against the
   quiet p50.

Starts `python -m serve` on 127.0.0.1 with the bundled checkpoint exported at 640 (the default
configuration's model size) unless --model or --url is given; --env passes server settings.
Prints a table of the figures against the goals of issue 26. It is a measurement, not a test: it
exits 0 whatever it measured, unless --check is given (then 1 when a goal is missed).
"""

from __future__ import annotations

import argparse
import http.client
import json
import random
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from reliability import stop_cleanly_on_sigterm
from reliability.soak import percentile, server_env, target

SAMPLE = Path(__file__).resolve().parent.parent / "samples" / "bus.jpg"
OK, REFUSED, TIMEOUT, ERROR = "ok", "refused", "timeout", "error"

# The goals (issue 26, "Done when").
GOODPUT_RATIO = 0.8  # answers within the deadline per second, against capacity
REFUSAL_SECONDS = 0.5  # every refusal a JSON 503 within this
RECOVERY_RATIO = 3.0  # the request after the burst, against the quiet p50


@dataclass
class Result:
    outcome: str  # OK, REFUSED, TIMEOUT or ERROR
    seconds: float
    status: int = 0
    detail: str = ""


def invoke(host: str, port: int, body: bytes, deadline: float) -> Result:
    """One POST /invocations on a new connection, given up (the connection closed, as a caller
    that stops waiting does) once `deadline` seconds have passed."""
    started = time.perf_counter()
    connection = http.client.HTTPConnection(host, port, timeout=deadline)
    try:
        connection.request("POST", "/invocations", body, {"Content-Type": "image/jpeg"})
        answer = connection.getresponse()
        data = answer.read()
        seconds = time.perf_counter() - started
    except TimeoutError:
        return Result(TIMEOUT, time.perf_counter() - started)
    except (OSError, http.client.HTTPException) as exc:
        return Result(ERROR, time.perf_counter() - started, detail=type(exc).__name__)
    finally:
        connection.close()
    if seconds > deadline:
        return Result(TIMEOUT, seconds, answer.status)
    if answer.status == 200:
        return Result(OK, seconds, 200)
    if answer.status == 503:
        json_body = answer.getheader("Content-Type", "").startswith("application/json")
        if json_body and answer.getheader("Retry-After") and "error" in json.loads(data):
            return Result(REFUSED, seconds, 503)
        return Result(ERROR, seconds, 503, "a 503 without a JSON body or Retry-After")
    return Result(ERROR, seconds, answer.status, data[:200].decode(errors="replace"))


def quiet_p50(host: str, port: int, body: bytes, count: int) -> float:
    latencies = [invoke(host, port, body, 60).seconds for _ in range(count)]
    return percentile(latencies, 50)


def capacity(host: str, port: int, body: bytes, concurrency: int, seconds: float) -> float:
    """Answers per second of `concurrency` closed-loop clients."""
    answered = [0] * concurrency
    until = time.monotonic() + seconds

    def client(index: int) -> None:
        while time.monotonic() < until:
            if invoke(host, port, body, 60).outcome == OK:
                answered[index] += 1

    began = time.monotonic()
    threads = [threading.Thread(target=client, args=(i,)) for i in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(answered) / (time.monotonic() - began)


def burst(
    host: str, port: int, body: bytes, rate: float, seconds: float, deadline: float, seed: int
) -> tuple[list[Result], float]:
    """Poisson arrivals at `rate` per second for `seconds`, each on its own thread; the results
    and the time.monotonic() of the last arrival."""
    rng = random.Random(seed)
    results: list[Result] = []
    lock = threading.Lock()

    def one() -> None:
        result = invoke(host, port, body, deadline)
        with lock:
            results.append(result)

    threads = []
    began = time.monotonic()
    at = began
    while True:
        at += rng.expovariate(rate)
        if at >= began + seconds:
            break
        time.sleep(max(0.0, at - time.monotonic()))
        thread = threading.Thread(target=one, daemon=True)
        thread.start()
        threads.append(thread)
    last = time.monotonic()
    for thread in threads:
        thread.join()
    return results, last


@dataclass
class Report:
    quiet_p50_ms: float
    capacity_rps: float
    concurrency: int
    burst_rate_rps: float
    burst_seconds: float
    deadline_s: float
    arrivals: int = 0
    answered_in_time: int = 0
    goodput_rps: float = 0.0
    refusals: int = 0
    refusal_ms: dict[str, float] = field(default_factory=dict)
    timeouts: int = 0
    errors: int = 0
    error_examples: list[str] = field(default_factory=list)
    answered_ms: dict[str, float] = field(default_factory=dict)
    after_s: float = 1.0
    after_ms: float = 0.0
    after_outcome: str = ""

    def goals(self) -> list[tuple[str, str, str, bool]]:
        """(figure, measured, goal, met) rows."""
        goodput = self.goodput_rps / self.capacity_rps if self.capacity_rps else 0.0
        slowest = self.refusal_ms.get("max", 0.0) / 1000
        after = self.after_ms / self.quiet_p50_ms if self.quiet_p50_ms else float("inf")
        return [
            (
                "goodput / capacity",
                f"{self.goodput_rps:.2f} / {self.capacity_rps:.2f} /s = {goodput:.2f}x",
                f">= {GOODPUT_RATIO}x",
                goodput >= GOODPUT_RATIO,
            ),
            (
                "slowest refusal",
                f"{slowest * 1000:.0f} ms" if self.refusals else "(none)",
                f"< {REFUSAL_SECONDS * 1000:.0f} ms",
                slowest < REFUSAL_SECONDS,
            ),
            ("other errors", str(self.errors), "0", self.errors == 0),
            (
                f"request {self.after_s:g} s after / quiet p50",
                f"{self.after_ms:.0f} / {self.quiet_p50_ms:.0f} ms = {after:.2f}x "
                f"({self.after_outcome})",
                f"<= {RECOVERY_RATIO:g}x",
                self.after_outcome == OK and after <= RECOVERY_RATIO,
            ),
        ]

    @property
    def ok(self) -> bool:
        return all(met for *_, met in self.goals())


def summarize(report: Report, results: list[Result]) -> None:
    by = {kind: [r for r in results if r.outcome == kind] for kind in (OK, REFUSED, TIMEOUT, ERROR)}
    report.arrivals = len(results)
    report.answered_in_time = len(by[OK])
    report.goodput_rps = round(len(by[OK]) / report.burst_seconds, 2)
    report.refusals, report.timeouts, report.errors = (
        len(by[REFUSED]),
        len(by[TIMEOUT]),
        len(by[ERROR]),
    )
    for name, kind in (("refusal_ms", REFUSED), ("answered_ms", OK)):
        ms = [r.seconds * 1000 for r in by[kind]]
        if ms:
            setattr(report, name, {q: round(percentile(ms, v), 1) for q, v in _QS})
    report.error_examples = sorted({f"{r.status} {r.detail}"[:120] for r in by[ERROR]})[:5]


_QS = (("p50", 50), ("p99", 99), ("max", 100))


def print_report(report: Report) -> None:
    r = report
    print(
        f"overload: capacity {r.capacity_rps:.2f} answers/s at c={r.concurrency} (closed loop); "
        f"quiet p50 {r.quiet_p50_ms:.0f} ms"
    )
    print(
        f"  burst: {r.arrivals} arrivals in {r.burst_seconds:g} s (open loop, "
        f"{r.burst_rate_rps:.1f}/s = {r.burst_rate_rps / r.capacity_rps:.1f}x capacity), "
        f"client deadline {r.deadline_s:g} s"
    )
    share = (lambda n: f"{n} ({n / r.arrivals:.0%})") if r.arrivals else str
    print(f"  answered in time {share(r.answered_in_time)}, latency {_ms(r.answered_ms)}")
    print(f"  refused (JSON 503 + Retry-After) {share(r.refusals)}, latency {_ms(r.refusal_ms)}")
    print(f"  timed out {share(r.timeouts)}; other errors {share(r.errors)} {r.error_examples}")
    print()
    rows = [("figure", "measured", "goal", "met"), *r.goals()]
    widths = [max(len(str(row[i])) for row in rows) for i in range(3)]
    for index, (name, value, goal, met) in enumerate(rows):
        mark = met if index == 0 else ("yes" if met else "NO")
        print(f"  {name:<{widths[0]}}  {value:<{widths[1]}}  {goal:<{widths[2]}}  {mark}")


def _ms(values: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:.0f} ms" for k, v in values.items()) or "-"


def measure(args: argparse.Namespace, host: str, port: int) -> Report:
    body = Path(args.image).read_bytes()
    for _ in range(5):  # warm the server's caches and allocator
        invoke(host, port, body, 60)
    p50 = quiet_p50(host, port, body, args.quiet)
    rps = capacity(host, port, body, args.concurrency, args.capacity_seconds)
    rate = args.factor * rps
    time.sleep(2)  # let the capacity run's last answers go
    results, last = burst(host, port, body, rate, args.burst_seconds, args.deadline, args.seed)
    report = Report(
        quiet_p50_ms=round(p50 * 1000, 1),
        capacity_rps=round(rps, 2),
        concurrency=args.concurrency,
        burst_rate_rps=round(rate, 2),
        burst_seconds=args.burst_seconds,
        deadline_s=args.deadline,
        after_s=args.after,
    )
    summarize(report, results)
    # The burst's last clients have given up (or been answered) by now; the request goes at
    # `after` seconds past the last arrival, whatever that took.
    time.sleep(max(0.0, last + args.after - time.monotonic()))
    after = invoke(host, port, body, 60)
    report.after_ms, report.after_outcome = round(after.seconds * 1000, 1), after.outcome
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m reliability.overload", description=__doc__)
    parser.add_argument("--concurrency", type=int, default=4, help="capacity clients (default 4)")
    parser.add_argument("--capacity-seconds", type=float, default=20.0)
    parser.add_argument("--factor", type=float, default=3.0, help="burst rate / capacity")
    parser.add_argument("--burst-seconds", type=float, default=40.0)
    parser.add_argument("--deadline", type=float, default=5.0, help="client deadline, seconds")
    parser.add_argument("--after", type=float, default=1.0, help="seconds after the burst")
    parser.add_argument("--quiet", type=int, default=20, help="requests for the quiet p50")
    parser.add_argument("--image", default=str(SAMPLE), help="the JPEG sent (default bus.jpg)")
    parser.add_argument("--model", help="ONNX model to serve (default: bundled, 640)")
    parser.add_argument("--img-size", type=int, default=640, help=argparse.SUPPRESS)
    parser.add_argument("--url", help="measure a running server instead of starting one")
    parser.add_argument("--pid", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--env", action="append", metavar="KEY=VALUE", help="server setting")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="also write the figures here")
    parser.add_argument("--check", action="store_true", help="exit 1 when a goal is missed")
    args = parser.parse_args(argv)
    if args.concurrency < 1 or min(args.factor, args.burst_seconds, args.deadline) <= 0:
        parser.error("--concurrency, --factor, --burst-seconds and --deadline must be > 0")
    stop_cleanly_on_sigterm()
    server_env(args)  # a bad --env is one line, before anything starts
    with target(args) as (host, port, _pid):
        report = measure(args, host, port)
    print_report(report)
    if args.json:
        document: dict[str, Any] = {**asdict(report), "ok": report.ok}
        Path(args.json).write_text(json.dumps(document, indent=2) + "\n")
    return 1 if args.check and not report.ok else 0


if __name__ == "__main__":
    sys.exit(main())
