"""Segmentation datasets for the layouts of ``data.layout``, with loud, file-naming errors.

``build_dataset(cfg, split, train)`` is the one entry point of the train and eval loops; a run that
also checks its splits first shares one :class:`DataSplits`, so that each split is listed once. The
layouts are the entries of ``deeplabv3plus.catalog.LAYOUTS``, each read by its own module of this
package (``voc``, ``voc_aug`` and ``synthetic`` by :mod:`deeplabv3plus.data.voc`, your own ``folders``
in any ``data.mask_format`` by :mod:`deeplabv3plus.data.folders`, the others by the module of their
name; docs/datasets.md).

Labels are read with PIL as raw class indices (palette indices of "P" PNGs, values of "L" PNGs), never
converted to RGB. Every sample is validated when loaded: a label value outside ``0..C-1`` and
``ignore_index``, an image/label size mismatch, or an unreadable file raises :class:`DatasetError`
naming the file; missing files, missing or empty split lists raise when the dataset is built.
:func:`check_splits` runs all of that (and decodes each split's first pair) before a job starts.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from ..catalog import LAYOUTS, load
from ..config import DataConfig
from .folders import coco_file_for_split, coco_mapping, mask_color_table
from .images import DEFAULT_MAX_PIXELS, read_rgb
from .lists import read_split_list
from .transforms import eval_transform, train_transform
from .types import DatasetError, Sample
from .voc import ensure_synthetic, find_voc_dir
from .voc_meta import default_class_names

__all__ = [
    "DataSplits",
    "DatasetError",
    "SegmentationDataset",
    "build_dataset",
    "check_config_leakage",
    "check_no_leakage",
    "check_splits",
    "coco_file_for_split",
    "coco_mapping",
    "dataset_class_names",
    "default_class_names",
    "ensure_synthetic",
    "eval_collate",
    "find_voc_dir",
    "load_pair",
    "mask_color_table",
    "read_image",
    "read_label",
    "read_sample_label",
    "read_split_list",
    "split_names",
    "split_samples",
]

Transform = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


# ---------------------------------------------------------------------------------------------------
# Reading and validating files.


def read_image(path: Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> torch.Tensor:
    """Decode an image file to RGB with PIL (:func:`deeplabv3plus.data.images.read_rgb`: 16-bit
    images scaled to 8 bits, the size checked against ``max_pixels`` before decoding).

    PIL rather than ``torchvision.io.decode_image``: torchvision 0.29 deprecates its image codecs in
    favour of TorchCodec (a warning on every call, removal announced); PIL decodes JPEGs with the same
    libjpeg-turbo, reads every format, and is already a dependency.

    Args:
        path: The image file.
        max_pixels: ``data.max_image_pixels``.

    Returns:
        (3, H, W) uint8 tensor.

    Raises:
        DatasetError: naming the file: unreadable, or over ``max_pixels`` (:class:`ImageTooLargeError`).
    """
    try:
        array = read_rgb(path, max_pixels)
    except DatasetError:
        raise
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


def load_pair(
    sample: Sample, *, num_classes: int, ignore_index: int, max_image_pixels: int = DEFAULT_MAX_PIXELS
) -> tuple[torch.Tensor, torch.Tensor]:
    """Decode and validate one pair: image (3, H, W) uint8, label (H, W) uint8 class indices.

    Raises:
        DatasetError: naming the file: unreadable, a colour (RGB) label, a raw value outside the
            layout's convention, image and label of different sizes, or a class outside
            ``0..num_classes-1`` and ``ignore_index``; an image over ``max_image_pixels``.
    """
    image = read_image(sample.image, max_image_pixels)
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
        max_image_pixels: ``data.max_image_pixels``: larger images are refused before decoding.
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
        max_image_pixels: int = DEFAULT_MAX_PIXELS,
    ) -> None:
        self.samples = list(samples)
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.transform = transform
        self.class_names = list(class_names) if class_names is not None else default_class_names(num_classes)
        self.list_file = list_file
        self.max_image_pixels = max_image_pixels

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
        return load_pair(
            self.samples[index],
            num_classes=self.num_classes,
            ignore_index=self.ignore_index,
            max_image_pixels=self.max_image_pixels,
        )

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


def _check_exist(samples: Sequence[Sample], list_file: Path) -> None:
    missing = [p for s in samples for p in (s.image, s.label) if not p.is_file()]
    if missing:
        more = f" (and {len(missing) - 1} more files)" if len(missing) > 1 else ""
        raise DatasetError(f"missing file '{missing[0]}'{more}, listed in '{list_file}'")


def split_samples(cfg: DataConfig, split: str) -> tuple[list[Sample], Path]:
    """The samples of ``split`` for ``cfg.layout`` and the list file they came from, read by the
    layout's lister (``deeplabv3plus.catalog.LAYOUTS``), every listed file checked to exist.

    Raises:
        DatasetError: unknown layout, classes the layout's labels do not have
            (:func:`check_layout_classes`), missing or empty list, or a listed file that does not exist.
    """
    if cfg.layout not in LAYOUTS:
        raise DatasetError(
            f"data.layout: unknown layout {cfg.layout!r}; expected one of {', '.join(LAYOUTS)}"
        )
    check_layout_classes(cfg)
    samples, list_file = load(LAYOUTS[cfg.layout].samples)(cfg, split)
    _check_exist(samples, list_file)
    return samples, list_file


def check_layout_classes(cfg: DataConfig) -> None:
    """Raise :class:`DatasetError` when ``data.num_classes`` / ``data.ignore_index`` are not those the
    layout's labels imply (``LayoutEntry.implied_classes``: Cityscapes' 19 train IDs, CamVid's 11,
    ADE20K's 151 or 150 by label convention)."""
    expected = LAYOUTS[cfg.layout].implied_classes(cfg.label_convention)
    if expected is None or (cfg.num_classes, cfg.ignore_index) == expected:
        return
    convention = f" with data.label_convention={cfg.label_convention}" if cfg.label_convention else ""
    raise DatasetError(
        f"layout '{cfg.layout}'{convention} has {expected[0]} classes and ignore index {expected[1]} "
        "(the label never scored), "
        f"but data.num_classes={cfg.num_classes} and data.ignore_index={cfg.ignore_index}; set "
        f"data.num_classes={expected[0]} model.num_classes={expected[0]} data.ignore_index={expected[1]}"
    )


class DataSplits:
    """The splits of one data config, each listed (and its files checked) once.

    What a run shares between its start-up checks and its datasets: :meth:`check`, :meth:`check_leakage`
    and :meth:`dataset` read a split's list the first time it is asked for and reuse it after (the
    module functions :func:`check_splits`, :func:`check_config_leakage` and :func:`build_dataset` do
    the same on a fresh listing each).

    Args:
        cfg: the data config; not copied, so do not change it while the object is in use.
    """

    def __init__(self, cfg: DataConfig) -> None:
        self.cfg = cfg
        self._listed: dict[str, tuple[list[Sample], Path]] = {}

    def samples(self, split: str) -> tuple[list[Sample], Path]:
        """:func:`split_samples` of ``split``, listed on the first call only."""
        if split not in self._listed:
            self._listed[split] = split_samples(self.cfg, split)
        return self._listed[split]

    def names(self, split: str) -> list[str]:
        """Image names (stems) of ``split``, in list order."""
        return [s.name for s in self.samples(split)[0]]

    def check(self, splits: Iterable[str]) -> dict[str, int]:
        """Check that ``splits`` can be read, before a job spends anything on them.

        What a job would otherwise find only after building its model, fetching weights or writing
        files: for each split, its list file exists and is not empty, every listed image and label
        exists, and the first pair decodes into a valid pair (a class-index label, not an RGB colour
        mask; classes in ``0..C-1`` or ``ignore_index``; the image's size). The other pairs are
        checked as they are loaded. The ``synthetic`` layout generates its dataset here where it may
        (:func:`~deeplabv3plus.data.voc.ensure_synthetic`).

        Returns:
            The number of samples of each split.

        Raises:
            DatasetError: naming the list or file and what was expected.
        """
        counts = {}
        for split in dict.fromkeys(splits):
            samples, list_file = self.samples(split)
            if not samples:
                raise DatasetError(f"split '{split}': no images in '{list_file}'")
            load_pair(
                samples[0],
                num_classes=self.cfg.num_classes,
                ignore_index=self.cfg.ignore_index,
                max_image_pixels=self.cfg.max_image_pixels,
            )
            counts[split] = len(samples)
        return counts

    def check_leakage(self) -> None:
        """:func:`check_no_leakage` on ``data.train_split`` and ``data.val_split``."""
        cfg = self.cfg
        check_no_leakage(
            self.names(cfg.train_split),
            self.names(cfg.val_split),
            train_split=cfg.train_split,
            val_split=cfg.val_split,
            allow=cfg.allow_val_in_train,
        )

    def dataset(self, split: str, train: bool) -> SegmentationDataset:
        """The dataset of ``split``: see :func:`build_dataset`."""
        samples, list_file = self.samples(split)
        cfg = self.cfg
        return SegmentationDataset(
            samples,
            num_classes=cfg.num_classes,
            ignore_index=cfg.ignore_index,
            transform=train_transform(cfg) if train else eval_transform(cfg),
            class_names=dataset_class_names(cfg),
            list_file=list_file,
            max_image_pixels=cfg.max_image_pixels,
        )


def check_splits(cfg: DataConfig, splits: Iterable[str]) -> dict[str, int]:
    """:meth:`DataSplits.check` on a fresh listing: the number of samples of each of ``splits``."""
    return DataSplits(cfg).check(splits)


def split_names(cfg: DataConfig, split: str) -> list[str]:
    """Image names (stems) of ``split``, in list order: the input of :func:`check_no_leakage`."""
    return DataSplits(cfg).names(split)


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
    DataSplits(cfg).check_leakage()


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
    return DataSplits(cfg).dataset(split, train)


def dataset_class_names(cfg: DataConfig) -> list[str]:
    """The ``cfg.num_classes`` class names: ``data.class_names``, else the layout's own
    (``deeplabv3plus.catalog.LAYOUTS``: Cityscapes', ADE20K's in its label convention, the synthetic
    set's, the names of a colour table), else :func:`default_class_names`."""
    if cfg.class_names is not None:
        return list(cfg.class_names)
    layout = LAYOUTS[cfg.layout]
    if layout.class_names is not None:
        return load(layout.class_names)(cfg)
    return default_class_names(cfg.num_classes)
