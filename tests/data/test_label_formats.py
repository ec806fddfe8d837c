"""Label-format decoders on tiny files the tests write: colour, binary, index masks and COCO JSON."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from coco_rle import rle_counts  # tests/data/coco_rle.py
from PIL import Image

from deeplabv3plus.data.label_formats import (
    COCO_TO_VOC,
    COCO_VOC_TABLE,
    MASK_FORMATS,
    LabelFormatError,
    coco_semantic_mask,
    decode_rle,
    rasterize_polygon,
    read_binary_mask,
    read_coco,
    read_color_mask,
    read_index_mask,
    write_coco_masks,
)
from deeplabv3plus.data.voc_meta import VOC_CLASSES

H, W = 17, 23
COLORS = [[0, 0, 0], [128, 0, 0], [0, 128, 0]]


def save(array: np.ndarray, path: Path, mode: str = None) -> Path:
    image = Image.fromarray(array)
    if mode == "P":
        image = image.convert("P")
    image.save(path)
    return path


def assert_one_line_naming(error: pytest.ExceptionInfo, path, *words: str) -> None:
    message = str(error.value)
    assert "\n" not in message
    assert str(path) in message
    for word in words:
        assert word in message, message


# ---------------------------------------------------------------------------------------------------
# Colour masks.


def colour_mask(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """An (H, W, 3) colour mask with classes 0..2 and void pixels, and its expected class mask."""
    rng = np.random.default_rng(seed)
    classes = rng.integers(0, 3, (H, W)).astype(np.uint8)
    classes[rng.random((H, W)) < 0.1] = 255
    rgb = np.zeros((H, W, 3), dtype=np.uint8)
    for c, color in enumerate(COLORS):
        rgb[classes == c] = color
    rgb[classes == 255] = [224, 224, 192]
    return rgb, classes


@pytest.mark.parametrize(
    "table",
    [
        COLORS,
        {"background": COLORS[0], "road": COLORS[1], "tree": COLORS[2]},
        [
            {"name": "background", "color": COLORS[0]},
            {"name": "road", "color": COLORS[1]},
            {"name": "t", "color": COLORS[2]},
        ],
    ],
)
def test_colour_masks_decode_through_each_form_of_colour_table(tmp_path, table):
    rgb, expected = colour_mask(0)
    path = save(rgb, tmp_path / "a.png")
    got = read_color_mask(path, table, ignore_colors=[[224, 224, 192]])
    assert got.dtype == np.uint8 and np.array_equal(got, expected)
    assert np.array_equal(MASK_FORMATS["rgb"](path, table, [[224, 224, 192]]), expected)


def test_unknown_colours_are_reported_each_with_its_pixel_count_naming_the_file(tmp_path):
    rgb, _ = colour_mask(1)
    rgb[rgb.sum(axis=2) > 600] = COLORS[0]  # no void colour: it is not in the table here
    rgb[0, :5] = [12, 34, 56]
    rgb[1, :2] = [1, 2, 3]
    path = save(rgb, tmp_path / "unknown.png")
    with pytest.raises(LabelFormatError) as info:
        read_color_mask(path, COLORS)
    assert_one_line_naming(
        info, path, "2 colours not in the colour table", "(12, 34, 56) on 5 px", "(1, 2, 3) on 2 px"
    )
    assert str(info.value).index("(12, 34, 56)") < str(info.value).index("(1, 2, 3)")


def test_a_palette_png_given_as_a_colour_mask_points_to_the_index_format(tmp_path):
    path = save(np.zeros((H, W), np.uint8), tmp_path / "p.png", mode="P")
    with pytest.raises(LabelFormatError) as info:
        read_color_mask(path, COLORS)
    assert_one_line_naming(info, path, "is a P image", "expected an RGB colour mask", "'index' format")


def test_an_opaque_rgba_colour_mask_is_read_as_its_rgb(tmp_path):
    rgb, expected = colour_mask(2)
    rgba = np.concatenate([rgb, np.full((H, W, 1), 255, np.uint8)], axis=2)
    path = save(rgba, tmp_path / "opaque.png")
    with Image.open(path) as im:
        assert im.mode == "RGBA"
    got = read_color_mask(path, COLORS, ignore_colors=[[224, 224, 192]])
    assert np.array_equal(got, expected)


@pytest.mark.parametrize("alpha", [0, 254])
def test_a_partly_transparent_rgba_colour_mask_is_refused_in_one_line_naming_the_file(tmp_path, alpha):
    rgb, _ = colour_mask(3)
    rgba = np.concatenate([rgb, np.full((H, W, 1), 255, np.uint8)], axis=2)
    rgba[4, 5, 3] = alpha  # one pixel not opaque; its colour is a valid class colour
    path = save(rgba, tmp_path / "transparent.png")
    with pytest.raises(LabelFormatError) as info:
        read_color_mask(path, COLORS, ignore_colors=[[224, 224, 192]])
    assert_one_line_naming(
        info, path, "RGBA image with transparent pixels", "expected an opaque RGB colour mask"
    )


def test_a_colour_given_to_two_classes_is_an_error_naming_colors():
    with pytest.raises(ValueError, match=r"^colors: colours given to more than one class: \[\(0, 0, 0\)\]$"):
        read_color_mask("unused.png", [[0, 0, 0], [0, 0, 0]])


def test_an_ignore_colour_that_is_also_a_class_colour_is_an_error_naming_ignore_colors(tmp_path):
    path = save(np.zeros((H, W, 3), np.uint8), tmp_path / "a.png")
    with pytest.raises(
        ValueError, match=r"^ignore_colors: colours \[\(128, 0, 0\)\] are also class colours$"
    ):
        read_color_mask(path, COLORS, ignore_colors=[[128, 0, 0]])


# ---------------------------------------------------------------------------------------------------
# Binary and index masks.


def test_binary_masks_map_0_to_background_and_255_to_class_1(tmp_path):
    rng = np.random.default_rng(2)
    fg = rng.random((H, W)) < 0.4
    path = save(np.where(fg, 255, 0).astype(np.uint8), tmp_path / "bin.png")
    got = read_binary_mask(path)
    assert got.dtype == np.uint8 and np.array_equal(got, fg.astype(np.uint8))


def test_a_binary_mask_with_other_values_is_an_error_naming_the_file_and_the_values(tmp_path):
    path = save(np.array([[0, 1], [128, 255]], np.uint8), tmp_path / "zero_one.png")
    with pytest.raises(LabelFormatError) as info:
        read_binary_mask(path)
    assert_one_line_naming(info, path, "values [0, 1, 128, 255]", "expected a binary mask of 0 and 255")


@pytest.mark.parametrize("fmt", sorted(MASK_FORMATS))
def test_every_mask_format_reports_a_truncated_file_in_one_line_naming_it(tmp_path, fmt):
    path = save(np.zeros((H, W), np.uint8), tmp_path / "cut.png")
    path.write_bytes(path.read_bytes()[:40])
    read = MASK_FORMATS[fmt]
    with pytest.raises(LabelFormatError) as info:
        read(path, COLORS) if fmt == "rgb" else read(path)
    assert_one_line_naming(info, path, "cannot read label")


def test_index_masks_are_read_as_stored_and_rgb_ones_refused(tmp_path):
    values = np.arange(H * W, dtype=np.uint8).reshape(H, W) % 7
    assert np.array_equal(read_index_mask(save(values, tmp_path / "l.png")), values)
    rgb = save(np.zeros((H, W, 3), np.uint8), tmp_path / "rgb.png")
    with pytest.raises(LabelFormatError) as info:
        read_index_mask(rgb)
    assert_one_line_naming(info, rgb, "RGB image", "expected class indices")


# ---------------------------------------------------------------------------------------------------
# COCO: polygons and RLE against independent computations.


def winding_number_inside(px: float, py: float, xy: np.ndarray) -> bool:
    """Point-in-polygon by the winding number (a loop; a different rule from the even-odd one)."""
    winding = 0
    for (x0, y0), (x1, y1) in zip(xy, np.roll(xy, -1, axis=0)):
        cross = (x1 - x0) * (py - y0) - (px - x0) * (y1 - y0)
        if y0 <= py < y1 and cross > 0:
            winding += 1
        elif y1 <= py < y0 and cross < 0:
            winding -= 1
    return winding != 0


def star_polygon(seed: int) -> np.ndarray:
    """A random simple polygon: vertices at increasing angles around a centre, random radii."""
    rng = np.random.default_rng(seed)
    angles = np.sort(rng.uniform(0, 2 * math.pi, 9))
    radii = rng.uniform(2, 9, 9)
    cx, cy = rng.uniform(6, W - 6), rng.uniform(5, H - 5)
    return np.stack([cx + radii * np.cos(angles), cy + radii * np.sin(angles)], axis=1)


@pytest.mark.parametrize("seed", range(4))
def test_polygons_cover_exactly_the_pixels_whose_centres_are_inside(seed):
    xy = star_polygon(seed)
    got = rasterize_polygon(xy.reshape(-1).tolist(), H, W)
    expected = np.array([[winding_number_inside(c + 0.5, r + 0.5, xy) for c in range(W)] for r in range(H)])
    assert got.any() and np.array_equal(got, expected)


def rle_string(counts: list[int]) -> str:
    """pycocotools' compressed RLE, written from the description of maskApi.c's rleToString."""
    out = []
    for i, count in enumerate(counts):
        x = count - counts[i - 2] if i > 2 else count
        while True:
            c = x & 0x1F
            x >>= 5
            more = x != -1 if c & 0x10 else x != 0
            if more:
                c |= 0x20
            out.append(chr(c + 48))
            if not more:
                break
    return "".join(out)


@pytest.mark.parametrize("seed", range(3))
def test_rle_decodes_what_an_independent_encoder_wrote_both_as_counts_and_as_a_string(seed):
    rng = np.random.default_rng(seed)
    mask = rng.random((H, W)) < 0.5
    mask[2:15, 3:20] = seed == 1  # long runs: multi-character counts and negative deltas
    counts = rle_counts(mask)
    assert np.array_equal(decode_rle({"size": [H, W], "counts": counts}), mask)
    assert np.array_equal(decode_rle({"size": [H, W], "counts": rle_string(counts)}), mask)


# ---------------------------------------------------------------------------------------------------
# COCO: semantic masks.


def rect(x0: float, y0: float, x1: float, y1: float) -> list[list[float]]:
    return [[x0, y0, x1, y0, x1, y1, x0, y1]]


def write_coco(tmp_path: Path, annotations: list[dict], categories=None, name="ann.json") -> Path:
    data = {
        "images": [{"id": 7, "file_name": "img/a.jpg", "height": H, "width": W}],
        "annotations": [{"id": i + 1, "image_id": 7, "iscrowd": 0, **a} for i, a in enumerate(annotations)],
        "categories": categories
        or [{"id": 1, "name": "person"}, {"id": 3, "name": "car"}, {"id": 9, "name": "boat"}],
    }
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return path


def test_overlapping_annotations_let_the_smaller_one_win_and_equal_areas_the_later(tmp_path):
    path = write_coco(
        tmp_path,
        [
            {"category_id": 1, "segmentation": rect(6, 4, 10, 8)},  # small, first in the file
            {"category_id": 3, "segmentation": rect(0, 0, 20, 15)},  # large
            {"category_id": 9, "segmentation": rect(8, 4, 12, 8)},  # as small as the first, later
        ],
    )
    mask = coco_semantic_mask(read_coco(path), "img/a.jpg", {"person": 1, "car": 2, 9: 3})
    expected = np.zeros((H, W), np.uint8)
    expected[0:15, 0:20] = 2
    expected[4:8, 6:10] = 1
    expected[4:8, 8:12] = 3
    assert np.array_equal(mask, expected)


def test_crowd_regions_are_ignored_except_where_an_object_is_annotated(tmp_path):
    crowd_mask = np.zeros((H, W), bool)
    crowd_mask[2:12, 2:18] = True
    path = write_coco(
        tmp_path,
        [
            {
                "category_id": 1,
                "iscrowd": 1,
                "segmentation": {"size": [H, W], "counts": rle_counts(crowd_mask)},
            },
            {"category_id": 1, "segmentation": rect(4, 4, 7, 9)},
        ],
    )
    mask = coco_semantic_mask(read_coco(path), "img/a.jpg", {1: 1})
    expected = np.where(crowd_mask, 255, 0).astype(np.uint8)
    expected[4:9, 4:7] = 1
    assert np.array_equal(mask, expected)


@pytest.mark.parametrize(("unmapped", "value"), [("background", 0), ("ignore", 255)])
def test_unmapped_categories_become_background_or_ignore_on_request(tmp_path, unmapped, value):
    path = write_coco(
        tmp_path,
        [
            {"category_id": 3, "segmentation": rect(0, 0, 10, 10)},
            {"category_id": 9, "segmentation": rect(2, 2, 5, 5)},
        ],
    )
    mask = coco_semantic_mask(read_coco(path), "img/a.jpg", {3: 1}, unmapped=unmapped)
    expected = np.zeros((H, W), np.uint8)
    expected[0:10, 0:10] = 1
    expected[2:5, 2:5] = value
    assert np.array_equal(mask, expected)


def test_unmapped_categories_are_an_error_by_default_naming_them(tmp_path):
    path = write_coco(tmp_path, [{"category_id": 9, "segmentation": rect(2, 2, 5, 5)}])
    with pytest.raises(LabelFormatError) as info:
        coco_semantic_mask(read_coco(path), "img/a.jpg", {3: 1})
    assert_one_line_naming(info, path, "image 'img/a.jpg'", "categories 9 (boat)", "does not cover")


def test_coco_to_voc_maps_the_20_voc_classes_by_coco_2017_id():
    assert len(COCO_TO_VOC) == 20 and sorted(COCO_TO_VOC.values()) == list(range(1, 21))
    assert [row.voc_name for row in sorted(COCO_VOC_TABLE, key=lambda r: r.voc_index)] == list(
        VOC_CLASSES[1:]
    )
    assert {row.coco_name: row.coco_id for row in COCO_VOC_TABLE}["couch"] == 63
    assert COCO_TO_VOC[1] == VOC_CLASSES.index("person") and COCO_TO_VOC[72] == VOC_CLASSES.index("tvmonitor")


def test_coco_masks_are_written_as_index_pngs_under_the_image_file_names(tmp_path):
    path = write_coco(tmp_path, [{"category_id": 9, "segmentation": rect(2, 2, 5, 5)}])
    (written,) = write_coco_masks(path, COCO_TO_VOC, tmp_path / "masks", unmapped="background")
    assert written == tmp_path / "masks" / "img" / "a.png"
    mask = read_index_mask(written)
    assert mask.shape == (H, W) and mask[3, 3] == COCO_TO_VOC[9] and mask.sum() == 9 * COCO_TO_VOC[9]


# ---------------------------------------------------------------------------------------------------
# COCO: every bad input is one line naming the file and what was expected.


@pytest.mark.parametrize(
    ("annotation", "words"),
    [
        ({"category_id": 1, "segmentation": [[1, 1, 5, 1]]}, ["4 coordinates", "at least 6"]),
        ({"category_id": 1, "segmentation": []}, ["box-only", "expected polygons or RLE"]),
        (
            {"category_id": 1, "segmentation": {"size": [H, W + 1], "counts": [H * (W + 1)]}},
            ["expected the image's"],
        ),
        (
            {"category_id": 1, "segmentation": {"size": [H, W], "counts": [5, 5]}},
            ["cover 10 pixels", f"expected {H * W}"],
        ),
        (
            {"category_id": 1, "segmentation": {"size": [H, W], "counts": "0\x7f"}},
            ["bad compressed 'counts'"],
        ),
        ({"category_id": 1, "segmentation": "polygon"}, ["expected 'segmentation' as polygons"]),
        ({"category_id": 4, "segmentation": rect(0, 0, 1, 1)}, ["category_id 4 is not in 'categories'"]),
        (
            {"category_id": 1, "image_id": 99, "segmentation": rect(0, 0, 1, 1)},
            ["image_id 99 is not in 'images'"],
        ),
    ],
)
def test_bad_coco_annotations_are_one_line_errors_naming_the_file(tmp_path, annotation, words):
    path = write_coco(tmp_path, [annotation])
    with pytest.raises(LabelFormatError) as info:
        coco_semantic_mask(read_coco(path), "img/a.jpg", {1: 1, 3: 2, 9: 3})
    assert_one_line_naming(info, path, *words)


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("{not json", ["cannot read JSON"]),
        ("[]", ["expected a JSON object"]),
        ('{"images": [], "annotations": []}', ["expected a list 'categories'"]),
        (
            '{"images": [{"id": 1}], "annotations": [], "categories": []}',
            ["expected image objects with a 'file_name'"],
        ),
    ],
)
def test_malformed_coco_files_are_one_line_errors_naming_the_file(tmp_path, text, words):
    path = tmp_path / "bad.json"
    path.write_text(text)
    with pytest.raises(LabelFormatError) as info:
        read_coco(path)
    assert_one_line_naming(info, path, *words)


def test_a_misspelt_mapping_key_surfaces_as_an_unmapped_category(tmp_path):
    path = write_coco(tmp_path, [{"category_id": 1, "segmentation": rect(2, 2, 5, 5)}])
    with pytest.raises(LabelFormatError) as info:
        coco_semantic_mask(read_coco(path), "img/a.jpg", {"persn": 1})
    assert_one_line_naming(info, path, "categories 1 (person)", "does not cover")


def test_a_mapping_to_a_value_outside_the_mask_range_is_an_error_naming_the_file(tmp_path):
    path = write_coco(tmp_path, [])
    with pytest.raises(LabelFormatError) as info:
        coco_semantic_mask(read_coco(path), "img/a.jpg", {"person": 256})
    assert_one_line_naming(info, path, "mapping 'person'", "expected a class index 0..255")
