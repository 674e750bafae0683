"""Pictures for the tests: filled shapes on noisy gradients (what the bundled checkpoint was trained
on), and encoders."""

from __future__ import annotations

import struct
from pathlib import Path

import cv2
import numpy as np


def shapes_image(width: int, height: int, seed: int) -> np.ndarray:
    """1-6 filled circles, squares, triangles (1/12 to 1/3 of the short side), noisy gradient."""
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    start, end = rng.uniform(30, 220, 3), rng.uniform(30, 220, 3)
    t = (xs / max(width - 1, 1) * 0.6 + ys / max(height - 1, 1) * 0.4)[..., None]
    image = start * (1 - t) + end * t + rng.normal(0, 12, (height, width, 3))
    image = np.clip(image, 0, 255).astype(np.uint8)
    short = min(width, height)
    for _ in range(int(rng.integers(1, 7))):
        side = int(rng.uniform(short / 12, short / 3))
        cx = int(rng.uniform(side / 2, width - side / 2))
        cy = int(rng.uniform(side / 2, height - side / 2))
        color = tuple(int(c) for c in rng.integers(0, 256, 3))
        kind = int(rng.integers(0, 3))
        if kind == 0:
            cv2.circle(image, (cx, cy), side // 2, color, -1, cv2.LINE_AA)
        elif kind == 1:
            cv2.rectangle(
                image, (cx - side // 2, cy - side // 2), (cx + side // 2, cy + side // 2), color, -1
            )
        else:
            pts = np.array(
                [
                    [cx, cy - side // 2],
                    [cx - side // 2, cy + side // 2],
                    [cx + side // 2, cy + side // 2],
                ]
            )
            cv2.fillPoly(image, [pts.astype(np.int32)], color, cv2.LINE_AA)
    return image


def encode(image: np.ndarray, ext: str = ".png", params: list[int] | None = None) -> bytes:
    ok, buffer = cv2.imencode(ext, image, params or [])
    assert ok
    return buffer.tobytes()


def decode(data: bytes) -> np.ndarray:
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None
    return image


def exif(entries: list[tuple[int, int, int, int]], order: str = "<") -> bytes:
    """An EXIF APP1 payload: one IFD of (tag, type, count, value) entries (a SHORT value), for
    reliability.corpus.with_app1; [(0x0112, 3, 1, n)] is orientation n."""
    head = b"II*\x00" if order == "<" else b"MM\x00*"
    tiff = head + struct.pack(order + "IH", 8, len(entries))
    for tag, kind, count, value in entries:
        tiff += struct.pack(order + "HHIHH", tag, kind, count, value, 0)
    return b"Exif\x00\x00" + tiff + struct.pack(order + "I", 0)


def write_photo_crops(folder: Path, per_photo: int = 10) -> Path:
    """Crops (every other one mirrored) of the bundled photos, written as JPEGs into `folder`:
    real-photo calibration images for models of people (the pose INT8 tests)."""
    from tests.support.server import SAMPLES

    folder.mkdir(parents=True, exist_ok=True)
    for name in ("bus", "zidane"):
        image = cv2.imread(str(SAMPLES / f"{name}.jpg"), cv2.IMREAD_COLOR)
        height, width = image.shape[:2]
        for k in range(per_photo):
            x0, y0 = (k * 37) % (width // 3), (k * 53) % (height // 3)
            crop = image[y0 : y0 + 2 * height // 3, x0 : x0 + 2 * width // 3]
            crop = crop[:, ::-1] if k % 2 else crop
            cv2.imwrite(str(folder / f"{name}-{k:02d}.jpg"), crop)
    return folder
