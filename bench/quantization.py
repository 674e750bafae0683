"""`python -m bench.quantization`: INT8 quantizers and their settings side by side, on this CPU.

Exports the bundled shapes model, draws synthetic shape images (demo/shapes.py) and splits them as
`python -m export --precision int8` does. Every candidate (a quantizer with its settings, served
by one runtime) is quantized on the calibration images, then judged on the held-out ones as the
export's gate judges it (export/agreement.py: agreement with onnxruntime FP32, run by the
candidate's runtime, with the speed ratio measured interleaved with FP32 in one run). With
`--full-size` the same candidates also quantize a full-size yolov7-tiny (`--family yolov7`: the
full model; random weights, official layout, at 640: speed does not depend on the weights) and
run side by side, interleaved, with bare onnxruntime FP32: the ratio the product's goal is stated
in. `--grid` adds onnxruntime's activation type x per-channel x calibration method grid. This is
how export/quantize.py's FOR_RUNTIME was chosen.
"""

from __future__ import annotations

import argparse
import itertools
import os
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np
import onnx

from demo.shapes import make_image
from export.agreement import RUNNERS, Runner, measure
from export.calibration import load_tensors, read_image, split_images
from export.cli import Options, run
from export.errors import ExportError
from export.quantize import CALIBRATION_METHODS, NNCF_IR, QuantSettings, quantize

ROOT = Path(__file__).resolve().parent.parent
ORT, OV = "onnxruntime", "openvino"


@dataclass(frozen=True)
class Candidate:
    settings: QuantSettings
    runtime: str
    # "ir": NNCF quantizes the OpenVINO model read from the ONNX file (the published recipe's
    # path, export/quantize_ir.py: `--int8-format ir`) instead of the ONNX graph
    form: str = "onnx"

    def label(self) -> str:
        where = " (OpenVINO IR)" if self.form == "ir" else ""
        return f"{self.settings.describe()} on {self.runtime}{where}"

    def make(self, fp32: onnx.ModelProto, tensors: list[np.ndarray], folder: Path) -> bytes | str:
        """The quantized model, as the runner takes it: ONNX bytes, or an IR file's path."""
        if self.form == "onnx":
            return quantize(fp32, tensors, self.settings)[0].SerializeToString()
        import openvino as ov

        from export.quantize_ir import quantize_ir

        quantized, _ = quantize_ir(fp32, tensors, self.settings)
        path = folder / f"ir-{time.monotonic_ns()}.xml"
        ov.save_model(quantized, str(path))
        return str(path)


NNCF = QuantSettings(quantizer="nncf")
CANDIDATES = (
    Candidate(QuantSettings(), ORT),  # today's export (FOR_RUNTIME["onnxruntime"])
    Candidate(QuantSettings(), OV),
    Candidate(NNCF, ORT),
    Candidate(NNCF, OV),  # FOR_RUNTIME["openvino"]
    Candidate(replace(NNCF, keep_float="decode"), OV),  # the smallest ignored scope
    Candidate(replace(NNCF, preset="mixed"), OV),
    Candidate(replace(NNCF, fast_bias_correction=False), OV),
    Candidate(NNCF, OV, form="ir"),  # the head float too
    Candidate(NNCF_IR, OV, form="ir"),  # `--int8-format ir`'s: only the decode float
)


def grid() -> list[Candidate]:
    """onnxruntime's own settings: activation type x per-channel x calibration method."""
    return [
        Candidate(QuantSettings(activation, "QInt8", per_channel, method), ORT)
        for activation, per_channel, method in itertools.product(
            ("QUInt8", "QInt8"), (False, True), CALIBRATION_METHODS
        )
    ]


def cpu_flags() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "unknown"
    model = next(
        (ln.split(":", 1)[1].strip() for ln in text.splitlines() if "model name" in ln), "?"
    )
    flags = next(
        (ln.split(":", 1)[1].split() for ln in text.splitlines() if ln.startswith("flags")), []
    )
    wanted = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_int8")
    return f"{model} ({' '.join(f for f in wanted if f in flags)})"


def interleaved_p50(runners: dict[str, Runner], tensors: list[np.ndarray], rounds: int) -> dict:
    """Each runner's p50 ms, all taking turns on the same tensors, the order reversed every
    round, so that load from elsewhere hits them alike."""
    for runner in runners.values():  # first runs allocate
        runner(tensors[0])
    times: dict[str, list[float]] = {name: [] for name in runners}
    for k in range(rounds):
        for name in list(runners) if k % 2 == 0 else list(runners)[::-1]:
            start = time.perf_counter()
            runners[name](tensors[k % len(tensors)])
            times[name].append((time.perf_counter() - start) * 1000)
    return {name: float(np.median(found)) for name, found in times.items()}


def shapes_images(folder: Path, count: int, seed: int) -> Path:
    folder.mkdir()
    rng = np.random.default_rng(seed)
    for i in range(count):
        cv2.imwrite(str(folder / f"{i:04d}.png"), make_image(rng, 320, 320)[0])
    return folder


def accuracy_table(candidates: list[Candidate], folder: Path, args: argparse.Namespace) -> None:
    fp32_path = folder / "fp32.onnx"
    options = Options(
        weights=ROOT / "weights" / "shapes-yolov7-tiny.pt", output=fp32_path, img_size=args.img_size
    )
    run(options, log=lambda _line: None)
    fp32 = onnx.load(str(fp32_path))
    split = split_images(shapes_images(folder / "images", args.images, args.seed))
    tensors = load_tensors(split.calibration, args.img_size, 1)
    held_out = [read_image(path) for path in split.holdout]
    print(
        f"bundled shapes model at {args.img_size}; {len(split.calibration)} calibration, "
        f"{len(split.holdout)} held-out images; agreement with onnxruntime FP32 (the export's "
        "gate: >= 0.97), the candidate run by its runtime"
    )
    print(
        f"  {'candidate':68} {'agree':>6} {'extra':>5} {'shift mean/max px':>18} "
        f"{'p50 int8/fp32 ms':>17} {'ratio':>6} {'quant s':>7}"
    )
    for candidate in candidates:
        started = time.perf_counter()
        try:
            int8 = candidate.make(fp32, tensors, folder)
        except ExportError as err:  # a quantizer's own failure is a finding, not the end
            print(f"  {candidate.label():68} failed: {err}", flush=True)
            continue
        seconds = time.perf_counter() - started
        a = measure(
            fp32.SerializeToString(),
            int8,
            held_out,
            args.img_size,
            candidate_runtime=candidate.runtime,
        )
        print(
            f"  {candidate.label():68} {a.ratio:6.3f} {a.extra:5d} "
            f"{a.mean_shift_px:8.2f} /{a.max_shift_px:8.2f} "
            f"{a.candidate_p50_ms:8.2f} /{a.reference_p50_ms:7.2f} "
            f"{1 / a.speedup:5.2f}x {seconds:7.1f}",
            flush=True,
        )


def full_size_table(candidates: list[Candidate], folder: Path, args: argparse.Namespace) -> None:
    """Every candidate on a full-size model at 640, interleaved with bare onnxruntime FP32."""
    from bench.models import prepare, write_calibration_images

    exported = prepare(args.family, folder / "full", 640, end2end=False)
    fp32 = onnx.load(str(exported.raw))
    photos = [ROOT / "samples" / "bus.jpg", ROOT / "samples" / "zidane.jpg"]
    images = write_calibration_images(folder / "full-calibration", 8, seed=7, photos=photos)
    tensors = load_tensors(sorted(images.iterdir()), 640, 1)
    runners = {"onnxruntime FP32": RUNNERS[ORT](fp32.SerializeToString())}
    for candidate in candidates:
        try:
            int8 = candidate.make(fp32, tensors, folder)
        except ExportError:  # printed by the accuracy table
            continue
        runners[candidate.label()] = RUNNERS[candidate.runtime](int8)
    p50 = interleaved_p50(runners, tensors, args.rounds)
    base = p50["onnxruntime FP32"]
    print(
        f"full-size {args.family} at 640 (random weights), bare p50 side by side, interleaved "
        f"({args.rounds} runs each); load average {os.getloadavg()[0]:.2f}"
    )
    for name, ms in p50.items():
        print(f"  {name:68} p50 {ms:7.1f} ms  {ms / base:5.2f}x bare onnxruntime FP32")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.quantization", description=__doc__)
    p.add_argument("--images", type=int, default=80, help="synthetic images (1 in 4 held out)")
    p.add_argument("--img-size", type=int, default=320)
    p.add_argument("--seed", type=int, default=11)
    p.add_argument("--grid", action="store_true", help="also onnxruntime's settings grid")
    p.add_argument("--full-size", action="store_true", help="also a full-size model at 640 (speed)")
    p.add_argument("--family", default="yolov7-tiny", help="that model: yolov7-tiny or yolov7")
    p.add_argument("--rounds", type=int, default=40, help="runs per model at 640")
    p.add_argument("--runtimes", default=f"{ORT},{OV}", help="the runtimes to judge on")
    p.add_argument("--only", default="", help="comma-separated candidate numbers (from 0)")
    args = p.parse_args(argv)
    wanted = set(args.runtimes.split(","))
    candidates = [c for c in (*CANDIDATES, *(grid() if args.grid else ())) if c.runtime in wanted]
    if args.only:
        candidates = [candidates[int(i)] for i in args.only.split(",")]
    print(f"CPU: {cpu_flags()}; load average {os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory(prefix="bench-quant-") as tmp:
        accuracy_table(candidates, Path(tmp), args)
        if args.full_size:
            full_size_table(candidates, Path(tmp), args)


if __name__ == "__main__":
    main()
