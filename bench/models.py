"""The benchmark's models: full-size checkpoints in the official layout, their ONNX variants, and
their size (parameters and GFLOPs counted from the convolutions' shapes)."""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass
from pathlib import Path

import onnx
import torch
from torch import nn

from export.architectures import build_full_size, checkpoint_dict, save_checkpoint
from export.cli import Options, run
from export.fuse import fuse_model
from export.safe_load import load_checkpoint

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


def export_onnx(weights: Path, output: Path, img_size: int, end2end: bool = False) -> Path:
    options = Options(weights=weights, output=output, img_size=img_size, end2end=end2end)
    run(options, log=lambda line: None)
    return output


def prepare(family: str, folder: Path, img_size: int, end2end: bool) -> Exported:
    """Build a random-weight full-size checkpoint and export it (and its end2end form)."""
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
    return Exported(family, checkpoint, raw, e2e, img_size)


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


def quantize_int8(model: Path, output: Path) -> Path:
    """INT8 dynamic quantization (weights uint8, activations quantized per run), metadata kept."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with contextlib.redirect_stderr(io.StringIO()):  # its "consider pre-processing" warning
        quantize_dynamic(str(model), str(output), weight_type=QuantType.QUInt8)
    source, quantized = onnx.load(str(model)), onnx.load(str(output))
    have = {p.key for p in quantized.metadata_props}
    for prop in source.metadata_props:  # serve reads names, layout, img_size from here
        if prop.key not in have:
            quantized.metadata_props.append(prop)
    onnx.save(quantized, str(output))
    return output
