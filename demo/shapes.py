"""Synthetic images of filled shapes with their true boxes, like those the bundled model learned.

The bundled checkpoint (weights/shapes-yolov7-tiny.pt) was trained on filled circles, squares and
triangles on noisy gradient backgrounds, 1 to 6 per image, each 1/12 to 1/3 of the image side.
This draws new ones from a seed, so a demo or an accuracy test can check the detector against
known boxes. `python -m demo.shapes --out samples/shapes --count 6` writes PNGs and truth.json.
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np

CLASSES = ("circle", "square", "triangle")


@dataclass
class Shape:
    label: str
    class_id: int
    box: list[int]  # x1, y1, x2, y2 in pixels, inclusive of the drawn edge


def _background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    start, end = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
    angle = rng.uniform(0, 2 * math.pi)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    t = (xx * math.cos(angle) + yy * math.sin(angle)) / max(height, width)
    t = (t - t.min()) / max(float(t.max() - t.min()), 1e-6)
    image = start[None, None, :] * (1 - t[..., None]) + end[None, None, :] * t[..., None]
    image += rng.normal(0, 12, image.shape)
    return image.clip(0, 255).astype(np.uint8)


def _distinct_color(rng: np.random.Generator, background: np.ndarray) -> tuple[int, int, int]:
    """A fill colour that stands out from the background around it."""
    mean = background.reshape(-1, 3).mean(0)
    for _ in range(50):
        color = rng.integers(0, 256, 3)
        if np.abs(color - mean).sum() > 180:
            break
    return tuple(int(c) for c in color)


def _draw(
    image: np.ndarray, class_id: int, cx: int, cy: int, size: int, color: tuple[int, int, int]
) -> None:
    half = size // 2
    if class_id == 0:
        cv2.circle(image, (cx, cy), half, color, -1, cv2.LINE_AA)
    elif class_id == 1:
        cv2.rectangle(image, (cx - half, cy - half), (cx + half, cy + half), color, -1)
    else:
        # upright, filling its square: the triangles the model was trained on
        points = np.array([(cx, cy - half), (cx - half, cy + half), (cx + half, cy + half)])
        cv2.fillPoly(image, [points.astype(np.int32)], color, cv2.LINE_AA)


def make_image(
    rng: np.random.Generator, height: int = 320, width: int = 320
) -> tuple[np.ndarray, list[Shape]]:
    """One image with 1 to 6 non-overlapping shapes and their true boxes."""
    image = _background(rng, height, width)
    side = min(height, width)
    shapes: list[Shape] = []
    occupied: list[tuple[int, int, int, int]] = []
    for _ in range(int(rng.integers(1, 7))):
        for _attempt in range(30):
            size = int(rng.uniform(side / 12, side / 3))
            cx = int(rng.integers(size // 2 + 1, width - size // 2 - 1))
            cy = int(rng.integers(size // 2 + 1, height - size // 2 - 1))
            box = (cx - size // 2, cy - size // 2, cx + size // 2, cy + size // 2)
            if all(
                box[2] < o[0] or box[0] > o[2] or box[3] < o[1] or box[1] > o[3] for o in occupied
            ):
                break
        else:
            continue
        class_id = int(rng.integers(0, 3))
        mask = np.zeros((height, width), np.uint8)
        _draw(mask, class_id, cx, cy, size, (255, 255, 255))
        _draw(
            image,
            class_id,
            cx,
            cy,
            size,
            _distinct_color(rng, image[box[1] : box[3], box[0] : box[2]]),
        )
        ys, xs = np.nonzero(mask > 127)
        shapes.append(
            Shape(
                CLASSES[class_id],
                class_id,
                [int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())],
            )
        )
        occupied.append(box)
    return image, shapes


def write_samples(out: Path, count: int, seed: int, sizes: list[tuple[int, int]]) -> Path:
    """Write `count` PNGs and a truth.json mapping file name -> shapes; return truth.json."""
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    truth: dict[str, list[dict]] = {}
    for i in range(count):
        height, width = sizes[i % len(sizes)]
        image, shapes = make_image(rng, height, width)
        name = f"shapes-{i:02d}.png"
        cv2.imwrite(str(out / name), image)
        truth[name] = [asdict(s) for s in shapes]
    path = out / "truth.json"
    path.write_text(json.dumps(truth, indent=1) + "\n")
    return path


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m demo.shapes", description=__doc__)
    p.add_argument("--out", type=Path, default=Path("samples/shapes"))
    p.add_argument("--count", type=int, default=6)
    p.add_argument("--seed", type=int, default=7)
    args = p.parse_args()
    # 320 x 320: the size the model was trained at (its training never saw letterbox padding)
    print(write_samples(args.out, args.count, args.seed, [(320, 320)]))


if __name__ == "__main__":
    main()
