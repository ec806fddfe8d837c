"""Shared test fixtures: a tiny synthetic VOC tree, generated once per session."""

from __future__ import annotations

from pathlib import Path

import pytest

from deeplabv3plus.data.synthetic import make_synthetic_voc


@pytest.fixture(scope="session")
def synthetic_voc(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 6-train / 3-val synthetic dataset (6 classes, ~48 px images); returns the dataset root.

    Read-only: tests that modify files should build their own.
    """
    root = tmp_path_factory.mktemp("data") / "synthetic"
    make_synthetic_voc(root, num_train=6, num_val=3, size=48, seed=0)
    return root


@pytest.fixture
def no_val(monkeypatch):
    """Skip train()'s validation passes: a fixed result in place of ``evaluate`` (evaluation has its
    own tests in tests/jobs/test_evaluate.py and tests/test_metrics.py)."""
    import deeplabv3plus.train as train_module

    def fake_evaluate(*args, **kwargs):
        return {"mIoU": 0.5, "pixel_acc": 0.5, "table": "", "per_class_iou": {}}

    monkeypatch.setattr(train_module, "evaluate", fake_evaluate)
