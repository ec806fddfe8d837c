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
