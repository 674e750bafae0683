"""`python -m bench.ov_streams`: OpenVINO's THROUGHPUT performance hint against the server's own
layouts, with 4 inferences in flight (c=4), bare and side by side.

The OpenVINO runtime (serve/runtimes/openvino.py) compiles each model twice: "wide" (LATENCY hint,
one stream on every CPU: an inference alone) and "narrow" (one stream of one thread per
concurrent inference: inferences side by side). OpenVINO's own answer to "many requests at once"
is PERFORMANCE_HINT=THROUGHPUT, which picks the streams and threads itself. Each layout is
compiled on the same model and fed by an AsyncInferQueue of 4 jobs for the same windows, the
order reversed every round, so load from elsewhere hits them alike. Printed: images/s, the p50
from submitting an inference to its result (its wait for a free request included), and the
streams and threads each compile chose.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.configs import MODELS
from bench.models import prepare, quantize_int8
from export.calibration import load_tensors

ROOT = Path(__file__).resolve().parent.parent
IN_FLIGHT = 4


def layouts(cpus: int) -> dict[str, dict[str, object]]:
    common = {"INFERENCE_PRECISION_HINT": "f32", "ENABLE_CPU_PINNING": False}
    return {
        "wide (LATENCY, 1 stream)": {
            **common,
            "PERFORMANCE_HINT": "LATENCY",
            "NUM_STREAMS": 1,
            "INFERENCE_NUM_THREADS": cpus,
        },
        f"narrow (LATENCY, {cpus} streams x 1 thread)": {
            **common,
            "PERFORMANCE_HINT": "LATENCY",
            "NUM_STREAMS": cpus,
            "INFERENCE_NUM_THREADS": cpus,
        },
        "THROUGHPUT hint": {**common, "PERFORMANCE_HINT": "THROUGHPUT"},
    }


class Layout:
    def __init__(self, model: Path, config: dict[str, object]):
        import openvino as ov

        self.compiled = ov.Core().compile_model(str(model), "CPU", config)
        self.queue = ov.AsyncInferQueue(self.compiled, IN_FLIGHT)
        self.times: list[float] = []
        self.done = 0
        self.elapsed = 0.0
        self.queue.set_callback(self._finished)

    def _finished(self, request, started: float) -> None:
        self.times.append((time.perf_counter() - started) * 1000)
        self.done += 1

    def measure(self, tensors: list[np.ndarray], seconds: float) -> None:
        start = time.perf_counter()
        k = 0
        while time.perf_counter() - start < seconds:
            self.queue.start_async({0: tensors[k % len(tensors)]}, time.perf_counter())
            k += 1
        self.queue.wait_all()
        self.elapsed += time.perf_counter() - start

    def chose(self) -> str:
        streams = self.compiled.get_property("NUM_STREAMS")
        threads = self.compiled.get_property("INFERENCE_NUM_THREADS")
        return f"{streams} streams, {threads} threads"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.ov_streams", description=__doc__)
    p.add_argument("--family", default="yolov7-tiny")
    p.add_argument("--img-size", type=int, default=640)
    p.add_argument("--seconds", type=float, default=4.0, help="per window")
    p.add_argument("--rounds", type=int, default=4)
    args = p.parse_args(argv)
    cpus = len(os.sched_getaffinity(0))
    photos = [ROOT / "samples" / "bus.jpg", ROOT / "samples" / "zidane.jpg"]
    with tempfile.TemporaryDirectory(prefix="bench-ov-streams-") as tmp:
        exported = prepare(args.family, Path(tmp), args.img_size, end2end=False)
        models = {
            "FP32": exported.raw,
            "INT8 (onnxruntime's QDQ)": quantize_int8(
                exported.raw, Path(tmp) / "i.onnx", photos, 4, MODELS["int8"]
            ),
            "INT8 (NNCF's IR)": quantize_int8(
                exported.raw, Path(tmp) / "n.xml", photos, 4, MODELS["int8_ir"]
            ),
        }
        tensors = load_tensors(photos, args.img_size, 1)
        print(
            f"{args.family} at {args.img_size}, {IN_FLIGHT} inferences in flight, {cpus} CPUs, "
            f"{args.rounds} x {args.seconds:g} s per layout; load average {os.getloadavg()[0]:.2f}"
        )
        for name, model in models.items():
            runs = {label: Layout(model, config) for label, config in layouts(cpus).items()}
            for run in runs.values():  # first inferences allocate
                run.measure(tensors, 0.5)
                run.times, run.done, run.elapsed = [], 0, 0.0
            for k in range(args.rounds):
                for run in list(runs.values()) if k % 2 == 0 else list(runs.values())[::-1]:
                    run.measure(tensors, args.seconds)
            base = runs[next(iter(runs))].done / runs[next(iter(runs))].elapsed
            for label, run in runs.items():
                rate = run.done / run.elapsed
                print(
                    f"  {name:22} {label:36} {rate:6.2f} img/s ({rate / base:4.2f}x wide), "
                    f"p50 submit->result {np.median(run.times):7.1f} ms; {run.chose()}"
                )


if __name__ == "__main__":
    main()
