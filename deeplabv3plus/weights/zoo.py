"""The reference model zoo by name: trained DeepLabv3+ models and ImageNet backbones, with metadata.

In the manner of torchvision's multi-weight API, every downloadable checkpoint is a
:class:`PretrainedWeights` entry (source URL, what it was trained on, classes, the output stride and
evaluation settings it was published with, the preprocessing it expects, the reported figures and
their source, the licence), reachable by name or as an enum member::

    from deeplabv3plus import deeplabv3plus_xception65
    from deeplabv3plus.weights import DeepLabV3PlusXception65Weights

    weights = DeepLabV3PlusXception65Weights.XCEPTION65_COCO_VOC_TRAINAUG  # or its name as a string
    model = deeplabv3plus_xception65(weights=weights)  # eval mode, 21 classes, OS 16
    preprocess = weights.transforms()
    labels = model(preprocess(pil_image)).argmax(1)  # (1, H, W) VOC class indices

The ImageNet backbones (:class:`TFBackboneWeights`) are ``pretrained_backbone="tf:<name>"`` sources,
e.g. ``model.pretrained_backbone: tf:xception_65`` in a config.

First use downloads the model-zoo tarball into torch.hub's cache and converts it once
(:mod:`.download`); docs/pretrained.md lists the entries and what could not be confirmed.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from enum import Enum
from typing import Any, Optional, TypeVar, Union, cast

from ..config import Config
from ..data.ade20k_meta import ade20k_class_names
from ..data.cityscapes_meta import CITYSCAPES_CLASSES
from ..data.transforms import Preprocess
from ..data.voc_meta import VOC_CLASSES

__all__ = [
    "BuilderDefault",
    "DeepLabV3PlusXception65Weights",
    "EvalSettings",
    "HeadSpec",
    "Preprocess",
    "PretrainedWeights",
    "PretrainedWeightsError",
    "Result",
    "TFBackboneWeights",
    "WEIGHTS",
    "adopt_weights_args",
    "builder_default",
    "get_weights",
    "list_weights",
    "plain",
    "resolve_builder_args",
]

_ZOO = "tensorflow/models research/deeplab/g3doc/model_zoo.md"
_HOST = "https://download.tensorflow.org/models/"
_MS_SCALES = (0.5, 0.75, 1.0, 1.25, 1.5, 1.75)  # the model zoo's [0.5:0.25:1.75]
_LICENCE = "Apache-2.0 (tensorflow/models; the model zoo states no other terms for its checkpoints)"


class PretrainedWeightsError(RuntimeError):
    """Pretrained weights cannot be found, downloaded, read, or do not fit the model they are for."""


@dataclass(frozen=True)
class EvalSettings:
    """How a published figure was (or an entry is by default) evaluated.

    Attributes:
        output_stride: the stride the model runs at (8 or 16).
        scales: image scales whose softmax probabilities are averaged.
        flip: also average the left-right flipped image.
        pad_to: pad every image (bottom/right, with the mean pixel) to at least this square size,
            as the reference's ``eval_crop_size`` 513 does for VOC (config ``eval.pad_to``).
        crop_size: the reference's ``eval_crop_size`` (H, W) when it is not square (Cityscapes
            1025x2049: whole 1024x2048 frames padded by one pixel); :meth:`PretrainedWeights.config`
            turns it into ``eval.pad_to: [1025, 2049]``.
    """

    output_stride: int
    scales: tuple[float, ...] = (1.0,)
    flip: bool = False
    pad_to: Optional[int] = None
    crop_size: Optional[tuple[int, int]] = None


@dataclass(frozen=True)
class Result:
    """A figure the reference reports for an entry: ``value`` (percent) of ``metric`` on ``split``."""

    metric: str
    value: float
    split: str
    eval: EvalSettings
    source: str = _ZOO


@dataclass(frozen=True)
class HeadSpec:
    """The DeepLab architecture around the backbone (the builders' keyword arguments it fixes)."""

    decoder: bool = True
    separable: bool = True
    aspp_rates: tuple[int, int, int] = (6, 12, 18)
    low_level_channels: int = 48
    head_channels: int = 256
    align_corners: bool = True


@dataclass(frozen=True)
class PretrainedWeights:
    """One checkpoint of the reference model zoo and everything needed to use it.

    Attributes:
        name: what ``weights=`` (or ``pretrained_backbone="tf:<name>"`` for backbones) accepts.
        url: the model-zoo tarball.
        checkpoint: the TF checkpoint prefix inside the tarball (``DIR/model.ckpt``); when absent,
            the tarball's only ``*.index`` member is used.
        kind: the converter's name map (:data:`~deeplabv3plus.weights.tf_names.KINDS`).
        backbone: our backbone (a key of ``MODEL_BUILDERS``); ResNets are the ``beta`` variant.
        dataset: what it was trained on last; ``trained_on`` gives the whole sequence.
        num_classes: logits of the segmentation model (None for an ImageNet backbone: the
            classifier is dropped).
        class_names: one per logit.
        ignore_index: the label value the reference ignores in training and evaluation.
        label_convention: how dataset labels become classes (e.g. ADE20K's "other" = class 0).
        train_output_stride: the stride it was trained at (the config's ``model.output_stride``).
        eval: the setting that the builders, ``--weights`` and :meth:`config` apply by default.
        data_layout: the ``data.layout`` of its evaluation dataset.
        results: the reported figures, the default setting's first.
        head: the DeepLab head it has (None for a backbone).
        mean, std: per-channel normalisation of images in [0, 1]: 0.5 and 0.5 give the reference's
            ``x / 127.5 - 1``, range [-1, 1].
        licence: terms of the checkpoint.
        download_mb: the tarball's size as the model zoo lists it.
        sha256: of the tarball, when recorded (then checked); None: trusted after a complete
            conversion.
        notes: what is known but not confirmed.
        skip_head: a backbone entry whose checkpoint may also hold a DeepLab head (ASPP, decoder,
            logits): those variables are left out of the conversion, and their count reported.
    """

    name: str
    url: str
    checkpoint: str
    kind: str
    backbone: str
    dataset: str
    trained_on: str
    num_classes: Optional[int]
    class_names: tuple[str, ...]
    ignore_index: Optional[int]
    label_convention: str
    train_output_stride: int
    eval: EvalSettings
    data_layout: Optional[str]
    results: tuple[Result, ...]
    head: Optional[HeadSpec]
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)
    licence: str = _LICENCE
    download_mb: Optional[int] = None
    sha256: Optional[str] = None
    notes: str = ""
    skip_head: bool = False

    @property
    def is_backbone(self) -> bool:
        """An ImageNet backbone (``pretrained_backbone="tf:<name>"``), not a segmentation model."""
        return self.head is None

    def transforms(self) -> Preprocess:
        """The preprocessing it expects: ``model(entry.transforms()(pil_image))`` is right."""
        return Preprocess(self.mean, self.std)

    def config(self) -> Config:
        """A :class:`~deeplabv3plus.config.Config` that rebuilds and evaluates the model as published.

        ``model.*`` is the architecture at the training output stride, ``data.*`` the classes,
        ignore index, preprocessing and ``data.layout`` (``data.root`` is left for the user),
        ``eval.*`` the default evaluation setting.
        """
        if self.is_backbone:
            raise PretrainedWeightsError(f"'{self.name}' is an ImageNet backbone, not a segmentation model")
        cfg = Config()
        cfg.model.backbone = self.backbone
        cfg.model.num_classes = self.num_classes
        cfg.model.output_stride = self.train_output_stride
        cfg.model.decoder = self.head.decoder
        cfg.model.separable = self.head.separable
        cfg.model.aspp_rates = list(self.head.aspp_rates)
        cfg.model.low_level_channels = self.head.low_level_channels
        cfg.model.head_channels = self.head.head_channels
        cfg.model.align_corners = self.head.align_corners
        cfg.model.pretrained_backbone = None
        cfg.data.layout = self.data_layout or cfg.data.layout
        cfg.data.root = "data"
        cfg.data.num_classes = self.num_classes
        cfg.data.class_names = list(self.class_names)
        cfg.data.ignore_index = self.ignore_index
        cfg.data.mean = list(self.mean)
        cfg.data.std = list(self.std)
        cfg.eval.output_stride = self.eval.output_stride
        cfg.eval.scales = list(self.eval.scales)
        cfg.eval.flip = self.eval.flip
        # The reference's eval_crop_size: 513 (square) for VOC, 1025x2049 for whole Cityscapes frames.
        crop = self.eval.pad_to if self.eval.pad_to is not None else self.eval.crop_size
        cfg.eval.pad_to = list(crop) if isinstance(crop, tuple) else crop
        if self.data_layout == "ade20k":
            cfg.data.label_convention = "reference"  # 151 classes, 0 ('other') ignored
        return cfg


def _voc(name: str, archive: str, folder: str, trained_on: str, train_os: int, results: tuple[Result, ...],
         notes: str = "") -> PretrainedWeights:  # fmt: skip
    return PretrainedWeights(
        name=name,
        url=_HOST + archive,
        checkpoint=f"{folder}/model.ckpt",
        kind="xception65_deeplab",
        backbone="xception65",
        dataset="PASCAL VOC 2012",
        trained_on=trained_on,
        num_classes=21,
        class_names=VOC_CLASSES,
        ignore_index=255,
        label_convention="VOC palette indices 0-20, 255 = void (ignored)",
        train_output_stride=train_os,
        eval=results[0].eval,
        data_layout="voc",
        results=results,
        head=HeadSpec(),
        download_mb=439,
        notes=notes,
    )


_VOC_OS16 = EvalSettings(16, (1.0,), False, pad_to=513)
_VOC_OS8_MS = EvalSettings(8, _MS_SCALES, True, pad_to=513)


class _WeightsEnum(Enum):
    """An enum of :class:`PretrainedWeights`; a member reads as its entry (``member.url``), as torchvision's."""

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):  # Enum internals, pickling, copy: never delegate those
            raise AttributeError(name)
        return getattr(self.value, name)

    def __str__(self) -> str:
        return self.value.name


class DeepLabV3PlusXception65Weights(_WeightsEnum):
    """The reference DeepLabv3+ Xception-65 models (separable ASPP + decoder) of the model zoo."""

    XCEPTION65_COCO_VOC_TRAINAUG = _voc(
        "xception65_coco_voc_trainaug",
        "deeplabv3_pascal_train_aug_2018_01_04.tar.gz",
        "deeplabv3_pascal_train_aug",
        "ImageNet -> MS-COCO -> PASCAL VOC 2012 train_aug",
        16,
        (
            Result("mIoU", 82.20, "val", _VOC_OS16),
            Result("mIoU", 83.58, "val", _VOC_OS8_MS),
        ),
    )
    XCEPTION65_COCO_VOC_TRAINVAL = _voc(
        "xception65_coco_voc_trainval",
        "deeplabv3_pascal_trainval_2018_01_04.tar.gz",
        "deeplabv3_pascal_trainval",
        "ImageNet -> MS-COCO -> PASCAL VOC 2012 train_aug -> trainval",
        8,
        (Result("mIoU", 87.80, "test", _VOC_OS8_MS),),
        notes="trained on VOC val too: its val mIoU means nothing; training output stride 8 is the "
        "paper's test-set recipe (the model zoo does not state it)",
    )
    XCEPTION65_CITYSCAPES_TRAINFINE = PretrainedWeights(
        name="xception65_cityscapes_trainfine",
        url=_HOST + "deeplabv3_cityscapes_train_2018_02_06.tar.gz",
        checkpoint="deeplabv3_cityscapes_train/model.ckpt",
        kind="xception65_deeplab",
        backbone="xception65",
        dataset="Cityscapes",
        trained_on="ImageNet -> Cityscapes train_fine",
        num_classes=19,
        class_names=CITYSCAPES_CLASSES,
        ignore_index=255,
        label_convention="the 19 train IDs of cityscapesScripts; every other label ID -> 255 (ignored)",
        train_output_stride=16,
        eval=EvalSettings(16, (1.0,), False, crop_size=(1025, 2049)),
        data_layout="cityscapes",
        results=(
            Result("mIoU", 78.79, "val", EvalSettings(16, (1.0,), False, crop_size=(1025, 2049))),
            Result("mIoU", 80.42, "val", EvalSettings(8, (0.75, 1.0, 1.25), True, crop_size=(1025, 2049))),
        ),
        head=HeadSpec(),
        download_mb=439,
        notes="eval crop 1025x2049 from cityscapes.md (whole frames, padded by one pixel: eval.pad_to)",
    )
    XCEPTION65_ADE20K_TRAIN = PretrainedWeights(
        name="xception65_ade20k_train",
        url=_HOST + "deeplabv3_xception_ade20k_train_2018_05_29.tar.gz",
        checkpoint="deeplabv3_xception_ade20k_train/model.ckpt",
        kind="xception65_deeplab",
        backbone="xception65",
        dataset="ADE20K",
        trained_on="ImageNet -> ADE20K train (SceneParsing, 20,210 images)",
        num_classes=151,
        class_names=tuple(ade20k_class_names("reference")),
        ignore_index=0,
        label_convention="reference: 151 classes, PNG values as they are, 0 ('other') ignored",
        train_output_stride=16,
        eval=EvalSettings(8, _MS_SCALES, True),
        data_layout="ade20k",
        results=(
            Result("mIoU", 45.65, "val", EvalSettings(8, _MS_SCALES, True)),
            Result("pixel accuracy", 82.52, "val", EvalSettings(8, _MS_SCALES, True)),
        ),
        head=HeadSpec(),
        download_mb=439,
        notes="the eval image size is not published (ade20k.md trains with min/max_resize_value 513); "
        "training output stride 16 from ade20k.md's example command",
    )


def _backbone(name: str, archive: str, folder: str, kind: str, backbone: str, mb: int) -> PretrainedWeights:
    return PretrainedWeights(
        name=name,
        url=_HOST + archive,
        checkpoint=f"{folder}/model.ckpt",
        kind=kind,
        backbone=backbone,
        dataset="ImageNet",
        trained_on="ImageNet-1k",
        num_classes=None,
        class_names=(),
        ignore_index=None,
        label_convention="",
        train_output_stride=32,
        eval=EvalSettings(16),
        data_layout=None,
        results=(),
        head=None,
        download_mb=mb,
        notes="the folder inside the tarball is not confirmed: the only *.index member is used",
    )


class TFBackboneWeights(_WeightsEnum):
    """The reference ImageNet backbones: ``pretrained_backbone="tf:<name>"`` (ResNets: ``resnet_variant="beta"``)."""

    XCEPTION_41 = _backbone("xception_41", "xception_41_2018_05_09.tar.gz", "xception_41", "xception41_imagenet",
                            "xception41", 288)  # fmt: skip
    XCEPTION_65 = _backbone("xception_65", "deeplabv3_xception_2018_01_04.tar.gz", "xception", "xception65_imagenet",
                            "xception65", 447)  # fmt: skip
    XCEPTION_71 = _backbone("xception_71", "xception_71_2018_05_09.tar.gz", "xception_71", "xception71_imagenet",
                            "xception71", 474)  # fmt: skip
    # ImageNet + COCO: the start of the model zoo's xception65_coco_voc_trainaug (82.20% VOC val).
    # g3doc/model_zoo.md lists it as xception_65_imagenet_coco; the checkpoint path inside the
    # tarball is research/feelvos/train.sh's (tensorflow/models bf3d2e61).
    XCEPTION_65_COCO = dataclasses.replace(
        _backbone(
            "xception_65_coco",
            "xception_65_coco_pretrained_2018_10_02.tar.gz",
            "xception_65_coco_pretrained",
            "xception65_imagenet",
            "xception65",
            292,
        ),  # fmt: skip
        checkpoint="xception_65_coco_pretrained/x65-b2u1s2p-d48-2-3x256-sc-cr300k_init.ckpt",
        dataset="ImageNet + COCO",
        trained_on="ImageNet-1k, then COCO (DeepLabv3+ section 4.3, 'Pretraining on COCO')",
        skip_head=True,
        notes="not confirmed offline (the tarball cannot be downloaded here): its file list and "
        "sha256; that the backbone variables are under xception_65/; whether it also holds the ASPP, "
        "decoder and logits of the COCO model (the file name's d48 / 3x256 / sc suggest so); such "
        "head variables are skipped and counted. If the checkpoint is not at the path above, the "
        "tarball's only *.index member is used",
    )
    RESNET_V1_50_BETA = _backbone("resnet_v1_50_beta", "resnet_v1_50_2018_05_04.tar.gz", "resnet_v1_50",
                                  "resnet50_beta_imagenet", "resnet50", 274)  # fmt: skip
    RESNET_V1_101_BETA = _backbone("resnet_v1_101_beta", "resnet_v1_101_2018_05_04.tar.gz", "resnet_v1_101",
                                   "resnet101_beta_imagenet", "resnet101", 477)  # fmt: skip


WEIGHTS: dict[str, PretrainedWeights] = {
    m.value.name: m.value for enum in (DeepLabV3PlusXception65Weights, TFBackboneWeights) for m in enum
}
"""Every entry by name."""

WeightsLike = Union[str, PretrainedWeights, _WeightsEnum]


def list_weights(backbones: Optional[bool] = None) -> list[str]:
    """Entry names: all, only the segmentation models (``backbones=False``) or only the backbones."""
    return [n for n, w in WEIGHTS.items() if backbones is None or w.is_backbone == backbones]


def get_weights(weights: WeightsLike) -> PretrainedWeights:
    """The entry a name, an enum member or an entry (returned as it is) stands for.

    Raises:
        PretrainedWeightsError: an unknown name (the message lists the valid ones).
    """
    if isinstance(weights, _WeightsEnum):
        return weights.value
    if isinstance(weights, PretrainedWeights):
        return weights
    if isinstance(weights, str):
        name = weights.removeprefix("tf:")
        if name in WEIGHTS:
            return WEIGHTS[name]
        raise PretrainedWeightsError(f"unknown weights {weights!r}; expected one of {', '.join(WEIGHTS)}")
    raise TypeError(
        f"weights: expected a name, a PretrainedWeights or an enum member, got {type(weights).__name__}"
    )


class BuilderDefault:
    """A builder parameter's default, told apart from the same value passed explicitly.

    ``help()`` shows it as its value (``head_channels: int = 256``). With ``weights=``, a parameter
    the caller left at its ``BuilderDefault`` takes the weights' value; one passed explicitly must
    agree with the weights (torchvision's rule, ``torchvision.models._utils._ovewrite_named_param``).
    """

    __slots__ = ("value",)

    def __init__(self, value: Any):
        self.value = value

    def __repr__(self) -> str:
        return repr(self.value)

    def __eq__(self, other: object) -> bool:  # equal to its value: ``signature(...).default == 256`` holds
        return self.value == (other.value if isinstance(other, BuilderDefault) else other)

    def __hash__(self) -> int:
        return hash(self.value)


_T = TypeVar("_T")


def builder_default(value: _T) -> _T:
    """``value`` as a builder's default (a :class:`BuilderDefault`; typed as the value for checkers)."""
    return cast(_T, BuilderDefault(value))


def left_out(value: Any) -> bool:
    """Whether a builder argument was left out: still its :class:`BuilderDefault`, or None."""
    return value is None or isinstance(value, BuilderDefault)


def plain(value: Any) -> Any:
    """A builder argument's value: the default's own value for a :class:`BuilderDefault`."""
    return value.value if isinstance(value, BuilderDefault) else value


def _same(key: str, value: Any, fixed: Any) -> bool:
    if key == "aspp_rates":  # None means the default rates; lists and tuples compare alike
        default = HeadSpec().aspp_rates
        return tuple(value if value is not None else default) == tuple(
            fixed if fixed is not None else default
        )
    return value == fixed


def adopt_weights_args(
    args: dict[str, Any], fixed: dict[str, Any], source: str, free: tuple[str, ...] = ()
) -> dict[str, Any]:
    """A builder's arguments completed by the weights' architecture (torchvision's rule).

    Args:
        args: the builder's arguments; a left-out one (:func:`left_out`) takes ``fixed``'s value.
        fixed: what the weights fix (``num_classes``, ``head_channels``, ...).
        source: the weights' name, for the message.
        free: keys of ``fixed`` that an explicit argument may change (``output_stride``: the same
            weights run at 8, 16 or 32).

    Returns:
        Every argument of ``args`` with a plain value.

    Raises:
        PretrainedWeightsError: an argument passed explicitly that contradicts ``fixed``; or a
            ``pretrained_backbone`` (the weights hold the backbone too).
    """
    if args.get("pretrained_backbone") is not None:
        raise PretrainedWeightsError(
            f"pretrained_backbone={args['pretrained_backbone']!r} with weights '{source}': "
            "the weights hold the backbone too"
        )
    resolved = {}
    for key, value in args.items():
        if key not in fixed:
            resolved[key] = plain(value)
        elif left_out(value):
            resolved[key] = fixed[key]
        elif key in free or _same(key, value, fixed[key]):
            resolved[key] = value
        else:
            shown, want = (
                (tuple(value), None if fixed[key] is None else tuple(fixed[key]))
                if key == "aspp_rates"
                else (value, fixed[key])
            )
            hint = (
                f"build it with build_model(weights='{source}')"
                if key == "backbone"  # a depth builder's own: it cannot be left out
                else f"leave {key} out to take the weights' value"
            )
            raise PretrainedWeightsError(
                f"{key}={shown!r} contradicts weights '{source}' ({key}={want!r}); {hint}"
            )
    return resolved


def resolve_builder_args(
    weights: WeightsLike, args: dict[str, Any]
) -> tuple[PretrainedWeights, dict[str, Any]]:
    """A builder's arguments completed by an entry: returns (entry, arguments to build with).

    The entry fixes the architecture: ``num_classes`` and the head (decoder, separable, aspp_rates,
    low_level_channels, head_channels, align_corners); an argument the caller left at its default
    (:func:`left_out`) takes the entry's value, one passed explicitly must agree with it.
    ``output_stride`` is free: the same weights run at 8, 16 or 32 (the reference evaluates its
    OS-16 models at OS 8); left out, it is the entry's default evaluation stride.

    Args:
        weights: an entry name, member or entry.
        args: the builder's arguments: ``backbone`` (the builder's own), ``num_classes``,
            ``output_stride``, the head's, ``aspp_dropout``, ``pretrained_backbone``.

    Raises:
        PretrainedWeightsError: a backbone entry, another backbone, or a contradicting argument.
    """
    entry = get_weights(weights)
    if entry.is_backbone:
        raise PretrainedWeightsError(
            f"weights '{entry.name}' are an ImageNet backbone: pass pretrained_backbone='tf:{entry.name}' instead"
        )
    if entry.backbone != args["backbone"]:
        raise PretrainedWeightsError(
            f"weights '{entry.name}' are for a {entry.backbone} model, not {args['backbone']}"
        )
    head = dataclasses.asdict(entry.head)
    fixed = dict(
        head,
        aspp_rates=list(head["aspp_rates"]),
        num_classes=entry.num_classes,
        output_stride=entry.eval.output_stride,
    )
    return entry, adopt_weights_args(args, fixed, entry.name, free=("output_stride",))
