"""``deeplabv3plus save-pretrained``: a run's checkpoint becomes a portable folder whose card carries the
run's measured table, and which ``eval --weights`` / ``build_model(weights=)`` load back exactly; in
Python, ``save_pretrained(model, folder)`` takes the architecture from the model's builder."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from deeplabv3plus import build_model, cli, deeplabv3plus_resnet18, prepare_for_inference
from deeplabv3plus.config import Config, config_to_dict
from deeplabv3plus.models import DeepLabV3Plus, ResNet
from deeplabv3plus.pretrained import save_pretrained

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


def _resnet18_config(**model) -> Config:
    """The Config equivalent to ``deeplabv3plus_resnet18(num_classes=3, head_channels=16, **model)``."""
    cfg = Config()
    cfg.model.backbone, cfg.model.num_classes, cfg.model.head_channels = "resnet18", 3, 16
    for key, value in model.items():
        setattr(cfg.model, key, value)
    cfg.data.num_classes = 3
    return cfg


def test_save_pretrained_takes_the_architecture_from_the_model(tmp_path):
    torch.manual_seed(0)
    model = deeplabv3plus_resnet18(
        num_classes=3,
        head_channels=16,
        aspp_rates=(4, 8, 12),
        backbone_bn_momentum=0.05,
        head_bn_momentum=0.0003,
    ).eval()
    save_pretrained(model, tmp_path / "one")  # one call: no config
    save_pretrained(
        model, tmp_path / "cfg", cfg=_resnet18_config(aspp_rates=[4, 8, 12], bn_momentum="reference")
    )
    one, two = (json.loads((tmp_path / d / "config.json").read_text()) for d in ("one", "cfg"))
    assert one == two  # what an equivalent Config writes
    assert one["model"]["head_channels"] == 16 and one["model"]["bn_momentum"] == "reference"
    card = (tmp_path / "one" / "README.md").read_text()
    assert "Not recorded: saved from Python without a training config" in card and "SGD" not in card
    x = torch.randn(1, 3, 33, 33)
    with torch.no_grad():
        assert torch.equal(build_model(weights=str(tmp_path / "one"))(x), model(x))


def test_the_builders_record_survives_to_and_prepare_for_inference_and_rebuilds_the_model():
    model = deeplabv3plus_resnet18(num_classes=3, head_channels=16, separable=True)
    record = dict(model.build_args)
    assert record["backbone"] == "resnet18" and record["separable"] is True and record["weights"] is None
    assert model.to("cpu").build_args == record and prepare_for_inference(model).build_args == record
    rebuilt = build_model(**record)
    shapes = {k: v.shape for k, v in model.state_dict().items()}
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == shapes


def test_save_pretrained_of_a_model_not_made_by_a_builder_asks_for_cfg(tmp_path):
    model = DeepLabV3Plus(ResNet(18, "standard", 16, "subsample"), 3, head_channels=16).eval()
    with pytest.raises(ValueError, match=r"records no builder arguments .*pass cfg=") as e:
        save_pretrained(model, tmp_path / "o")
    assert "\n" not in str(e.value)
    save_pretrained(model, tmp_path / "o", cfg=_resnet18_config())
    assert json.loads((tmp_path / "o" / "config.json").read_text())["model"]["head_channels"] == 16


def test_save_pretrained_refuses_a_cfg_of_another_architecture(tmp_path):
    model = deeplabv3plus_resnet18(num_classes=3, head_channels=16)
    with pytest.raises(
        ValueError, match="cfg.model.head_channels=256 but the model was built with head_channels=16"
    ):
        save_pretrained(model, tmp_path / "o", cfg=_resnet18_config(head_channels=256))


def test_save_pretrained_of_a_model_built_on_portable_weights_keeps_their_classes_and_mean(tmp_path):
    cfg = _resnet18_config()
    cfg.data.class_names, cfg.data.mean, cfg.data.std = ["sky", "road", "car"], [0.5] * 3, [0.5] * 3
    save_pretrained(deeplabv3plus_resnet18(num_classes=3, head_channels=16), tmp_path / "a", cfg=cfg)
    tuned = deeplabv3plus_resnet18(weights=tmp_path / "a")  # the architecture from the folder
    save_pretrained(tuned, tmp_path / "b")
    a, b = (json.loads((tmp_path / d / "config.json").read_text()) for d in ("a", "b"))
    assert b["class_names"] == ["sky", "road", "car"] and b["mean"] == [0.5] * 3
    assert b["model"] == a["model"] and b["data"] == a["data"]
    assert "built on weights" in (tmp_path / "b" / "README.md").read_text()
