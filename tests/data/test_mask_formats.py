"""data.mask_format in the folders layout: colour masks, binary masks and COCO JSON, on trees the tests write."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from coco_rle import rle_counts  # tests/data/coco_rle.py
from PIL import Image

from deeplabv3plus.config import config_from_dict
from deeplabv3plus.data.check import check_config_data
from deeplabv3plus.data.datasets import build_dataset
from deeplabv3plus.data.types import DatasetError

H, W = 10, 12
COLORS = [[0, 0, 0], [128, 64, 128], [0, 0, 142]]
VOID = [224, 224, 192]


def make_tree(root: Path, masks: dict[str, np.ndarray], mode: str = None) -> Path:
    """images/<stem>.jpg for every mask, masks/<stem>.png, train.txt = all but the last, val.txt = the last."""
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    rng = np.random.default_rng(0)
    for stem, mask in masks.items():
        Image.fromarray((rng.random((H, W, 3)) * 255).astype(np.uint8)).save(root / "images" / f"{stem}.jpg")
        if mask is not None:
            Image.fromarray(mask, mode).save(root / "masks" / f"{stem}.png")
    stems = list(masks)
    (root / "train.txt").write_text("\n".join(stems[:-1]) + "\n")
    (root / "val.txt").write_text(stems[-1] + "\n")
    return root


def data_config(root: Path, num_classes: int, **data):
    return config_from_dict(
        {
            "model": {"num_classes": num_classes},
            "data": {
                "layout": "folders",
                "root": str(root),
                "num_classes": num_classes,
                "workers": 0,
                **data,
            },
        }
    )


def labels(cfg, split: str = "train") -> list[np.ndarray]:
    dataset = build_dataset(cfg.data, split, train=False)
    return [dataset.load(i)[1].numpy() for i in range(len(dataset))]


def random_classes(seed: int, num_classes: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, num_classes, (H, W)).astype(np.uint8)


def paint(classes: np.ndarray, table: list[list[int]]) -> np.ndarray:
    return np.asarray(table, np.uint8)[classes]


def test_rgb_masks_with_an_inline_colour_list_and_an_ignore_colour_read_as_classes(tmp_path):
    classes = [random_classes(s, 3) for s in range(3)]
    rgb = [paint(c, COLORS) for c in classes]
    rgb[0][0, :4] = VOID
    root = make_tree(tmp_path / "d", {f"im{i}": m for i, m in enumerate(rgb)})
    cfg = data_config(root, 3, mask_format="rgb", rgb={"colors": COLORS, "ignore_colors": [VOID]})
    expected = [c.copy() for c in classes[:2]]
    expected[0][0, :4] = 255
    got = labels(cfg)
    assert all(np.array_equal(g, e) for g, e in zip(got, expected))


def test_rgb_masks_with_a_yaml_file_of_names_and_colours_name_the_classes(tmp_path):
    classes = [random_classes(s, 3) for s in range(2)]
    root = make_tree(tmp_path / "d", {f"im{i}": paint(c, COLORS) for i, c in enumerate(classes)})
    table = [{"name": n, "color": c} for n, c in zip(["background", "road", "car"], COLORS)]
    (tmp_path / "colors.yaml").write_text(yaml.safe_dump(table))
    cfg = data_config(root, 3, mask_format="rgb", rgb={"colors": str(tmp_path / "colors.yaml")})
    assert build_dataset(cfg.data, "train", train=False).class_names == ["background", "road", "car"]
    assert np.array_equal(labels(cfg)[0], classes[0])


def test_an_unknown_colour_is_an_error_naming_the_file_the_colour_and_its_pixel_count(tmp_path):
    rgb = paint(random_classes(0, 3), COLORS)
    rgb[2, :5] = [9, 9, 9]
    root = make_tree(tmp_path / "d", {"a": rgb, "b": paint(random_classes(1, 3), COLORS)})
    cfg = data_config(root, 3, mask_format="rgb", rgb={"colors": COLORS})
    with pytest.raises(ValueError, match=r"a\.png.*\(9, 9, 9\) on 5 px"):
        labels(cfg)
    report, _ = check_config_data(cfg.data, workers=1)
    problem = report.problem("label_format")
    assert not report.ok and problem.count == 1 and "(9, 9, 9) on 5 px" in problem.examples[0]


def test_rgba_masks_for_mask_format_rgb_are_read_when_opaque_and_refused_when_partly_transparent(tmp_path):
    classes = [random_classes(s, 3) for s in range(3)]
    opaque = [np.concatenate([paint(c, COLORS), np.full((H, W, 1), 255, np.uint8)], axis=2) for c in classes]
    root = make_tree(tmp_path / "d", {f"im{i}": m for i, m in enumerate(opaque)}, mode="RGBA")
    cfg = data_config(root, 3, mask_format="rgb", rgb={"colors": COLORS})
    assert all(np.array_equal(g, c) for g, c in zip(labels(cfg), classes[:2]))
    opaque[1][0, 0, 3] = 128
    Image.fromarray(opaque[1], "RGBA").save(root / "masks" / "im1.png")
    with pytest.raises(ValueError, match=r"im1\.png' is an RGBA image with transparent pixels") as info:
        labels(cfg)
    assert "\n" not in str(info.value)


def test_a_colour_table_of_the_wrong_length_names_data_rgb_colors(tmp_path):
    root = make_tree(tmp_path / "d", {"a": paint(random_classes(0, 3), COLORS), "b": None})
    with pytest.raises(DatasetError, match="data.rgb.colors holds 3 colours.*data.num_classes=4"):
        build_dataset(
            data_config(root, 4, mask_format="rgb", rgb={"colors": COLORS}).data, "train", train=False
        )


def test_binary_masks_map_255_to_class_1_and_other_values_are_errors(tmp_path):
    masks = {f"im{i}": (random_classes(i, 2) * 255).astype(np.uint8) for i in range(3)}
    root = make_tree(tmp_path / "d", masks)
    cfg = data_config(root, 2, mask_format="binary")
    assert all(np.array_equal(g, m // 255) for g, m in zip(labels(cfg), masks.values()))
    Image.fromarray(np.full((H, W), 1, np.uint8)).save(root / "masks" / "im0.png")
    with pytest.raises(ValueError, match=r"im0\.png.*expected a binary mask of 0 and 255"):
        labels(cfg)


def coco_file(path: Path, images: list[str], annotations: list[dict]) -> Path:
    categories = [{"id": 1, "name": "person"}, {"id": 3, "name": "car"}, {"id": 90, "name": "toothbrush"}]
    records = [
        {"id": i + 1, "file_name": f"sub/{n}.jpg", "height": H, "width": W} for i, n in enumerate(images)
    ]
    for i, ann in enumerate(annotations):
        ann.setdefault("id", i + 1)
        ann.setdefault("iscrowd", 0)
    path.write_text(json.dumps({"images": records, "annotations": annotations, "categories": categories}))
    return path


def box(x0, y0, x1, y1) -> list[list[float]]:
    return [[x0, y0, x1, y0, x1, y1, x0, y1]]


def rle_of(mask: np.ndarray) -> dict:
    return {"size": [H, W], "counts": rle_counts(mask)}


def test_coco_polygons_rle_and_crowd_become_semantic_masks_per_split(tmp_path):
    root = make_tree(tmp_path / "d", {"a": None, "b": None, "c": None})
    car_rle = np.zeros((H, W), bool)
    car_rle[5:9, 1:4] = True
    train = coco_file(
        tmp_path / "train.json", ["a", "b"],
        [
            {"image_id": 1, "category_id": 1, "segmentation": box(0, 0, 6, 4)},  # person, rows 0-3, cols 0-5
            {"image_id": 1, "category_id": 3, "segmentation": box(2, 1, 4, 3)},  # a smaller car on it: car wins
            {"image_id": 1, "category_id": 1, "segmentation": box(8, 6, 12, 10), "iscrowd": 1},  # crowd: ignore
            {"image_id": 2, "category_id": 3, "segmentation": rle_of(car_rle)},
        ],
    )  # fmt: skip
    val = coco_file(tmp_path / "val.json", ["c"], [])
    cfg = data_config(
        root, 3, mask_format="coco", coco={"annotations": {"train": str(train), "val": str(val)},
        "mapping": {"person": 1, 3: 2}},
    )  # fmt: skip
    a = np.zeros((H, W), np.uint8)
    a[0:4, 0:6] = 1
    a[1:3, 2:4] = 2
    a[6:10, 8:12] = 255
    b = car_rle.astype(np.uint8) * 2
    got = labels(cfg)
    assert np.array_equal(got[0], a) and np.array_equal(got[1], b)
    assert np.array_equal(labels(cfg, "val")[0], np.zeros((H, W), np.uint8))
    report, _ = check_config_data(cfg.data, workers=2)
    assert report.ok and report.splits["train"].class_pixels == [
        int((a == 0).sum() + (b == 0).sum()),
        24 - 4,
        4 + 12,
    ]


def test_coco_mapping_voc_is_the_reference_table_and_other_categories_are_background(tmp_path):
    root = make_tree(tmp_path / "d", {"a": None, "b": None})
    ann = [
        {"image_id": 1, "category_id": 1, "segmentation": box(0, 0, 4, 4)},  # person -> VOC 15
        {"image_id": 1, "category_id": 3, "segmentation": box(6, 0, 10, 4)},  # car -> VOC 7
        {"image_id": 1, "category_id": 90, "segmentation": box(0, 6, 4, 10)},  # toothbrush: not VOC
    ]
    path = coco_file(tmp_path / "all.json", ["a", "b"], ann)
    cfg = data_config(root, 21, mask_format="coco", coco={"annotations": str(path), "mapping": "voc"})
    expected = np.zeros((H, W), np.uint8)
    expected[0:4, 0:4], expected[0:4, 6:10] = 15, 7
    assert np.array_equal(labels(cfg)[0], expected)


def test_a_coco_file_missing_a_listed_image_names_both_files(tmp_path):
    root = make_tree(tmp_path / "d", {"a": None, "b": None, "c": None})
    path = coco_file(tmp_path / "ann.json", ["a", "c"], [])
    cfg = data_config(root, 3, mask_format="coco", coco={"annotations": str(path), "mapping": {"car": 1}})
    with pytest.raises(DatasetError, match=r"ann\.json' has no image 'b'.*train\.txt"):
        build_dataset(cfg.data, "train", train=False)


def test_a_coco_file_shared_by_two_splits_is_parsed_once_per_run(tmp_path, monkeypatch):
    from deeplabv3plus.data import folders, label_formats
    from deeplabv3plus.data.datasets import DataSplits

    root = make_tree(tmp_path / "d", {"a": None, "b": None, "c": None})
    (root / "val.txt").write_text("c\n")
    both = coco_file(tmp_path / "all.json", ["a", "b", "c"], [])
    cfg = data_config(root, 3, mask_format="coco", coco={"annotations": str(both), "mapping": {"person": 1}})
    parsed, real = [], label_formats.read_coco
    monkeypatch.setattr(folders, "read_coco", lambda path: parsed.append(path) or real(path))
    folders._read_coco_once.cache_clear()
    splits = DataSplits(cfg.data)
    splits.check(["train", "val"])
    splits.check_leakage()
    splits.dataset("train", train=True), splits.dataset("val", train=False)
    assert parsed == [both.resolve()]
    both.write_text(both.read_text() + " ")  # an edited file is read again
    DataSplits(cfg.data).check(["train"])
    assert len(parsed) == 2
