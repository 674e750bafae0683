"""Read a YOLOv7 `.pt` checkpoint without the YOLOv7 repository and without trusting the file.

A checkpoint is a pickle, and a pickle can name any importable callable. Our Unpickler resolves
names only through a fixed allow-list that maps the official class paths to this project's own
implementations; any other name is refused before anything in the file runs.
"""

from __future__ import annotations

import hashlib
import io
import pickle
import types
import warnings
import zipfile
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from export import keypoint, layers, model
from export.errors import ExportError


class CompatUpsample(nn.Upsample):
    """nn.Upsample that tolerates pickles from torch versions before `recompute_scale_factor`."""

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        self.__dict__.setdefault("recompute_scale_factor", None)
        self.__dict__.setdefault("align_corners", None)


def _numpy_global(*candidates: str) -> Any:
    """numpy moved `core` to `_core` in 2.0: resolve whichever this numpy has."""
    for dotted in candidates:
        module_name, _, attr = dotted.rpartition(".")
        try:
            module = __import__(module_name, fromlist=[attr])
            return getattr(module, attr)
        except (ImportError, AttributeError):
            continue
    raise ImportError(candidates[0])


_MODEL_CLASSES = {
    "models.yolo.Model": model.Model,
    "models.yolo.Detect": model.Detect,
    "models.yolo.IDetect": model.IDetect,
    "models.yolo.IAuxDetect": model.IAuxDetect,
    "models.yolo.IKeypoint": keypoint.IKeypoint,
    "models.common.Conv": layers.Conv,
    "models.common.Concat": layers.Concat,
    "models.common.MP": layers.MP,
    "models.common.SP": layers.SP,
    "models.common.SPPCSPC": layers.SPPCSPC,
    "models.common.RepConv": layers.RepConv,
    "models.common.ReOrg": layers.ReOrg,
    "models.common.DownC": layers.DownC,
    "models.common.Shortcut": layers.Shortcut,
    "models.common.ImplicitA": layers.ImplicitA,
    "models.common.ImplicitM": layers.ImplicitM,
}

_TORCH_CLASSES = {
    "torch.nn.modules.container.Sequential": nn.Sequential,
    "torch.nn.modules.container.ModuleList": nn.ModuleList,
    "torch.nn.modules.conv.Conv2d": nn.Conv2d,
    "torch.nn.modules.batchnorm.BatchNorm2d": nn.BatchNorm2d,
    # Only eval-mode statistics are used, which BatchNorm2d computes identically.
    "torch.nn.modules.batchnorm.SyncBatchNorm": nn.BatchNorm2d,
    "torch.nn.modules.upsampling.Upsample": CompatUpsample,
    "torch.nn.modules.pooling.MaxPool2d": nn.MaxPool2d,
    "torch.nn.modules.activation.SiLU": nn.SiLU,
    "torch.nn.modules.activation.LeakyReLU": nn.LeakyReLU,
    "torch.nn.modules.activation.ReLU": nn.ReLU,
    "torch.nn.modules.activation.Hardswish": nn.Hardswish,
    "torch.nn.modules.activation.Sigmoid": nn.Sigmoid,
    "torch.nn.modules.activation.Mish": nn.Mish,
    "torch.nn.modules.linear.Identity": nn.Identity,
    "torch.nn.parameter.Parameter": nn.Parameter,
    # Tensor and storage reconstruction (storages themselves are resolved by torch.load).
    "torch._utils._rebuild_tensor_v2": torch._utils._rebuild_tensor_v2,
    "torch._utils._rebuild_parameter": torch._utils._rebuild_parameter,
    "torch._utils._rebuild_parameter_with_state": torch._utils._rebuild_parameter_with_state,
    "torch.Size": torch.Size,
    "torch.device": torch.device,
    "torch.float16": torch.float16,
    "torch.float32": torch.float32,
}

_PLAIN_GLOBALS = {
    "collections.OrderedDict": OrderedDict,
    "builtins.set": set,
    "__builtin__.set": set,
    "builtins.frozenset": frozenset,
    "builtins.slice": slice,
    # numpy pickles `bytes` through _codecs.encode(str, 'latin1') under protocol 2.
    "_codecs.encode": __import__("_codecs").encode,
}

_NUMPY_GLOBALS = {
    # `best_fitness` and some training results are numpy arrays/scalars.
    "numpy.core.multiarray._reconstruct": ("numpy._core.multiarray._reconstruct",),
    "numpy._core.multiarray._reconstruct": ("numpy._core.multiarray._reconstruct",),
    "numpy.core.multiarray.scalar": ("numpy._core.multiarray.scalar",),
    "numpy._core.multiarray.scalar": ("numpy._core.multiarray.scalar",),
    "numpy.ndarray": ("numpy.ndarray",),
    "numpy.dtype": ("numpy.dtype",),
}


def _allowed(dotted: str) -> Any | None:
    for table in (_MODEL_CLASSES, _TORCH_CLASSES, _PLAIN_GLOBALS):
        if dotted in table:
            return table[dotted]
    if dotted in _NUMPY_GLOBALS:
        return _numpy_global(*_NUMPY_GLOBALS[dotted])
    if dotted.startswith("numpy.dtypes.") and dotted.endswith("DType"):
        # numpy >= 1.25 pickles dtypes by their class, e.g. numpy.dtypes.Float64DType.
        return getattr(np.dtypes, dotted.rsplit(".", 1)[1], None)
    return None


class RefusedGlobal(pickle.UnpicklingError):
    """The file names a Python object that is not on the allow-list."""

    def __init__(self, dotted: str) -> None:
        super().__init__(dotted)
        self.dotted = dotted


class AllowListUnpickler(pickle.Unpickler):
    """Resolves globals only through the allow-list; never imports what the file names."""

    def find_class(self, module: str, name: str) -> Any:
        dotted = f"{module}.{name}"
        found = _allowed(dotted)
        if found is None:
            raise RefusedGlobal(dotted)
        return found


def _pickle_load(file: Any, **kwargs: Any) -> Any:
    return AllowListUnpickler(file, **kwargs).load()


# torch.load takes a module-like object providing `Unpickler` and `load` (the legacy format uses
# `load` for its header records).
_SAFE_PICKLE = types.SimpleNamespace(
    __name__="allow_list_pickle", Unpickler=AllowListUnpickler, load=_pickle_load
)


@dataclass
class Checkpoint:
    model: model.Model
    source_key: str  # "ema" or "model"
    sha256: str
    dtype: torch.dtype
    epoch: int | None


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Load a checkpoint's model (EMA weights when present) as float32 in eval mode on the CPU."""
    path = Path(path)
    if not path.is_file():
        raise ExportError(f"checkpoint not found: {path}")
    raw = path.read_bytes()
    if not raw:
        raise ExportError(f"checkpoint is empty: {path}")
    if _is_torchscript(raw):  # torch.load would hand it to torch.jit.load, past the allow-list
        raise ExportError(
            f"refused to load {path.name}: it is a TorchScript archive, whose code torch.load "
            "would compile and run (nothing in the file was run); give the training checkpoint"
        )
    try:
        with warnings.catch_warnings():  # legacy files warn that "source code has changed"
            warnings.simplefilter("ignore")
            obj = torch.load(
                io.BytesIO(raw),
                map_location="cpu",
                pickle_module=_SAFE_PICKLE,
                weights_only=False,
            )
    except RefusedGlobal as refused:
        if refused.dotted.startswith("models.yolo."):  # a head (or model) of another task
            heads = [n for n in _MODEL_CLASSES if ".yolo." in n and not n.endswith(".Model")]
            known = ", ".join(n.rsplit(".", 1)[1] for n in heads)
            raise ExportError(
                f"refused to load {path.name}: its head '{refused.dotted}' is not supported "
                f"(known: {known}; nothing in the file was run)"
            ) from None
        raise ExportError(
            f"refused to load {path.name}: it references '{refused.dotted}', which is not an "
            "allowed YOLOv7 or torch class (nothing in the file was run)"
        ) from None
    except (
        pickle.UnpicklingError,
        zipfile.BadZipFile,
        EOFError,
        RuntimeError,
        ValueError,
        KeyError,
        TypeError,
        AttributeError,
        IndexError,
        UnicodeDecodeError,
    ) as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ExportError(
            f"{path.name} is not a readable YOLOv7 checkpoint (truncated or corrupt?): {reason}"
        ) from None

    net, key = _pick_model(obj, path)
    dtype = next((p.dtype for p in net.parameters()), torch.float32)
    net = net.float().eval()
    for p in net.parameters():
        p.requires_grad_(False)
    epoch = obj.get("epoch") if isinstance(obj, dict) else None
    return Checkpoint(
        model=net,
        source_key=key,
        sha256=hashlib.sha256(raw).hexdigest(),
        dtype=dtype,
        epoch=epoch if isinstance(epoch, int) else None,
    )


def _is_torchscript(raw: bytes) -> bool:
    """A zip holding TorchScript code or constants, as torch.jit.save writes."""
    try:
        with zipfile.ZipFile(io.BytesIO(raw)) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, ValueError, OSError):
        return False  # not a zip: the legacy format, or garbage that torch.load refuses
    return any(n.rsplit("/", 1)[-1] == "constants.pkl" or "/code/" in f"/{n}" for n in names)


def _pick_model(obj: Any, path: Path) -> tuple[model.Model, str]:
    if isinstance(obj, model.Model):  # a bare pickled model, as some users save
        return obj, "model"
    if not isinstance(obj, dict):
        raise ExportError(f"{path.name} holds a {type(obj).__name__}, not a YOLOv7 checkpoint")
    for key in ("ema", "model"):
        candidate = obj.get(key)
        if isinstance(candidate, model.Model):
            return candidate, key
    if any(isinstance(obj.get(k), dict) for k in ("model", "state_dict")):
        raise ExportError(
            f"{path.name} holds only a state_dict; a YOLOv7 checkpoint pickles the whole model "
            "(save it with the official train.py)"
        )
    raise ExportError(f"{path.name} has no YOLOv7 model under 'ema' or 'model'")
