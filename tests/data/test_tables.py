"""Tables copied from external sources, each compared entry by entry with an independent copy.

Cityscapes: cityscapesScripts' ``cityscapesscripts/helpers/labels.py`` (v2.3.0), copied here by hand,
and the installed package when there is one (it is not a dev dependency: it pulls in matplotlib,
pyquaternion, coloredlogs, requests and the ``typing`` backport for one table). VOC: the colour
map's generating formula (VOCdevkit ``VOCcode/VOClabelcolormap.m``) and colours read off VOC PNGs.
ADE20K: the order of SceneParsing's ``objectInfo150.csv`` (first and last names).
"""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from deeplabv3plus.data.ade20k_meta import ADE20K_CLASSES, ade20k_class_names
from deeplabv3plus.data.cityscapes_meta import (
    CITYSCAPES_CLASSES,
    CITYSCAPES_PALETTE,
    LABEL_ID_TO_TRAIN_ID,
    label_id_lut,
)
from deeplabv3plus.data.voc_meta import VOC_CLASSES, voc_palette

# labels.py v2.3.0: (name, id, trainId, colour), every row (the licence plate's id -1 is never in a PNG).
CITYSCAPES_LABELS_PY = [
    ("unlabeled", 0, 255, (0, 0, 0)), ("ego vehicle", 1, 255, (0, 0, 0)),
    ("rectification border", 2, 255, (0, 0, 0)), ("out of roi", 3, 255, (0, 0, 0)),
    ("static", 4, 255, (0, 0, 0)), ("dynamic", 5, 255, (111, 74, 0)), ("ground", 6, 255, (81, 0, 81)),
    ("road", 7, 0, (128, 64, 128)), ("sidewalk", 8, 1, (244, 35, 232)), ("parking", 9, 255, (250, 170, 160)),
    ("rail track", 10, 255, (230, 150, 140)), ("building", 11, 2, (70, 70, 70)), ("wall", 12, 3, (102, 102, 156)),
    ("fence", 13, 4, (190, 153, 153)), ("guard rail", 14, 255, (180, 165, 180)), ("bridge", 15, 255, (150, 100, 100)),
    ("tunnel", 16, 255, (150, 120, 90)), ("pole", 17, 5, (153, 153, 153)), ("polegroup", 18, 255, (153, 153, 153)),
    ("traffic light", 19, 6, (250, 170, 30)), ("traffic sign", 20, 7, (220, 220, 0)),
    ("vegetation", 21, 8, (107, 142, 35)), ("terrain", 22, 9, (152, 251, 152)), ("sky", 23, 10, (70, 130, 180)),
    ("person", 24, 11, (220, 20, 60)), ("rider", 25, 12, (255, 0, 0)), ("car", 26, 13, (0, 0, 142)),
    ("truck", 27, 14, (0, 0, 70)), ("bus", 28, 15, (0, 60, 100)), ("caravan", 29, 255, (0, 0, 90)),
    ("trailer", 30, 255, (0, 0, 110)), ("train", 31, 16, (0, 80, 100)), ("motorcycle", 32, 17, (0, 0, 230)),
    ("bicycle", 33, 18, (119, 11, 32)), ("license plate", -1, -1, (0, 0, 142)),
]  # fmt: skip


def _check_cityscapes_against(rows) -> None:
    lut = label_id_lut()
    for name, label_id, train_id, colour in rows:
        if label_id < 0:
            continue
        assert lut[label_id] == train_id, name
        assert LABEL_ID_TO_TRAIN_ID.get(label_id, 255) == train_id, name
        if train_id != 255:
            assert CITYSCAPES_CLASSES[train_id] == name and CITYSCAPES_PALETTE[train_id] == colour, name
    assert (lut[34:] == 255).all()  # no label ID above 33 exists
    assert len(CITYSCAPES_CLASSES) == len({r[2] for r in rows if 0 <= r[2] < 255}) == 19


def test_cityscapes_label_ids_train_ids_names_and_colours_match_labels_py():
    _check_cityscapes_against(CITYSCAPES_LABELS_PY)


@pytest.mark.skipif(
    importlib.util.find_spec("cityscapesscripts") is None,
    reason="cityscapesscripts is not installed (not a dev dependency; the hand copy above is checked instead)",
)
def test_cityscapes_tables_match_the_installed_cityscapesscripts():
    from cityscapesscripts.helpers.labels import labels

    _check_cityscapes_against([(lab.name, lab.id, lab.trainId, lab.color) for lab in labels])


def _voc_colour(index: int) -> tuple[int, int, int]:
    """VOClabelcolormap.m: bit k of the class index goes, in turn, to the top bits of R, G, B."""
    rgb = [0, 0, 0]
    for bit in range(24):  # bits 0..23 of the index; 8 bits per channel
        channel, depth = bit % 3, bit // 3
        if (index >> bit) & 1:
            rgb[channel] |= 1 << (7 - depth)
    return tuple(rgb)


def test_voc_palette_follows_its_generating_formula_and_the_colours_of_the_voc_pngs():
    palette = voc_palette()
    assert palette.shape == (256, 3) and palette.dtype == np.uint8
    for i in range(256):
        assert tuple(palette[i]) == _voc_colour(i), i
    # read off VOC's SegmentationClass PNGs: background, aeroplane, bicycle, person, tvmonitor, void
    known = {
        0: (0, 0, 0),
        1: (128, 0, 0),
        2: (0, 128, 0),
        15: (192, 128, 128),
        20: (0, 64, 128),
        255: (224, 224, 192),
    }
    assert {i: tuple(palette[i]) for i in known} == known
    assert len(VOC_CLASSES) == 21 and VOC_CLASSES[15] == "person" and VOC_CLASSES[20] == "tvmonitor"


# objectInfo150.csv (ADEChallengeData2016), first name of each row: rows 1-20 and 140-150.
OBJECT_INFO_150_FIRST = [
    "wall", "building", "sky", "floor", "tree", "ceiling", "road", "bed", "windowpane", "grass", "cabinet",
    "sidewalk", "person", "earth", "door", "table", "mountain", "plant", "curtain", "chair",
]  # fmt: skip
OBJECT_INFO_150_LAST = [
    "fan", "pier", "crt screen", "plate", "monitor", "bulletin board", "shower", "radiator", "glass", "clock", "flag",
]  # fmt: skip


def test_ade20k_class_names_follow_object_info_150():
    assert len(ADE20K_CLASSES) == len(set(ADE20K_CLASSES)) == 150
    assert list(ADE20K_CLASSES[:20]) == OBJECT_INFO_150_FIRST
    assert list(ADE20K_CLASSES[-11:]) == OBJECT_INFO_150_LAST
    # the reference's 151-class convention puts "other" (pixel value 0) first: value v is class v
    names = ade20k_class_names("reference")
    assert names[0] == "other" and names[1] == "wall" and names[150] == "flag"
