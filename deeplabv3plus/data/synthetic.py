"""A tiny synthetic segmentation dataset written in exactly the PASCAL VOC 2012 layout.

It is the quickstart's default data and the test fixture: a few coloured shapes on a textured
background, learnable in minutes on a CPU, with the same files, palette PNGs and 255 void band at
object boundaries as the real VOC 2012 release, so every code path that reads VOC reads it too::

    root/VOCdevkit/VOC2012/JPEGImages/syn_000000.jpg
    root/VOCdevkit/VOC2012/SegmentationClass/syn_000000.png   (mode "P", VOC palette)
    root/VOCdevkit/VOC2012/ImageSets/Segmentation/{train,val,trainval}.txt

Labels are VOC class indices: with the default ``num_classes=6`` the classes are VOC's first six
(background, aeroplane, bicycle, bird, boat, bottle), so the PNGs render in VOC colours and a
21-class model could also read them. Each foreground class has its own saturated hue and shape;
the background is a desaturated texture, so colour alone separates the classes.
"""

from __future__ import annotations

import colorsys
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Union

import numpy as np
from PIL import Image, ImageDraw

from .voc_meta import IGNORE_INDEX, VOC_CLASSES, voc_palette

SYNTHETIC_NUM_CLASSES = 6
"""Default class count (background + 5 objects), the ``data.num_classes`` of the quickstart."""

SYNTHETIC_NUM_TRAIN = 200
SYNTHETIC_NUM_VAL = 50
SYNTHETIC_SIZE = 128
"""Nominal image side; each side is drawn independently from [0.75, 1.25] x size (96..160 px)."""

VOID_WIDTH = 2
"""Pixels of void on each side of a boundary (a band ~4 px wide, close to VOC's ~5 px)."""

_SHAPES = ("ellipse", "rectangle", "triangle")
_MARKER = "synthetic.json"


def synthetic_class_names(num_classes: int = SYNTHETIC_NUM_CLASSES) -> list[str]:
    """The names of the synthetic classes: VOC's first ``num_classes`` class names."""
    return list(VOC_CLASSES[:num_classes])


def class_colour(cls: int, num_classes: int) -> np.ndarray:
    """Mean RGB colour of foreground class ``cls`` (1..num_classes-1): evenly spaced saturated hues.

    Returns:
        (3,) float64 array in [0, 255].
    """
    n_fg = num_classes - 1
    hue = (cls - 1) / n_fg
    # With many classes, alternate brightness so neighbouring hues stay separable.
    value = 0.9 if (cls % 2 == 1 or n_fg <= 6) else 0.55
    return np.array(colorsys.hsv_to_rgb(hue, 0.85, value)) * 255.0


def _background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Desaturated, low-frequency textured background plus pixel noise: (h, w, 3) float64."""
    coarse = rng.uniform(70, 170, size=(5, 5)).astype(np.float32)
    smooth = np.asarray(Image.fromarray(coarse, mode="F").resize((w, h), Image.BILINEAR), dtype=np.float64)
    tint = rng.uniform(-12, 12, size=3)  # a slight colour cast, far below the objects' saturation
    img = smooth[..., None] + tint
    # Thin stripes give texture the model has to learn to ignore.
    period = rng.integers(6, 14)
    stripes = 10.0 * (((np.arange(w)[None, :] + np.arange(h)[:, None]) // period) % 2)
    return img + stripes[..., None] + rng.normal(0, 6, size=(h, w, 3))


def _draw_object(draw: ImageDraw.ImageDraw, shape: str, box: tuple[int, int, int, int], fill: int) -> None:
    x0, y0, x1, y1 = box
    if shape == "ellipse":
        draw.ellipse(box, fill=fill)
    elif shape == "rectangle":
        draw.rectangle(box, fill=fill)
    else:
        draw.polygon([((x0 + x1) // 2, y0), (x1, y1), (x0, y1)], fill=fill)


def _void_band(label: np.ndarray, width: int) -> np.ndarray:
    """Pixels within ``width`` (Chebyshev distance) of a pixel with another label: (h, w) bool."""
    h, w = label.shape
    padded = np.pad(label, width, mode="edge")
    band = np.zeros((h, w), dtype=bool)
    for dy in range(2 * width + 1):
        for dx in range(2 * width + 1):
            band |= padded[dy : dy + h, dx : dx + w] != label
    return band


def make_sample(
    rng: np.random.Generator, size: int = SYNTHETIC_SIZE, num_classes: int = SYNTHETIC_NUM_CLASSES
) -> tuple[np.ndarray, np.ndarray]:
    """Draw one synthetic image and its label.

    Args:
        rng: The generator all randomness comes from.
        size: Nominal side; height and width are drawn independently from [0.75, 1.25] x size.
        num_classes: Classes including background (2..21).

    Returns:
        image: (H, W, 3) uint8 RGB.
        label: (H, W) uint8 class indices in 0..num_classes-1, 255 on a band around boundaries.
    """
    h, w = (int(v) for v in rng.integers(int(0.75 * size), int(1.25 * size) + 1, size=2))
    label_img = Image.new("L", (w, h), 0)
    draw = ImageDraw.Draw(label_img)
    side = min(h, w)
    for _ in range(int(rng.integers(1, 5))):
        cls = int(rng.integers(1, num_classes))
        ow, oh = (int(v) for v in rng.integers(int(0.2 * side), int(0.55 * side) + 1, size=2))
        x0, y0 = int(rng.integers(-ow // 4, w - 3 * ow // 4)), int(rng.integers(-oh // 4, h - 3 * oh // 4))
        _draw_object(draw, _SHAPES[(cls - 1) % len(_SHAPES)], (x0, y0, x0 + ow, y0 + oh), cls)
    label = np.asarray(label_img, dtype=np.uint8).copy()

    image = _background(rng, h, w)
    for cls in np.unique(label):
        if cls == 0:
            continue
        region = label == cls
        # Per-image colour jitter and per-pixel noise: the class is the hue, not one exact RGB value.
        colour = class_colour(int(cls), num_classes) + rng.uniform(-15, 15, size=3)
        image[region] = colour + rng.normal(0, 10, size=(int(region.sum()), 3))
    image = np.clip(np.rint(image), 0, 255).astype(np.uint8)

    label[_void_band(label, VOID_WIDTH)] = IGNORE_INDEX
    return image, label


def is_synthetic_root(root: Union[str, Path]) -> bool:
    """Whether ``root`` holds a complete generated dataset (its marker file is written last)."""
    return (Path(root) / _MARKER).is_file()


def make_synthetic_voc(
    root: Union[str, Path],
    num_train: int = SYNTHETIC_NUM_TRAIN,
    num_val: int = SYNTHETIC_NUM_VAL,
    size: int = SYNTHETIC_SIZE,
    seed: int = 0,
    num_classes: int = SYNTHETIC_NUM_CLASSES,
) -> Path:
    """Write a synthetic dataset in the VOC 2012 layout under ``root`` (deterministic from ``seed``).

    The files are written to a temporary folder next to ``root`` and moved into place at the end,
    so several processes (e.g. DDP ranks) may call this at once and a reader never sees half a
    dataset. An existing complete dataset at ``root`` is left untouched.

    Args:
        root: Output folder; ``root/VOCdevkit/VOC2012`` is created.
        num_train: Images in ``train.txt``.
        num_val: Images in ``val.txt`` (``trainval.txt`` lists both).
        size: Nominal image side in pixels.
        seed: Seed of the generator; the same seed gives byte-identical files.
        num_classes: Classes including background, 2..21 (labels are VOC class indices).

    Returns:
        The path of the VOC2012 folder.
    """
    if not 2 <= num_classes <= len(VOC_CLASSES):
        raise ValueError(f"num_classes must be in 2..{len(VOC_CLASSES)}, got {num_classes}")
    if num_train < 1 or num_val < 1:
        raise ValueError(f"num_train and num_val must be >= 1, got {num_train} and {num_val}")
    root = Path(root)
    if is_synthetic_root(root):
        return root / "VOCdevkit" / "VOC2012"
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}.tmp", dir=root.parent))
    try:
        voc = tmp / "VOCdevkit" / "VOC2012"
        for sub in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
            (voc / sub).mkdir(parents=True)
        palette = voc_palette().flatten().tolist()
        names = [f"syn_{i:06d}" for i in range(num_train + num_val)]
        for i, name in enumerate(names):
            # One stream per image: an image does not change when num_train/num_val change.
            rng = np.random.default_rng([seed, i])
            image, label = make_sample(rng, size=size, num_classes=num_classes)
            Image.fromarray(image).save(voc / "JPEGImages" / f"{name}.jpg", quality=90)
            png = Image.fromarray(label, mode="P")
            png.putpalette(palette)
            png.save(voc / "SegmentationClass" / f"{name}.png")
        lists = {"train": names[:num_train], "val": names[num_train:], "trainval": names}
        for split, split_names in lists.items():
            (voc / "ImageSets" / "Segmentation" / f"{split}.txt").write_text("\n".join(split_names) + "\n")
        meta = dict(
            num_train=num_train,
            num_val=num_val,
            size=size,
            seed=seed,
            num_classes=num_classes,
            class_names=synthetic_class_names(num_classes),
        )
        (tmp / _MARKER).write_text(json.dumps(meta, indent=2) + "\n")
        if root.exists() and not any(root.iterdir()):
            root.rmdir()  # an empty folder (e.g. created by the user) is not a dataset
        try:
            os.rename(tmp, root)
        except OSError as e:
            if not is_synthetic_root(root):  # not another process winning the race: a real error
                raise FileExistsError(
                    f"cannot create synthetic dataset: '{root}' exists and is not one"
                ) from e
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return root / "VOCdevkit" / "VOC2012"
