"""onnxruntime's CPU provider: the default runtime, the one the exactness tests pin down.

A session's `run` is thread-safe and releases the GIL. It computes in the graph's own types (fp32
for what `export` writes); it has no bf16 path on x86.

Thread layout (measured, docs/serving.md "Concurrency"): one inference alone is fastest on every
thread (`intra_op`), but two FP32 inferences at once run more images per second when each keeps to
its share of the CPUs than when both spread over all of them. So an FP32 model gets two sessions
over the same file: a wide one (`intra_op` threads) that an inference takes when no other is
running, and a narrow one (`intra_op // requests` threads) that every inference started beside
another takes. Both compute the same numbers, bit for bit (FP32 and INT8 at 640 measured;
tests/serve/test_thread_layout.py checks it): the answer does not depend on which session ran.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import onnxruntime as ort

from serve.errors import ModelError, one_line
from serve.model_info import Port
from serve.runtimes import BF16, FP32, Threads


class OnnxRuntimeModel:
    def __init__(self, wide: ort.InferenceSession, narrow: ort.InferenceSession | None = None):
        self._wide = wide
        self._narrow = narrow or wide
        self._lock = threading.Lock()
        self._running = 0  # inferences in flight
        self.inputs = [Port(p.name, tuple(p.shape), p.type) for p in wide.get_inputs()]
        self.outputs = [Port(p.name, tuple(p.shape), p.type) for p in wide.get_outputs()]
        self.metadata = dict(wide.get_modelmeta().custom_metadata_map or {})
        self.precision = FP32
        self._input = self.inputs[0].name if self.inputs else ""

    @property
    def layouts(self) -> int:
        """How many thread layouts this model runs in: 2 when it has a narrow session."""
        return 1 if self._narrow is self._wide else 2

    def run(self, tensor: np.ndarray, output: str) -> np.ndarray:
        with self._lock:
            session = self._wide if self._running == 0 else self._narrow
            self._running += 1
        try:
            return session.run([output], {self._input: tensor})[0]
        finally:
            with self._lock:
                self._running -= 1


def _session(path: Path, intra_op: int, inter_op: int) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = intra_op
    options.inter_op_num_threads = inter_op
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3  # errors only: warnings would break the JSON log stream
    # Idle worker threads sleep instead of spinning, leaving the CPU to decoding and to
    # other requests between inferences (spinning: 13-16 % fewer requests/s at 4 at once).
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    try:
        return ort.InferenceSession(
            str(path), sess_options=options, providers=["CPUExecutionProvider"]
        )
    except Exception as exc:  # onnxruntime raises several unrelated types
        raise ModelError(f"cannot load model {path}: {one_line(exc)}") from None


def load(path: Path, threads: Threads, precision: str, requests: int) -> OnnxRuntimeModel:
    """The wide session, and the narrow one where `requests` inferences at once would each get
    fewer threads than `threads.intra_op`."""
    if precision == BF16:  # serve.runtimes.precision refuses this before the server listens
        raise ModelError("onnxruntime's CPU provider has no bf16 path on x86")
    wide = _session(path, threads.intra_op, threads.inter_op)
    share = max(1, threads.intra_op // max(1, requests))
    if share >= threads.intra_op or _int8(wide):
        return OnnxRuntimeModel(wide)
    return OnnxRuntimeModel(wide, _session(path, share, threads.inter_op))


def _int8(session: ort.InferenceSession) -> bool:
    """An INT8 export (`precision` in its metadata): its two runs at once were as fast on every
    thread as on a share of them (1.01-1.06x in two runs), so a second session would only cost
    memory."""
    return (session.get_modelmeta().custom_metadata_map or {}).get("precision") == "int8"
