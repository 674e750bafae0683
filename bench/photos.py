"""The 12-megapixel phone photo (4032x3024 JPEG) sent beside the ~1 MP samples, made in the run
(a 3 MB file is not worth committing): zidane.jpg scaled up, with sensor-like noise so that the
JPEG carries as much detail, and so costs as much to decode, as a phone's."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

WIDTH, HEIGHT = 4032, 3024
QUALITY = 92  # a phone camera's usual JPEG quality


def twelve_megapixel(source: Path, target: Path, seed: int = 3, scale: float = 1.0) -> Path:
    """The photo; `scale` < 1 makes a smaller one the same way (the smoke run's)."""
    size = (round(WIDTH * scale), round(HEIGHT * scale))
    image = cv2.resize(cv2.imread(str(source)), size, interpolation=cv2.INTER_CUBIC)
    noise = np.random.default_rng(seed).normal(0, 6, image.shape)
    noisy = np.clip(image.astype(np.float32) + noise, 0, 255).astype(np.uint8)
    ok, data = cv2.imencode(".jpg", noisy, [cv2.IMWRITE_JPEG_QUALITY, QUALITY])
    if not ok:
        raise RuntimeError("OpenCV could not encode the 12 MP JPEG")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data.tobytes())
    return target
