"""PASCAL VOC class names and the colour palette of its label PNGs."""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Union

import numpy as np
from PIL import Image

from ..catalog import IGNORE_INDEX  # noqa: F401  (re-exported: the void label of VOC's PNGs)

VOC_CLASSES: tuple[str, ...] = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)  # fmt: skip


def voc_palette(num_colors: int = 256) -> np.ndarray:
    """The VOC colour map: class ``i`` gets the colour whose bits interleave ``i``'s bits.

    Returns:
        (num_colors, 3) uint8 array; row 255 (void) is (224, 224, 192) as in the VOC PNGs.
    """
    palette = np.zeros((num_colors, 3), dtype=np.uint8)
    for i in range(num_colors):
        c, r, g, b = i, 0, 0, 0
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        palette[i] = (r, g, b)
    return palette


def save_label_png(labels: np.ndarray, path: Union[str, Path], palette: Optional[np.ndarray] = None) -> None:
    """Write (H, W) class indices (0..255) as a mode "P" PNG, by default with the VOC palette as VOC's labels.

    Args:
        labels: (H, W) integer class indices; the PNG's pixel values are these indices.
        path: Output file.
        palette: (256, 3) uint8 colours of the indices; None: :func:`voc_palette`.
    """
    if labels.max(initial=0) > 255:
        raise ValueError(f"'{path}': a palette PNG holds class indices 0..255 only")
    im = Image.fromarray(labels.astype(np.uint8), mode="P")
    im.putpalette((voc_palette(256) if palette is None else palette).reshape(-1).tolist())
    im.save(path)


def default_class_names(num_classes: int) -> list[str]:
    """VOC names for 21 classes (or the first ``num_classes`` of them), else ``class_0, class_1, ...``."""
    if num_classes <= len(VOC_CLASSES):
        return list(VOC_CLASSES[:num_classes])
    return [f"class_{i}" for i in range(num_classes)]
