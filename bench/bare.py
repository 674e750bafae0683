"""In-process timings: bare `session.run` (the limit) and serve's pipeline without HTTP."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort

from bench.load import latency_summary
from serve.decode import decode_image
from serve.detector import Detector
from serve.letterbox import letterbox, to_tensor
from serve.options import Options

LEVELS = {
    "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}


def session(model: Path, intra: int, inter: int = 1, level: str = "all") -> ort.InferenceSession:
    """A session with the options serve/detector.py uses (level aside)."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = intra
    options.inter_op_num_threads = inter
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = LEVELS[level]
    options.log_severity_level = 3
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    return ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])


def tensors(images: list[Path], size: int, stride: int | None = None) -> list[np.ndarray]:
    """The photos as the server feeds them to the model (letterboxed, 1x3xSxS float32; with a
    `--rect` model's stride, each photo's smallest rectangle)."""
    return [to_tensor(letterbox(cv2.imread(str(p)), size, stride)) for p in images]


def _timed(step, count: int, budget_s: float) -> list[float]:
    """Run step(i) up to `count` times (at least 3) or until `budget_s` has passed; ms each."""
    times: list[float] = []
    stop = time.perf_counter() + budget_s
    for i in range(max(3, count)):
        if i >= 3 and time.perf_counter() > stop:
            break
        began = time.perf_counter()
        step(i)
        times.append((time.perf_counter() - began) * 1000)
    return times


class BareRun:
    """session.run on the letterboxed photos (after two warm-up runs); `measure` may be called
    several times, between other measurements, and `result` summarises every run so far."""

    def __init__(
        self,
        model: Path,
        images: list[Path],
        size: int,
        intra: int,
        level: str = "all",
        stride: int | None = None,
    ):
        began = time.perf_counter()
        self._session = session(model, intra, level=level)
        self._load_s = time.perf_counter() - began
        self._name = self._session.get_inputs()[0].name
        self._inputs = tensors(images, size, stride)
        self._level, self._intra = level, intra
        for x in self._inputs[:2]:
            self._session.run(None, {self._name: x})
        self.times: list[float] = []

    def _step(self, i: int) -> None:
        self._session.run(None, {self._name: self._inputs[i % len(self._inputs)]})

    def measure(self, budget_s: float, count: int = 1000) -> None:
        self.times += _timed(self._step, count, budget_s)

    def result(self) -> dict:
        return {
            "level": self._level,
            "intra_op_threads": self._intra,
            "session_load_s": self._load_s,
            "runs": len(self.times),
            **latency_summary(self.times),
        }


class OpenVinoBareRun(BareRun):
    """OpenVINO's `infer` on the letterboxed photos: the peer of bare session.run. Compiled as
    serve/runtimes/openvino.py compiles (latency hint, one stream, threads not pinned), in
    `precision` (fp32 or bf16), with one infer request, as a single client uses it. It reads an
    ONNX file or an OpenVINO IR (.xml) alike. A `--rect` export (`stride`) is compiled for each
    photo's rectangle, as the server compiles each shape it serves
    (serve/runtimes/openvino_static_shapes.py). A detection export with its anchors runs as the
    server runs it: the graph up to the head convs, then the numpy decode of the rows over
    `conf` (serve/runtimes/openvino_heads.py)."""

    def __init__(
        self,
        model: Path,
        images: list[Path],
        size: int,
        intra: int,
        precision: str,
        stride: int | None = None,
        conf: float = 0.25,
    ):
        import openvino as ov

        from serve.runtimes.openvino import served_graph

        began = time.perf_counter()
        config = {
            "INFERENCE_PRECISION_HINT": {"fp32": "f32", "bf16": "bf16"}[precision],
            "PERFORMANCE_HINT": "LATENCY",
            "NUM_STREAMS": 1,
            "INFERENCE_NUM_THREADS": intra,
            "ENABLE_CPU_PINNING": False,
        }
        core = ov.Core()
        graph, self._heads = served_graph(core.read_model(str(model)))
        self._conf = conf
        self._inputs = tensors(images, size, stride)
        self._requests = []
        compiled: dict[tuple[int, ...], ov.InferRequest] = {}
        for x in self._inputs:
            if x.shape not in compiled:
                shaped = graph.clone()
                shaped.reshape({0: list(x.shape)})
                compiled[x.shape] = core.compile_model(shaped, "CPU", config).create_infer_request()
            self._requests.append(compiled[x.shape])
        self._load_s = time.perf_counter() - began
        self._level, self._intra = f"openvino {precision}", intra
        for i in range(len(self._inputs)):
            self._step(i)
        self.times = []

    def _step(self, i: int) -> None:
        k = i % len(self._inputs)
        request = self._requests[k]
        outputs = request.infer({0: self._inputs[k]}, share_inputs=True, share_outputs=True)
        if self._heads is not None:
            self._heads.decode([outputs[port] for port in request.model_outputs], self._conf)


class PipelineRun(BareRun):
    """serve's Detector on the photos' bytes (decode, letterbox, run, NMS, scale), no HTTP."""

    def __init__(self, model: Path, images: list[Path], intra: int):
        began = time.perf_counter()
        self._detector = Detector(model, intra, 1)
        self._detector.load()
        self._load_s = time.perf_counter() - began
        self._bodies = [p.read_bytes() for p in images]
        self._level, self._intra = "all", intra
        self._step(0)
        self.times = []

    def _step(self, i: int) -> None:
        image = decode_image(self._bodies[i % len(self._bodies)], 50_000_000)
        self._detector.detect(image, Options())


def bare_run(
    model: Path, images: list[Path], size: int, intra: int, budget_s: float, level: str = "all"
) -> dict:
    run = BareRun(model, images, size, intra, level)
    run.measure(budget_s)
    return run.result()


def concurrent_runs(
    model: Path, images: list[Path], size: int, intra: int, threads: int, budget_s: float
) -> dict:
    """`threads` threads calling run() on one session at once, as a threaded server's requests
    do: total runs per second and the latency of each run."""
    sess = session(model, intra)
    name = sess.get_inputs()[0].name
    inputs = tensors(images, size)
    sess.run(None, {name: inputs[0]})
    times: list[list[float]] = [[] for _ in range(threads)]
    began = time.perf_counter()
    stop = began + budget_s

    def work(k: int) -> None:
        i = k
        while time.perf_counter() < stop or not times[k]:  # bounded by the budget; one at least
            t0 = time.perf_counter()
            sess.run(None, {name: inputs[i % len(inputs)]})
            times[k].append((time.perf_counter() - t0) * 1000)
            i += 1

    workers = [threading.Thread(target=work, args=(k,), daemon=True) for k in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    elapsed = time.perf_counter() - began
    flat = [v for per in times for v in per]
    return {
        "threads": threads,
        "intra_op_threads": intra,
        "runs": len(flat),
        "runs_per_s": len(flat) / elapsed,
        **latency_summary(flat),
    }
