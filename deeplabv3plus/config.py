"""The typed configuration schema, YAML loading and dotted command-line overrides.

A config file mirrors :class:`Config` one to one::

    model:
      backbone: resnet101
      output_stride: 16
    train:
      max_iters: 30000

Unknown keys are errors (with the list of valid keys), values are checked against the field
types, and ``a.b=c`` overrides from the command line are parsed as YAML scalars
(``train.max_iters=100``, ``data.scales=[0.5,1.0]``, ``model.pretrained_backbone=null``).

Numbers are read as people write them: ``1e-3`` and ``5e4`` are floats (YAML 1.2; PyYAML's
YAML 1.1 rules would make them strings), and a whole float such as ``3e4`` is accepted where an
int is expected. Booleans are YAML 1.2's too, ``true`` / ``false`` only: ``on``, ``off``, ``yes``
and ``no`` stay words, so ``train.channels_last=off`` and ``train.amp=off`` mean the option ``off``.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import importlib.resources
import os
import re
import types
import typing
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Optional, Union

import yaml

from .catalog import (
    BACKBONE_FAMILIES,
    BACKBONES,
    IGNORE_INDEX,
    LAYOUTS,
    LOSSES,
    MASK_FORMATS,
    BootstrappedOptions,
    CocoOptions,
    FoldersOptions,
    LovaszOptions,
    OhemOptions,
    RgbOptions,
    SyntheticOptions,
)


@dataclass
class ModelConfig:
    """Architecture; the fields are the keyword arguments of :func:`deeplabv3plus.build_model`."""

    backbone: str = "resnet101"
    """A key of ``deeplabv3plus.catalog.BACKBONES`` (``deeplabv3plus configs`` and docs list them)."""
    resnet_variant: str = "standard"
    """ResNet only: 'standard' (torchvision layout, 7x7 stem) or 'beta' (the paper's 3x3 stem)."""
    strided_shortcut: str = "subsample"
    """ResNet beta only: 'subsample' (reference code) or 'projection' (matches the paper's MACs)."""
    depth_multiplier: float = 1.0
    """MobileNetV2 only: the width factor of every layer (0.5 for the reference's mobilenetv2_dm05)."""
    num_classes: int = 21
    output_stride: int = 16
    decoder: bool = True
    separable: bool = False
    """Atrous separable convs in ASPP and decoder (the paper's 'SC')."""
    aspp_rates: Optional[list[int]] = None
    """ASPP atrous rates at output stride 16 (default 6, 12, 18); scaled by 16/OS at other strides."""
    aspp_dropout: float = 0.1
    low_level_channels: int = 48
    head_channels: int = 256
    """Width of the ASPP branches and decoder convs (256 in the paper)."""
    align_corners: bool = True
    pretrained_backbone: Optional[str] = None
    """ImageNet weights of the backbone: a path to a state_dict, or a named source (see weights)."""
    bn_momentum: Union[str, float] = "pytorch"
    """BatchNorm running-statistics momentum (PyTorch's ``momentum`` = 1 - TF's ``decay``):
    'pytorch' (0.1 everywhere, the builders' default), 'reference' (the reference code's values per
    part: Xception backbone 0.0003, ResNet backbone 0.05, ASPP and decoder 0.0003; see
    ``deeplabv3plus.builders.REFERENCE_BN_MOMENTUM``) or one number in (0, 1] for every BN. With
    0.0003 the running statistics average the last ~3,000 batches: right for 30k iterations, too
    slow for a run of a few hundred (validation would use mostly the initial statistics)."""


@dataclass
class DataConfig:
    """Where the images are, how they are augmented and normalised."""

    layout: str = "synthetic"
    """A key of ``deeplabv3plus.catalog.LAYOUTS`` (``voc``, ``cityscapes``, your own ``folders``, the
    generated ``synthetic``, ...): docs/datasets.md describes each."""
    root: str = "data/synthetic"
    train_split: str = "train"
    val_split: str = "val"
    num_classes: int = 21
    class_names: Optional[list[str]] = None
    ignore_index: int = IGNORE_INDEX
    label_convention: Optional[str] = None
    """How label PNG values become classes. 'cityscapes': 'auto' (default: per image the
    *_gtFine_labelTrainIds.png if present, else *_gtFine_labelIds.png mapped to the 19 train IDs),
    'train_ids' or 'label_ids' (only that file). 'ade20k': 'reference' (default: 151 classes, 0 =
    "other" = ignore_index 0, as the reference's ADE20K model) or 'reduce_zero' (150 classes,
    0 -> 255, 1..150 -> 0..149). Must be null for the other layouts."""
    crop_size: int = 513
    scales: list[float] = field(default_factory=lambda: [0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0])
    hflip: bool = True
    mean: list[float] = field(default_factory=lambda: [0.485, 0.456, 0.406])
    """Per-channel mean of images scaled to [0, 1]; the reference TF models use 0.5 (range [-1, 1])."""
    std: list[float] = field(default_factory=lambda: [0.229, 0.224, 0.225])
    workers: int = 4
    allow_val_in_train: bool = False
    """Only warn (instead of failing) when a val image is also in the training split, e.g. for the
    paper's trainval model for the test server."""
    max_image_pixels: int = 50_000_000
    """The largest image (width x height, in pixels) read for training, eval and predict, checked from
    the file's header before decoding. Segmenting holds the image's logits (4 bytes x classes per
    pixel, also under ``eval.mode=slide``) and in ``whole`` mode the network's activations (~600 bytes
    per pixel for Xception-65 at output stride 8, docs/benchmarks.md; a 9000x9000 photo grew predict
    to 7.3 GB): 50 megapixels (a 48 MP phone photo) is ~4 GB of logits alone. Raise it for larger
    images, with ``eval.mode=slide`` to predict them in windows."""
    min_resize_value: Optional[int] = None
    """Resize every image (training and evaluation, before the scale augmentation) so that its
    shorter side is this many pixels, unless that makes the longer side exceed
    ``max_resize_value``: then the longer side gets that. The reference's ``--min_resize_value``
    (``core/preprocess_utils.py`` ``resize_to_range``); ADE20K: 513. None: no resize."""
    max_resize_value: Optional[int] = None
    """The longest side allowed by the resize above (reference ``--max_resize_value``; ADE20K: 513)."""
    resize_factor: Optional[int] = None
    """Make both resized sides ``factor * k + 1`` pixels (reference ``--resize_factor``, which
    ``g3doc/ade20k.md`` says must equal the output stride; ADE20K: 16)."""
    mask_format: str = "index"
    """What the label files hold: a key of ``deeplabv3plus.catalog.MASK_FORMATS`` (docs/own_data.md).
    'index': PNGs whose pixel values are the classes (every layout); the others are read by the
    'folders' layout: 'rgb' (``data.rgb``), 'binary' (0/255 -> classes 0/1), 'coco' (``data.coco``)."""
    folders: FoldersOptions = field(default_factory=FoldersOptions)
    """'folders' layout: where the images and labels are under root."""
    synthetic: SyntheticOptions = field(default_factory=SyntheticOptions)
    """The generated datasets: the 'synthetic' layout's, and the smoke sets of the other layouts."""
    rgb: RgbOptions = field(default_factory=RgbOptions)
    """data.mask_format=rgb: the colour table."""
    coco: CocoOptions = field(default_factory=CocoOptions)
    """data.mask_format=coco: the JSON files and the category table."""

    renamed: ClassVar[dict[str, str]] = {
        "image_dir": "folders.image_dir", "mask_dir": "folders.mask_dir", "image_ext": "folders.image_ext",
        "synthetic_size": "synthetic.size", "synthetic_kind": "synthetic.kind", "generate": "synthetic.generate",
        "mask_colors": "rgb.colors", "mask_ignore_colors": "rgb.ignore_colors",
        "coco_annotations": "coco.annotations", "coco_mapping": "coco.mapping", "coco_unmapped": "coco.unmapped",
    }  # fmt: skip
    """Keys of earlier releases: still read, with a one-line note naming the new key."""


@dataclass
class LossConfig:
    """``train.loss``: which loss and its options (``deeplabv3plus.losses.build_loss``; docs/own_data.md)."""

    name: str = "cross_entropy"
    """cross_entropy (the paper's), bootstrapped_cross_entropy (TF DeepLab's top_k_percent_pixels
    mining), ohem (mmsegmentation's), lovasz_softmax (Berman et al., CVPR 2018)."""
    class_weights: Optional[Union[str, list[float]]] = None
    """null, one weight per class, or 'auto': median-frequency weights (capped to 0.1..10) from the
    training split's labels, computed at the start of the run (cross-entropy losses only)."""
    bootstrapped_cross_entropy: BootstrappedOptions = field(default_factory=BootstrappedOptions)
    """The options of the bootstrapped_cross_entropy loss."""
    ohem: OhemOptions = field(default_factory=OhemOptions)
    """The options of the ohem loss."""
    lovasz_softmax: LovaszOptions = field(default_factory=LovaszOptions)
    """The options of the lovasz_softmax loss."""

    renamed: ClassVar[dict[str, str]] = {
        "top_k_percent_pixels": "bootstrapped_cross_entropy.top_k_percent_pixels",
        "hard_example_mining_step": "bootstrapped_cross_entropy.hard_example_mining_step",
        "ohem_thresh": "ohem.thresh",
        "ohem_min_kept": "ohem.min_kept",
    }
    """Keys of earlier releases: still read, with a one-line note naming the new key."""


@dataclass
class TrainConfig:
    """The paper's recipe (paper section 4; reference train.py flags): SGD, poly LR, batch 16, 30k iterations."""

    max_iters: int = 30000
    batch_size: int = 16
    """Global batch (split across processes under torchrun)."""
    lr: float = 0.007
    lr_power: float = 0.9
    momentum: float = 0.9
    weight_decay: float = 1e-4
    backbone_lr_mult: float = 1.0
    freeze_bn: bool = False
    sync_bn: bool = True
    """Convert BatchNorm to SyncBatchNorm when running distributed."""
    amp: str = "auto"
    """'auto' (bf16 on CUDA when supported, off on CPU), 'off', 'bf16' or 'fp16'."""
    channels_last: str = "auto"
    """'auto' (on for CUDA and CPU, the faster layout on both), 'on', 'off'."""
    compile: bool = False
    init_from: Optional[str] = None
    """Start from the weights of this checkpoint (e.g. the OS-16 stage's best.pth) with a fresh
    optimizer and schedule; unlike --resume, which continues the same run."""
    allow_scratch_backbone: bool = False
    """Training without an ImageNet-pretrained backbone is an error unless this is true."""
    seed: int = 0
    device: str = "auto"
    """'auto' (cuda if available), 'cpu', 'cuda', 'cuda:1'."""
    log_interval: int = 20
    val_interval: int = 2000
    """Validate every this many iterations (and at the end); 0 validates only at the end."""
    ckpt_interval: int = 1000
    best_weights_only: bool = True
    """best.pth holds the model weights and config only (half the size of last.pth, which keeps the
    optimizer, schedule and RNG states for --resume); false writes full checkpoints for both."""
    output_dir: str = "runs/default"
    depthwise_weight_decay: bool = True
    """Decay depthwise kernels (separable convs) like the other conv kernels. The reference does
    not (``core/xception.py`` ``xception_arg_scope(regularize_depthwise=False)``,
    ``core/utils.py`` ``split_separable_conv2d``): false in the paper's configs."""
    logits_bias_lr_mult: float = 1.0
    """LR multiplier of the last layer's bias (``classifier.bias``). The reference multiplies the
    gradients of every ``biases`` variable by 2 (``utils/train_utils.py``
    ``get_model_gradient_multipliers``), and the logits conv holds the model's only bias: 2.0 in the
    paper's configs."""
    accumulate: int = 1
    """Micro-batches per optimizer step: each of ``batch_size`` images, their gradients summed, so
    the effective batch is ``batch_size * accumulate`` (the paper's 16 as 2 x 8 on a smaller GPU).
    The LR schedule and ``max_iters`` count optimizer steps. BatchNorm still normalises each
    micro-batch on its own (docs/training.md)."""
    loss: LossConfig = field(default_factory=LossConfig)
    """The training loss; the default is the paper's plain softmax cross-entropy."""


@dataclass
class EvalConfig:
    """Inference settings used by periodic validation and scripts/eval.py."""

    output_stride: Optional[int] = None
    """Evaluate at this output stride (None: the model's training output stride)."""
    scales: list[float] = field(default_factory=lambda: [1.0])
    flip: bool = False
    batch_size: int = 1
    pad_to: Optional[Union[int, list[int]]] = None
    """Pad images (bottom/right, mean pixel) to this size, one int or [height, width], before
    inference and crop back, as the reference evaluation does with eval_crop_size 513 (VOC) or
    [1025, 2049] (Cityscapes); None runs on the image as it is."""
    trimap: bool = False
    trimap_widths: list[int] = field(default_factory=lambda: list(range(2, 41, 2)))
    """Band widths in pixels (the paper's Fig. 5a spans 0-40); a band of width 0 holds no labelled
    pixel (it is the void itself), so the default starts at 2."""
    trimap_band: Optional[str] = None
    """What the trimap bands surround: 'void' (the void pixels, VOC's band around every object)
    or 'boundary' (every change of label value); None: 'boundary' for the cityscapes and ade20k
    layouts (their labels have no void band), 'void' for the others."""
    mode: str = "whole"
    """'whole' (each image in one forward pass, as the reference) or 'slide' (windows of
    crop_size, stride apart, their logits averaged: less memory on large images)."""
    crop_size: Optional[Union[int, list[int]]] = None
    """'slide': the window, [height, width] or one side for a square (e.g. [769, 769])."""
    stride: Optional[Union[int, list[int]]] = None
    """'slide': the window step, [height, width] or one value; None: 2/3 of crop_size."""
    precision: str = "fp32"
    """Inference precision of eval and predict: 'fp32' (exact) or 'bf16' (weights rounded to bfloat16
    once when the model is prepared; falls back to fp32 with a warning where the device has no native
    bf16; docs/deployment.md). Periodic validation during training uses it too."""


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)


class ConfigError(ValueError):
    """A config file or override names an unknown key or holds a value of the wrong type."""


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader with YAML 1.2 floats (``1e-3``, ``5e4``, ``.5e3``) and booleans (``true``, ``false``)."""


# YAML 1.1 (PyYAML) needs a dot and a signed exponent ("1.0e-3"); YAML 1.2 and Python do not. The
# extra resolver is tried after the built-in ones, so ints, 1.1 floats and dates are unchanged.
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."),
)
# YAML 1.1 also reads on/off/yes/no (and y/n in some parsers) as booleans: a config option whose
# values are words ("channels_last: off") would arrive as False. YAML 1.2's core schema has only true/false.
_BOOL = "tag:yaml.org,2002:bool"
_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != _BOOL]
    for first, resolvers in _Loader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(_BOOL, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))


def load_yaml(text: str, source: str = "<string>") -> Any:
    """Parse YAML with :class:`_Loader`; a syntax error is a one-line :class:`ConfigError`."""
    try:
        return yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f", line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ConfigError(f"{source}{where}: YAML syntax error: {problem}") from None


def _check_value(value: Any, tp: Any, where: str) -> Any:
    """Check ``value`` against the annotation ``tp``; returns the value (ints widened to float)."""
    origin = typing.get_origin(tp)
    if origin in (Union, getattr(types, "UnionType", Union)):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _check_value(value, arg, where)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0])
    if origin is list:
        (item_tp,) = typing.get_args(tp)
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        return [_check_value(v, item_tp, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        key_tp, value_tp = typing.get_args(tp)
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return {
            _check_value(k, key_tp, f"{where} key"): _check_value(v, value_tp, f"{where}.{k}")
            for k, v in value.items()
        }
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp is int and isinstance(value, bool):
        raise ConfigError(f"{where}: expected int, got {value!r}")
    if tp is int and isinstance(value, float):
        if not value.is_integer():
            raise ConfigError(f"{where}: expected int, got {value!r}")
        return int(value)  # "train.max_iters=3e4"
    if tp in (int, float, str, bool) and not isinstance(value, tp):
        raise ConfigError(f"{where}: expected {tp.__name__}, got {value!r}")
    if isinstance(value, str) and value.startswith("~"):
        return os.path.expanduser(value)  # a path as people type it: data.root=~/data/voc
    return value


def _merge(obj: Any, values: dict, where: str) -> None:
    """Set the fields of dataclass ``obj`` from the nested dict ``values``, strictly."""
    if not isinstance(values, dict):
        raise ConfigError(f"{where or 'config'}: expected a mapping, got {values!r}")
    hints = typing.get_type_hints(type(obj))
    names = [f.name for f in dataclasses.fields(obj)]
    values = _renamed_keys(type(obj), values, where)
    for key, value in values.items():
        path = f"{where}.{key}" if where else str(key)
        if key not in names:
            close = difflib.get_close_matches(str(key), names, n=1, cutoff=0.6)
            hint = f"did you mean '{where + '.' if where else ''}{close[0]}'? " if close else ""
            raise ConfigError(f"unknown config key '{path}'; {hint}valid keys here: {', '.join(names)}")
        current = getattr(obj, key)
        if dataclasses.is_dataclass(current):
            _merge(current, value, path)
        else:
            setattr(obj, key, _check_value(value, hints[key], path))


_NOTED: set[str] = set()


def _renamed_keys(cls: type, values: dict, where: str) -> dict:
    """``values`` with the keys an earlier release used (``cls.renamed``) moved to their new place
    (``data.mask_colors`` -> ``data.rgb.colors``), each noted once per process (a FutureWarning).

    Raises:
        ConfigError: the old and the new key are both given.
    """
    renamed = getattr(cls, "renamed", {})
    if not isinstance(values, dict) or not any(key in renamed for key in values):
        return values
    moved = {k: (dict(v) if isinstance(v, dict) else v) for k, v in values.items() if k not in renamed}
    for key in (k for k in values if k in renamed):
        old_path, new_path = (f"{where}.{k}" if where else k for k in (key, renamed[key]))
        *parents, leaf = renamed[key].split(".")
        node = moved
        for part in parents:
            node = node.setdefault(part, {})
        if leaf in node:
            raise ConfigError(
                f"config key '{old_path}' is the old name of '{new_path}': give only '{new_path}'"
            )
        node[leaf] = values[key]
        if old_path not in _NOTED:
            _NOTED.add(old_path)
            warnings.warn(
                f"config key '{old_path}' is now '{new_path}' (the old name still works)",
                FutureWarning,
                stacklevel=2,
            )
    return moved


def config_from_dict(values: dict, base: Optional[Config] = None) -> Config:
    """A :class:`Config` from nested dicts; unknown keys raise :class:`ConfigError`."""
    cfg = copy.deepcopy(base) if base is not None else Config()
    _merge(cfg, values or {}, "")
    return cfg


def parse_override(text: str) -> dict:
    """``'train.max_iters=100'`` -> ``{'train': {'max_iters': 100}}`` (value parsed as YAML)."""
    if "=" not in text:
        raise ConfigError(f"override '{text}': expected key=value, e.g. train.max_iters=100")
    key, raw = text.split("=", 1)
    value = load_yaml(raw, f"override '{text}'") if raw.strip() else ""
    nested: dict = {}
    node = nested
    parts = key.strip().split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value
    return nested


def shipped_configs_dir() -> Optional[Path]:
    """The folder of the configs that ship with the package (the repository's top-level ``configs/``).

    Installed from a wheel they lie in ``<site-packages>/deeplabv3plus/configs/`` (pyproject.toml maps
    the package ``deeplabv3plus.configs`` onto ``configs/``); in a checkout (an editable install, or
    the repository on ``sys.path``) they are the top-level ``configs/`` next to ``deeplabv3plus/``.
    None when neither exists.
    """
    package = Path(str(importlib.resources.files(__package__)))
    if (package / "configs").is_dir():
        return package / "configs"
    # A checkout, told apart from an installed copy (whose parent is site-packages) by its pyproject.toml.
    if (package.parent / "configs").is_dir() and (package.parent / "pyproject.toml").is_file():
        return package.parent / "configs"
    return None


def shipped_configs() -> dict[str, Path]:
    """Name (the file's stem, e.g. ``quickstart``) -> path of every shipped config, sorted by name."""
    folder = shipped_configs_dir()
    return {p.stem: p for p in sorted(folder.glob("*.yaml"))} if folder is not None else {}


def find_config(name: Union[str, Path]) -> Path:
    """The config file ``name`` means: a path that exists wins (``~`` expanded, relative to the
    current folder); else a bare name (``quickstart``, ``quickstart.yaml``) or the checkout form
    ``configs/quickstart.yaml`` is looked up among :func:`shipped_configs`.

    Raises:
        ConfigError: neither a file nor a shipped config (the message lists the shipped names).
    """
    path = Path(name).expanduser()
    if path.is_file():
        return path
    shipped = shipped_configs()
    stem = path.name[: -len(".yaml")] if path.name.endswith(".yaml") else path.name
    if len(path.parts) == 1 or path.parent == Path("configs"):
        if stem in shipped:
            return shipped[stem]
    raise ConfigError(
        f"config file '{path}' does not exist and names no shipped config; shipped: "
        f"{', '.join(shipped) or 'none found'} (deeplabv3plus configs describes them)"
    )


def read_config_file(path: Union[str, Path]) -> dict:
    """The nested dict of a YAML config file (not yet checked against the schema).

    Raises:
        ConfigError: the file is missing or unreadable, has a YAML syntax error (with line and
            column), or does not hold a mapping.
    """
    path = find_config(path)
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"cannot read config file '{path}': {e}") from None
    values = load_yaml(text, f"config file '{path}'") or {}
    if not isinstance(values, dict):
        raise ConfigError(f"config file '{path}': expected a mapping at the top level")
    return values


def layer_config(
    base: Config, path: Optional[Union[str, Path]] = None, overrides: Optional[Sequence[str]] = None
) -> Config:
    """``base`` with the keys a YAML file sets on top (only those), then dotted overrides; validated.

    How eval and predict put a user's ``--config`` and ``a.b=c`` on a checkpoint's stored config or a
    model-zoo entry's published one.
    """
    cfg = base
    if path is not None:
        values = read_config_file(path)
        try:
            cfg = config_from_dict(values, base=cfg)
        except ConfigError as e:
            raise ConfigError(f"config file '{path}': {e}") from None
    for text in overrides or []:
        cfg = config_from_dict(parse_override(text), base=cfg)
    validate_config(cfg)
    return cfg


def load_config(path: Optional[Union[str, Path]] = None, overrides: Optional[list[str]] = None) -> Config:
    """Read a YAML config (or the defaults when ``path`` is None) and apply dotted overrides."""
    values: dict = {}
    if path is not None:
        values = read_config_file(path)
    try:
        cfg = config_from_dict(values)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None
    for text in overrides or []:
        _merge(cfg, parse_override(text), "")
    validate_config(cfg)
    return cfg


MAX_CHANNELS = 4096
"""The widest ``model.head_channels`` / ``model.low_level_channels`` accepted: 16x the paper's 256. At
4096 the ASPP alone holds ~0.4 billion weights (three 3x3 convs of 2048 -> 4096 channels and the
5 x 4096 -> 4096 projection), 1.6 GB in fp32 before gradients and optimizer state; a larger value
is a typo (``head_channels=1e9`` would try to allocate terabytes), not a model."""

DEVICE_FORMS = "auto, cpu, cuda, cuda:N (N = 0, 1, ...) or mps"
"""The forms of ``train.device``, as messages list them."""
_DEVICE = re.compile(r"^(?:auto|cpu|mps|cuda(?::[0-9]+)?)$")


def validate_config(cfg: Config) -> None:
    """Cross-field checks a typo would otherwise turn into a silent misconfiguration.

    Every value is checked here, when the config loads, before anything is written or built:
    nonsense (``train.max_iters=0``, ``data.crop_size=0``, ``model.head_channels=1e9``) is a one-line
    :class:`ConfigError` naming the key and what is expected.
    """
    validate_model_config(cfg.model)
    _validate_counts(cfg)
    for key, scales in (("data.scales", cfg.data.scales), ("eval.scales", cfg.eval.scales)):
        if not scales or any(s <= 0 for s in scales):
            raise ConfigError(f"{key}: expected a non-empty list of positive factors, got {scales}")
    if any(w < 0 for w in cfg.eval.trimap_widths):
        raise ConfigError(
            f"eval.trimap_widths: expected band widths >= 0 pixels, got {cfg.eval.trimap_widths}"
        )
    if cfg.eval.output_stride not in (None, 8, 16, 32):
        raise ConfigError(f"eval.output_stride: expected 8, 16, 32 or null, got {cfg.eval.output_stride}")
    if cfg.model.num_classes != cfg.data.num_classes:
        raise ConfigError(
            f"model.num_classes ({cfg.model.num_classes}) differs from data.num_classes ({cfg.data.num_classes})"
        )
    if cfg.data.class_names is not None and len(cfg.data.class_names) != cfg.data.num_classes:
        raise ConfigError(
            f"data.class_names has {len(cfg.data.class_names)} names, expected data.num_classes={cfg.data.num_classes}"
        )
    if len(cfg.data.mean) != 3 or len(cfg.data.std) != 3:
        raise ConfigError("data.mean and data.std: expected 3 values each")
    if cfg.train.amp not in ("auto", "off", "bf16", "fp16"):
        raise ConfigError(f"train.amp: expected auto, off, bf16 or fp16, got {cfg.train.amp!r}")
    if cfg.train.channels_last not in ("auto", "on", "off"):
        raise ConfigError(f"train.channels_last: expected auto, on or off, got {cfg.train.channels_last!r}")
    _validate_layout(cfg.data)
    _validate_eval_window(cfg.eval)
    _validate_recipe_options(cfg)
    _validate_train_loss(cfg)
    _validate_mask_format(cfg.data)
    if cfg.eval.precision not in ("fp32", "bf16"):
        raise ConfigError(f"eval.precision: expected fp32 or bf16, got {cfg.eval.precision!r}")


def validate_model_config(model: ModelConfig) -> None:
    """The checks of the ``model`` section alone: what :func:`validate_config` runs on it, and what a
    portable folder's ``config.json`` architecture goes through before anything is built.

    Raises:
        ConfigError: one line naming the ``model.*`` key and what is expected.
    """
    if model.backbone not in BACKBONES:
        raise ConfigError(
            f"model.backbone: unknown backbone {model.backbone!r}; expected one of {', '.join(BACKBONES)}"
        )
    if model.output_stride not in (8, 16, 32):
        raise ConfigError(f"model.output_stride: expected 8, 16 or 32, got {model.output_stride}")
    if model.num_classes < 1:
        raise ConfigError(f"model.num_classes: expected an integer >= 1, got {model.num_classes}")
    for key in ("head_channels", "low_level_channels"):
        value = getattr(model, key)
        if not 1 <= value <= MAX_CHANNELS:
            raise ConfigError(
                f"model.{key}: expected an integer in 1..{MAX_CHANNELS} (the paper's is "
                f"{getattr(ModelConfig, key)}; above {MAX_CHANNELS} the convs would not fit in memory), got {value}"
            )
    if not 0.0 <= model.aspp_dropout < 1.0:
        raise ConfigError(f"model.aspp_dropout: expected a probability in [0, 1), got {model.aspp_dropout}")
    if model.aspp_rates is not None and any(r < 1 for r in model.aspp_rates):
        raise ConfigError(f"model.aspp_rates: expected atrous rates >= 1, got {model.aspp_rates}")
    m = model.bn_momentum
    if isinstance(m, str) and m not in ("pytorch", "reference"):
        raise ConfigError(f"model.bn_momentum: expected pytorch, reference or a number in (0, 1], got {m!r}")
    if not isinstance(m, str) and not 0.0 < m <= 1.0:
        raise ConfigError(f"model.bn_momentum: expected a number in (0, 1], got {m!r}")
    _validate_backbone_options(model)


def _validate_counts(cfg: Config) -> None:
    """Sizes, counts, rates and intervals: positive where zero means nothing, the device a known form."""
    at_least = (
        ("train.max_iters", cfg.train.max_iters, 1, "optimizer steps"),
        ("train.batch_size", cfg.train.batch_size, 1, "images per step"),
        ("train.log_interval", cfg.train.log_interval, 1, "iterations between log lines"),
        ("train.ckpt_interval", cfg.train.ckpt_interval, 1, "iterations between checkpoints"),
        ("train.val_interval", cfg.train.val_interval, 0, "iterations between validations; 0: at the end"),
        ("data.num_classes", cfg.data.num_classes, 1, "classes"),
        ("data.crop_size", cfg.data.crop_size, 1, "pixels, the training crop's side"),
        ("data.workers", cfg.data.workers, 0, "DataLoader worker processes; 0: load in the main process"),
        ("eval.batch_size", cfg.eval.batch_size, 1, "images per forward pass"),
        ("data.max_image_pixels", cfg.data.max_image_pixels, 1, "the largest image read, in pixels"),
    )
    for key, value, low, meaning in at_least:
        if value < low:
            raise ConfigError(f"{key}: expected an integer >= {low} ({meaning}), got {value}")
    if not cfg.train.lr > 0:
        raise ConfigError(f"train.lr: expected a positive learning rate, got {cfg.train.lr}")
    if not _DEVICE.match(cfg.train.device):
        raise ConfigError(f"train.device: expected {DEVICE_FORMS}, got {cfg.train.device!r}")


def _validate_train_loss(cfg: Config) -> None:
    loss = cfg.train.loss
    if cfg.train.accumulate < 1:
        raise ConfigError(
            f"train.accumulate: expected an integer >= 1 (micro-batches per step), got {cfg.train.accumulate}"
        )
    if loss.name not in LOSSES:
        raise ConfigError(f"train.loss.name: unknown loss {loss.name!r}; expected one of {', '.join(LOSSES)}")
    entry = LOSSES[loss.name]
    weights = loss.class_weights
    if isinstance(weights, str) and weights != "auto":
        raise ConfigError(
            f"train.loss.class_weights: expected null, 'auto' or a list of numbers, got {weights!r}"
        )
    if isinstance(weights, list) and len(weights) != cfg.data.num_classes:
        raise ConfigError(
            f"train.loss.class_weights: expected {cfg.data.num_classes} weights (data.num_classes), got {len(weights)}"
        )
    if isinstance(weights, list) and any(not w >= 0 for w in weights):
        raise ConfigError(f"train.loss.class_weights: expected non-negative numbers, got {weights}")
    if weights is not None and not entry.class_weights:
        raise ConfigError(f"train.loss.class_weights: not used by {loss.name}; set it to null")
    _check_options(
        loss, "train.loss", {e.name: e.name for e in LOSSES.values() if e.options}, loss.name, "name"
    )


def _check_options(section: Any, where: str, owners: dict[str, str], chosen: str, selector: str) -> None:
    """Run the ``check()`` of each option group of ``section`` (``train.loss.ohem``, ``data.rgb``) and
    refuse a group set away from its defaults when ``chosen`` is not its owner: an option the chosen
    loss or format would ignore is an error, not a silent no-op.

    Args:
        section: the dataclass holding the groups (``cfg.train.loss``, ``cfg.data``).
        where: its dotted key, for messages.
        owners: group field -> the value of ``selector`` that reads it.
        chosen: the value of ``selector`` in the config.
        selector: the key that chooses (``name``, ``mask_format``).
    """
    for group, owner in owners.items():
        options = getattr(section, group)
        defaults = type(options)()
        for f in dataclasses.fields(options):
            if owner != chosen and getattr(options, f.name) != getattr(defaults, f.name):
                raise ConfigError(
                    f"{where}.{group}.{f.name}: used with {where}.{selector}={owner} only (it is {chosen!r})"
                )
        check = getattr(options, "check", None)
        if check is not None and owner == chosen:
            try:
                check()
            except ValueError as e:
                raise ConfigError(f"{where}.{group}.{e}") from None


def _validate_backbone_options(model: ModelConfig) -> None:
    """A family's own keys (``model.resnet_variant``) keep their defaults for the other families."""
    family = BACKBONES[model.backbone].family
    own = BACKBONE_FAMILIES[family]
    if own.check is not None:
        try:
            own.check({key: getattr(model, key) for key in own.options})
        except ValueError as e:
            raise ConfigError(f"model.{e}") from None
    for other in BACKBONE_FAMILIES.values():
        for key, default in other.options.items():
            if other.name != family and getattr(model, key) != default:
                raise ConfigError(
                    f"model.{key}={getattr(model, key)!r} applies to {other.name} backbones only, "
                    f"not {model.backbone!r}"
                )


def _validate_layout(data: DataConfig) -> None:
    if data.layout not in LAYOUTS:
        raise ConfigError(
            f"data.layout: unknown layout {data.layout!r}; expected one of {', '.join(LAYOUTS)}"
        )
    layout = LAYOUTS[data.layout]
    conventions = [c.name for c in layout.conventions]
    if data.label_convention is not None and data.label_convention not in conventions:
        raise ConfigError(
            f"data.label_convention: {data.label_convention!r} does not apply to layout "
            f"{data.layout!r}; expected "
            + (f"one of {', '.join(conventions)} or null" if conventions else "null")
        )
    try:
        data.synthetic.check()
    except ValueError as e:
        raise ConfigError(f"data.synthetic.{e}") from None


def _validate_mask_format(data: DataConfig) -> None:
    fmt = data.mask_format
    if fmt not in MASK_FORMATS:
        raise ConfigError(
            f"data.mask_format: unknown format {fmt!r}; expected one of {', '.join(MASK_FORMATS)}"
        )
    entry = MASK_FORMATS[fmt]
    if entry.layouts is not None and data.layout not in entry.layouts:
        raise ConfigError(
            f"data.mask_format={fmt!r} is read by the {', '.join(repr(n) for n in entry.layouts)} layout only, "
            f"not {data.layout!r}"
        )
    for key in entry.required:
        if getattr(getattr(data, entry.options), key) is None:
            raise ConfigError(f"data.mask_format={fmt} needs data.{entry.options}.{key} (docs/own_data.md)")
    if entry.num_classes is not None and data.num_classes != entry.num_classes:
        raise ConfigError(
            f"data.mask_format={fmt}: expected data.num_classes={entry.num_classes}, got {data.num_classes}"
        )
    _check_options(
        data, "data", {e.options: e.name for e in MASK_FORMATS.values() if e.options}, fmt, "mask_format"
    )
    if fmt == "coco":
        try:
            data.coco.check_classes(data.num_classes, data.ignore_index)
        except ValueError as e:
            raise ConfigError(f"data.coco.{e}") from None


def window_pair(value: Union[int, list[int]], where: str) -> tuple[int, int]:
    """``eval.crop_size`` / ``eval.stride`` as (height, width): one int is a square."""
    pair = [value, value] if isinstance(value, int) else list(value)
    if len(pair) != 2 or any(not isinstance(v, int) or isinstance(v, bool) or v < 1 for v in pair):
        raise ConfigError(f"{where}: expected a positive int or [height, width], got {value!r}")
    return pair[0], pair[1]


def trimap_band(cfg: Config) -> str:
    """``eval.trimap_band``, or its default for ``data.layout``."""
    if cfg.eval.trimap_band is not None:
        return cfg.eval.trimap_band
    return LAYOUTS[cfg.data.layout].trimap_band


def _validate_eval_window(ev: EvalConfig) -> None:
    if ev.trimap_band not in (None, "void", "boundary"):
        raise ConfigError(f"eval.trimap_band: expected void, boundary or null, got {ev.trimap_band!r}")
    if ev.mode not in ("whole", "slide"):
        raise ConfigError(f"eval.mode: expected whole or slide, got {ev.mode!r}")
    if ev.mode == "slide" and ev.crop_size is None:
        raise ConfigError("eval.mode=slide needs eval.crop_size (the window, e.g. [769, 769])")
    if ev.pad_to is not None:
        window_pair(ev.pad_to, "eval.pad_to")
    if ev.crop_size is not None:
        crop = window_pair(ev.crop_size, "eval.crop_size")
        if ev.stride is not None:
            stride = window_pair(ev.stride, "eval.stride")
            if stride[0] > crop[0] or stride[1] > crop[1]:
                raise ConfigError(
                    f"eval.stride {list(stride)} is larger than eval.crop_size {list(crop)}: "
                    "pixels between windows would get no prediction"
                )


def _validate_recipe_options(cfg: Config) -> None:
    """The resize-to-range keys and the LR multiplier of the logits bias."""
    d = cfg.data
    for key in ("min_resize_value", "max_resize_value", "resize_factor"):
        value = getattr(d, key)
        if value is not None and value < 1:
            raise ConfigError(f"data.{key}: expected a positive number of pixels or null, got {value}")
    if d.min_resize_value is None and (d.max_resize_value is not None or d.resize_factor is not None):
        # The reference resizes only with a min size (resize_to_range's min_size is required).
        raise ConfigError("data.max_resize_value / data.resize_factor need data.min_resize_value (e.g. 513)")
    if cfg.train.logits_bias_lr_mult <= 0:
        raise ConfigError(
            f"train.logits_bias_lr_mult: expected a positive factor, got {cfg.train.logits_bias_lr_mult}"
        )


def config_to_dict(cfg: Config) -> dict:
    """Plain nested dict of a config (what is written next to a run and into checkpoints)."""
    return dataclasses.asdict(cfg)


def save_config(cfg: Config, path: Union[str, Path]) -> None:
    with open(path, "w") as f:
        yaml.safe_dump(config_to_dict(cfg), f, sort_keys=False)
