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
from typing import Any, Callable, Optional, Union

import torch

from .catalog import BACKBONE_FAMILIES, BACKBONES, load
from .checkpoint import state_dict_mismatch
from .models import Backbone, DeepLabV3Plus, MobileNetV2, ResNet, Xception
from .models.layers import set_bn_momentum
from .weights.download import load_state_dict
from .weights.imagenet import load_pretrained_backbone
from .weights.portable import is_portable_source, read_portable, read_portable_config, resolve_portable
from .weights.zoo import (
    PretrainedWeightsError,
    WeightsLike,
    adopt_weights_args,
    builder_default,
    plain,
    resolve_builder_args,
)

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
    "deeplabv3plus_mobilenetv2",
    "bn_momenta",
]

PYTORCH_BN_MOMENTUM = 0.1
"""``nn.BatchNorm2d``'s default: the builders' default for backbone and head."""

REFERENCE_BN_MOMENTUM: dict[str, tuple[float, float]] = {
    name: family.reference_bn_momentum for name, family in BACKBONE_FAMILIES.items()
}
"""``model.bn_momentum: reference``: the reference code's (backbone, ASPP + decoder) BN momentum per
backbone family, as PyTorch momentum = 1 - TF decay (``deeplabv3plus.catalog.BACKBONE_FAMILIES``
cites where the reference sets it)."""


def _resolve_weights(
    weights: Optional[WeightsLike], args: dict[str, Any]
) -> tuple[dict[str, Any], Optional[dict[str, torch.Tensor]]]:
    """(arguments to build with, state_dict or None) for a builder's ``args`` and ``weights``.

    Each argument in ``args`` is left out (None, or still the shown default) or passed. Without
    ``weights`` the defaults apply (``num_classes`` 21, ``output_stride`` 16). With them, an argument
    left out takes the weights' value and one passed must agree with it (torchvision's rule,
    :func:`~deeplabv3plus.weights.zoo.adopt_weights_args`); checked, and the state_dict fetched (a
    zoo entry downloaded on first use), before anything is built. The arguments come back plain,
    with ``weights`` as a name or path: the model's record (``DeepLabV3Plus.build_args``).
    """
    if weights is None:
        resolved = {key: plain(value) for key, value in args.items()}
        resolved["num_classes"] = 21 if resolved["num_classes"] is None else resolved["num_classes"]
        resolved["output_stride"] = 16 if resolved["output_stride"] is None else resolved["output_stride"]
        state, name = None, None
    elif is_portable_source(weights):
        resolved, state = _resolve_portable(weights, args)
        name = str(weights)
    else:
        entry, resolved = resolve_builder_args(weights, args)
        state, name = load_state_dict(entry), entry.name
    if resolved["aspp_rates"] is not None:
        resolved["aspp_rates"] = list(resolved["aspp_rates"])
    return dict(resolved, weights=name), state


def _resolve_portable(source, args: dict[str, Any]) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """As :func:`_resolve_weights` for a portable folder or ``hf:owner/name``: its ``config.json``'s
    model section fixes the architecture; ``output_stride`` (left out: the stored evaluation stride)
    and ``aspp_dropout`` may differ from it."""
    state, config = read_portable(resolve_portable(source))
    arch = config["model"]
    fixed = {key: arch[key] for key in args if key in arch and key != "pretrained_backbone"}
    fixed["output_stride"] = int(
        (config.get("eval") or {}).get("output_stride") or arch.get("output_stride", 16)
    )
    return adopt_weights_args(args, fixed, str(source), free=("output_stride", "aspp_dropout")), state


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
        return BACKBONE_FAMILIES[BACKBONES[backbone].family].reference_bn_momentum
    if isinstance(bn_momentum, str) or not 0.0 < bn_momentum <= 1.0:
        raise ValueError(
            f"bn_momentum: expected 'pytorch', 'reference' or a number in (0, 1], got {bn_momentum!r}"
        )
    return float(bn_momentum), float(bn_momentum)


def _assemble(
    trunk: Backbone,
    args: dict,
    state: Optional[dict[str, torch.Tensor]],
    weights: Optional[WeightsLike],
    momenta: tuple[float, float],
) -> DeepLabV3Plus:
    """DeepLabv3+ on ``trunk`` with the resolved architecture ``args``: the ImageNet weights of
    ``args["pretrained_backbone"]`` in the trunk, the (backbone, head) BatchNorm ``momenta``, the
    record ``model.build_args``, and ``weights``' ``state`` loaded (then in eval mode)."""
    model = DeepLabV3Plus(
        _pretrained(trunk, args["pretrained_backbone"]),
        args["num_classes"],
        decoder=args["decoder"],
        separable=args["separable"],
        aspp_rates=args["aspp_rates"],
        aspp_dropout=args["aspp_dropout"],
        low_level_channels=args["low_level_channels"],
        head_channels=args["head_channels"],
        align_corners=args["align_corners"],
    )
    _set_momenta(model, *momenta)
    model.build_args = dict(args, backbone_bn_momentum=momenta[0], head_bn_momentum=momenta[1])
    return _load_weights(model, state, weights)


def deeplabv3plus_resnet(
    depth: int = 101,
    *,
    weights: Optional[WeightsLike] = None,
    num_classes: Optional[int] = None,
    output_stride: Optional[int] = None,
    resnet_variant: str = builder_default("standard"),
    strided_shortcut: str = builder_default("subsample"),
    decoder: bool = builder_default(True),
    separable: bool = builder_default(False),
    aspp_rates: Optional[Sequence[int]] = None,
    aspp_dropout: float = builder_default(0.1),
    low_level_channels: int = builder_default(48),
    head_channels: int = builder_default(256),
    align_corners: bool = builder_default(True),
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
    for the reference's beta ResNet). ``weights`` and the defaults work as in
    :func:`deeplabv3plus_xception`: with portable weights (a folder or ``"hf:owner/name"``) every
    architecture argument left out, the ResNet variant included, is the folder's (the reference zoo
    has no trained ResNet DeepLab). ``backbone_bn_momentum`` / ``head_bn_momentum``: the BatchNorm
    momentum of the trunk and of ASPP + decoder (PyTorch's 0.1 by default; the reference's are 0.05
    and 0.0003, :data:`REFERENCE_BN_MOMENTUM`).
    """
    args, state = _resolve_weights(weights, dict(
        backbone=f"resnet{depth}", resnet_variant=resnet_variant, strided_shortcut=strided_shortcut,
        num_classes=num_classes, output_stride=output_stride, decoder=decoder, separable=separable,
        aspp_rates=aspp_rates, aspp_dropout=aspp_dropout, low_level_channels=low_level_channels,
        head_channels=head_channels, align_corners=align_corners, pretrained_backbone=pretrained_backbone,
    ))  # fmt: skip
    trunk = ResNet(depth, args["resnet_variant"], args["output_stride"], args["strided_shortcut"])
    return _assemble(trunk, args, state, weights, (backbone_bn_momentum, head_bn_momentum))


def deeplabv3plus_xception(
    depth: int = 65,
    *,
    weights: Optional[WeightsLike] = None,
    num_classes: Optional[int] = None,
    output_stride: Optional[int] = None,
    decoder: bool = builder_default(True),
    separable: bool = builder_default(True),
    aspp_rates: Optional[Sequence[int]] = None,
    aspp_dropout: float = builder_default(0.1),
    low_level_channels: int = builder_default(48),
    head_channels: int = builder_default(256),
    align_corners: bool = builder_default(True),
    pretrained_backbone: Optional[str] = None,
    backbone_bn_momentum: float = PYTORCH_BN_MOMENTUM,
    head_bn_momentum: float = PYTORCH_BN_MOMENTUM,
) -> DeepLabV3Plus:
    """DeepLabv3+ on a modified aligned Xception-``depth`` (41, 65, 71); SC on by default.

    Args:
        weights: a trained model of the reference zoo, by name (``"xception65_coco_voc_trainaug"``)
            or as a :class:`~deeplabv3plus.weights.DeepLabV3PlusXception65Weights` member (see
            :mod:`deeplabv3plus.weights.zoo`), downloaded and converted on first use, then cached;
            or portable weights: a folder written by ``save_pretrained`` (``model.safetensors`` +
            ``config.json``) by path, or ``"hf:owner/name"`` on the Hub
            (:mod:`deeplabv3plus.weights.portable`). The model comes back in eval mode. The weights
            fix the architecture: every argument left out (at the default shown, or None) takes
            their value (``num_classes``, ``head_channels``, ``separable``, ...), and one passed
            must agree with it, else :class:`~deeplabv3plus.weights.PretrainedWeightsError`
            (torchvision's rule). ``output_stride`` is free: the same weights run at 8, 16 or 32
            (ASPP rates scale with it).
        num_classes: output classes; 21 (PASCAL VOC), or the weights'.
        output_stride: 8, 16 or 32; 16, or the stride of the weights' published evaluation.
        aspp_rates: the ASPP rates at output stride 16; (6, 12, 18) as the paper, or the weights'.
        pretrained_backbone: an ImageNet source for the trunk: a state_dict path, ``timm:...`` or
            ``"tf:xception_65"`` (the reference checkpoint; ``tf:xception_41``, ``tf:xception_71``).
        backbone_bn_momentum, head_bn_momentum: the BatchNorm momentum (PyTorch's convention,
            1 - TF decay) of the trunk and of ASPP + decoder; PyTorch's 0.1 by default, the
            reference's 0.0003 for both (:data:`REFERENCE_BN_MOMENTUM`). Not taken from weights.
        others: as :class:`DeepLabV3Plus`.

    The arguments it was built with are recorded on the model (``model.build_args``, what
    ``save_pretrained(model, folder)`` writes into ``config.json``).
    """
    args, state = _resolve_weights(weights, dict(
        backbone=f"xception{depth}", num_classes=num_classes, output_stride=output_stride,
        decoder=decoder, separable=separable, aspp_rates=aspp_rates, aspp_dropout=aspp_dropout,
        low_level_channels=low_level_channels, head_channels=head_channels,
        align_corners=align_corners, pretrained_backbone=pretrained_backbone,
    ))  # fmt: skip
    return _assemble(
        Xception(depth, args["output_stride"]), args, state, weights, (backbone_bn_momentum, head_bn_momentum)
    )


def deeplabv3plus_mobilenetv2(
    *,
    weights: Optional[WeightsLike] = None,
    num_classes: Optional[int] = None,
    output_stride: Optional[int] = None,
    depth_multiplier: float = builder_default(1.0),
    decoder: bool = builder_default(True),
    separable: bool = builder_default(True),
    aspp_rates: Optional[Sequence[int]] = None,
    aspp_dropout: float = builder_default(0.1),
    low_level_channels: int = builder_default(48),
    head_channels: int = builder_default(256),
    align_corners: bool = builder_default(True),
    pretrained_backbone: Optional[str] = None,
    backbone_bn_momentum: float = PYTORCH_BN_MOMENTUM,
    head_bn_momentum: float = PYTORCH_BN_MOMENTUM,
) -> DeepLabV3Plus:
    """DeepLabv3+ on an atrous MobileNetV2 of width ``depth_multiplier`` (:class:`MobileNetV2`).

    ``depth_multiplier`` scales every layer's channels as the reference's DeepLab does (0.5 for its
    ``mobilenetv2_dm05`` models). The reference's mobile models run without the decoder and with
    ASPP's image pooling and 1x1 branches only: ``decoder=False, aspp_rates=[]``. The other
    arguments, ``weights`` and the record ``model.build_args`` are as :func:`deeplabv3plus_xception`'s;
    the reference's BN momenta are 0.003 (trunk) and 0.0003 (ASPP + decoder),
    :data:`REFERENCE_BN_MOMENTUM`.
    """
    args, state = _resolve_weights(weights, dict(
        backbone="mobilenetv2", depth_multiplier=depth_multiplier, num_classes=num_classes,
        output_stride=output_stride, decoder=decoder, separable=separable, aspp_rates=aspp_rates,
        aspp_dropout=aspp_dropout, low_level_channels=low_level_channels, head_channels=head_channels,
        align_corners=align_corners, pretrained_backbone=pretrained_backbone,
    ))  # fmt: skip
    return _assemble(
        MobileNetV2(args["depth_multiplier"], args["output_stride"]),
        args,
        state,
        weights,
        (backbone_bn_momentum, head_bn_momentum),
    )


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
    name: load(e.builder) for name, e in BACKBONES.items()
}
"""The public builder of each ``model.backbone`` name (``deeplabv3plus.catalog.BACKBONES``)."""


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
    A family's own arguments (``deeplabv3plus.catalog.BackboneFamily.options``: ResNet's
    ``resnet_variant``, MobileNetV2's ``depth_multiplier``) must keep their defaults for the other
    families. With portable
    weights (``weights="path/to/folder"`` or ``"hf:owner/name"``) the folder's ``config.json``
    supplies the architecture; the arguments given must agree with it. Without, the backbone
    defaults to resnet101 (ResNet: the standard variant, subsampling shortcuts). ``bn_momentum`` is
    the config's preset (see :func:`bn_momenta`), turned into the builders' ``backbone_bn_momentum``
    and ``head_bn_momentum``.
    """
    weights = kwargs.get("weights")
    family_args = {key: kwargs.pop(key, None) for f in BACKBONE_FAMILIES.values() for key in f.options}
    family_args.update(resnet_variant=resnet_variant, strided_shortcut=strided_shortcut)
    if is_portable_source(weights):
        kwargs["weights"] = folder = resolve_portable(weights)  # one Hub lookup, not two
        arch = read_portable_config(folder)["model"]
        backbone = backbone if backbone is not None else arch.get("backbone")
        for key, value in family_args.items():
            family_args[key] = value if value is not None else arch.get(key)
        for key in ("decoder", "separable", "aspp_rates", "aspp_dropout", "low_level_channels",
                    "head_channels", "align_corners"):  # fmt: skip
            if key not in kwargs and key in arch:
                kwargs[key] = arch[key]
    backbone = "resnet101" if backbone is None else backbone
    if backbone not in MODEL_BUILDERS:
        raise ValueError(f"unknown backbone {backbone!r}; expected one of {', '.join(MODEL_BUILDERS)}")
    if "backbone_bn_momentum" not in kwargs and "head_bn_momentum" not in kwargs:
        kwargs["backbone_bn_momentum"], kwargs["head_bn_momentum"] = bn_momenta(backbone, bn_momentum)
    kwargs.update(_family_arguments(backbone, family_args))
    return MODEL_BUILDERS[backbone](**kwargs)


def _family_arguments(backbone: str, given: dict[str, Any]) -> dict[str, Any]:
    """The family-only arguments (``deeplabv3plus.catalog.BackboneFamily.options``) ``backbone``'s
    builder takes, None replaced by their defaults; another family's, set away from its default, is an error."""
    family = BACKBONE_FAMILIES[BACKBONES[backbone].family]
    foreign = {
        key: given[key]
        for other in BACKBONE_FAMILIES.values()
        if other is not family
        for key, default in other.options.items()
        if given.get(key) not in (None, default)
    }
    if foreign:
        names = "/".join(foreign)
        raise ValueError(
            f"{names} ({', '.join(repr(v) for v in foreign.values())}) do not apply to backbone {backbone!r}"
        )
    return {
        key: given[key] if given.get(key) is not None else default for key, default in family.options.items()
    }
