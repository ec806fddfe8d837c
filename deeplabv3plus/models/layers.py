"""Building blocks shared by the backbones, ASPP and decoder, and the output-stride rule."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn


class ConvBNReLU(nn.Sequential):
    """conv -> BatchNorm -> ReLU (ReLU optional). Keys: ``conv.weight``, ``bn.*``.

    Padding is ``dilation * (kernel_size - 1) // 2``: 'same' at stride 1, and at stride 2 on
    odd inputs the same output size as TF's ``conv2d_same`` (513 -> 257).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 1,
        *,
        stride: int = 1,
        dilation: int = 1,
        relu: bool = True,
        bn_eps: float = 1e-5,
    ):
        super().__init__()
        self.conv = nn.Conv2d(
            in_channels,
            out_channels,
            kernel_size,
            stride=stride,
            padding=dilation * (kernel_size - 1) // 2,
            dilation=dilation,
            bias=False,
        )
        self.bn = nn.BatchNorm2d(out_channels, eps=bn_eps)
        self.act = nn.ReLU(inplace=True) if relu else nn.Identity()


class SeparableConv2d(nn.Module):
    """Atrous separable conv: depthwise 3x3 (rate r) -> BN (-> ReLU) -> pointwise 1x1 -> BN (-> ReLU).

    Keys match timm's ``SeparableConv2d``: ``conv_dw``, ``bn_dw``, ``conv_pw``, ``bn_pw``.

    Args:
        relu: put a ReLU after each BN. The ASPP/decoder separable convs and Xception's last
            exit block use it; the other Xception separable convs are pre-activated instead
            (ReLU on their input) and set it False.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        stride: int = 1,
        dilation: int = 1,
        relu: bool = True,
        bn_eps: float = 1e-5,
    ):
        super().__init__()
        self.conv_dw = nn.Conv2d(
            in_channels, in_channels, 3, stride=stride, padding=dilation, dilation=dilation,
            groups=in_channels, bias=False,
        )  # fmt: skip
        self.bn_dw = nn.BatchNorm2d(in_channels, eps=bn_eps)
        self.act_dw = nn.ReLU(inplace=True) if relu else nn.Identity()
        self.conv_pw = nn.Conv2d(in_channels, out_channels, 1, bias=False)
        self.bn_pw = nn.BatchNorm2d(out_channels, eps=bn_eps)
        self.act_pw = nn.ReLU(inplace=True) if relu else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act_dw(self.bn_dw(self.conv_dw(x)))
        return self.act_pw(self.bn_pw(self.conv_pw(x)))


def set_conv_geometry(conv: nn.Conv2d, stride: int, dilation: int = 1) -> None:
    """Change a built conv's stride and dilation in place, keeping 'same'-style padding.

    Changing these attributes needs no new weights: this is how one set of weights runs at
    every output stride.
    """
    k = conv.kernel_size[0]
    conv.stride = (stride, stride)
    conv.dilation = (dilation, dilation)
    conv.padding = (dilation * (k - 1) // 2,) * 2


def atrous_plan(unit_strides: Sequence[int], output_stride: int, stem_stride: int) -> list[tuple[int, int]]:
    """(stride, dilation) of each unit for a target output stride.

    This is the reference's ``stack_blocks_dense`` rule: units stride normally until the
    running stride reaches ``output_stride``; from then on every unit runs at stride 1, and a
    unit that would have strided keeps the current rate while all later units use the rate
    multiplied by its stride. OS 16 on a stride-32 network: rates 1 ... 1 then 2; OS 8: 2 then 4.

    Args:
        unit_strides: nominal stride of every unit after the stem, in forward order.
        output_stride: 8, 16 or 32 (input size / final feature size).
        stem_stride: total stride of the layers before the first unit.

    Returns:
        One (stride, dilation) pair per unit.

    Raises:
        ValueError: when the network cannot reach ``output_stride``.
    """
    total = stem_stride
    for s in unit_strides:
        total *= s
    if output_stride not in (8, 16, 32) or output_stride > total or output_stride < stem_stride:
        raise ValueError(f"output_stride must be one of 8, 16, 32 and <= {total}, got {output_stride}")
    current, rate, plan = stem_stride, 1, []
    for s in unit_strides:
        if current == output_stride:
            plan.append((1, rate))
            rate *= s
        else:
            plan.append((s, 1))
            current *= s
    return plan


def init_weights(module: nn.Module) -> None:
    """He (fan-out) init for convs, BN to identity, as torchvision's ResNet does.

    The fan-out of a grouped conv is counted per group: PyTorch's ``kaiming_normal_`` would use
    ``out_channels * k * k`` for a depthwise conv, ``channels`` times too many, which shrinks
    every Xception block's output ~100x at initialisation (visible in eval mode).
    """
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            fan_out = m.out_channels // m.groups * m.kernel_size[0] * m.kernel_size[1]
            nn.init.normal_(m.weight, std=math.sqrt(2.0 / fan_out))
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
