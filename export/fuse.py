"""Fold everything that is linear at inference into the convolutions before them or after them.

Conv+BatchNorm, RepConv's three branches, and IDetect's implicit offset/scale all become plain
convolution weights and biases; IAuxDetect's auxiliary heads are dropped. The result computes the
same function as the training form, with fewer and cheaper operators in the exported graph.
"""

from __future__ import annotations

import torch
from torch import nn

from export.layers import Conv, RepConv
from export.model import IDetect, Model


def conv_bn_weights(
    conv: nn.Conv2d, bn: nn.BatchNorm2d | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Weight and bias of one conv with the BN after it folded in."""
    weight = conv.weight.detach().float()
    bias = (
        conv.bias.detach().float()
        if conv.bias is not None
        else torch.zeros(weight.shape[0], dtype=weight.dtype)
    )
    if bn is None:
        return weight, bias
    scale = bn.weight.detach().float() / torch.sqrt(bn.running_var.float() + bn.eps)
    weight = weight * scale.view(-1, 1, 1, 1)
    bias = (bias - bn.running_mean.float()) * scale + bn.bias.detach().float()
    return weight, bias


def _conv_like(template: nn.Conv2d, weight: torch.Tensor, bias: torch.Tensor) -> nn.Conv2d:
    fused = nn.Conv2d(
        template.in_channels,
        template.out_channels,
        template.kernel_size,
        template.stride,
        template.padding,
        template.dilation,
        template.groups,
        bias=True,
    )
    fused.weight.data.copy_(weight)
    fused.bias.data.copy_(bias)
    fused.requires_grad_(False)
    return fused


def fuse_conv(layer: Conv) -> None:
    bn = getattr(layer, "bn", None)
    if bn is None:
        return
    layer.conv = _conv_like(layer.conv, *conv_bn_weights(layer.conv, bn))
    del layer.bn


def _branch_weights(branch: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """A RepConv branch is Sequential(conv, bn), a Conv, or a bare conv."""
    if isinstance(branch, nn.Sequential):
        return conv_bn_weights(branch[0], branch[1] if len(branch) > 1 else None)
    if isinstance(branch, Conv):
        return conv_bn_weights(branch.conv, getattr(branch, "bn", None))
    return conv_bn_weights(branch, None)


def fuse_repconv(layer: RepConv) -> None:
    if getattr(layer, "rbr_reparam", None) is not None:
        return
    dense = layer.rbr_dense[0] if isinstance(layer.rbr_dense, nn.Sequential) else layer.rbr_dense
    dense = dense.conv if isinstance(dense, Conv) else dense
    weight, bias = _branch_weights(layer.rbr_dense)
    kh, kw = weight.shape[2:]
    w1, b1 = _branch_weights(layer.rbr_1x1)
    weight = weight + nn.functional.pad(w1, [(kw - 1) // 2] * 2 + [(kh - 1) // 2] * 2)
    bias = bias + b1
    identity = getattr(layer, "rbr_identity", None)
    if identity is not None:
        in_per_group = weight.shape[1]
        kernel = torch.zeros_like(weight)
        for c in range(weight.shape[0]):
            kernel[c, c % in_per_group, (kh - 1) // 2, (kw - 1) // 2] = 1.0
        scale = identity.weight.detach().float() / torch.sqrt(identity.running_var + identity.eps)
        weight = weight + kernel * scale.view(-1, 1, 1, 1)
        bias = bias + identity.bias.detach().float() - identity.running_mean * scale
    layer.rbr_reparam = _conv_like(dense, weight, bias)
    for name in ("rbr_dense", "rbr_1x1", "rbr_identity"):
        if hasattr(layer, name):
            delattr(layer, name)
    layer.deploy = True


def fold_implicit(head: IDetect) -> None:
    """m(x + a) * s == (s * W) x + s * (W a + b) for a 1x1 conv m: fold a and s into m."""
    ia, im = getattr(head, "ia", None), getattr(head, "im", None)
    for i, conv in enumerate(head.m):
        weight = conv.weight.detach().float()
        bias = conv.bias.detach().float()
        if ia is not None:
            offset = ia[i].implicit.detach().float().reshape(-1)
            bias = bias + weight.reshape(weight.shape[0], -1) @ offset
        if im is not None:
            scale = im[i].implicit.detach().float().reshape(-1)
            weight = weight * scale.view(-1, 1, 1, 1)
            bias = bias * scale
        head.m[i] = _conv_like(conv, weight, bias)
    for name in ("ia", "im", "m2"):
        if hasattr(head, name):
            delattr(head, name)


def fuse_model(net: Model) -> Model:
    """Fuse in place and return the model (eval mode, float32)."""
    net.float().eval()
    for module in list(net.modules()):
        if isinstance(module, RepConv):
            fuse_repconv(module)
        elif isinstance(module, Conv):
            fuse_conv(module)
        elif isinstance(module, IDetect):
            fold_implicit(module)
    return net
