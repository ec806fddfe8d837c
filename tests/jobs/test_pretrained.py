"""``deeplabv3plus save-pretrained``: a run's checkpoint becomes a portable folder whose card carries the
run's measured table, and which ``eval --weights`` / ``build_model(weights=)`` load back exactly."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from deeplabv3plus import build_model, cli
from deeplabv3plus.config import Config, config_to_dict

pytest.importorskip("safetensors")


def test_save_pretrained_from_a_checkpoint_with_its_eval_json(tmp_path, capsys):
    cfg = Config()
    cfg.model.backbone, cfg.model.num_classes, cfg.model.head_channels = "resnet18", 3, 16
    cfg.data.num_classes = 3
    torch.manual_seed(0)
    model = build_model(**dataclasses.asdict(cfg.model)).eval()
    run = tmp_path / "run"
    run.mkdir()
    torch.save(
        {"model": model.state_dict(), "config": config_to_dict(cfg), "best_miou": 0.3}, run / "best.pth"
    )
    (run / "run_info.json").write_text(json.dumps({"git_commit": "feedbeef", "versions": {"torch": "x"}}))
    evaluation = {
        "split": "val", "output_stride": 16, "scales": [1.0], "flip": False, "mode": "whole",
        "precision": "fp32", "num_images": 3, "mIoU": 0.4, "pixel_acc": 0.8,
        "per_class_iou": {"class_0": 0.5, "class_1": 0.3, "class_2": 0.4}, "config": config_to_dict(cfg),
    }  # fmt: skip
    (run / "best_eval_os16.json").write_text(json.dumps(evaluation))
    out = tmp_path / "exported"
    code = cli.main(["save-pretrained", "--checkpoint", str(run / "best.pth"), "--output", str(out),
                     "--eval-json", str(run / "best_eval_os16.json")])  # fmt: skip
    assert code == 0
    printed = capsys.readouterr().out
    assert str(out / "model.safetensors") in printed and str(out / "README.md") in printed
    card = (out / "README.md").read_text()
    assert "mIoU 40.00%" in card and "| class_1 | 30.00 |" in card and "feedbeef" in card
    assert "periodic validation" not in card  # the eval JSON wins over the run's best validation
    x = torch.randn(1, 3, 33, 33)
    with torch.no_grad():
        assert torch.equal(build_model(weights=str(out))(x), model(x))


def test_without_an_eval_json_the_card_quotes_the_runs_best_validation(tmp_path, capsys):
    cfg = Config()
    cfg.model.backbone, cfg.model.num_classes, cfg.model.head_channels = "resnet18", 3, 16
    cfg.data.num_classes = 3
    model = build_model(**dataclasses.asdict(cfg.model))
    torch.save(
        {"model": model.state_dict(), "config": config_to_dict(cfg), "best_miou": 0.25}, tmp_path / "b.pth"
    )
    (tmp_path / "metrics.jsonl").write_text(
        '{"iteration": 10, "val_mIoU": 0.2}\n{"iteration": 20, "val_mIoU": 0.25}\n'
    )
    assert (
        cli.main(
            ["save-pretrained", "--checkpoint", str(tmp_path / "b.pth"), "--output", str(tmp_path / "o")]
        )
        == 0
    )
    card = (tmp_path / "o" / "README.md").read_text()
    assert "25.00% on `val` at iteration 20" in card
