"""Checkpoints in the official layout, built from the project's own layer definitions."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from export.model import Model
from tests.support.checkpoints import build_model, checkpoint_dict, save_checkpoint, to_deploy_form

MakeCheckpoint = Callable[..., Path]


@pytest.fixture(scope="session")
def make_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> MakeCheckpoint:
    """make_checkpoint(family, form="training", nc=3, width=8) -> path of a .pt in the official
    pickle layout; cached per arguments for the session."""
    cache: dict[tuple, Path] = {}
    folder = tmp_path_factory.mktemp("checkpoints")

    def make(family: str, form: str = "training", nc: int = 3, width: int = 8) -> Path:
        key = (family, form, nc, width)
        if key not in cache:
            net: Model = build_model(family, nc=nc, width=width)
            if form == "deploy":
                net = to_deploy_form(net)
            path = folder / f"{family}-{form}-{nc}-{width}.pt"
            cache[key] = save_checkpoint(checkpoint_dict(net, form), path)
        return cache[key]

    return make
