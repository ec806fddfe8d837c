"""Cityscapes class names, the labelId -> trainId map and the colour palette of the 19 train classes.

The ``*_gtFine_labelIds.png`` files hold the 34 Cityscapes label IDs (plus -1 for the licence plate,
which is never written to the PNGs); training and evaluation use the 19 "train IDs" of
cityscapesScripts' ``labels.py``, every other label ID mapping to the ignore value 255.
"""

from __future__ import annotations

import numpy as np

CITYSCAPES_CLASSES: tuple[str, ...] = (
    "road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign",
    "vegetation", "terrain", "sky", "person", "rider", "car", "truck", "bus", "train", "motorcycle",
    "bicycle",
)  # fmt: skip
"""The 19 evaluated classes, in train-ID order (train ID ``i`` is ``CITYSCAPES_CLASSES[i]``)."""

CITYSCAPES_IGNORE_INDEX = 255

LABEL_ID_TO_TRAIN_ID: dict[int, int] = {
    7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10, 24: 11, 25: 12,
    26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18,
}  # fmt: skip
"""Label IDs of the 19 train classes (cityscapesScripts ``labels.py``); IDs 0-33 not listed here
(unlabeled, ego vehicle, ..., parking, rail track, guard rail, bridge, tunnel, polegroup, caravan,
trailer) are not evaluated and map to 255."""

CITYSCAPES_PALETTE: tuple[tuple[int, int, int], ...] = (
    (128, 64, 128), (244, 35, 232), (70, 70, 70), (102, 102, 156), (190, 153, 153), (153, 153, 153),
    (250, 170, 30), (220, 220, 0), (107, 142, 35), (152, 251, 152), (70, 130, 180), (220, 20, 60),
    (255, 0, 0), (0, 0, 142), (0, 0, 70), (0, 60, 100), (0, 80, 100), (0, 0, 230), (119, 11, 32),
)  # fmt: skip
"""RGB colour of each train ID, as cityscapesScripts draws them."""


def label_id_lut() -> np.ndarray:
    """A (256,) uint8 lookup table from label ID to train ID (255 for every unevaluated ID)."""
    lut = np.full(256, CITYSCAPES_IGNORE_INDEX, dtype=np.uint8)
    for label_id, train_id in LABEL_ID_TO_TRAIN_ID.items():
        lut[label_id] = train_id
    return lut


def cityscapes_palette(num_colors: int = 256) -> np.ndarray:
    """(num_colors, 3) uint8 palette: the 19 train-ID colours, then black (255, void, is black too)."""
    palette = np.zeros((num_colors, 3), dtype=np.uint8)
    palette[: len(CITYSCAPES_PALETTE)] = CITYSCAPES_PALETTE
    return palette
