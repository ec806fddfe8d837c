"""Label files as labelling tools export them, decoded to class-index masks.

Every decoder returns an (H, W) uint8 mask of class indices with ``IGNORE_INDEX`` (255) on void
pixels, and raises :class:`LabelFormatError` with one line naming the file and what was expected.

- **index** (:func:`read_index_mask`): "L" or "P" PNGs whose values are the classes (VOC, Cityscapes).
- **rgb** (:func:`read_color_mask`): RGB masks with one colour per class (CVAT's "Segmentation
  mask 1.1" export); the colour table is a list of ``[r, g, b]`` in class order, a
  ``{name: [r, g, b]}`` dict, or a list of ``{"name", "color"}`` (the forms ``data.rgb.colors``
  takes, inline or from a YAML file).
- **binary** (:func:`read_binary_mask`): 0/255 foreground masks, 0 -> class 0 and 255 -> class 1.
  Explicit, because 255 is otherwise the ignore value: read as an index mask, every foreground
  pixel of a binary mask would be ignored.
- **coco** (:func:`read_coco`, :func:`coco_semantic_mask`): COCO instance JSON (polygons,
  uncompressed and compressed RLE), as CVAT, Label Studio and Roboflow export it, rasterised to a
  semantic mask per image through a category -> class mapping; :data:`COCO_TO_VOC` is the COCO ->
  VOC mapping of the COCO pre-training stage.

Layer 2 (docs/architecture.md): numpy, PIL and json only.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, Union

import numpy as np
from PIL import Image

from .. import catalog
from ..catalog import IGNORE_INDEX, load

PathLike = Union[str, Path]


class LabelFormatError(ValueError):
    """A label file does not hold what its declared format expects; the message names the file.

    A one-argument ``ValueError`` like ``data.datasets.DatasetError``, so it survives DataLoader
    workers (they re-raise with ``type(exc)(message)``) and the CLI reports it as bad input.
    """


def _open_array(path: PathLike) -> tuple[np.ndarray, str]:
    try:
        with Image.open(path) as im:
            return np.array(im), im.mode
    except Exception as e:
        raise LabelFormatError(f"cannot read label '{path}': {e}") from None


# ---------------------------------------------------------------------------------------------------
# Index masks.


def read_index_mask(path: PathLike) -> np.ndarray:
    """Read an "L" or "P" PNG whose pixel values are the class indices: (H, W) uint8, as stored."""
    array, mode = _open_array(path)
    if mode not in ("L", "P"):
        raise LabelFormatError(
            f"label '{path}' is a {mode} image; expected class indices in an 8-bit 'L' or palette 'P' PNG"
        )
    return array


# ---------------------------------------------------------------------------------------------------
# RGB colour masks.


ColorTable = Union[Sequence[Sequence[int]], Mapping[str, Sequence[int]], Sequence[Mapping[str, Any]]]


def parse_color_table(table: ColorTable) -> tuple[list[str], np.ndarray]:
    """Class names and an (C, 3) uint8 colour array from a colour table (class index = position).

    Accepted: ``[[r, g, b], ...]`` (names ``class_0``...), ``{name: [r, g, b], ...}`` (in the
    dict's order) or ``[{"name": ..., "color": [r, g, b]}, ...]``.

    Raises:
        ValueError: a malformed table or a colour given to two classes (one line naming ``colors``).
    """
    if isinstance(table, Mapping):
        names, colors = [str(k) for k in table], list(table.values())
    elif isinstance(table, Sequence) and not isinstance(table, (str, bytes)):
        if all(isinstance(entry, Mapping) for entry in table) and table:
            try:
                names = [str(entry["name"]) for entry in table]
                colors = [entry["color"] for entry in table]
            except KeyError:
                raise ValueError("colors: expected entries {name: ..., color: [r, g, b]}") from None
        else:
            names, colors = [f"class_{i}" for i in range(len(table))], list(table)
    else:
        raise ValueError(f"colors: expected a list of [r, g, b] or a {{name: [r, g, b]}} dict, got {table!r}")
    if not colors:
        raise ValueError("colors: expected at least one class colour, got an empty table")
    array = np.zeros((len(colors), 3), dtype=np.uint8)
    for i, color in enumerate(colors):
        if (
            not isinstance(color, Sequence)
            or len(color) != 3
            or not all(isinstance(v, (int, np.integer)) and 0 <= v <= 255 for v in color)
        ):
            raise ValueError(
                f"colors: class {i} ({names[i]}): expected [r, g, b] with 0..255 integers, got {color!r}"
            )
        array[i] = color
    codes = _color_codes(array)
    if len(set(codes.tolist())) != len(codes):
        dupes = sorted({tuple(c) for c, n in zip(array.tolist(), codes) if (codes == n).sum() > 1})
        raise ValueError(f"colors: colours given to more than one class: {dupes}")
    return names, array


def _color_codes(rgb: np.ndarray) -> np.ndarray:
    """(..., 3) uint8 colours -> (...) int64 codes r * 65536 + g * 256 + b."""
    rgb = rgb.astype(np.int64)
    return (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]


def decode_color_mask(
    rgb: np.ndarray,
    colors: ColorTable,
    *,
    ignore_colors: Iterable[Sequence[int]] = (),
    path: PathLike = "<array>",
) -> np.ndarray:
    """Map an (H, W, 3) uint8 colour mask to (H, W) uint8 class indices.

    Args:
        rgb: (H, W, 3) uint8.
        colors: the colour table (see :func:`parse_color_table`); class c has colour ``colors[c]``.
        ignore_colors: colours that become ``IGNORE_INDEX`` (e.g. VOC's void ``[224, 224, 192]``).
        path: the file name, for errors.

    Raises:
        LabelFormatError: colours in neither table, each reported with its pixel count.
    """
    _, table = parse_color_table(colors)
    if len(table) > IGNORE_INDEX:
        raise ValueError(f"colors: at most {IGNORE_INDEX} classes fit a uint8 mask, got {len(table)}")
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise LabelFormatError(f"label '{path}' has shape {rgb.shape}; expected an (H, W, 3) RGB colour mask")
    ignore = list(ignore_colors)
    if ignore:
        try:
            _, ignore_table = parse_color_table(ignore)
        except ValueError as e:
            raise ValueError("ignore_colors" + str(e).removeprefix("colors")) from None
        clash = set(_color_codes(ignore_table).tolist()) & set(_color_codes(table).tolist())
        if clash:
            shown = [(c >> 16, (c >> 8) & 255, c & 255) for c in sorted(clash)]
            raise ValueError(f"ignore_colors: colours {shown} are also class colours")
    else:
        ignore_table = np.zeros((0, 3), np.uint8)
    keys = np.concatenate([_color_codes(table), _color_codes(ignore_table)])
    values = np.concatenate([np.arange(len(table)), np.full(len(keys) - len(table), IGNORE_INDEX)]).astype(
        np.uint8
    )
    codes, inverse, counts = np.unique(_color_codes(rgb), return_inverse=True, return_counts=True)
    # One lookup per distinct colour, not per pixel: masks hold a handful of colours.
    found = np.isin(codes, keys)
    if not found.all():
        unknown = sorted(zip(codes[~found].tolist(), counts[~found].tolist()), key=lambda cn: -cn[1])
        listed = ", ".join(f"({c >> 16}, {(c >> 8) & 255}, {c & 255}) on {n} px" for c, n in unknown)
        raise LabelFormatError(
            f"label '{path}' has {len(unknown)} colours not in the colour table: {listed} "
            f"(expected one of the {len(table)} class colours{' or the ignore colours' if len(keys) > len(table) else ''})"
        )
    lut = dict(zip(keys.tolist(), values.tolist()))
    per_code = np.array([lut[c] for c in codes.tolist()], dtype=np.uint8)
    return per_code[inverse.reshape(-1)].reshape(rgb.shape[:2])


def read_color_mask(
    path: PathLike, colors: ColorTable, ignore_colors: Iterable[Sequence[int]] = ()
) -> np.ndarray:
    """Read an RGB colour mask file and decode it with :func:`decode_color_mask`: (H, W) uint8.

    "RGBA" files are accepted when fully opaque (alpha dropped); any other mode is an error.
    """
    parse_color_table(colors)  # a bad table is reported as such, before any file is opened
    array, mode = _open_array(path)
    if mode == "RGBA":
        if (array[..., 3] != 255).any():
            raise LabelFormatError(
                f"label '{path}' is an RGBA image with transparent pixels; expected an opaque RGB colour mask"
            )
        array = array[..., :3]
    elif mode != "RGB":
        hint = " (palette PNGs hold class indices: use the 'index' format)" if mode == "P" else ""
        raise LabelFormatError(f"label '{path}' is a {mode} image; expected an RGB colour mask{hint}")
    return decode_color_mask(array, colors, ignore_colors=ignore_colors, path=path)


# ---------------------------------------------------------------------------------------------------
# Binary 0/255 masks.


def decode_binary_mask(array: np.ndarray, *, path: PathLike = "<array>") -> np.ndarray:
    """Map an (H, W) 0/255 mask to (H, W) uint8 classes: 0 -> 0 (background), 255 -> 1 (foreground).

    Raises:
        LabelFormatError: another value (e.g. the 1s of a 0/1 mask, the greys of a resized or JPEG
            mask) or more than one channel.
    """
    if array.ndim != 2:
        raise LabelFormatError(
            f"label '{path}' has shape {array.shape}; expected a single-channel 0/255 mask"
        )
    if array.dtype == bool:  # PIL's mode "1"
        return array.astype(np.uint8)
    values = np.unique(array)
    bad = values[(values != 0) & (values != 255)]
    if bad.size:
        shown = ", ".join(str(v) for v in values[:20].tolist()) + (", ..." if values.size > 20 else "")
        raise LabelFormatError(
            f"label '{path}' has values [{shown}]; expected a binary mask of 0 and 255 only"
        )
    return (array == 255).astype(np.uint8)


def read_binary_mask(path: PathLike) -> np.ndarray:
    """Read a 0/255 "L" (or 1-bit) mask file and decode it with :func:`decode_binary_mask`."""
    array, mode = _open_array(path)
    if mode not in ("L", "1"):
        raise LabelFormatError(f"label '{path}' is a {mode} image; expected a greyscale 0/255 binary mask")
    return decode_binary_mask(array, path=path)


MASK_FORMATS = {name: load(e.reader) for name, e in catalog.MASK_FORMATS.items() if e.reader is not None}
"""Mask-file decoders by format name (``data.mask_format``, ``deeplabv3plus.catalog.MASK_FORMATS``);
"coco" is JSON, see below."""


# ---------------------------------------------------------------------------------------------------
# COCO: the COCO -> VOC table.


class CocoToVoc(NamedTuple):
    """One row of the COCO -> PASCAL VOC category table."""

    coco_id: int
    coco_name: str
    voc_index: int
    voc_name: str


COCO_VOC_TABLE: tuple[CocoToVoc, ...] = (
    CocoToVoc(5, "airplane", 1, "aeroplane"),
    CocoToVoc(2, "bicycle", 2, "bicycle"),
    CocoToVoc(16, "bird", 3, "bird"),
    CocoToVoc(9, "boat", 4, "boat"),
    CocoToVoc(44, "bottle", 5, "bottle"),
    CocoToVoc(6, "bus", 6, "bus"),
    CocoToVoc(3, "car", 7, "car"),
    CocoToVoc(17, "cat", 8, "cat"),
    CocoToVoc(62, "chair", 9, "chair"),
    CocoToVoc(21, "cow", 10, "cow"),
    CocoToVoc(67, "dining table", 11, "diningtable"),
    CocoToVoc(18, "dog", 12, "dog"),
    CocoToVoc(19, "horse", 13, "horse"),
    CocoToVoc(4, "motorcycle", 14, "motorbike"),
    CocoToVoc(1, "person", 15, "person"),
    CocoToVoc(64, "potted plant", 16, "pottedplant"),
    CocoToVoc(20, "sheep", 17, "sheep"),
    CocoToVoc(63, "couch", 18, "sofa"),
    CocoToVoc(7, "train", 19, "train"),
    CocoToVoc(72, "tv", 20, "tvmonitor"),
)
"""The 20 VOC classes among COCO 2017's categories (ids and names of ``instances_*2017.json``).

DeepLabv3 (Chen et al. 2017, section 4.3) and DeepLabv3+ pre-train on COCO keeping only the VOC
classes; TF DeepLab's research/deeplab has no COCO conversion script, so the table is the one the
PyTorch ports share (torchvision references/segmentation/coco_utils.py, ``CAT_LIST``), every other
category being background."""

COCO_TO_VOC: dict[int, int] = {row.coco_id: row.voc_index for row in COCO_VOC_TABLE}
"""COCO category id -> VOC class index, for :func:`coco_semantic_mask` with ``unmapped="background"``."""


# ---------------------------------------------------------------------------------------------------
# COCO: reading the JSON.


@dataclass
class CocoImage:
    """One image record of a COCO file and its annotations (file order)."""

    id: int
    file_name: str
    height: int
    width: int
    annotations: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class CocoFile:
    """A parsed, checked COCO instance file.

    Attributes:
        path: the file, for messages.
        images: image records by ``file_name``, in file order.
        categories: category id -> name.
    """

    path: str
    images: dict[str, CocoImage]
    categories: dict[int, str]


def _fail(path: PathLike, what: str) -> LabelFormatError:
    return LabelFormatError(f"COCO file '{path}': {what}")


def _int_field(record: Mapping[str, Any], key: str, path: PathLike, where: str) -> int:
    value = record.get(key)
    if isinstance(value, bool) or not isinstance(value, int):
        raise _fail(path, f"{where}: expected an integer '{key}', got {value!r}")
    return value


def read_coco(path: PathLike) -> CocoFile:
    """Read and check a COCO instance JSON (``images``, ``annotations``, ``categories``).

    Raises:
        LabelFormatError: unreadable JSON, a missing or malformed field, an annotation of an unknown
            image or category, two images with the same ``file_name`` (one line naming the file).
    """
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError) as e:
        raise _fail(path, f"cannot read JSON: {e}") from None
    if not isinstance(data, dict):
        raise _fail(
            path, f"expected a JSON object with images, annotations and categories, got {type(data).__name__}"
        )
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key), list):
            raise _fail(path, f"expected a list '{key}' at the top level")
    categories: dict[int, str] = {}
    for cat in data["categories"]:
        if not isinstance(cat, dict):
            raise _fail(path, f"expected category objects, got {cat!r}")
        categories[_int_field(cat, "id", path, "a category")] = str(cat.get("name", ""))
    images: dict[str, CocoImage] = {}
    by_id: dict[int, CocoImage] = {}
    for rec in data["images"]:
        if not isinstance(rec, dict) or not isinstance(rec.get("file_name"), str):
            raise _fail(path, f"expected image objects with a 'file_name', got {rec!r}")
        where = f"image '{rec['file_name']}'"
        image = CocoImage(
            id=_int_field(rec, "id", path, where),
            file_name=rec["file_name"],
            height=_int_field(rec, "height", path, where),
            width=_int_field(rec, "width", path, where),
        )
        if image.height <= 0 or image.width <= 0:
            raise _fail(
                path, f"{where}: expected a positive height and width, got {image.height}x{image.width}"
            )
        if image.file_name in images:
            raise _fail(path, f"two images have the file_name '{image.file_name}'")
        images[image.file_name] = by_id[image.id] = image
    for ann in data["annotations"]:
        if not isinstance(ann, dict):
            raise _fail(path, f"expected annotation objects, got {ann!r}")
        where = f"annotation {ann.get('id', '?')}"
        image_id = _int_field(ann, "image_id", path, where)
        category_id = _int_field(ann, "category_id", path, where)
        if image_id not in by_id:
            raise _fail(path, f"{where}: image_id {image_id} is not in 'images'")
        if category_id not in categories:
            raise _fail(path, f"{where}: category_id {category_id} is not in 'categories'")
        by_id[image_id].annotations.append(ann)
    return CocoFile(path=str(path), images=images, categories=categories)


# ---------------------------------------------------------------------------------------------------
# COCO: RLE and polygons.


def rle_string_to_counts(s: str) -> list[int]:
    """Decode pycocotools' compressed RLE string to its run lengths.

    The format of ``rleToString`` / ``rleFrString`` in pycocotools' common/maskApi.c: each count is
    written as LEB128-like groups of 5 bits, least significant first, one character (value + 48)
    per group, bit 0x20 set on every group but the last, bit 0x10 of the last the sign; from the
    fourth count on (index > 2) the count is stored as its difference to the count two before.
    """
    counts: list[int] = []
    p = 0
    data = s.encode("ascii") if isinstance(s, str) else bytes(s)
    while p < len(data):
        x, k, more = 0, 0, True
        while more:
            if p >= len(data):
                raise ValueError("the string ends inside a count")
            c = data[p] - 48
            if not 0 <= c < 64:
                raise ValueError(f"character {chr(data[p])!r} is outside the RLE alphabet")
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            p += 1
            k += 1
            if not more and (c & 0x10):
                x -= 1 << (5 * k)  # sign-extend
        if len(counts) > 2:
            x += counts[-2]
        counts.append(x)
    return counts


def decode_rle(rle: Mapping[str, Any], *, where: str = "RLE") -> np.ndarray:
    """Decode a COCO RLE (``{"size": [h, w], "counts": list or str}``) to an (h, w) bool mask.

    Runs alternate background/foreground starting with background and walk the mask in
    column-major order (pycocotools' convention).

    Raises:
        ValueError: a malformed RLE or one whose runs do not cover exactly ``h * w`` pixels.
    """
    size = rle.get("size")
    if not (
        isinstance(size, (list, tuple)) and len(size) == 2 and all(isinstance(v, int) and v > 0 for v in size)
    ):
        raise ValueError(f"{where}: expected 'size' [height, width], got {size!r}")
    h, w = size
    raw = rle.get("counts")
    if isinstance(raw, (str, bytes)):
        try:
            counts = rle_string_to_counts(raw)
        except ValueError as e:
            raise ValueError(f"{where}: bad compressed 'counts' ({e})") from None
    elif isinstance(raw, list) and all(isinstance(v, int) and not isinstance(v, bool) for v in raw):
        counts = raw
    else:
        raise ValueError(f"{where}: expected 'counts' as a list of integers or a compressed RLE string")
    if any(v < 0 for v in counts):
        raise ValueError(f"{where}: negative run lengths in 'counts'")
    if sum(counts) != h * w:
        raise ValueError(f"{where}: the runs cover {sum(counts)} pixels; expected {h * w} ({h}x{w})")
    values = np.zeros(len(counts), dtype=bool)
    values[1::2] = True
    flat = np.repeat(values, counts)
    return flat.reshape(w, h).T


def rasterize_polygon(coords: Sequence[float], height: int, width: int) -> np.ndarray:
    """Rasterise one polygon ``[x1, y1, x2, y2, ...]`` (pixel units) to an (height, width) bool mask.

    COCO coordinates put pixel (row r, column c) on the square ``[c, c+1) x [r, r+1)``; a pixel is
    inside when its centre ``(c + 0.5, r + 0.5)`` is, by the even-odd rule. This differs from
    pycocotools' ``frPyObjects`` (which upsamples the outline 5x) only on pixels the outline
    crosses near their centre.
    """
    xy = np.asarray(coords, dtype=np.float64).reshape(-1, 2)
    ys = np.arange(height, dtype=np.float64)[:, None] + 0.5
    xs = np.arange(width, dtype=np.float64)[None, :] + 0.5
    inside = np.zeros((height, width), dtype=bool)
    for (x0, y0), (x1, y1) in zip(xy, np.roll(xy, -1, axis=0)):
        crosses = (y0 > ys) != (y1 > ys)  # (H, 1): the edge spans this row's centre line
        if not crosses.any():
            continue
        x_at = x0 + (ys - y0) * (x1 - x0) / np.where(y1 != y0, y1 - y0, 1.0)
        inside ^= crosses & (xs < x_at)
    return inside


def annotation_mask(ann: Mapping[str, Any], height: int, width: int, *, where: str) -> np.ndarray:
    """The (height, width) bool mask of one COCO annotation: polygons or RLE.

    Raises:
        ValueError: no segmentation (a box-only annotation), a polygon of fewer than 3 points or an
            odd number of coordinates, an RLE of another size than the image.
    """
    seg = ann.get("segmentation")
    if isinstance(seg, list):
        if not seg:
            raise ValueError(
                f"{where}: empty 'segmentation' (a box-only annotation?); expected polygons or RLE"
            )
        if all(isinstance(v, (int, float)) for v in seg):
            seg = [seg]  # some exporters write one flat polygon
        mask = np.zeros((height, width), dtype=bool)
        for poly in seg:
            if not (isinstance(poly, list) and all(isinstance(v, (int, float)) for v in poly)):
                raise ValueError(f"{where}: expected polygons as lists of numbers [x1, y1, x2, y2, ...]")
            if len(poly) < 6 or len(poly) % 2:
                raise ValueError(
                    f"{where}: a polygon has {len(poly)} coordinates; expected an even number, at least 6"
                )
            mask |= rasterize_polygon(poly, height, width)
        return mask
    if isinstance(seg, dict):
        mask = decode_rle(seg, where=where)
        if mask.shape != (height, width):
            raise ValueError(
                f"{where}: RLE size {list(mask.shape)}; expected the image's [{height}, {width}]"
            )
        return mask
    raise ValueError(f"{where}: expected 'segmentation' as polygons [[x1, y1, ...]] or RLE {{size, counts}}")


# ---------------------------------------------------------------------------------------------------
# COCO: semantic masks.

UNMAPPED = ("error", "background", "ignore")


def resolve_category_map(coco: CocoFile, mapping: Mapping[Union[int, str], int]) -> dict[int, int]:
    """COCO category id -> class index, from a mapping keyed by category id or name.

    Keys matching no category of the file are skipped: one table (like :data:`COCO_TO_VOC`) serves
    exports holding a subset of the categories; a misspelt key shows up as an unmapped category.

    Raises:
        LabelFormatError: a class index outside 0..255, a key neither an int nor a str.
    """
    by_name: dict[str, list[int]] = {}
    for cid, name in coco.categories.items():
        by_name.setdefault(name, []).append(cid)
    resolved: dict[int, int] = {}
    for key, value in mapping.items():
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= IGNORE_INDEX:
            raise _fail(
                coco.path, f"mapping {key!r}: expected a class index 0..{IGNORE_INDEX}, got {value!r}"
            )
        if isinstance(key, str):
            for cid in by_name.get(key, []):
                resolved[cid] = value
        elif isinstance(key, int) and not isinstance(key, bool):
            if key in coco.categories:
                resolved[key] = value
        else:
            raise _fail(coco.path, f"mapping key {key!r}: expected a category id (int) or name (str)")
    return resolved


def coco_semantic_mask(
    coco: CocoFile,
    file_name: str,
    mapping: Mapping[Union[int, str], int],
    *,
    unmapped: str = "error",
) -> np.ndarray:
    """Rasterise the annotations of one image to an (H, W) uint8 semantic mask.

    Painting rules (later paint wins):

    1. background 0 everywhere;
    2. crowd regions (``iscrowd: 1``) -> ``IGNORE_INDEX``, whatever their category;
    3. the other annotations in decreasing pixel area, so where objects overlap the smaller one
       wins (a cup on a table stays a cup); equal areas in file order, the later winning. An
       individually annotated object inside a crowd region thus keeps its class.

    Args:
        coco: from :func:`read_coco`.
        file_name: the image's ``file_name``.
        mapping: category id or name -> class index (``IGNORE_INDEX`` allowed), e.g.
            :data:`COCO_TO_VOC`.
        unmapped: what a non-crowd annotation of a category outside ``mapping`` becomes:
            ``"error"``, ``"background"`` (0, painted like an object: what it covers is not one of
            the classes) or ``"ignore"`` (255).

    Raises:
        LabelFormatError: an unknown image, an unmapped category with ``unmapped="error"``, a bad
            annotation (one line naming the file, the image and the annotation).
    """
    if unmapped not in UNMAPPED:
        raise ValueError(f"unmapped: expected one of {list(UNMAPPED)}, got {unmapped!r}")
    if file_name not in coco.images:
        raise _fail(coco.path, f"no image with file_name '{file_name}'")
    image = coco.images[file_name]
    category_map = resolve_category_map(coco, mapping)
    crowd = np.zeros((image.height, image.width), dtype=bool)
    objects: list[tuple[int, int, np.ndarray, int]] = []  # (-area, order, mask, class)
    missing: set[int] = set()
    for order, ann in enumerate(image.annotations):
        where = f"image '{file_name}', annotation {ann.get('id', order)}"
        try:
            mask = annotation_mask(ann, image.height, image.width, where=where)
        except ValueError as e:
            raise _fail(coco.path, str(e)) from None
        if ann.get("iscrowd", 0):
            crowd |= mask
            continue
        cid = ann["category_id"]
        if cid in category_map:
            cls = category_map[cid]
        elif unmapped == "error":
            missing.add(cid)
            continue
        else:
            cls = 0 if unmapped == "background" else IGNORE_INDEX
        objects.append((-int(mask.sum()), order, mask, cls))
    if missing:
        names = ", ".join(f"{cid} ({coco.categories[cid]})" for cid in sorted(missing))
        raise _fail(
            coco.path,
            f"image '{file_name}' has annotations of categories {names} that the mapping does not cover "
            "(map them, or set unmapped to 'background' or 'ignore')",
        )
    out = np.zeros((image.height, image.width), dtype=np.uint8)
    out[crowd] = IGNORE_INDEX
    for _, _, mask, cls in sorted(objects, key=lambda o: (o[0], o[1])):
        out[mask] = cls
    return out


def coco_semantic_masks(
    path: PathLike, mapping: Mapping[Union[int, str], int], *, unmapped: str = "error"
) -> Iterator[tuple[str, np.ndarray]]:
    """``(file_name, (H, W) uint8 mask)`` for every image of a COCO file, in file order."""
    coco = read_coco(path)
    for file_name in coco.images:
        yield file_name, coco_semantic_mask(coco, file_name, mapping, unmapped=unmapped)


def write_coco_masks(
    path: PathLike, mapping: Mapping[Union[int, str], int], out_dir: PathLike, *, unmapped: str = "error"
) -> list[Path]:
    """Write every image's semantic mask of a COCO file as ``out_dir/<stem>.png`` ("L" PNGs).

    The index-mask layout every reader (and ``data/check.py``) takes; sub-folders of ``file_name``
    are kept. Returns the written paths.
    """
    out_dir = Path(out_dir)
    written = []
    for file_name, mask in coco_semantic_masks(path, mapping, unmapped=unmapped):
        target = (out_dir / file_name).with_suffix(".png")
        target.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(mask).save(target)  # (H, W) uint8 -> "L"
        written.append(target)
    return written
