"""Atrous Spatial Pyramid Pooling, the DeepLabv3+ encoder head."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .layers import ConvBNReLU, SeparableConv2d, set_conv_geometry

ASPP_RATES_AT_OS16 = (6, 12, 18)


def aspp_rates_for(output_stride: int, rates_at_os16: Sequence[int] = ASPP_RATES_AT_OS16) -> tuple[int, ...]:
    """Atrous rates at ``output_stride``: (6, 12, 18) at 16, (12, 24, 36) at 8, (3, 6, 9) at 32.

    The rates scale with the feature resolution so the branches see the same image context.
    """
    return tuple(max(1, round(r * 16 / output_stride)) for r in rates_at_os16)


def broadcast_like(pooled: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """The (N, C, 1, 1) image-pooling map broadcast to ``like``'s (N, C, h, w), in ``like``'s layout.

    Bilinear upsampling of a 1x1 map is a broadcast: an expand, no interpolation op. A
    channels_last ``like`` gets a channels_last copy: concatenated with a stride-0 view,
    channels_last maps give an NCHW result, and the projection would run on that (3x slower on
    CPU, docs/benchmarks.md).
    """
    pooled = pooled.expand_as(like)
    if like.is_contiguous(memory_format=torch.channels_last):
        pooled = pooled.contiguous(memory_format=torch.channels_last)
    return pooled


# A leaf for torch.fx (prepare_for_inference traces the model): its branch is on the layout.
torch.fx.wrap("broadcast_like")


class ASPP(nn.Module):
    """Image pooling + 1x1 + an atrous 3x3 branch per rate, concatenated and projected.

    Three rates in the paper; none (``rates=()``) gives the reference's mobile ASPP, image pooling
    and 1x1 only (its MobileNetV2 models: ``model.py`` with ``atrous_rates`` unset).

    Input (N, in_channels, h, w); output (N, channels, h, w).

    Args:
        in_channels: channels of the backbone's final feature.
        rates: atrous rates of the 3x3 branches (three in the paper; may be empty).
        channels: channels of every branch and of the output (256 in the paper).
        separable: atrous separable convs in the 3x3 branches (the paper's 'SC').
        dropout: after the projection; 0.1 as the reference (keep_prob 0.9).
    """

    def __init__(
        self,
        in_channels: int,
        rates: Sequence[int] = ASPP_RATES_AT_OS16,
        *,
        channels: int = 256,
        separable: bool = False,
        dropout: float = 0.1,
    ):
        super().__init__()
        self.pooling = nn.Sequential(nn.AdaptiveAvgPool2d(1), ConvBNReLU(in_channels, channels, 1))
        self.conv1x1 = ConvBNReLU(in_channels, channels, 1)
        if separable:
            self.atrous = nn.ModuleList(SeparableConv2d(in_channels, channels, dilation=r) for r in rates)
        else:
            self.atrous = nn.ModuleList(ConvBNReLU(in_channels, channels, 3, dilation=r) for r in rates)
        self.project = ConvBNReLU(channels * (2 + len(self.atrous)), channels, 1)
        self.dropout = nn.Dropout(dropout)

    @property
    def rates(self) -> tuple[int, ...]:
        return tuple((b.conv_dw if hasattr(b, "conv_dw") else b.conv).dilation[0] for b in self.atrous)

    @rates.setter
    def rates(self, rates: Sequence[int]) -> None:
        if len(rates) != len(self.atrous):
            raise ValueError(f"expected {len(self.atrous)} ASPP rates, got {list(rates)}")
        for branch, r in zip(self.atrous, rates):
            set_conv_geometry(branch.conv_dw if hasattr(branch, "conv_dw") else branch.conv, 1, r)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = self.pooling(x)  # first, as before: the backward's summation order into x is kept
        branches = [self.conv1x1(x), *(branch(x) for branch in self.atrous)]
        pooled = broadcast_like(pooled, branches[0])
        return self.dropout(self.project(torch.cat([pooled, *branches], dim=1)))
