"""Atrous MobileNetV2 (Sandler et al., CVPR 2018) as the reference builds it for DeepLab.

Structure from tensorflow/models ``research/slim/nets/mobilenet``: ``mobilenet_v2.py`` (``V2_DEF``:
a 3x3 stride-2 conv of 32, then 17 inverted residuals ``expanded_conv``; ReLU6 after every conv but
the linear projection; BN with ``center`` and ``scale``), ``conv_blocks.py`` (``expanded_conv``:
1x1 expansion to ``make_divisible(6 * inputs, 8)`` unless that is no wider than the input, 3x3
depthwise with the stride and the atrous rate, 1x1 projection; the residual add only at stride 1
with equal channels) and ``mobilenet.py`` (``mobilenet_base``: the output-stride rule, the same as
:func:`~deeplabv3plus.models.layers.atrous_plan` with the first conv as the stem).
``research/deeplab/core/feature_extractor.py`` (``_mobilenet_v2``) builds it up to ``layer_18``:
the final 1x1 conv to 1280 channels (``layer_19``) is never built, so
``finegrain_classification_mode`` (which widens only that conv) does not apply, and it leaves
``use_explicit_padding`` False ('SAME' padding; here the symmetric padding of the other backbones,
identical to TF's on the odd crops the reference uses, 513 -> 257).

The state_dict keys are torchvision's ``mobilenet_v2`` keys without ``features.18`` and
``classifier`` (``features.0`` the first conv, ``features.i`` the reference's ``layer_{i+1}``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from torch import nn

from .backbone import Backbone
from .layers import init_weights, set_conv_geometry

MOBILENETV2_BN_EPS = 1e-3
"""slim ``batch_norm``'s default epsilon: neither ``mobilenet.training_scope`` (which DeepLab's
``feature_extractor.arg_scopes_map['mobilenet_v2']`` uses) nor ``V2_DEF`` sets another."""

MOBILENETV2_BN_DECAY = 0.997
"""``mobilenet.training_scope(bn_decay=0.997)``, which DeepLab's ``extract_features`` leaves as is
(PyTorch momentum 0.003, ``deeplabv3plus.catalog.BACKBONE_FAMILIES['mobilenetv2']``)."""


@dataclass(frozen=True)
class InvertedResidualRow:
    """One row (t, c, n, s) of the paper's Table 2: ``repeats`` inverted residuals of ``channels``
    outputs and expansion factor ``expansion``, the first with ``stride``."""

    expansion: int
    channels: int
    repeats: int
    stride: int


MOBILENETV2_STEM_CHANNELS = 32
"""The first conv, 3x3 stride 2 (``V2_DEF['spec'][0]``, the reference's ``layer_1``)."""

MOBILENETV2_ROWS: tuple[InvertedResidualRow, ...] = (
    InvertedResidualRow(1, 16, 1, 1),
    InvertedResidualRow(6, 24, 2, 2),
    InvertedResidualRow(6, 32, 3, 2),
    InvertedResidualRow(6, 64, 4, 2),
    InvertedResidualRow(6, 96, 3, 1),
    InvertedResidualRow(6, 160, 3, 2),
    InvertedResidualRow(6, 320, 1, 1),
)
"""The inverted residuals of ``V2_DEF['spec'][1:18]`` (``layer_2`` ... ``layer_18``), as the paper's
(t, c, n, s) rows; the t=1 row is ``expand_input(1, divisible_by=1)``: no expansion conv."""

LOW_LEVEL_LAYER = 4
"""The decoder's low-level feature: ``layer_4/depthwise_output``, the depthwise conv's output (BN +
ReLU6) of the second 24-channel unit, at stride 4 (``feature_extractor.networks_to_feature_maps
['mobilenet_v2'][DECODER_END_POINTS][4]``)."""


def make_divisible(value: float, divisor: int = 8, min_value: Optional[int] = None) -> int:
    """``value`` rounded to the nearest multiple of ``divisor``, at least ``min_value`` (default:
    ``divisor``), and never more than 10% below ``value`` (the reference's ``_make_divisible``, in
    ``slim/nets/mobilenet/mobilenet.py`` and ``conv_blocks.py``)."""
    if min_value is None:
        min_value = divisor
    rounded = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return int(rounded)


def deeplab_divisibility(depth_multiplier: float) -> int:
    """``divisible_by`` and ``min_depth`` of DeepLab's ``feature_extractor._mobilenet_v2``: 8 at
    depth multiplier 1.0, else 1 (the channels then are ``round(c * depth_multiplier)``, e.g. 12 for
    the 24 of ``layer_3`` at 0.5, as the reference's ``mobilenetv2_dm05`` checkpoints; slim's own
    ImageNet ``mobilenet_v2_0.5_224`` rounds to 8, giving 16: tensorflow/models issue #5507)."""
    return 8 if depth_multiplier == 1.0 else 1


def mobilenetv2_channels(
    depth_multiplier: float = 1.0, divisible_by: Optional[int] = None, min_depth: Optional[int] = None
) -> list[int]:
    """The output channels of ``layer_1`` ... ``layer_18`` at ``depth_multiplier`` (the reference's
    ``mobilenet.depth_multiplier``: ``make_divisible(c * depth_multiplier, divisible_by, min_depth)``
    for every layer, the first conv included). None: DeepLab's rule, :func:`deeplab_divisibility`."""
    if not depth_multiplier > 0:
        raise ValueError(f"depth_multiplier must be > 0, got {depth_multiplier}")
    divisor = deeplab_divisibility(depth_multiplier) if divisible_by is None else divisible_by
    minimum = deeplab_divisibility(depth_multiplier) if min_depth is None else min_depth
    base = [MOBILENETV2_STEM_CHANNELS] + [r.channels for r in MOBILENETV2_ROWS for _ in range(r.repeats)]
    return [make_divisible(c * depth_multiplier, divisor, minimum) for c in base]


def _conv_bn_relu6(in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, groups: int = 1):
    """conv -> BN -> ReLU6, keys ``0``, ``1`` (torchvision's ``Conv2dNormActivation``)."""
    return nn.Sequential(
        nn.Conv2d(
            in_channels, out_channels, kernel_size, stride, (kernel_size - 1) // 2, groups=groups, bias=False
        ),
        nn.BatchNorm2d(out_channels, eps=MOBILENETV2_BN_EPS),
        nn.ReLU6(inplace=True),
    )


class InvertedResidual(nn.Module):
    """``expanded_conv``: [1x1 expand -> BN -> ReLU6] -> 3x3 depthwise (stride, rate) -> BN -> ReLU6
    -> 1x1 project -> BN, plus the input when the unit runs at stride 1 with equal channels.

    Keys as torchvision's ``InvertedResidual``: ``conv.0`` expansion (if any), then the depthwise
    conv (``conv.0`` or ``conv.1``), then the projection conv and its BN.
    """

    def __init__(self, in_channels: int, out_channels: int, expansion: int, stride: int):
        super().__init__()
        # conv_blocks.expand_input_by_factor: make_divisible(inputs * t, 8); t=1 is divisible_by=1.
        hidden = make_divisible(in_channels * expansion, 8 if expansion > 1 else 1)
        layers = []
        if hidden > in_channels:  # expanded_conv: "if inner_size > net.shape[3]"
            layers.append(_conv_bn_relu6(in_channels, hidden, 1))
        else:
            hidden = in_channels
        layers.append(_conv_bn_relu6(hidden, hidden, 3, stride=stride, groups=hidden))
        layers += [
            nn.Conv2d(hidden, out_channels, 1, bias=False),
            nn.BatchNorm2d(out_channels, eps=MOBILENETV2_BN_EPS),
        ]
        self.conv = nn.Sequential(*layers)
        self.in_channels, self.out_channels, self.hidden_channels = in_channels, out_channels, hidden
        self.stride = stride
        self._depthwise_index = len(layers) - 3
        self.use_residual = stride == 1 and in_channels == out_channels

    @property
    def depthwise(self) -> nn.Conv2d:
        return self.conv[self._depthwise_index][0]

    def set_stride_dilation(self, stride: int, dilation: int) -> None:
        """The rate goes to the depthwise conv only (``mobilenet_base`` passes ``rate`` to
        ``expanded_conv``, which gives it to ``depthwise_fn``). The residual follows the stride the
        unit runs at, as the reference's (it checks the ``stride`` it is built with)."""
        set_conv_geometry(self.depthwise, stride, dilation)
        self.use_residual = stride == 1 and self.in_channels == self.out_channels

    def _finish(self, x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        return out + x if self.use_residual else out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._finish(x, self.conv(x))

    def forward_with_tap(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Forward that also returns ``depthwise_output`` (after its BN and ReLU6)."""
        out = tap = x
        for i, layer in enumerate(self.conv):
            out = layer(out)
            if i == self._depthwise_index:
                tap = out  # nothing after it works in place
        return self._finish(x, out), tap


class MobileNetV2(Backbone):
    """Atrous MobileNetV2 trunk (``layer_1`` ... ``layer_18``) returning ``{"low_level", "out"}``.

    ``out`` is ``layer_18`` (320 channels at depth multiplier 1.0); ``low_level`` is
    ``layer_4/depthwise_output`` (144 channels at 1.0) at stride 4 (see :data:`LOW_LEVEL_LAYER`).

    Args:
        depth_multiplier: the width factor of every layer, any float > 0 (0.5 for the reference's
            ``mobilenetv2_dm05`` models).
        output_stride: 8, 16 or 32.
        divisible_by, min_depth: the channel rounding (:func:`mobilenetv2_channels`); None:
            DeepLab's (8 at depth multiplier 1.0, else 1), 8 and 8: slim's ImageNet checkpoints'.
    """

    def __init__(
        self,
        depth_multiplier: float = 1.0,
        output_stride: int = 16,
        divisible_by: Optional[int] = None,
        min_depth: Optional[int] = None,
    ):
        super().__init__()
        channels = mobilenetv2_channels(depth_multiplier, divisible_by, min_depth)
        self.depth_multiplier = depth_multiplier
        self.features = nn.Sequential(_conv_bn_relu6(3, channels[0], 3, stride=2))
        self.stem_stride = 2
        rows = [(r.expansion, r.stride if i == 0 else 1) for r in MOBILENETV2_ROWS for i in range(r.repeats)]
        for in_channels, out_channels, (expansion, stride) in zip(channels, channels[1:], rows):
            self.features.append(InvertedResidual(in_channels, out_channels, expansion, stride))
        tap = self.features[LOW_LEVEL_LAYER - 1]
        self.feature_channels = {"low_level": tap.hidden_channels, "out": channels[-1]}
        init_weights(self)
        self.output_stride = output_stride

    def units(self) -> list[nn.Module]:
        return list(self.features[1:])

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        low_level = None
        for i, layer in enumerate(self.features):
            if i == LOW_LEVEL_LAYER - 1:
                x, low_level = layer.forward_with_tap(x)
            else:
                x = layer(x)
        return {"low_level": low_level, "out": x}
