"""Modified aligned Xception (41, 65, 71), the paper's Xception backbone.

Structure from the reference ``core/xception.py`` (paper section 3.3, Fig. 4): a stem of two regular
3x3 convs (32 s2, 64), then blocks of three separable convs each, the stride in the third,
every max-pool replaced by that strided separable conv, BN after every depthwise conv. Each
separable conv is pre-activated (ReLU on its input) except in the last exit block, where
the ReLUs sit after each BN. The state_dict keys are exactly timm's ``xception41/65/71``
keys without ``head.*``, so timm's ``xception65.tf_in1k`` (a port of the reference ImageNet
checkpoint) loads one-to-one.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .backbone import Backbone
from .layers import ConvBNReLU, SeparableConv2d, init_weights, set_conv_geometry

# The reference Xception uses BN epsilon 1e-3 (TF's default), not PyTorch's 1e-5.
XCEPTION_BN_EPS = 1e-3


@dataclass(frozen=True)
class XceptionBlock:
    """One Xception module: three separable convs of ``depths``, the stride in the third."""

    depths: tuple[int, int, int]
    stride: int = 1
    shortcut: bool = True
    """Residual connection (a 1x1 conv + BN when channels or stride change, else identity)."""
    pre_activation: bool = True
    """ReLU before each separable conv; False puts ReLUs after each BN instead."""


def _entry(*depths_strides: tuple[int, int]) -> list[XceptionBlock]:
    return [XceptionBlock((d, d, d), s) for d, s in depths_strides]


_MIDDLE = XceptionBlock((728, 728, 728))
_EXIT = [
    XceptionBlock((728, 1024, 1024), stride=2),
    XceptionBlock((1536, 1536, 2048), shortcut=False, pre_activation=False),
]

XCEPTION_BLOCKS: dict[int, list[XceptionBlock]] = {
    41: _entry((128, 2), (256, 2), (728, 2)) + [_MIDDLE] * 8 + _EXIT,
    65: _entry((128, 2), (256, 2), (728, 2)) + [_MIDDLE] * 16 + _EXIT,
    71: _entry((128, 2), (256, 1), (256, 2), (728, 1), (728, 2)) + [_MIDDLE] * 16 + _EXIT,
}
"""Entry, middle and exit flows of each depth (reference ``xception_41/65/71``)."""


class XceptionModule(nn.Module):
    """Three separable convs with an optional residual; keys as timm's ``XceptionModule``."""

    def __init__(self, in_channels: int, block: XceptionBlock):
        super().__init__()
        self.stride = block.stride
        self.has_skip = block.shortcut
        self.shortcut = None
        if block.shortcut and (in_channels != block.depths[-1] or block.stride != 1):
            self.shortcut = ConvBNReLU(
                in_channels, block.depths[-1], 1, stride=block.stride, relu=False, bn_eps=XCEPTION_BN_EPS
            )
        self.stack = nn.Sequential()
        for i, depth in enumerate(block.depths):
            if block.pre_activation:
                # Not in place on the first: the block input is still needed by the shortcut.
                self.stack.add_module(f"act{i + 1}", nn.ReLU(inplace=i > 0))
            self.stack.add_module(
                f"conv{i + 1}",
                SeparableConv2d(
                    in_channels,
                    depth,
                    stride=block.stride if i == 2 else 1,
                    relu=not block.pre_activation,
                    bn_eps=XCEPTION_BN_EPS,
                ),
            )
            in_channels = depth
        self.out_channels = in_channels

    def set_stride_dilation(self, stride: int, dilation: int) -> None:
        for i in (1, 2, 3):
            set_conv_geometry(self.stack.get_submodule(f"conv{i}").conv_dw, stride if i == 3 else 1, dilation)
        if self.shortcut is not None:
            self.shortcut.conv.stride = (stride, stride)

    def _residual(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        if not self.has_skip:
            return x
        return x + (self.shortcut(skip) if self.shortcut is not None else skip)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._residual(self.stack(x), x)

    def forward_with_tap(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Forward that also returns the second separable conv's output (pointwise + BN, pre-ReLU)."""
        out, tap = x, x
        for name, layer in self.stack.named_children():
            # act3 is in place; the tap must survive it, so apply that ReLU out of place.
            out = torch.relu(out) if name == "act3" else layer(out)
            if name == "conv2":
                tap = out
        return self._residual(out, x), tap


class Xception(Backbone):
    """Modified aligned Xception trunk returning ``{"low_level", "out"}`` features.

    Low-level feature: the output of entry block 2's second separable conv (pointwise+BN,
    before the ReLU of the strided third), at stride 4 (reference decoder end point
    ``entry_flow/block2/unit_1/xception_module/separable_conv2_pointwise``).

    Args:
        depth: 41, 65 or 71 (see ``XCEPTION_BLOCKS``).
        output_stride: 8, 16 or 32.
    """

    def __init__(self, depth: int = 65, output_stride: int = 16):
        super().__init__()
        if depth not in XCEPTION_BLOCKS:
            raise ValueError(f"Xception depth must be one of {sorted(XCEPTION_BLOCKS)}, got {depth}")
        self.stem = nn.Sequential(
            ConvBNReLU(3, 32, 3, stride=2, bn_eps=XCEPTION_BN_EPS),
            ConvBNReLU(32, 64, 3, bn_eps=XCEPTION_BN_EPS),
        )
        self.stem_stride = 2
        self.blocks = nn.Sequential()
        in_channels, stride = 64, self.stem_stride
        self._tap_index = -1
        for i, block in enumerate(XCEPTION_BLOCKS[depth]):
            if block.stride > 1 and stride == 4 and self._tap_index < 0:
                self._tap_index, low_level_channels = i, block.depths[1]
            module = XceptionModule(in_channels, block)
            self.blocks.add_module(str(i), module)
            in_channels, stride = module.out_channels, stride * block.stride
        self.feature_channels = {"low_level": low_level_channels, "out": in_channels}
        init_weights(self)
        self.output_stride = output_stride

    def units(self) -> list[nn.Module]:
        return list(self.blocks)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        x = self.stem(x)
        low_level = None
        for i, block in enumerate(self.blocks):
            if i == self._tap_index:
                x, low_level = block.forward_with_tap(x)
            else:
                x = block(x)
        return {"low_level": low_level, "out": x}
