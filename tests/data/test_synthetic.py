"""The synthetic generator writes the exact VOC 2012 layout, palette PNGs and void bands."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
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


# --- the kinds: "texture" (the default, colour carries no class information) and "colour" ---------


def _colour_histogram_balanced_accuracy(kind: str, num_images: int = 40, size: int = 48) -> float:
    """Balanced accuracy on held-out images of a per-pixel classifier that sees only the pixel's colour.

    Maximum likelihood over a 4x4x4 RGB histogram per class, fitted on ``num_images`` images and
    scored on ``num_images`` others: 1/6 is chance for the 6 classes.
    """
    from deeplabv3plus.data.synthetic import make_sample

    def pixels(indices: range) -> tuple[np.ndarray, np.ndarray]:
        colours, classes = [], []
        for i in indices:
            image, label = make_sample(np.random.default_rng([1, i]), size=size, kind=kind)
            keep = label != IGNORE_INDEX
            colours.append(image[keep] // 64)
            classes.append(label[keep])
        q = np.concatenate(colours).astype(np.int64)
        return q[:, 0] * 16 + q[:, 1] * 4 + q[:, 2], np.concatenate(classes).astype(np.int64)

    fit_bins, fit_classes = pixels(range(num_images))
    test_bins, test_classes = pixels(range(num_images, 2 * num_images))
    counts = np.ones((64, SYNTHETIC_NUM_CLASSES))
    np.add.at(counts, (fit_bins, fit_classes), 1)
    predicted = (counts / counts.sum(0)).argmax(1)[test_bins]
    recalls = [(predicted[test_classes == c] == c).mean() for c in range(SYNTHETIC_NUM_CLASSES)]
    return float(np.mean(recalls))


def test_texture_kind_colours_carry_no_class_information_unlike_the_colour_kind() -> None:
    chance = 1 / SYNTHETIC_NUM_CLASSES
    assert _colour_histogram_balanced_accuracy("texture") < chance + 0.1
    assert _colour_histogram_balanced_accuracy("colour") > 0.9  # the same test does see colour classes


def test_texture_kind_gives_every_class_its_own_shape_and_texture_pair() -> None:
    from deeplabv3plus.data.synthetic_texture import SHAPES, TEXTURES, shape_and_texture

    pairs = [shape_and_texture(c) for c in range(1, 21)]
    assert len(set(pairs)) == 20
    # The default 5 objects use every shape once and every texture once.
    assert {p[0] for p in pairs[:5]} == set(SHAPES) and {p[1] for p in pairs[:5]} == set(TEXTURES)


def test_texture_kind_objects_are_thin_most_of_their_pixels_lie_near_a_boundary() -> None:
    import torch

    from deeplabv3plus.data.synthetic import make_sample
    from deeplabv3plus.metrics import void_distance

    def near_boundary_share(kind: str) -> float:
        near = total = 0
        for i in range(10):
            label = torch.from_numpy(
                make_sample(np.random.default_rng([2, i]), size=128, kind=kind)[1]
            ).long()
            foreground = (label != 0) & (label != IGNORE_INDEX)
            near += int((foreground & (void_distance(label, 4) <= 3)).sum())
            total += int(foreground.sum())
        return near / total

    assert near_boundary_share("texture") > 0.5 > 0.4 > near_boundary_share("colour")


def test_the_marker_records_the_kind_and_generator_version(tmp_path: Path) -> None:
    import json

    from deeplabv3plus.data.synthetic import SYNTHETIC_KINDS

    for kind in ("texture", "colour"):
        make_synthetic_voc(tmp_path / kind, num_train=1, num_val=1, size=32, kind=kind)
        meta = json.loads((tmp_path / kind / "synthetic.json").read_text())
        assert (meta["kind"], meta["version"]) == (kind, SYNTHETIC_KINDS[kind])


def test_a_set_of_another_kind_or_an_older_version_is_never_silently_reused(tmp_path: Path) -> None:
    import json

    import pytest

    from deeplabv3plus.config import DataConfig
    from deeplabv3plus.data.datasets import DatasetError, build_dataset

    make_synthetic_voc(tmp_path / "old", num_train=2, num_val=1, size=32, kind="colour")
    marker = tmp_path / "old" / "synthetic.json"
    meta = json.loads(marker.read_text())
    del meta["kind"], meta["version"]  # as written before kinds existed
    marker.write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="generated as kind 'colour' version 1, but kind 'texture'"):
        make_synthetic_voc(tmp_path / "old", num_train=2, num_val=1, size=32)
    cfg = DataConfig(layout="synthetic", root=str(tmp_path / "old"), num_classes=6, crop_size=17)
    with pytest.raises(DatasetError, match=r"delete '.*old' to regenerate it"):
        build_dataset(cfg, "train", train=True)
    cfg.synthetic.kind = "colour"  # asking for it by name reads it
    assert len(build_dataset(cfg, "train", train=True)) == 2
    cfg.synthetic.kind = "stripes"
    with pytest.raises(DatasetError, match="data.synthetic.kind: unknown synthetic kind 'stripes'"):
        build_dataset(cfg, "train", train=True)


@pytest.mark.parametrize("kind", ["texture", "colour"])
def test_synthetic_classes_are_named_after_what_the_generator_draws(kind):
    from deeplabv3plus.data.synthetic import synthetic_class_names
    from deeplabv3plus.data.synthetic_texture import shape_and_texture

    for num_classes in range(2, 22):
        names = synthetic_class_names(num_classes, kind)
        assert len(names) == num_classes == len(set(names)) and names[0] == "background"
    names = synthetic_class_names(21, kind)
    if kind == "texture":
        assert all(names[c] == " ".join(reversed(shape_and_texture(c))) for c in range(1, 21))
    else:  # hue then the class's shape; classes cycle ellipse, rectangle, triangle
        assert names[1] == "red ellipse" and names[2].endswith("rectangle") and names[3].endswith("triangle")
