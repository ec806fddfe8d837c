"""The DeepLabv3+ decoder: refine the encoder output with the stride-4 low-level feature."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .layers import ConvBNReLU, SeparableConv2d


class Decoder(nn.Module):
    """Project low-level features to 48 ch, concat with the upsampled encoder output, two 3x3 convs.

    Args:
        low_level_in: channels of the backbone's low-level feature.
        encoder_channels: channels of the ASPP output (256).
        low_level_channels: projection width; 48 is the paper's best (Table 1).
        channels: width of the two 3x3 convs (256, Table 2).
        separable: separable 3x3 convs (the paper's 'SC').
        align_corners: of the bilinear upsampling; True as the reference.
    """

    def __init__(
        self,
        low_level_in: int,
        encoder_channels: int = 256,
        *,
        low_level_channels: int = 48,
        channels: int = 256,
        separable: bool = False,
        align_corners: bool = True,
    ):
        super().__init__()
        self.align_corners = align_corners
        self.low_level = ConvBNReLU(low_level_in, low_level_channels, 1)
        in_channels = encoder_channels + low_level_channels
        if separable:
            self.fuse = nn.Sequential(
                SeparableConv2d(in_channels, channels), SeparableConv2d(channels, channels)
            )
        else:
            self.fuse = nn.Sequential(ConvBNReLU(in_channels, channels, 3), ConvBNReLU(channels, channels, 3))

    def forward(self, encoder_out: torch.Tensor, low_level: torch.Tensor) -> torch.Tensor:
        """(N, 256, h, w) and (N, C_low, H/4, W/4) -> (N, channels, H/4, W/4)."""
        low_level = self.low_level(low_level)
        encoder_out = F.interpolate(
            encoder_out, size=low_level.shape[2:], mode="bilinear", align_corners=self.align_corners
        )
        return self.fuse(torch.cat([encoder_out, low_level], dim=1))
