"""DeepLabv3+ = atrous backbone -> ASPP -> decoder -> logits, and its builders."""

from __future__ import annotations

from collections.abc import Sequence
from enum import Enum
from typing import TYPE_CHECKING, Callable, Optional, Union

import torch
import torch.nn.functional as F
from torch import nn

from .aspp import ASPP, ASPP_RATES_AT_OS16, aspp_rates_for
from .backbone import Backbone
from .decoder import Decoder
from .layers import init_weights
from .resnet import ResNet
from .xception import Xception

if TYPE_CHECKING:
    from ..weights.zoo import PretrainedWeights

WeightsLike = Union[str, "PretrainedWeights", Enum]
"""An entry of the reference model zoo: its name, enum member or :class:`PretrainedWeights`."""


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
        aspp_rates: the three ASPP rates at output stride 16 (scaled by 16/OS elsewhere).
        aspp_dropout: dropout after the ASPP projection.
        low_level_channels: decoder projection width of the low-level feature (48).
        head_channels: width of the ASPP branches and the decoder convs (256 in the paper;
            smaller for quick experiments on a CPU).
        align_corners: of every bilinear resize; True as the reference (crops of 16k+1).
    """

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


def _resolve_weights(
    weights: Optional[WeightsLike],
    backbone: str,
    num_classes: Optional[int],
    output_stride: Optional[int],
    given: dict,
) -> tuple[int, int, Optional[dict[str, torch.Tensor]]]:
    """(num_classes, output_stride, state_dict) to build with; with ``weights`` checked against the
    entry and its converted state_dict fetched (downloaded on first use) before anything is built."""
    if weights is None:
        return (
            (21 if num_classes is None else num_classes),
            (16 if output_stride is None else output_stride),
            None,
        )
    from ..weights.download import load_state_dict
    from ..weights.zoo import resolve_builder_args

    entry, num_classes, output_stride = resolve_builder_args(
        weights, backbone, num_classes=num_classes, output_stride=output_stride, given=given
    )
    return num_classes, output_stride, load_state_dict(entry)


def _load_weights(model: DeepLabV3Plus, state: Optional[dict[str, torch.Tensor]]) -> DeepLabV3Plus:
    """Load an entry's converted weights (strictly); a model with weights comes back in eval mode."""
    if state is None:
        return model
    model.load_state_dict(state, strict=True)
    return model.eval()


def _pretrained(backbone: Backbone, source: Optional[str]) -> Backbone:
    """Load ImageNet weights into ``backbone`` when a source is given (see ``weights.imagenet``)."""
    if source is not None:
        from ..weights.imagenet import load_pretrained_backbone

        load_pretrained_backbone(backbone, source)
    return backbone


def deeplabv3plus_resnet(
    depth: int = 101,
    *,
    weights: Optional[WeightsLike] = None,
    num_classes: Optional[int] = None,
    output_stride: Optional[int] = None,
    resnet_variant: str = "standard",
    strided_shortcut: str = "subsample",
    decoder: bool = True,
    separable: bool = False,
    aspp_rates: Optional[Sequence[int]] = None,
    aspp_dropout: float = 0.1,
    low_level_channels: int = 48,
    head_channels: int = 256,
    align_corners: bool = True,
    pretrained_backbone: Optional[str] = None,
) -> DeepLabV3Plus:
    """DeepLabv3+ on an atrous ResNet-``depth`` (18, 34, 50, 101, 152).

    ``resnet_variant="standard"`` is torchvision's architecture (its ImageNet weights fit);
    ``"beta"`` is the paper's reference ResNet (3x3 stem, stride in the last unit);
    ``strided_shortcut`` picks its shortcut in strided units (see :class:`ResNet`).
    ``pretrained_backbone`` is an ImageNet source for the trunk: a state_dict path, or a name
    accepted by :func:`deeplabv3plus.weights.load_pretrained_backbone` (``"tf:resnet_v1_101_beta"``
    for the reference's beta ResNet). ``weights`` and the defaults of ``num_classes`` (21) and
    ``output_stride`` (16) work as in :func:`deeplabv3plus_xception` (the reference zoo has no
    trained ResNet DeepLab, so no entry fits yet).
    """
    given = dict(decoder=decoder, separable=separable, aspp_rates=aspp_rates, low_level_channels=low_level_channels,
                 head_channels=head_channels, align_corners=align_corners, pretrained_backbone=pretrained_backbone)  # fmt: skip
    num_classes, output_stride, state = _resolve_weights(
        weights, f"resnet{depth}", num_classes, output_stride, given
    )
    model = DeepLabV3Plus(
        _pretrained(ResNet(depth, resnet_variant, output_stride, strided_shortcut), pretrained_backbone),
        num_classes,
        decoder=decoder,
        separable=separable,
        aspp_rates=aspp_rates,
        aspp_dropout=aspp_dropout,
        low_level_channels=low_level_channels,
        head_channels=head_channels,
        align_corners=align_corners,
    )
    return _load_weights(model, state)


def deeplabv3plus_xception(
    depth: int = 65,
    *,
    weights: Optional[WeightsLike] = None,
    num_classes: Optional[int] = None,
    output_stride: Optional[int] = None,
    decoder: bool = True,
    separable: bool = True,
    aspp_rates: Optional[Sequence[int]] = None,
    aspp_dropout: float = 0.1,
    low_level_channels: int = 48,
    head_channels: int = 256,
    align_corners: bool = True,
    pretrained_backbone: Optional[str] = None,
) -> DeepLabV3Plus:
    """DeepLabv3+ on a modified aligned Xception-``depth`` (41, 65, 71); SC on by default.

    Args:
        weights: a trained model of the reference zoo, by name (``"xception65_coco_voc_trainaug"``)
            or as a :class:`~deeplabv3plus.weights.DeepLabV3PlusXception65Weights` member (see
            :mod:`deeplabv3plus.weights.zoo`). Downloaded and converted on first use, then cached;
            the model comes back in eval mode. The entry fixes the architecture: ``num_classes`` and
            the head arguments may be left out, and must agree with it when given (else
            :class:`~deeplabv3plus.weights.PretrainedWeightsError`). ``output_stride`` is free: the
            same weights run at 8, 16 or 32 (ASPP rates scale with it).
        num_classes: output classes; default 21, or the entry's with ``weights``.
        output_stride: 8, 16 or 32; default 16, or the stride of the entry's published evaluation.
        pretrained_backbone: an ImageNet source for the trunk: a state_dict path, ``timm:...`` or
            ``"tf:xception_65"`` (the reference checkpoint; ``tf:xception_41``, ``tf:xception_71``).
        others: as :class:`DeepLabV3Plus`.
    """
    given = dict(decoder=decoder, separable=separable, aspp_rates=aspp_rates, low_level_channels=low_level_channels,
                 head_channels=head_channels, align_corners=align_corners, pretrained_backbone=pretrained_backbone)  # fmt: skip
    num_classes, output_stride, state = _resolve_weights(
        weights, f"xception{depth}", num_classes, output_stride, given
    )
    model = DeepLabV3Plus(
        _pretrained(Xception(depth, output_stride), pretrained_backbone),
        num_classes,
        decoder=decoder,
        separable=separable,
        aspp_rates=aspp_rates,
        aspp_dropout=aspp_dropout,
        low_level_channels=low_level_channels,
        head_channels=head_channels,
        align_corners=align_corners,
    )
    return _load_weights(model, state)


def deeplabv3plus_resnet18(**kwargs) -> DeepLabV3Plus:
    """DeepLabv3+ ResNet-18 (a CPU-sized model for quick experiments); see :func:`deeplabv3plus_resnet`."""
    return deeplabv3plus_resnet(18, **kwargs)


def deeplabv3plus_resnet34(**kwargs) -> DeepLabV3Plus:
    """DeepLabv3+ ResNet-34; keyword arguments as :func:`deeplabv3plus_resnet`."""
    return deeplabv3plus_resnet(34, **kwargs)


def deeplabv3plus_resnet50(**kwargs) -> DeepLabV3Plus:
    """DeepLabv3+ ResNet-50; keyword arguments as :func:`deeplabv3plus_resnet`."""
    return deeplabv3plus_resnet(50, **kwargs)


def deeplabv3plus_resnet101(**kwargs) -> DeepLabV3Plus:
    """DeepLabv3+ ResNet-101 (paper Table 3); keyword arguments as :func:`deeplabv3plus_resnet`."""
    return deeplabv3plus_resnet(101, **kwargs)


def deeplabv3plus_xception41(**kwargs) -> DeepLabV3Plus:
    """DeepLabv3+ Xception-41; keyword arguments as :func:`deeplabv3plus_xception`."""
    return deeplabv3plus_xception(41, **kwargs)


def deeplabv3plus_xception65(**kwargs) -> DeepLabV3Plus:
    """DeepLabv3+ Xception-65 (paper Table 5); keyword arguments as :func:`deeplabv3plus_xception`."""
    return deeplabv3plus_xception(65, **kwargs)


def deeplabv3plus_xception71(**kwargs) -> DeepLabV3Plus:
    """DeepLabv3+ Xception-71; keyword arguments as :func:`deeplabv3plus_xception`."""
    return deeplabv3plus_xception(71, **kwargs)


MODEL_BUILDERS: dict[str, Callable[..., DeepLabV3Plus]] = {
    "resnet18": deeplabv3plus_resnet18,
    "resnet34": deeplabv3plus_resnet34,
    "resnet50": deeplabv3plus_resnet50,
    "resnet101": deeplabv3plus_resnet101,
    "xception41": deeplabv3plus_xception41,
    "xception65": deeplabv3plus_xception65,
    "xception71": deeplabv3plus_xception71,
}


def build_model(
    backbone: str = "resnet101",
    *,
    resnet_variant: str = "standard",
    strided_shortcut: str = "subsample",
    **kwargs,
) -> DeepLabV3Plus:
    """Build from a backbone name and the builders' keyword arguments (the config entry point).

    ``build_model(**dataclasses.asdict(cfg.model))`` builds the model a config describes.
    The ResNet-only arguments must keep their defaults for Xception backbones.
    """
    if backbone not in MODEL_BUILDERS:
        raise ValueError(f"unknown backbone {backbone!r}; expected one of {', '.join(MODEL_BUILDERS)}")
    if backbone.startswith("resnet"):
        kwargs.update(resnet_variant=resnet_variant, strided_shortcut=strided_shortcut)
    elif (resnet_variant, strided_shortcut) != ("standard", "subsample"):
        raise ValueError(
            f"resnet_variant/strided_shortcut ({resnet_variant!r}, {strided_shortcut!r}) do not apply to "
            f"backbone {backbone!r}"
        )
    return MODEL_BUILDERS[backbone](**kwargs)
