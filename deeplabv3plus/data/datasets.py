"""Segmentation datasets for the layouts of ``data.layout``, with loud, file-naming errors.

``build_dataset(cfg, split, train)`` is the one entry point of the train and eval loops. Layouts:

- ``voc``: ``root/VOCdevkit/VOC2012`` (or ``root`` being ``VOC2012`` / containing ``VOC2012``),
  lists in ``ImageSets/Segmentation/<split>.txt``, labels in ``SegmentationClass/`` (falling back to
  ``SegmentationClassAug/`` per file, so ``split=train_aug`` works after ``scripts/prepare_voc.py``).
- ``voc_aug``: the common pre-converted form, ``JPEGImages/`` + ``SegmentationClassAug/`` and a list
  ``<split>.txt`` in ``ImageSets/Segmentation/``, ``ImageSets/SegmentationAug/``, or at the root; lines
  are either ``name`` or ``/JPEGImages/name.jpg /SegmentationClassAug/name.png`` pairs.
- ``folders``: ``root/<image_dir>/<stem><image_ext>``, ``root/<mask_dir>/<stem>.png``, lists
  ``root/<split>.txt`` (one stem per line); the user's own ``num_classes``/``class_names``/``ignore_index``.
- ``synthetic``: generated into ``root`` by :func:`make_synthetic_voc` if absent (at the default root
  ``data/synthetic``, or anywhere with ``data.generate: true``), then read as ``voc``.
- ``cityscapes``: ``leftImg8bit/<split>/<city>/`` + ``gtFine/<split>/<city>/``, splits by folder
  (:mod:`deeplabv3plus.data.cityscapes`).
- ``ade20k``: SceneParsing ``ADEChallengeData2016/images|annotations/<training|validation>/``
  (:mod:`deeplabv3plus.data.ade20k`).

Labels are read with PIL as raw class indices (palette indices of "P" PNGs, values of "L" PNGs), never
converted to RGB. Every sample is validated when loaded: a label value outside ``0..C-1`` and
``ignore_index``, an image/label size mismatch, or an unreadable file raises :class:`DatasetError`
naming the file; missing files, missing or empty split lists raise when the dataset is built.
:func:`check_splits` runs all of that (and decodes each split's first pair) before a job starts.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from ..config import ConfigError, DataConfig, load_yaml
from .ade20k import ade20k_samples
from .ade20k_meta import ade20k_class_names
from .cityscapes import cityscapes_samples
from .cityscapes_meta import CITYSCAPES_CLASSES
from .label_formats import (
    COCO_TO_VOC,
    CocoFile,
    coco_semantic_mask,
    decode_color_mask,
    parse_color_table,
    read_binary_mask,
    read_coco,
    read_color_mask,
)
from .synthetic import (
    SYNTHETIC_NUM_TRAIN,
    SYNTHETIC_NUM_VAL,
    check_kind,
    is_synthetic_root,
    make_synthetic_voc,
    read_synthetic_meta,
    stale_synthetic_message,
    synthetic_class_names,
)
from .transforms import eval_transform, train_transform
from .types import DatasetError, Sample
from .voc_meta import VOC_CLASSES

Transform = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


# ---------------------------------------------------------------------------------------------------
# Reading and validating files.


def read_image(path: Path) -> torch.Tensor:
    """Decode an image file to RGB with PIL.

    PIL rather than ``torchvision.io.decode_image``: torchvision 0.29 deprecates its image codecs in
    favour of TorchCodec (a warning on every call, removal announced); PIL decodes JPEGs with the same
    libjpeg-turbo, reads every format, and is already a dependency.

    Returns:
        (3, H, W) uint8 tensor.
    """
    try:
        with Image.open(path) as im:
            array = np.asarray(im.convert("RGB"))
    except Exception as e:
        raise DatasetError(f"cannot read image '{path}': {e}") from None
    return torch.from_numpy(array.copy()).permute(2, 0, 1)


def read_label(path: Path) -> torch.Tensor:
    """Read a label PNG as class indices (palette indices for "P" images, grey values for "L").

    Returns:
        (H, W) uint8 tensor.
    """
    try:
        with Image.open(path) as im:
            if im.mode in ("RGB", "RGBA"):
                raise DatasetError(
                    f"label '{path}' is a {im.mode} colour image; expected class indices "
                    "(a palette 'P' or greyscale 'L' PNG whose pixel values are the classes)"
                )
            array = np.array(im)
    except DatasetError:
        raise
    except Exception as e:
        raise DatasetError(f"cannot read label '{path}': {e}") from None
    if array.ndim != 2:
        raise DatasetError(f"label '{path}' has shape {array.shape}; expected a single-channel image")
    if array.dtype != np.uint8:
        if array.size and (array.min() < 0 or array.max() > 255):
            raise DatasetError(
                f"label '{path}' has values outside 0..255 ({array.dtype}); expected 8-bit labels"
            )
        array = array.astype(np.uint8)
    return torch.from_numpy(array)


def check_label_values(label: torch.Tensor, path: Path, num_classes: int, ignore_index: int) -> None:
    """Raise :class:`DatasetError` if ``label`` (uint8 (H, W)) holds a value outside ``0..C-1`` and ignore."""
    counts = torch.bincount(label.flatten().long(), minlength=256)
    present = torch.nonzero(counts).flatten().tolist()
    bad = [v for v in present if v >= num_classes and v != ignore_index]
    if bad:
        raise DatasetError(
            f"label '{path}' has values {bad} outside the classes 0..{num_classes - 1} "
            f"and ignore_index {ignore_index} (check data.num_classes / data.ignore_index)"
        )


def read_sample_label(sample: Sample) -> torch.Tensor:
    """The label of ``sample`` as class indices, (H, W) uint8 (not yet value-checked): an index PNG,
    or what the sample's ``label_reader`` decodes (colour, binary and COCO masks), through the
    layout's ``label_map`` if it has one."""
    if sample.label_reader is None:
        label = read_label(sample.label)
    else:
        label = torch.from_numpy(np.ascontiguousarray(sample.label_reader(sample.label)))
    if sample.label_map is not None:
        label = sample.label_map.apply(label, sample.label)
    return label


def load_pair(sample: Sample, *, num_classes: int, ignore_index: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Decode and validate one pair: image (3, H, W) uint8, label (H, W) uint8 class indices.

    Raises:
        DatasetError: naming the file: unreadable, a colour (RGB) label, a raw value outside the
            layout's convention, image and label of different sizes, or a class outside
            ``0..num_classes-1`` and ``ignore_index``.
    """
    image = read_image(sample.image)
    label = read_sample_label(sample)
    if tuple(image.shape[1:]) != tuple(label.shape):
        raise DatasetError(
            f"image '{sample.image}' is {image.shape[2]}x{image.shape[1]} but label '{sample.label}' "
            f"is {label.shape[1]}x{label.shape[0]} (width x height)"
        )
    check_label_values(label, sample.label, num_classes, ignore_index)
    return image, label


# ---------------------------------------------------------------------------------------------------
# The dataset.


class SegmentationDataset(Dataset):
    """Image/label pairs, validated on load and passed through a joint transform.

    Args:
        samples: The pairs of the split, in list order.
        num_classes: Valid label values are ``0..num_classes-1`` and ``ignore_index``.
        ignore_index: Label value of void pixels.
        transform: ``(image (3,H,W) uint8, label (H,W) uint8) -> (image, label)``; None returns the raw
            tensors (image uint8, label int64).
        class_names: One name per class.
        list_file: The split list the samples came from (for messages).
    """

    def __init__(
        self,
        samples: Sequence[Sample],
        *,
        num_classes: int,
        ignore_index: int = 255,
        transform: Optional[Transform] = None,
        class_names: Optional[Sequence[str]] = None,
        list_file: Optional[Path] = None,
    ) -> None:
        self.samples = list(samples)
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.transform = transform
        self.class_names = list(class_names) if class_names is not None else default_class_names(num_classes)
        self.list_file = list_file

    @property
    def names(self) -> list[str]:
        """Image names (stems) in split order: what :func:`check_no_leakage` compares."""
        return [s.name for s in self.samples]

    def __len__(self) -> int:
        return len(self.samples)

    def load_label(self, index: int) -> torch.Tensor:
        """The label of sample ``index`` as class indices, (H, W) uint8 (not yet value-checked)."""
        return read_sample_label(self.samples[index])

    def load(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The validated raw pair: image (3, H, W) uint8, label (H, W) uint8."""
        return load_pair(self.samples[index], num_classes=self.num_classes, ignore_index=self.ignore_index)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns image (3, h, w) float32 normalised and label (h, w) int64 (after the transform)."""
        image, label = self.load(index)
        if self.transform is None:
            return image, label.long()
        return self.transform(image, label)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({len(self)} samples from '{self.list_file}', {self.num_classes} classes)"
        )


def default_class_names(num_classes: int) -> list[str]:
    """VOC names for 21 classes (or the first ``num_classes`` of them), else ``class_0, class_1, ...``."""
    if num_classes <= len(VOC_CLASSES):
        return list(VOC_CLASSES[:num_classes])
    return [f"class_{i}" for i in range(num_classes)]


def eval_collate(batch: list[tuple[torch.Tensor, ...]]) -> tuple[list[torch.Tensor], ...]:
    """Collate for evaluation batches > 1: full images differ in size, so keep lists.

    Training crops all have the crop size, so the default collate stacks them; evaluation with
    ``batch_size=1`` can use either.

    Returns:
        images: list of (3, H_i, W_i) float32; labels: list of (H_i, W_i) int64; and a third list
        when the samples carry a third field (instance maps).
    """
    return tuple(list(field) for field in zip(*batch))


# ---------------------------------------------------------------------------------------------------
# Split lists and layouts.


def read_split_list(path: Path) -> list[str]:
    """The non-empty, non-comment lines of a split list, stripped.

    Raises:
        DatasetError: if the list has no entries.
    """
    try:
        lines = path.read_text().splitlines()
    except OSError as e:
        raise DatasetError(f"cannot read split list '{path}': {e}") from None
    entries = [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
    if not entries:
        raise DatasetError(f"split list '{path}' is empty")
    return entries


def _find_list(candidates: Iterable[Path], split: str) -> Path:
    candidates = list(dict.fromkeys(candidates))
    for path in candidates:
        if path.is_file():
            return path
    available = sorted({p.stem for c in candidates if c.parent.is_dir() for p in c.parent.glob("*.txt")})
    raise DatasetError(
        f"split '{split}': no list file; looked for {', '.join(repr(str(c)) for c in candidates)}"
        + (f" (lists found: {', '.join(available)})" if available else "")
    )


def find_voc_dir(root: Path) -> Path:
    """The ``VOC2012`` folder (the one holding ``JPEGImages/``) at or under ``root``."""
    candidates = [root / "VOCdevkit" / "VOC2012", root / "VOC2012", root]
    for path in candidates:
        if (path / "JPEGImages").is_dir():
            return path
    raise DatasetError(
        f"no VOC 2012 folder under '{root}': looked for JPEGImages/ in "
        f"{', '.join(repr(str(c)) for c in candidates)} (scripts/prepare_voc.py builds it)"
    )


def _first_existing(*paths: Path) -> Path:
    for path in paths:
        if path.is_file():
            return path
    return paths[0]  # reported as missing by _check_exist


def _voc_like_samples(root: Path, split: str, aug_first: bool) -> tuple[list[Sample], Path]:
    voc = find_voc_dir(root)
    list_file = _find_list(
        [
            voc / "ImageSets" / "Segmentation" / f"{split}.txt",
            voc / "ImageSets" / "SegmentationAug" / f"{split}.txt",
            voc / f"{split}.txt",
            root / f"{split}.txt",
        ],
        split,
    )
    label_dirs = [voc / "SegmentationClass", voc / "SegmentationClassAug"]
    if aug_first:
        label_dirs.reverse()
    samples = []
    for line in read_split_list(list_file):
        parts = line.split()
        if len(parts) == 2:  # "/JPEGImages/x.jpg /SegmentationClassAug/x.png", relative to the VOC folder
            image, label = (voc / p.lstrip("/") for p in parts)
            samples.append(Sample(Path(parts[0]).stem, image, label))
        elif len(parts) == 1:
            name = parts[0]
            labels = [d / f"{name}.png" for d in label_dirs]
            samples.append(Sample(name, voc / "JPEGImages" / f"{name}.jpg", _first_existing(*labels)))
        else:
            raise DatasetError(
                f"split list '{list_file}': cannot parse line {line!r}; expected 'name' or two paths"
            )
    return samples, list_file


def _voc_samples(cfg: DataConfig, split: str) -> tuple[list[Sample], Path]:
    return _voc_like_samples(Path(cfg.root), split, aug_first=False)


def _voc_aug_samples(cfg: DataConfig, split: str) -> tuple[list[Sample], Path]:
    return _voc_like_samples(Path(cfg.root), split, aug_first=True)


def _folder_samples(cfg: DataConfig, split: str) -> tuple[list[Sample], Path]:
    root = Path(cfg.root)
    list_file = _find_list([root / f"{split}.txt"], split)
    image_dir, mask_dir = root / cfg.image_dir, root / cfg.mask_dir
    stems = read_split_list(list_file)
    if cfg.mask_format == "coco":
        return _coco_samples(cfg, split, stems, list_file), list_file
    # "index" keeps reader None: read_label, exactly as before data.mask_format existed.
    reader = None
    if cfg.mask_format == "rgb":
        reader = _color_reader(cfg)
    elif cfg.mask_format == "binary":
        reader = read_binary_mask
    samples = [
        Sample(stem, image_dir / f"{stem}{cfg.image_ext}", mask_dir / f"{stem}.png", label_reader=reader)
        for stem in stems
    ]
    return samples, list_file


# ---------------------------------------------------------------------------------------------------
# data.mask_format: colour masks and COCO JSON in the folders layout (docs/own_data.md).


def _user_path(text: str) -> Path:
    """A path from the config as the user typed it: ``~`` expanded, relative to the working directory."""
    return Path(text).expanduser()


def mask_color_table(cfg: DataConfig) -> tuple[list[str], list[list[int]]]:
    """``data.mask_colors`` (inline, or read from its YAML file) as class names and [r, g, b] colours.

    Raises:
        DatasetError: an unreadable file, a malformed table, or not ``data.num_classes`` colours.
    """
    table: Any = cfg.mask_colors
    source = "data.mask_colors"
    if isinstance(table, str):
        path = _user_path(table)
        source = f"data.mask_colors file '{path}'"
        try:
            table = load_yaml(path.read_text(), source)
        except ConfigError as e:
            raise DatasetError(str(e)) from None
        except OSError as e:
            raise DatasetError(f"{source}: cannot read it ({e.strerror or e})") from None
        if isinstance(table, dict) and set(table) == {"classes"}:
            table = table["classes"]  # a YAML file of the form "classes: [{name, color}, ...]"
    try:
        names, colors = parse_color_table(table)
    except ValueError as e:
        raise DatasetError(f"{source}: {e}") from None
    if len(colors) != cfg.num_classes:
        raise DatasetError(
            f"{source} holds {len(colors)} colours; expected one per class, data.num_classes={cfg.num_classes}"
        )
    return names, colors.tolist()


def _color_reader(cfg: DataConfig) -> Callable[[Path], np.ndarray]:
    _, colors = mask_color_table(cfg)
    ignore = cfg.mask_ignore_colors or []
    try:  # a bad ignore table is reported now, not at the first label
        decode_color_mask(np.zeros((0, 0, 3), np.uint8), colors, ignore_colors=ignore)
    except ValueError as e:
        raise DatasetError(f"data.mask_{e}") from None
    return functools.partial(read_color_mask, colors=colors, ignore_colors=ignore)


def coco_mapping(cfg: DataConfig) -> tuple[Mapping[Any, int], str]:
    """``data.coco_mapping`` as a category -> class table and ``data.coco_unmapped`` resolved."""
    if cfg.coco_mapping == "voc":
        return COCO_TO_VOC, cfg.coco_unmapped or "background"
    return dict(cfg.coco_mapping or {}), cfg.coco_unmapped or "error"


def coco_file_for_split(cfg: DataConfig, split: str) -> Path:
    """The COCO JSON of ``split`` named by ``data.coco_annotations`` (one file, or {split: file})."""
    annotations = cfg.coco_annotations
    if isinstance(annotations, dict):
        if split not in annotations:
            raise DatasetError(
                f"data.coco_annotations names no file for split '{split}' (it has {', '.join(annotations) or 'none'})"
            )
        annotations = annotations[split]
    return _user_path(str(annotations))


def _coco_label(path: Path, *, coco: CocoFile, file_name: str, mapping: Mapping[Any, int], unmapped: str):
    return coco_semantic_mask(coco, file_name, mapping, unmapped=unmapped)


def _coco_samples(cfg: DataConfig, split: str, stems: list[str], list_file: Path) -> list[Sample]:
    path = coco_file_for_split(cfg, split)
    if not path.is_file():
        raise DatasetError(f"data.coco_annotations: COCO file '{path}' for split '{split}' does not exist")
    coco = read_coco(path)
    by_stem: dict[str, str] = {}
    for file_name in coco.images:
        stem = Path(file_name).stem
        if stem in by_stem:
            raise DatasetError(
                f"COCO file '{path}': two images have the stem '{stem}' ({by_stem[stem]}, {file_name})"
            )
        by_stem[stem] = file_name
    missing = [stem for stem in stems if stem not in by_stem]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise DatasetError(f"COCO file '{path}' has no image '{missing[0]}'{more}, listed in '{list_file}'")
    mapping, unmapped = coco_mapping(cfg)
    image_dir = Path(cfg.root) / cfg.image_dir
    return [
        Sample(
            stem, image_dir / f"{stem}{cfg.image_ext}", path,
            label_reader=functools.partial(
                _coco_label, coco=coco, file_name=by_stem[stem], mapping=mapping, unmapped=unmapped
            ),
        )
        for stem in stems
    ]  # fmt: skip


def _synthetic_samples(cfg: DataConfig, split: str) -> tuple[list[Sample], Path]:
    ensure_synthetic(cfg)
    return _voc_like_samples(Path(cfg.root), split, aug_first=False)


_LAYOUTS: dict[str, Callable[[DataConfig, str], tuple[list[Sample], Path]]] = {
    "voc": _voc_samples,
    "voc_aug": _voc_aug_samples,
    "folders": _folder_samples,
    "synthetic": _synthetic_samples,
    "cityscapes": cityscapes_samples,
    "ade20k": ade20k_samples,
}


def _is_default_root(root: Path) -> bool:
    """Whether ``root`` is the default ``data.root`` (``data/synthetic``, the quickstart's), relative
    to the current folder like every relative path of a config."""
    return root.expanduser().resolve() == Path(DataConfig().root).resolve()


def ensure_synthetic(cfg: DataConfig) -> Path:
    """Generate the synthetic dataset into ``cfg.root`` unless a VOC layout is already there.

    Generation happens only at the default root (``data/synthetic``: the quickstart works as
    written) or with ``cfg.generate``; any other root that holds no dataset is an error.

    ``cfg.synthetic_size`` > 0 sets the total image count (80% train, 20% val); the class count is
    ``cfg.num_classes`` (2..21), the generator ``cfg.synthetic_kind``. A generated set of another
    kind or generator version (e.g. written by an older release) is an error, never reused.
    Returns the VOC2012 folder.
    """
    root = Path(cfg.root)
    try:
        check_kind(cfg.synthetic_kind)
    except ValueError as e:
        raise DatasetError(f"data.synthetic_kind: {e}") from None
    if is_synthetic_root(root):
        meta = read_synthetic_meta(root)
        stale = stale_synthetic_message(root, cfg.synthetic_kind)
        if stale:
            raise DatasetError(stale)
        if meta.get("num_classes") != cfg.num_classes:
            raise DatasetError(
                f"synthetic dataset '{root}' was generated with num_classes={meta.get('num_classes')} but "
                f"data.num_classes={cfg.num_classes}; set data.num_classes={meta.get('num_classes')} or delete it"
            )
        return find_voc_dir(root)
    if (root / "VOCdevkit").is_dir():
        return find_voc_dir(root)  # a VOC tree put there by hand: read it as is
    if not (cfg.generate or _is_default_root(root)):
        # A mistyped data.root would otherwise silently get a fresh dataset (and a run trained on it).
        raise DatasetError(
            f"data.root '{root}' holds no dataset (data.layout=synthetic); fix data.root, or set "
            "data.generate=true to generate one there"
        )
    if cfg.synthetic_size > 0:
        num_train = max(1, round(0.8 * cfg.synthetic_size))
        num_val = max(1, cfg.synthetic_size - num_train)
    else:
        num_train, num_val = SYNTHETIC_NUM_TRAIN, SYNTHETIC_NUM_VAL
    return make_synthetic_voc(
        root, num_train=num_train, num_val=num_val, num_classes=cfg.num_classes, kind=cfg.synthetic_kind
    )


def _check_exist(samples: Sequence[Sample], list_file: Path) -> None:
    missing = [p for s in samples for p in (s.image, s.label) if not p.is_file()]
    if missing:
        more = f" (and {len(missing) - 1} more files)" if len(missing) > 1 else ""
        raise DatasetError(f"missing file '{missing[0]}'{more}, listed in '{list_file}'")


def split_samples(cfg: DataConfig, split: str) -> tuple[list[Sample], Path]:
    """The samples of ``split`` for ``cfg.layout`` and the list file they came from.

    Raises:
        DatasetError: unknown layout, missing or empty list, or a listed file that does not exist.
    """
    if cfg.layout not in _LAYOUTS:
        raise DatasetError(
            f"data.layout: unknown layout {cfg.layout!r}; expected one of {', '.join(_LAYOUTS)}"
        )
    samples, list_file = _LAYOUTS[cfg.layout](cfg, split)
    _check_exist(samples, list_file)
    return samples, list_file


def check_splits(cfg: DataConfig, splits: Iterable[str]) -> dict[str, int]:
    """Check that the ``splits`` of ``cfg`` can be read, before a job spends anything on them.

    What a job would otherwise find only after building its model, fetching weights or writing
    files: for each split, its list file exists and is not empty, every listed image and label
    exists, and the first pair decodes into a valid pair (a class-index label, not an RGB colour
    mask; classes in ``0..C-1`` or ``ignore_index``; the image's size). The other pairs are
    checked as they are loaded. The ``synthetic`` layout generates its dataset here where it may
    (:func:`ensure_synthetic`).

    Returns:
        The number of samples of each split.

    Raises:
        DatasetError: naming the list or file and what was expected.
    """
    counts = {}
    for split in dict.fromkeys(splits):
        samples, list_file = split_samples(cfg, split)
        if not samples:
            raise DatasetError(f"split '{split}': no images in '{list_file}'")
        load_pair(samples[0], num_classes=cfg.num_classes, ignore_index=cfg.ignore_index)
        counts[split] = len(samples)
    return counts


def split_names(cfg: DataConfig, split: str) -> list[str]:
    """Image names (stems) of ``split``, in list order: the input of :func:`check_no_leakage`."""
    return [s.name for s in split_samples(cfg, split)[0]]


def check_no_leakage(
    train_names: Iterable[str],
    val_names: Iterable[str],
    *,
    train_split: str = "train",
    val_split: str = "val",
    allow: bool = False,
) -> None:
    """Raise if a validation image is also a training image (the #1 cause of unreproducible mIoU).

    Args:
        train_names: Names of the training images.
        val_names: Names of the validation images.
        train_split: Split name, for the message.
        val_split: Split name, for the message.
        allow: Only warn (for deliberate runs such as the paper's trainval model for the test server).

    Raises:
        DatasetError: naming the count and the first overlapping images.
    """
    train_set = set(train_names)
    val_list = list(val_names)
    shared = [n for n in val_list if n in train_set]
    if not shared:
        return
    example = ", ".join(shared[:5]) + (", ..." if len(shared) > 5 else "")
    msg = (
        f"{len(shared)} of the {len(val_list)} '{val_split}' images are also in the training split "
        f"'{train_split}' ({example}): validation mIoU would be inflated"
    )
    if allow:
        warnings.warn(msg, stacklevel=2)
        return
    raise DatasetError(msg + "; set data.allow_val_in_train=true only if this is deliberate")


def check_config_leakage(cfg: DataConfig) -> None:
    """:func:`check_no_leakage` on ``cfg.train_split`` and ``cfg.val_split``."""
    check_no_leakage(
        split_names(cfg, cfg.train_split),
        split_names(cfg, cfg.val_split),
        train_split=cfg.train_split,
        val_split=cfg.val_split,
        allow=cfg.allow_val_in_train,
    )


def build_dataset(cfg: DataConfig, split: str, train: bool) -> SegmentationDataset:
    """The dataset of one split, with the training augmentation or the evaluation preprocessing.

    Args:
        cfg: The data config (layout, root, classes, augmentation, normalisation).
        split: A list name: train, val, trainval, train_aug, or any ``<split>.txt`` of the layout.
        train: True: random scale/pad/crop/flip to ``crop_size`` (default collate works);
            False: the full image, only normalised (use batch 1 or :func:`eval_collate`).

    Returns:
        A dataset whose items are image (3, H, W) float32 and label (H, W) int64.
    """
    samples, list_file = split_samples(cfg, split)
    return SegmentationDataset(
        samples,
        num_classes=cfg.num_classes,
        ignore_index=cfg.ignore_index,
        transform=train_transform(cfg) if train else eval_transform(cfg),
        class_names=dataset_class_names(cfg),
        list_file=list_file,
    )


def dataset_class_names(cfg: DataConfig) -> list[str]:
    """The ``cfg.num_classes`` class names: ``data.class_names``, else the layout's own (synthetic,
    Cityscapes, ADE20K in its label convention) or the names of ``data.mask_colors``, else
    :func:`default_class_names`."""
    if cfg.class_names is not None:
        return list(cfg.class_names)
    if cfg.layout == "synthetic":
        return synthetic_class_names(cfg.num_classes, cfg.synthetic_kind)
    if cfg.layout == "cityscapes":
        return list(CITYSCAPES_CLASSES)
    if cfg.layout == "ade20k":
        return ade20k_class_names(cfg.label_convention or "reference")
    if cfg.mask_format == "rgb":
        names = mask_color_table(cfg)[0]
        if names != [f"class_{i}" for i in range(len(names))]:
            return names  # a colour table of {name, color} or {name: color}
    return default_class_names(cfg.num_classes)
