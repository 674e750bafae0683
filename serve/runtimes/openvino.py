"""OpenVINO's CPU plugin (the `openvino` wheel, requirements-openvino.txt), reading the same ONNX
file through its ONNX frontend.

Why the wheel and not onnxruntime's OpenVINO execution provider: docs/serving.md, "Runtimes and
precision". The ONNX frontend keeps the file's metadata_props in the model's rt_info under
"framework", string for string as onnxruntime's custom_metadata_map has them, so no extra package
is needed to read them. An infer request is not thread-safe, so each concurrent inference borrows
one from a pool.

Thread layout (serve/runtimes/layout.py): the model is compiled wide (one stream on every thread:
an inference alone) and, where `requests` inferences at once would each get fewer threads, narrow
(one stream per concurrent inference, at most one per thread, a share of the threads each): with
one stream, two infer requests at once take turns, so the wide compile alone ran two inferences
at once no faster than one (docs/serving.md "Concurrency"). Both compute the same numbers, bit for
bit. The narrow compile runs in the background after the first inference (the warm-up):
compiling costs 0.15 s (FP32) to 0.8 s (an INT8 export: OpenVINO's low-precision passes) on 2
vCPUs, and a second one before /ping would double the cold start; until it is there, inferences
at once share the wide compile.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import openvino as ov

from serve.errors import ModelError, one_line
from serve.memory import keep_freed_memory
from serve.model_info import Port
from serve.runtimes import BF16, FP32, Threads
from serve.runtimes.layout import WideNarrow, narrow_threads

log = logging.getLogger("serve")

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


class _Pool:
    """Infer requests of one compiled model, lent to one inference at a time each."""

    def __init__(self, compiled: ov.CompiledModel, size: int):
        self.compiled = compiled
        self._free: queue.SimpleQueue[ov.InferRequest] = queue.SimpleQueue()
        for _ in range(max(1, size)):
            self._free.put(compiled.create_infer_request())

    def warm_up(self, port: Port, count: int) -> None:
        """One inference on each request (the first one of a compile builds its kernels)."""
        if not all(isinstance(d, int) for d in port.shape):
            return  # a dynamic input: nothing to warm with
        tensor = np.zeros(port.shape, np.float16 if port.type == "tensor(float16)" else np.float32)
        requests = [self._free.get() for _ in range(count)]
        try:
            for request in requests:
                request.infer({0: tensor}, share_inputs=True)
        finally:
            for request in requests:
                self._free.put(request)

    def run(self, tensor: np.ndarray, output: str) -> np.ndarray:
        request = self._free.get()
        try:
            # share_inputs: the tensor is ours and contiguous; outputs are copied (the default),
            # as the request's buffers are overwritten by its next inference.
            return request.infer({0: tensor}, share_inputs=True)[self.compiled.output(output)]
        finally:
            self._free.put(request)


class OpenVinoModel:
    def __init__(self, model: ov.Model, wide: ov.CompiledModel, requests: int):
        self.inputs = [_port(p) for p in model.inputs]
        self.outputs = [_port(p) for p in model.outputs]
        self.metadata = _metadata(model)
        used = wide.get_property("INFERENCE_PRECISION_HINT")
        self.precision = BF16 if used == ov.Type.bf16 else FP32
        # as many requests as inferences at once: the wide compile takes them all until (unless)
        # a narrow one is there
        self._pools = WideNarrow(_Pool(wide, requests))
        self._narrow_lock = threading.Lock()
        self._narrow_pending: tuple[Callable[[], ov.CompiledModel], int, int] | None = None
        self._narrow_thread: threading.Thread | None = None

    @property
    def layouts(self) -> int:
        """How many thread layouts this model runs in: 2 once it has a narrow compile."""
        return self._pools.layouts

    def compile_narrow_later(
        self, compile_: Callable[[], ov.CompiledModel], requests: int, streams: int
    ) -> None:
        """Compile the narrow layout (`streams` streams, `requests` infer requests) in a
        background thread once the first inference (the detector's warm-up) has finished, so
        that neither waits for the other."""
        with self._narrow_lock:
            self._narrow_pending = (compile_, requests, streams)

    def _compile_narrow(
        self, compile_: Callable[[], ov.CompiledModel], requests: int, expected: int
    ) -> None:
        """Compile the narrow layout, warm each of its requests with one inference, then let
        inferences at once take it; a failure is logged and the wide compile serves alone."""
        started = time.perf_counter()
        try:
            compiled = compile_()
            streams = int(compiled.get_property("NUM_STREAMS"))
            used = compiled.get_property("INFERENCE_PRECISION_HINT")
            if (BF16 if used == ov.Type.bf16 else FP32) != self.precision or streams != expected:
                raise RuntimeError(f"compiled {streams} streams in {used}")
            pool = _Pool(compiled, requests)
            pool.warm_up(self.inputs[0], requests)
        except Exception as exc:  # OpenVINO raises RuntimeError and its own types
            log.warning(f"OpenVINO's narrow layout failed; serving on one: {one_line(exc)}")
            return
        self._pools.add_narrow(pool)
        seconds = round(time.perf_counter() - started, 3)
        log.info("narrow layout ready", extra={"fields": {"streams": streams, "seconds": seconds}})

    def run(self, tensor: np.ndarray, output: str) -> np.ndarray:
        with self._pools.pick() as pool:
            answer = pool.run(tensor, output)
        if self._narrow_pending is not None:
            with self._narrow_lock:  # settle() sees either the pending work or a started thread
                if self._narrow_pending is not None:
                    self._narrow_thread = threading.Thread(
                        target=self._compile_narrow,
                        args=self._narrow_pending,
                        name="openvino-narrow-compile",
                        daemon=True,
                    )
                    self._narrow_pending = None
                    self._narrow_thread.start()
        return answer

    def settle(self, timeout: float) -> bool:
        """At exit: drop a narrow compile not started yet, wait for one that runs and for the
        inferences in flight. A process that exits while OpenVINO works in another thread is
        aborted by the C++ runtime ("terminate called without an active exception")."""
        deadline = time.monotonic() + timeout
        with self._narrow_lock:
            self._narrow_pending = None
            thread = self._narrow_thread
        if thread is not None:
            thread.join(timeout)
            if thread.is_alive():
                return False
        return self._pools.wait_idle(max(0.0, deadline - time.monotonic()))


def _config(precision: str, streams: int, threads: int) -> dict[str, object]:
    return {
        "INFERENCE_PRECISION_HINT": HINTS[precision],
        "PERFORMANCE_HINT": "LATENCY",
        # wide: one stream, so that one inference uses every thread; narrow: one per slot
        "NUM_STREAMS": streams,
        "INFERENCE_NUM_THREADS": threads,
        # Pinned threads cannot step aside from a core that decoding (or a neighbour) is busy
        # on; unpinned was as fast or faster in 5 of 6 side-by-side comparisons (docs/serving.md).
        "ENABLE_CPU_PINNING": False,
    }


def load(path: Path, threads: Threads, precision: str, requests: int) -> OpenVinoModel:
    """Read and compile for the CPU (wide, and narrow where it differs); ModelError when the
    plugin will not use `precision`."""
    keep_freed_memory()  # each inference's output copy, reused rather than faulted in again
    core = ov.Core()
    try:
        model = core.read_model(str(path))
        wide = core.compile_model(model, "CPU", _config(precision, 1, threads.intra_op))
    except Exception as exc:  # OpenVINO raises RuntimeError and its own types
        raise ModelError(f"cannot load model {path}: {one_line(exc)}") from None
    loaded = OpenVinoModel(model, wide, requests)
    if loaded.precision != precision:
        raise ModelError(
            f"OpenVINO compiled {path.name} in {loaded.precision}, not the {precision} asked"
        )
    share = narrow_threads(threads, requests)
    if share is not None:  # one stream of `share` threads per concurrent inference,
        # no more streams than the threads hold (SERVE_INFERENCE_SLOTS may ask for more slots)
        streams = min(requests, threads.intra_op // share)
        narrow = _config(precision, streams, share * streams)
        loaded.compile_narrow_later(
            lambda: core.compile_model(model, "CPU", narrow), requests, streams
        )
    return loaded
