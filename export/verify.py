"""Check the written ONNX file against the PyTorch model on a real letterboxed image."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort
import torch

from export.errors import ExportError
from serve.letterbox import letterbox, to_tensor  # the server's own preprocessing

DEFAULT_IMAGE = Path(__file__).resolve().parent.parent / "samples" / "bus.jpg"

# Outputs are xywh in input pixels (up to the image side) and probabilities in 0..1. Float32
# convolutions evaluated in a different order differ by ~1e-5 relative; the bounds below are far
# under what could change a detection (the server's exactness target is 1 px and 1e-3 in score)
# and far over float32 noise, so a failure means a real export error, not rounding.
BOX_TOLERANCE_PX = 0.05
SCORE_TOLERANCE = 1e-4


def load_image(path: Path | None) -> np.ndarray:
    path = path or DEFAULT_IMAGE
    image = cv2.imread(str(path), cv2.IMREAD_COLOR) if path.is_file() else None
    if image is None:
        if path == DEFAULT_IMAGE:  # the bundled photo is gone: still verify on real-ish content
            rng = np.random.default_rng(0)
            return rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)
        raise ExportError(f"verification image not readable: {path}")
    return image


@dataclass
class Verification:
    max_abs_diff: float
    max_box_diff: float
    max_score_diff: float
    ok: bool


def compare_with_torch(
    onnx_bytes: bytes,
    net: torch.nn.Module,
    image: np.ndarray,
    img_size: int,
    batch: int,
    nkpt: int = 0,
    rect_stride: int | None = None,
) -> Verification:
    """Run both on the same letterboxed image (repeated to the batch size) and compare; a pose
    model's last 3 * nkpt columns are keypoint x, y (pixels, judged as boxes) and score. A
    `--rect` export is checked on the image's minimum rectangle (`rect_stride`), as served."""
    x = np.repeat(to_tensor(letterbox(image, img_size, rect_stride)), batch, axis=0)
    session = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    got = session.run(None, {session.get_inputs()[0].name: x})[0]
    with torch.no_grad():
        want = net(torch.from_numpy(x)).numpy()
    if got.shape != want.shape:
        raise ExportError(f"ONNX output shape {got.shape} differs from PyTorch's {want.shape}")
    diff = np.abs(got.astype(np.float64) - want)
    pixels = np.zeros(diff.shape[-1], dtype=bool)
    pixels[:4] = True
    if nkpt:
        first = diff.shape[-1] - 3 * nkpt
        pixels[first::3] = pixels[first + 1 :: 3] = True
    box, score = float(diff[..., pixels].max()), float(diff[..., ~pixels].max())
    return Verification(
        max_abs_diff=float(diff.max()),
        max_box_diff=box,
        max_score_diff=score,
        ok=box <= BOX_TOLERANCE_PX and score <= SCORE_TOLERANCE,
    )
