"""Non-maximum suppression with the official YOLOv7 semantics, in numpy."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

MAX_WH = 4096  # class offset that keeps per-class NMS apart
MAX_NMS = 30000  # most candidates that go into NMS


def xywh_to_xyxy(xywh: np.ndarray) -> np.ndarray:
    out = np.empty_like(xywh)
    half_w, half_h = xywh[:, 2] / 2, xywh[:, 3] / 2
    out[:, 0] = xywh[:, 0] - half_w
    out[:, 1] = xywh[:, 1] - half_h
    out[:, 2] = xywh[:, 0] + half_w
    out[:, 3] = xywh[:, 1] + half_h
    return out


def greedy_nms(boxes: np.ndarray, scores: np.ndarray, iou: float, limit: int) -> np.ndarray:
    """Indices kept by greedy NMS, best score first, like torchvision.ops.nms.

    A box is suppressed when its IoU with a kept box is strictly greater than `iou` (a NaN IoU
    suppresses nothing). Stops once `limit` boxes are kept: later ones could not be returned.
    """
    order = np.argsort(-scores, kind="stable")
    x1, y1, x2, y2 = boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3]
    areas = (x2 - x1) * (y2 - y1)
    keep: list[int] = []
    with np.errstate(divide="ignore", invalid="ignore"):
        while order.size and len(keep) < limit:
            best, rest = order[0], order[1:]
            keep.append(int(best))
            width = np.maximum(np.minimum(x2[best], x2[rest]) - np.maximum(x1[best], x1[rest]), 0)
            height = np.maximum(np.minimum(y2[best], y2[rest]) - np.maximum(y1[best], y1[rest]), 0)
            inter = width * height
            overlap = inter / (areas[best] + areas[rest] - inter)
            order = rest[~(overlap > iou)]
    return np.asarray(keep, dtype=np.int64)


def non_max_suppression(
    prediction: np.ndarray,
    conf: float = 0.25,
    iou: float = 0.45,
    classes: Sequence[int] | None = None,
    agnostic: bool = False,
    max_det: int = 300,
    nkpt: int = 0,
) -> np.ndarray:
    """Raw (A, 5 + nc [+ 3 * nkpt]) rows of one image -> (K, 6 [+ 3 * nkpt]) rows
    [x1, y1, x2, y2, score, class, then each keypoint's x, y, score carried along].

    Official semantics: keep obj > conf; score = obj * cls (obj alone when nc == 1, except for
    pose models, whose official NMS multiplies); best class only; keep score > conf; optional
    class filter; at most 30000 by score; per-class NMS by offsetting boxes with class * 4096 (no
    offset when agnostic); at most max_det kept.
    """
    prediction = np.asarray(prediction, dtype=np.float32)
    nc = prediction.shape[1] - 5 - 3 * nkpt
    rows = prediction[prediction[:, 4] > conf]
    if not rows.shape[0]:
        return np.zeros((0, 6 + 3 * nkpt), dtype=np.float32)
    objectness = rows[:, 4:5]
    class_scores = objectness if nc == 1 and not nkpt else rows[:, 5 : 5 + nc] * objectness
    best = class_scores.argmax(axis=1)
    scores = class_scores[np.arange(len(best)), best]
    kept = scores > conf
    if classes is not None:
        kept &= np.isin(best, np.asarray(list(classes), dtype=np.int64))
    boxes = xywh_to_xyxy(rows[kept, :4])
    scores, best, carried = scores[kept], best[kept], rows[kept, 5 + nc :]
    if not scores.shape[0]:
        return np.zeros((0, 6 + 3 * nkpt), dtype=np.float32)
    if scores.shape[0] > MAX_NMS:
        top = np.argsort(-scores, kind="stable")[:MAX_NMS]
        boxes, scores, best, carried = boxes[top], scores[top], best[top], carried[top]
    labels = best.astype(np.float32)
    offsets = (labels * (0 if agnostic else MAX_WH))[:, None]
    keep = greedy_nms(boxes + offsets, scores, iou, max_det)
    return np.concatenate(
        [boxes[keep], scores[keep, None], labels[keep, None], carried[keep]], axis=1
    )
