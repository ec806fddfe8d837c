"""Building blocks shared by the backbones, ASPP and decoder, and the output-stride rule."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .._compat import is_compiling


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
        # self.training first: torch.fx traces the eval-mode model, which never takes this branch.
        if self.training and space_to_batch_pays(self.conv_dw, x):
            x = depthwise_space_to_batch(self.conv_dw, x)
        else:
            x = self.conv_dw(x)
        x = self.act_dw(self.bn_dw(x))
        return self.act_pw(self.bn_pw(self.conv_pw(x)))


def runs_eagerly(x: torch.Tensor) -> bool:
    """Whether ``x`` is a plain tensor in eager code: no FakeTensor / subclass, and nothing is
    tracing, scripting or compiling (``torch.jit``, ``torch.export``, ``torch.compile``).

    The CPU fast paths (:func:`depthwise_space_to_batch`, ``fuse.PackedConv2d``) run only then, so
    export and compilation see a plain convolution.
    """
    return (
        type(x) is torch.Tensor
        and not torch.jit.is_tracing()
        and not torch.jit.is_scripting()
        and not is_compiling()
    )


def space_to_batch_pays(conv: nn.Conv2d, x: torch.Tensor) -> bool:
    """Whether :func:`depthwise_space_to_batch` should run ``conv`` on ``x``: CPU, channels_last, rate > 1.

    oneDNN's depthwise kernels (the fast ones, forward and backward) take no dilation in the
    backward pass and at most 6 px of padding in the forward; a dilated depthwise conv falls back to
    its generic grouped kernel, several times slower in training (docs/benchmarks.md). Only the
    channels_last layout gains: in NCHW the rearrangement costs more than it saves.
    """
    d = conv.dilation
    return (
        runs_eagerly(x)
        and x.device.type == "cpu"
        and x.dim() == 4
        and x.is_contiguous(memory_format=torch.channels_last)
        and conv.groups == conv.in_channels == conv.out_channels
        and conv.kernel_size == (3, 3)
        and conv.stride == (1, 1)
        and d[0] == d[1] > 1
        and conv.padding == d
        and conv.padding_mode == "zeros"
    )


def depthwise_space_to_batch(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """``conv(x)`` for a 3x3 depthwise conv of rate ``d`` as an undilated conv on ``d * d`` phase images.

    Output pixel (y, x) reads the input at (y + i*d, x + j*d), i, j in {-1, 0, 1}: only pixels of
    its own phase (y mod d, x mod d). Gathering every phase into an image of its own
    (ceil(H/d) x ceil(W/d), zero-padded at the end) makes the rate-d conv an ordinary 3x3 conv with
    padding 1 on a batch of ``N * d * d`` images: the space-to-batch rewrite of TF's atrous
    convolution. The same sums, so the same result to fp32 rounding, and differentiable.

    Args:
        conv: a depthwise ``nn.Conv2d`` (3x3, stride 1, padding = dilation = d).
        x: (N, C, H, W) float, channels_last.

    Returns:
        (N, C, H, W), channels_last.
    """
    d = conv.dilation[0]
    n, c, h, w = x.shape
    hq, wq = -(-h // d), -(-w // d)
    xh = F.pad(x.permute(0, 2, 3, 1), (0, 0, 0, wq * d - w, 0, hq * d - h))  # (N, H', W', C) memory order
    phases = xh.reshape(n, hq, d, wq, d, c).permute(0, 2, 4, 1, 3, 5).reshape(n * d * d, hq, wq, c)
    y = F.conv2d(phases.permute(0, 3, 1, 2), conv.weight, conv.bias, 1, 1, 1, conv.groups)
    y = (
        y.permute(0, 2, 3, 1)
        .reshape(n, d, d, hq, wq, c)
        .permute(0, 3, 1, 4, 2, 5)
        .reshape(n, hq * d, wq * d, c)
    )
    return y[:, :h, :w].permute(0, 3, 1, 2).contiguous(memory_format=torch.channels_last)


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


def unwrap_model(model: nn.Module) -> nn.Module:
    """The module that owns ``output_stride`` under DDP (``.module``) or torch.compile (``._orig_mod``)."""
    while True:
        if hasattr(model, "_orig_mod"):
            model = model._orig_mod
        elif isinstance(model, nn.parallel.DistributedDataParallel) or type(model).__name__ == "DataParallel":
            model = model.module
        else:
            return model
