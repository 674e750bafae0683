"""Which ONNX file to serve: MODEL_PATH, else the one *.onnx under the model dir, else the
baked-in one."""

from __future__ import annotations

import os
from pathlib import Path

from serve.errors import ModelError


def onnx_files(model_dir: Path) -> list[Path]:
    """*.onnx files anywhere under model_dir (symlinked folders not followed, dot files skipped:
    a tarball made on macOS carries `._model.onnx` companions)."""
    found: list[Path] = []
    for folder, subdirs, files in os.walk(model_dir):
        subdirs[:] = sorted(d for d in subdirs if not d.startswith("."))
        found.extend(
            Path(folder) / name
            for name in sorted(files)
            if name.lower().endswith(".onnx") and not name.startswith(".")
        )
    return found


def locate_model(model_path: str | None, model_dir: str, baked_model_path: str) -> Path:
    if model_path:
        path = Path(model_path)
        if not path.is_file():
            raise ModelError(f"MODEL_PATH={model_path} is not a file")
        return path
    candidates = onnx_files(Path(model_dir)) if Path(model_dir).is_dir() else []
    if len(candidates) == 1:
        return candidates[0]
    if len(candidates) > 1:
        listed = ", ".join(str(p) for p in candidates[:5])
        raise ModelError(
            f"found {len(candidates)} .onnx files under {model_dir} ({listed}); "
            "keep one, or set MODEL_PATH to choose"
        )
    baked = Path(baked_model_path)
    if baked.is_file():
        return baked
    raise ModelError(
        f"no model: MODEL_PATH is not set, there is no .onnx file under {model_dir}, "
        f"and no model baked in at {baked_model_path}"
    )
