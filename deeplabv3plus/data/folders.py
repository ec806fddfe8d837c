"""The ``folders`` layout: your own images and labels, ``root/<image_dir>/<stem><image_ext>`` and
``root/<mask_dir>/<stem>.png`` with lists ``root/<split>.txt`` (one stem per line), and the user's own
``num_classes`` / ``class_names`` / ``ignore_index``.

The labels are read as ``data.mask_format`` says (``deeplabv3plus.catalog.MASK_FORMATS``): index
PNGs, colour masks (``data.rgb``), 0/255 binary masks, or COCO instance JSON (``data.coco``), parsed
once per file however many splits and jobs read it.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..config import ConfigError, DataConfig, load_yaml
from .label_formats import (
    COCO_TO_VOC,
    CocoFile,
    coco_semantic_mask,
    decode_color_mask,
    parse_color_table,
    read_binary_mask,
    read_coco,
    read_color_mask,
)
from .lists import find_list, read_split_list
from .types import DatasetError, Sample
from .voc_meta import default_class_names

__all__ = [
    "coco_file_for_split",
    "coco_mapping",
    "folder_class_names",
    "folder_samples",
    "mask_color_table",
]


def folder_samples(cfg: DataConfig, split: str) -> tuple[list[Sample], Path]:
    root = Path(cfg.root)
    list_file = find_list([root / f"{split}.txt"], split)
    image_dir, mask_dir = root / cfg.folders.image_dir, root / cfg.folders.mask_dir
    stems = read_split_list(list_file)
    if cfg.mask_format == "coco":
        return _coco_samples(cfg, split, stems, list_file), list_file
    # "index" keeps reader None: read_label, exactly as before data.mask_format existed.
    reader = None
    if cfg.mask_format == "rgb":
        reader = _color_reader(cfg)
    elif cfg.mask_format == "binary":
        reader = read_binary_mask
    samples = [
        Sample(
            stem, image_dir / f"{stem}{cfg.folders.image_ext}", mask_dir / f"{stem}.png", label_reader=reader
        )
        for stem in stems
    ]
    return samples, list_file


# ---------------------------------------------------------------------------------------------------
# data.mask_format: colour masks and COCO JSON (docs/own_data.md).


def _user_path(text: str) -> Path:
    """A path from the config as the user typed it: ``~`` expanded, relative to the working directory."""
    return Path(text).expanduser()


def mask_color_table(cfg: DataConfig) -> tuple[list[str], list[list[int]]]:
    """``data.rgb.colors`` (inline, or read from its YAML file) as class names and [r, g, b] colours.

    Raises:
        DatasetError: an unreadable file, a malformed table, or not ``data.num_classes`` colours.
    """
    table: Any = cfg.rgb.colors
    source = "data.rgb.colors"
    if isinstance(table, str):
        path = _user_path(table)
        source = f"data.rgb.colors file '{path}'"
        try:
            table = load_yaml(path.read_text(), source)
        except ConfigError as e:
            raise DatasetError(str(e)) from None
        except OSError as e:
            raise DatasetError(f"{source}: cannot read it ({e.strerror or e})") from None
        if isinstance(table, dict) and set(table) == {"classes"}:
            table = table["classes"]  # a YAML file of the form "classes: [{name, color}, ...]"
    try:
        names, colors = parse_color_table(table)
    except ValueError as e:
        raise DatasetError(f"{source}: {e}") from None
    if len(colors) != cfg.num_classes:
        raise DatasetError(
            f"{source} holds {len(colors)} colours; expected one per class, data.num_classes={cfg.num_classes}"
        )
    return names, colors.tolist()


def _color_reader(cfg: DataConfig) -> Callable[[Path], np.ndarray]:
    _, colors = mask_color_table(cfg)
    ignore = cfg.rgb.ignore_colors or []
    try:  # a bad ignore table is reported now, not at the first label
        decode_color_mask(np.zeros((0, 0, 3), np.uint8), colors, ignore_colors=ignore)
    except ValueError as e:
        raise DatasetError(f"data.mask_{e}") from None
    return functools.partial(read_color_mask, colors=colors, ignore_colors=ignore)


def coco_mapping(cfg: DataConfig) -> tuple[Mapping[Any, int], str]:
    """``data.coco.mapping`` as a category -> class table and ``data.coco.unmapped`` resolved."""
    if cfg.coco.mapping == "voc":
        return COCO_TO_VOC, cfg.coco.unmapped or "background"
    return dict(cfg.coco.mapping or {}), cfg.coco.unmapped or "error"


def coco_file_for_split(cfg: DataConfig, split: str) -> Path:
    """The COCO JSON of ``split`` named by ``data.coco.annotations`` (one file, or {split: file})."""
    annotations = cfg.coco.annotations
    if isinstance(annotations, dict):
        if split not in annotations:
            raise DatasetError(
                f"data.coco.annotations names no file for split '{split}' (it has {', '.join(annotations) or 'none'})"
            )
        annotations = annotations[split]
    return _user_path(str(annotations))


def _coco_label(path: Path, *, coco: CocoFile, file_name: str, mapping: Mapping[Any, int], unmapped: str):
    return coco_semantic_mask(coco, file_name, mapping, unmapped=unmapped)


def _file_version(path: Path) -> tuple[int, int]:
    stat = path.stat()
    return stat.st_mtime_ns, stat.st_size


@functools.lru_cache(maxsize=4)
def _read_coco_once(path: Path, mtime_ns: int, size: int) -> CocoFile:
    """:func:`read_coco`, parsed once per file version however many splits and checks list it (a
    COCO JSON can be hundreds of MB; the file's mtime and size key the cache, so an edit is re-read)."""
    return read_coco(path)


def _coco_samples(cfg: DataConfig, split: str, stems: list[str], list_file: Path) -> list[Sample]:
    path = coco_file_for_split(cfg, split)
    if not path.is_file():
        raise DatasetError(f"data.coco.annotations: COCO file '{path}' for split '{split}' does not exist")
    coco = _read_coco_once(path.resolve(), *_file_version(path))
    by_stem: dict[str, str] = {}
    for file_name in coco.images:
        stem = Path(file_name).stem
        if stem in by_stem:
            raise DatasetError(
                f"COCO file '{path}': two images have the stem '{stem}' ({by_stem[stem]}, {file_name})"
            )
        by_stem[stem] = file_name
    missing = [stem for stem in stems if stem not in by_stem]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise DatasetError(f"COCO file '{path}' has no image '{missing[0]}'{more}, listed in '{list_file}'")
    mapping, unmapped = coco_mapping(cfg)
    image_dir = Path(cfg.root) / cfg.folders.image_dir
    return [
        Sample(
            stem, image_dir / f"{stem}{cfg.folders.image_ext}", path,
            label_reader=functools.partial(
                _coco_label, coco=coco, file_name=by_stem[stem], mapping=mapping, unmapped=unmapped
            ),
        )
        for stem in stems
    ]  # fmt: skip


def folder_class_names(cfg: DataConfig) -> list[str]:
    """The names of ``data.rgb.colors`` where the colour table names its classes, else
    :func:`~deeplabv3plus.data.voc_meta.default_class_names`."""
    if cfg.mask_format == "rgb":
        names = mask_color_table(cfg)[0]
        if names != [f"class_{i}" for i in range(len(names))]:
            return names  # a colour table of {name, color} or {name: color}
    return default_class_names(cfg.num_classes)
