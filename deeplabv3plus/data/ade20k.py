"""The ``ade20k`` layout: the ADE20K SceneParsing release (``ADEChallengeData2016``) and a tiny synthetic copy.

::

    root/images/training/ADE_train_00000001.jpg        root/annotations/training/ADE_train_00000001.png
    root/images/validation/ADE_val_00000001.jpg        root/annotations/validation/ADE_val_00000001.png

``root`` may also be the folder holding ``ADEChallengeData2016/`` (or ``ADE20K/ADEChallengeData2016/``,
the reference's directory structure). Splits are the folders ``training`` and ``validation``;
``train`` and ``val`` are accepted for them. The annotation PNGs hold 0 ("other") and the classes
1..150; ``data.label_convention`` says what the model sees (see
:mod:`~deeplabv3plus.data.ade20k_meta`):

* ``reference`` (default): the values as they are, 151 classes, ``ignore_index`` 0, as the
  reference DeepLab's ADE20K model (151 logits) was trained and scored;
* ``reduce_zero``: 150 classes, 0 -> 255 (ignored), 1..150 -> 0..149.

Either way the raw values are checked against 0..150 before the mapping.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Union

import numpy as np
from PIL import Image, ImageDraw

from ..catalog import LAYOUTS
from ..config import DataConfig
from .ade20k_meta import ADE20K_CLASSES, ADE20K_PALETTE, ade20k_class_names, ade20k_palette
from .lists import find_dataset_dir
from .synthetic import publish_dataset_dir
from .types import DatasetError, LabelMap, Sample

SPLIT_FOLDERS = {"train": "training", "val": "validation"}
"""Aliases of the release's split folders."""

NUM_RAW = len(ADE20K_CLASSES) + 1


def _lut(convention: str) -> np.ndarray:
    if convention == "reference":
        return np.arange(256, dtype=np.uint8)
    lut = np.full(256, 255, dtype=np.uint8)
    lut[1:NUM_RAW] = np.arange(NUM_RAW - 1, dtype=np.uint8)
    return lut


_CONVENTIONS = LAYOUTS["ade20k"].conventions
LABEL_MAPS = {c.name: LabelMap("ADE20K SceneParsing labels", NUM_RAW, _lut(c.name)) for c in _CONVENTIONS}

_MARKER = "synthetic_ade20k.txt"


def find_ade20k_dir(root: Path) -> Path:
    """The folder holding ``images/`` and ``annotations/`` at or under ``root``."""
    return find_dataset_dir(
        root,
        [root, root / "ADEChallengeData2016", root / "ADE20K" / "ADEChallengeData2016"],
        lambda path: (path / "images").is_dir() and (path / "annotations").is_dir(),
        "ADE20K SceneParsing dataset",
        "images/ and annotations/",
        "data.root",
    )


def ade20k_samples(cfg: DataConfig, split: str) -> tuple[list[Sample], Path]:
    """The image/annotation pairs of ``split`` (sorted by name) and the split's image folder.

    Raises:
        DatasetError: no dataset at ``cfg.root``, an unknown or empty split, an image without its
            annotation, or ``num_classes`` / ``ignore_index`` that do not fit the label convention.
    """
    convention = cfg.label_convention or "reference"
    if convention not in LABEL_MAPS:
        raise DatasetError(
            f"data.label_convention: expected one of {', '.join(LABEL_MAPS)}, got {convention!r}"
        )
    root = Path(cfg.root)
    if cfg.synthetic.size > 0 and not (root / _MARKER).is_file():
        try:
            find_ade20k_dir(root)
        except DatasetError:
            make_synthetic_ade20k(root, num_images=cfg.synthetic.size)
    base = find_ade20k_dir(root)
    folder = SPLIT_FOLDERS.get(split, split)
    image_dir, label_dir = base / "images" / folder, base / "annotations" / folder
    if not image_dir.is_dir():
        available = sorted(p.name for p in (base / "images").iterdir() if p.is_dir())
        raise DatasetError(
            f"split '{split}': no folder '{image_dir}' (splits found: {', '.join(available) or 'none'}; "
            "train and val stand for training and validation)"
        )
    images = sorted(image_dir.glob("*.jpg"))
    if not images:
        raise DatasetError(f"split '{split}': no .jpg images in '{image_dir}'")
    samples = []
    for image in images:
        label = label_dir / f"{image.stem}.png"
        if not label.is_file():
            raise DatasetError(f"image '{image}' has no annotation: expected '{label}'")
        samples.append(Sample(image.stem, image, label, LABEL_MAPS[convention]))
    return samples, image_dir


# ---------------------------------------------------------------------------------------------------
# A tiny synthetic ADE20K, for the tests and configs/ade20k_smoke.yaml.

# Raw labels drawn: wall, floor, ceiling, sky, tree, person, car, bed, table, chair.
_STUFF = (1, 4, 6)
_OBJECTS = (3, 5, 13, 21, 8, 16, 20)


def make_synthetic_sample(rng: np.random.Generator, size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """One indoor-like scene: wall/floor/ceiling bands, some objects, and "other" (0) patches.

    Returns:
        image: (H, W, 3) uint8 RGB, H and W drawn from [0.75, 1.25] x size; label: (H, W) uint8 raw
        SceneParsing values (0 = other, 1..150).
    """
    h, w = (int(v) for v in rng.integers(int(0.75 * size), int(1.25 * size) + 1, size=2))
    label_img = Image.new("L", (w, h), 1)  # wall
    draw = ImageDraw.Draw(label_img)
    draw.rectangle((0, 0, w, int(h * rng.uniform(0.1, 0.25))), fill=6)  # ceiling
    draw.rectangle((0, int(h * rng.uniform(0.6, 0.8)), w, h), fill=4)  # floor
    for _ in range(int(rng.integers(2, 5))):
        value = int(rng.choice(_OBJECTS)) if rng.random() < 0.8 else 0
        ow, oh = int(rng.integers(w // 8, w // 3)), int(rng.integers(h // 8, h // 3))
        x0, y0 = int(rng.integers(0, w - ow)), int(rng.integers(0, h - oh))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)((x0, y0, x0 + ow, y0 + oh), fill=value)
    label = np.asarray(label_img, dtype=np.uint8).copy()
    image = np.zeros((h, w, 3))
    for value in np.unique(label):
        region = label == value
        colour = np.array(ADE20K_PALETTE[value - 1] if value else (0, 0, 0), dtype=np.float64)
        colour += rng.uniform(-15, 15, size=3)
        image[region] = colour + rng.normal(0, 8, size=(int(region.sum()), 3))
    return np.clip(np.rint(image), 0, 255).astype(np.uint8), label


def make_synthetic_ade20k(root: Union[str, Path], num_images: int = 6, size: int = 64, seed: int = 0) -> Path:
    """Write a synthetic dataset in the SceneParsing layout (deterministic from ``seed``).

    Two thirds of the images (at least one) go to ``training``, the rest to ``validation``.
    Written to a temporary folder and renamed into place; an existing dataset at ``root`` is kept.

    Args:
        root: Output folder; ``root/images`` and ``root/annotations`` are created.
        num_images: Images in all, >= 2.
        size: Nominal side; each side is drawn from [0.75, 1.25] x size.
        seed: The same seed gives the same files.

    Returns:
        ``root``.
    """
    if num_images < 2:
        raise ValueError(f"num_images must be >= 2 (training and validation), got {num_images}")
    root = Path(root)
    if (root / _MARKER).is_file():
        return root
    with publish_dataset_dir(root, _MARKER) as tmp:
        num_train = max(1, round(2 * num_images / 3))
        for i in range(num_images):
            folder, prefix, j = (
                ("training", "train", i + 1) if i < num_train else ("validation", "val", i - num_train + 1)
            )
            for sub in ("images", "annotations"):
                (tmp / sub / folder).mkdir(parents=True, exist_ok=True)
            image, label = make_synthetic_sample(np.random.default_rng([seed, i]), size)
            name = f"ADE_{prefix}_{j:08d}"
            Image.fromarray(image).save(tmp / "images" / folder / f"{name}.jpg", quality=90)
            Image.fromarray(label, mode="L").save(tmp / "annotations" / folder / f"{name}.png")
        (tmp / _MARKER).write_text(
            f"synthetic ADE20K SceneParsing layout: {num_images} images, seed {seed}\n"
        )
    return root


def layout_class_names(cfg: DataConfig) -> list[str]:
    """ADE20K's class names in ``data.label_convention`` (151 with "other" first, or 150)."""
    return ade20k_class_names(cfg.label_convention or "reference")


def layout_palette(num_colors: int = 256, convention: Optional[str] = None) -> np.ndarray:
    """ADE20K's colours by model class, (num_colors, 3) uint8: "other" is black in the reference convention."""
    return ade20k_palette(convention or "reference", num_colors)
