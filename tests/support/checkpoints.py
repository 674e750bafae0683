"""Build YOLOv7-family models from our own layer specs and save them as official checkpoints.

The tests and the benchmarks need checkpoints of every family without downloading any: this module
builds models from our layer classes (narrow widths for tests, wider for benchmarks) and pickles
them under the official `models.yolo` / `models.common` names, with the dict keys the official
training code writes. A spec is a list of `(label, from, module, args)`; `from` is -1 (the previous
layer), a label, or a list of those, so variants can insert layers without renumbering.
"""

from __future__ import annotations

import contextlib
import copy
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np
import torch
from torch import nn

from export import layers
from export.keypoint import IKeypoint
from export.model import Detect, IAuxDetect, IDetect, Model

Ref = int | str
Spec = list[tuple[str | None, Ref | list[Ref], str, list[Any]]]

ANCHORS_P5 = [[10, 13, 16, 30, 33, 23], [30, 61, 62, 45, 59, 119], [116, 90, 156, 198, 373, 326]]
ANCHORS_P6 = [
    [19, 27, 44, 40, 38, 94],
    [96, 68, 86, 152, 180, 137],
    [140, 301, 303, 264, 238, 542],
    [436, 615, 739, 380, 925, 792],
]


def _tiny_spec(w: int) -> Spec:
    """yolov7-tiny's blocks: ELAN-tiny, MP downsampling, an SP-based SPP, IDetect."""
    return [
        (None, -1, "Conv", [w, 3, 2]),
        (None, -1, "Conv", [2 * w, 3, 2]),
        *_tiny_elan(w),
        (None, -1, "Conv", [2 * w, 1, 1]),
        (None, -1, "MP", []),
        *_tiny_elan(2 * w),
        ("p3", -1, "Conv", [4 * w, 1, 1]),
        (None, -1, "MP", []),
        ("p4", -1, "Conv", [4 * w, 1, 1]),
        (None, -1, "MP", []),
        ("c5", -1, "Conv", [4 * w, 1, 1]),
        ("spp", "c5", "Conv", [2 * w, 1, 1]),
        (None, -1, "SP", [5]),
        (None, -2, "SP", [9]),
        (None, -3, "SP", [13]),
        (None, [-1, -2, -3, "spp"], "Concat", [1]),
        ("p5", -1, "Conv", [4 * w, 1, 1]),
        (None, -1, "Conv", [2 * w, 1, 1]),
        (None, -1, "Upsample", [None, 2, "nearest"]),
        (None, "p4", "Conv", [2 * w, 1, 1]),
        (None, [-1, -2], "Concat", [1]),
        ("h4", -1, "Conv", [2 * w, 1, 1]),
        (None, -1, "Conv", [w, 1, 1]),
        (None, -1, "Upsample", [None, 2, "nearest"]),
        (None, "p3", "Conv", [w, 1, 1]),
        (None, [-1, -2], "Concat", [1]),
        ("o3", -1, "Conv", [2 * w, 3, 1]),
        (None, -1, "Conv", [2 * w, 3, 2]),
        (None, [-1, "h4"], "Concat", [1]),
        ("o4", -1, "Conv", [4 * w, 3, 1]),
        (None, -1, "Conv", [4 * w, 3, 2]),
        (None, [-1, "p5"], "Concat", [1]),
        ("o5", -1, "Conv", [4 * w, 3, 1]),
        ("d3", "o3", "Conv", [2 * w, 3, 1]),
        ("d4", "o4", "Conv", [4 * w, 3, 1]),
        ("d5", "o5", "Conv", [8 * w, 3, 1]),
        (None, ["d3", "d4", "d5"], "IDetect", [ANCHORS_P5]),
    ]


def _mp_down(c: int) -> Spec:
    """yolov7's transition: a max-pool branch beside a strided-conv branch, concatenated."""
    return [
        (None, -1, "MP", []),
        (None, -1, "Conv", [c, 1, 1]),
        (None, -3, "Conv", [c, 1, 1]),
        (None, -1, "Conv", [c, 3, 2]),
        (None, [-1, -3], "Concat", [1]),
    ]


def _yolov7_spec(w: int) -> Spec:
    """yolov7's blocks: MP+conv transitions, SPPCSPC, RepConv before an IDetect head."""
    return [
        (None, -1, "Conv", [w, 3, 1]),
        (None, -1, "Conv", [2 * w, 3, 2]),
        (None, -1, "Conv", [2 * w, 3, 2]),
        (None, -1, "Conv", [w, 1, 1]),
        (None, -2, "Conv", [w, 1, 1]),
        (None, -1, "Conv", [w, 3, 1]),
        (None, [-1, -2, -3], "Concat", [1]),
        (None, -1, "Conv", [2 * w, 1, 1]),
        *_mp_down(w),
        ("p3", -1, "Conv", [2 * w, 1, 1]),
        *_mp_down(2 * w),
        ("p4", -1, "Conv", [4 * w, 1, 1]),
        *_mp_down(2 * w),
        ("p5", -1, "SPPCSPC", [4 * w]),
        (None, -1, "Conv", [2 * w, 1, 1]),
        (None, -1, "Upsample", [None, 2, "nearest"]),
        (None, "p4", "Conv", [2 * w, 1, 1]),
        (None, [-1, -2], "Concat", [1]),
        ("h4", -1, "Conv", [2 * w, 1, 1]),
        (None, -1, "Conv", [w, 1, 1]),
        (None, -1, "Upsample", [None, 2, "nearest"]),
        (None, "p3", "Conv", [w, 1, 1]),
        (None, [-1, -2], "Concat", [1]),
        ("o3", -1, "Conv", [w, 3, 1]),
        *_mp_down(w),
        (None, [-1, "h4"], "Concat", [1]),
        ("o4", -1, "Conv", [2 * w, 3, 1]),
        *_mp_down(2 * w),
        (None, [-1, "p5"], "Concat", [1]),
        ("o5", -1, "Conv", [4 * w, 3, 1]),
        ("d3", "o3", "RepConv", [w, 3, 1]),
        ("d4", "o4", "RepConv", [2 * w, 3, 1]),
        ("d5", "o5", "RepConv", [8 * w, 3, 1]),
        (None, ["d3", "d4", "d5"], "IDetect", [ANCHORS_P5]),
    ]


def _p6_spec(w: int, down: str, shortcut: bool, depth: int) -> Spec:
    """The P6 families: ReOrg stem, four output strides, IAuxDetect with auxiliary inputs.

    `down` is the downsampling block ("Conv" for w6, "DownC" for e6/d6/e6e); `shortcut` adds the
    e6e residual; `depth` repeats each backbone stage's conv (d6 is the deeper e6).
    """

    def down_block(c: int) -> Spec:
        return [(None, -1, "Conv", [c, 3, 2])] if down == "Conv" else [(None, -1, "DownC", [c])]

    def stage(c: int, label: str) -> Spec:
        body: Spec = [(f"{label}_in", -1, "Conv", [c, 1, 1])]
        body += [(None, -1, "Conv", [c, 3, 1]) for _ in range(depth)]
        if shortcut:
            body += [(None, [-1, f"{label}_in"], "Shortcut", [1])]
        return [*body, (label, -1, "Conv", [c, 1, 1])]

    return [
        (None, -1, "ReOrg", []),
        (None, -1, "Conv", [w, 3, 1]),
        *down_block(2 * w),
        *stage(2 * w, "p2"),
        *down_block(2 * w),
        *stage(2 * w, "p3"),
        *down_block(3 * w),
        *stage(3 * w, "p4"),
        *down_block(4 * w),
        *stage(4 * w, "p5"),
        *down_block(4 * w),
        ("p6", -1, "SPPCSPC", [4 * w]),
        (None, -1, "Conv", [3 * w, 1, 1]),
        (None, -1, "Upsample", [None, 2, "nearest"]),
        (None, "p5", "Conv", [3 * w, 1, 1]),
        ("a5", [-1, -2], "Concat", [1]),
        ("h5", -1, "Conv", [3 * w, 1, 1]),
        (None, -1, "Conv", [2 * w, 1, 1]),
        (None, -1, "Upsample", [None, 2, "nearest"]),
        (None, "p4", "Conv", [2 * w, 1, 1]),
        ("a4", [-1, -2], "Concat", [1]),
        ("h4", -1, "Conv", [2 * w, 1, 1]),
        (None, -1, "Conv", [w, 1, 1]),
        (None, -1, "Upsample", [None, 2, "nearest"]),
        (None, "p3", "Conv", [w, 1, 1]),
        ("a3", [-1, -2], "Concat", [1]),
        ("o3", -1, "Conv", [w, 1, 1]),
        *down_block(2 * w),
        (None, [-1, "h4"], "Concat", [1]),
        ("o4", -1, "Conv", [2 * w, 1, 1]),
        *down_block(3 * w),
        (None, [-1, "h5"], "Concat", [1]),
        ("o5", -1, "Conv", [3 * w, 1, 1]),
        *down_block(4 * w),
        (None, [-1, "p6"], "Concat", [1]),
        ("o6", -1, "Conv", [4 * w, 1, 1]),
        ("d3", "o3", "Conv", [2 * w, 3, 1]),
        ("d4", "o4", "Conv", [4 * w, 3, 1]),
        ("d5", "o5", "Conv", [6 * w, 3, 1]),
        ("d6", "o6", "Conv", [8 * w, 3, 1]),
        ("x3", "a3", "Conv", [2 * w, 3, 1]),
        ("x4", "a4", "Conv", [4 * w, 3, 1]),
        ("x5", "a5", "Conv", [6 * w, 3, 1]),
        ("x6", "p6", "Conv", [8 * w, 3, 1]),
        (None, ["d3", "d4", "d5", "d6", "x3", "x4", "x5", "x6"], "IAuxDetect", [ANCHORS_P6]),
    ]


def _p6_pose_spec(w: int, dw_conv_kpt: bool) -> Spec:
    """yolov7-w6-pose's layout: the w6 body and neck, an IKeypoint head on the four outputs (no
    auxiliary inputs)."""
    body = _p6_spec(w, "Conv", False, 1)[:-5]
    return [*body, (None, ["d3", "d4", "d5", "d6"], "IKeypoint", [ANCHORS_P6, 17, dw_conv_kpt])]


FAMILIES: dict[str, Any] = {
    "yolov7-tiny": lambda w: (_tiny_spec(w), "leaky"),
    "yolov7-tiny-silu": lambda w: (_tiny_spec(w), "silu"),
    "yolov7": lambda w: (_yolov7_spec(w), "silu"),
    "yolov7-w6": lambda w: (_p6_spec(w, "Conv", False, 1), "silu"),
    "yolov7-e6": lambda w: (_p6_spec(w, "DownC", False, 1), "silu"),
    "yolov7-d6": lambda w: (_p6_spec(w, "DownC", False, 2), "silu"),
    "yolov7-e6e": lambda w: (_p6_spec(w, "DownC", True, 1), "silu"),
}

# Pose layouts are kept apart from FAMILIES, whose every entry the detection tests parametrize over.
POSE_FAMILIES: dict[str, Any] = {
    "yolov7-w6-pose": lambda w: (_p6_pose_spec(w, True), "silu"),
    "yolov7-w6-pose-nodw": lambda w: (_p6_pose_spec(w, False), "silu"),
}


def _activation(kind: str) -> nn.Module:
    return nn.LeakyReLU(0.1) if kind == "leaky" else nn.SiLU()


def build_model(
    family: str,
    nc: int = 80,
    width: int = 8,
    names: list[str] | None = None,
    specs: dict[str, Any] = FAMILIES,
) -> Model:
    """A training-form model of `family` from `specs` (the narrow test specs by default) with
    random weights and BN statistics (float32, eval)."""
    spec, act_kind = specs[family](width)
    labels: dict[str, int] = {}
    channels: list[int] = []
    strides: list[int] = []
    net = Model()
    net.model = nn.Sequential()
    save: set[int] = set()

    def resolve(ref: Ref, i: int) -> int:
        index = labels[ref] if isinstance(ref, str) else (i + ref if ref < 0 else ref)
        return index

    for i, (label, src, kind, args) in enumerate(spec):
        refs = src if isinstance(src, list) else [src]
        idx = [resolve(r, i) for r in refs]
        ins = [channels[j] if j >= 0 else 3 for j in idx]
        in_stride = strides[idx[0]] if idx[0] >= 0 else 1
        layer, c2, stride = _make_layer(kind, args, ins, in_stride, act_kind, nc)
        # Official layers record `f` as -1 for the previous layer and absolute indices otherwise.
        f_abs = [j if j != i - 1 else -1 for j in idx]
        layer.f = f_abs if isinstance(src, list) else f_abs[0]
        layer.i, layer.type = i, f"models.common.{kind}"
        layer.np = sum(p.numel() for p in layer.parameters())
        save.update(j for j in f_abs if j != -1)
        if isinstance(layer, Detect):
            layer.stride = torch.tensor([float(strides[j]) for j in idx[: layer.nl]])
            layer.anchors /= layer.stride.view(-1, 1, 1)
            layer.type = f"models.yolo.{kind}"
            net.stride = layer.stride.clone()
        net.model.append(layer)
        channels.append(c2)
        strides.append(stride)
        if label:
            labels[label] = i
    net.save = sorted(save)
    net.nc = nc
    net.names = names or [f"class{i}" for i in range(nc)]
    net.yaml = {"nc": nc, "depth_multiple": 1.0, "width_multiple": 1.0, "family": family}
    if isinstance(net.head, IKeypoint):
        net.yaml.update(nkpt=net.head.nkpt, dw_conv_kpt=net.head.dw_conv_kpt)
    net.hyp = {"box": 0.05, "cls": 0.3, "obj": 0.7}
    net.gr = 1.0
    net.traced = False
    _randomize(net)
    return net.eval()


def _make_layer(
    kind: str, args: list[Any], ins: list[int], stride: int, act_kind: str, nc: int
) -> tuple[nn.Module, int, int]:
    c1 = ins[0]
    if kind in ("Conv", "RepConv"):
        c2, k, s = args
        cls = layers.Conv if kind == "Conv" else layers.RepConv
        return cls(c1, c2, k, s, act=_activation(act_kind)), c2, stride * s
    if kind == "MP":
        return layers.MP(), c1, stride * 2
    if kind == "SP":
        return layers.SP(args[0]), c1, stride
    if kind == "ReOrg":
        return layers.ReOrg(), 4 * c1, stride * 2
    if kind == "DownC":
        return layers.DownC(c1, args[0]), args[0], stride * 2
    if kind == "SPPCSPC":
        return layers.SPPCSPC(c1, args[0]), args[0], stride
    if kind == "Upsample":
        return nn.Upsample(*args), c1, stride // 2
    if kind == "Concat":
        return layers.Concat(args[0]), sum(ins), stride
    if kind == "Shortcut":
        return layers.Shortcut(args[0]), c1, stride
    head = {"Detect": Detect, "IDetect": IDetect, "IAuxDetect": IAuxDetect, "IKeypoint": IKeypoint}
    return head[kind](nc, args[0], ins, *args[1:]), 0, stride


@torch.no_grad()
def _randomize(net: Model, seed: int = 0) -> None:
    """Random but well-conditioned weights: BN statistics away from identity, so that fusing is
    really exercised, and scaled convs, so that activations neither vanish nor explode."""
    gen = torch.Generator().manual_seed(seed)
    for module in net.modules():
        if isinstance(module, nn.Conv2d):
            fan_in = module.weight[0].numel()
            module.weight.copy_(torch.randn(module.weight.shape, generator=gen) / fan_in**0.5)
            if module.bias is not None:
                module.bias.copy_(torch.randn(module.bias.shape, generator=gen) * 0.1)
        elif isinstance(module, nn.BatchNorm2d):
            n = module.num_features
            module.weight.copy_(1 + 0.2 * torch.randn(n, generator=gen))
            module.bias.copy_(0.1 * torch.randn(n, generator=gen))
            module.running_mean.copy_(0.1 * torch.randn(n, generator=gen))
            module.running_var.copy_(0.5 + torch.rand(n, generator=gen))
            module.eps = 1e-3
        elif isinstance(module, layers.ImplicitA | layers.ImplicitM):
            module.implicit.add_(0.05 * torch.randn(module.implicit.shape, generator=gen))


def to_deploy_form(training: Model) -> Model:
    """The reparameterized "deploy" form official tools write: a Detect head holding the folded
    IDetect weights and RepConvs with `rbr_reparam`; Conv layers keep their BatchNorm."""
    from export.fuse import fold_implicit, fuse_repconv

    net = copy.deepcopy(training)
    head = net.head
    if isinstance(head, IDetect):
        fold_implicit(head)
        detect = Detect.__new__(Detect)
        nn.Module.__init__(detect)
        for key in ("nc", "no", "nl", "na", "grid", "stride", "f", "i", "np"):
            setattr(detect, key, getattr(head, key))
        detect.type = "models.yolo.Detect"
        detect.register_buffer("anchors", head.anchors.clone())
        detect.register_buffer("anchor_grid", head.anchor_grid.clone())
        detect.m = head.m
        if isinstance(head.f, list):
            detect.f = head.f[: head.nl]
        net.model[-1] = detect
    for module in net.modules():
        if isinstance(module, layers.RepConv):
            fuse_repconv(module)
    return net


_OFFICIAL_MODULES = {
    "models.yolo": (Model, Detect, IDetect, IAuxDetect, IKeypoint),
    "models.common": (
        layers.Conv,
        layers.Concat,
        layers.MP,
        layers.SP,
        layers.SPPCSPC,
        layers.RepConv,
        layers.ReOrg,
        layers.DownC,
        layers.Shortcut,
        layers.ImplicitA,
        layers.ImplicitM,
    ),
}


@contextlib.contextmanager
def official_pickle_names() -> Iterator[None]:
    """Make pickle record our classes as `models.yolo.X` / `models.common.X`, as the official code
    does, by registering stand-in modules for the duration of a save."""
    saved_modules = {name: sys.modules.get(name) for name in ("models", *_OFFICIAL_MODULES)}
    saved_owner = {}
    try:
        sys.modules["models"] = types.ModuleType("models")
        for module_name, classes in _OFFICIAL_MODULES.items():
            module = types.ModuleType(module_name)
            for cls in classes:
                saved_owner[cls] = cls.__module__
                cls.__module__ = module_name
                setattr(module, cls.__name__, cls)
            sys.modules[module_name] = module
        yield
    finally:
        for cls, owner in saved_owner.items():
            cls.__module__ = owner
        for name, module in saved_modules.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module


def checkpoint_dict(net: Model, form: str, ema: Model | None = None) -> dict[str, Any]:
    """The dict official tools write: "training" (train.py's last.pt), "stripped" (a released
    file: EMA weights under `model`, the rest None) or "deploy" (reparameterized)."""
    half = copy.deepcopy(net).half()
    if form == "training":
        return {
            "epoch": 12,
            "best_fitness": np.array([0.4321]),
            "training_results": "results of a short run",
            "model": half,
            "ema": copy.deepcopy(ema if ema is not None else net).half(),
            "updates": 1234,
            "optimizer": {"state": {}, "param_groups": [{"lr": 0.01, "momentum": 0.937}]},
            "wandb_id": None,
        }
    if form == "stripped":
        return {
            "epoch": -1,
            "best_fitness": None,
            "training_results": None,
            "model": half,
            "ema": None,
            "updates": None,
            "optimizer": None,
            "wandb_id": None,
        }
    if form == "deploy":
        return {"model": half, "optimizer": None, "training_results": None, "epoch": -1}
    raise ValueError(f"unknown checkpoint form {form!r}")


def save_checkpoint(obj: Any, path: str | Path) -> Path:
    path = Path(path)
    with official_pickle_names():
        torch.save(obj, path)
    return path


# Full-size specs, written in our own spec format to the published yolov7-tiny and yolov7 layer
# graphs and widths (base width 32), for benchmarks whose cost must match the released models: the
# benchmark prints their parameters and GFLOPs beside the published figures. They are kept apart
# from FAMILIES (the narrow test specs) so that the tests' parametrization is unchanged.


def _tiny_elan(c: int) -> Spec:
    return [
        (None, -1, "Conv", [c, 1, 1]),
        (None, -2, "Conv", [c, 1, 1]),
        (None, -1, "Conv", [c, 3, 1]),
        (None, -1, "Conv", [c, 3, 1]),
        (None, [-1, -2, -3, -4], "Concat", [1]),
    ]


def _tiny_full_spec(w: int) -> Spec:
    """yolov7-tiny: 77 layers, ELAN-tiny blocks, SP-based SPPCSPC, IDetect (w=32: official)."""
    return [
        (None, -1, "Conv", [w, 3, 2]),
        (None, -1, "Conv", [2 * w, 3, 2]),
        *_tiny_elan(w),
        (None, -1, "Conv", [2 * w, 1, 1]),
        (None, -1, "MP", []),
        *_tiny_elan(2 * w),
        ("b14", -1, "Conv", [4 * w, 1, 1]),
        (None, -1, "MP", []),
        *_tiny_elan(4 * w),
        ("b21", -1, "Conv", [8 * w, 1, 1]),
        (None, -1, "MP", []),
        *_tiny_elan(8 * w),
        (None, -1, "Conv", [16 * w, 1, 1]),
        ("spp", -1, "Conv", [8 * w, 1, 1]),
        (None, -2, "Conv", [8 * w, 1, 1]),
        (None, -1, "SP", [5]),
        (None, -2, "SP", [9]),
        (None, -3, "SP", [13]),
        (None, [-1, -2, -3, -4], "Concat", [1]),
        (None, -1, "Conv", [8 * w, 1, 1]),
        (None, [-1, "spp"], "Concat", [1]),
        ("h37", -1, "Conv", [8 * w, 1, 1]),
        (None, -1, "Conv", [4 * w, 1, 1]),
        (None, -1, "Upsample", [None, 2, "nearest"]),
        (None, "b21", "Conv", [4 * w, 1, 1]),
        (None, [-1, -2], "Concat", [1]),
        *_tiny_elan(2 * w),
        ("h47", -1, "Conv", [4 * w, 1, 1]),
        (None, -1, "Conv", [2 * w, 1, 1]),
        (None, -1, "Upsample", [None, 2, "nearest"]),
        (None, "b14", "Conv", [2 * w, 1, 1]),
        (None, [-1, -2], "Concat", [1]),
        *_tiny_elan(w),
        ("h57", -1, "Conv", [2 * w, 1, 1]),
        (None, -1, "Conv", [4 * w, 3, 2]),
        (None, [-1, "h47"], "Concat", [1]),
        *_tiny_elan(2 * w),
        ("h65", -1, "Conv", [4 * w, 1, 1]),
        (None, -1, "Conv", [8 * w, 3, 2]),
        (None, [-1, "h37"], "Concat", [1]),
        *_tiny_elan(4 * w),
        ("h73", -1, "Conv", [8 * w, 1, 1]),
        ("d3", "h57", "Conv", [4 * w, 3, 1]),
        ("d4", "h65", "Conv", [8 * w, 3, 1]),
        ("d5", "h73", "Conv", [16 * w, 3, 1]),
        (None, ["d3", "d4", "d5"], "IDetect", [ANCHORS_P5]),
    ]


def _v7_elan(c: int, out: int, wide: bool) -> Spec:
    """yolov7's ELAN (backbone: concat of 4 branches) or ELAN-W (head: 6 branches, c//2 convs)."""
    inner = c // 2 if wide else c
    joined = [-1, -2, -3, -4, -5, -6] if wide else [-1, -3, -5, -6]
    return [
        (None, -1, "Conv", [c, 1, 1]),
        (None, -2, "Conv", [c, 1, 1]),
        *[(None, -1, "Conv", [inner, 3, 1]) for _ in range(4)],
        (None, joined, "Concat", [1]),
        (None, -1, "Conv", [out, 1, 1]),
    ]


def _v7_down(c: int, extra: Ref | None = None) -> Spec:
    """MP-1 transition; in the head its concat also takes the lateral feature `extra`."""
    joined: list[Ref] = [-1, -3] if extra is None else [-1, -3, extra]
    return [
        (None, -1, "MP", []),
        (None, -1, "Conv", [c, 1, 1]),
        (None, -3, "Conv", [c, 1, 1]),
        (None, -1, "Conv", [c, 3, 2]),
        (None, joined, "Concat", [1]),
    ]


def _yolov7_full_spec(w: int) -> Spec:
    """yolov7: 105 layers, ELAN backbone, SPPCSPC, ELAN-W head, RepConv, IDetect (w=32)."""
    return [
        (None, -1, "Conv", [w, 3, 1]),
        (None, -1, "Conv", [2 * w, 3, 2]),
        (None, -1, "Conv", [2 * w, 3, 1]),
        (None, -1, "Conv", [4 * w, 3, 2]),
        *_v7_elan(2 * w, 8 * w, False),
        *_v7_down(4 * w),
        *_v7_elan(4 * w, 16 * w, False)[:-1],
        ("b24", -1, "Conv", [16 * w, 1, 1]),
        *_v7_down(8 * w),
        *_v7_elan(8 * w, 32 * w, False)[:-1],
        ("b37", -1, "Conv", [32 * w, 1, 1]),
        *_v7_down(16 * w),
        *_v7_elan(8 * w, 32 * w, False),
        ("h51", -1, "SPPCSPC", [16 * w]),
        (None, -1, "Conv", [8 * w, 1, 1]),
        (None, -1, "Upsample", [None, 2, "nearest"]),
        (None, "b37", "Conv", [8 * w, 1, 1]),
        (None, [-1, -2], "Concat", [1]),
        *_v7_elan(8 * w, 8 * w, True)[:-1],
        ("h63", -1, "Conv", [8 * w, 1, 1]),
        (None, -1, "Conv", [4 * w, 1, 1]),
        (None, -1, "Upsample", [None, 2, "nearest"]),
        (None, "b24", "Conv", [4 * w, 1, 1]),
        (None, [-1, -2], "Concat", [1]),
        *_v7_elan(4 * w, 4 * w, True)[:-1],
        ("h75", -1, "Conv", [4 * w, 1, 1]),
        *_v7_down(4 * w, "h63"),
        *_v7_elan(8 * w, 8 * w, True)[:-1],
        ("h88", -1, "Conv", [8 * w, 1, 1]),
        *_v7_down(8 * w, "h51"),
        *_v7_elan(16 * w, 16 * w, True)[:-1],
        ("h101", -1, "Conv", [16 * w, 1, 1]),
        ("d3", "h75", "RepConv", [8 * w, 3, 1]),
        ("d4", "h88", "RepConv", [16 * w, 3, 1]),
        ("d5", "h101", "RepConv", [32 * w, 3, 1]),
        (None, ["d3", "d4", "d5"], "IDetect", [ANCHORS_P5]),
    ]


FULL_SIZE: dict[str, Any] = {
    "yolov7-tiny": lambda w: (_tiny_full_spec(w), "leaky"),
    "yolov7": lambda w: (_yolov7_full_spec(w), "silu"),
}


def build_full_size(family: str, nc: int = 80, width: int = 32) -> Model:
    """A full-size yolov7-tiny or yolov7 (random weights), detection biases initialised with the
    usual YOLO prior (few objects per image, uniform classes), so that a random model proposes few
    boxes (about 8 objects per image a priori) and NMS costs what it costs on a real model."""
    net = build_model(family, nc=nc, width=width, specs=FULL_SIZE)
    head = net.head
    with torch.no_grad():
        for conv, stride in zip(head.m, head.stride, strict=True):
            bias = conv.bias.view(head.na, -1)
            bias[:, 4] += np.log(8 / (640 / float(stride)) ** 2)
            bias[:, 5:] += np.log(0.6 / (nc - 0.99))
    return net


# --- pose (yolov7-w6-pose: the IKeypoint head) ---------------------------------------------------


def build_pose_model(
    family: str = "yolov7-w6-pose",
    width: int = 8,
    objects_per_image: float | None = 60.0,
    specs: dict[str, Any] = POSE_FAMILIES,
) -> Model:
    """A yolov7-w6-pose-layout model (nc 1, 'person', 17 keypoints) with random weights.

    Random weights score nearly every anchor around 0.5; `objects_per_image` sets the objectness
    bias (the usual YOLO prior) so that a photo yields some tens of confident candidates, enough
    for exactness tests to compare real detections and for NMS to cost what it costs."""
    net = build_model(family, nc=1, width=width, names=["person"], specs=specs)
    if objects_per_image is not None:
        head = net.head
        with torch.no_grad():
            for i, stride in enumerate(head.stride):
                prior = float(np.log(objects_per_image / (640 / float(stride)) ** 2))
                for anchor in range(head.na):
                    conv, channel = pose_channel(head, i, anchor * head.no + 4)
                    conv.bias[channel] += prior
                    # One class: its probability ~0.95, so that obj * cls passes like obj alone.
                    conv, channel = pose_channel(head, i, anchor * head.no + 5)
                    conv.bias[channel] += float(np.log(0.95 / 0.05))
    return net


def pose_channel(head: IKeypoint, level: int, index: int) -> tuple[nn.Conv2d, int]:
    """The conv and output channel behind channel `index` of level `level`'s concatenation
    [box branch (na * no_det), keypoint branch (na * no_kpt)], which the head's view cuts into
    groups of `no`: anchor a's objectness is index a * no + 4, from either branch."""
    boxes = head.na * head.no_det
    if index < boxes:
        return head.m[level], index
    branch = head.m_kpt[level]
    last = branch[-1] if isinstance(branch, nn.Sequential) else branch
    return last, index - boxes


@contextlib.contextmanager
def saved_from_cuda() -> Iterator[None]:
    """torch.save records every storage's location as 'cuda:0', as a GPU training run writes it."""
    with mock.patch("torch.serialization.location_tag", return_value="cuda:0"):
        yield


def _w6_pose_full_spec(w: int) -> Spec:
    """yolov7-w6-pose at the published widths (w=64): the w6 backbone (ReOrg stem, strided-conv
    downsampling, ELAN blocks, P6 output), SPPCSPC, the ELAN-W neck, and IKeypoint on four
    levels with the depthwise keypoint branches."""

    def stage(c: int, label: str) -> Spec:  # backbone ELAN on c channels -> 2c, labelled
        return [*_v7_elan(c, 2 * c, False)[:-1], (label, -1, "Conv", [2 * c, 1, 1])]

    def up(c: int, lateral: str) -> Spec:
        return [
            (None, -1, "Conv", [c, 1, 1]),
            (None, -1, "Upsample", [None, 2, "nearest"]),
            (None, lateral, "Conv", [c, 1, 1]),
            (None, [-1, -2], "Concat", [1]),
        ]

    def neck(c: int, label: str) -> Spec:  # ELAN-W on c channels -> c, labelled
        return [*_v7_elan(c, c, True)[:-1], (label, -1, "Conv", [c, 1, 1])]

    return [
        (None, -1, "ReOrg", []),
        (None, -1, "Conv", [w, 3, 1]),
        (None, -1, "Conv", [2 * w, 3, 2]),
        *stage(w, "b10"),
        (None, -1, "Conv", [4 * w, 3, 2]),
        *stage(2 * w, "b19"),
        (None, -1, "Conv", [8 * w, 3, 2]),
        *stage(4 * w, "b28"),
        (None, -1, "Conv", [12 * w, 3, 2]),
        *stage(6 * w, "b37"),
        (None, -1, "Conv", [16 * w, 3, 2]),
        *stage(8 * w, "b46"),
        ("h47", -1, "SPPCSPC", [8 * w]),
        *up(6 * w, "b37"),
        *neck(6 * w, "h59"),
        *up(4 * w, "b28"),
        *neck(4 * w, "h71"),
        *up(2 * w, "b19"),
        *neck(2 * w, "h83"),
        (None, -1, "Conv", [4 * w, 3, 2]),
        (None, [-1, "h71"], "Concat", [1]),
        *neck(4 * w, "h93"),
        (None, -1, "Conv", [6 * w, 3, 2]),
        (None, [-1, "h59"], "Concat", [1]),
        *neck(6 * w, "h103"),
        (None, -1, "Conv", [8 * w, 3, 2]),
        (None, [-1, "h47"], "Concat", [1]),
        *neck(8 * w, "h113"),
        ("d3", "h83", "Conv", [4 * w, 3, 1]),
        ("d4", "h93", "Conv", [8 * w, 3, 1]),
        ("d5", "h103", "Conv", [12 * w, 3, 1]),
        ("d6", "h113", "Conv", [16 * w, 3, 1]),
        (None, ["d3", "d4", "d5", "d6"], "IKeypoint", [ANCHORS_P6, 17, True]),
    ]


POSE_FULL_SIZE: dict[str, Any] = {"yolov7-w6-pose": lambda w: (_w6_pose_full_spec(w), "silu")}


def build_full_size_pose(width: int = 64) -> Model:
    """yolov7-w6-pose at its published widths, random weights (speed does not depend on them),
    objectness biased as build_pose_model does so that NMS has some tens of people to sort."""
    return build_pose_model(width=width, specs=POSE_FULL_SIZE)


def calm_keypoints(net: Model, spread: float = 0.15, seed: int = 0) -> Model:
    """Make a random pose model's keypoints land near their own detection (raw x, y values about
    0.5 +- spread: within a cell or two of the anchor cell) instead of far outside the image, so
    that a picture shows the drawing. The poses stay random: this finds no people."""
    head = net.head
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for level in range(head.nl):
            for anchor in range(head.na):
                for k in range(head.nkpt):
                    for column in (head.no_det + 3 * k, head.no_det + 3 * k + 1):
                        conv, channel = pose_channel(head, level, anchor * head.no + column)
                        conv.weight[channel] *= 0.0
                        conv.bias[channel] = 0.5 + spread * torch.randn((), generator=gen)
    return net
