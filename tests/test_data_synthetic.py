"""The synthetic generator writes the exact VOC 2012 layout, palette PNGs and void bands."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
from PIL import Image

from deeplabv3plus.data.synthetic import SYNTHETIC_NUM_CLASSES, make_synthetic_voc
from deeplabv3plus.data.voc_meta import IGNORE_INDEX, voc_palette


def _voc(root: Path) -> Path:
    return root / "VOCdevkit" / "VOC2012"


def test_synthetic_dataset_has_the_voc_2012_layout(synthetic_voc: Path) -> None:
    voc = _voc(synthetic_voc)
    lists = voc / "ImageSets" / "Segmentation"
    train = (lists / "train.txt").read_text().split()
    val = (lists / "val.txt").read_text().split()
    assert len(train) == 6 and len(val) == 3
    assert (lists / "trainval.txt").read_text().split() == train + val
    assert not set(train) & set(val)
    for name in train + val:
        assert (voc / "JPEGImages" / f"{name}.jpg").is_file()
        assert (voc / "SegmentationClass" / f"{name}.png").is_file()


def test_synthetic_labels_are_voc_palette_pngs_with_valid_indices(synthetic_voc: Path) -> None:
    seen = set()
    for png in sorted((_voc(synthetic_voc) / "SegmentationClass").glob("*.png")):
        with Image.open(png) as im:
            assert im.mode == "P"
            palette = np.array(im.getpalette()[: 256 * 3], dtype=np.uint8).reshape(-1, 3)
            label = np.array(im)
        np.testing.assert_array_equal(palette, voc_palette())
        with Image.open(png.parents[1] / "JPEGImages" / f"{png.stem}.jpg") as jpg:
            assert jpg.size == (label.shape[1], label.shape[0])
        seen |= set(np.unique(label).tolist())
    assert seen <= set(range(SYNTHETIC_NUM_CLASSES)) | {IGNORE_INDEX}
    assert IGNORE_INDEX in seen and 0 in seen and len(seen) >= 4


def test_synthetic_objects_are_surrounded_by_a_void_band() -> None:
    from deeplabv3plus.data.synthetic import make_sample

    for i in range(5):
        _, label = make_sample(np.random.default_rng([0, i]), size=64)
        void = label == IGNORE_INDEX
        # No two different classes touch directly: every class boundary is void, as in VOC.
        for a, b in ((label[:, 1:], label[:, :-1]), (label[1:, :], label[:-1, :])):
            touching = (a != b) & (a != IGNORE_INDEX) & (b != IGNORE_INDEX)
            assert not touching.any()
        assert 0 < void.mean() < 0.5


def test_synthetic_images_vary_in_size() -> None:
    from deeplabv3plus.data.synthetic import make_sample

    sizes = {make_sample(np.random.default_rng([0, i]), size=128)[1].shape for i in range(10)}
    assert len(sizes) > 5
    assert all(96 <= s <= 160 for shape in sizes for s in shape)


def test_seed_makes_the_synthetic_dataset_byte_identical(tmp_path: Path) -> None:
    def digest(root: Path) -> str:
        h = hashlib.sha256()
        for f in sorted(_voc(root).rglob("*")):
            if f.is_file():
                h.update(f.relative_to(root).as_posix().encode() + f.read_bytes())
        return h.hexdigest()

    kw = dict(num_train=2, num_val=1, size=40)
    for name, seed in (("a", 3), ("b", 3), ("c", 4)):
        make_synthetic_voc(tmp_path / name, seed=seed, **kw)
    assert digest(tmp_path / "a") == digest(tmp_path / "b") != digest(tmp_path / "c")


def test_existing_synthetic_dataset_is_not_regenerated(tmp_path: Path) -> None:
    voc = make_synthetic_voc(tmp_path / "s", num_train=1, num_val=1, size=32)
    stamp = (voc / "JPEGImages" / "syn_000000.jpg").stat().st_mtime_ns
    make_synthetic_voc(tmp_path / "s", num_train=1, num_val=1, size=32)
    assert (voc / "JPEGImages" / "syn_000000.jpg").stat().st_mtime_ns == stamp
