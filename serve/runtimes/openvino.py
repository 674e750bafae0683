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
compiling costs 0.15-0.25 s (FP32) on 2 vCPUs, and a second one before /ping would add that to
the cold start; until it is there, inferences at once share the wide compile.

An INT8 export starts on its float view (serve/runtimes/openvino_float_view.py: 0.18 s to compile
against 0.8-1.2 s for the INT8 graph): the server is ready on it, the INT8 graph compiles in the
background after the warm-up and takes over every inference started once it is warm, then the
narrow layout follows. Until then /ping says `"compiling": "int8"` and the view's float precision.

A `--rect` export (dynamic height and width) also gets one compile per shape it runs, in the same
background thread (serve/runtimes/openvino_static_shapes.py); /ping says `"compiling": "shapes"`
while one is queued or compiling.

A detection export whose metadata has its anchors runs without its decode: every compile is of the
graph up to the head convs, and serve/runtimes/openvino_heads.py decodes in numpy only the rows
that NMS's first filter can keep (`objectness_over`).
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
from serve.runtimes import BF16, FP32, INT8, Threads
from serve.runtimes.layout import WideNarrow, narrow_threads
from serve.runtimes.openvino_float_view import float_view
from serve.runtimes.openvino_heads import Heads, headless
from serve.runtimes.openvino_static_shapes import StaticShapes

log = logging.getLogger("serve")

HINTS = {FP32: "f32", BF16: "bf16"}
_TYPES = {"f32": "tensor(float)", "f16": "tensor(float16)", "f64": "tensor(double)"}


def _port(port: ov.Output) -> Port:
    shape = tuple(d.get_length() if d.is_static else None for d in port.get_partial_shape())
    kind = port.get_element_type().to_string()
    return Port(port.get_any_name(), shape, _TYPES.get(kind, f"tensor({kind})"))


def metadata_of(model: ov.Model) -> dict[str, str]:
    if not model.has_rt_info(["framework"]):  # an ONNX file without metadata_props
        return {}
    return {key: value.astype(str) for key, value in model.get_rt_info()["framework"].items()}


def served_graph(model: ov.Model) -> tuple[ov.Model, Heads | None]:
    """The graph this runtime compiles for `model` and the numpy decode after it: the graph cut
    before its decode where the metadata has the anchors (openvino_heads.headless), else the
    whole graph and None."""
    cut = headless(model, metadata_of(model))
    return (model, None) if cut is None else cut


class _Pool:
    """Infer requests of one compiled model, lent to one inference at a time each."""

    def __init__(self, compiled: ov.CompiledModel, size: int, heads: Heads | None = None):
        self.compiled = compiled
        self.heads = heads  # a graph cut before its decode: the decode's constants
        # a dynamic-shape graph's static compiles and this pool's layout among them (None: a
        # static graph, or the float view)
        self.shapes: StaticShapes[_Pool] | None = None
        self.layout = 0
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

    def run(
        self, tensor: np.ndarray, output: str, objectness_over: float | None = None
    ) -> np.ndarray:
        static = None if self.shapes is None else self.shapes.runner(self.layout, tensor.shape)
        if static is not None:
            return static.run(tensor, output, objectness_over)
        request = self._free.get()
        try:
            # share_inputs: the tensor is ours and contiguous. share_outputs: views of the
            # request's buffers, so what is returned is copied out before the request is lent
            # again (only the rows asked for: 0.5 ms less than copying all of bus.jpg's).
            answer = request.infer({0: tensor}, share_inputs=True, share_outputs=True)
            if self.heads is not None:
                levels = [answer[port] for port in self.compiled.outputs]
                return self.heads.decode(levels, objectness_over)
            rows = answer[self.compiled.output(output)]
            if objectness_over is None or rows.shape[0] != 1:
                return rows.copy()
            return rows[:, rows[0, :, 4] > objectness_over]  # a new array, in the same order
        finally:
            self._free.put(request)


Compile = Callable[[ov.Model], ov.CompiledModel]  # one layout's config, for any graph
VIEW_DRAIN_SECONDS = 60.0  # far over an inference: the view's last ones before it is freed


class OpenVinoModel:
    def __init__(
        self,
        model: ov.Model,
        wide: ov.CompiledModel,
        requests: int,
        int8: bool,
        static_shapes: int = 0,
        served: tuple[ov.Model, Heads | None] | None = None,
    ):
        # What compiles (not the float view: static shapes reshape it) and the decode after it:
        # `served_graph(model)`, or by default the export's whole graph. The ports are the
        # export's either way.
        self._graph, self._heads = (model, None) if served is None else served
        self.inputs = [_port(p) for p in model.inputs]
        self.outputs = [_port(p) for p in model.outputs]
        self.metadata = metadata_of(model)
        self.precision = _precision(wide)
        self.runs_int8 = int8  # False on an INT8 export's float view
        self._compiling_int8 = False  # while that compile is to come or runs
        self._requests = requests
        # as many requests as inferences at once: the wide compile takes them all until (unless)
        # a narrow one is there
        self._pools = WideNarrow(_Pool(wide, requests, self._heads))
        self._lock = threading.Lock()
        self._later: list[Callable[[], bool]] = []  # background steps, in order
        self._thread: threading.Thread | None = None  # the compile thread while it works
        self._closed = False  # settle() ran: nothing more is queued
        dynamic = not all(isinstance(d, int) for d in self.inputs[0].shape)
        self._static: StaticShapes[_Pool] | None = (
            StaticShapes(self._schedule, static_shapes) if dynamic and static_shapes else None
        )

    @property
    def compiling(self) -> str | None:
        """INT8 while the INT8 graph is to compile; "shapes" while a static shape is queued or
        compiling; else None."""
        if self._compiling_int8:
            return INT8
        return "shapes" if self._static is not None and self._static.pending else None

    @property
    def layouts(self) -> int:
        """How many thread layouts this model runs in: 2 once it has a narrow compile."""
        return self._pools.layouts

    def compile_int8_later(self, compile_: Compile) -> None:
        """Compile the INT8 graph after the first inference (the detector's warm-up) and hand it
        every inference started once it is warm; until then the float view serves."""
        with self._lock:
            self._compiling_int8 = True
            self._later.append(lambda: self._take_over(compile_))

    def compile_shapes_later(self, compile_: Compile) -> None:
        """Static shapes for the wide compile, where it runs the export's graph (not a view)."""
        self._add_layout(self._pools.wide, "wide", compile_, self._requests, 1)

    def compile_narrow_later(self, compile_: Compile, requests: int, streams: int) -> None:
        """Compile the narrow layout (`streams` streams, `requests` infer requests) in the
        background once the first inference (and the INT8 compile, if any) has finished, so that
        neither waits for the other."""
        with self._lock:
            self._later.append(lambda: self._compile_narrow(compile_, requests, streams))

    def _compiled(
        self, compile_: Compile, graph: ov.Model, requests: int, streams: int, warm: int
    ) -> _Pool:
        """A pool of `requests` on a new compile of `graph`, `warm` of them warmed up (the first
        inference of a compile builds its kernels); RuntimeError where it is not what was
        asked."""
        compiled = compile_(graph)
        found = int(compiled.get_property("NUM_STREAMS"))
        if _precision(compiled) != self.precision or found != streams:
            used = compiled.get_property("INFERENCE_PRECISION_HINT")
            raise RuntimeError(f"compiled {found} streams in {used}")
        pool = _Pool(compiled, requests, self._heads)
        pool.warm_up(_port(compiled.input(0)), warm)
        return pool

    def _add_layout(
        self, pool: _Pool, name: str, compile_: Compile, requests: int, streams: int
    ) -> None:
        """`pool`'s layout among the static compiles, where the graph's input is dynamic."""
        if self._static is None:
            return

        def compile_shape(shape: tuple[int, ...]) -> _Pool:
            graph = self._graph.clone()
            graph.reshape({0: list(shape)})
            return self._compiled(compile_, graph, requests, streams, warm=requests)

        pool.layout = self._static.add_layout(name, compile_shape)
        pool.shapes = self._static

    def _schedule(self, step: Callable[[], bool]) -> bool:
        """Queue `step` for the compile thread (started by the next inference to end); False
        once settle() has run."""
        with self._lock:
            if not self._closed:
                self._later.append(step)
            return not self._closed

    def _take_over(self, compile_: Compile) -> bool:
        """The INT8 graph, warm, takes every inference started from now on; on a failure the
        view keeps serving (and no narrow compile of a graph that does not compile follows)."""
        started = time.perf_counter()
        try:
            pool = self._compiled(compile_, self._graph, self._requests, 1, warm=1)
        except Exception as exc:  # OpenVINO raises RuntimeError and its own types
            self._compiling_int8 = False
            log.error(
                "OpenVINO's INT8 compile failed; serving the export's weights in "
                f"{self.precision}: {one_line(exc)}"
            )
            return False
        self._add_layout(pool, "wide", compile_, self._requests, 1)
        view, self._pools = self._pools, WideNarrow(pool)
        self.runs_int8, self._compiling_int8 = True, False
        seconds = round(time.perf_counter() - started, 3)
        log.info("int8 ready", extra={"fields": {"seconds": seconds}})
        view.wait_idle(VIEW_DRAIN_SECONDS)  # its last inferences end before it is freed
        return True

    def _compile_narrow(self, compile_: Compile, requests: int, streams: int) -> bool:
        """Compile the narrow layout, warm each of its requests with one inference, then let
        inferences at once take it; a failure is logged and the wide compile serves alone."""
        started = time.perf_counter()
        try:
            pool = self._compiled(compile_, self._graph, requests, streams, warm=requests)
        except Exception as exc:  # OpenVINO raises RuntimeError and its own types
            log.warning(f"OpenVINO's narrow layout failed; serving on one: {one_line(exc)}")
            return True  # the steps after it (static shapes) do not need it
        self._add_layout(pool, "narrow", compile_, requests, streams)
        self._pools.add_narrow(pool)
        seconds = round(time.perf_counter() - started, 3)
        log.info("narrow layout ready", extra={"fields": {"streams": streams, "seconds": seconds}})
        return True

    def _work_through(self, step: Callable[[], bool]) -> None:
        """`step`, then each one still to come; a step that fails drops the rest (no narrow
        compile of an INT8 graph that did not compile)."""
        while True:
            succeeded = step()
            with self._lock:  # settle() empties the list: nothing after it starts
                if not succeeded:
                    self._later.clear()
                if not self._later:
                    self._thread = None  # the next step queued starts a new thread
                    return
                step = self._later.pop(0)

    def run(
        self, tensor: np.ndarray, output: str, objectness_over: float | None = None
    ) -> np.ndarray:
        with self._pools.pick() as pool:
            answer = pool.run(tensor, output, objectness_over)
        if self._thread is None and self._later:  # after the first inference (the warm-up)
            with self._lock:  # settle() sees either the work to come or a started thread
                if self._thread is None and self._later and not self._closed:
                    self._thread = threading.Thread(
                        target=self._work_through,
                        args=(self._later.pop(0),),
                        name="openvino-compile",
                        daemon=True,
                    )
                    self._thread.start()
        return answer

    def settle(self, timeout: float) -> bool:
        """At exit: drop the compiles not started yet, wait for one that runs and for the
        inferences in flight. A process that exits while OpenVINO works in another thread is
        aborted by the C++ runtime ("terminate called without an active exception")."""
        deadline = time.monotonic() + timeout
        with self._lock:
            self._closed = True
            self._later.clear()
            thread = self._thread
        if thread is not None:
            thread.join(timeout)
            if thread.is_alive():
                return False
        return self._pools.wait_idle(max(0.0, deadline - time.monotonic()))


def _precision(compiled: ov.CompiledModel) -> str:
    return BF16 if compiled.get_property("INFERENCE_PRECISION_HINT") == ov.Type.bf16 else FP32


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


def _float_view_or_none(model: ov.Model) -> ov.Model | None:
    """The INT8 export's float view; None (the INT8 graph compiled first, slower to start but
    served all the same) where the frontend's graph is not what the view expects."""
    try:
        return float_view(model)
    except Exception as exc:  # a graph the view does not know: not worth refusing to start
        log.warning(f"no float view of the INT8 export; compiling it first: {one_line(exc)}")
        return None


def load(
    path: Path, threads: Threads, precision: str, requests: int, static_shapes: int = 0
) -> OpenVinoModel:
    """Read and compile for the CPU (wide, and narrow where it differs; an INT8 export's float
    view first; a dynamic-shape graph for up to `static_shapes` of the shapes it runs too);
    ModelError when the plugin will not use `precision`."""
    # each inference's output copy, reused rather than faulted in again (the server has set this
    # at start already; a bench or test that loads the runtime in its own process gets it here)
    keep_freed_memory()
    core = ov.Core()
    try:
        model = core.read_model(str(path))
    except Exception as exc:  # OpenVINO raises RuntimeError and its own types
        raise ModelError(f"cannot load model {path}: {one_line(exc)}") from None
    quantized = metadata_of(model).get("precision") == INT8
    served = served_graph(model)
    view = _float_view_or_none(served[0]) if quantized else None
    alone = _config(precision, 1, threads.intra_op)  # the view's compile and the INT8 graph's
    try:
        wide = core.compile_model(served[0] if view is None else view, "CPU", alone)
    except Exception as exc:
        raise ModelError(f"cannot load model {path}: {one_line(exc)}") from None
    loaded = OpenVinoModel(model, wide, requests, quantized and view is None, static_shapes, served)
    if loaded.precision != precision:
        raise ModelError(
            f"OpenVINO compiled {path.name} in {loaded.precision}, not the {precision} asked"
        )
    if view is not None:
        loaded.compile_int8_later(lambda graph: core.compile_model(graph, "CPU", alone))
    else:
        loaded.compile_shapes_later(lambda graph: core.compile_model(graph, "CPU", alone))
    share = narrow_threads(threads, requests)
    if share is not None:  # one stream of `share` threads per concurrent inference,
        # no more streams than the threads hold (SERVE_INFERENCE_SLOTS may ask for more slots)
        streams = min(requests, threads.intra_op // share)
        narrow = _config(precision, streams, share * streams)
        loaded.compile_narrow_later(
            lambda graph: core.compile_model(graph, "CPU", narrow), requests, streams
        )
    return loaded
