"""Which variable of a reference TF checkpoint becomes which of our state_dict keys.

The maps are generated from the architecture tables (``XCEPTION_BLOCKS``, ``RESNET_DEPTHS``) and
the reference code's scope names (tensorflow/models research/deeplab: ``core/xception.py``,
``core/resnet_v1_beta.py``, ``model.py``):

* slim conv + BN: ``SCOPE/weights`` (HWIO) and ``SCOPE/BatchNorm/{gamma,beta,moving_mean,
  moving_variance}``; no biases (BN follows).
* a reference "split" separable conv ``S``: ``S_depthwise/depthwise_weights`` (H, W, C, 1) with
  ``S_depthwise/BatchNorm/*``, then a 1x1 conv ``S_pointwise/weights`` with ``S_pointwise/BatchNorm/*``.
* Xception units sit in ``xception_65/<flow>/block<k>/unit_<u>/xception_module/`` (``xception_module``
  is the default scope of the reference unit function), ResNet units in
  ``resnet_v1_101/block<k>/unit_<u>/bottleneck_v1/``.
* the DeepLab head lives at the top level: ``image_pooling``, ``aspp0``, ``aspp1..3`` (``_depthwise``/
  ``_pointwise`` when separable), ``concat_projection``, ``decoder/feature_projection0``,
  ``decoder/decoder_conv0|1`` (separable) or ``decoder/decoder_conv0/decoder_conv0_1|_2`` (regular,
  from ``slim.repeat``), ``logits/semantic/{weights,biases}``.

Not model weights, and skipped: ``global_step``, optimizer slots (``.../Momentum``), moving-average
shadows (``.../ExponentialMovingAverage``) and, for backbones, the ImageNet classifier
(``<scope>/logits/*``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..models.resnet import RESNET_DEPTHS
from ..models.xception import XCEPTION_BLOCKS

__all__ = [
    "KINDS",
    "TFParam",
    "deeplab_map",
    "is_ignored",
    "name_map",
    "resnet_beta_map",
    "xception_map",
]

KINDS = ("xception65_imagenet", "resnet101_beta_imagenet", "xception65_deeplab")
"""What ``scripts/convert_tf_checkpoint.py --kind`` accepts."""

# How the reference groups the Xception block list into scopes: (entry blocks, middle units);
# every entry and exit block is its own 'blockK' with one unit, the middle flow one block of units.
_XCEPTION_FLOWS = {41: (3, 8), 65: (3, 16), 71: (5, 16)}

# ResNet-v1 beta: bottleneck width of each stage (output = 4x).
_RESNET_WIDTHS = (64, 128, 256, 512)

# Our PyTorch module of the ASPP image-pooling conv (an nn.Sequential(pool, ConvBNReLU)).
ASPP_POOLING = "aspp.pooling.1"

_BN = (
    ("weight", "gamma"),
    ("bias", "beta"),
    ("running_mean", "moving_mean"),
    ("running_var", "moving_variance"),
)
_IGNORED = re.compile(r"(^|/)(global_step|Momentum|ExponentialMovingAverage)$")


@dataclass(frozen=True)
class TFParam:
    """One tensor to copy: our ``key`` from the TF variable ``tf_name``, rearranged by ``layout``.

    layout: ``"conv"`` HWIO -> OIHW, ``"depthwise"`` (H, W, C, 1) -> (C, 1, H, W),
    ``"vector"`` copied as is (BN parameters, biases).
    """

    key: str
    tf_name: str
    layout: str


def _bn(key: str, scope: str) -> list[TFParam]:
    return [TFParam(f"{key}.{ours}", f"{scope}/BatchNorm/{theirs}", "vector") for ours, theirs in _BN]


def _conv_bn(conv_key: str, bn_key: str, scope: str) -> list[TFParam]:
    return [TFParam(f"{conv_key}.weight", f"{scope}/weights", "conv"), *_bn(bn_key, scope)]


def _separable(key: str, scope: str) -> list[TFParam]:
    """Our ``SeparableConv2d`` (conv_dw, bn_dw, conv_pw, bn_pw) from a reference split separable conv."""
    return [
        TFParam(f"{key}.conv_dw.weight", f"{scope}_depthwise/depthwise_weights", "depthwise"),
        *_bn(f"{key}.bn_dw", f"{scope}_depthwise"),
        *_conv_bn(f"{key}.conv_pw", f"{key}.bn_pw", f"{scope}_pointwise"),
    ]


def _xception_unit_scopes(depth: int) -> list[tuple[str, bool]]:
    """TF scope of each of our ``blocks.{i}`` and whether it has a conv shortcut."""
    blocks = XCEPTION_BLOCKS[depth]
    n_entry, n_middle = _XCEPTION_FLOWS[depth]
    if n_entry + n_middle + 2 != len(blocks):
        raise AssertionError(f"xception{depth}: flow layout does not match XCEPTION_BLOCKS")
    scopes = [f"entry_flow/block{k + 1}/unit_1" for k in range(n_entry)]
    scopes += [f"middle_flow/block1/unit_{u + 1}" for u in range(n_middle)]
    scopes += ["exit_flow/block1/unit_1", "exit_flow/block2/unit_1"]
    # A conv shortcut wherever channels or stride change (entry and first exit block); identity in
    # the middle flow; none in the last exit block.
    in_ch = [64] + [b.depths[-1] for b in blocks[:-1]]
    return [
        (scope, block.shortcut and (block.stride != 1 or c != block.depths[-1]))
        for scope, block, c in zip(scopes, blocks, in_ch)
    ]


def xception_map(depth: int = 65, prefix: str = "", scope: str = "") -> list[TFParam]:
    """Our ``Xception(depth)`` backbone (timm ``xception65`` keys) from the reference ``xception_65``.

    Args:
        depth: 41, 65 or 71.
        prefix: prepended to our keys (``"backbone."`` inside ``DeepLabV3Plus``).
        scope: the TF scope (default ``xception_{depth}``).
    """
    scope = scope or f"xception_{depth}"
    params = _conv_bn(f"{prefix}stem.0.conv", f"{prefix}stem.0.bn", f"{scope}/entry_flow/conv1_1")
    params += _conv_bn(f"{prefix}stem.1.conv", f"{prefix}stem.1.bn", f"{scope}/entry_flow/conv1_2")
    for i, (unit, conv_shortcut) in enumerate(_xception_unit_scopes(depth)):
        tf_unit = f"{scope}/{unit}/xception_module"
        for j in (1, 2, 3):
            params += _separable(f"{prefix}blocks.{i}.stack.conv{j}", f"{tf_unit}/separable_conv{j}")
        if conv_shortcut:
            key = f"{prefix}blocks.{i}.shortcut"
            params += _conv_bn(f"{key}.conv", f"{key}.bn", f"{tf_unit}/shortcut")
    return params


def resnet_beta_map(depth: int = 101, prefix: str = "", scope: str = "") -> list[TFParam]:
    """Our ``ResNet(depth, variant="beta")`` from the reference ``resnet_v1_{depth}_beta``.

    Stem ``conv1_1..3`` -> ``conv1.0``, ``conv1.1``, ``conv1.2`` + ``bn1``; ``block{k}/unit_{u}`` ->
    ``layer{k}.{u-1}``; the first unit of every stage changes channels, so it alone has a 1x1
    ``shortcut`` conv (-> ``downsample``); strided units without a channel change subsample.
    """
    scope = scope or f"resnet_v1_{depth}"
    params = _conv_bn(f"{prefix}conv1.0.conv", f"{prefix}conv1.0.bn", f"{scope}/conv1_1")
    params += _conv_bn(f"{prefix}conv1.1.conv", f"{prefix}conv1.1.bn", f"{scope}/conv1_2")
    params += _conv_bn(f"{prefix}conv1.2", f"{prefix}bn1", f"{scope}/conv1_3")
    for k, units in enumerate(RESNET_DEPTHS[depth], 1):
        for u in range(units):
            key, tf_unit = f"{prefix}layer{k}.{u}", f"{scope}/block{k}/unit_{u + 1}/bottleneck_v1"
            for c in (1, 2, 3):
                params += _conv_bn(f"{key}.conv{c}", f"{key}.bn{c}", f"{tf_unit}/conv{c}")
            if u == 0:
                params += _conv_bn(f"{key}.downsample.0", f"{key}.downsample.1", f"{tf_unit}/shortcut")
    return params


def deeplab_map(
    backbone: str = "xception65", *, separable: bool = True, decoder: bool = True
) -> list[TFParam]:
    """Our full ``DeepLabV3Plus`` from a reference DeepLab checkpoint (``model.py`` scopes).

    Args:
        backbone: ``"xception41|65|71"`` or ``"resnet50|101_beta"``.
        separable: the ASPP and decoder 3x3 convs are split separable convs (the 'SC' models).
        decoder: the checkpoint has the decoder (DeepLabv3+) or not (DeepLabv3).
    """
    match = re.fullmatch(r"xception(\d+)|resnet(\d+)_beta", backbone)
    if match is None:
        raise ValueError(f"backbone {backbone!r}: expected xception41|65|71 or resnet50|101_beta")
    if match.group(1):
        params = xception_map(int(match.group(1)), prefix="backbone.")
    else:
        params = resnet_beta_map(int(match.group(2)), prefix="backbone.")
    params += _conv_bn(f"{ASPP_POOLING}.conv", f"{ASPP_POOLING}.bn", "image_pooling")
    params += _conv_bn("aspp.conv1x1.conv", "aspp.conv1x1.bn", "aspp0")
    for i in range(3):
        key = f"aspp.atrous.{i}"
        params += (
            _separable(key, f"aspp{i + 1}")
            if separable
            else _conv_bn(f"{key}.conv", f"{key}.bn", f"aspp{i + 1}")
        )
    params += _conv_bn("aspp.project.conv", "aspp.project.bn", "concat_projection")
    if decoder:
        params += _conv_bn("decoder.low_level.conv", "decoder.low_level.bn", "decoder/feature_projection0")
        for i in range(2):
            key = f"decoder.fuse.{i}"
            if separable:
                params += _separable(key, f"decoder/decoder_conv{i}")
            else:  # slim.repeat(..., scope='decoder_conv0') names its convs decoder_conv0_1, _2
                params += _conv_bn(f"{key}.conv", f"{key}.bn", f"decoder/decoder_conv0/decoder_conv0_{i + 1}")
    params += [
        TFParam("classifier.weight", "logits/semantic/weights", "conv"),
        TFParam("classifier.bias", "logits/semantic/biases", "vector"),
    ]
    return params


def name_map(kind: str) -> list[TFParam]:
    """The map of one of :data:`KINDS`."""
    if kind == "xception65_imagenet":
        return xception_map(65)
    if kind == "resnet101_beta_imagenet":
        return resnet_beta_map(101)
    if kind == "xception65_deeplab":
        return deeplab_map("xception65", separable=True, decoder=True)
    raise ValueError(f"unknown checkpoint kind {kind!r}; expected one of {', '.join(KINDS)}")


def is_ignored(tf_name: str, kind: str) -> bool:
    """Whether ``tf_name`` is not a weight of our model (step counter, optimizer slot, EMA, classifier)."""
    if _IGNORED.search(tf_name):
        return True
    # ImageNet backbones carry a 1001-way classifier that segmentation does not use.
    return kind.endswith("_imagenet") and re.fullmatch(r"[^/]+/logits/(weights|biases)", tf_name) is not None
