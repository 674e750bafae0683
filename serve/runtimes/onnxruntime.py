"""onnxruntime's CPU provider: the default runtime, the one the exactness tests pin down.

A session's `run` is thread-safe and releases the GIL. It computes in the graph's own types (fp32
for what `export` writes); it has no bf16 path on x86.

Thread layout (serve/runtimes/layout.py): where `requests` inferences at once would each get fewer
threads, a model gets two sessions over the same file, a wide one (`intra_op` threads) that an
inference takes when no other is running, and a narrow one (`intra_op // requests` threads) that
every inference started beside another takes (two at once: FP32 1.11x, INT8 1.16x the images per
second of one session). Both compute the same numbers, bit for bit (FP32 and INT8 at 640
measured; tests/serve/test_thread_layout.py checks it): the answer does not depend on which
session ran.
Both sessions take their activations from one arena registered in onnxruntime's environment, so
the second session costs its copy of the (transformed) weights, not a second arena (yolov7-tiny
FP32 at 640: the server's peak RSS 396 MB with an arena per session, 327-334 MB shared).
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import onnxruntime as ort

from serve.errors import ModelError, one_line
from serve.model_info import Port
from serve.runtimes import BF16, FP32, INT8, Threads
from serve.runtimes.layout import WideNarrow, narrow_threads


class OnnxRuntimeModel:
    def __init__(self, wide: ort.InferenceSession, narrow: ort.InferenceSession | None = None):
        self._sessions = WideNarrow(wide, narrow)
        self.inputs = [Port(p.name, tuple(p.shape), p.type) for p in wide.get_inputs()]
        self.outputs = [Port(p.name, tuple(p.shape), p.type) for p in wide.get_outputs()]
        self.metadata = dict(wide.get_modelmeta().custom_metadata_map or {})
        self.precision = FP32
        self.runs_int8 = self.metadata.get("precision") == INT8  # its QDQ pairs fuse to int8
        self.compiling = None
        self._input = self.inputs[0].name if self.inputs else ""

    @property
    def layouts(self) -> int:
        """How many thread layouts this model runs in: 2 when it has a narrow session."""
        return self._sessions.layouts

    @property
    def narrow(self) -> ort.InferenceSession:
        return self._sessions.narrow

    def run(self, tensor: np.ndarray, output: str) -> np.ndarray:
        with self._sessions.pick() as session:
            return session.run([output], {self._input: tensor})[0]

    def settle(self, timeout: float) -> bool:
        """At exit: wait for the inferences in flight (both sessions exist before load()
        returns, so nothing else runs in the background)."""
        return self._sessions.wait_idle(timeout)


_ARENA_LOCK = threading.Lock()
_arena_registered = False


def _register_shared_arena() -> None:
    """One CPU arena for every session of this process that asks for the environment's
    allocators (once: registering twice is an error)."""
    global _arena_registered
    with _ARENA_LOCK:
        if not _arena_registered:
            memory = ort.OrtMemoryInfo(
                "Cpu", ort.OrtAllocatorType.ORT_ARENA_ALLOCATOR, 0, ort.OrtMemType.DEFAULT
            )
            ort.create_and_register_allocator(memory, None)  # None: the default arena settings
            _arena_registered = True


def _session(path: Path, intra_op: int, inter_op: int) -> ort.InferenceSession:
    _register_shared_arena()
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
    options.add_session_config_entry("session.use_env_allocators", "1")
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
    share = narrow_threads(threads, requests)
    if share is None:
        return OnnxRuntimeModel(wide)
    return OnnxRuntimeModel(wide, _session(path, share, threads.inter_op))
