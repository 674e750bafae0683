"""INT8 OpenVINO IR by NNCF quantizing the OpenVINO model (`--int8-format ir`, issue 27).

The published yolov7-tiny recipe's path: OpenVINO reads the float ONNX export, NNCF quantizes that
model (FakeQuantize nodes where the CPU plugin fuses int8 kernels), and the result is saved as IR
(OUTPUT.xml + OUTPUT.bin). On 2 vCPUs this runs at 0.31-0.34x bare onnxruntime FP32 with boxes
within a third of a pixel, where every ONNX INT8 graph was slower or less accurate on OpenVINO
(docs/bench.md, "INT8 quantizers"). Only the decode stays float (export/quantize.NNCF_IR: the
head's convolutions quantized, unlike the ONNX exports), and any float tail given is ignored by
name: OpenVINO's frontend splits an ONNX Conv NAME into "NAME/WithoutBiases" (the convolution)
and "NAME" (the bias Add), so both names are.

The export's metadata travels in the IR's rt_info under "framework", where OpenVINO's ONNX frontend
keeps an ONNX file's metadata_props: serve/runtimes/openvino.py reads both alike.

NNCF and OpenVINO are export-time imports here (requirements-export.txt, -openvino.txt).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import onnx

from export.errors import ExportError
from export.quantize import QuantSettings, float_tail

if TYPE_CHECKING:
    import openvino as ov

FRAMEWORK = "framework"  # the rt_info section OpenVINO's ONNX frontend puts metadata_props in


def ir_files(output: Path) -> tuple[Path, Path]:
    """The IR's two files: OUTPUT.xml (the graph) and OUTPUT.bin (the weights) beside it."""
    return output, output.with_suffix(".bin")


def ignored_names(model: ov.Model, tail: list[str]) -> list[str]:
    """The float tail's ONNX node names as the OpenVINO model's friendly names."""
    names = {op.get_friendly_name() for op in model.get_ordered_ops()}
    return [n for name in tail for n in (name, f"{name}/WithoutBiases") if n in names]


def quantize_ir(
    fp32: onnx.ModelProto, tensors: list[np.ndarray], settings: QuantSettings
) -> tuple[ov.Model, list[str]]:
    """Float ONNX + calibration tensors -> (NNCF's INT8 OpenVINO model, the ONNX nodes left
    float)."""
    import openvino as ov

    from export.quantize_nncf import PRESETS, quiet

    if settings.preset not in PRESETS:
        raise ExportError(f"NNCF preset must be one of {PRESETS}")
    model = ov.Core().read_model(fp32.SerializeToString(), b"")
    tail = float_tail(fp32, settings.keep_float)
    ignored = ignored_names(model, tail)
    import nncf  # before quiet(): importing it sets its logger's level

    with quiet():
        quantized = nncf.quantize(
            model,
            nncf.Dataset(tensors),
            preset=nncf.QuantizationPreset(settings.preset),
            target_device=nncf.TargetDevice.CPU,
            subset_size=len(tensors),
            fast_bias_correction=settings.fast_bias_correction,
            # validate=False: "NAME/WithoutBiases" exists only for convolutions with a bias
            ignored_scope=nncf.IgnoredScope(names=ignored, validate=False),
        )
    return quantized, tail


def set_ir_metadata(model: ov.Model, metadata: dict[str, object]) -> None:
    """The export's metadata as the ONNX exports carry it (strings; others as JSON), where the
    ONNX frontend would have put it."""
    for key, value in metadata.items():
        model.set_rt_info(value if isinstance(value, str) else json.dumps(value), [FRAMEWORK, key])


def save_ir_atomically(model: ov.Model, output: Path) -> int:
    """Write OUTPUT.xml and OUTPUT.bin, both or neither: each goes to a temporary name first,
    the .bin is renamed into place before the .xml (a reader looks for the .xml), and a failure
    removes whatever was written. Returns the bytes of both."""
    import openvino as ov

    xml, weights = ir_files(output)
    xml.parent.mkdir(parents=True, exist_ok=True)
    tmp_xml = xml.with_name(f".{xml.name}.tmp.xml")
    tmp_bin = tmp_xml.with_suffix(".bin")  # save_model writes the .bin beside its .xml
    done = False
    try:
        # compress_to_fp16=False: the float tail keeps its FP32 weights, as in the ONNX exports
        ov.save_model(model, str(tmp_xml), compress_to_fp16=False)
        # the .xml names no .bin (OpenVINO reads the one beside it), so renaming is enough
        os.replace(tmp_bin, weights)
        os.replace(tmp_xml, xml)
        done = True
    finally:
        tmp_xml.unlink(missing_ok=True)
        tmp_bin.unlink(missing_ok=True)
        if not done:
            weights.unlink(missing_ok=True)
    return xml.stat().st_size + weights.stat().st_size
