"""Our own `models.yolo.IKeypoint`: the yolov7-w6-pose head (boxes plus 17 COCO keypoints).

As with the other heads, unpickling restores the official attributes (`m`, `ia`, `im`, `m_kpt`,
`nkpt`, `no_det`, `no_kpt`, ...) onto this class without running `__init__`; `forward` relies only
on those. It returns the decoded rows (N, A, 5 + nc + 3 * nkpt): xywh in input pixels, objectness,
class probabilities, then per keypoint x, y (input pixels) and its score (sigmoid).
"""

from __future__ import annotations

import torch
from torch import nn

from export.layers import Conv
from export.model import IDetect

COCO_KEYPOINTS = (
    "nose",
    "left_eye",
    "right_eye",
    "left_ear",
    "right_ear",
    "left_shoulder",
    "right_shoulder",
    "left_elbow",
    "right_elbow",
    "left_wrist",
    "right_wrist",
    "left_hip",
    "right_hip",
    "left_knee",
    "right_knee",
    "left_ankle",
    "right_ankle",
)


def _keypoint_branch(c: int, out: int, dw_conv_kpt: bool) -> nn.Module:
    """m_kpt of one level: six (depthwise 3x3 Conv, 1x1 Conv) pairs, the last 1x1 a plain conv
    with bias; or, without dw_conv_kpt, a single 1x1 conv."""
    if not dw_conv_kpt:
        return nn.Conv2d(c, out, 1)
    body: list[nn.Module] = []
    for _ in range(5):
        body += [Conv(c, c, k=3, g=c), Conv(c, c)]
    body += [Conv(c, c, k=3, g=c), nn.Conv2d(c, out, 1)]
    return nn.Sequential(*body)


class IKeypoint(IDetect):
    """IDetect's box branch (ia -> m -> im) beside a keypoint branch (m_kpt) on each level."""

    def __init__(
        self,
        nc: int,
        anchors: list[list[int]],
        ch: list[int],
        nkpt: int = 17,
        dw_conv_kpt: bool = True,
    ) -> None:
        super().__init__(nc, anchors, ch)
        self.nkpt = nkpt
        self.dw_conv_kpt = dw_conv_kpt
        self.no_det = nc + 5
        self.no_kpt = 3 * nkpt
        self.no = self.no_det + self.no_kpt
        self.flip_test = False
        self.inplace = True
        # IDetect built m and im for `no` = nc + 5 channels per anchor: the box branch's size here.
        self.m_kpt = nn.ModuleList(
            _keypoint_branch(x, self.no_kpt * self.na, dw_conv_kpt) for x in ch[: self.nl]
        )

    def level(self, i: int, x: torch.Tensor) -> torch.Tensor:
        # All anchors' box channels, then all anchors' keypoint channels; forward's view cuts
        # this order into groups of `no` as the official head does (the weights expect it).
        return torch.cat((super().level(i, x), self.m_kpt[i](x)), 1)

    def forward(self, xs: list[torch.Tensor]) -> torch.Tensor:
        levels = []
        no_det = int(self.no_det)
        for i in range(self.nl):
            p = self.level(i, xs[i])
            ny, nx = p.shape[2], p.shape[3]  # symbolic under a --rect export
            p = p.view(-1, self.na, self.no, ny, nx).permute(0, 1, 3, 4, 2)
            det, kpt = p[..., :no_det].sigmoid(), p[..., no_det:]
            gy, gx = torch.meshgrid(
                torch.arange(ny, dtype=p.dtype), torch.arange(nx, dtype=p.dtype), indexing="ij"
            )
            grid = torch.stack((gx, gy), 2).view(1, 1, ny, nx, 2)
            stride = self.stride_values()[i]
            xy = (det[..., 0:2] * 2.0 - 0.5 + grid) * stride
            wh = (det[..., 2:4] * 2.0) ** 2 * self.anchor_pixels(i).to(p.dtype)
            # Keypoint x and y are not squashed: 2k - 0.5 + grid cell, times the stride.
            kpt = kpt.reshape(*kpt.shape[:-1], -1, 3)
            kxy = (kpt[..., 0:2] * 2.0 - 0.5 + grid.unsqueeze(-2)) * stride
            kpt = torch.cat((kxy, kpt[..., 2:3].sigmoid()), -1).flatten(-2)
            y = torch.cat((xy, wh, det[..., 4:], kpt), -1)
            levels.append(y.reshape(-1, self.na * ny * nx, self.no))
        return torch.cat(levels, 1)
