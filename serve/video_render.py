"""The annotated clip (`Accept: video/mp4`): each computed frame with its boxes drawn, as
detect.py writes it, encoded by OpenCV's VideoWriter into a file of the server's private
directory.

The codec is MPEG-4 Part 2 ('mp4v'): the one MP4 encoder opencv-python-headless's FFmpeg carries
(its 'avc1' needs a hardware H.264 encoder that a CPU instance lacks).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from serve.detector import Detections
from serve.errors import UnencodableClip
from serve.render import draw

FOURCC = "mp4v"


class AnnotatedClip:
    """Frames drawn and written one at a time; `close()` finishes the file."""

    def __init__(self, path: Path, fps: float, label: Callable[[int], str]):
        self._path, self._fps, self._label = path, fps, label
        self._writer: cv2.VideoWriter | None = None

    def add(self, pixels: np.ndarray, result: Detections) -> None:
        if self._writer is None:  # sized by the first frame (rotation already applied)
            height, width = pixels.shape[:2]
            writer = cv2.VideoWriter(
                str(self._path), cv2.VideoWriter.fourcc(*FOURCC), self._fps, (width, height)
            )
            if not writer.isOpened():
                raise UnencodableClip(f"OpenCV cannot encode {FOURCC} at {width} x {height}")
            self._writer = writer
        drawn = draw(
            pixels, result.boxes, result.scores, result.class_ids, self._label, result.keypoints
        )
        self._writer.write(drawn)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.release()
            self._writer = None
