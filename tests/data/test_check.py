"""check_data on a tiny tree the test writes, with one of each problem planted."""

from __future__ import annotations

import functools
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from deeplabv3plus.data.check import check_data, plot_class_frequencies, to_json, to_markdown
from deeplabv3plus.data.class_weights import class_weights_from_counts
from deeplabv3plus.data.label_formats import read_color_mask

H, W = 17, 23
C = 3


def write_image(path: Path, size=(W, H), orientation: int = 1) -> Path:
    rng = np.random.default_rng(len(str(path)))
    image = Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8))
    if orientation != 1:
        exif = Image.Exif()
        exif[0x0112] = orientation
        image.save(path, exif=exif)
    else:
        image.save(path)
    return path


def write_label(path: Path, array: np.ndarray) -> Path:
    Image.fromarray(array).save(path)
    return path


def good_label(seed: int, classes=(0, 1, 2)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    label = rng.choice(np.array(classes, np.uint8), (H, W))
    label[0, :] = 255  # a void band, as VOC's object boundaries
    return label


@pytest.fixture()
def planted(tmp_path: Path) -> dict[str, list[tuple[Path, Path]]]:
    """train: 2 good pairs + one of each per-file problem; val: 2 pairs, one sharing a train stem, no class 2."""
    d = tmp_path
    train = [
        (write_image(d / f"good{i}.jpg"), write_label(d / f"good{i}.png", good_label(i))) for i in range(2)
    ]
    out_of_range = good_label(10)
    out_of_range[5, 5] = 7
    train.append((write_image(d / "range.jpg"), write_label(d / "range.png", out_of_range)))
    train.append((write_image(d / "rgb.jpg"), write_label(d / "rgb.png", np.zeros((H, W, 3), np.uint8))))
    binary = np.zeros((H, W), np.uint8)
    binary[4:9, 4:9] = 255
    train.append((write_image(d / "binary.jpg"), write_label(d / "binary.png", binary)))
    train.append(
        (write_image(d / "deep.jpg"), write_label(d / "deep.png", good_label(11).astype(np.uint16) % 3))
    )
    train.append((write_image(d / "size.jpg", size=(W - 1, H)), write_label(d / "size.png", good_label(12))))
    train.append(
        (write_image(d / "rotated.jpg", orientation=6), write_label(d / "rotated.png", good_label(13)))
    )
    truncated = write_label(d / "truncated.png", good_label(14))
    truncated.write_bytes(truncated.read_bytes()[:60])
    train.append((write_image(d / "truncated.jpg"), truncated))
    (d / "notimage.jpg").write_text("not an image")
    train.append((d / "notimage.jpg", write_label(d / "notimage.png", good_label(15))))
    v = d / "val"
    v.mkdir()
    val = [
        (write_image(v / "good0.jpg"), write_label(v / "good0.png", good_label(20, classes=(0, 1)))),
        (write_image(v / "other.jpg"), write_label(v / "other.png", good_label(21, classes=(0, 1)))),
    ]
    return {"train": train, "val": val}


def test_each_planted_problem_is_found_with_its_count_and_example(planted, tmp_path):
    report = check_data(planted, C, 255, workers=2)
    expected = {
        # kind: (fatal, count, a substring of the first example)
        "unreadable": (True, 2, "truncated.png"),
        "rgb_mask": (True, 1, "rgb.png (RGB)"),
        "values_out_of_range": (True, 1, "range.png (values [7])"),
        "size_mismatch": (True, 1, "size.jpg is 22x17, "),
        "stem_in_two_splits": (True, 1, "good0 (train, val)"),
        "binary_mask": (False, 1, "binary.png"),
        "mask_16bit": (False, 1, "deep.png (I;16"),
        "exif_rotated": (False, 1, "rotated.jpg (Orientation 6)"),
        "class_never_present": (False, 1, "val: class 2"),
    }
    found = {p.kind: p for p in report.problems}
    assert set(found) == set(expected)
    for kind, (fatal, count, example) in expected.items():
        problem = found[kind]
        assert (problem.fatal, problem.count) == (fatal, count), kind
        assert example in problem.examples[0], (kind, problem.examples)
    assert any("notimage.jpg" in e for e in found["unreadable"].examples)
    assert not report.ok


def test_split_statistics_count_pixels_images_sizes_and_void(tmp_path):
    labels = [good_label(1), good_label(2, classes=(0, 2))]
    pairs = [
        (write_image(tmp_path / f"{i}.jpg"), write_label(tmp_path / f"{i}.png", lab))
        for i, lab in enumerate(labels)
    ]
    pairs.append(
        (
            write_image(tmp_path / "big.png", size=(40, 30)),
            write_label(tmp_path / "big_label.png", np.zeros((30, 40), np.uint8)),
        )
    )
    report = check_data({"train": pairs}, C, 255, workers=1)
    s = report.splits["train"]
    all_values = np.concatenate([lab.ravel() for lab in labels] + [np.zeros(1200, np.uint8)])
    assert s.num_images == 3 and s.image_modes == {"RGB": 3} and s.label_modes == {"L": 3}
    assert (s.min_size, s.max_size) == ((W, H), (40, 30))
    assert s.label_histogram == {int(v): int((all_values == v).sum()) for v in np.unique(all_values)}
    assert s.class_pixels == [int((all_values == c).sum()) for c in range(C)]
    assert s.class_images == [3, 1, 2]
    labelled = [int((lab != 255).sum()) for lab in labels]
    assert s.class_image_pixels == [labelled[0] + labelled[1] + 1200, labelled[0], labelled[0] + labelled[1]]
    assert s.void_share == pytest.approx((all_values == 255).mean())
    assert report.ok and report.problems == []
    weights = report.suggestions["train.loss.class_weights"]
    assert weights == pytest.approx(class_weights_from_counts(s.class_pixels, s.class_image_pixels), abs=1e-4)


def test_suggestions_name_the_num_classes_and_mask_format_that_fit(tmp_path):
    binary = np.zeros((H, W), np.uint8)
    binary[2:6, 2:6] = 255
    pairs = [
        (write_image(tmp_path / f"{i}.jpg"), write_label(tmp_path / f"{i}.png", binary)) for i in range(3)
    ]
    assert check_data({"train": pairs}, 21, workers=1).suggestions["data.mask_format"] == "binary"
    wide = good_label(3)
    wide[3, 3] = 9
    pairs = [(write_image(tmp_path / "w.jpg"), write_label(tmp_path / "w.png", wide))]
    assert check_data({"train": pairs}, C, workers=1).suggestions["data.num_classes"] == 10


def test_a_label_decoder_reads_colour_masks_and_reports_undecodable_ones(tmp_path):
    colors = [[0, 0, 0], [200, 0, 0], [0, 200, 0]]
    rgb = np.zeros((H, W, 3), np.uint8)
    rgb[:, 5:] = colors[1]
    bad = rgb.copy()
    bad[0, 0] = [1, 2, 3]
    pairs = [
        (write_image(tmp_path / "a.jpg"), write_label(tmp_path / "a.png", rgb)),
        (write_image(tmp_path / "b.jpg"), write_label(tmp_path / "b.png", bad)),
    ]
    decoder = functools.partial(read_color_mask, colors=colors)
    report = check_data({"train": pairs}, C, decoder=decoder, workers=2)
    assert report.problem("rgb_mask") is None
    problem = report.problem("label_format")
    assert (
        problem.fatal
        and problem.count == 1
        and "b.png" in problem.examples[0]
        and "(1, 2, 3) on 1 px" in problem.examples[0]
    )
    assert report.splits["train"].class_pixels == [5 * H, (W - 5) * H, 0]


def test_thread_and_process_pools_give_the_same_report(planted):
    threads = check_data(planted, C, executor="thread", workers=2)
    processes = check_data(planted, C, executor="process", workers=2)
    assert to_json(threads) == to_json(processes)


def test_shared_stems_are_a_warning_when_allowed(planted):
    report = check_data(
        {"val": planted["val"], "train": planted["train"][:2]}, C, allow_shared_stems=True, workers=1
    )
    assert report.problem("stem_in_two_splits").fatal is False
    assert report.ok


def test_the_report_renders_to_json_and_markdown(planted):
    report = check_data(planted, C, workers=2)
    data = json.loads(to_json(report))
    assert data["ok"] is False and data["splits"]["train"]["num_images"] == 10
    assert {p["kind"] for p in data["problems"]} >= {"unreadable", "binary_mask"}
    text = to_markdown(report, class_names=["background", "road", "tree"])
    assert text.startswith("# Data check: NOT OK")
    for piece in (
        "## Splits",
        "| train | 10 |",
        "2 tree",
        "**values_out_of_range** (fatal, 1)",
        "`train.loss.class_weights:",
    ):
        assert piece in text, piece


def test_plotting_without_matplotlib_names_the_plot_extra(planted, tmp_path, monkeypatch):
    report = check_data({"val": planted["val"]}, C, workers=1)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(ImportError, match=r"pip install 'deeplabv3plus\[plot\]'"):
        plot_class_frequencies(report, tmp_path / "classes.png")


def test_plotting_writes_a_png_when_matplotlib_is_installed(planted, tmp_path):
    pytest.importorskip("matplotlib")
    report = check_data({"val": planted["val"]}, C, workers=1)
    path = plot_class_frequencies(report, tmp_path / "classes.png")
    with Image.open(path) as im:
        assert im.format == "PNG"


def test_bad_arguments_raise_one_line_errors_naming_them(planted):
    with pytest.raises(ValueError, match=r"^num_classes: "):
        check_data(planted, 0)
    with pytest.raises(ValueError, match=r"^executor: "):
        check_data(planted, C, executor="gpu")


# --- check_data_run: the check-data command's job from Python -------------------------------------


def test_check_data_run_prints_the_summary_and_writes_json_and_markdown(synthetic_voc, tmp_path, capsys):
    from deeplabv3plus.config import DataConfig
    from deeplabv3plus.data.check import check_data_run

    data = DataConfig(layout="synthetic", root=str(synthetic_voc), num_classes=6)
    report = check_data_run(data, tmp_path / "reports", workers=2)
    assert report.ok and report.splits["train"].num_images == 6 and report.splits["val"].num_images == 3
    out = capsys.readouterr().out
    assert out.startswith("# Data check: OK") and "read 9 pairs in " in out
    assert (
        f"wrote {tmp_path / 'reports' / 'check_data.json'}, {tmp_path / 'reports' / 'check_data.md'}" in out
    )
    assert json.loads((tmp_path / "reports" / "check_data.json").read_text()) == json.loads(to_json(report))
    assert (tmp_path / "reports" / "check_data.md").read_text().startswith("# Data check: OK")


def test_check_data_run_refuses_a_worker_count_below_one(synthetic_voc, tmp_path):
    from deeplabv3plus.config import DataConfig
    from deeplabv3plus.data.check import check_data_run

    with pytest.raises(ValueError, match="--workers: expected a positive number, got 0"):
        check_data_run(DataConfig(layout="synthetic", root=str(synthetic_voc)), tmp_path, workers=0)


def test_fatal_summary_lists_the_fatal_problems_with_their_counts_and_no_warnings(planted):
    from deeplabv3plus.data.check import fatal_summary

    report = check_data(planted, C, 255, workers=2)
    assert set(fatal_summary(report).split(", ")) == {  # the warnings (exif_rotated, ...) left out
        "unreadable (2)",
        "rgb_mask (1)",
        "values_out_of_range (1)",
        "size_mismatch (1)",
        "stem_in_two_splits (1)",
    }
    assert fatal_summary(check_data({"train": planted["train"][:2]}, C, 255, workers=1)) == ""


def test_write_reports_without_matplotlib_writes_the_rest_and_says_why(
    planted, tmp_path, monkeypatch, capsys
):
    from deeplabv3plus.data.check import write_reports

    monkeypatch.setitem(sys.modules, "matplotlib", None)
    report = check_data({"val": planted["val"]}, C, workers=1)
    written = write_reports(report, tmp_path / "r")
    assert [p.name for p in written] == ["check_data.json", "check_data.md"]
    assert sorted(p.name for p in (tmp_path / "r").iterdir()) == ["check_data.json", "check_data.md"]
    printed = capsys.readouterr().out
    assert "no class-frequency chart" in printed and "deeplabv3plus[plot]" in printed
    assert json.loads(written[0].read_text()) == json.loads(to_json(report))


def _pair_with_label_value(d: Path, value: int) -> tuple[Path, Path]:
    label = good_label(30)
    label[3, 4:6] = value
    return write_image(d / f"v{value}.jpg"), write_label(d / f"v{value}.png", label)


def test_a_label_value_equal_to_the_class_count_is_out_of_range_and_one_below_is_not(tmp_path):
    # classes are 0..C-1: the value C is the first one out of range (an off-by-one would let it pass)
    report = check_data({"train": [_pair_with_label_value(tmp_path, C)]}, C, 255, workers=1)
    found = {p.kind: p for p in report.problems}
    assert found["values_out_of_range"].count == 1 and not report.ok
    assert f"v{C}.png (values [{C}])" in found["values_out_of_range"].examples[0]
    report = check_data({"train": [_pair_with_label_value(tmp_path, C - 1)]}, C, 255, workers=1)
    assert "values_out_of_range" not in {p.kind for p in report.problems} and report.ok


def test_the_dataset_loader_refuses_a_label_value_equal_to_the_class_count_naming_the_file(tmp_path):
    from deeplabv3plus.data.datasets import load_pair
    from deeplabv3plus.data.types import DatasetError, Sample

    image, label = _pair_with_label_value(tmp_path, C)
    with pytest.raises(
        DatasetError, match=rf"label '.*v{C}\.png' has values \[{C}\] outside the classes 0\.\.{C - 1}"
    ):
        load_pair(Sample("v", image, label), num_classes=C, ignore_index=255)
    image, label = _pair_with_label_value(tmp_path, C - 1)
    _, read = load_pair(Sample("v", image, label), num_classes=C, ignore_index=255)
    assert int(read.max()) == 255 and int(read[read != 255].max()) == C - 1
