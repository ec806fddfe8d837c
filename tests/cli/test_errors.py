"""Every bad input ends in one line: non-zero exit, no traceback, one stderr line naming the culprit.

Most cases run in-process through :func:`deeplabv3plus.cli.main`, the function the installed
``deeplabv3plus`` command calls; a few run as real processes (``python -m deeplabv3plus``,
``scripts/*.py``) to check what a user's terminal shows.
"""

from __future__ import annotations

import dataclasses
import errno
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from deeplabv3plus import build_model, cli
from deeplabv3plus.config import Config, config_to_dict

REPO = Path(__file__).resolve().parents[2]
NUM_CLASSES = 3


def _is_progress_bar(line: str) -> bool:
    return bool(re.search(r"\d+%\|", line) or re.search(r"\d+/\d+ \[", line))


def run_cli(argv: list[str], capsys) -> tuple[int, str, str]:
    """``deeplabv3plus ARGV`` in-process: exit code, stdout, stderr."""
    try:
        code = cli.main([str(a) for a in argv])
    except SystemExit as e:  # argparse's usage errors
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code: int, err: str, *culprits: str) -> str:
    assert code not in (0, None), f"exit code {code}"
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.strip() and not _is_progress_bar(line)]
    assert len(lines) == 1, f"expected one line on stderr, got:\n{err}"
    assert ": error: " in lines[0], lines[0]
    for culprit in culprits:
        assert culprit in lines[0], f"{culprit!r} not named in: {lines[0]}"
    return lines[0]


def fails(argv: list, capsys, *culprits: str) -> str:
    code, _, err = run_cli(argv, capsys)
    return assert_one_line_error(code, err, *culprits)


# --- fixtures: a small folders dataset, a training config, a checkpoint ----------------------------


def make_folder_dataset(root: Path, n: int = 6, size: tuple[int, int] = (40, 52)) -> Path:
    """images/*.jpg + masks/*.png (classes 0..2, void 255) + train.txt (4 stems) / val.txt (2)."""
    rng = np.random.default_rng(0)
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for i in range(n):
        mask = rng.integers(0, NUM_CLASSES, size).astype(np.uint8)
        mask[:3] = 255
        Image.fromarray(mask).save(root / "masks" / f"im{i}.png")
        Image.fromarray((rng.random((*size, 3)) * 255).astype(np.uint8)).save(root / "images" / f"im{i}.jpg")
    (root / "train.txt").write_text("".join(f"im{i}\n" for i in range(n - 2)))
    (root / "val.txt").write_text(f"im{n - 2}\nim{n - 1}\n")
    return root


def tiny_config(root: Path, out: Path) -> dict:
    return {
        "model": {"backbone": "resnet18", "num_classes": NUM_CLASSES, "head_channels": 16},
        "data": {"layout": "folders", "root": str(root), "num_classes": NUM_CLASSES, "crop_size": 33,
                 "workers": 0},
        "train": {"max_iters": 2, "batch_size": 2, "lr": 0.01, "allow_scratch_backbone": True, "device": "cpu",
                  "freeze_bn": True, "log_interval": 1, "val_interval": 0, "ckpt_interval": 2,
                  "output_dir": str(out)},
    }  # fmt: skip


@pytest.fixture
def data(tmp_path: Path) -> Path:
    return make_folder_dataset(tmp_path / "mine")


@pytest.fixture
def config(tmp_path: Path, data: Path) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(tiny_config(data, tmp_path / "run")))
    return path


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """A random ResNet-18 (3 classes) checkpoint with its config, reading a folders dataset."""
    base = tmp_path_factory.mktemp("ckpt")
    root = make_folder_dataset(base / "mine")
    cfg = Config()
    cfg.model.backbone, cfg.model.num_classes, cfg.model.head_channels = "resnet18", NUM_CLASSES, 16
    cfg.data.layout, cfg.data.root, cfg.data.num_classes, cfg.data.workers = (
        "folders",
        str(root),
        NUM_CLASSES,
        0,
    )
    torch.manual_seed(0)
    model = build_model(**dataclasses.asdict(cfg.model))
    path = base / "model.pth"
    torch.save({"model": model.state_dict(), "config": config_to_dict(cfg)}, path)
    torch.save(model.state_dict(), base / "bare.pth")
    return path


# --- config ----------------------------------------------------------------------------------------


def test_yaml_syntax_error_names_file_line_and_column(tmp_path, capsys):
    (tmp_path / "bad.yaml").write_text("model:\n  backbone: resnet18\n  decoder: [true\ntrain: {}\n")
    line = fails(
        ["train", "--config", tmp_path / "bad.yaml"], capsys, "bad.yaml", "line 4", "YAML syntax error"
    )
    assert "column" in line


def test_unknown_key_in_the_file_lists_the_valid_keys(config, capsys):
    config.write_text(config.read_text().replace("head_channels", "head_chanels"))
    fails(["train", "--config", config], capsys, "model.head_chanels", "valid keys")


@pytest.mark.parametrize(
    "override, culprit",
    [
        ("train.nope=1", "train.nope"),
        ("train.lr=fast", "train.lr"),
        ("model.output_stride=7", "model.output_stride"),
        ("model.backbone=resnet77", "resnet77"),
        ("data.scales=[0,1]", "data.scales"),
        ("train.max_iters", "train.max_iters"),
        ("train.max_iters=2.5", "train.max_iters"),
        ("train.device=cuda:7" if not torch.cuda.is_available() else "train.amp=fp8", "train."),
        ("model.bn_momentum=fast", "model.bn_momentum"),
        ("model.bn_momentum=1.5", "model.bn_momentum"),
        ("data.max_resize_value=513", "data.min_resize_value"),
        ("data.min_resize_value=0", "data.min_resize_value"),
        ("train.logits_bias_lr_mult=0", "train.logits_bias_lr_mult"),
    ],
)
def test_bad_override(config, capsys, override, culprit):
    fails(["train", "--config", config, override], capsys, culprit)


def test_missing_config_file(tmp_path, capsys):
    fails(["train", "--config", tmp_path / "nope.yaml"], capsys, "nope.yaml", "does not exist")


def test_unknown_config_name_lists_the_shipped_configs(capsys):
    fails(["train", "--config", "quickstrat"], capsys, "'quickstrat'", "does not exist", "quickstart, ")


def test_configs_of_an_unknown_name_lists_the_shipped_configs(capsys):
    fails(
        ["configs", "quickstrat"],
        capsys,
        "'quickstrat'",
        "expected one of ade20k_smoke, ",
        "quickstart, voc_eval",
    )


def test_paper_ablation_with_a_missing_config(tmp_path, capsys):
    fails(["paper-ablation", "--config", tmp_path / "nope.yaml"], capsys, "nope.yaml", "does not exist")


def test_eval_config_file_with_a_syntax_error(checkpoint, tmp_path, capsys):
    (tmp_path / "e.yaml").write_text("eval: {scales: [1.0}\n")
    fails(["eval", "--checkpoint", checkpoint, "--config", tmp_path / "e.yaml"], capsys, "e.yaml", "line 1")


# --- data ------------------------------------------------------------------------------------------


def test_missing_data_root(config, tmp_path, capsys):
    fails(["train", "--config", config, f"data.root={tmp_path / 'elsewhere'}"], capsys, "elsewhere")


def test_empty_split_list(config, data, capsys):
    (data / "train.txt").write_text("\n")
    fails(["train", "--config", config], capsys, "train.txt", "empty")


def test_listed_file_missing(config, data, capsys):
    (data / "images" / "im1.jpg").unlink()
    fails(["train", "--config", config], capsys, "im1.jpg", "missing")


def test_val_image_in_the_training_list(config, data, capsys):
    (data / "train.txt").write_text("im0\nim1\nim4\n")
    fails(["train", "--config", config], capsys, "im4", "also in the training split")


def test_corrupt_image_read_in_a_dataloader_worker_keeps_its_message(config, data, capsys):
    for i in range(1, 4):  # the first pair is checked before training starts; these in a worker
        (data / "images" / f"im{i}.jpg").write_bytes(b"not a jpeg")
    line = fails(["train", "--config", config, "data.workers=2"], capsys, "cannot read image", "im")
    assert "DataLoader worker" not in line and "Original Traceback" not in line


def test_label_out_of_range_in_a_dataloader_worker(config, data, capsys):
    for i in range(1, 4):  # the first pair is checked before training starts; these in a worker
        Image.fromarray(np.full((40, 52), 7, np.uint8)).save(data / "masks" / f"im{i}.png")
    fails(["train", "--config", config, "data.workers=2"], capsys, "masks", "values [7]", "data.num_classes")


def test_image_and_label_sizes_differ(config, data, capsys):
    for i in range(4):
        Image.fromarray(np.zeros((20, 30), np.uint8)).save(data / "masks" / f"im{i}.png")
    fails(["train", "--config", config], capsys, "im", "52x40", "30x20")


# --- losses, accumulation and label formats (docs/own_data.md) ---------------------------------------

COLORS = [[0, 0, 0], [128, 64, 128], [0, 0, 142]]


@pytest.mark.parametrize(
    "overrides, culprits",
    [
        (["train.loss.name=focal"], ("train.loss.name", "focal", "ohem")),
        (["train.accumulate=0"], ("train.accumulate", ">= 1")),
        (["train.loss.class_weights=[1,2]"], ("train.loss.class_weights", "3 weights")),
        (["train.loss.class_weights=balanced"], ("train.loss.class_weights", "'auto'")),
        (
            ["train.loss.bootstrapped_cross_entropy.top_k_percent_pixels=0.25"],
            (
                "train.loss.bootstrapped_cross_entropy.top_k_percent_pixels",
                "train.loss.name=bootstrapped_cross_entropy only",
            ),
        ),
        (["train.loss.name=ohem", "train.loss.ohem.thresh=1.5"], ("train.loss.ohem.thresh", "(0, 1]")),
        (["data.mask_format=jpeg"], ("data.mask_format", "jpeg", "index, rgb, binary, coco")),
        (["data.mask_format=rgb"], ("data.rgb.colors",)),
        (["data.mask_format=coco", "data.coco.annotations=a.json"], ("data.coco.mapping",)),
        (["data.mask_format=binary"], ("data.num_classes=2",)),
        (
            ["data.mask_format=coco", "data.coco.annotations=a.json", "data.coco.mapping={person: 7}"],
            ("data.coco.mapping", "'person': 7", "0..2"),
        ),
        (
            ["data.mask_format=coco", "data.coco.annotations=a.json", "data.coco.mapping=coco"],
            ("data.coco.mapping", "'voc'"),
        ),
        (["data.rgb.colors=[[0,0,0]]"], ("data.rgb.colors", "mask_format=rgb")),
        (["data.mask_format=rgb", "data.rgb.colors=[[0,0,0],[1,1,1]]"], ("data.rgb.colors", "2 colours")),
        (["data.mask_format=rgb", "data.rgb.colors=~/no_such_colours.yaml"], ("no_such_colours.yaml",)),
    ],
)
def test_bad_loss_accumulation_or_mask_format_option(config, capsys, overrides, culprits):
    fails(["train", "--config", config, *overrides], capsys, *culprits)


def test_an_unknown_mask_colour_names_the_file_the_colour_and_its_pixel_count(config, data, capsys):
    for i in range(6):
        rgb = np.zeros((40, 52, 3), np.uint8)
        rgb[:, 20:] = COLORS[1]
        rgb[5, :7] = [9, 9, 9] if i < 4 else COLORS[2]  # every training mask: the first batch fails
        Image.fromarray(rgb).save(data / "masks" / f"im{i}.png")
    fails(["train", "--config", config, "data.mask_format=rgb", f"data.rgb.colors={COLORS}"], capsys,
          "masks/im", "(9, 9, 9) on 7 px", "not in the colour table")  # fmt: skip


def test_a_binary_mask_with_other_values_than_0_and_255(config, data, capsys):
    for i in range(6):
        Image.fromarray(np.full((40, 52), 255 if i != 1 else 1, np.uint8)).save(data / "masks" / f"im{i}.png")
    fails(["train", "--config", config, "data.mask_format=binary", "data.num_classes=2", "model.num_classes=2"],
          capsys, "im1.png", "0 and 255")  # fmt: skip


def _coco(path: Path, stems: list[str], annotations: list[dict]) -> Path:
    images = [{"id": i, "file_name": f"{s}.jpg", "height": 40, "width": 52} for i, s in enumerate(stems)]
    categories = [{"id": 1, "name": "person"}, {"id": 2, "name": "kite"}]
    path.write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))
    return path


def test_a_coco_file_missing_a_listed_image(config, tmp_path, capsys):
    ann = _coco(tmp_path / "ann.json", ["im0", "im1", "im3", "im4", "im5"], [])
    fails(["train", "--config", config, "data.mask_format=coco", f"data.coco.annotations={ann}",
           "data.coco.mapping={person: 1}"], capsys, "ann.json", "no image 'im2'", "train.txt")  # fmt: skip


def test_a_coco_category_the_mapping_does_not_cover(config, tmp_path, capsys):
    kite = {"id": 1, "image_id": 0, "category_id": 2, "iscrowd": 0, "segmentation": [[0, 0, 9, 0, 9, 9]]}
    ann = _coco(tmp_path / "ann.json", [f"im{i}" for i in range(6)], [kite])
    fails(["train", "--config", config, "data.mask_format=coco", f"data.coco.annotations={ann}",
           "data.coco.mapping={person: 1}"], capsys, "ann.json", "2 (kite)", "does not cover")  # fmt: skip


def test_check_data_prints_the_report_and_exits_2_on_a_fatal_problem(config, data, tmp_path, capsys):
    Image.fromarray(np.full((40, 52), 7, np.uint8)).save(data / "masks" / "im1.png")
    code, out, err = run_cli(["check-data", "--config", config, "--output", tmp_path / "check"], capsys)
    assert_one_line_error(code, err, "tiny.yaml", "values_out_of_range (1)", "check_data.md")
    assert "# Data check: NOT OK" in out and "im1.png (values [7])" in out
    assert json.loads((tmp_path / "check" / "check_data.json").read_text())["ok"] is False


def test_check_data_workers_must_be_positive(config, capsys):
    fails(["check-data", "--config", config, "--workers", "0"], capsys, "--workers")


def test_diverging_loss(config, capsys):
    fails(["train", "--config", config, "train.lr=1e12", "train.max_iters=6"], capsys, "diverged", "train.lr")


@pytest.fixture
def nothing_costly(monkeypatch):
    """Building the model or fetching ImageNet weights fails loudly (a bug, not a one-line error)."""
    import deeplabv3plus.train as train_module
    import deeplabv3plus.weights.imagenet as imagenet

    def must_not_run(*args, **kwargs):
        raise AssertionError("the model was built or weights fetched before the data were checked")

    monkeypatch.setattr(train_module, "build_model", must_not_run)
    monkeypatch.setattr(imagenet, "resolve_source", must_not_run)


def test_mistyped_data_root_with_a_pretrained_backbone_fails_before_any_download(
    config, tmp_path, capsys, nothing_costly
):
    overrides = [f"data.root={tmp_path / 'mine_typo'}", "model.pretrained_backbone=torchvision:IMAGENET1K_V1"]
    fails(["train", "--config", config, *overrides], capsys, "mine_typo", "train.txt")
    assert not (tmp_path / "run").exists()


def test_rgb_colour_mask_in_the_first_pair_fails_before_anything_is_written(config, data, tmp_path, capsys,
                                                                            nothing_costly):  # fmt: skip
    Image.fromarray(np.zeros((40, 52, 3), np.uint8)).save(data / "masks" / "im0.png")
    fails(["train", "--config", config], capsys, "im0.png", "RGB colour image", "class indices")
    assert not (tmp_path / "run").exists()  # no config.yaml, no run_info.json


def test_mistyped_synthetic_root_is_not_silently_generated(config, tmp_path, capsys, nothing_costly):
    typo = tmp_path / "synthetc"
    fails(["train", "--config", config, "data.layout=synthetic", f"data.root={typo}"], capsys,
          str(typo), "holds no dataset", "data.synthetic.generate=true")  # fmt: skip
    assert not typo.exists()


# --- the run folder --------------------------------------------------------------------------------


def test_training_into_a_folder_holding_a_run_is_refused(config, tmp_path, capsys, nothing_costly):
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.jsonl").write_text('{"iteration": 1, "loss": 1.0}\n')
    (run / "last.pth").write_bytes(b"state")  # a checkpoint: a run to protect (without, it is reused)
    fails(["train", "--config", config], capsys, f"'{run}'", "last.pth, metrics.jsonl", "--resume auto",
          "train.output_dir", "--overwrite")  # fmt: skip
    assert sorted(p.name for p in run.iterdir()) == ["last.pth", "metrics.jsonl"]


def test_resume_auto_without_last_pth_next_to_a_best_pth(config, tmp_path, capsys, nothing_costly):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "best.pth").write_bytes(b"weights")
    fails(["train", "--config", config, "--resume", "auto"], capsys, "best.pth", "no last.pth", "--overwrite")


def test_resume_and_overwrite_together(config, tmp_path, capsys, nothing_costly):
    fails(["train", "--config", config, "--resume", "auto", "--overwrite"], capsys, "--resume", "--overwrite")


# --- checkpoints -----------------------------------------------------------------------------------


def test_missing_checkpoint(tmp_path, capsys):
    fails(["eval", "--checkpoint", tmp_path / "none.pth"], capsys, "none.pth", "does not exist")


def test_foreign_file_as_checkpoint(tmp_path, capsys):
    (tmp_path / "notes.pth").write_text("these are not weights\n")
    fails(["eval", "--checkpoint", tmp_path / "notes.pth"], capsys, "notes.pth", "not a PyTorch file")


def test_truncated_checkpoint(checkpoint, tmp_path, capsys):
    data = checkpoint.read_bytes()
    (tmp_path / "cut.pth").write_bytes(data[: len(data) // 2])
    args = ["predict", "--checkpoint", tmp_path / "cut.pth", tmp_path, "--output", tmp_path / "out"]
    Image.new("RGB", (8, 8)).save(tmp_path / "x.png")
    fails(args, capsys, "cut.pth", "truncated or corrupt")


class _RunsCode:
    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_pickle_that_would_run_code_is_refused_not_run(tmp_path, capsys):
    marker = tmp_path / "pwned"
    torch.save({"model": _RunsCode(str(marker)), "config": {}}, tmp_path / "evil.pth")
    fails(["export", "--checkpoint", tmp_path / "evil.pth", "--output", tmp_path / "m.onnx"], capsys,
          "evil.pth", "refusing", "could run code")  # fmt: skip
    assert not marker.exists()


@pytest.mark.parametrize(
    "overrides, culprit",
    [
        (["model.num_classes=21", "data.num_classes=21"], "classifier"),  # another class count
        (["model.backbone=resnet34"], "missing keys"),  # another architecture
    ],
)
def test_checkpoint_of_another_model(checkpoint, capsys, overrides, culprit):
    fails(["eval", "--checkpoint", checkpoint, *overrides], capsys, "model.pth", "does not fit", culprit)


def test_bare_state_dict_needs_a_config(checkpoint, capsys):
    fails(["eval", "--checkpoint", checkpoint.parent / "bare.pth"], capsys, "bare.pth", "--config")


def test_resume_from_a_weights_only_checkpoint(config, tmp_path, capsys):
    code, _, err = run_cli(["train", "--config", config, "--stop-after", "1"], capsys)
    assert code == 0, err
    state = torch.load(tmp_path / "run" / "last.pth", weights_only=True)
    torch.save({k: state[k] for k in ("model", "config", "iteration")}, tmp_path / "weights.pth")
    fails(
        ["train", "--config", config, "--resume", tmp_path / "weights.pth"],
        capsys,
        "weights.pth",
        "weights only",
    )


# --- eval, predict, export, convert and the small commands ----------------------------------------


def test_eval_scales_must_be_positive(checkpoint, capsys):
    fails(["eval", "--checkpoint", checkpoint, "--scales", "0", "1"], capsys, "eval.scales")


def test_eval_output_stride_choice(checkpoint, capsys):
    fails(["eval", "--checkpoint", checkpoint, "--output-stride", "12"], capsys, "--output-stride", "12")


def test_predict_input_without_images(checkpoint, tmp_path, capsys):
    args = ["predict", "--checkpoint", checkpoint, tmp_path / "nothing*.jpg", "--output", tmp_path / "o"]
    fails(args, capsys, "nothing*.jpg", "no image found")


@pytest.mark.parametrize("fmt", ["cityscapes", "voc", "ade20k"])
def test_predict_submission_format_must_fit_the_model(checkpoint, tmp_path, capsys, fmt):
    Image.new("RGB", (8, 8)).save(tmp_path / "x.png")
    args = [
        "predict",
        "--checkpoint",
        checkpoint,
        tmp_path / "x.png",
        "--output",
        tmp_path / "o",
        "--format",
        fmt,
    ]
    fails(args, capsys, f"--format {fmt}", "data.layout=folders")


def test_predict_alpha_must_be_a_weight(checkpoint, tmp_path, capsys):
    Image.new("RGB", (8, 8)).save(tmp_path / "x.png")
    fails(
        ["predict", "--checkpoint", checkpoint, tmp_path / "x.png", "--alpha", "2"],
        capsys,
        "--alpha",
        "[0, 1]",
    )


@pytest.fixture(scope="module")
def cityscapes_checkpoint(tmp_path_factory) -> Path:
    """A random ResNet-18 checkpoint of the 19 Cityscapes train IDs."""
    path = tmp_path_factory.mktemp("cs") / "cs.pth"
    cfg = Config()
    cfg.model.backbone, cfg.model.head_channels = "resnet18", 16
    cfg.model.num_classes = cfg.data.num_classes = 19
    cfg.data.layout = "cityscapes"
    model = build_model(**dataclasses.asdict(cfg.model))
    torch.save({"model": model.state_dict(), "config": config_to_dict(cfg)}, path)
    return path


def test_predict_cityscapes_format_needs_cityscapes_file_names(cityscapes_checkpoint, tmp_path, capsys):
    Image.new("RGB", (16, 8)).save(tmp_path / "photo.png")
    args = [
        "predict",
        "--checkpoint",
        cityscapes_checkpoint,
        tmp_path / "photo.png",
        "--format",
        "cityscapes",
    ]
    fails([*args, "--output", tmp_path / "o"], capsys, "photo.png", "<city>_<seq>_<frame>_leftImg8bit.png")


def test_predict_refuses_a_submission_folder_holding_other_files(cityscapes_checkpoint, tmp_path, capsys):
    Image.new("RGB", (16, 8)).save(tmp_path / "ulm_000001_000019_leftImg8bit.png")
    (tmp_path / "o" / "results").mkdir(parents=True)
    Image.new("L", (16, 8)).save(
        tmp_path / "o" / "results" / "ulm_000000_000019_leftImg8bit.png"
    )  # a stale one
    args = ["predict", "--checkpoint", cityscapes_checkpoint, tmp_path / "ulm_000001_000019_leftImg8bit.png"]
    fails([*args, "--format", "cityscapes", "--output", tmp_path / "o"], capsys,
          "ulm_000000_000019_leftImg8bit.png", "predictions only")  # fmt: skip


@pytest.mark.parametrize(
    "extra, culprit",
    [
        (["--output", "model.txt"], ".onnx"),
        (["--output", "m.onnx", "--opset", "3"], "--opset"),
        (["--output", "m.onnx", "--int8-backend", "pt2e"], "only with --int8"),
        (["--output", "m.onnx", "--int8", "--int8-backend", "pt2e"], ".pt2"),
        (
            ["--output", "m.pt2", "--int8", "--int8-backend", "pt2e", "--int8-exclude", "Conv_0"],
            "ONNX options",
        ),
    ],
)
def test_bad_export_arguments(checkpoint, capsys, extra, culprit):
    fails(["export", "--checkpoint", checkpoint, *extra], capsys, culprit)


def test_bad_tf_checkpoint(tmp_path, capsys):
    (tmp_path / "model.ckpt.index").write_bytes(os.urandom(64))
    args = ["convert", "--checkpoint", tmp_path / "model.ckpt", "--kind", "xception65_deeplab"]
    fails([*args, "--output", tmp_path / "x.pth"], capsys, "model.ckpt.index")


def test_missing_tf_checkpoint(tmp_path, capsys):
    args = ["convert", "--checkpoint", tmp_path / "gone.ckpt", "--kind", "xception65_imagenet"]
    fails([*args, "--output", tmp_path / "x.pth"], capsys, "gone.ckpt")


@pytest.mark.parametrize(
    "argv, culprit",
    [
        (["make-synthetic", "{tmp}/syn", "--num-classes", "40"], "num_classes"),
        (["prepare-voc", "--voc", "{tmp}/no.tar", "--out", "{tmp}"], "no.tar"),
        (["macs", "--size", "5"], "--size"),
        (["benchmark", "--backbone", "resnet77", "--device", "cpu"], "resnet77"),
        (["frobnicate"], "frobnicate"),
    ],
)
def test_small_commands(tmp_path, capsys, argv, culprit):
    fails([a.format(tmp=tmp_path) for a in argv], capsys, culprit)


def test_a_bug_still_shows_its_traceback(monkeypatch, capsys):
    """Not a user error: the traceback is what a maintainer needs."""

    def broken(args):
        raise TypeError("a bug")

    monkeypatch.setitem(cli.COMMANDS, "macs", dataclasses.replace(cli.COMMANDS["macs"], run=broken))
    with pytest.raises(TypeError, match="a bug"):
        cli.main(["macs"])


# --- a full disk while checkpointing --------------------------------------------------------------


def test_a_failed_checkpoint_write_keeps_the_previous_one_and_says_so(config, tmp_path, capsys, monkeypatch):
    import deeplabv3plus.checkpoint as checkpoint_module

    real_save, calls = torch.save, []

    def save_until_the_disk_is_full(obj, f, *args, **kwargs):
        calls.append(obj.get("iteration"))
        if len(calls) > 1:
            f.write(b"partial")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(checkpoint_module.torch, "save", save_until_the_disk_is_full)
    line = fails(["train", "--config", config, "train.max_iters=4"], capsys, "last.pth", "iteration 4")
    assert "No space left on device" in line and "(iteration 2) is intact" in line
    monkeypatch.setattr(checkpoint_module.torch, "save", real_save)
    assert torch.load(tmp_path / "run" / "last.pth", weights_only=True)["iteration"] == 2
    assert sorted(p.name for p in (tmp_path / "run").glob("*.pth*")) == ["last.pth"]  # no temp file left


# --- real processes --------------------------------------------------------------------------------


def _run(args: list, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [str(a) for a in args], cwd=cwd, capture_output=True, text=True, timeout=120, env=env
    )


@pytest.mark.slow
def test_in_a_terminal_python_m_and_the_scripts_print_one_line(tmp_path):
    (tmp_path / "bad.yaml").write_text("train: {lr: [}\n")
    done = _run([sys.executable, "-m", "deeplabv3plus", "train", "--config", "bad.yaml"], tmp_path)
    assert done.returncode == 2 and done.stderr.strip().count("\n") == 0, done.stderr
    assert done.stderr.startswith("deeplabv3plus train: error: config file 'bad.yaml', line 1")

    torch.save({"model": _RunsCode(str(tmp_path / "pwned"))}, tmp_path / "evil.pth")
    done = _run([sys.executable, REPO / "scripts" / "eval.py", "--checkpoint", "evil.pth"], tmp_path)
    assert done.returncode == 2 and done.stderr.strip().count("\n") == 0, done.stderr
    assert done.stderr.startswith("eval.py: error: refusing to load checkpoint 'evil.pth'")
    assert not (tmp_path / "pwned").exists()


# --- portable weights and precision ----------------------------------------------------------------


def test_save_pretrained_output_that_is_a_file(checkpoint, tmp_path, capsys):
    (tmp_path / "taken").write_text("x")
    fails(["save-pretrained", "--checkpoint", checkpoint, "--output", tmp_path / "taken"], capsys,
          "--output", "taken", "is a file")  # fmt: skip


def test_save_pretrained_eval_json_that_is_not_an_eval_result(checkpoint, tmp_path, capsys):
    (tmp_path / "other.json").write_text('{"loss": 1.0}')
    args = ["save-pretrained", "--checkpoint", checkpoint, "--output", tmp_path / "out"]
    fails([*args, "--eval-json", tmp_path / "other.json"], capsys, "other.json", "per_class_iou")
    fails([*args, "--eval-json", tmp_path / "none.json"], capsys, "none.json", "does not exist")
    assert not (tmp_path / "out").exists()


def test_save_pretrained_push_to_hub_needs_owner_and_name(checkpoint, tmp_path, capsys):
    args = ["save-pretrained", "--checkpoint", checkpoint, "--output", tmp_path / "out"]
    fails([*args, "--push-to-hub", "justaname"], capsys, "--push-to-hub", "OWNER/NAME")


def test_portable_weights_folder_without_config_json(tmp_path, capsys):
    (tmp_path / "exported").mkdir()
    fails(["eval", "--weights", tmp_path / "exported"], capsys, "exported", "config.json is missing")


def test_portable_weights_bad_hub_id(capsys):
    fails(["eval", "--weights", "hf:no-owner"], capsys, "hf:no-owner", "hf:owner/name")


def test_bad_precision(checkpoint, capsys):
    fails(["eval", "--checkpoint", checkpoint, "eval.precision=fp16"], capsys, "eval.precision", "fp16")
    fails(["predict", "--checkpoint", checkpoint, "x.png", "--output", "o", "--precision", "int4"], capsys,
          "--precision", "int4")  # fmt: skip


# --- nonsense values: refused when the config loads, before anything is written ---------------------


@pytest.mark.parametrize(
    "override, culprits",
    [
        ("train.max_iters=-5", ("train.max_iters", ">= 1", "-5")),
        ("train.max_iters=0", ("train.max_iters", ">= 1")),
        ("train.batch_size=0", ("train.batch_size", ">= 1")),
        ("train.lr=0", ("train.lr", "positive")),
        ("train.log_interval=0", ("train.log_interval", ">= 1")),
        ("train.ckpt_interval=0", ("train.ckpt_interval", ">= 1")),
        ("train.val_interval=-1", ("train.val_interval", ">= 0")),
        ("data.crop_size=0", ("data.crop_size", ">= 1")),
        ("data.workers=-1", ("data.workers", ">= 0")),
        ("eval.batch_size=0", ("eval.batch_size", ">= 1")),
        ("model.num_classes=0", ("model.num_classes", ">= 1")),
        ("model.head_channels=1e9", ("model.head_channels", "1..4096", "1000000000")),
        ("model.low_level_channels=0", ("model.low_level_channels", "1..4096")),
        ("model.aspp_dropout=1", ("model.aspp_dropout", "[0, 1)")),
        ("train.device=cpuu", ("train.device", "'cpuu'", "auto, cpu, cuda, cuda:N", "mps")),
    ],
)
def test_a_nonsense_value_is_one_line_and_nothing_is_written(config, tmp_path, capsys, nothing_costly, override,
                                                             culprits):  # fmt: skip
    code, _, err = run_cli(["train", "--config", config, override], capsys)
    assert code == 2
    assert_one_line_error(code, err, *culprits)
    assert not (tmp_path / "run").exists()  # no run folder, no config.yaml, no best.pth


@pytest.mark.parametrize(
    "device, gpus, culprits",
    [
        ("cuda", 0, ("train.device='cuda'", "CUDA is not available", "auto, cpu, cuda, cuda:N")),
        ("cuda:1", 0, ("train.device='cuda:1'", "CUDA is not available")),
        ("cuda:2", 2, ("train.device='cuda:2'", "has 2 CUDA device(s)", "cuda:0..cuda:1")),
        ("mps", 0, ("train.device='mps'", "MPS", "not available", "auto, cpu, cuda, cuda:N")),
    ],
)
def test_a_device_this_machine_lacks_is_one_line_when_the_run_starts(config, tmp_path, capsys, monkeypatch,
                                                                     nothing_costly, device, gpus, culprits):  # fmt: skip
    monkeypatch.setattr(torch.cuda, "is_available", lambda: gpus > 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: gpus)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    code, _, err = run_cli(["train", "--config", config, f"train.device={device}"], capsys)
    assert code == 2
    assert_one_line_error(code, err, *culprits)
    assert not (tmp_path / "run").exists()


def test_portable_weights_with_an_absurd_architecture_name_the_file_and_key(tmp_path, capsys, monkeypatch):
    pytest.importorskip("safetensors")
    from deeplabv3plus.pretrained import save_pretrained

    cfg = Config()
    cfg.model.backbone, cfg.model.num_classes, cfg.model.head_channels = "resnet18", NUM_CLASSES, 8
    cfg.data.num_classes = NUM_CLASSES
    save_pretrained(build_model(**dataclasses.asdict(cfg.model)).eval(), tmp_path / "w", cfg=cfg, source="x")
    stored = json.loads((tmp_path / "w" / "config.json").read_text())
    stored["model"]["head_channels"] = 10**9
    (tmp_path / "w" / "config.json").write_text(json.dumps(stored))
    import deeplabv3plus.builders as builders

    monkeypatch.setattr(builders, "MODEL_BUILDERS", {})  # nothing may be built: the check comes first
    Image.fromarray(np.zeros((20, 24, 3), np.uint8)).save(tmp_path / "x.png")
    for command in (["eval", "--weights", tmp_path / "w"],
                    ["predict", "--weights", tmp_path / "w", tmp_path / "x.png", "--output", tmp_path / "out"]):  # fmt: skip
        code, _, err = run_cli(command, capsys)
        assert code == 2
        assert_one_line_error(code, err, "config.json", "model.head_channels", "1..4096")
