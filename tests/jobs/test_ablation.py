"""The paper-in-ten-minutes ablation: its broken controls, its Multiply-Adds, and its report."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from deeplabv3plus import cli
from deeplabv3plus.ablation import (
    EVAL_ROWS,
    TRIMAP_WIDTHS,
    inference_macs,
    train_variant,
    write_shuffled_label_copy,
)
from deeplabv3plus.builders import build_model
from deeplabv3plus.config import config_from_dict

pytestmark = pytest.mark.filterwarnings("ignore:BatchNorm statistics are trained:UserWarning")


def tiny_recipe(root: Path, out: Path) -> dict:
    return {
        "model": {"backbone": "resnet18", "num_classes": 6, "head_channels": 16},
        "data": {"layout": "synthetic", "root": str(root), "num_classes": 6, "crop_size": 33, "workers": 0},
        "train": {"max_iters": 2, "batch_size": 2, "lr": 0.01, "allow_scratch_backbone": True, "device": "cpu",
                  "log_interval": 1, "val_interval": 0, "ckpt_interval": 100, "output_dir": str(out)},
    }  # fmt: skip


def _voc(root: Path) -> Path:
    return root / "VOCdevkit" / "VOC2012"


def test_shuffled_label_copy_gives_every_training_image_another_images_label(tmp_path, synthetic_voc):
    cfg = config_from_dict(tiny_recipe(synthetic_voc, tmp_path / "run"))
    out = write_shuffled_label_copy(cfg, tmp_path / "shuffled", seed=0)
    src, dst = _voc(synthetic_voc), _voc(out)
    lists = src / "ImageSets" / "Segmentation"
    train, val = (lists / "train.txt").read_text().split(), (lists / "val.txt").read_text().split()

    def label(voc: Path, name: str) -> np.ndarray:
        return np.array(Image.open(voc / "SegmentationClass" / f"{name}.png"))

    donors = []
    for name in train:
        shuffled = label(dst, name)
        assert shuffled.shape == label(src, name).shape  # resized to the image it is paired with
        assert (dst / "JPEGImages" / f"{name}.jpg").read_bytes() == (
            src / "JPEGImages" / f"{name}.jpg"
        ).read_bytes()
        matches = [
            other for other in train
            if np.array_equal(np.array(Image.fromarray(label(src, other)).resize(shuffled.shape[::-1], 0)), shuffled)
        ]  # fmt: skip
        assert name not in matches and len(matches) >= 1
        donors.append(matches[0])
    assert len(set(donors)) == len(train)  # a permutation: every label is used once
    for name in val:
        np.testing.assert_array_equal(label(dst, name), label(src, name))


def test_frozen_backbone_control_keeps_the_random_backbone_weights(tmp_path, synthetic_voc):
    cfg = config_from_dict(tiny_recipe(synthetic_voc, tmp_path / "run"))
    torch.manual_seed(cfg.train.seed)
    initial = build_model("resnet18", num_classes=6, head_channels=16).state_dict()
    model, row = train_variant(cfg, tmp_path / "frozen", **{"train.backbone_lr_mult": 0.0})
    state = model.state_dict()
    weights = [
        k for k in initial if k.startswith("backbone.") and "running" not in k and "num_batches" not in k
    ]
    assert weights and all(torch.equal(initial[k], state[k]) for k in weights)
    assert any(not torch.equal(initial[k], state[k]) for k in state if not k.startswith("backbone."))
    assert set(row) >= {"mIoU", "trimap", "macs", "train_wall_s"}


def test_inference_macs_sum_the_scales_and_double_with_flip():
    model = build_model("resnet18", num_classes=6, head_channels=16).eval()
    single = inference_macs(model, 16)
    assert inference_macs(model, 16, (1.0, 1.0), flip=True) == 4 * single
    assert inference_macs(model, 8) > single  # denser features cost more
    assert model.output_stride == 16  # restored
    no_decoder = build_model("resnet18", num_classes=6, head_channels=16, decoder=False).eval()
    assert inference_macs(no_decoder, 16) < single


def test_ablation_command_trains_both_variants_and_writes_the_tables(
    tmp_path, synthetic_voc, capsys, monkeypatch
):
    import deeplabv3plus.ablation as ablation

    rows = (EVAL_ROWS[0], EVAL_ROWS[-1])  # single scale at OS 16 and the costliest, OS 8 MS + flip
    monkeypatch.setattr(ablation, "EVAL_ROWS", rows)
    config = tmp_path / "recipe.yaml"
    config.write_text(yaml.safe_dump(tiny_recipe(synthetic_voc, tmp_path / "unused")))
    argv = ["paper-ablation", "--config", str(config), "--output", str(tmp_path / "out"), "--controls"]
    assert cli.main(argv) == 0
    report = (tmp_path / "out" / "ablation.md").read_text()
    assert f"wrote {tmp_path / 'out' / 'ablation.md'}" in capsys.readouterr().out
    for text in ["| mIoU % |", "| trimap 2 px % |", "| trimap 40 px % |", "Multiply-Adds", "training wall time",
                 "labels shuffled across images", "frozen random backbone"]:  # fmt: skip
        assert text in report, text
    for name, *_ in rows:
        assert f"| {name} |" in report
    results = json.loads((tmp_path / "out" / "ablation.json").read_text())
    assert set(results["train"]) == {"decoder", "no_decoder"}
    assert [int(w) for w in results["train"]["decoder"]["trimap"]] == list(TRIMAP_WIDTHS)
    assert results["train"]["decoder"]["macs"] > results["train"]["no_decoder"]["macs"]
    assert list(results["eval"]) == [name for name, *_ in rows] + ["OS 16, training scales + flip"]
    assert (tmp_path / "out" / "decoder" / "last.pth").is_file()
