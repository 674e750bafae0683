"""The images an INT8 export calibrates on, and the held-out ones it is judged on.

One directory, split deterministically: images sorted by name, every 4th one (the 4th, 8th, ...)
held out for the agreement and speed measurement, the rest used for calibration. So no image is
both calibrated on and judged on, the split does not depend on the file system's listing order,
and both halves sample the whole directory (not, say, only the last-numbered images).
Images are read and preprocessed exactly as the server does (serve/letterbox.py), so the
calibrated activation ranges are the ones the served model sees.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from export.errors import ExportError
from serve.letterbox import letterbox, to_tensor

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}
HOLDOUT_EVERY = 4  # every 4th image is held out: 25 % for judging, 75 % for calibration
MIN_CALIBRATION = 12  # below this the activation ranges rest on a handful of images
MIN_HOLDOUT = 4


@dataclass
class Split:
    calibration: list[Path]
    holdout: list[Path]


def split_images(folder: Path) -> Split:
    """The directory's images, split; ExportError when there are too few to split."""
    if not folder.exists():
        raise ExportError(f"--calibration directory not found: {folder}")
    if not folder.is_dir():
        raise ExportError(f"--calibration must be a directory of images, got a file: {folder}")
    images = sorted(
        p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
    )
    if not images:
        raise ExportError(f"--calibration directory has no images (.jpg, .png, ...): {folder}")
    holdout = images[HOLDOUT_EVERY - 1 :: HOLDOUT_EVERY]
    calibration = [p for i, p in enumerate(images) if i % HOLDOUT_EVERY != HOLDOUT_EVERY - 1]
    if len(calibration) < MIN_CALIBRATION or len(holdout) < MIN_HOLDOUT:
        need = max(MIN_CALIBRATION * HOLDOUT_EVERY // (HOLDOUT_EVERY - 1), MIN_HOLDOUT * 4)
        raise ExportError(
            f"--calibration directory has {len(images)} images; INT8 needs at least {need} "
            f"({MIN_CALIBRATION} to calibrate on, {MIN_HOLDOUT} held out to measure agreement)"
        )
    for path in images:  # a header check now, so a bad file fails before the slow steps
        if not cv2.haveImageReader(str(path)):
            raise ExportError(f"calibration image not readable: {path}")
    return Split(calibration, holdout)


def read_image(path: Path) -> np.ndarray:
    """BGR uint8, as the server decodes it; ExportError naming an unreadable file."""
    data = np.fromfile(path, dtype=np.uint8)
    image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if image is None:
        raise ExportError(f"calibration image not readable: {path}")
    return image


def load_tensors(paths: list[Path], img_size: int, batch: int) -> list[np.ndarray]:
    """Letterboxed (batch, 3, S, S) float32 tensors, one per image (repeated to a fixed batch)."""
    tensors = []
    for path in paths:
        tensor = to_tensor(letterbox(read_image(path), img_size))
        tensors.append(np.repeat(tensor, batch, axis=0) if batch > 1 else tensor)
    return tensors
