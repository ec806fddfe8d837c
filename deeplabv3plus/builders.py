"""The public model builders: ``deeplabv3plus_resnet101(num_classes=21, output_stride=16, ...)``.

Each builder assembles :class:`~deeplabv3plus.models.DeepLabV3Plus` from a backbone of
:mod:`deeplabv3plus.models`, and resolves ``weights=`` (a trained model of the reference zoo,
:mod:`deeplabv3plus.weights.zoo`, or portable weights: a folder or ``hf:owner/name``,
:mod:`deeplabv3plus.weights.portable`) and ``pretrained_backbone=`` (ImageNet weights for the trunk,
:mod:`deeplabv3plus.weights.imagenet`). :func:`build_model` builds from a backbone name, the form a
config's ``model`` section takes: ``build_model(**dataclasses.asdict(cfg.model))``.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Callable, Optional, Union

import torch

from .checkpoint import state_dict_mismatch
from .models import Backbone, DeepLabV3Plus, ResNet, Xception
from .models.layers import set_bn_momentum
from .weights.download import load_state_dict
from .weights.imagenet import load_pretrained_backbone
from .weights.portable import is_portable_source, read_portable, read_portable_config, resolve_portable
from .weights.zoo import PretrainedWeightsError, WeightsLike, resolve_builder_args

__all__ = [
    "MODEL_BUILDERS",
    "REFERENCE_BN_MOMENTUM",
    "build_model",
    "deeplabv3plus_resnet",
    "deeplabv3plus_resnet18",
    "deeplabv3plus_resnet34",
    "deeplabv3plus_resnet50",
    "deeplabv3plus_resnet101",
    "deeplabv3plus_xception",
    "deeplabv3plus_xception41",
    "deeplabv3plus_xception65",
    "deeplabv3plus_xception71",
    "bn_momenta",
]

PYTORCH_BN_MOMENTUM = 0.1
"""``nn.BatchNorm2d``'s default: the builders' default for backbone and head."""

REFERENCE_BN_MOMENTUM: dict[str, tuple[float, float]] = {
    # (backbone, ASPP + decoder) as PyTorch momentum = 1 - TF decay. tensorflow/models
    # research/deeplab: core/feature_extractor.py sets decay 0.9997 in the Xception arg scope and
    # 0.95 in the ResNet one; model.py uses 0.9997 for ASPP (image_pooling, aspp0..3,
    # concat_projection) and the decoder (feature_projection0, decoder_conv0/1).
    # DeepLabv3 (arXiv:1706.05587) section 4.1 states decay 0.9997.
    "xception": (0.0003, 0.0003),
    "resnet": (0.05, 0.0003),
}
"""``model.bn_momentum: reference``: the reference code's BN momentum per backbone family."""


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
    if is_portable_source(weights):
        return _resolve_portable(weights, backbone, num_classes, output_stride, given)
    entry, num_classes, output_stride = resolve_builder_args(
        weights, backbone, num_classes=num_classes, output_stride=output_stride, given=given
    )
    return num_classes, output_stride, load_state_dict(entry)


def _resolve_portable(
    source, backbone: str, num_classes: Optional[int], output_stride: Optional[int], given: dict
) -> tuple[int, int, dict[str, torch.Tensor]]:
    """As :func:`_resolve_weights` for a portable folder or ``hf:owner/name``: its ``config.json``'s
    model section fixes the architecture, and every builder argument must agree with it."""
    state, config = read_portable(resolve_portable(source))
    arch = config["model"]
    expected = dict(arch, backbone=arch.get("backbone"), num_classes=arch.get("num_classes"))
    asked = dict(given, backbone=backbone, num_classes=num_classes)
    for key, value in asked.items():
        if key == "pretrained_backbone":
            if value is not None:
                raise PretrainedWeightsError(
                    f"pretrained_backbone={value!r} with weights '{source}': the weights hold the backbone too"
                )
            continue
        want = expected.get(key)
        if value is None or (key == "aspp_rates" and want is None and list(value) == [6, 12, 18]):
            continue
        if key == "aspp_rates":
            value, want = list(value), (None if want is None else list(want))
        if key in expected and value != want:
            raise PretrainedWeightsError(
                f"{key}={value!r} contradicts weights '{source}' ({key}={want!r}); build it with "
                f"build_model(weights='{source}'), which takes the architecture from the folder"
            )
    eval_os = (config.get("eval") or {}).get("output_stride") or arch.get("output_stride", 16)
    return int(arch["num_classes"]), output_stride if output_stride is not None else int(eval_os), state


def _load_weights(
    model: DeepLabV3Plus, state: Optional[dict[str, torch.Tensor]], source: Optional[WeightsLike] = None
) -> DeepLabV3Plus:
    """Load an entry's converted weights (strictly); a model with weights comes back in eval mode."""
    if state is None:
        return model
    mismatch = state_dict_mismatch(model.state_dict(), state)
    if mismatch is not None:
        raise PretrainedWeightsError(f"weights '{source}' do not fit the model: {mismatch}")
    model.load_state_dict(state, strict=True)
    return model.eval()


def _pretrained(backbone: Backbone, source: Optional[str]) -> Backbone:
    """Load ImageNet weights into ``backbone`` when a source is given (see ``weights.imagenet``)."""
    if source is not None:
        load_pretrained_backbone(backbone, source)
    return backbone


def _set_momenta(model: DeepLabV3Plus, backbone: float, head: float) -> None:
    """BN momentum of the backbone's BatchNorms and of the rest (ASPP, decoder)."""
    set_bn_momentum(model, head)
    set_bn_momentum(model.backbone, backbone)


def bn_momenta(backbone: str, bn_momentum: Union[str, float]) -> tuple[float, float]:
    """(backbone_bn_momentum, head_bn_momentum) for the config's ``model.bn_momentum``.

    ``"pytorch"``: 0.1 and 0.1; ``"reference"``: :data:`REFERENCE_BN_MOMENTUM` of the backbone's
    family; a number: that for both.
    """
    if bn_momentum == "pytorch":
        return PYTORCH_BN_MOMENTUM, PYTORCH_BN_MOMENTUM
    if bn_momentum == "reference":
        return REFERENCE_BN_MOMENTUM["resnet" if backbone.startswith("resnet") else "xception"]
    if isinstance(bn_momentum, str) or not 0.0 < bn_momentum <= 1.0:
        raise ValueError(
            f"bn_momentum: expected 'pytorch', 'reference' or a number in (0, 1], got {bn_momentum!r}"
        )
    return float(bn_momentum), float(bn_momentum)


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
    backbone_bn_momentum: float = PYTORCH_BN_MOMENTUM,
    head_bn_momentum: float = PYTORCH_BN_MOMENTUM,
) -> DeepLabV3Plus:
    """DeepLabv3+ on an atrous ResNet-``depth`` (18, 34, 50, 101, 152).

    ``resnet_variant="standard"`` is torchvision's architecture (its ImageNet weights fit);
    ``"beta"`` is the paper's reference ResNet (3x3 stem, stride in the last unit);
    ``strided_shortcut`` picks its shortcut in strided units (see :class:`ResNet`).
    ``pretrained_backbone`` is an ImageNet source for the trunk: a state_dict path, or a name
    accepted by :func:`deeplabv3plus.weights.load_pretrained_backbone` (``"tf:resnet_v1_101_beta"``
    for the reference's beta ResNet). ``weights`` and the defaults of ``num_classes`` (21) and
    ``output_stride`` (16) work as in :func:`deeplabv3plus_xception` (the reference zoo has no
    trained ResNet DeepLab, so no entry fits yet). ``backbone_bn_momentum`` / ``head_bn_momentum``:
    the BatchNorm momentum of the trunk and of ASPP + decoder (PyTorch's 0.1 by default; the
    reference's are 0.05 and 0.0003, :data:`REFERENCE_BN_MOMENTUM`).
    """
    given = dict(decoder=decoder, separable=separable, aspp_rates=aspp_rates, low_level_channels=low_level_channels,
                 head_channels=head_channels, align_corners=align_corners, pretrained_backbone=pretrained_backbone)  # fmt: skip
    if is_portable_source(weights):  # the zoo has no ResNet entry; a portable folder may be one
        given.update(resnet_variant=resnet_variant, strided_shortcut=strided_shortcut)
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
    _set_momenta(model, backbone_bn_momentum, head_bn_momentum)
    return _load_weights(model, state, weights)


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
    backbone_bn_momentum: float = PYTORCH_BN_MOMENTUM,
    head_bn_momentum: float = PYTORCH_BN_MOMENTUM,
) -> DeepLabV3Plus:
    """DeepLabv3+ on a modified aligned Xception-``depth`` (41, 65, 71); SC on by default.

    Args:
        weights: a trained model of the reference zoo, by name (``"xception65_coco_voc_trainaug"``)
            or as a :class:`~deeplabv3plus.weights.DeepLabV3PlusXception65Weights` member (see
            :mod:`deeplabv3plus.weights.zoo`). Downloaded and converted on first use, then cached;
            the model comes back in eval mode. The entry fixes the architecture: ``num_classes`` and
            the head arguments may be left out, and must agree with it when given (else
            :class:`~deeplabv3plus.weights.PretrainedWeightsError`). ``output_stride`` is free: the
            same weights run at 8, 16 or 32 (ASPP rates scale with it). Portable weights work the
            same way: a folder written by ``deeplabv3plus save-pretrained`` (``model.safetensors`` +
            ``config.json``) by path, or ``"hf:owner/name"`` on the Hub (:mod:`deeplabv3plus.weights.portable`).
        num_classes: output classes; default 21, or the entry's with ``weights``.
        output_stride: 8, 16 or 32; default 16, or the stride of the entry's published evaluation.
        pretrained_backbone: an ImageNet source for the trunk: a state_dict path, ``timm:...`` or
            ``"tf:xception_65"`` (the reference checkpoint; ``tf:xception_41``, ``tf:xception_71``).
        backbone_bn_momentum, head_bn_momentum: the BatchNorm momentum (PyTorch's convention,
            1 - TF decay) of the trunk and of ASPP + decoder; PyTorch's 0.1 by default, the
            reference's 0.0003 for both (:data:`REFERENCE_BN_MOMENTUM`).
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
    _set_momenta(model, backbone_bn_momentum, head_bn_momentum)
    return _load_weights(model, state, weights)


def _with_depth_fixed(generic: Callable[..., DeepLabV3Plus]):
    """Give a depth builder ``generic``'s keyword parameters, less ``depth``, for ``help()`` and IDEs.

    The depth builders pass their keywords on to one family builder; this states them in the
    builder's signature instead of a bare ``**kwargs``.
    """
    params = [p for name, p in inspect.signature(generic).parameters.items() if name != "depth"]

    def decorate(builder: Callable[..., DeepLabV3Plus]) -> Callable[..., DeepLabV3Plus]:
        builder.__signature__ = inspect.Signature(params, return_annotation=DeepLabV3Plus)
        return builder

    return decorate


@_with_depth_fixed(deeplabv3plus_resnet)
def deeplabv3plus_resnet18(**kwargs) -> DeepLabV3Plus:
    """DeepLabv3+ ResNet-18 (a CPU-sized model for quick experiments); see :func:`deeplabv3plus_resnet`."""
    return deeplabv3plus_resnet(18, **kwargs)


@_with_depth_fixed(deeplabv3plus_resnet)
def deeplabv3plus_resnet34(**kwargs) -> DeepLabV3Plus:
    """DeepLabv3+ ResNet-34; keyword arguments as :func:`deeplabv3plus_resnet`."""
    return deeplabv3plus_resnet(34, **kwargs)


@_with_depth_fixed(deeplabv3plus_resnet)
def deeplabv3plus_resnet50(**kwargs) -> DeepLabV3Plus:
    """DeepLabv3+ ResNet-50; keyword arguments as :func:`deeplabv3plus_resnet`."""
    return deeplabv3plus_resnet(50, **kwargs)


@_with_depth_fixed(deeplabv3plus_resnet)
def deeplabv3plus_resnet101(**kwargs) -> DeepLabV3Plus:
    """DeepLabv3+ ResNet-101 (paper Table 3); keyword arguments as :func:`deeplabv3plus_resnet`."""
    return deeplabv3plus_resnet(101, **kwargs)


@_with_depth_fixed(deeplabv3plus_xception)
def deeplabv3plus_xception41(**kwargs) -> DeepLabV3Plus:
    """DeepLabv3+ Xception-41; keyword arguments as :func:`deeplabv3plus_xception`."""
    return deeplabv3plus_xception(41, **kwargs)


@_with_depth_fixed(deeplabv3plus_xception)
def deeplabv3plus_xception65(**kwargs) -> DeepLabV3Plus:
    """DeepLabv3+ Xception-65 (paper Table 5); keyword arguments as :func:`deeplabv3plus_xception`."""
    return deeplabv3plus_xception(65, **kwargs)


@_with_depth_fixed(deeplabv3plus_xception)
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
    backbone: Optional[str] = None,
    *,
    resnet_variant: Optional[str] = None,
    strided_shortcut: Optional[str] = None,
    bn_momentum: Union[str, float] = "pytorch",
    **kwargs,
) -> DeepLabV3Plus:
    """Build from a backbone name and the builders' keyword arguments (the config entry point).

    ``build_model(**dataclasses.asdict(cfg.model))`` builds the model a config describes.
    The ResNet-only arguments must keep their defaults for Xception backbones. With portable
    weights (``weights="path/to/folder"`` or ``"hf:owner/name"``) the folder's ``config.json``
    supplies the architecture; the arguments given must agree with it. Without, the backbone
    defaults to resnet101 (ResNet: the standard variant, subsampling shortcuts). ``bn_momentum`` is
    the config's preset (see :func:`bn_momenta`), turned into the builders' ``backbone_bn_momentum``
    and ``head_bn_momentum``.
    """
    weights = kwargs.get("weights")
    if is_portable_source(weights):
        kwargs["weights"] = folder = resolve_portable(weights)  # one Hub lookup, not two
        arch = read_portable_config(folder)["model"]
        backbone = backbone if backbone is not None else arch.get("backbone")
        if str(backbone).startswith("resnet"):
            resnet_variant = resnet_variant if resnet_variant is not None else arch.get("resnet_variant")
            strided_shortcut = (
                strided_shortcut if strided_shortcut is not None else arch.get("strided_shortcut")
            )
        for key in ("decoder", "separable", "aspp_rates", "aspp_dropout", "low_level_channels",
                    "head_channels", "align_corners"):  # fmt: skip
            if key not in kwargs and key in arch:
                kwargs[key] = arch[key]
    backbone = "resnet101" if backbone is None else backbone
    resnet_variant = "standard" if resnet_variant is None else resnet_variant
    strided_shortcut = "subsample" if strided_shortcut is None else strided_shortcut
    if backbone not in MODEL_BUILDERS:
        raise ValueError(f"unknown backbone {backbone!r}; expected one of {', '.join(MODEL_BUILDERS)}")
    if "backbone_bn_momentum" not in kwargs and "head_bn_momentum" not in kwargs:
        kwargs["backbone_bn_momentum"], kwargs["head_bn_momentum"] = bn_momenta(backbone, bn_momentum)
    if backbone.startswith("resnet"):
        kwargs.update(resnet_variant=resnet_variant, strided_shortcut=strided_shortcut)
    elif (resnet_variant, strided_shortcut) != ("standard", "subsample"):
        raise ValueError(
            f"resnet_variant/strided_shortcut ({resnet_variant!r}, {strided_shortcut!r}) do not apply to "
            f"backbone {backbone!r}"
        )
    return MODEL_BUILDERS[backbone](**kwargs)
