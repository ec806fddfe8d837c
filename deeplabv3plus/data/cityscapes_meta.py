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


# --- the official evaluation's tables (cityscapesScripts helpers/labels.py and
# evaluation/evalPixelLevelSemanticLabeling.py) ----------------------------------------------------

TRAIN_ID_TO_LABEL_ID: tuple[int, ...] = tuple(sorted(LABEL_ID_TO_TRAIN_ID, key=LABEL_ID_TO_TRAIN_ID.get))
"""The label ID of each train ID 0..18: what the official evaluator and benchmark server read."""

CITYSCAPES_CATEGORIES: tuple[str, ...] = (
    "flat", "construction", "object", "nature", "sky", "human", "vehicle",
)  # fmt: skip
"""The 7 evaluated categories (labels.py's category column, "void" being never evaluated)."""

CLASS_CATEGORY: tuple[int, ...] = (0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 4, 5, 5, 6, 6, 6, 6, 6, 6)
"""The category (index into :data:`CITYSCAPES_CATEGORIES`) of each train ID."""

AVERAGE_INSTANCE_SIZE: dict[int, float] = {
    11: 3462.4756337644, 12: 3930.4788056518, 13: 12794.0202738185, 14: 27855.1264367816,
    15: 35732.1511111111, 16: 67583.7075812274, 17: 6298.7200839748, 18: 4672.3249222261,
}  # fmt: skip
"""Train IDs of the 8 evaluated classes with instances (person, rider, car, truck, bus, train,
motorcycle, bicycle) -> their average instance size in pixels over the training set: the weights
of the instance-level iIoU (``args.avgClassSize`` of evalPixelLevelSemanticLabeling.py)."""

INSTANCE_ID_DIVISOR = 1000
"""``*_gtFine_instanceIds.png`` holds ``label_id * 1000 + k`` for instance ``k`` of a class with
instances and the bare label ID elsewhere (crowds included); the evaluator counts values > 1000."""


def train_id_to_label_id_lut() -> np.ndarray:
    """A (256,) uint8 lookup table from train ID to label ID (0, "unlabeled", for 19..255)."""
    lut = np.zeros(256, dtype=np.uint8)
    lut[: len(TRAIN_ID_TO_LABEL_ID)] = TRAIN_ID_TO_LABEL_ID
    return lut
