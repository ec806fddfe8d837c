"""The VOC layouts: ``voc`` and ``voc_aug`` (PASCAL VOC 2012, with SBD's extra labels) and ``synthetic``
(a generated set in the VOC layout, the quickstart's).

- ``voc``: ``root/VOCdevkit/VOC2012`` (or ``root`` being ``VOC2012`` / containing ``VOC2012``),
  lists in ``ImageSets/Segmentation/<split>.txt``, labels in ``SegmentationClass/`` (falling back to
  ``SegmentationClassAug/`` per file, so ``split=train_aug`` works after ``prepare-voc``).
- ``voc_aug``: the common pre-converted form, ``JPEGImages/`` + ``SegmentationClassAug/`` and a list
  ``<split>.txt`` in ``ImageSets/Segmentation/``, ``ImageSets/SegmentationAug/``, or at the root; lines
  are either ``name`` or ``/JPEGImages/name.jpg /SegmentationClassAug/name.png`` pairs.
- ``synthetic``: generated into ``root`` by :func:`~deeplabv3plus.data.synthetic.make_synthetic_voc`
  if absent (at the default root ``data/synthetic``, or anywhere with ``data.synthetic.generate:
  true``), then read as ``voc``.

Each layout is an entry of ``deeplabv3plus.catalog.LAYOUTS`` naming the functions here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np

from ..config import DataConfig
from .lists import find_dataset_dir, find_list, read_split_list
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
from .types import DatasetError, Sample
from .voc_meta import default_class_names, voc_palette

__all__ = [
    "ensure_synthetic",
    "find_voc_dir",
    "layout_palette",
    "synthetic_samples",
    "voc_aug_samples",
    "voc_class_names",
    "voc_samples",
]


def find_voc_dir(root: Path) -> Path:
    """The ``VOC2012`` folder (the one holding ``JPEGImages/``) at or under ``root``."""
    return find_dataset_dir(
        root,
        [root / "VOCdevkit" / "VOC2012", root / "VOC2012", root],
        lambda path: (path / "JPEGImages").is_dir(),
        "VOC 2012 folder",
        "JPEGImages/",
        "scripts/prepare_voc.py builds it",
    )


def _first_existing(*paths: Path) -> Path:
    for path in paths:
        if path.is_file():
            return path
    return paths[0]  # reported as missing by _check_exist


def voc_like_samples(root: Path, split: str, aug_first: bool) -> tuple[list[Sample], Path]:
    voc = find_voc_dir(root)
    list_file = find_list(
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


def voc_samples(cfg: DataConfig, split: str) -> tuple[list[Sample], Path]:
    return voc_like_samples(Path(cfg.root), split, aug_first=False)


def voc_aug_samples(cfg: DataConfig, split: str) -> tuple[list[Sample], Path]:
    return voc_like_samples(Path(cfg.root), split, aug_first=True)


def _is_default_root(root: Path) -> bool:
    """Whether ``root`` is the default ``data.root`` (``data/synthetic``, the quickstart's), relative
    to the current folder like every relative path of a config."""
    return root.expanduser().resolve() == Path(DataConfig().root).resolve()


def ensure_synthetic(cfg: DataConfig) -> Path:
    """Generate the synthetic dataset into ``cfg.root`` unless a VOC layout is already there.

    Generation happens only at the default root (``data/synthetic``: the quickstart works as
    written) or with ``cfg.synthetic.generate``; any other root that holds no dataset is an error.

    ``cfg.synthetic.size`` > 0 sets the total image count (80% train, 20% val); the class count is
    ``cfg.num_classes`` (2..21), the generator ``cfg.synthetic.kind``. A generated set of another
    kind or generator version (e.g. written by an older release) is an error, never reused.
    Returns the VOC2012 folder.
    """
    root = Path(cfg.root)
    try:
        check_kind(cfg.synthetic.kind)
    except ValueError as e:
        raise DatasetError(f"data.synthetic.kind: {e}") from None
    if is_synthetic_root(root):
        meta = read_synthetic_meta(root)
        stale = stale_synthetic_message(root, cfg.synthetic.kind)
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
    if not (cfg.synthetic.generate or _is_default_root(root)):
        # A mistyped data.root would otherwise silently get a fresh dataset (and a run trained on it).
        raise DatasetError(
            f"data.root '{root}' holds no dataset (data.layout=synthetic); fix data.root, or set "
            "data.synthetic.generate=true to generate one there"
        )
    if cfg.synthetic.size > 0:
        num_train = max(1, round(0.8 * cfg.synthetic.size))
        num_val = max(1, cfg.synthetic.size - num_train)
    else:
        num_train, num_val = SYNTHETIC_NUM_TRAIN, SYNTHETIC_NUM_VAL
    return make_synthetic_voc(
        root, num_train=num_train, num_val=num_val, num_classes=cfg.num_classes, kind=cfg.synthetic.kind
    )


def synthetic_samples(cfg: DataConfig, split: str) -> tuple[list[Sample], Path]:
    ensure_synthetic(cfg)
    return voc_like_samples(Path(cfg.root), split, aug_first=False)


def voc_class_names(cfg: DataConfig) -> list[str]:
    """VOC's names for its 21 classes (or the first ``data.num_classes``), else ``class_0, class_1, ...``."""
    return default_class_names(cfg.num_classes)


def synthetic_layout_class_names(cfg: DataConfig) -> list[str]:
    """The generated set's class names (its kind's, for ``data.num_classes`` classes)."""
    return synthetic_class_names(cfg.num_classes, cfg.synthetic.kind)


def layout_palette(num_colors: int = 256, convention: Optional[str] = None) -> np.ndarray:
    """VOC's colour map, (num_colors, 3) uint8: the overlay colours of every VOC-like layout."""
    return voc_palette(num_colors)
