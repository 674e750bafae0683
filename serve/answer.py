"""Detections as JSON objects: what an image's answer lists, and each frame of a clip's."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from serve.detector import Detections


def detection_list(result: Detections, label: Callable[[int], str]) -> list[dict[str, Any]]:
    """[{"box", "score", "class_id", "label"(, "keypoints")}], best first, rounded for JSON."""
    detections = [
        {
            "box": [round(float(v), 2) for v in box],
            "score": round(float(score), 4),
            "class_id": int(class_id),
            "label": label(int(class_id)),
        }
        for box, score, class_id in zip(result.boxes, result.scores, result.class_ids, strict=True)
    ]
    if result.keypoints is not None:  # pose: [x, y, score] per keypoint, in the model's order
        for detection, person in zip(detections, result.keypoints.tolist(), strict=True):
            detection["keypoints"] = [[round(x, 2), round(y, 2), round(s, 4)] for x, y, s in person]
    return detections
