"""prepare_voc builds train_aug = VOC train ∪ SBD train ∪ SBD val − VOC val on tiny VOC/SBD trees."""

from __future__ import annotations

import runpy
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from deeplabv3plus.config import DataConfig
from deeplabv3plus.data.datasets import build_dataset, check_config_leakage
from deeplabv3plus.data.prepare import (
    PrepareError,
    build_train_aug,
    prepare_voc,
    train_aug_names,
)
from deeplabv3plus.data.voc_meta import save_label_png

scipy_io = pytest.importorskip("scipy.io")

VOC_TRAIN, VOC_VAL = ["v1", "v2", "v3"], ["v4", "v5"]
SBD_TRAIN, SBD_VAL = ["s1", "v1", "v4"], ["s2", "v2", "s3"]  # v4 is VOC val: must not enter train_aug
TRAIN_AUG = ["s1", "s2", "s3", "v1", "v2", "v3"]


def _label(seed: int, void: bool) -> np.ndarray:
    label = np.random.default_rng(seed).integers(0, 21, (10, 14)).astype(np.uint8)
    if void:
        label[0, :] = 255  # VOC labels have a void band; SBD's do not
    return label


def _make_trees(base: Path) -> tuple[Path, Path]:
    """A VOC2012 tree (5 segmentation images) and an SBD benchmark_RELEASE tree (5 .mat labels)."""
    voc = base / "VOCdevkit" / "VOC2012"
    sbd = base / "benchmark_RELEASE" / "dataset"
    for d in (voc / "JPEGImages", voc / "SegmentationClass", voc / "ImageSets" / "Segmentation"):
        d.mkdir(parents=True)
    for d in (sbd / "img", sbd / "cls"):
        d.mkdir(parents=True)
    rgb = Image.new("RGB", (14, 10), (90, 120, 30))
    for i, name in enumerate(VOC_TRAIN + VOC_VAL):
        rgb.save(voc / "JPEGImages" / f"{name}.jpg")
        save_label_png(_label(i, void=True), voc / "SegmentationClass" / f"{name}.png")
    for name in ("s1", "s2"):
        rgb.save(voc / "JPEGImages" / f"{name}.jpg")  # SBD images are VOC images
    rgb.save(sbd / "img" / "s3.jpg")  # ... except this one, which prepare must copy over
    for i, name in enumerate(sorted(set(SBD_TRAIN + SBD_VAL))):
        struct = {"Segmentation": _label(100 + i, void=False), "Boundaries": np.zeros((1, 20), dtype=object)}
        scipy_io.savemat(str(sbd / "cls" / f"{name}.mat"), {"GTcls": struct})
    (voc / "ImageSets" / "Segmentation" / "train.txt").write_text("\n".join(VOC_TRAIN) + "\n")
    (voc / "ImageSets" / "Segmentation" / "val.txt").write_text("\n".join(VOC_VAL) + "\n")
    (sbd / "train.txt").write_text("\n".join(SBD_TRAIN) + "\n")
    (sbd / "val.txt").write_text("\n".join(SBD_VAL) + "\n")
    return voc, sbd


def test_train_aug_is_voc_train_and_sbd_minus_voc_val() -> None:
    assert train_aug_names(VOC_TRAIN, VOC_VAL, SBD_TRAIN, SBD_VAL) == TRAIN_AUG


def test_prepare_voc_writes_train_aug_labels_and_list(tmp_path: Path) -> None:
    voc, sbd = _make_trees(tmp_path)
    counts = build_train_aug(voc, sbd, allow_count_mismatch=True)
    assert counts == dict(train_aug=6, val=2, from_voc=5, from_sbd=3)
    assert (voc / "ImageSets" / "Segmentation" / "train_aug.txt").read_text().split() == TRAIN_AUG
    aug = voc / "SegmentationClassAug"
    assert sorted(p.stem for p in aug.glob("*.png")) == sorted(TRAIN_AUG + VOC_VAL)
    # VOC's own label wins where it exists (with its void band), SBD's .mat elsewhere.
    np.testing.assert_array_equal(np.array(Image.open(aug / "v1.png")), _label(0, void=True))
    s1 = Image.open(aug / "s1.png")
    assert s1.mode == "P"
    np.testing.assert_array_equal(
        np.array(s1), _label(100 + sorted(set(SBD_TRAIN + SBD_VAL)).index("s1"), False)
    )
    assert (voc / "JPEGImages" / "s3.jpg").is_file()

    cfg = DataConfig(layout="voc", root=str(tmp_path), train_split="train_aug", crop_size=9)
    check_config_leakage(cfg)
    assert build_dataset(cfg, "train_aug", train=True).names == TRAIN_AUG
    assert build_dataset(cfg, "train_aug", train=True)[0][1].shape == (9, 9)
    assert build_dataset(DataConfig(layout="voc_aug", root=str(tmp_path)), "train_aug", train=False)[4][
        1
    ].shape == (
        10,
        14,
    )


def test_prepare_voc_count_mismatch_is_an_error(tmp_path: Path) -> None:
    voc, sbd = _make_trees(tmp_path)
    with pytest.raises(
        PrepareError, match="train_aug has 6 images, expected 10582; val has 2 images, expected 1449"
    ):
        build_train_aug(voc, sbd)


def test_missing_scipy_is_an_error_naming_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    voc, sbd = _make_trees(tmp_path)
    monkeypatch.setitem(sys.modules, "scipy.io", None)  # makes `from scipy.io import ...` fail
    with pytest.raises(PrepareError, match=r'pip install "deeplabv3plus\[scipy\]"'):
        build_train_aug(voc, sbd, allow_count_mismatch=True)


def test_prepare_voc_script_extracts_archives(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _make_trees(tmp_path / "src")
    with tarfile.open(tmp_path / "VOCtrainval_11-May-2012.tar", "w") as tar:
        tar.add(tmp_path / "src" / "VOCdevkit", arcname="VOCdevkit")
    with tarfile.open(tmp_path / "benchmark.tgz", "w:gz") as tar:
        tar.add(tmp_path / "src" / "benchmark_RELEASE", arcname="benchmark_RELEASE")
    out = tmp_path / "out"
    script = Path(__file__).parents[2] / "scripts" / "prepare_voc.py"
    argv = ["prepare_voc.py", "--voc", str(tmp_path / "VOCtrainval_11-May-2012.tar")]
    argv += ["--sbd", str(tmp_path / "benchmark.tgz"), "--out", str(out), "--allow-count-mismatch"]
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(SystemExit) as exited:
        runpy.run_path(str(script), run_name="__main__")
    assert exited.value.code == 0
    lst = out / "VOCdevkit" / "VOC2012" / "ImageSets" / "Segmentation" / "train_aug.txt"
    assert lst.read_text().split() == TRAIN_AUG
    # A second run finds the extracted folders instead of extracting again.
    assert prepare_voc(None, None, out, allow_count_mismatch=True) == out / "VOCdevkit" / "VOC2012"


def test_prepare_voc_script_reports_a_missing_archive_in_one_line(tmp_path, monkeypatch, capsys) -> None:
    script = Path(__file__).parents[2] / "scripts" / "prepare_voc.py"
    monkeypatch.setattr(
        sys, "argv", ["prepare_voc.py", "--voc", str(tmp_path / "no.tar"), "--out", str(tmp_path)]
    )
    with pytest.raises(SystemExit) as exited:
        runpy.run_path(str(script), run_name="__main__")
    assert exited.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("prepare_voc.py: error: ") and "no.tar" in err and "\n" not in err


def test_prepare_voc_without_inputs_or_download_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(PrepareError, match="VOC not found in .*--download"):
        prepare_voc(None, None, tmp_path)
