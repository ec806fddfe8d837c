"""Datasets of every layout, and their errors: each names the offending file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from deeplabv3plus.catalog import FoldersOptions, SyntheticOptions
from deeplabv3plus.config import DataConfig, config_from_dict
from deeplabv3plus.data.datasets import (
    DatasetError,
    build_dataset,
    check_config_leakage,
    check_no_leakage,
    check_splits,
    eval_collate,
    split_names,
)


def _write_pair(root: Path, stem: str, size: tuple[int, int], label: np.ndarray, ext: str = ".png") -> None:
    """An image ``root/images/<stem><ext>`` of ``size`` (w, h) and its "L" mask ``root/masks/<stem>.png``."""
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(parents=True, exist_ok=True)
    rgb = np.random.default_rng(len(stem)).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(rgb).save(root / "images" / f"{stem}{ext}")
    Image.fromarray(label.astype(np.uint8), mode="L").save(root / "masks" / f"{stem}.png")


def _folders(root: Path, masks: dict[str, np.ndarray], **cfg_kw) -> DataConfig:
    """A 'folders' dataset, 3 classes, ignore 99, PNG images; every stem listed in train.txt."""
    for stem, mask in masks.items():
        _write_pair(root, stem, (mask.shape[1], mask.shape[0]), mask)
    (root / "train.txt").write_text("\n".join(masks) + "\n")
    kw = dict(
        layout="folders",
        root=str(root),
        num_classes=3,
        ignore_index=99,
        crop_size=17,
        folders=FoldersOptions(image_ext=".png"),
    )
    return DataConfig(**{**kw, **cfg_kw})


def _mask(h: int = 12, w: int = 16, values: tuple[int, ...] = (0, 1, 2, 99)) -> np.ndarray:
    return np.resize(np.array(values), h * w).reshape(h, w)


def test_folders_layout_reads_custom_classes_and_ignore_index(tmp_path: Path) -> None:
    cfg = _folders(tmp_path, {"a": _mask(), "b": _mask(9, 11)}, class_names=["sky", "road", "car"])
    ds = build_dataset(cfg, "train", train=False)
    assert len(ds) == 2 and ds.names == ["a", "b"] and ds.class_names == ["sky", "road", "car"]
    image, label = ds[1]
    assert image.shape == (3, 9, 11) and image.dtype == torch.float32
    assert label.dtype == torch.int64 and set(label.unique().tolist()) == {0, 1, 2, 99}
    image, label = build_dataset(cfg, "train", train=True)[0]
    assert image.shape == (3, 17, 17) and label.shape == (17, 17)
    assert set(label.unique().tolist()) <= {0, 1, 2, 99}  # crop padding uses the configured ignore_index


def test_label_outside_classes_is_an_error_naming_the_file(tmp_path: Path) -> None:
    cfg = _folders(tmp_path, {"ok": _mask(), "bad": _mask(values=(0, 1, 7, 255))})
    ds = build_dataset(cfg, "train", train=False)
    ds[0]
    with pytest.raises(
        DatasetError, match=r"masks/bad\.png' has values \[7, 255\] outside the classes 0\.\.2"
    ):
        ds[1]


def test_label_error_inside_a_dataloader_worker_surfaces_readably(tmp_path: Path) -> None:
    cfg = _folders(tmp_path, {"bad": _mask(values=(5,))})
    batches = iter(DataLoader(build_dataset(cfg, "train", train=False), batch_size=1, num_workers=1))
    try:
        with pytest.raises(DatasetError, match=r"bad\.png' has values \[5\]"):
            next(batches)
    finally:
        # The re-raised exception's traceback keeps the iterator in a reference cycle; left to the
        # garbage collector its worker takes 5 s to notice shutdown, so stop it now.
        batches._shutdown_workers()


def test_size_mismatch_is_an_error(tmp_path: Path) -> None:
    cfg = _folders(tmp_path, {"x": _mask(12, 16)})
    Image.fromarray(_mask(10, 16).astype(np.uint8), mode="L").save(tmp_path / "masks" / "x.png")
    with pytest.raises(DatasetError, match=r"images/x\.png' is 16x12 but label '.*masks/x\.png' is 16x10"):
        build_dataset(cfg, "train", train=False)[0]


def test_missing_file_is_an_error(tmp_path: Path) -> None:
    cfg = _folders(tmp_path, {"x": _mask(), "y": _mask()})
    (tmp_path / "masks" / "y.png").unlink()
    with pytest.raises(DatasetError, match=r"missing file '.*masks/y\.png', listed in '.*train\.txt'"):
        build_dataset(cfg, "train", train=False)


def test_unreadable_file_is_an_error(tmp_path: Path) -> None:
    cfg = _folders(tmp_path, {"x": _mask()})
    (tmp_path / "images" / "x.png").write_bytes(b"not an image")
    with pytest.raises(DatasetError, match=r"cannot read image '.*images/x\.png'"):
        build_dataset(cfg, "train", train=False)[0]


def test_rgb_colour_label_is_an_error(tmp_path: Path) -> None:
    cfg = _folders(tmp_path, {"x": _mask()})
    Image.new("RGB", (16, 12)).save(tmp_path / "masks" / "x.png")
    with pytest.raises(DatasetError, match=r"label '.*x\.png' is a RGB colour image"):
        build_dataset(cfg, "train", train=False)[0]


def test_empty_split_is_an_error(tmp_path: Path) -> None:
    cfg = _folders(tmp_path, {"x": _mask()})
    (tmp_path / "train.txt").write_text("\n  \n")
    with pytest.raises(DatasetError, match=r"split list '.*train\.txt' is empty"):
        build_dataset(cfg, "train", train=True)


def test_missing_split_file_is_an_error(tmp_path: Path) -> None:
    cfg = _folders(tmp_path, {"x": _mask()})
    with pytest.raises(
        DatasetError, match=r"split 'val': no list file; looked for '.*val\.txt' \(lists found: train\)"
    ):
        build_dataset(cfg, "val", train=False)


def test_val_image_in_train_list_is_an_error(synthetic_voc: Path) -> None:
    cfg = DataConfig(layout="voc", root=str(synthetic_voc), num_classes=6, train_split="trainval")
    with pytest.raises(
        DatasetError, match=r"3 of the 3 'val' images are also in the training split 'trainval'"
    ):
        check_config_leakage(cfg)
    cfg.allow_val_in_train = True
    with pytest.warns(UserWarning, match="also in the training split"):
        check_config_leakage(cfg)
    cfg.train_split = "train"
    check_config_leakage(cfg)
    with pytest.raises(DatasetError, match="1 of the 2 'val' images"):
        check_no_leakage(["a", "b"], ["b", "c"])


def test_voc_layout_reads_the_synthetic_tree_at_any_root_depth(synthetic_voc: Path) -> None:
    for root in (synthetic_voc, synthetic_voc / "VOCdevkit", synthetic_voc / "VOCdevkit" / "VOC2012"):
        cfg = DataConfig(layout="voc", root=str(root), num_classes=6)
        assert split_names(cfg, "val") == ["syn_000006", "syn_000007", "syn_000008"]
    ds = build_dataset(cfg, "val", train=False)
    images, labels = next(iter(DataLoader(ds, batch_size=3, collate_fn=eval_collate)))
    assert len(images) == 3 and all(i.shape[1:] == lab.shape for i, lab in zip(images, labels))
    assert {tuple(i.shape) for i in images} != {tuple(images[0].shape)}  # sizes differ: lists, not a stack


def test_voc_aug_layout_reads_pair_lists_and_falls_back_to_segmentation_class(
    synthetic_voc: Path, tmp_path: Path
) -> None:
    src = synthetic_voc / "VOCdevkit" / "VOC2012"
    root = tmp_path / "VOC2012"
    for sub in ("JPEGImages", "SegmentationClassAug", "SegmentationClass", "ImageSets/Segmentation"):
        (root / sub).mkdir(parents=True)
    train = (src / "ImageSets/Segmentation/train.txt").read_text().split()
    val = (src / "ImageSets/Segmentation/val.txt").read_text().split()
    for name in train + val:
        (root / "JPEGImages" / f"{name}.jpg").write_bytes((src / "JPEGImages" / f"{name}.jpg").read_bytes())
        label = np.array(Image.open(src / "SegmentationClass" / f"{name}.png"))
        # Mirrors ship SegmentationClassAug as greyscale PNGs; val labels stay in SegmentationClass.
        folder = "SegmentationClassAug" if name in train else "SegmentationClass"
        Image.fromarray(label, mode="L").save(root / folder / f"{name}.png")
    (root / "train_aug.txt").write_text(
        "".join(f"/JPEGImages/{n}.jpg /SegmentationClassAug/{n}.png\n" for n in train)
    )
    (root / "ImageSets/Segmentation/val.txt").write_text("\n".join(val))
    cfg = DataConfig(
        layout="voc_aug", root=str(tmp_path), num_classes=6, train_split="train_aug", crop_size=25
    )
    train_ds = build_dataset(cfg, "train_aug", train=True)
    val_ds = build_dataset(cfg, "val", train=False)
    assert train_ds.names == train and val_ds.names == val
    assert train_ds[0][0].shape == (3, 25, 25)
    expected = np.array(Image.open(src / "SegmentationClass" / f"{val[0]}.png"))
    np.testing.assert_array_equal(val_ds[0][1].numpy(), expected)
    check_config_leakage(cfg)


def test_synthetic_layout_generates_the_dataset_on_first_use(tmp_path: Path) -> None:
    cfg = DataConfig(
        layout="synthetic",
        root=str(tmp_path / "syn"),
        num_classes=4,
        synthetic=SyntheticOptions(size=5, generate=True),
        crop_size=33,
    )
    ds = build_dataset(cfg, "train", train=True)
    assert len(ds) == 4 and len(build_dataset(cfg, "val", train=False)) == 1
    assert ds.class_names == ["background", "hstripes ring", "vstripes cross", "checker star"]
    assert ds[0][1].shape == (33, 33)
    cfg.num_classes = 21
    with pytest.raises(DatasetError, match="generated with num_classes=4 but data.num_classes=21"):
        build_dataset(cfg, "train", train=True)


def test_synthetic_layout_at_a_root_holding_no_dataset_is_an_error_unless_generation_is_asked(
    tmp_path: Path,
) -> None:
    typo = DataConfig(layout="synthetic", root=str(tmp_path / "synthetc"), num_classes=4,
                      synthetic=SyntheticOptions(size=5))  # fmt: skip
    with pytest.raises(
        DatasetError, match=r"data.root '.*synthetc' holds no dataset.*data.synthetic.generate=true"
    ):
        check_splits(typo, ["train"])
    assert not (tmp_path / "synthetc").exists()  # nothing generated there


def test_synthetic_layout_generates_the_default_root_on_first_use(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)  # the default root, data/synthetic, is relative to where the job runs
    cfg = DataConfig(layout="synthetic", num_classes=4, synthetic=SyntheticOptions(size=5))
    assert cfg.root == "data/synthetic" and not cfg.synthetic.generate
    assert check_splits(cfg, ["train", "val"]) == {"train": 4, "val": 1}
    assert (tmp_path / "data" / "synthetic" / "synthetic.json").is_file()


def test_check_splits_counts_the_samples_of_each_split_once(tmp_path: Path) -> None:
    cfg = _folders(tmp_path, {"a": _mask(), "b": _mask(9, 11), "c": _mask(5, 7)})
    (tmp_path / "val.txt").write_text("c\n")
    assert check_splits(cfg, ["train", "val", "train"]) == {"train": 3, "val": 1}


@pytest.mark.parametrize(
    "spoil, culprits",
    [
        ("rgb", ["a.png", "RGB colour image"]),
        ("value", ["a.png", "values [7]"]),
        ("size", ["a.png", "16x12", "4x3"]),
        ("missing_list", ["val.txt", "no list file"]),
        ("missing_file", ["b.png", "missing file"]),
    ],
)
def test_check_splits_finds_a_bad_first_pair_or_a_missing_file_before_any_batch(
    tmp_path: Path, spoil: str, culprits: list[str]
) -> None:
    cfg = _folders(tmp_path, {"a": _mask(), "b": _mask()})
    (tmp_path / "val.txt").write_text("a\n")
    mask = tmp_path / "masks" / "a.png"
    if spoil == "rgb":
        Image.fromarray(np.zeros((12, 16, 3), np.uint8)).save(mask)
    elif spoil == "value":
        Image.fromarray(_mask(values=(0, 7)).astype(np.uint8), mode="L").save(mask)
    elif spoil == "size":
        Image.fromarray(np.zeros((3, 4), np.uint8), mode="L").save(mask)
    elif spoil == "missing_list":
        (tmp_path / "val.txt").unlink()
    else:
        (tmp_path / "images" / "b.png").unlink()
    with pytest.raises(DatasetError) as e:
        check_splits(cfg, ["train", "val"])
    for culprit in culprits:
        assert culprit in str(e.value)


def test_unknown_layout_is_an_error() -> None:
    with pytest.raises(DatasetError, match="unknown layout 'coco'"):
        build_dataset(DataConfig(layout="coco"), "train", train=True)


def test_seed_fixes_augmentation_through_a_dataloader_with_workers(synthetic_voc: Path) -> None:
    cfg = DataConfig(layout="voc", root=str(synthetic_voc), num_classes=6, crop_size=25)
    ds = build_dataset(cfg, "train", train=True)

    def epoch(seed: int) -> list[torch.Tensor]:
        # The loader's generator draws the shuffle order and each worker's torch seed.
        g = torch.Generator().manual_seed(seed)
        loader = DataLoader(ds, batch_size=3, shuffle=True, num_workers=1, generator=g)
        return [t for batch in loader for t in batch]

    a, b, c = epoch(0), epoch(0), epoch(1)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not all(torch.equal(x, y) for x, y in zip(a, c))


def test_a_run_lists_each_split_once_from_its_checks_to_its_loaders(
    synthetic_voc, tmp_path, monkeypatch, no_val
):
    from deeplabv3plus.data import voc
    from deeplabv3plus.train import train

    listed, real = [], voc.synthetic_samples
    monkeypatch.setattr(voc, "synthetic_samples", lambda cfg, split: listed.append(split) or real(cfg, split))
    cfg = config_from_dict({
        "model": {"backbone": "resnet18", "num_classes": 6, "head_channels": 16},
        "data": {"layout": "synthetic", "root": str(synthetic_voc), "num_classes": 6, "crop_size": 33, "workers": 0},
        "train": {"max_iters": 1, "batch_size": 2, "allow_scratch_backbone": True, "device": "cpu",
                  "val_interval": 0, "output_dir": str(tmp_path / "run")},
    })  # fmt: skip
    train(cfg)
    assert sorted(listed) == ["train", "val"]
