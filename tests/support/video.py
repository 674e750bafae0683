"""Video clips for the tests: moving shapes with their true boxes, written by OpenCV's
VideoWriter (reliability/video_clips.py makes the odd ones, and is re-exported here)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from demo.shapes import _background, _draw
from reliability.video_clips import (  # noqa: F401 (re-exported for the tests)
    audio_only_bytes,
    audio_only_clip,
    clip_bytes,
    corrupt,
    cut,
    noise_clip,
    rotated,
    sliding,
    variable_rate_bytes,
    variable_rate_clip,
    write_clip,
    zero_frames,
)

CONTENT_TYPES = {".mp4": "video/mp4", ".avi": "video/x-msvideo", ".mkv": "video/x-matroska"}


@dataclass(frozen=True)
class Mover:
    class_id: int
    size: int
    lane: int  # the horizontal band it moves in: shapes never overlap
    x: float  # centre at frame 0
    speed: float  # pixels per frame, bouncing off the sides
    color: tuple[int, int, int]


def _position(mover: Mover, frame: int, width: int) -> int:
    """The centre's x at `frame`, bouncing between the sides."""
    low, high = mover.size // 2 + 1, width - mover.size // 2 - 2
    span = high - low
    travelled = (mover.x - low + mover.speed * frame) % (2 * span)
    return int(low + (travelled if travelled <= span else 2 * span - travelled))


def moving_shapes(
    frames: int, width: int = 320, height: int = 320, seed: int = 0, lanes: int = 3
) -> tuple[list[np.ndarray], list[list[dict]]]:
    """`frames` pictures of 1-`lanes` shapes sliding across a fixed noisy gradient, and each
    frame's true boxes ({"box", "class_id"}, inclusive of the drawn edge, as demo.shapes)."""
    rng = np.random.default_rng(seed)
    background = _background(rng, height, width)
    lane_height = height // lanes
    movers = []
    for lane in range(lanes):
        if lane and rng.random() < 0.25:
            continue
        size = int(rng.uniform(min(width, height) / 10, lane_height - 8))
        mean = background[lane * lane_height : (lane + 1) * lane_height].reshape(-1, 3).mean(0)
        color = rng.integers(0, 256, 3)
        while np.abs(color - mean).sum() <= 180:
            color = rng.integers(0, 256, 3)
        movers.append(
            Mover(
                int(rng.integers(0, 3)),
                size,
                lane,
                float(rng.uniform(size, width - size)),
                float(rng.uniform(1.5, 6.0) * rng.choice([-1, 1])),
                (int(color[0]), int(color[1]), int(color[2])),
            )
        )
    pictures, truth = [], []
    for index in range(frames):
        image = background.copy()
        boxes = []
        for mover in movers:
            cx = _position(mover, index, width)
            cy = mover.lane * lane_height + lane_height // 2
            mask = np.zeros((height, width), np.uint8)
            _draw(mask, mover.class_id, cx, cy, mover.size, (255, 255, 255))
            _draw(image, mover.class_id, cx, cy, mover.size, mover.color)
            ys, xs = np.nonzero(mask > 127)
            box = [int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())]
            boxes.append({"box": box, "class_id": mover.class_id})
        pictures.append(image)
        truth.append(boxes)
    return pictures, truth


def read_frames(path: Path) -> list[np.ndarray]:
    """Every frame of the clip, as OpenCV decodes it (what the server sees)."""
    capture = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    capture.release()
    return frames
