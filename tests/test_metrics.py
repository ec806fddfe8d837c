"""ConfusionMatrix: the split-level mIoU of the paper, checked against a direct numpy computation."""

import json
import math

import numpy as np
import pytest
import torch

from deeplabv3plus.metrics import ConfusionMatrix

C = 7  # a non-default class count
VOID = 255


def _numpy_scores(preds, targets, num_classes):
    """Reference: IoU of each class over all images; absent (0/0) classes are NaN."""
    p = np.concatenate([x.ravel() for x in preds])
    t = np.concatenate([x.ravel() for x in targets])
    keep = t != VOID
    p, t = p[keep], t[keep]
    iou, acc = [], []
    for c in range(num_classes):
        inter = np.sum((p == c) & (t == c))
        union = np.sum((p == c) | (t == c))
        iou.append(inter / union if union else np.nan)
        acc.append(inter / np.sum(t == c) if np.sum(t == c) else np.nan)
    return np.array(iou), np.array(acc), np.mean(p == t)


def _random_split(seed, n_images=4):
    """Random labels with void pixels; class 5 never appears, class 6 only in predictions."""
    rng = np.random.default_rng(seed)
    preds, targets = [], []
    for _ in range(n_images):
        h, w = rng.integers(5, 17, size=2)
        t = rng.choice([0, 1, 2, 3, 4, 6], size=(h, w))
        t = np.where(t == 6, 0, t)
        t[rng.random((h, w)) < 0.2] = VOID
        p = rng.choice([0, 1, 2, 3, 4, 6], size=(h, w))
        preds.append(p)
        targets.append(t)
    return preds, targets


def test_matches_numpy_on_random_labels_with_void_and_absent_classes():
    preds, targets = _random_split(0)
    cm = ConfusionMatrix(C)
    for p, t in zip(preds, targets):
        cm.update(torch.from_numpy(p), torch.from_numpy(t))
    iou, acc, pixel_acc = _numpy_scores(preds, targets, C)
    r = cm.compute()
    np.testing.assert_allclose(r["iou"].numpy(), iou, rtol=0, atol=1e-12)
    np.testing.assert_allclose(r["acc"].numpy(), acc, rtol=0, atol=1e-12)
    assert r["miou"] == pytest.approx(np.nanmean(iou), abs=1e-12)
    assert r["pixel_acc"] == pytest.approx(pixel_acc, abs=1e-12)
    assert r["mean_class_acc"] == pytest.approx(np.nanmean(acc), abs=1e-12)
    assert r["num_pixels"] == sum(int(np.sum(t != VOID)) for t in targets)


def test_absent_classes_are_excluded_from_the_mean():
    preds, targets = _random_split(1)
    cm = ConfusionMatrix(C)
    for p, t in zip(preds, targets):
        cm.update(torch.from_numpy(p), torch.from_numpy(t))
    r = cm.compute()
    # Class 5 is in neither labels nor predictions: absent. Class 6 is predicted but never
    # true: present with IoU 0, so it does count (a false positive class is penalised).
    assert math.isnan(r["iou"][5]) and not r["present"][5]
    assert r["iou"][6] == 0 and r["present"][6]
    assert r["miou"] == pytest.approx(r["iou"][[0, 1, 2, 3, 4, 6]].mean().item(), abs=1e-12)


def test_batched_and_per_image_updates_agree():
    rng = np.random.default_rng(2)
    p = torch.from_numpy(rng.integers(0, C, size=(3, 6, 5)))
    t = torch.from_numpy(rng.integers(0, C, size=(3, 6, 5)))
    a, b = ConfusionMatrix(C), ConfusionMatrix(C)
    a.update(p, t)
    for i in range(3):
        b.update(p[i], t[i])
    assert torch.equal(a.matrix, b.matrix)
    assert a.matrix.dtype == torch.int64


def test_void_pixels_are_never_counted():
    cm = ConfusionMatrix(3)
    cm.update(torch.tensor([[0, 1], [2, 2]]), torch.full((2, 2), VOID))
    assert cm.matrix.sum() == 0
    assert math.isnan(cm.compute()["miou"])


def test_out_of_range_labels_raise_instead_of_being_miscounted():
    cm = ConfusionMatrix(3)
    with pytest.raises(ValueError, match="out of range"):
        cm.update(torch.tensor([0, 1]), torch.tensor([0, 3]))
    with pytest.raises(ValueError, match="integer"):
        cm.update(torch.rand(2, 2), torch.zeros(2, 2, dtype=torch.long))


def test_all_reduce_is_a_no_op_without_distributed():
    cm = ConfusionMatrix(3)
    cm.update(torch.tensor([0, 1, 2]), torch.tensor([0, 1, 1]))
    before = cm.matrix.clone()
    cm.all_reduce()
    assert torch.equal(cm.matrix, before)


def test_table_and_dict_report_absent_classes():
    cm = ConfusionMatrix(3)
    cm.update(torch.tensor([0, 0, 1, 1]), torch.tensor([0, 1, 1, VOID]))
    names = ["bg", "cat", "dog"]
    table = cm.format_table(names)
    # IoU(bg) = 1/2, IoU(cat) = 1/2, dog absent.
    assert "absent" in table.splitlines()[4]
    assert "50.00" in table and "mIoU" in table and "pixel acc" in table
    d = cm.to_dict(names, include_matrix=True)
    json.dumps(d)  # JSON-ready: absent scores are None, not NaN
    assert d["per_class_iou"] == {"bg": 0.5, "cat": 0.5, "dog": None}
    assert d["mIoU"] == pytest.approx(0.5)
    assert d["pixel_acc"] == pytest.approx(2 / 3)
    assert d["confusion_matrix"] == [[1, 0, 0], [1, 1, 0], [0, 0, 0]]
