"""`make image` from a clean clone: the model is exported when missing or stale, and a bare build
without one stops with a line that says what to run (the image itself: conftest's `image`, which
`python -m container.image` builds, and test_image.py)."""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

import pytest

from container.engine import Engine, EngineError, base_image
from container.image import BUNDLED, Wanted, why_stale


@pytest.fixture
def fresh(models: dict[str, Path], tmp_path: Path) -> tuple[Path, Path]:
    """A copy of the bundled checkpoint, and the model exported from it at 320 (newer than it)."""
    weights = tmp_path / "checkpoint.pt"
    shutil.copyfile(BUNDLED, weights)
    model = tmp_path / "model.onnx"
    shutil.copyfile(models["baked"], model)
    os.utime(weights, (1_000_000_000, 1_000_000_000))
    return weights, model


def test_a_model_made_from_this_checkpoint_at_this_size_is_kept(fresh):
    weights, model = fresh
    assert why_stale(model, Wanted(weights, 320)) is None
    # 300 is rounded up to the stride (32) by export: 320 is what asking for 300 gives
    assert why_stale(model, Wanted(weights, 300)) is None


def test_a_missing_older_foreign_or_other_size_model_is_exported_again(fresh, tmp_path):
    weights, model = fresh
    assert why_stale(tmp_path / "none.onnx", Wanted(weights, 320)).endswith("does not exist")
    assert "is 320 px, not 256" in why_stale(model, Wanted(weights, 256))
    other = tmp_path / "other.pt"
    other.write_bytes(weights.read_bytes() + b"\0")
    os.utime(other, (1_000_000_000, 1_000_000_000))
    assert "exported from another checkpoint" in why_stale(model, Wanted(other, 320))
    os.utime(weights)  # the checkpoint changed after the export
    assert "is older than" in why_stale(model, Wanted(weights, 320))
    model.write_bytes(b"not onnx")
    os.utime(weights, (1_000_000_000, 1_000_000_000))
    assert "cannot be read" in why_stale(model, Wanted(weights, 320))


def test_a_bare_build_without_a_model_says_to_run_make_image(engine: Engine):
    tag = f"localhost/yolov7-sagemaker:no-model-{uuid.uuid4().hex[:8]}"
    with pytest.raises(EngineError) as failed:
        engine.build(tag, base_image(engine), model_file="weights/no-such-model.onnx")
    output = str(failed.value)
    assert (
        "error: no weights/no-such-model.onnx in the build context; run `make image`" in output
    ), output
    assert "no such file or directory" not in output.lower(), output
    assert not engine.image_exists(tag)
