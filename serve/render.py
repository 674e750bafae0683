"""Draw detections on the picture and encode it as JPEG or PNG."""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np

from serve.keypoints import draw_skeleton

# A fixed palette (BGR) so that a class keeps its colour from one answer to the next.
_PALETTE = (
    (56, 56, 255),
    (151, 157, 255),
    (31, 112, 255),
    (29, 178, 255),
    (49, 210, 207),
    (10, 249, 72),
    (23, 204, 146),
    (134, 219, 61),
    (52, 147, 26),
    (187, 212, 0),
    (168, 153, 44),
    (255, 194, 0),
    (147, 69, 52),
    (255, 115, 100),
    (236, 24, 0),
    (255, 56, 132),
    (133, 0, 82),
    (255, 56, 203),
    (200, 149, 255),
    (199, 55, 255),
)


def draw(
    image: np.ndarray,
    boxes: np.ndarray,
    scores: np.ndarray,
    class_ids: np.ndarray,
    label: Callable[[int], str],
    keypoints: np.ndarray | None = None,
) -> np.ndarray:
    """A copy of the BGR image with each box and its "label score" drawn; for a pose model, each
    person's skeleton too (keypoints scored under 0.5 hidden, as the official drawing does)."""
    out = image.copy()
    height, width = out.shape[:2]
    thickness = max(1, round(0.002 * (height + width) / 2) + 1)
    font_scale = thickness / 3
    corners = np.rint(boxes).astype(np.int64).tolist()
    for (x1, y1, x2, y2), score, class_id in zip(corners, scores, class_ids, strict=True):
        color = _PALETTE[int(class_id) % len(_PALETTE)]
        cv2.rectangle(out, (x1, y1), (x2, y2), color, thickness, cv2.LINE_AA)
        text = f"{label(int(class_id))} {score:.2f}"
        font_thickness = max(thickness - 1, 1)
        (text_w, text_h), _ = cv2.getTextSize(
            text, cv2.FONT_HERSHEY_SIMPLEX, font_scale, font_thickness
        )
        top = y1 - text_h - 3 if y1 - text_h - 3 >= 0 else y1 + text_h + 3
        cv2.rectangle(out, (x1, y1), (x1 + text_w, top), color, -1, cv2.LINE_AA)
        baseline = y1 - 2 if top < y1 else top - 2
        cv2.putText(
            out,
            text,
            (x1, baseline),
            cv2.FONT_HERSHEY_SIMPLEX,
            font_scale,
            (255, 255, 255),
            font_thickness,
            cv2.LINE_AA,
        )
    if keypoints is not None:
        draw_skeleton(out, keypoints, thickness)
    return out


def encode(image: np.ndarray, media_type: str) -> bytes:
    """BGR array -> JPEG (quality 90) or PNG bytes."""
    if media_type == "image/png":
        ok, buffer = cv2.imencode(".png", image, [cv2.IMWRITE_PNG_COMPRESSION, 3])
    else:
        ok, buffer = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 90])
    if not ok:
        raise RuntimeError(f"could not encode the picture as {media_type}")
    return buffer.tobytes()
