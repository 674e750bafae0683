"""The benchmark's models: full-size checkpoints in the official layout, their ONNX variants, and
their size (parameters and GFLOPs counted from the convolutions' shapes)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import onnx
import torch
from torch import nn

from bench.configs import ModelKind
from demo.shapes import make_image
from export.cli import Options, run
from export.fuse import fuse_model
from export.onnx_graph import set_metadata
from export.safe_load import load_checkpoint
from tests.support.checkpoints import build_full_size, checkpoint_dict, save_checkpoint

# The official README's figures (yolov7-tiny and yolov7 at 640, deploy form).
OFFICIAL = {
    "yolov7-tiny": {"params_m": 6.2, "gflops": 13.8},
    "yolov7": {"params_m": 36.9, "gflops": 104.7},
}


@dataclass
class Exported:
    family: str
    checkpoint: Path
    raw: Path  # decoded output, NMS in the server
    end2end: Path | None  # NMS in the graph
    img_size: int
    rect: Path  # `--rect`: each photo's smallest rectangle


def export_onnx(
    weights: Path, output: Path, img_size: int, end2end: bool = False, rect: bool = False
) -> Path:
    options = Options(weights=weights, output=output, img_size=img_size, end2end=end2end, rect=rect)
    run(options, log=lambda line: None)
    return output


def prepare(family: str, folder: Path, img_size: int, end2end: bool) -> Exported:
    """Build a random-weight full-size checkpoint and export it (its `--rect` form, and its
    end2end form where asked)."""
    folder.mkdir(parents=True, exist_ok=True)
    checkpoint = save_checkpoint(
        checkpoint_dict(build_full_size(family), "stripped"), folder / f"{family}.pt"
    )
    raw = export_onnx(checkpoint, folder / f"{family}.onnx", img_size)
    e2e = (
        export_onnx(checkpoint, folder / f"{family}-end2end.onnx", img_size, end2end=True)
        if end2end
        else None
    )
    rect = export_onnx(checkpoint, folder / f"{family}-rect.onnx", img_size, rect=True)
    return Exported(family, checkpoint, raw, e2e, img_size, rect)


def rect_stride(model: Path) -> int:
    """A `--rect` export's stride (its metadata), to letterbox the photos as the server does."""
    metadata = {
        p.key: p.value for p in onnx.load(str(model), load_external_data=False).metadata_props
    }
    return int(metadata["rect_stride"])


def size_of(checkpoint: Path, img_size: int) -> dict[str, float]:
    """Parameters and GFLOPs (2 x multiply-accumulates of every convolution) of the fused model,
    as the official figures are given, beside those figures."""
    net = fuse_model(load_checkpoint(checkpoint).model)
    macs = 0

    def count(module: nn.Conv2d, inputs: object, output: torch.Tensor) -> None:
        nonlocal macs
        kernel = module.kernel_size[0] * module.kernel_size[1]
        macs += output.numel() * (module.in_channels // module.groups) * kernel

    hooks = [m.register_forward_hook(count) for m in net.modules() if isinstance(m, nn.Conv2d)]
    with torch.inference_mode():
        net(torch.zeros(1, 3, img_size, img_size))
    for hook in hooks:
        hook.remove()
    measured = {
        "params_m": sum(p.numel() for p in net.parameters()) / 1e6,
        "gflops": 2 * macs / 1e9,
    }
    official = OFFICIAL.get(net.yaml.get("family", ""), {})
    return {**measured, **{f"official_{k}": v for k, v in official.items()}}


def quantize_int8(
    model: Path, output: Path, photos: list[Path], count: int, kind: ModelKind
) -> Path:
    """The INT8 model `python -m export --precision int8` writes with `kind`'s options
    (export.quantize: onnxruntime's QDQ; export.quantize_ir: NNCF's OpenVINO IR), for a
    random-weight model: the export CLI refuses to write one, since with random weights the FP32
    model finds nothing on the held-out images to agree with. Speed does not depend on the
    weights; accuracy is measured on the bundled model through the CLI itself
    (bench/accuracy.py). Calibrated on `count` images: the photos and generated shapes, each
    letterboxed to the square (a `--rect` model takes it as one of its rectangles)."""
    from export.calibration import load_tensors
    from export.quantize import NNCF_IR, QuantSettings, quantize

    source = onnx.load(str(model))
    metadata = {p.key: p.value for p in source.metadata_props}  # serve reads names, layout, size
    metadata["precision"] = "int8"
    images = output.parent / f"{output.stem}-calibration"
    write_calibration_images(images, count, seed=7, photos=photos)
    tensors = load_tensors(sorted(images.iterdir()), int(metadata["img_size"]), 1)
    if kind.int8_format == "ir":
        from export.quantize_ir import quantize_ir, save_ir_atomically, set_ir_metadata

        ir, _ = quantize_ir(source, tensors, NNCF_IR)
        set_ir_metadata(ir, metadata)
        save_ir_atomically(ir, output)
        return output
    quantized, _ = quantize(source, tensors, QuantSettings())
    set_metadata(quantized, metadata)
    onnx.save(quantized, str(output))
    return output


def write_calibration_images(
    folder: Path, count: int, seed: int, photos: Sequence[Path] = (), size: int = 320
) -> Path:
    """`count` images: copies of `photos`, then synthetic shapes (demo/shapes.py) at `size`."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(count):
        photo = i < len(photos)
        image = cv2.imread(str(photos[i])) if photo else make_image(rng, size, size)[0]
        cv2.imwrite(str(folder / f"{i:04d}.png"), image)
    return folder
