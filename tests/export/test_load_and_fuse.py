"""Every official family loads through the allow-list, in every form, and fuses exactly."""

from __future__ import annotations

import copy
import zipfile
from unittest import mock

import numpy as np
import pytest
import torch

from export.fuse import fuse_model
from export.layers import Conv, RepConv
from export.model import Detect, IAuxDetect, IDetect
from export.safe_load import load_checkpoint
from tests.support.checkpoints import (
    FAMILIES,
    build_model,
    checkpoint_dict,
    official_pickle_names,
    save_checkpoint,
    to_deploy_form,
)


def relative_difference(got: torch.Tensor, want: torch.Tensor) -> float:
    return float((got - want).abs().max() / want.abs().max())


def forward(net: torch.nn.Module, size: int = 256, batch: int = 1) -> torch.Tensor:
    x = torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        return net(x)


@pytest.mark.parametrize("form", ["training", "stripped", "deploy"])
@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_every_family_and_form_loads_and_fuses_to_the_same_outputs(make_checkpoint, family, form):
    checkpoint = load_checkpoint(make_checkpoint(family, form))
    net = checkpoint.model
    assert checkpoint.dtype == torch.float16  # official files are half precision
    assert next(net.parameters()).dtype == torch.float32  # ... loaded as float32
    unfused = forward(net)
    fused = fuse_model(copy.deepcopy(net))
    assert not any(hasattr(m, "bn") for m in fused.modules() if isinstance(m, Conv))
    assert all(hasattr(m, "rbr_reparam") for m in fused.modules() if isinstance(m, RepConv))
    assert not any(hasattr(m, name) for m in fused.modules() for name in ("ia", "im", "m2"))
    out = forward(fused)
    strides = len(net.model[-1].stride)
    assert out.shape == (1, 3 * sum((256 // s) ** 2 for s in (8, 16, 32, 64)[:strides]), 8)
    # boxes (pixels) and probabilities separately, each relative to its own scale
    assert relative_difference(out[..., :4], unfused[..., :4]) < 1e-4
    assert relative_difference(out[..., 4:], unfused[..., 4:]) < 1e-4


def test_training_form_heads_are_the_official_ones(make_checkpoint):
    assert type(load_checkpoint(make_checkpoint("yolov7-tiny")).model.model[-1]) is IDetect
    assert type(load_checkpoint(make_checkpoint("yolov7-e6e")).model.model[-1]) is IAuxDetect
    assert type(load_checkpoint(make_checkpoint("yolov7", "deploy")).model.model[-1]) is Detect


def test_ema_weights_are_preferred_over_model(tmp_path):
    model = build_model("yolov7-tiny", nc=2)
    ema = copy.deepcopy(model)
    with torch.no_grad():
        for p in ema.parameters():
            p.mul_(0.9)
    path = save_checkpoint(checkpoint_dict(model, "training", ema=ema), tmp_path / "last.pt")
    loaded = load_checkpoint(path)
    assert loaded.source_key == "ema"
    want = forward(ema.half().float())
    assert relative_difference(forward(loaded.model), want) < 1e-6


@pytest.mark.parametrize("nc", [1, 80, 133])
def test_any_number_of_classes_and_names_loads(tmp_path, nc):
    names = [f"thing-{i}" for i in range(nc)]
    net = build_model("yolov7-tiny", nc=nc, names=names)
    path = save_checkpoint(checkpoint_dict(net, "stripped"), tmp_path / "custom.pt")
    loaded = load_checkpoint(path).model
    assert loaded.names == names
    assert forward(loaded).shape[-1] == 5 + nc


def test_float32_checkpoint_loads(tmp_path):
    net = build_model("yolov7", nc=4)
    path = tmp_path / "fp32.pt"
    save_checkpoint({"model": net, "optimizer": None, "epoch": -1}, path)
    loaded = load_checkpoint(path)
    assert loaded.dtype == torch.float32
    assert relative_difference(forward(loaded.model), forward(net)) < 1e-6


def test_checkpoint_saved_from_cuda_loads_on_cpu(tmp_path):
    """Storages recorded on 'cuda:0' (a GPU training run) are mapped to the CPU."""
    net = build_model("yolov7-tiny", nc=3)
    path = tmp_path / "from-gpu.pt"
    with mock.patch("torch.serialization.location_tag", return_value="cuda:0"):
        save_checkpoint(checkpoint_dict(net, "stripped"), path)
    with zipfile.ZipFile(path) as archive:  # the file really records GPU storages
        pickled = next(archive.read(n) for n in archive.namelist() if n.endswith("data.pkl"))
    assert b"cuda:0" in pickled and b"'cpu'" not in pickled
    loaded = load_checkpoint(path)
    assert relative_difference(forward(loaded.model), forward(net.half().float())) < 1e-6


# torch warns that it cannot store the source of our classes in the legacy format
@pytest.mark.filterwarnings("ignore:Couldn't retrieve source code")
def test_legacy_non_zip_checkpoint_loads(tmp_path):
    net = build_model("yolov7-tiny", nc=3)
    path = tmp_path / "legacy.pt"
    with official_pickle_names():
        torch.save(checkpoint_dict(net, "stripped"), path, _use_new_zipfile_serialization=False)
    assert load_checkpoint(path).model.nc == 3


def test_training_checkpoint_keeps_numpy_best_fitness_readable(make_checkpoint):
    # best_fitness is a numpy array: numpy's reconstruction globals must be allowed, nothing more
    with official_pickle_names():  # a plain, trusting load of our own test file
        obj = torch.load(make_checkpoint("yolov7"), weights_only=False, map_location="cpu")
    assert isinstance(obj["best_fitness"], np.ndarray)
    assert load_checkpoint(make_checkpoint("yolov7")).epoch == 12


def test_bundled_shapes_checkpoint_from_official_training_loads(shapes_checkpoint):
    checkpoint = load_checkpoint(shapes_checkpoint)
    net = checkpoint.model
    assert checkpoint.source_key == "model"  # released file: ema is None
    assert net.names == ["circle", "square", "triangle"]
    assert net.model[-1].stride.tolist() == [8.0, 16.0, 32.0]
    fused = fuse_model(copy.deepcopy(net))
    assert relative_difference(forward(fused, 320), forward(net, 320)) < 1e-4


def test_deploy_form_equals_training_form(make_checkpoint):
    training = load_checkpoint(make_checkpoint("yolov7", "training")).model
    deploy = to_deploy_form(training)
    assert relative_difference(forward(deploy), forward(training)) < 1e-4
