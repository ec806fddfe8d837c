"""The cityscapes and ade20k layouts: files as distributed, label conventions, and their errors."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from deeplabv3plus.catalog import SyntheticOptions
from deeplabv3plus.config import ConfigError, DataConfig, load_config
from deeplabv3plus.data.ade20k import make_synthetic_ade20k
from deeplabv3plus.data.ade20k_meta import ADE20K_CLASSES
from deeplabv3plus.data.cityscapes import make_synthetic_cityscapes
from deeplabv3plus.data.cityscapes_meta import CITYSCAPES_CLASSES, label_id_lut
from deeplabv3plus.data.datasets import DatasetError, build_dataset


@pytest.fixture(scope="module")
def cityscapes_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """6 frames of 32x64: 4 train (aachen, bochum), 2 val (frankfurt); labelIds only. Read-only."""
    return make_synthetic_cityscapes(
        tmp_path_factory.mktemp("data") / "cityscapes", num_images=6, size=(32, 64)
    )


@pytest.fixture(scope="module")
def ade20k_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """6 scenes of ~32 px: 4 training, 2 validation. Read-only."""
    return make_synthetic_ade20k(
        tmp_path_factory.mktemp("data") / "ADEChallengeData2016", num_images=6, size=32
    )


def _cs(root: Path, **kw) -> DataConfig:
    return DataConfig(**{"layout": "cityscapes", "root": str(root), "num_classes": 19, "crop_size": 17, **kw})


def _ade(root: Path, **kw) -> DataConfig:
    kw = {"layout": "ade20k", "root": str(root), "num_classes": 151, "ignore_index": 0, "crop_size": 17, **kw}
    return DataConfig(**kw)


def _raw(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.array(im)


def test_cityscapes_splits_by_folder_and_maps_label_ids_to_the_19_train_ids(cityscapes_root: Path) -> None:
    train = build_dataset(_cs(cityscapes_root), "train", train=False)
    val = build_dataset(_cs(cityscapes_root.parent), "val", train=False)  # root may hold cityscapes/
    assert train.names == [
        "aachen_000000_000019",
        "aachen_000001_000019",
        "bochum_000000_000019",
        "bochum_000001_000019",
    ]
    assert val.names == ["frankfurt_000000_000019", "frankfurt_000001_000019"]
    assert train.class_names == list(CITYSCAPES_CLASSES)
    lut = label_id_lut()
    for i, sample in enumerate(train.samples):
        raw = _raw(sample.label)
        assert sample.label.name.endswith("_gtFine_labelIds.png") and raw.max() <= 33
        image, label = train[i]
        assert image.shape == (3, 32, 64)
        assert torch.equal(label, torch.from_numpy(lut[raw]).long())
    raws = np.concatenate([_raw(s.label).ravel() for s in train.samples])
    assert {1, 4, 9, 14} <= set(raws.tolist())  # unevaluated IDs (ego vehicle, static, ...) -> 255
    _, label = build_dataset(_cs(cityscapes_root), "train", train=True)[0]
    assert label.shape == (17, 17) and set(label.unique().tolist()) <= set(range(19)) | {255}


def test_cityscapes_prefers_train_id_files_and_the_convention_can_force_either(
    tmp_path: Path, cityscapes_root: Path
) -> None:
    root = tmp_path / "cs"
    shutil.copytree(cityscapes_root, root)
    gt = root / "gtFine" / "val" / "frankfurt"
    label_ids = gt / "frankfurt_000000_000019_gtFine_labelIds.png"
    train_ids = gt / "frankfurt_000000_000019_gtFine_labelTrainIds.png"
    expected = build_dataset(_cs(root), "val", train=False)[0][1]
    Image.fromarray(label_id_lut()[_raw(label_ids)], mode="L").save(train_ids)
    auto = build_dataset(_cs(root), "val", train=False)
    assert auto.samples[0].label == train_ids and auto.samples[1].label.name.endswith("_labelIds.png")
    assert torch.equal(auto[0][1], expected)
    assert (
        build_dataset(_cs(root, label_convention="label_ids"), "val", train=False).samples[0].label
        == label_ids
    )
    with pytest.raises(
        DatasetError,
        match=r"frankfurt_000001_000019_leftImg8bit\.png' has no label: expected .*labelTrainIds\.png",
    ):
        build_dataset(_cs(root, label_convention="train_ids"), "val", train=False)


def test_cityscapes_raw_label_ids_are_checked_before_the_mapping_also_in_a_worker(
    tmp_path: Path, cityscapes_root: Path
) -> None:
    root = tmp_path / "cs"
    shutil.copytree(cityscapes_root, root)
    good = build_dataset(_cs(root), "val", train=False)
    from_worker = next(iter(DataLoader(good, batch_size=1, num_workers=1)))[1][0]
    assert torch.equal(from_worker, good[0][1])  # the label-ID table travels to workers
    path = root / "gtFine" / "val" / "frankfurt" / "frankfurt_000000_000019_gtFine_labelIds.png"
    raw = _raw(path).copy()
    raw[0, :3] = [34, 40, 255]  # would all map to 255 (void) without the raw check
    Image.fromarray(raw, mode="L").save(path)
    ds = build_dataset(_cs(root), "val", train=False)
    with pytest.raises(
        DatasetError,
        match=r"labelIds\.png' has values \[34, 40, 255\] outside the Cityscapes label IDs 0\.\.33",
    ):
        ds[0]
    ds[1]


def test_cityscapes_bad_data_gets_one_line_errors(tmp_path: Path, cityscapes_root: Path) -> None:
    root = tmp_path / "cs"
    shutil.copytree(cityscapes_root, root)
    with pytest.raises(DatasetError, match=r"split 'test': no folder .*\(splits found: train, val\)"):
        build_dataset(_cs(root), "test", train=False)
    with pytest.raises(
        DatasetError, match=r"has 19 classes .* data.num_classes=21 .*set data.num_classes=19"
    ):
        build_dataset(_cs(root, num_classes=21), "val", train=False)
    with pytest.raises(DatasetError, match="no Cityscapes dataset under"):
        build_dataset(_cs(tmp_path / "nowhere"), "val", train=False)
    (root / "leftImg8bit" / "empty" / "city").mkdir(parents=True)
    with pytest.raises(DatasetError, match=r"split 'empty': no \*_leftImg8bit\.png images"):
        build_dataset(_cs(root), "empty", train=False)
    image = root / "leftImg8bit" / "val" / "frankfurt" / "frankfurt_000000_000019_leftImg8bit.png"
    Image.fromarray(np.zeros((31, 64, 3), dtype=np.uint8)).save(image)
    with pytest.raises(DatasetError, match=r"is 64x31 but label .* is 64x32"):
        build_dataset(_cs(root), "val", train=False)[0]
    (root / "gtFine" / "val" / "frankfurt" / "frankfurt_000001_000019_gtFine_labelIds.png").unlink()
    with pytest.raises(DatasetError, match=r"frankfurt_000001_000019_leftImg8bit\.png' has no label"):
        build_dataset(_cs(root), "val", train=False)


def test_ade20k_reference_convention_keeps_the_151_raw_values_with_0_ignored(ade20k_root: Path) -> None:
    cfg = _ade(ade20k_root.parent)  # root may hold ADEChallengeData2016/
    train = build_dataset(cfg, "train", train=False)  # train = training
    assert train.names == [f"ADE_train_{i:08d}" for i in range(1, 5)]
    assert train.class_names == ["other", *ADE20K_CLASSES]
    for i, sample in enumerate(train.samples):
        assert torch.equal(train[i][1], torch.from_numpy(_raw(sample.label)).long())
    val = build_dataset(cfg, "validation", train=False)
    assert val.names == ["ADE_val_00000001", "ADE_val_00000002"]
    # training crops pad the label with the ignore index, which is 0 ("other") here
    _, label = build_dataset(_ade(ade20k_root, crop_size=64, scales=[1.0], hflip=False), "val", train=True)[0]
    h, w = _raw(val.samples[0].label).shape
    assert (label[h:] == 0).all() and (label[:, w:] == 0).all()


def test_ade20k_reduce_zero_maps_other_to_255_and_shifts_the_classes(ade20k_root: Path) -> None:
    ds = build_dataset(
        _ade(ade20k_root, num_classes=150, ignore_index=255, label_convention="reduce_zero"), "val", False
    )
    assert ds.class_names == list(ADE20K_CLASSES)
    for i, sample in enumerate(ds.samples):
        raw = torch.from_numpy(_raw(sample.label)).long()
        assert torch.equal(ds[i][1], torch.where(raw == 0, 255, raw - 1))
    with pytest.raises(
        DatasetError, match=r"reduce_zero has 150 classes and ignore index 255.*data.ignore_index=0"
    ):
        build_dataset(_ade(ade20k_root, num_classes=150, label_convention="reduce_zero"), "val", False)


def test_ade20k_bad_data_gets_one_line_errors(tmp_path: Path, ade20k_root: Path) -> None:
    root = tmp_path / "ade"
    shutil.copytree(ade20k_root, root)
    path = root / "annotations" / "validation" / "ADE_val_00000001.png"
    raw = _raw(path).copy()
    raw[0, 0] = 151
    Image.fromarray(raw, mode="L").save(path)
    with pytest.raises(
        DatasetError,
        match=r"ADE_val_00000001\.png' has values \[151\] outside the ADE20K SceneParsing labels 0\.\.150",
    ):
        build_dataset(_ade(root), "val", train=False)[0]
    path.unlink()
    with pytest.raises(
        DatasetError, match=r"ADE_val_00000001\.jpg' has no annotation: expected .*ADE_val_00000001\.png"
    ):
        build_dataset(_ade(root), "val", train=False)
    with pytest.raises(
        DatasetError, match=r"split 'test': no folder .*splits found: training, validation; train and val"
    ):
        build_dataset(_ade(root), "test", train=False)


def test_label_convention_is_checked_against_the_layout() -> None:
    assert (
        load_config(None, ["data.layout=ade20k", "data.label_convention=reduce_zero"]).data.label_convention
        == "reduce_zero"
    )
    with pytest.raises(
        ConfigError,
        match=r"'labelids' does not apply to layout 'cityscapes'; expected one of auto, train_ids, label_ids or null",
    ):
        load_config(None, ["data.layout=cityscapes", "data.label_convention=labelids"])
    with pytest.raises(ConfigError, match=r"does not apply to layout 'voc'; expected null"):
        load_config(None, ["data.layout=voc", "data.label_convention=reference"])


def test_synthetic_generators_are_deterministic_and_generate_on_first_use(
    tmp_path: Path, cityscapes_root: Path
) -> None:
    again = make_synthetic_cityscapes(tmp_path / "again", num_images=6, size=(32, 64))
    for path in sorted(cityscapes_root.rglob("*.png")):
        assert path.read_bytes() == (again / path.relative_to(cityscapes_root)).read_bytes()
    ds = build_dataset(_ade(tmp_path / "ade_new", synthetic=SyntheticOptions(size=3)), "val", train=False)
    assert len(ds) == 1 and (tmp_path / "ade_new" / "images" / "training").is_dir()
    assert (
        len(build_dataset(_cs(tmp_path / "cs_new", synthetic=SyntheticOptions(size=3)), "train", train=False))
        == 2
    )


# labels.py's category column for the 19 train classes, written out by hand (not read from
# cityscapesscripts, which the tests do not need): the per-category IoU of the official
# evaluation groups the classes by it.
OFFICIAL_CATEGORY = {
    "road": "flat", "sidewalk": "flat",
    "building": "construction", "wall": "construction", "fence": "construction",
    "pole": "object", "traffic light": "object", "traffic sign": "object",
    "vegetation": "nature", "terrain": "nature",
    "sky": "sky",
    "person": "human", "rider": "human",
    "car": "vehicle", "truck": "vehicle", "bus": "vehicle", "train": "vehicle", "motorcycle": "vehicle",
    "bicycle": "vehicle",
}  # fmt: skip


def test_every_cityscapes_class_is_in_its_official_category_without_cityscapesscripts() -> None:
    from deeplabv3plus.data.cityscapes_meta import CITYSCAPES_CATEGORIES, CLASS_CATEGORY

    assert CITYSCAPES_CATEGORIES == ("flat", "construction", "object", "nature", "sky", "human", "vehicle")
    assert len(CLASS_CATEGORY) == len(CITYSCAPES_CLASSES) == len(OFFICIAL_CATEGORY)
    got = {name: CITYSCAPES_CATEGORIES[c] for name, c in zip(CITYSCAPES_CLASSES, CLASS_CATEGORY)}
    assert got == OFFICIAL_CATEGORY
