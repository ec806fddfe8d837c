"""Atrous ResNet backbones: torchvision's layout ('standard') and the paper's 'beta' variant.

* ``standard``: torchvision's ResNet (7x7 stem, stride in the first unit of each stage).
  Its state_dict keys are torchvision's, so ``resnet101(weights=...)`` loads with
  ``strict=True`` once ``fc.*`` is dropped. Low-level feature: the output of ``layer1``.
* ``beta``: the reference ``resnet_v1_101_beta`` (``core/resnet_v1_beta.py``): three 3x3 stem convs
  (64 s2, 64, 128), a 3x3 s2 max-pool with TF 'SAME' padding (:class:`SamePadMaxPool2d`), the
  stride in the *last* unit of stages 1-3. Low-level feature: the
  conv3+BN output of ``layer1``'s second unit, before its residual add and ReLU
  (reference end point ``block1/unit_2/bottleneck_v1/conv3``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .backbone import Backbone
from .layers import ConvBNReLU, init_weights, set_conv_geometry

RESNET_DEPTHS: dict[int, tuple[int, int, int, int]] = {
    18: (2, 2, 2, 2),
    34: (3, 4, 6, 3),
    50: (3, 4, 6, 3),
    101: (3, 4, 23, 3),
    152: (3, 8, 36, 3),
}
"""Residual units per stage (He et al., 2016): basic blocks below depth 50, bottlenecks from 50."""

STAGE_WIDTHS = (64, 128, 256, 512)
"""Bottleneck width of each stage; its output has 4x as many channels."""


class SamePadMaxPool2d(nn.Module):
    """3x3 stride-2 max-pool with TensorFlow's 'SAME' padding (the reference beta stem's ``pool1``).

    TF pads ``(k - 1) - (H - 1) % s`` in total, the smaller half *before*: a side of even length gets
    0 before and 1 after, an odd one 1 and 1. PyTorch's ``padding=1`` pads 1 before on every side,
    which shifts every window by one pixel on even sizes (then ``ceil(H / 2)`` outputs either way).
    (N, C, H, W) -> (N, C, ceil(H / 2), ceil(W / 2)).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2:]
        # -inf: a padded position never wins the max, as in TF (and PyTorch's own padding).
        x = F.pad(x, (width % 2, 1, height % 2, 1), value=float("-inf"))
        return F.max_pool2d(x, kernel_size=3, stride=2)


class _ResidualUnit(nn.Module):
    """What both unit types share: the shortcut, the output stride hooks and the forward.

    The shortcut is a strided 1x1 conv + BN (``downsample``) when the channels change. When
    only the stride does, it is a plain subsampling (``x[..., ::s, ::s]``, TF's ``subsample``)
    unless ``projection`` asks for the 1x1 conv + BN there too. A subclass builds its convs and
    ``residual(x)``, and names the conv that carries the stride in ``strided_conv``.
    """

    def _init_shortcut(self, in_channels: int, out_channels: int, stride: int, projection: bool) -> None:
        self.stride = stride
        self._shortcut_stride = stride
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if in_channels != out_channels or (projection and stride != 1):
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )

    def set_stride_dilation(self, stride: int, dilation: int) -> None:
        for conv in self.dilated_convs():
            set_conv_geometry(conv, stride if conv is self.strided_conv() else 1, dilation)
        if self.downsample is not None:
            self.downsample[0].stride = (stride, stride)
        self._shortcut_stride = stride

    def shortcut(self, x: torch.Tensor) -> torch.Tensor:
        if self.downsample is not None:
            return self.downsample(x)
        if self._shortcut_stride > 1:
            return x[:, :, :: self._shortcut_stride, :: self._shortcut_stride]
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.residual(x)
        out += self.shortcut(x)  # in place, as torchvision: one block-sized tensor fewer per unit
        return self.relu(out)


class BasicBlock(_ResidualUnit):
    """3x3 (the stride and dilation) -> 3x3 (the dilation), with BN; torchvision's keys (ResNet-18/34)."""

    expansion = 1

    def __init__(self, in_channels: int, width: int, stride: int, projection: bool = False):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, width, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self._init_shortcut(in_channels, width, stride, projection)

    def dilated_convs(self) -> list[nn.Conv2d]:
        return [self.conv1, self.conv2]

    def strided_conv(self) -> nn.Conv2d:
        return self.conv1

    def residual(self, x: torch.Tensor) -> torch.Tensor:
        """The residual branch alone (conv2 + BN output), (N, width, H', W')."""
        return self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))


class Bottleneck(_ResidualUnit):
    """1x1 -> 3x3 (the stride and dilation) -> 1x1, with BN; torchvision's keys."""

    expansion = 4

    def __init__(self, in_channels: int, width: int, stride: int, projection: bool = False):
        super().__init__()
        out_channels = width * self.expansion
        self.conv1 = nn.Conv2d(in_channels, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, out_channels, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self._init_shortcut(in_channels, out_channels, stride, projection)

    def dilated_convs(self) -> list[nn.Conv2d]:
        return [self.conv2]

    def strided_conv(self) -> nn.Conv2d:
        return self.conv2

    def residual(self, x: torch.Tensor) -> torch.Tensor:
        """The residual branch alone (conv3 + BN output), (N, 4*width, H', W')."""
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        return self.bn3(self.conv3(out))


class ResNet(Backbone):
    """Atrous ResNet trunk (no classifier) returning ``{"low_level", "out"}`` features.

    Args:
        depth: 18, 34, 50, 101 or 152 (see ``RESNET_DEPTHS``).
        variant: ``"standard"`` (torchvision) or ``"beta"`` (the paper's reference).
        output_stride: 8, 16 or 32.
        strided_shortcut: shortcut of the ``beta`` units that stride without changing
            channels: ``"subsample"`` as the reference code and its checkpoints, or
            ``"projection"`` (a 1x1 conv + BN). The paper's Table 3 Multiply-Adds match the
            projection form (0.2-0.3% at OS 32, where subsampling is 1.4-2.0% below): see
            docs/macs.md.
    """

    def __init__(
        self,
        depth: int = 101,
        variant: str = "standard",
        output_stride: int = 16,
        strided_shortcut: str = "subsample",
    ):
        super().__init__()
        if depth not in RESNET_DEPTHS:
            raise ValueError(f"ResNet depth must be one of {sorted(RESNET_DEPTHS)}, got {depth}")
        if variant not in ("standard", "beta"):
            raise ValueError(f"ResNet variant must be 'standard' or 'beta', got {variant!r}")
        if strided_shortcut not in ("subsample", "projection"):
            raise ValueError(
                f"strided_shortcut must be 'subsample' or 'projection', got {strided_shortcut!r}"
            )
        self.depth = depth
        self.variant = variant
        if variant == "standard":
            self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
            stem_channels = 64
        else:
            # conv1_1 (s2), conv1_2, conv1_3; conv1_3's BN and ReLU are bn1/relu below, so that
            # both variants share one forward and the standard keeps torchvision's keys.
            self.conv1 = nn.Sequential(
                ConvBNReLU(3, 64, 3, stride=2),
                ConvBNReLU(64, 64, 3),
                nn.Conv2d(64, 128, 3, padding=1, bias=False),
            )
            stem_channels = 128
        self.bn1 = nn.BatchNorm2d(stem_channels)
        self.relu = nn.ReLU(inplace=True)
        # torchvision pads 1 on both sides; the reference beta pools with TF 'SAME' padding, which
        # differs on even sizes (e.g. 512x512, where the windows would be shifted by one pixel).
        self.maxpool = (
            nn.MaxPool2d(kernel_size=3, stride=2, padding=1) if variant == "standard" else SamePadMaxPool2d()
        )
        self.stem_stride = 4

        block = Bottleneck if depth >= 50 else BasicBlock
        in_channels = stem_channels
        for i, (num_units, width) in enumerate(zip(RESNET_DEPTHS[depth], STAGE_WIDTHS)):
            units = []
            for u in range(num_units):
                if variant == "standard":
                    stride = 2 if (u == 0 and i > 0) else 1
                else:
                    stride = 2 if (u == num_units - 1 and i < 3) else 1
                units.append(block(in_channels, width, stride, strided_shortcut == "projection"))
                in_channels = width * block.expansion
            self.add_module(f"layer{i + 1}", nn.Sequential(*units))
        self.feature_channels = {"low_level": STAGE_WIDTHS[0] * block.expansion, "out": in_channels}
        init_weights(self)
        self.output_stride = output_stride

    def units(self) -> list[nn.Module]:
        return [*self.layer1, *self.layer2, *self.layer3, *self.layer4]

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        if self.variant == "standard":
            x = low_level = self.layer1(x)
        else:
            x = self.layer1[0](x)
            low_level = self.layer1[1].residual(x)
            x = self.layer1[1].relu(low_level + self.layer1[1].shortcut(x))
            for unit in self.layer1[2:]:
                x = unit(x)
        x = self.layer4(self.layer3(self.layer2(x)))
        return {"low_level": low_level, "out": x}
