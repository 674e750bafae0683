"""The detector: one loaded model shared by every request, its metadata, a ready flag.

A request flows through small pure steps: letterbox -> run -> NMS (raw layout) or filter
(end2end layout) -> scale back. `ready` is set only after the model loaded and one warm-up
inference passed. The runtime (serve/runtimes: onnxruntime or OpenVINO) only runs the graph; it is
thread-safe and releases the GIL, so one request's decoding and letterboxing overlap another's
inference. Only the inference itself waits for one of `inference_slots`: more concurrent runs than
the CPUs can take add memory (each run's buffers) and context switches, not throughput.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from serve.errors import ModelError, one_line
from serve.keypoints import scale_keypoints, undo_keypoint_reduction
from serve.letterbox import letterbox, scale_boxes, to_tensor, undo_reduction
from serve.model_info import ModelInfo, read_model_info
from serve.nms import non_max_suppression
from serve.options import Options
from serve.runtimes import FP32, INT8, Loaded, Threads, import_runtime


@dataclass
class Detections:
    """Boxes (K, 4) x1y1x2y2 in original pixels, scores (K,), class ids (K,), best score first."""

    boxes: np.ndarray
    scores: np.ndarray
    class_ids: np.ndarray
    timings_ms: dict[str, float] = field(default_factory=dict)
    keypoints: np.ndarray | None = None  # pose models: (K, nkpt, 3) x, y, score in original pixels

    def __len__(self) -> int:
        return int(self.scores.shape[0])


class Detector:
    def __init__(
        self,
        path: str | Path,
        intra_op_threads: int = 1,
        inter_op_threads: int = 1,
        inference_slots: int = 1,
        runtime: str = "onnxruntime",
        precision: str = FP32,
        slots: threading.BoundedSemaphore | None = None,
        static_shapes: int = 0,
    ):
        """`slots`: a pool of inference slots shared with other detectors (serve/multi_model.py);
        by default its own, of `inference_slots`. `static_shapes`: OpenVINO's compiles per shape
        of a `--rect` export (SERVE_STATIC_SHAPES)."""
        self.path = Path(path)
        self.runtime = runtime
        self.float_precision = precision  # asked; after load(), what the runtime uses
        self._slots = slots or threading.BoundedSemaphore(inference_slots)
        self._requests = inference_slots
        self._threads = Threads(intra_op_threads, inter_op_threads)
        self._static_shapes = static_shapes
        self._model: Loaded | None = None
        self.info: ModelInfo | None = None
        self._ready = threading.Event()
        self._input_dtype: type = np.float32

    @property
    def inference_slots(self) -> int:
        return self._requests

    @property
    def ready(self) -> bool:
        return self._ready.is_set()

    @property
    def model_info(self) -> ModelInfo:
        """What the loaded model is; only once load() has run (the server answers after it)."""
        if self.info is None:
            raise RuntimeError("load() first")
        return self.info

    @property
    def precision(self) -> str:
        """What the model computes in, as /ping says it: "int8" for an INT8 export once its QDQ
        pairs run as int8 (on onnxruntime from the start, on OpenVINO once it compiled them: until
        then its float view serves), else the runtime's float precision; after load()."""
        if self._model is not None and self._model.runs_int8:
            return INT8
        return self.float_precision

    @property
    def compiling(self) -> str | None:
        """INT8 while OpenVINO compiles an INT8 export in the background (its float view serving
        until then), else None."""
        return None if self._model is None else self._model.compiling

    def load(self) -> None:
        """Load the model, read the metadata, run one warm-up inference; raise ModelError."""
        model = import_runtime(self.runtime).load(
            self.path, self._threads, self.float_precision, self._requests, self._static_shapes
        )
        info = read_model_info(model.metadata, model.inputs, model.outputs, self.path.stem)
        self._model, self.info, self.float_precision = model, info, model.precision
        self._input_dtype = np.float16 if info.input_type == "tensor(float16)" else np.float32
        grey = np.full((info.img_size, info.img_size, 3), 114, dtype=np.uint8)
        try:
            self.detect(grey, Options())
        except Exception as exc:
            raise ModelError(f"warm-up inference of {self.path} failed: {one_line(exc)}") from None
        self._ready.set()

    def settle(self, timeout: float) -> bool:
        """At exit only (Loaded.settle): True when no inference or background work is left."""
        return self._model is None or self._model.settle(timeout)

    def detect(
        self,
        image: np.ndarray,
        options: Options,
        reduction: int = 1,
        original_size: tuple[int, int] | None = None,
    ) -> Detections:
        """Detections on one HxWx3 BGR image, in its own pixels; or, for an image decoded at
        1/reduction of an original of original_size (width, height), in the original's."""
        info, model = self.info, self._model
        assert info is not None and model is not None, "load() first"
        height, width = image.shape[:2]
        size, stride = info.img_size, info.rect_stride

        start = time.perf_counter()
        tensor = to_tensor(letterbox(image, size, stride), self._input_dtype)
        prepared = time.perf_counter()
        # raw rows: only those NMS can keep are needed (OpenVINO leaves out the others)
        objectness_over = options.conf if info.layout == "raw" else None
        with self._slots:
            output = model.run(tensor, info.output_name, objectness_over)
        inferred = time.perf_counter()
        if info.layout == "raw":
            rows = self._raw_rows(output, options)
        else:
            rows = self._end2end_rows(output, options)
        boxes = scale_boxes(rows[:, :4], size, height, width, stride)
        if reduction > 1:
            assert original_size is not None, "a reduced image needs the original's size"
            boxes = undo_reduction(boxes, reduction, original_size[1], original_size[0])
        result = Detections(boxes, rows[:, 4].astype(np.float64), rows[:, 5].astype(np.int64))
        if info.nkpt:
            keypoints = scale_keypoints(
                rows[:, 6:].reshape(-1, info.nkpt, 3), size, height, width, stride
            )
            if reduction > 1:
                assert original_size is not None
                keypoints = undo_keypoint_reduction(
                    keypoints, reduction, original_size[1], original_size[0]
                )
            result.keypoints = keypoints
        done = time.perf_counter()
        result.timings_ms = {
            "preprocess": (prepared - start) * 1000,
            "inference": (inferred - prepared) * 1000,
            "postprocess": (done - inferred) * 1000,
        }
        return result

    def _raw_rows(self, output: np.ndarray, options: Options) -> np.ndarray:
        nc, nkpt = self.model_info.nc, self.model_info.nkpt
        assert nc is not None, "read_model_info gives every raw-layout model its nc"
        columns = 5 + nc + 3 * nkpt
        if output.ndim != 3 or output.shape[0] < 1 or output.shape[2] != columns:
            raise RuntimeError(f"raw output has shape {output.shape}; expected (1, A, {columns})")
        return non_max_suppression(
            output[0],
            conf=options.conf,
            iou=options.iou,
            classes=options.classes,
            agnostic=options.agnostic,
            max_det=options.max_det,
            nkpt=nkpt,
        )

    def _end2end_rows(self, output: np.ndarray, options: Options) -> np.ndarray:
        """NMS already ran in the graph; apply the request's stricter conf/classes/max_det only."""
        columns = 7 + 3 * self.model_info.nkpt  # pose: the keypoints follow the score
        if output.ndim != 2 or output.shape[1] != columns:
            raise RuntimeError(f"end2end output has shape {output.shape}; expected (K, {columns})")
        output = output.astype(np.float32, copy=False)
        labels = output[:, 5].round()
        keep = (output[:, 0] == 0) & (output[:, 6] > options.conf)
        if options.classes is not None:
            keep &= np.isin(labels, np.asarray(options.classes, dtype=np.float32))
        rows = np.concatenate(
            [output[:, 1:5], output[:, 6:7], labels[:, None], output[:, 7:]], axis=1
        )[keep]
        order = np.argsort(-rows[:, 4], kind="stable")[: options.max_det]
        return rows[order]
