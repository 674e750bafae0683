"""The official pose pipeline (yolov7-w6-pose), written again for the tests from the reference
facts (../shared/reference/yolov7-checkpoints.md, "Pose"), without the server's or exporter's code:
plain loops, float64 where it does not matter. The letterbox and tensor are reference.py's.

    Decode, per level and anchor cell: the first 5 + nc values through sigmoid, xy = (2s - 0.5 +
    grid) * stride, wh = (2s)^2 * anchor; keypoint x, y = (2k - 0.5 + grid) * stride (no sigmoid),
    keypoint score = sigmoid.
    NMS: obj > conf; score = obj * cls (no one-class shortcut); best class; score > conf; the
    keypoints carried along; per class; IoU > iou suppresses; max_det kept.
    Back: boxes as for detection; keypoint x, y minus the pad, over the gain, clipped to the image.
"""

from __future__ import annotations

import math

import numpy as np
import onnxruntime as ort

from tests.support.reference import _iou, reference_letterbox, reference_tensor


def _sigmoid(v: float) -> float:
    return 1.0 / (1.0 + math.exp(-v))


def reference_pose_decode(
    raw: np.ndarray, stride: float, anchors: np.ndarray, nc: int, nkpt: int
) -> np.ndarray:
    """One level's head output (na * no, ny, nx) -> (na * ny * nx, 5 + nc + 3 * nkpt) rows,
    anchors (na, 2) in pixels. Channel c of anchor a is raw[a * no + c] (the official view)."""
    na = anchors.shape[0]
    no = 5 + nc + 3 * nkpt
    _, ny, nx = raw.shape
    rows = []
    for a in range(na):
        for gy in range(ny):
            for gx in range(nx):
                p = [float(v) for v in raw[a * no : (a + 1) * no, gy, gx]]
                s = [_sigmoid(v) for v in p[: 5 + nc]]
                row = [
                    (2 * s[0] - 0.5 + gx) * stride,
                    (2 * s[1] - 0.5 + gy) * stride,
                    (2 * s[2]) ** 2 * anchors[a, 0],
                    (2 * s[3]) ** 2 * anchors[a, 1],
                    *s[4:],
                ]
                for k in range(nkpt):
                    kx, ky, ks = p[5 + nc + 3 * k : 5 + nc + 3 * k + 3]
                    row += [(2 * kx - 0.5 + gx) * stride, (2 * ky - 0.5 + gy) * stride]
                    row.append(_sigmoid(ks))
                rows.append(row)
    return np.asarray(rows)


def reference_pose_nms(rows: np.ndarray, nkpt: int, conf=0.25, iou=0.45, max_det=300):
    """Decoded rows -> list of (x1, y1, x2, y2, score, class, keypoints[nkpt][3]), best first."""
    nc = rows.shape[1] - 5 - 3 * nkpt
    candidates = []
    for row in rows.tolist():
        obj = row[4]
        if not obj > conf:
            continue
        products = [np.float32(np.float32(c) * np.float32(obj)) for c in row[5 : 5 + nc]]
        best = int(np.argmax(products))
        score = float(products[best])
        if not score > conf:
            continue
        cx, cy, w, h = row[:4]
        flat = row[5 + nc :]
        keypoints = [flat[3 * k : 3 * k + 3] for k in range(nkpt)]
        candidates.append((cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2, score, best, keypoints))
    candidates.sort(key=lambda c: -c[4])
    kept: list[tuple] = []
    for cand in candidates[:30000]:
        if len(kept) == max_det:
            break
        if not any(other[5] == cand[5] and _iou(cand, other) > iou for other in kept):
            kept.append(cand)
    return kept


def reference_pose_scale_back(dets, size: int, h0: int, w0: int) -> list[dict]:
    gain = min(size / h0, size / w0)
    pad_x, pad_y = (size - w0 * gain) / 2, (size - h0 * gain) / 2
    out = []
    for x1, y1, x2, y2, score, cls, keypoints in dets:
        x1, x2 = [min(max((v - pad_x) / gain, 0.0), w0) for v in (x1, x2)]
        y1, y2 = [min(max((v - pad_y) / gain, 0.0), h0) for v in (y1, y2)]
        points = [
            [min(max((kx - pad_x) / gain, 0.0), w0), min(max((ky - pad_y) / gain, 0.0), h0), ks]
            for kx, ky, ks in keypoints
        ]
        out.append(
            {"box": [x1, y1, x2, y2], "score": score, "class_id": int(cls), "keypoints": points}
        )
    return out


def reference_pose_detect(
    session: ort.InferenceSession, image: np.ndarray, size: int, nkpt: int = 17, **nms_options
) -> list[dict]:
    """The whole official pose pipeline on one BGR image with a raw-layout session."""
    tensor = reference_tensor(reference_letterbox(image, size))
    output = session.run(None, {session.get_inputs()[0].name: tensor})[0]
    dets = reference_pose_nms(output[0], nkpt, **nms_options)
    return reference_pose_scale_back(dets, size, image.shape[0], image.shape[1])


def reference_pose_detect_end2end(
    session: ort.InferenceSession, image: np.ndarray, size: int, nkpt: int = 17
) -> list[dict]:
    """The end2end layout: NMS ran in the graph, keypoints after the score; only the way back."""
    tensor = reference_tensor(reference_letterbox(image, size))
    rows = session.run(None, {session.get_inputs()[0].name: tensor})[0]
    dets = [
        (*r[1:5], r[6], round(r[5]), [r[7 + 3 * k : 10 + 3 * k] for k in range(nkpt)])
        for r in rows.tolist()
        if r[0] == 0
    ]
    dets.sort(key=lambda d: -d[4])
    return reference_pose_scale_back(dets, size, image.shape[0], image.shape[1])


def assert_same_poses(got: list[dict], expected: list[dict], px_tol=1.0, score_tol=1e-3) -> None:
    """Same count; each expected person has a distinct match: same class, box corners and every
    keypoint's x, y within px_tol, the score and every keypoint score within score_tol."""
    assert len(got) == len(expected), f"{len(got)} detections, expected {len(expected)}"
    unmatched = list(got)

    def close(cand: dict, exp: dict) -> bool:
        if cand["class_id"] != exp["class_id"] or abs(cand["score"] - exp["score"]) > score_tol:
            return False
        if max(abs(a - b) for a, b in zip(cand["box"], exp["box"], strict=True)) > px_tol:
            return False
        if len(cand["keypoints"]) != len(exp["keypoints"]):
            return False
        return all(
            abs(c[0] - e[0]) <= px_tol
            and abs(c[1] - e[1]) <= px_tol
            and abs(c[2] - e[2]) <= score_tol
            for c, e in zip(cand["keypoints"], exp["keypoints"], strict=True)
        )

    for exp in expected:
        match = next((cand for cand in unmatched if close(cand, exp)), None)
        assert match is not None, f"no match for {exp} among {unmatched[:3]}"
        unmatched.remove(match)
