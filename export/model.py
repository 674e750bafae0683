"""Our own `models.yolo` classes: the layer graph walker and the detection heads.

As in `export.layers`, unpickling restores the official attributes onto these classes; `forward`
relies only on those. Every head returns the decoded "grid" layout: (N, A, 5 + nc) with xywh in
input pixels, objectness and class probabilities.
"""

from __future__ import annotations

import torch
from torch import nn

from export.layers import ImplicitA, ImplicitM


class Detect(nn.Module):
    """Detection head: one 1x1 conv per level, decoded against the grid and the anchors."""

    def __init__(self, nc: int, anchors: list[list[int]], ch: list[int]) -> None:
        super().__init__()
        self.nc = nc
        self.no = nc + 5
        self.nl = len(anchors)
        self.na = len(anchors[0]) // 2
        self.grid = [torch.zeros(1)] * self.nl
        a = torch.tensor(anchors, dtype=torch.float32).view(self.nl, -1, 2)
        self.register_buffer("anchors", a)  # grid units once the Model divides by stride
        self.register_buffer("anchor_grid", a.clone().view(self.nl, 1, -1, 1, 1, 2))  # pixels
        self.stride = torch.zeros(self.nl)
        self.m = nn.ModuleList(nn.Conv2d(x, self.no * self.na, 1) for x in ch[: self.nl])

    def level(self, i: int, x: torch.Tensor) -> torch.Tensor:
        """Raw head output of level i, before decoding."""
        return self.m[i](x)

    def anchor_pixels(self, i: int) -> torch.Tensor:
        """Anchor sizes of level i in input pixels, shaped (1, na, 1, 1, 2)."""
        anchor_grid = getattr(self, "anchor_grid", None)
        if anchor_grid is not None:
            return anchor_grid[i].view(1, self.na, 1, 1, 2).float()
        return (self.anchors[i] * float(self.stride[i])).view(1, self.na, 1, 1, 2).float()

    def stride_values(self) -> tuple[float, ...]:
        """Strides as Python floats, so that tracing bakes them in as constants."""
        cached = getattr(self, "_stride_values", None)
        if cached is None:
            cached = tuple(float(s) for s in self.stride)
            self._stride_values = cached
        return cached

    def forward(self, xs: list[torch.Tensor]) -> torch.Tensor:
        levels = []
        for i in range(self.nl):
            p = self.level(i, xs[i])
            ny, nx = p.shape[2], p.shape[3]  # symbolic under a --rect export
            p = p.view(-1, self.na, self.no, ny, nx).permute(0, 1, 3, 4, 2)
            y = p.sigmoid()
            gy, gx = torch.meshgrid(
                torch.arange(ny, dtype=y.dtype), torch.arange(nx, dtype=y.dtype), indexing="ij"
            )
            grid = torch.stack((gx, gy), 2).view(1, 1, ny, nx, 2)
            stride = self.stride_values()[i]
            xy = (y[..., 0:2] * 2.0 - 0.5 + grid) * stride
            wh = (y[..., 2:4] * 2.0) ** 2 * self.anchor_pixels(i).to(y.dtype)
            y = torch.cat((xy, wh, y[..., 4:]), -1)
            levels.append(y.reshape(-1, self.na * ny * nx, self.no))
        return torch.cat(levels, 1)


class IDetect(Detect):
    """Training-form head: implicit offset before and implicit scale after each level's conv."""

    def __init__(self, nc: int, anchors: list[list[int]], ch: list[int]) -> None:
        super().__init__(nc, anchors, ch)
        self.ia = nn.ModuleList(ImplicitA(x) for x in ch[: self.nl])
        self.im = nn.ModuleList(ImplicitM(self.no * self.na) for _ in ch[: self.nl])

    def level(self, i: int, x: torch.Tensor) -> torch.Tensor:
        ia, im = getattr(self, "ia", None), getattr(self, "im", None)
        if ia is not None:
            x = ia[i](x)
        x = self.m[i](x)
        if im is not None:
            x = im[i](x)
        return x


class IAuxDetect(IDetect):
    """P6 training-form head: IDetect on the first nl inputs plus auxiliary heads (`m2`) used only
    in training; inference ignores the auxiliary inputs."""

    def __init__(self, nc: int, anchors: list[list[int]], ch: list[int]) -> None:
        super().__init__(nc, anchors, ch)
        self.m2 = nn.ModuleList(nn.Conv2d(x, self.no * self.na, 1) for x in ch[self.nl :])


class Model(nn.Module):
    """Walks `self.model` in order; a layer's `f` says where its input comes from."""

    def __init__(self) -> None:
        super().__init__()
        self.model = nn.Sequential()
        self.save: list[int] = []
        self.names: list[str] = []
        self.stride = torch.zeros(0)
        self.yaml: dict = {}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outputs: list[torch.Tensor | None] = []
        for layer in self.model:
            if layer.f != -1:
                if isinstance(layer.f, int):
                    x = outputs[layer.f]
                else:
                    x = [x if j == -1 else outputs[j] for j in layer.f]
            x = layer(x)
            outputs.append(x if layer.i in self.save else None)
        return x

    @property
    def head(self) -> Detect:
        return self.model[-1]
