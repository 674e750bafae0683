"""onnxruntime's CPU provider: the default runtime, the one the exactness tests pin down.

A session's `run` is thread-safe and releases the GIL. It computes in the graph's own types (fp32
for what `export` writes); it has no bf16 path on x86. On arm64 CPUs with bf16 (Graviton3 and
later) SERVE_PRECISION=auto|bf16 turns on MLAS's bf16 fast-math GEMM (the session config entry
mlas.enable_gemm_fastmath_arm64_bfloat16): inputs and outputs stay fp32, the GEMMs round to bf16.

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

import platform
import threading
from pathlib import Path

import numpy as np
import onnxruntime as ort

from serve.errors import ModelError, one_line
from serve.model_info import Port
from serve.runtimes import BF16, FP32, INT8, Threads
from serve.runtimes.layout import WideNarrow, narrow_threads

ARM64_MACHINES = ("aarch64", "arm64")  # platform.machine() on Linux / macOS


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

    def run(
        self, tensor: np.ndarray, output: str, objectness_over: float | None = None
    ) -> np.ndarray:
        """Every row: onnxruntime's output is a new array already, so leaving rows out here
        would only copy them once more (NMS filters them first)."""
        del objectness_over
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


def _session(
    path: Path, intra_op: int, inter_op: int, fastmath: bool = False
) -> ort.InferenceSession:
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
    if fastmath:  # arm64 only: MLAS's GEMMs in bf16, inputs and outputs stay fp32
        options.add_session_config_entry("mlas.enable_gemm_fastmath_arm64_bfloat16", "1")
    try:
        return ort.InferenceSession(
            str(path), sess_options=options, providers=["CPUExecutionProvider"]
        )
    except Exception as exc:  # onnxruntime raises several unrelated types
        raise ModelError(f"cannot load model {path}: {one_line(exc)}") from None


def load(
    path: Path, threads: Threads, precision: str, requests: int, static_shapes: int = 0
) -> OnnxRuntimeModel:
    """The wide session, and the narrow one where `requests` inferences at once would each get
    fewer threads than `threads.intra_op`. `static_shapes` is OpenVINO's: onnxruntime's CPU
    kernels take any shape of a `--rect` export as they are, with nothing to compile."""
    fastmath = precision == BF16
    if fastmath and platform.machine() not in ARM64_MACHINES:
        # serve.runtimes.precision refuses this before the server listens
        raise ModelError("onnxruntime's CPU provider has no bf16 path on x86")
    wide = _session(path, threads.intra_op, threads.inter_op, fastmath)
    share = narrow_threads(threads, requests)
    narrow = None if share is None else _session(path, share, threads.inter_op, fastmath)
    loaded = OnnxRuntimeModel(wide, narrow)
    loaded.precision = BF16 if fastmath else FP32
    return loaded
