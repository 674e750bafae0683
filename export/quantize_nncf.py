"""INT8 QDQ quantization by NNCF (OpenVINO's post-training quantizer) for the OpenVINO runtime.

Intel's published yolov7-tiny recipe quantizes with NNCF; on our exports its QDQ placement runs
faster under OpenVINO than onnxruntime.quantization's (its patterns follow the CPU plugin's fused
int8 kernels: symmetric int8 activations, quantizers where OpenVINO fuses them), while onnxruntime
runs the same graph slower than float (its s8 x s8 kernels, export/quantize.py). So this is the
quantizer for `--int8-runtime openvino` only; figures in docs/bench.md (`bench.quantization`).

NNCF is an export-time dependency (requirements-export.txt): serve never imports this module.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator

import numpy as np
import onnx

from export.errors import ExportError

PRESETS = ("performance", "mixed")


def quantize_nncf(
    model: onnx.ModelProto,
    tensors: list[np.ndarray],
    preset: str,
    ignored: list[str],
    fast_bias_correction: bool,
) -> onnx.ModelProto:
    """Float model + calibration tensors -> NNCF's QDQ model, the `ignored` nodes left float."""
    if preset not in PRESETS:
        raise ExportError(f"NNCF preset must be one of {PRESETS}")
    import nncf  # before quiet(): importing it sets its logger's level

    with quiet():
        input_name = model.graph.input[0].name
        dataset = nncf.Dataset(tensors, lambda tensor: {input_name: tensor})
        return nncf.quantize(
            onnx.ModelProto.FromString(model.SerializeToString()),  # NNCF edits its input
            dataset,
            preset=nncf.QuantizationPreset(preset),
            target_device=nncf.TargetDevice.CPU,
            subset_size=len(tensors),
            fast_bias_correction=fast_bias_correction,
            ignored_scope=nncf.IgnoredScope(names=ignored) if ignored else None,
        )


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """NNCF logs statistics at INFO on its own logger and draws progress bars (rich, on
    stdout): keep both out of the export's summary (stdout) and log (stderr, one line on an
    error)."""
    logger = logging.getLogger("nncf")
    previous = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with open(os.devnull, "w") as nowhere, contextlib.redirect_stdout(nowhere):
            yield
    finally:
        logger.setLevel(previous)
