"""DeepLabv3+ = atrous backbone -> ASPP -> decoder -> logits (the builders are in ``deeplabv3plus.builders``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch import nn

from .aspp import ASPP, ASPP_RATES_AT_OS16, aspp_rates_for
from .backbone import Backbone
from .decoder import Decoder
from .layers import init_weights


class DeepLabV3Plus(nn.Module):
    """DeepLabv3+ (or DeepLabv3 with ``decoder=False``) on any atrous backbone.

    ``forward`` takes a normalised image batch (N, 3, H, W) float and returns logits
    (N, num_classes, H, W) at the input size, for any H and W.

    ``output_stride`` is a property: setting it re-strides the backbone and rescales the ASPP
    rates on the built model, with the same weights (train at 16, evaluate at 8).

    Args:
        backbone: a :class:`Backbone` returning ``{"low_level", "out"}`` features.
        num_classes: output classes (21 for PASCAL VOC).
        decoder: False gives the DeepLabv3 baseline (logits from ASPP, upsampled x OS).
        separable: atrous separable convs in ASPP and decoder (the paper's 'SC').
        aspp_rates: the ASPP atrous rates at output stride 16 (scaled by 16/OS elsewhere); empty: image
            pooling and the 1x1 branch only, the reference's mobile models.
        aspp_dropout: dropout after the ASPP projection.
        low_level_channels: decoder projection width of the low-level feature (48).
        head_channels: width of the ASPP branches and the decoder convs (256 in the paper;
            smaller for quick experiments on a CPU).
        align_corners: of every bilinear resize; True as the reference (crops of 16k+1).
    """

    build_args: Optional[dict[str, Any]] = None
    """The arguments it was built with, as ``deeplabv3plus.build_model``'s keywords (``backbone``,
    ``num_classes``, ``head_channels``, ..., ``weights``): set by the builders, kept by ``.to()`` and
    ``prepare_for_inference``; None for a model assembled by hand. ``save_pretrained`` writes the
    architecture of ``config.json`` from it."""

    def __init__(
        self,
        backbone: Backbone,
        num_classes: int = 21,
        *,
        decoder: bool = True,
        separable: bool = False,
        aspp_rates: Optional[Sequence[int]] = None,
        aspp_dropout: float = 0.1,
        low_level_channels: int = 48,
        head_channels: int = 256,
        align_corners: bool = True,
    ):
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.backbone = backbone
        self.num_classes = num_classes
        self.align_corners = align_corners
        self.aspp_rates_at_os16 = tuple(aspp_rates) if aspp_rates is not None else ASPP_RATES_AT_OS16
        self.aspp = ASPP(
            backbone.feature_channels["out"],
            aspp_rates_for(backbone.output_stride, self.aspp_rates_at_os16),
            channels=head_channels,
            separable=separable,
            dropout=aspp_dropout,
        )
        self.decoder = None
        if decoder:
            self.decoder = Decoder(
                backbone.feature_channels["low_level"],
                head_channels,
                low_level_channels=low_level_channels,
                channels=head_channels,
                separable=separable,
                align_corners=align_corners,
            )
        self.classifier = nn.Conv2d(head_channels, num_classes, 1)
        init_weights(self.aspp)
        if self.decoder is not None:
            init_weights(self.decoder)
        nn.init.normal_(self.classifier.weight, std=0.01)
        nn.init.zeros_(self.classifier.bias)

    @property
    def output_stride(self) -> int:
        return self.backbone.output_stride

    @output_stride.setter
    def output_stride(self, value: int) -> None:
        self.backbone.output_stride = value
        self.aspp.rates = aspp_rates_for(value, self.aspp_rates_at_os16)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.backbone(x)
        out = self.aspp(features["out"])
        if self.decoder is not None:
            out = self.decoder(out, features["low_level"])
        logits = self.classifier(out)
        return F.interpolate(logits, size=x.shape[2:], mode="bilinear", align_corners=self.align_corners)
