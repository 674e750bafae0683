"""Which model file to serve: MODEL_PATH, else the one model under the model dir, else the
baked-in one. A model is an ONNX file (*.onnx) or OpenVINO IR (*.xml, its weights in the *.bin of
the same name beside it: `python -m export --int8-format ir`)."""

from __future__ import annotations

import os
from pathlib import Path

from serve.errors import ModelError

MODEL_SUFFIXES = (".onnx", ".xml")


def is_ir(path: Path) -> bool:
    """OpenVINO IR (served by the openvino runtime only), by its name."""
    return path.suffix.lower() == ".xml"


def ir_weights(path: Path) -> Path:
    """The .bin an IR's .xml reads its weights from: the one of the same name beside it."""
    return path.with_suffix(".bin")


def check_complete(path: Path) -> Path:
    """`path`, or ModelError where it is IR without its .bin."""
    if is_ir(path) and not ir_weights(path).is_file():
        raise ModelError(
            f"{path} is OpenVINO IR but its weights {ir_weights(path).name} are not beside it "
            "(an IR model is two files: NAME.xml and NAME.bin)"
        )
    return path


def model_bytes(path: Path) -> int:
    """The model's size on disk: an IR's .xml and .bin together."""
    return path.stat().st_size + (ir_weights(path).stat().st_size if is_ir(path) else 0)


def model_files(model_dir: Path) -> list[Path]:
    """*.onnx and *.xml files anywhere under model_dir (symlinked folders not followed, dot files
    skipped: a tarball made on macOS carries `._model.onnx` companions)."""
    found: list[Path] = []
    for folder, subdirs, files in os.walk(model_dir):
        subdirs[:] = sorted(d for d in subdirs if not d.startswith("."))
        found.extend(
            Path(folder) / name
            for name in sorted(files)
            if name.lower().endswith(MODEL_SUFFIXES) and not name.startswith(".")
        )
    return found


def locate_model(model_path: str | None, model_dir: str, baked_model_path: str) -> Path:
    if model_path:
        path = Path(model_path)
        if not path.is_file():
            raise ModelError(f"MODEL_PATH={model_path} is not a file")
        return check_complete(path)
    candidates = model_files(Path(model_dir)) if Path(model_dir).is_dir() else []
    if len(candidates) == 1:
        return check_complete(candidates[0])
    if len(candidates) > 1:
        listed = ", ".join(str(p) for p in candidates[:5])
        raise ModelError(
            f"found {len(candidates)} models (.onnx or .xml files) under {model_dir} ({listed}); "
            "keep one, or set MODEL_PATH to choose"
        )
    baked = Path(baked_model_path)
    if baked.is_file():
        return check_complete(baked)
    raise ModelError(
        f"no model: MODEL_PATH is not set, there is no .onnx (or OpenVINO .xml) file under "
        f"{model_dir}, and no model baked in at {baked_model_path}"
    )
