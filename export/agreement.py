"""How closely a candidate model (INT8) follows the exact one (FP32), and how much faster it runs.

Detections come from the server's own pipeline (serve/letterbox.py, serve/nms.py, with the server's
default thresholds), so the figures describe what a client of the endpoint would see. A reference
detection is matched when the candidate has one of the same class overlapping it by IoU > 0.8;
pairs are taken greedily, highest IoU first, each detection used once. Agreement is matched /
reference detections; candidate detections left unmatched are counted as extra. Box shift is, per
matched pair, the largest of the four corner-coordinate differences in original-image pixels.
For a pose model a pair also needs its keypoints to agree: the mean distance between the two
models' keypoints, over the reference's size (the square root of its box area), at most
MAX_KEYPOINT_SHIFT; a pair over it is not matched (counted in `keypoint_mismatches`).
Speed is session.run's p50 for both models measured in one run, interleaved image by image (the
order alternating), with the server's session options, so machine noise hits both alike. A
candidate made for OpenVINO (`--int8-runtime openvino`) is run, and so judged and timed, by
OpenVINO compiled as serve/runtimes/openvino.py compiles it; the reference stays onnxruntime FP32.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import onnxruntime as ort

from serve.config import available_cpus
from serve.keypoints import scale_keypoints
from serve.letterbox import letterbox, scale_boxes, to_tensor
from serve.nms import non_max_suppression
from serve.options import Options

MATCH_IOU = 0.8
# COCO's keypoint similarity tolerates about 0.05-0.1 of the person's size for a good keypoint
# (its per-keypoint sigmas, doubled, run 0.05-0.21): 0.05 keeps INT8 well inside "the same pose".
MAX_KEYPOINT_SHIFT = 0.05
MIN_TIMED_RUNS = 30  # per model; about 0.2 s for yolov7-tiny at 320, 3 s at 640


@dataclass
class Agreement:
    reference: int  # reference (FP32) detections on the held-out images
    matched: int
    extra: int  # candidate detections matching no reference one
    mean_shift_px: float
    max_shift_px: float
    max_score_diff: float
    reference_p50_ms: float
    candidate_p50_ms: float
    images: int
    mean_keypoint_shift_px: float = 0.0  # pose models: per matched pair, the mean keypoint shift
    max_keypoint_shift_px: float = 0.0
    keypoint_mismatches: int = 0  # pairs matched by box whose keypoints moved too far

    @property
    def ratio(self) -> float:
        return self.matched / self.reference if self.reference else 0.0

    @property
    def speedup(self) -> float:
        return self.reference_p50_ms / self.candidate_p50_ms

    def line(self) -> str:
        return (
            f"agreement {self.ratio:.3f} ({self.matched}/{self.reference} FP32 detections, "
            f"{self.extra} extra) on {self.images} held-out images; box shift mean "
            f"{self.mean_shift_px:.2f} px, max {self.max_shift_px:.2f} px; "
            + (
                f"keypoint shift mean {self.mean_keypoint_shift_px:.2f} px, max "
                f"{self.max_keypoint_shift_px:.2f} px ({self.keypoint_mismatches} pairs over "
                f"{MAX_KEYPOINT_SHIFT} of the person's size); "
                if self.keypoint_mismatches or self.max_keypoint_shift_px
                else ""
            )
            + "p50 "
            f"{self.candidate_p50_ms:.2f} vs {self.reference_p50_ms:.2f} ms "
            f"({self.speedup:.2f}x)"
        )


def server_session(model: bytes) -> ort.InferenceSession:
    """A session configured as serve/detector.py configures its own (defaults: every CPU)."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = available_cpus()
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    return ort.InferenceSession(model, sess_options=options, providers=["CPUExecutionProvider"])


Runner = Callable[[np.ndarray], np.ndarray]  # one inference: input tensor -> the first output


def onnxruntime_runner(model: bytes) -> Runner:
    session = server_session(model)
    name = session.get_inputs()[0].name
    return lambda tensor: session.run(None, {name: tensor})[0]


def openvino_runner(model: bytes | str) -> Runner:
    """OpenVINO compiled as the server compiles an INT8 export alone (SERVE_PRECISION fp32: the
    float parts in f32, where the plugin would pick bf16 on a bf16 CPU; latency hint, one
    stream, every CPU, threads not pinned), and where the model's metadata has its anchors, cut
    before the decode and decoded in numpy as the server runs it (every row: NMS follows); the
    import is here: openvino is optional. `model`: ONNX bytes, or the path of a model file
    OpenVINO reads (its IR, for bench.quantization)."""
    import openvino as ov

    from serve.runtimes.openvino import served_graph

    core = ov.Core()
    config = {
        "INFERENCE_PRECISION_HINT": "f32",
        "PERFORMANCE_HINT": "LATENCY",
        "NUM_STREAMS": 1,
        "INFERENCE_NUM_THREADS": available_cpus(),
        "ENABLE_CPU_PINNING": False,
    }
    read = core.read_model(model) if isinstance(model, str) else core.read_model(model, b"")
    graph, heads = served_graph(read)
    compiled = core.compile_model(graph, "CPU", config)
    request = compiled.create_infer_request()
    if heads is None:
        return lambda tensor: np.array(request.infer({0: tensor})[0])

    def run(tensor: np.ndarray) -> np.ndarray:
        outputs = request.infer({0: tensor})
        return heads.decode([outputs[port] for port in compiled.outputs], None)

    return run


RUNNERS = {"onnxruntime": onnxruntime_runner, "openvino": openvino_runner}


def _run(runner: Runner, tensor: np.ndarray) -> tuple[np.ndarray, float]:
    start = time.perf_counter()
    output = runner(tensor)
    return output, (time.perf_counter() - start) * 1000


def _detections(
    output: np.ndarray,
    img_size: int,
    height: int,
    width: int,
    nkpt: int = 0,
    rect_stride: int | None = None,
) -> np.ndarray:
    """Raw output of one image -> (K, 6 + 3 * nkpt) x1, y1, x2, y2, score, class (then the
    keypoints) in original pixels."""
    options = Options()
    rows = non_max_suppression(
        output[0], conf=options.conf, iou=options.iou, max_det=options.max_det, nkpt=nkpt
    )
    rows = rows.astype(np.float64)
    rows[:, :4] = scale_boxes(rows[:, :4], img_size, height, width, rect_stride)
    if nkpt:
        keypoints = scale_keypoints(
            rows[:, 6:].reshape(-1, nkpt, 3), img_size, height, width, rect_stride
        )
        rows[:, 6:] = keypoints.reshape(len(rows), -1)
    return rows


def keypoint_shift(reference: np.ndarray, candidate: np.ndarray) -> float:
    """Mean distance in pixels between two rows' keypoints (x, y after the first 6 columns)."""
    ref, cand = reference[6:].reshape(-1, 3), candidate[6:].reshape(-1, 3)
    return float(np.hypot(*(ref[:, :2] - cand[:, :2]).T).mean())


def _iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    x2 = np.minimum(a[:, None, 2], b[None, :, 2])
    y2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(union > 0, inter / union, 0.0)


def match_detections(reference: np.ndarray, candidate: np.ndarray) -> list[tuple[int, int]]:
    """Greedy one-to-one pairs (reference index, candidate index): same class, IoU > 0.8,
    highest IoU first."""
    if not len(reference) or not len(candidate):
        return []
    overlap = _iou_matrix(reference[:, :4], candidate[:, :4])
    overlap[reference[:, 5][:, None] != candidate[:, 5][None, :]] = 0.0
    pairs: list[tuple[int, int]] = []
    used_ref, used_cand = set(), set()
    for flat in np.argsort(-overlap, axis=None, kind="stable"):
        i, j = divmod(int(flat), overlap.shape[1])
        if overlap[i, j] <= MATCH_IOU:
            break
        if i not in used_ref and j not in used_cand:
            pairs.append((i, j))
            used_ref.add(i)
            used_cand.add(j)
    return pairs


def measure(
    reference_model: bytes,
    candidate_model: bytes | str,
    images: list[np.ndarray],
    img_size: int,
    nkpt: int = 0,
    candidate_runtime: str = "onnxruntime",
    rect_stride: int | None = None,
) -> Agreement:
    """Compare the candidate (run by `candidate_runtime`) with the reference (onnxruntime) on BGR
    images (the held-out ones); a pose model (nkpt keypoints) is judged on its keypoints too; a
    `--rect` export (`rect_stride`) on each image's minimum rectangle, as the server runs it."""
    session = server_session(reference_model)
    batch = session.get_inputs()[0].shape[0]
    batch = batch if isinstance(batch, int) and batch > 0 else 1
    name = session.get_inputs()[0].name
    reference: Runner = lambda tensor: session.run(None, {name: tensor})[0]  # noqa: E731
    candidate = RUNNERS[candidate_runtime](candidate_model)
    tensors = [
        np.repeat(to_tensor(letterbox(im, img_size, rect_stride)), batch, axis=0) for im in images
    ]
    for runner in (reference, candidate):  # first runs allocate; keep them out of the timing
        _run(runner, tensors[0])

    times: dict[int, list[float]] = {0: [], 1: []}
    outputs: dict[int, list[np.ndarray]] = {0: [], 1: []}
    rounds = max(1, math.ceil(MIN_TIMED_RUNS / len(tensors)))
    for round_ in range(rounds):
        for k, tensor in enumerate(tensors):
            order = (0, 1) if (round_ + k) % 2 == 0 else (1, 0)
            for which in order:
                output, ms = _run((reference, candidate)[which], tensor)
                times[which].append(ms)
                if round_ == 0:
                    outputs[which].append(output)

    shifts: list[float] = []
    keypoint_shifts: list[float] = []
    score_diffs: list[float] = [0.0]
    total = matched = extra = mismatches = 0
    for image, ref_out, cand_out in zip(images, outputs[0], outputs[1], strict=True):
        height, width = image.shape[:2]
        ref = _detections(ref_out, img_size, height, width, nkpt, rect_stride)
        cand = _detections(cand_out, img_size, height, width, nkpt, rect_stride)
        pairs = match_detections(ref, cand)
        if nkpt:
            kept = []
            for i, j in pairs:
                shift = keypoint_shift(ref[i], cand[j])
                keypoint_shifts.append(shift)
                size = float(np.sqrt(max((ref[i, 2] - ref[i, 0]) * (ref[i, 3] - ref[i, 1]), 1.0)))
                if shift <= MAX_KEYPOINT_SHIFT * size:
                    kept.append((i, j))
            mismatches += len(pairs) - len(kept)
            pairs = kept
        total += len(ref)
        matched += len(pairs)
        extra += len(cand) - len(pairs)
        for i, j in pairs:
            shifts.append(float(np.abs(ref[i, :4] - cand[j, :4]).max()))
            score_diffs.append(abs(float(ref[i, 4] - cand[j, 4])))
    return Agreement(
        mean_keypoint_shift_px=float(np.mean(keypoint_shifts)) if keypoint_shifts else 0.0,
        max_keypoint_shift_px=max(keypoint_shifts, default=0.0),
        keypoint_mismatches=mismatches,
        reference=total,
        matched=matched,
        extra=extra,
        mean_shift_px=float(np.mean(shifts)) if shifts else 0.0,
        max_shift_px=max(shifts, default=0.0),
        max_score_diff=max(score_diffs),
        reference_p50_ms=float(np.median(times[0])),
        candidate_p50_ms=float(np.median(times[1])),
        images=len(images),
    )
