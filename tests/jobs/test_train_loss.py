"""train.loss and train.accumulate: the loss the loop builds from the config, and accumulated steps."""

from __future__ import annotations

import dataclasses
import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml
from test_train import tiny_config  # the same CPU-sized run as the training tests
from torch import nn

from deeplabv3plus._compat import grad_scaler
from deeplabv3plus.checkpoint import load_checkpoint
from deeplabv3plus.config import Config, config_from_dict
from deeplabv3plus.data.class_weights import class_weights_from_counts
from deeplabv3plus.data.datasets import build_dataset
from deeplabv3plus.losses import bootstrapped_cross_entropy, ohem_cross_entropy
from deeplabv3plus.train import (
    TrainState,
    build_train_loss,
    micro_batch_shares,
    poly_lr_factor,
    resolve_class_weights,
    train,
    train_step,
)

pytestmark = pytest.mark.filterwarnings("ignore:BatchNorm statistics are trained:UserWarning")

C = 4


def random_batch(n: int, seed: int, size: int = 9) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    images = torch.randn(n, 3, size, size, generator=g)
    labels = torch.randint(0, C, (n, size, size), generator=g)
    labels[0, : 1 + seed % 4] = 255  # void rows, a different count in every micro-batch
    return images, labels


def conv_model() -> nn.Module:
    """A two-layer conv net without BatchNorm: accumulation can equal the large batch exactly."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, C, 3, padding=1))


def one_step(model: nn.Module, micro_batches, cfg: Config) -> torch.Tensor:
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5, momentum=0.9, weight_decay=1e-4)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda it: poly_lr_factor(it, 10))
    state = TrainState(model, optimizer, scheduler, grad_scaler("cpu", enabled=False))
    runtime = SimpleNamespace(device=torch.device("cpu"), channels_last=False, amp_dtype=None)
    return train_step(
        model, micro_batches, state, cfg, runtime, build_train_loss(cfg, cfg.train.loss.class_weights)
    )


@pytest.mark.parametrize("class_weights", [None, [0.5, 2.0, 1.0, 3.0]])
def test_two_accumulated_micro_batches_of_b_equal_one_step_of_batch_2b_without_batchnorm(class_weights):
    cfg = Config()
    cfg.data.num_classes = cfg.model.num_classes = C
    cfg.train.loss.class_weights = class_weights
    (xa, ya), (xb, yb) = random_batch(3, seed=1), random_batch(3, seed=2)
    large, accumulated = conv_model(), conv_model()
    loss_large = one_step(large, [(torch.cat([xa, xb]), torch.cat([ya, yb]))], cfg)
    cfg.train.accumulate = 2
    loss_accumulated = one_step(accumulated, [(xa, ya), (xb, yb)], cfg)
    torch.testing.assert_close(loss_accumulated, loss_large, rtol=1e-6, atol=1e-7)
    for p_large, p_acc in zip(large.parameters(), accumulated.parameters()):
        torch.testing.assert_close(p_acc, p_large, rtol=1e-5, atol=1e-6)


def test_micro_batch_shares_are_the_non_void_pixel_shares_and_equal_when_all_is_void():
    a = torch.tensor([[0, 1, 255, 255]])
    b = torch.tensor([[2, 2, 2, 255]])
    assert micro_batch_shares([a, b], 255) == [2 / 5, 3 / 5]
    assert micro_batch_shares([torch.full((1, 4), 255)] * 2, 255) == [0.5, 0.5]
    assert micro_batch_shares([a], 255) == [1.0]


def test_the_default_loss_is_bitwise_torchs_cross_entropy():
    cfg = Config()
    logits, target = torch.randn(2, 21, 7, 9), torch.randint(0, 21, (2, 7, 9))
    target[0, 0] = 255
    assert torch.equal(
        build_train_loss(cfg, None)(logits, target, 5), F.cross_entropy(logits, target, ignore_index=255)
    )


def test_the_configured_losses_equal_their_direct_computation_at_the_given_iteration():
    cfg = config_from_dict({"data": {"num_classes": C}, "model": {"num_classes": C}, "train": {"loss": {
        "name": "bootstrapped_cross_entropy",
        "bootstrapped_cross_entropy": {"top_k_percent_pixels": 0.25, "hard_example_mining_step": 10}}}})  # fmt: skip
    logits, target = torch.randn(2, C, 6, 6), torch.randint(0, C, (2, 6, 6))
    got = build_train_loss(cfg, None)(logits, target, 4)
    want = bootstrapped_cross_entropy(
        logits, target, 4, top_k_percent_pixels=0.25, hard_example_mining_step=10
    )
    assert torch.equal(got, want)
    assert not torch.equal(got, bootstrapped_cross_entropy(logits, target, 0, top_k_percent_pixels=0.25,
                                                          hard_example_mining_step=10))  # fmt: skip
    cfg.train.loss = config_from_dict(
        {"train": {"loss": {"name": "ohem", "ohem": {"thresh": 0.5, "min_kept": 4}}}}
    ).train.loss
    weights = [1.0, 2.0, 0.5, 1.0]
    torch.testing.assert_close(
        build_train_loss(cfg, weights)(logits, target, 0),
        ohem_cross_entropy(logits, target, thresh=0.5, min_kept=4, class_weights=weights),
        rtol=0,
        atol=0,
    )


def test_auto_class_weights_are_median_frequency_of_the_training_labels(tmp_path, synthetic_voc):
    cfg = tiny_config(synthetic_voc, tmp_path)
    cfg.train.loss.class_weights = "auto"
    train_set = build_dataset(cfg.data, "train", train=True)
    pixels, image_pixels = np.zeros(6), np.zeros(6)
    for i in range(len(train_set)):
        label = train_set.load(i)[1].numpy()
        counts = np.bincount(label.reshape(-1), minlength=256)
        pixels += counts[:6]
        image_pixels += (counts[:6] > 0) * (label != 255).sum()
    weights = resolve_class_weights(cfg, train_set)
    assert weights == pytest.approx(class_weights_from_counts(pixels, image_pixels), rel=1e-12)
    assert len(set(weights)) > 1


@pytest.mark.slow
def test_a_run_records_its_loss_and_resumes_bitwise_with_accumulation(tmp_path, synthetic_voc, no_val):
    loss = {"name": "bootstrapped_cross_entropy", "class_weights": "auto",
            "bootstrapped_cross_entropy": {"top_k_percent_pixels": 0.5}}  # fmt: skip
    straight = tiny_config(synthetic_voc, tmp_path / "straight", max_iters=2, batch_size=2, accumulate=2)
    straight.data.crop_size = 33
    straight.train.loss = config_from_dict({"train": {"loss": loss}}).train.loss
    model_a, _ = train(straight)
    info = json.loads((tmp_path / "straight" / "run_info.json").read_text())
    assert info["loss"]["name"] == "bootstrapped_cross_entropy" and len(info["loss"]["class_weights"]) == 6
    assert yaml.safe_load((tmp_path / "straight" / "config.yaml").read_text())["train"][
        "loss"
    ] == dataclasses.asdict(straight.train.loss)

    interrupted = config_from_dict({"train": {"output_dir": str(tmp_path / "cut")}}, base=straight)
    train(interrupted, stop_after=1)
    model_b, _ = train(interrupted, resume=str(tmp_path / "cut" / "last.pth"))
    assert load_checkpoint(tmp_path / "cut" / "last.pth")["iteration"] == 2
    for key, value in model_a.state_dict().items():
        assert torch.equal(value, model_b.state_dict()[key]), key
