"""The official YOLOv7 pre- and post-processing, written again for the tests from the reference
facts (../shared/reference/yolov7-checkpoints.md), deliberately without the server's code:
plain loops, a canvas instead of copyMakeBorder, float64 where it does not matter.

    Letterbox to S: r = min(S/h, S/w); new size (round(w*r), round(h*r)), Python rounding;
    INTER_LINEAR only when the size changes; top = round(dh - 0.1), left = round(dw - 0.1);
    border 114; BGR -> RGB, HWC -> CHW, /255.
    NMS: obj > conf; score = obj*cls (nc == 1: obj); best class; score > conf; xywh -> xyxy;
    top 30000 by score; per class (offset class*4096) unless agnostic; IoU > 0.45 suppresses;
    300 kept.
    Back: gain = min(S/h0, S/w0); pad = ((S - w0*gain)/2, (S - h0*gain)/2); subtract, divide, clip.
    detect.py's rectangle (letterbox auto=True, a `stride`): dw, dh = np.mod(S - new_w, stride),
    np.mod(S - new_h, stride); the canvas is (new_h + dh) x (new_w + dw); back with that canvas's
    h1 x w1: gain = min(h1/h0, w1/w0); pad = ((w1 - w0*gain)/2, (h1 - h0*gain)/2).
"""

from __future__ import annotations

import cv2
import numpy as np
import onnxruntime as ort


def reference_letterbox(image: np.ndarray, size: int, stride: int | None = None) -> np.ndarray:
    h, w = image.shape[:2]
    r = min(size / h, size / w)
    new_w, new_h = round(w * r), round(h * r)
    if (new_w, new_h) != (w, h):
        image = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    full_w, full_h = size - new_w, size - new_h
    if stride is not None:
        full_w, full_h = int(np.mod(full_w, stride)), int(np.mod(full_h, stride))
    dw, dh = full_w / 2, full_h / 2
    top, left = round(dh - 0.1), round(dw - 0.1)
    canvas = np.full((new_h + full_h, new_w + full_w, 3), 114, dtype=np.uint8)
    canvas[top : top + new_h, left : left + new_w] = image
    return canvas


def reference_tensor(letterboxed: np.ndarray) -> np.ndarray:
    rgb = letterboxed[:, :, [2, 1, 0]]
    chw = np.transpose(rgb, (2, 0, 1)).astype(np.float32) / np.float32(255.0)
    return chw[None].copy()


def _iou(a, b) -> float:
    ix1, iy1, ix2, iy2 = max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])
    inter = max(ix2 - ix1, 0.0) * max(iy2 - iy1, 0.0)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def reference_nms(rows: np.ndarray, conf=0.25, iou=0.45, classes=None, agnostic=False, max_det=300):
    """Raw (A, 5 + nc) rows -> list of (x1, y1, x2, y2, score, class), best first."""
    nc = rows.shape[1] - 5
    candidates = []
    for row in rows.tolist():
        obj = row[4]
        if not obj > conf:
            continue
        if nc == 1:
            best_class, score = 0, obj
        else:
            products = [np.float32(np.float32(c) * np.float32(obj)) for c in row[5:]]
            best_class = int(np.argmax(products))
            score = float(products[best_class])
        if not score > conf:
            continue
        if classes is not None and best_class not in classes:
            continue
        cx, cy, w, h = row[:4]
        candidates.append((cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2, score, best_class))
    candidates.sort(key=lambda c: -c[4])
    candidates = candidates[:30000]
    kept = []
    for cand in candidates:
        if len(kept) == max_det:
            break
        suppressed = False
        for other in kept:
            if (agnostic or other[5] == cand[5]) and _iou(cand, other) > iou:
                suppressed = True
                break
        if not suppressed:
            kept.append(cand)
    return kept


def reference_scale_back(dets, size: int, h0: int, w0: int, canvas: tuple[int, int] | None = None):
    h1, w1 = canvas or (size, size)
    gain = min(h1 / h0, w1 / w0)
    pad_x, pad_y = (w1 - w0 * gain) / 2, (h1 - h0 * gain) / 2
    out = []
    for x1, y1, x2, y2, score, cls in dets:
        x1, x2 = [min(max((v - pad_x) / gain, 0.0), w0) for v in (x1, x2)]
        y1, y2 = [min(max((v - pad_y) / gain, 0.0), h0) for v in (y1, y2)]
        out.append({"box": [x1, y1, x2, y2], "score": score, "class_id": int(cls)})
    return out


def reference_detect(
    session: ort.InferenceSession,
    image: np.ndarray,
    size: int,
    stride: int | None = None,
    **nms_options,
):
    """The whole official pipeline on one BGR image with an onnxruntime session (raw layout);
    `stride`: detect.py's minimum rectangle instead of the square."""
    tensor = reference_tensor(reference_letterbox(image, size, stride))
    name = session.get_inputs()[0].name
    output = session.run(None, {name: tensor})[0]
    dets = reference_nms(output[0], **nms_options)
    return reference_scale_back(dets, size, *image.shape[:2], canvas=tensor.shape[2:])


def reference_detect_end2end(
    session: ort.InferenceSession, image: np.ndarray, size: int, stride: int | None = None
):
    """The end2end layout: NMS ran in the graph; only the way back to the original is left."""
    tensor = reference_tensor(reference_letterbox(image, size, stride))
    name = session.get_inputs()[0].name
    rows = session.run(None, {name: tensor})[0]
    dets = [(r[1], r[2], r[3], r[4], r[6], round(r[5])) for r in rows.tolist() if r[0] == 0]
    dets.sort(key=lambda d: -d[4])
    return reference_scale_back(dets, size, *image.shape[:2], canvas=tensor.shape[2:])


def assert_same_detections(got: list[dict], expected: list[dict], box_tol=1.0, score_tol=1e-3):
    """Same count; each expected detection has a distinct match of the same class with every box
    coordinate within box_tol pixels and the score within score_tol."""
    assert len(got) == len(expected), f"{len(got)} detections, expected {len(expected)}"
    unmatched = list(got)
    for exp in expected:
        match = None
        for cand in unmatched:
            if (
                cand["class_id"] == exp["class_id"]
                and abs(cand["score"] - exp["score"]) <= score_tol
                and max(abs(a - b) for a, b in zip(cand["box"], exp["box"], strict=True)) <= box_tol
            ):
                match = cand
                break
        assert match is not None, f"no match for {exp} among {unmatched[:5]}"
        unmatched.remove(match)


def found_truth(detections: list[dict], truth: list) -> float:
    """The share of true shapes (demo.shapes) found with their label at IoU > 0.5."""

    def iou(a: list[float], b: list[float]) -> float:
        w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
        h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
        union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - w * h
        return w * h / union if union else 0.0

    hits = [
        any(d["label"] == t.label and iou(d["box"], t.box) > 0.5 for d in detections) for t in truth
    ]
    return sum(hits) / len(hits)
