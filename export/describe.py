"""Facts about a loaded model that the summary and the metadata report."""

from __future__ import annotations

import math

from torch import nn

from export import layers
from export.keypoint import IKeypoint
from export.model import IAuxDetect, Model


def round_img_size(size: int, max_stride: int) -> int:
    """Round up to a multiple of the largest stride, as every level's grid must be whole."""
    return max(max_stride, math.ceil(size / max_stride) * max_stride)


def architecture_family(net: Model) -> str:
    """Name the official family from the building blocks present (informational)."""
    kinds = {type(m) for m in net.modules()}
    head = net.model[-1]
    form = "training" if isinstance(head, IAuxDetect) or hasattr(head, "ia") else "deploy"
    if len(head.stride) == 4:
        if layers.Shortcut in kinds:
            name = "yolov7-e6e"
        elif layers.DownC in kinds:
            name = "yolov7-e6/d6"
        else:
            name = "yolov7-w6"
    elif layers.SP in kinds:
        leaky = any(isinstance(m, nn.LeakyReLU) for m in net.modules())
        name = "yolov7-tiny" if leaky else "yolov7-tiny-silu"
    elif layers.RepConv in kinds:
        name = "yolov7"
    else:
        name = "yolov7x" if layers.SPPCSPC in kinds else "yolov7-custom"
    if isinstance(head, IKeypoint):
        name += "-pose"
    return f"{name} ({form} form, {type(head).__name__} head)"
