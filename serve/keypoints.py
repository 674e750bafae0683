"""Keypoints (pose models): back to the original image's pixels, and the skeleton drawn on it.

A pose model's rows carry, after the box, score and class, `nkpt` triples (x, y, score) with x and
y in letterboxed pixels. They go back exactly as the official pose pipeline takes them: subtract
the letterbox pad, divide by the gain, clip x to [0, width] and y to [0, height]; scores are kept.
"""

from __future__ import annotations

import cv2
import numpy as np

from serve.letterbox import letterbox_geometry

# The COCO person skeleton (0-based keypoint indices, COCO keypoint order), as the official drawing
# links it: legs, hips, torso, arms, then the face.
SKELETON = (
    (15, 13), (13, 11), (16, 14), (14, 12), (11, 12), (5, 11), (6, 12), (5, 6), (5, 7), (6, 8),
    (7, 9), (8, 10), (1, 2), (0, 1), (0, 2), (1, 3), (2, 4), (3, 5), (4, 6),
)  # fmt: skip
VISIBLE = 0.5  # the official drawing hides a keypoint (and its limbs) scored under this
_FACE, _ARM, _LEG = (0, 255, 0), (255, 128, 0), (255, 51, 255)  # BGR


def scale_keypoints(
    keypoints: np.ndarray, size: int, height: int, width: int, stride: int | None = None
) -> np.ndarray:
    """(K, nkpt, 3) in letterboxed pixels -> original pixels, clipped like the official code."""
    gain, pad_x, pad_y = letterbox_geometry(size, height, width, stride)
    out = keypoints.astype(np.float64, copy=True)
    out[..., 0] = ((out[..., 0] - pad_x) / gain).clip(0, width)
    out[..., 1] = ((out[..., 1] - pad_y) / gain).clip(0, height)
    return out


def undo_keypoint_reduction(
    keypoints: np.ndarray, factor: int, height: int, width: int
) -> np.ndarray:
    """Keypoints in an image decoded at 1/factor -> the original's pixels, clipped to it."""
    out = keypoints.copy()
    out[..., 0] = (out[..., 0] * float(factor)).clip(0, width)
    out[..., 1] = (out[..., 1] * float(factor)).clip(0, height)
    return out


def _limb_color(a: int, b: int) -> tuple[int, int, int]:
    if a <= 4 and b <= 4:
        return _FACE
    return _ARM if max(a, b) <= 10 else _LEG


def draw_skeleton(image: np.ndarray, keypoints: np.ndarray, thickness: int) -> None:
    """Draw each person's visible keypoints (score >= 0.5) and the limbs joining two visible ones,
    in place. Only the 17-keypoint COCO layout has a skeleton; other layouts get points only."""
    radius = max(thickness + 2, 3)
    coco = keypoints.shape[1] == 17
    for person in keypoints:
        points = np.rint(person[:, :2]).astype(np.int64).tolist()
        visible = (person[:, 2] >= VISIBLE).tolist()
        if coco:
            for a, b in SKELETON:
                if visible[a] and visible[b]:
                    color = _limb_color(a, b)
                    cv2.line(image, points[a], points[b], color, thickness, cv2.LINE_AA)
        for k, (x, y) in enumerate(points):
            if visible[k]:
                color = _FACE if k <= 4 else (_ARM if k <= 10 else _LEG)
                cv2.circle(image, (x, y), radius, color, -1, cv2.LINE_AA)
