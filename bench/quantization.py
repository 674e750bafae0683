"""`python -m bench.quantization`: INT8 static quantization choices side by side, on this CPU.

Exports the bundled shapes model, draws synthetic shape images (demo/shapes.py), splits them as
`python -m export --precision int8` does, and for every combination of activation type (QUInt8 /
QInt8), per-channel or per-tensor weights and calibration method (MinMax / Entropy / Percentile)
quantizes, then prints agreement with FP32 on the held-out images next to the speed ratio
(each measured in one run, interleaved with FP32) and the calibration time. This is how the
defaults in export/quantize.py were chosen.
"""

from __future__ import annotations

import argparse
import itertools
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import onnx

from demo.shapes import make_image
from export.agreement import measure
from export.calibration import load_tensors, read_image, split_images
from export.cli import Options, run
from export.quantize import CALIBRATION_METHODS, QuantSettings, quantize

ROOT = Path(__file__).resolve().parent.parent


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


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.quantization", description=__doc__)
    p.add_argument("--images", type=int, default=80, help="synthetic images (1 in 4 held out)")
    p.add_argument("--img-size", type=int, default=320)
    p.add_argument("--seed", type=int, default=11)
    p.add_argument("--calibration", default=",".join(CALIBRATION_METHODS), help="methods to try")
    p.add_argument("--activations", default="QUInt8,QInt8", help="activation types to try")
    args = p.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="bench-quant-") as tmp:
        folder = Path(tmp)
        images = folder / "images"
        images.mkdir()
        rng = np.random.default_rng(args.seed)
        for i in range(args.images):
            cv2.imwrite(str(images / f"{i:04d}.png"), make_image(rng, 320, 320)[0])
        fp32_path = folder / "fp32.onnx"
        run(
            Options(
                weights=ROOT / "weights" / "shapes-yolov7-tiny.pt",
                output=fp32_path,
                img_size=args.img_size,
            ),
            log=lambda _line: None,
        )
        fp32 = onnx.load(str(fp32_path))
        split = split_images(images)
        tensors = load_tensors(split.calibration, args.img_size, 1)
        held_out = [read_image(path) for path in split.holdout]
        print(f"CPU: {cpu_flags()}")
        print(
            f"bundled shapes model at {args.img_size}; {len(split.calibration)} calibration, "
            f"{len(split.holdout)} held-out images"
        )
        print(
            f"{'settings':36} {'agree':>6} {'extra':>5} {'shift mean/max px':>18} "
            f"{'p50 int8/fp32 ms':>17} {'speedup':>7} {'calib s':>7}"
        )
        for activation, per_channel, method in itertools.product(
            args.activations.split(","), (False, True), args.calibration.split(",")
        ):
            settings = QuantSettings(
                activation_type=activation, per_channel=per_channel, calibration=method
            )
            started = time.perf_counter()
            int8, _ = quantize(fp32, tensors, settings)
            seconds = time.perf_counter() - started
            a = measure(fp32.SerializeToString(), int8.SerializeToString(), held_out, args.img_size)
            print(
                f"{settings.describe():36} {a.ratio:6.3f} {a.extra:5d} "
                f"{a.mean_shift_px:8.2f} /{a.max_shift_px:8.2f} "
                f"{a.candidate_p50_ms:8.2f} /{a.reference_p50_ms:7.2f} {a.speedup:6.2f}x "
                f"{seconds:7.1f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
