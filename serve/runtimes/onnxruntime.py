"""onnxruntime's CPU provider: the default runtime, the one the exactness tests pin down.

One session serves every thread: its `run` is thread-safe and releases the GIL. It computes in
the graph's own types (fp32 for what `export` writes); it has no bf16 path on x86.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort

from serve.errors import ModelError, one_line
from serve.model_info import Port
from serve.runtimes import BF16, FP32, Threads


class OnnxRuntimeModel:
    def __init__(self, session: ort.InferenceSession):
        self._session = session
        self.inputs = [Port(p.name, tuple(p.shape), p.type) for p in session.get_inputs()]
        self.outputs = [Port(p.name, tuple(p.shape), p.type) for p in session.get_outputs()]
        self.metadata = dict(session.get_modelmeta().custom_metadata_map or {})
        self.precision = FP32
        self._input = self.inputs[0].name if self.inputs else ""

    def run(self, tensor: np.ndarray, output: str) -> np.ndarray:
        return self._session.run([output], {self._input: tensor})[0]


def load(path: Path, threads: Threads, precision: str, requests: int) -> OnnxRuntimeModel:
    """Open the session; `requests` needs nothing here, as one session runs them all at once."""
    if precision == BF16:  # serve.runtimes.precision refuses this before the server listens
        raise ModelError("onnxruntime's CPU provider has no bf16 path on x86")
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads.intra_op
    options.inter_op_num_threads = threads.inter_op
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3  # errors only: warnings would break the JSON log stream
    # Idle worker threads sleep instead of spinning, leaving the CPU to decoding and to
    # other requests between inferences.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    try:
        session = ort.InferenceSession(
            str(path), sess_options=options, providers=["CPUExecutionProvider"]
        )
    except Exception as exc:  # onnxruntime raises several unrelated types
        raise ModelError(f"cannot load model {path}: {one_line(exc)}") from None
    return OnnxRuntimeModel(session)
