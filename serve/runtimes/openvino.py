"""OpenVINO's CPU plugin (the `openvino` wheel, requirements-openvino.txt), reading the same ONNX
file through its ONNX frontend.

Why the wheel and not onnxruntime's OpenVINO execution provider: docs/serving.md, "Runtimes and
precision". The ONNX frontend keeps the file's metadata_props in the model's rt_info under
"framework", string for string as onnxruntime's custom_metadata_map has them, so no extra package
is needed to read them. One compiled model serves every thread; an infer request is not
thread-safe, so each concurrent inference borrows one from a pool of `requests`.
"""

from __future__ import annotations

import queue
from pathlib import Path

import numpy as np
import openvino as ov

from serve.errors import ModelError, one_line
from serve.model_info import Port
from serve.runtimes import BF16, FP32, Threads

HINTS = {FP32: "f32", BF16: "bf16"}
_TYPES = {"f32": "tensor(float)", "f16": "tensor(float16)", "f64": "tensor(double)"}


def _port(port: ov.Output) -> Port:
    shape = tuple(d.get_length() if d.is_static else None for d in port.get_partial_shape())
    kind = port.get_element_type().to_string()
    return Port(port.get_any_name(), shape, _TYPES.get(kind, f"tensor({kind})"))


def _metadata(model: ov.Model) -> dict[str, str]:
    if not model.has_rt_info(["framework"]):  # an ONNX file without metadata_props
        return {}
    return {key: value.astype(str) for key, value in model.get_rt_info()["framework"].items()}


class OpenVinoModel:
    def __init__(self, model: ov.Model, compiled: ov.CompiledModel, requests: int):
        self._compiled = compiled
        self.inputs = [_port(p) for p in model.inputs]
        self.outputs = [_port(p) for p in model.outputs]
        self.metadata = _metadata(model)
        used = compiled.get_property("INFERENCE_PRECISION_HINT")
        self.precision = BF16 if used == ov.Type.bf16 else FP32
        self._requests: queue.SimpleQueue[ov.InferRequest] = queue.SimpleQueue()
        for _ in range(max(1, requests)):
            self._requests.put(compiled.create_infer_request())

    def run(self, tensor: np.ndarray, output: str) -> np.ndarray:
        request = self._requests.get()
        try:
            # share_inputs: the tensor is ours and contiguous; outputs are copied (the default),
            # as the request's buffers are overwritten by its next inference.
            return request.infer({0: tensor}, share_inputs=True)[self._compiled.output(output)]
        finally:
            self._requests.put(request)


def load(path: Path, threads: Threads, precision: str, requests: int) -> OpenVinoModel:
    """Read and compile for the CPU; ModelError when the plugin will not use `precision`."""
    config = {
        "INFERENCE_PRECISION_HINT": HINTS[precision],
        "PERFORMANCE_HINT": "LATENCY",
        "NUM_STREAMS": 1,  # one inference uses every thread, as onnxruntime's session does
        "INFERENCE_NUM_THREADS": threads.intra_op,
        # Pinned threads cannot step aside from a core that decoding (or a neighbour) is busy
        # on; unpinned was as fast or faster in 5 of 6 side-by-side comparisons (docs/serving.md).
        "ENABLE_CPU_PINNING": False,
    }
    core = ov.Core()
    try:
        model = core.read_model(str(path))
        compiled = core.compile_model(model, "CPU", config)
    except Exception as exc:  # OpenVINO raises RuntimeError and its own types
        raise ModelError(f"cannot load model {path}: {one_line(exc)}") from None
    loaded = OpenVinoModel(model, compiled, requests)
    if loaded.precision != precision:
        raise ModelError(
            f"OpenVINO compiled {path.name} in {loaded.precision}, not the {precision} asked"
        )
    return loaded
