"""The ``cityscapes`` layout: Cityscapes as distributed, splits by folder, and a tiny synthetic copy.

::

    root/leftImg8bit/<split>/<city>/<city>_<seq>_<frame>_leftImg8bit.png
    root/gtFine/<split>/<city>/<city>_<seq>_<frame>_gtFine_labelIds.png        (label IDs 0..33)
    root/gtFine/<split>/<city>/<city>_<seq>_<frame>_gtFine_labelTrainIds.png   (optional: 0..18, 255)
    root/gtFine/<split>/<city>/<city>_<seq>_<frame>_gtFine_instanceIds.png     (optional: for the iIoU)

``root`` may also be the folder holding ``cityscapes/``. The split is the folder name (train, val,
test, or any folder of ``leftImg8bit/``); no list files. Labels are the 19 train IDs of
:mod:`~deeplabv3plus.data.cityscapes_meta`, every other label ID 255 (``data.ignore_index``).

``data.label_convention`` picks the label file of each image:

* ``auto`` (default): the ``*_gtFine_labelTrainIds.png`` when present, else the
  ``*_gtFine_labelIds.png`` mapped through the label-ID table. The train-ID files are what
  cityscapesScripts' ``createTrainIdLabelImgs`` writes and what the reference's TFRecord
  converter (``build_cityscapes_data.py``) reads; both files give the same classes, so a split
  with only some images converted still reads consistently.
* ``train_ids`` / ``label_ids``: only that file (e.g. ``label_ids`` when the train-ID PNGs were
  written with a modified ``labels.py``).

Label IDs are checked against 0..33 before the mapping, train IDs against 0..18 and 255.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Optional, Union

import numpy as np
from PIL import Image, ImageDraw

from ..config import DataConfig
from .cityscapes_meta import (
    CITYSCAPES_CLASSES,
    CITYSCAPES_PALETTE,
    INSTANCE_ID_DIVISOR,
    LABEL_ID_TO_TRAIN_ID,
    cityscapes_palette,
    label_id_lut,
)
from .lists import find_dataset_dir
from .synthetic import publish_dataset_dir
from .types import DatasetError, LabelMap, Sample

NUM_LABEL_IDS = 34
"""Label IDs 0..33 appear in ``*_gtFine_labelIds.png`` (the licence plate, -1, is never drawn)."""

LABEL_IDS = LabelMap("Cityscapes label IDs", NUM_LABEL_IDS, label_id_lut())

_IMAGE_SUFFIX = "_leftImg8bit.png"
_MARKER = "synthetic_cityscapes.txt"


def find_cityscapes_dir(root: Path) -> Path:
    """The folder holding ``leftImg8bit/`` and ``gtFine/``: ``root`` or ``root/cityscapes``."""
    return find_dataset_dir(
        root,
        [root, root / "cityscapes"],
        lambda path: (path / "leftImg8bit").is_dir(),
        "Cityscapes dataset",
        "leftImg8bit/",
        "data.root",
    )


def cityscapes_samples(cfg: DataConfig, split: str) -> tuple[list[Sample], Path]:
    """The image/label pairs of ``split`` (sorted by city, then name) and the split's image folder.

    Raises:
        DatasetError: no dataset at ``cfg.root``, an unknown or empty split, an image without its
            label, or ``num_classes`` / ``ignore_index`` other than 19 / 255.
    """
    convention = cfg.label_convention or "auto"
    root = Path(cfg.root)
    if cfg.synthetic.size > 0 and not any((p / "leftImg8bit").is_dir() for p in (root, root / "cityscapes")):
        make_synthetic_cityscapes(root, num_images=cfg.synthetic.size)
    base = find_cityscapes_dir(root)
    image_dir = base / "leftImg8bit" / split
    if not image_dir.is_dir():
        available = sorted(p.name for p in (base / "leftImg8bit").iterdir() if p.is_dir())
        raise DatasetError(
            f"split '{split}': no folder '{image_dir}' (splits found: {', '.join(available) or 'none'})"
        )
    images = sorted(image_dir.glob(f"*/*{_IMAGE_SUFFIX}"))
    if not images:
        raise DatasetError(f"split '{split}': no *{_IMAGE_SUFFIX} images in '{image_dir}/<city>/'")
    samples = []
    for image in images:
        name = image.name[: -len(_IMAGE_SUFFIX)]
        gt = base / "gtFine" / split / image.parent.name
        train_ids, label_ids = gt / f"{name}_gtFine_labelTrainIds.png", gt / f"{name}_gtFine_labelIds.png"
        if convention == "train_ids" or (convention == "auto" and train_ids.is_file()):
            candidates, sample = [train_ids], Sample(name, image, train_ids)
        else:
            candidates = [label_ids] if convention == "label_ids" else [train_ids, label_ids]
            sample = Sample(name, image, label_ids, LABEL_IDS)
        instances = gt / f"{name}_gtFine_instanceIds.png"
        if instances.is_file():
            sample = dataclasses.replace(sample, instances=instances)
        if not sample.label.is_file():
            raise DatasetError(
                f"image '{image}' has no label: expected {' or '.join(repr(str(c)) for c in candidates)}"
                f" (data.label_convention={convention})"
            )
        samples.append(sample)
    return samples, image_dir


def read_instances(path: Path) -> np.ndarray:
    """A ``*_gtFine_instanceIds.png`` as an (H, W) int64 array: ``label_id * 1000 + k`` for instance
    ``k`` of a class with instances, the bare label ID (0..33) elsewhere.

    Raises:
        DatasetError: an unreadable file, or a value whose label ID is not 0..33.
    """
    try:
        with Image.open(path) as im:
            array = np.array(im).astype(np.int64)
    except Exception as e:
        raise DatasetError(f"cannot read instance map '{path}': {e}") from None
    if array.ndim != 2:
        raise DatasetError(f"instance map '{path}' has shape {array.shape}; expected a single-channel image")
    label_ids = np.where(array >= INSTANCE_ID_DIVISOR, array // INSTANCE_ID_DIVISOR, array)
    if array.size and (array.min() < 0 or label_ids.max() >= NUM_LABEL_IDS):
        raise DatasetError(
            f"instance map '{path}' has values outside label_id * 1000 + k and 0..{NUM_LABEL_IDS - 1} "
            f"(max {array.max()})"
        )
    return array


# ---------------------------------------------------------------------------------------------------
# A tiny synthetic Cityscapes, for the tests and configs/cityscapes_smoke.yaml.

SYNTHETIC_CITIES = {"train": ("aachen", "bochum"), "val": ("frankfurt",)}
SYNTHETIC_SIZE = (64, 128)
"""(height, width): Cityscapes' 1:2 aspect ratio, 16x smaller than its 1024x2048 frames."""

# Label IDs drawn as objects: evaluated classes and three that map to 255 (static 4, parking 9,
# guard rail 14), so the label-ID mapping and the void handling are exercised.
_OBJECT_IDS = (24, 26, 17, 21, 20, 13, 4, 9, 14)
_INSTANCE_IDS = (24, 26)
"""The drawn label IDs of classes with instances (person, car)."""


def _colour(label_id: int) -> np.ndarray:
    """Mean RGB of a label ID: its train ID's Cityscapes colour, grey for the unevaluated IDs."""
    train_id = LABEL_ID_TO_TRAIN_ID.get(label_id)
    if train_id is None:
        return np.array([40.0 + 5 * label_id] * 3)
    return np.array(CITYSCAPES_PALETTE[train_id], dtype=np.float64)


def _draw_synthetic_sample(
    rng: np.random.Generator, size: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`make_synthetic_sample`'s image and label, and the (H, W) uint16 instance-ID map."""
    h, w = size
    label_img = Image.new("L", (w, h), 23)  # sky
    draw = ImageDraw.Draw(label_img)
    horizon = int(h * rng.uniform(0.35, 0.55))
    draw.rectangle((0, int(h * 0.15), w, horizon), fill=11)  # building
    draw.rectangle((0, horizon, w, h), fill=7)  # road
    draw.rectangle((0, horizon, int(w * rng.uniform(0.05, 0.2)), h), fill=8)  # sidewalk
    # The instance map is drawn with the same shapes (no extra random draws: the labels of a seed
    # stay as they were): label_id * 1000 + k for the k-th object of a class with instances.
    instance_img = label_img.convert("I")
    draw_instance = ImageDraw.Draw(instance_img)
    counts: dict[int, int] = {}
    for _ in range(int(rng.integers(2, 6))):
        label_id = int(rng.choice(_OBJECT_IDS))
        ow, oh = int(rng.integers(w // 12, w // 4)), int(rng.integers(h // 8, h // 2))
        x0, y0 = int(rng.integers(0, w - ow)), int(rng.integers(h // 5, h - oh))
        box = (x0, y0, x0 + ow, y0 + oh)
        shape = "ellipse" if rng.random() < 0.5 else "rectangle"
        getattr(draw, shape)(box, fill=label_id)
        instance_id = label_id
        if label_id in _INSTANCE_IDS:
            instance_id = label_id * INSTANCE_ID_DIVISOR + counts.get(label_id, 0)
            counts[label_id] = counts.get(label_id, 0) + 1
        getattr(draw_instance, shape)(box, fill=instance_id)
    draw.rectangle((0, h - max(2, h // 16), w, h), fill=1)  # ego vehicle (unevaluated)
    draw_instance.rectangle((0, h - max(2, h // 16), w, h), fill=1)
    label = np.asarray(label_img, dtype=np.uint8).copy()
    instances = np.asarray(instance_img, dtype=np.int32).astype(np.uint16)
    image = np.zeros((h, w, 3))
    for label_id in np.unique(label):
        region = label == label_id
        colour = _colour(int(label_id)) + rng.uniform(-15, 15, size=3)
        image[region] = colour + rng.normal(0, 8, size=(int(region.sum()), 3))
    return np.clip(np.rint(image), 0, 255).astype(np.uint8), label, instances


def make_synthetic_sample(
    rng: np.random.Generator, size: tuple[int, int] = SYNTHETIC_SIZE
) -> tuple[np.ndarray, np.ndarray]:
    """One street-like frame: sky, buildings, road, an ego-vehicle strip and a few objects.

    Returns:
        image: (H, W, 3) uint8 RGB; label: (H, W) uint8 Cityscapes label IDs (0..33).
    """
    image, label, _ = _draw_synthetic_sample(rng, size)
    return image, label


def make_synthetic_cityscapes(
    root: Union[str, Path],
    num_images: int = 6,
    size: tuple[int, int] = SYNTHETIC_SIZE,
    seed: int = 0,
    train_ids: bool = False,
    instance_ids: bool = False,
) -> Path:
    """Write a synthetic dataset in the Cityscapes layout (deterministic from ``seed``).

    Two thirds of the images (at least one) go to ``train`` (cities aachen, bochum), the rest to
    ``val`` (frankfurt). Written to a temporary folder and renamed into place, so concurrent
    callers (DDP ranks) never see half a dataset; an existing dataset at ``root`` is kept.

    Args:
        root: Output folder; ``root/leftImg8bit`` and ``root/gtFine`` are created.
        num_images: Images in all, >= 2.
        size: (height, width) of every frame.
        seed: The same seed gives the same files.
        train_ids: Also write the ``*_gtFine_labelTrainIds.png`` files.
        instance_ids: Also write the ``*_gtFine_instanceIds.png`` files (16-bit; person and car
            objects as instances ``label_id * 1000 + k``), which the official iIoU reads.

    Returns:
        ``root``.
    """
    if num_images < 2:
        raise ValueError(f"num_images must be >= 2 (train and val), got {num_images}")
    root = Path(root)
    if (root / _MARKER).is_file():
        return root
    with publish_dataset_dir(root, _MARKER) as tmp:
        num_train = max(1, round(2 * num_images / 3))
        lut = label_id_lut()
        for i in range(num_images):
            split = "train" if i < num_train else "val"
            cities = SYNTHETIC_CITIES[split]
            j = i if split == "train" else i - num_train
            city = cities[j % len(cities)]
            name = f"{city}_{j // len(cities):06d}_000019"
            image, label, instances = _draw_synthetic_sample(np.random.default_rng([seed, i]), size)
            for folder in ("leftImg8bit", "gtFine"):
                (tmp / folder / split / city).mkdir(parents=True, exist_ok=True)
            Image.fromarray(image).save(tmp / "leftImg8bit" / split / city / f"{name}{_IMAGE_SUFFIX}")
            gt = tmp / "gtFine" / split / city
            Image.fromarray(label, mode="L").save(gt / f"{name}_gtFine_labelIds.png")
            if train_ids:
                Image.fromarray(lut[label], mode="L").save(gt / f"{name}_gtFine_labelTrainIds.png")
            if instance_ids:
                Image.fromarray(instances).save(gt / f"{name}_gtFine_instanceIds.png")
        (tmp / _MARKER).write_text(f"synthetic Cityscapes layout: {num_images} images, seed {seed}\n")
    return root


def layout_class_names(cfg: DataConfig) -> list[str]:
    """The 19 train-ID class names (the ``cityscapes`` layout's)."""
    return list(CITYSCAPES_CLASSES)


def layout_palette(num_colors: int = 256, convention: Optional[str] = None) -> np.ndarray:
    """The Cityscapes colours of the train IDs, (num_colors, 3) uint8 (the same in every convention)."""
    return cityscapes_palette(num_colors)
