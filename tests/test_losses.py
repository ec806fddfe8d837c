"""The losses against direct numpy computations on random inputs (with ignore pixels)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from deeplabv3plus.losses import (
    LOSSES,
    bootstrapped_cross_entropy,
    build_loss,
    class_weights_from_counts,
    cross_entropy,
    lovasz_softmax,
    ohem_cross_entropy,
    top_k_fraction,
)

IGNORE = 255
N, C, H, W = 2, 5, 17, 23


def random_batch(seed: int, ignore_share: float = 0.2) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, C, H, W) float64 logits and (N, H, W) int64 targets with ~``ignore_share`` ignore pixels."""
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(N, C, H, W, generator=g, dtype=torch.float64) * 2.0
    target = torch.randint(0, C, (N, H, W), generator=g)
    target[torch.rand(N, H, W, generator=g) < ignore_share] = IGNORE
    return logits, target


def np_pixel_ce(logits: torch.Tensor, target: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Per-pixel cross-entropy by a loop (0 on ignore pixels) and the flat targets, in (N, H, W) order."""
    x = logits.detach().numpy()
    t = target.numpy()
    losses = np.zeros(t.shape)
    for n, i, j in np.ndindex(*t.shape):
        if t[n, i, j] == IGNORE:
            continue
        z = x[n, :, i, j]
        m = z.max()
        log_sum = m + np.log(np.exp(z - m).sum())
        losses[n, i, j] = log_sum - z[t[n, i, j]]
    return losses.reshape(-1), t.reshape(-1)


def np_softmax(logits: torch.Tensor) -> np.ndarray:
    """(N*H*W, C) softmax probabilities in (N, H, W) pixel order."""
    x = logits.detach().numpy().transpose(0, 2, 3, 1).reshape(-1, C)
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


# ---------------------------------------------------------------------------------------------------
# Plain and class-weighted cross-entropy.


def test_default_loss_is_bit_identical_to_the_plain_cross_entropy_train_uses():
    logits, target = random_batch(0)
    logits = logits.float()
    expected = F.cross_entropy(logits, target, ignore_index=IGNORE)
    assert torch.equal(build_loss()(logits, target, 7), expected)
    assert torch.equal(build_loss("cross_entropy", ignore_index=IGNORE)(logits, target), expected)


def test_cross_entropy_is_the_mean_over_non_ignored_pixels():
    logits, target = random_batch(1)
    losses, t = np_pixel_ce(logits, target)
    expected = losses[t != IGNORE].mean()
    assert cross_entropy(logits, target).item() == pytest.approx(expected, rel=1e-10)


def test_weighted_cross_entropy_divides_the_weighted_sum_by_the_non_ignored_pixel_count():
    logits, target = random_batch(2)
    weights = [0.5, 2.0, 1.0, 3.0, 0.0]
    losses, t = np_pixel_ce(logits, target)
    valid = t != IGNORE
    expected = sum(weights[c] * loss for c, loss in zip(t[valid], losses[valid])) / valid.sum()
    got = build_loss("cross_entropy", class_weights=weights, num_classes=C)(logits, target)
    assert got.item() == pytest.approx(expected, rel=1e-10)


# ---------------------------------------------------------------------------------------------------
# Bootstrapped cross-entropy.


@pytest.mark.parametrize(
    ("iteration", "expected"),
    [(0, 1.0), (1, 0.9925), (50, 0.625), (99, 0.2575), (100, 0.25), (250, 0.25)],
)
def test_top_k_share_decays_linearly_from_one_to_top_k_over_the_mining_steps(iteration, expected):
    assert top_k_fraction(iteration, 0.25, 100) == pytest.approx(expected, abs=1e-6)


def test_top_k_share_is_top_k_from_the_start_without_mining_steps():
    assert top_k_fraction(0, 0.3, 0) == pytest.approx(0.3, abs=1e-7)
    assert top_k_fraction(10**6, 0.3, 0) == pytest.approx(0.3, abs=1e-7)


def np_bootstrapped(logits, target, weights, share):
    losses, t = np_pixel_ce(logits, target)
    w = np.array([0.0 if c == IGNORE else weights[c] for c in t])
    weighted = losses * w
    k = int(share * weighted.size)
    kept = np.sort(weighted)[::-1][:k]
    count = np.count_nonzero(kept)
    return kept.sum() / count if count else 0.0


@pytest.mark.parametrize(("iteration", "share"), [(0, 1.0), (30, 0.79), (60, 0.58), (100, 0.3), (500, 0.3)])
def test_bootstrapped_ce_keeps_top_k_percent_hardest_pixels(iteration, share):
    logits, target = random_batch(3)
    weights = [1.0, 0.5, 2.0, 1.5, 1.0]
    loss = build_loss(
        "bootstrapped_cross_entropy",
        class_weights=weights,
        options={"top_k_percent_pixels": 0.3, "hard_example_mining_step": 100},
    )
    expected = np_bootstrapped(logits, target, weights, share)
    assert loss(logits, target, iteration).item() == pytest.approx(expected, rel=1e-10)


def test_bootstrapped_ce_sends_gradient_only_to_the_kept_hardest_pixels():
    logits, target = random_batch(4)
    logits.requires_grad_(True)
    bootstrapped_cross_entropy(logits, target, 0, top_k_percent_pixels=0.1).backward()
    losses, t = np_pixel_ce(logits, target)
    k = int(0.1 * losses.size)
    hardest = np.zeros(losses.size, dtype=bool)
    hardest[np.argsort(-losses)[:k]] = True
    touched = logits.grad.abs().sum(dim=1).reshape(-1).numpy() > 0
    assert np.array_equal(touched, hardest)


def test_bootstrapped_ce_at_full_share_is_the_mean_over_non_ignored_pixels():
    logits, target = random_batch(5)
    losses, t = np_pixel_ce(logits, target)
    got = bootstrapped_cross_entropy(
        logits, target, 123, top_k_percent_pixels=1.0, hard_example_mining_step=10
    )
    assert got.item() == pytest.approx(losses[t != IGNORE].mean(), rel=1e-10)


def test_bootstrapped_ce_is_zero_when_every_pixel_is_ignored():
    logits, _ = random_batch(6)
    target = torch.full((N, H, W), IGNORE)
    assert bootstrapped_cross_entropy(logits, target, top_k_percent_pixels=0.5).item() == 0.0
    assert cross_entropy(logits, target, class_weights=[1.0] * C).item() == 0.0
    assert ohem_cross_entropy(logits, target).item() == 0.0
    logits.requires_grad_(True)
    lovasz = lovasz_softmax(logits, target)
    lovasz.backward()
    assert lovasz.item() == 0.0 and torch.all(logits.grad == 0)


def test_bootstrapped_ce_keeping_no_pixel_is_zero():
    logits, target = random_batch(13)
    # int(0.001 * 782) == 0 pixels kept: the reference's top_k with k = 0, then _div_maybe_zero
    assert bootstrapped_cross_entropy(logits, target, top_k_percent_pixels=0.001).item() == 0.0


# ---------------------------------------------------------------------------------------------------
# OHEM.


def np_ohem(logits, target, weights, thresh, min_kept):
    losses, t = np_pixel_ce(logits, target)
    probs = np_softmax(logits)
    valid = t != IGNORE
    p = np.array([probs[i, c] if valid[i] else 0.0 for i, c in enumerate(t)])
    valid_p = np.sort(p[valid])
    threshold = max(thresh, valid_p[min(min_kept * N, valid_p.size - 1)])
    total = 0.0
    for i in range(t.size):
        if valid[i] and p[i] < threshold:
            total += weights[t[i]] * losses[i]
    return total / t.size


@pytest.mark.parametrize(("thresh", "min_kept"), [(0.7, 2), (0.3, 2), (0.3, 200), (0.05, 100000)])
def test_ohem_keeps_pixels_below_thresh_and_at_least_min_kept_per_image(thresh, min_kept):
    logits, target = random_batch(7)
    weights = [1.0, 2.0, 0.5, 1.0, 1.5]
    loss = build_loss("ohem", class_weights=weights, options={"thresh": thresh, "min_kept": min_kept})
    expected = np_ohem(logits, target, weights, thresh, min_kept)
    assert loss(logits, target).item() == pytest.approx(expected, rel=1e-10)


def test_ohem_sends_no_gradient_to_confident_or_ignored_pixels():
    logits, target = random_batch(8)
    logits.requires_grad_(True)
    ohem_cross_entropy(logits, target, thresh=0.3, min_kept=2).backward()
    probs = np_softmax(logits)
    t = target.reshape(-1).numpy()
    valid = t != IGNORE
    p = np.array([probs[i, c] if valid[i] else 1.0 for i, c in enumerate(t)])
    touched = logits.grad.abs().sum(dim=1).reshape(-1).numpy() > 0
    assert np.array_equal(touched, valid & (p < 0.3))


# ---------------------------------------------------------------------------------------------------
# Lovász-softmax.


def np_lovasz(logits, target, classes):
    """The Lovász extension by its definition: for errors sorted descending, the sum of
    m_(i) * (J(first i mispredicted) - J(first i-1)), J(M) = 1 - |gt minus M| / |gt union M|."""
    probs = np_softmax(logits)
    t = target.reshape(-1).numpy()
    valid = t != IGNORE
    probs, t = probs[valid], t[valid]
    if classes == "present":
        classes = sorted(set(t.tolist()))
    elif classes == "all":
        classes = range(C)
    values = []
    for c in classes:
        gt = t == c
        errors = np.abs(gt.astype(float) - probs[:, c])
        order = np.argsort(-errors, kind="stable")

        def jaccard_loss(mispredicted, gt=gt):
            union = np.count_nonzero(gt | mispredicted)
            return 1.0 - np.count_nonzero(gt & ~mispredicted) / union if union else 0.0

        mispredicted = np.zeros(t.size, dtype=bool)
        previous, value = jaccard_loss(mispredicted), 0.0
        for i in order:
            mispredicted[i] = True
            current = jaccard_loss(mispredicted)
            value += errors[i] * (current - previous)
            previous = current
        values.append(value)
    return float(np.mean(values))


@pytest.mark.parametrize("classes", ["present", "all", [1, 3]])
def test_lovasz_softmax_is_the_lovasz_extension_of_the_jaccard_loss(classes):
    logits, target = random_batch(9)
    target[target == 2] = IGNORE  # class 2 absent: "present" and "all" differ
    got = lovasz_softmax(logits, target, classes=classes)
    assert got.item() == pytest.approx(np_lovasz(logits, target, classes), rel=1e-9)


def test_lovasz_softmax_of_a_perfect_prediction_is_zero():
    _, target = random_batch(10)
    logits = F.one_hot(target.clamp(max=C - 1), C).permute(0, 3, 1, 2).double() * 100.0
    assert lovasz_softmax(logits, target).item() == pytest.approx(0.0, abs=1e-12)


# ---------------------------------------------------------------------------------------------------
# Every loss: gradients, ignore pixels.


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_every_loss_backpropagates_to_the_logits_and_never_to_ignore_pixels(name):
    logits, target = random_batch(11)
    logits = logits.float().requires_grad_(True)
    options = {"top_k_percent_pixels": 0.5} if name == "bootstrapped_cross_entropy" else None
    loss = build_loss(name, options=options)(logits, target, 3)
    assert loss.dim() == 0
    loss.backward()
    grad = logits.grad.abs().sum(dim=1)
    assert torch.isfinite(logits.grad).all()
    assert grad[target != IGNORE].sum() > 0
    assert torch.all(grad[target == IGNORE] == 0)


# ---------------------------------------------------------------------------------------------------
# Class weights from counts.


def test_median_frequency_weights_follow_eigen_fergus_with_caps_and_absent_classes():
    # class:             0      1     2     3    4 (absent)
    pixel_counts = [6000, 1000, 100, 2, 0]
    image_pixel_counts = [8000, 4000, 2000, 2000, 0]
    # f = [0.75, 0.25, 0.05, 0.001]; median over the present classes = (0.25 + 0.05) / 2 = 0.15
    weights = class_weights_from_counts(pixel_counts, image_pixel_counts, cap=(0.25, 10.0))
    assert weights == pytest.approx([0.25, 0.6, 3.0, 10.0, 10.0])  # 0.2 -> 0.25, 150 -> 10, absent -> max
    uncapped = class_weights_from_counts(pixel_counts, image_pixel_counts, cap=(0.0, 1e9))
    assert uncapped[:4] == pytest.approx([0.2, 0.6, 3.0, 150.0])


# ---------------------------------------------------------------------------------------------------
# Bad arguments: one-line ValueErrors naming the argument.


@pytest.mark.parametrize(
    ("kwargs", "argument"),
    [
        ({"class_weights": [1.0, -0.5, 1.0, 1.0, 1.0]}, "class_weights"),
        ({"class_weights": [1.0, 1.0], "num_classes": 5}, "class_weights"),
        ({"class_weights": "auto"}, "class_weights"),
        (
            {"name": "bootstrapped_cross_entropy", "options": {"top_k_percent_pixels": 0.0}},
            "top_k_percent_pixels",
        ),
        (
            {"name": "bootstrapped_cross_entropy", "options": {"top_k_percent_pixels": 1.5}},
            "top_k_percent_pixels",
        ),
        (
            {"name": "bootstrapped_cross_entropy", "options": {"hard_example_mining_step": -1}},
            "hard_example_mining_step",
        ),
        ({"name": "ohem", "options": {"thresh": 0.0}}, "thresh"),
        ({"name": "ohem", "options": {"min_kept": 1}}, "min_kept"),
        ({"name": "cross_entropy", "options": {"top_k_percent_pixels": 0.5}}, "top_k_percent_pixels"),
        ({"name": "ohem", "options": {"top_k_percent_pixels": 0.5}}, "top_k_percent_pixels"),
        ({"name": "lovasz_softmax", "options": {"classes": "some"}}, "classes"),
        ({"name": "lovasz_softmax", "class_weights": [1.0] * 5}, "class_weights"),
        ({"name": "dice"}, "name"),
    ],
)
def test_bad_loss_arguments_raise_one_line_errors_naming_the_argument(kwargs, argument):
    with pytest.raises(ValueError) as info:
        build_loss(**kwargs)
    message = str(info.value)
    assert message.startswith(f"{argument}:") and "\n" not in message


def test_a_weight_list_of_the_wrong_length_fails_at_the_first_call():
    logits, target = random_batch(12)
    with pytest.raises(ValueError, match=r"^class_weights: expected 5 numbers"):
        build_loss("cross_entropy", class_weights=[1.0, 2.0])(logits, target)


@pytest.mark.parametrize(
    ("args", "argument"),
    [
        (([1, -1], [2, 2]), "pixel_counts"),
        (([1, 1], [2]), "image_pixel_counts"),
        (([5, 1], [2, 2]), "image_pixel_counts"),
    ],
)
def test_bad_counts_raise_one_line_errors_naming_the_argument(args, argument):
    with pytest.raises(ValueError, match=rf"^{argument}: [^\n]*$"):
        class_weights_from_counts(*args)
    with pytest.raises(ValueError, match=r"^cap: "):
        class_weights_from_counts([1], [1], cap=(2.0, 1.0))
    with pytest.raises(ValueError, match=r"^method: "):
        class_weights_from_counts([1], [1], method="inverse")
