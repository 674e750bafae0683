"""INT8 dynamic quantization's effect on accuracy: the bundled shapes model (real weights), exported
at 320, float32 against INT8, on synthetic images whose true boxes are known."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bench.models import export_onnx, quantize_int8
from demo.evaluate import Tally, match
from demo.shapes import make_image
from serve.detector import Detector
from serve.options import Options

SHAPES = Path(__file__).resolve().parent.parent / "weights" / "shapes-yolov7-tiny.pt"
SIZE = 320


def score(model: Path, images: int, seed: int) -> dict:
    detector = Detector(model, 1, 1)
    detector.load()
    rng = np.random.default_rng(seed)  # the same images for every model
    total = Tally()
    for _ in range(images):
        image, shapes = make_image(rng, SIZE, SIZE)
        found = detector.detect(image, Options())
        detections = [
            {"box": list(map(float, box)), "score": float(s), "class_id": int(c)}
            for box, s, c in zip(found.boxes, found.scores, found.class_ids, strict=True)
        ]
        total.add(match(detections, [{"box": s.box, "class_id": s.class_id} for s in shapes]))
    return {
        "precision": total.precision,
        "recall": total.recall,
        "true_positives": total.true_positives,
        "false_positives": total.false_positives,
        "false_negatives": total.false_negatives,
    }


def int8_accuracy(folder: Path, images: int = 100, seed: int = 2024) -> dict:
    folder.mkdir(parents=True, exist_ok=True)
    fp32 = export_onnx(SHAPES, folder / "shapes-320.onnx", SIZE)
    int8 = quantize_int8(fp32, folder / "shapes-320-int8.onnx")
    return {
        "model": SHAPES.name,
        "img_size": SIZE,
        "images": images,
        "seed": seed,
        "fp32": score(fp32, images, seed),
        "int8": score(int8, images, seed),
        "file_mb": {"fp32": fp32.stat().st_size / 1e6, "int8": int8.stat().st_size / 1e6},
    }
