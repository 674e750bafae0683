"""Static INT8 (QDQ) quantization of the exported float graph, calibrated on real images.

onnxruntime.quantization does the work: `quant_pre_process` (shape inference and the basic graph
optimisations it wants first), then `quantize_static` in QDQ format with a calibration reader fed
by the server's own preprocessing. The detect head's final convolutions and the decode after them
stay float: they produce box coordinates in pixels (0..S) and probabilities in the same tensor, so
one 8-bit scale for both would cost whole pixels, and they are a tiny share of the compute.

The defaults in `QuantSettings` were chosen by measurement (`python -m bench.quantization`, each
INT8 model timed interleaved with FP32 in one run; figures and CPU in the README's Export section):
- QUInt8 activations with QInt8 weights (U8S8): onnxruntime's x86 int8 kernels are built around
  the u8 x s8 dot product (AVX-512 VNNI / AVX-VNNI vpdpbusd, AMX); S8S8 takes a slower path and
  ran 0.8-0.9x FP32 (slower than float) on an AMD EPYC with VNNI, against 2-2.6x for U8S8.
- per-tensor weight scales: per-channel measured the same speed (0.96-1.05x of per-tensor,
  interleaved) and the same agreement (1.000 on 50 held-out images) here, so the simpler form,
  which every int8 kernel and runtime handles, wins.
- MinMax calibration: Entropy and Percentile gave the same agreement (1.000) and box shifts
  within 0.05 px of it, but took 6-14x longer to calibrate (34-83 s against 6 s on 150 images).

Those are onnxruntime's settings. A model meant for OpenVINO (`--int8-runtime openvino`,
FOR_RUNTIME) is quantized by NNCF instead (export/quantize_nncf.py; issue 27, docs/bench.md
"INT8 quantizers"), with the same float tail.
"""

from __future__ import annotations

import contextlib
import io
import logging
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import onnx

from export.errors import ExportError

ACTIVATION_TYPES = ("QUInt8", "QInt8")
CALIBRATION_METHODS = ("MinMax", "Entropy", "Percentile")
QUANTIZERS = ("onnxruntime", "nncf")
KEEP_FLOAT = ("head", "decode")  # the head's convolutions and the decode, or only the decode


@dataclass(frozen=True)
class QuantSettings:
    """How to quantize; the defaults are the measured choice (see the module docstring)."""

    activation_type: str = "QUInt8"
    weight_type: str = "QInt8"
    per_channel: bool = False
    calibration: str = "MinMax"
    quantizer: str = "onnxruntime"  # or "nncf" (export/quantize_nncf.py): its own QDQ placement
    keep_float: str = "head"
    preset: str = "performance"  # nncf only: symmetric activations; "mixed": asymmetric
    fast_bias_correction: bool = True  # nncf only

    def describe(self) -> str:
        if self.quantizer == "nncf":
            return (
                f"NNCF QDQ {self.preset}"
                f"{' fast-bias-correction' if self.fast_bias_correction else ''}, "
                f"{self.keep_float} float"
            )
        short = {"QUInt8": "U8", "QInt8": "S8"}
        return (
            f"QDQ {short[self.activation_type]}{short[self.weight_type]} "
            f"{'per-channel' if self.per_channel else 'per-tensor'} {self.calibration}"
            + ("" if self.keep_float == "head" else f", {self.keep_float} float")
        )


# The quantizer per serving runtime, by measurement (`python -m bench.quantization`, docs/bench.md
# "INT8 quantizers"): onnxruntime's for both. NNCF's ONNX graph ran slower than FP32 on
# onnxruntime (its symmetric int8 activations miss the u8 x s8 kernels) and, on OpenVINO, no
# faster than onnxruntime's graph for yolov7-tiny (0.38x against 0.40x bare FP32) and much slower
# for yolov7 (0.59x against 0.31x), with boxes moved ~3 px by OpenVINO's execution of it. NNCF
# stays selectable (`--int8-quantizer nncf`: NNCF below) for a CPU where it measures better.
FOR_RUNTIME = {"onnxruntime": QuantSettings(), "openvino": QuantSettings()}
NNCF = QuantSettings(quantizer="nncf")
# NNCF's OpenVINO IR (`--int8-format ir`, export/quantize_ir.py) quantizes the detect head's
# convolutions too, only the decode float: on OpenVINO that head ran 0.92x the float head's time
# (yolov7-tiny at 640: 24.3 against 26.5 ms bare) with FP32's every detection and boxes within a
# pixel (docs/bench.md, "INT8 quantizers"), where onnxruntime's and NNCF's QDQ graphs kept the head
# float to stay accurate.
NNCF_IR = replace(NNCF, keep_float="decode")


def float_tail(model: onnx.ModelProto, keep_float: str = "head") -> list[str]:
    """Names of the nodes that stay float: the last convolutions (those with no convolution after
    them: the detect head's 1x1 convs) and every node downstream of them (the decode, and the NMS
    tail of an end2end graph)."""
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)

    def downstream(node: onnx.NodeProto) -> list[onnx.NodeProto]:
        seen: dict[int, onnx.NodeProto] = {}
        stack = [node]
        while stack:
            for out in stack.pop().output:
                for nxt in consumers.get(out, []):
                    if id(nxt) not in seen:
                        seen[id(nxt)] = nxt
                        stack.append(nxt)
        return list(seen.values())

    tail: dict[str, None] = {}
    for node in model.graph.node:
        if node.op_type != "Conv":
            continue
        after = downstream(node)
        if not any(n.op_type == "Conv" for n in after):
            tail[node.name] = None
            tail.update((n.name, None) for n in after)
    if not tail:
        raise ExportError("cannot find the detect head in the graph (no final convolution)")
    if any(not name for name in tail):
        raise ExportError("the graph has unnamed nodes after the head; cannot keep them float")
    if keep_float == "decode":  # the head's convolutions quantized too
        convs = {n.name for n in model.graph.node if n.op_type == "Conv"}
        return [name for name in tail if name not in convs]
    return list(tail)


class _Reader:
    """onnxruntime's CalibrationDataReader protocol over already-preprocessed tensors."""

    def __init__(self, input_name: str, tensors: Iterable[np.ndarray]):
        self._input_name = input_name
        self._items: Iterator[np.ndarray] = iter(tensors)

    def get_next(self) -> dict[str, np.ndarray] | None:
        tensor = next(self._items, None)
        return None if tensor is None else {self._input_name: tensor}


def quantize(
    model: onnx.ModelProto, tensors: list[np.ndarray], settings: QuantSettings
) -> tuple[onnx.ModelProto, list[str]]:
    """Float model + calibration tensors (each shaped like the model's input) -> (QDQ INT8 model,
    names of the nodes kept float).

    The metadata is not carried over: the caller stamps the quantized model's own."""
    if settings.activation_type not in ACTIVATION_TYPES:
        raise ExportError(f"activation type must be one of {ACTIVATION_TYPES}")
    if settings.calibration not in CALIBRATION_METHODS:
        raise ExportError(f"calibration method must be one of {CALIBRATION_METHODS}")
    if settings.quantizer not in QUANTIZERS or settings.keep_float not in KEEP_FLOAT:
        raise ExportError(f"quantizer must be one of {QUANTIZERS}, keep_float one of {KEEP_FLOAT}")
    if not tensors:
        raise ExportError("no calibration images")
    dims = model.graph.input[0].type.tensor_type.shape.dim
    symbolic = not all(d.HasField("dim_value") for d in dims)  # a dynamic batch or image size
    try:
        if settings.quantizer == "nncf":
            return _quantize_nncf(model, tensors, settings)
        return _quantize(model, tensors, settings, symbolic)
    except ExportError:
        raise
    except Exception as exc:  # onnxruntime.quantization and NNCF raise bare ones, among others
        message = " ".join(str(exc).split())[:300] or type(exc).__name__
        raise ExportError(f"INT8 quantization failed: {message}; nothing was written") from None


def _quantize(
    model: onnx.ModelProto, tensors: list[np.ndarray], settings: QuantSettings, symbolic_batch: bool
) -> tuple[onnx.ModelProto, list[str]]:
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quant_pre_process,
        quantize_static,
    )

    with tempfile.TemporaryDirectory(prefix="export-int8-") as folder, _quiet():
        prepared, quantized = Path(folder) / "prepared.onnx", Path(folder) / "int8.onnx"
        # onnxruntime's symbolic shape inference gives up on the symbolic batch axis
        # ("Incomplete symbolic shape inference"); onnx's own shape inference, which still runs,
        # is all a convolutional graph needs.
        # From a file: given a ModelProto and skip_symbolic_shape, onnxruntime 1.32 looks for
        # the weights in an external-data file it never wrote.
        source = Path(folder) / "float.onnx"
        source.write_bytes(model.SerializeToString())
        quant_pre_process(str(source), str(prepared), skip_symbolic_shape=symbolic_batch)
        prepared_model = onnx.load(str(prepared))
        kept_float = float_tail(prepared_model, settings.keep_float)
        quantize_static(
            str(prepared),
            str(quantized),
            _Reader(model.graph.input[0].name, tensors),
            quant_format=QuantFormat.QDQ,
            per_channel=settings.per_channel,
            activation_type=getattr(QuantType, settings.activation_type),
            weight_type=getattr(QuantType, settings.weight_type),
            nodes_to_exclude=kept_float,
            calibrate_method=getattr(CalibrationMethod, settings.calibration),
        )
        result = onnx.load(str(quantized))
    check_quantized(result)
    return result, kept_float


def _quantize_nncf(
    model: onnx.ModelProto, tensors: list[np.ndarray], settings: QuantSettings
) -> tuple[onnx.ModelProto, list[str]]:
    from export.quantize_nncf import quantize_nncf

    kept_float = float_tail(model, settings.keep_float)
    with _quiet():
        result = quantize_nncf(
            model, tensors, settings.preset, kept_float, settings.fast_bias_correction
        )
    check_quantized(result)
    return result, kept_float


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """onnxruntime.quantization prints progress to stdout and logs advice at WARNING; the export
    summary is the CLI's stdout, so keep both out of it."""
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        logging.disable(previous)


def check_quantized(model: onnx.ModelProto) -> None:
    """onnx's full checker, and the graph really carries QDQ pairs (not a float copy)."""
    onnx.checker.check_model(model, full_check=True)
    quantizers, dequantizers = count_qdq(model)
    if not quantizers or not dequantizers:
        raise ExportError("quantization produced no QuantizeLinear/DequantizeLinear nodes")


def count_qdq(model: onnx.ModelProto) -> tuple[int, int]:
    """(QuantizeLinear, DequantizeLinear) node counts: what the summary reports."""
    ops = [n.op_type for n in model.graph.node]
    return ops.count("QuantizeLinear"), ops.count("DequantizeLinear")
