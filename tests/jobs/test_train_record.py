"""What a run records: which validation rewrites ``best.pth``, which LR ``metrics.jsonl`` logs, and
when the small-batch BatchNorm warning fires. Tiny CPU runs on the session's synthetic VOC set."""

from __future__ import annotations

import json
import warnings

import pytest
import torch
from test_train import tiny_config  # tests/jobs/test_train.py: the CPU-sized run

import deeplabv3plus.train as train_module
from deeplabv3plus.checkpoint import load_checkpoint
from deeplabv3plus.config import config_from_dict
from deeplabv3plus.runtime import Runtime
from deeplabv3plus.train import check_recipe, poly_lr_factor, train

# The tiny runs use 4 images per device on purpose; the warning itself is tested below.
pytestmark = pytest.mark.filterwarnings("ignore:BatchNorm statistics are trained:UserWarning")


def scripted_evaluate(monkeypatch, mious: list[float]) -> None:
    """train()'s validations return these mIoUs in turn (the ``no_val`` fixture's fake, scripted)."""
    remaining = list(mious)

    def fake_evaluate(*args, **kwargs):
        miou = remaining.pop(0)
        return {"mIoU": miou, "pixel_acc": miou, "table": "", "per_class_iou": {}}

    monkeypatch.setattr(train_module, "evaluate", fake_evaluate)


def small(cfg):
    """tiny_config at 2 images of 33 px a step: these tests look at records, not at learning."""
    cfg.data.crop_size = 33
    return cfg


def test_best_pth_is_rewritten_on_a_higher_val_miou_but_not_on_a_tie(tmp_path, synthetic_voc, monkeypatch):
    # validations after iterations 1 and 2 (val_interval 1) and at the end of the run (3)
    scripted_evaluate(monkeypatch, [0.4, 0.5, 0.5])
    train(small(tiny_config(synthetic_voc, tmp_path, max_iters=3, val_interval=1, batch_size=2)))
    best = load_checkpoint(tmp_path / "best.pth")
    assert (best["iteration"], best["best_miou"]) == (2, 0.5)  # the first of the tied 0.5s is kept
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [(r["iteration"], r["val_mIoU"]) for r in records if "val_mIoU" in r] == [
        (1, 0.4),
        (2, 0.5),
        (3, 0.5),
    ]


def test_metrics_jsonl_logs_the_lr_of_the_last_param_group_the_backbone_convs(
    tmp_path, synthetic_voc, no_val
):
    # groups sorted by (backbone?, decayed?, logits bias?): head BN, logits bias, head convs,
    # backbone BN, backbone convs; the logged LR is the last one's, train.lr x backbone_lr_mult x
    # poly, after the scheduler step of the logged iteration
    cfg = tiny_config(
        synthetic_voc,
        tmp_path,
        max_iters=3,
        lr=0.02,
        backbone_lr_mult=0.5,
        logits_bias_lr_mult=2.0,
        batch_size=2,
    )
    train(small(cfg))
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    logged = [(r["iteration"], r["lr"]) for r in records if "lr" in r]
    assert [it for it, _ in logged] == [1, 2, 3]
    for it, lr in logged:
        assert lr == pytest.approx(0.5 * 0.02 * poly_lr_factor(it, 3), rel=1e-12, abs=0), it


def _bn_warnings(batch_size: int, world_size: int = 1, **train_cfg) -> list[str]:
    cfg = config_from_dict(
        {"train": {"batch_size": batch_size, "allow_scratch_backbone": True, "device": "cpu", **train_cfg}}
    )
    runtime = Runtime(device=torch.device("cpu"), world_size=world_size)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_recipe(cfg, runtime)
    return [str(w.message) for w in caught if "BatchNorm statistics are trained" in str(w.message)]


@pytest.mark.parametrize(
    "batch_size, world_size, warns",
    [(7, 1, True), (8, 1, False), (14, 2, True), (16, 2, False), (4, 1, True), (16, 1, False)],
)
def test_the_batchnorm_warning_fires_below_8_images_per_device_and_not_at_8(batch_size, world_size, warns):
    got = _bn_warnings(batch_size, world_size)
    assert len(got) == int(warns)
    if warns:
        assert f"with {batch_size // world_size} images per device" in got[0]


def test_the_batchnorm_warning_is_silent_with_frozen_bn_at_any_batch():
    assert _bn_warnings(2, freeze_bn=True) == []
