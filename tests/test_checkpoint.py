"""Checkpoint files: atomic writes, the mode the umask gives, the one state_dict fit check."""

from __future__ import annotations

import os
import stat

import pytest
import torch
from torch import nn

from deeplabv3plus.checkpoint import (
    CheckpointError,
    check_state_dict_fits,
    load_checkpoint,
    save_checkpoint,
    state_dict_mismatch,
)


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_a_checkpoint_gets_the_mode_the_umask_gives_like_any_new_file(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        path = save_checkpoint({"model": {"w": torch.randn(2)}}, tmp_path / "last.pth")
        (tmp_path / "config.yaml").write_text("x: 1\n")
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == mode
    assert stat.S_IMODE((tmp_path / "config.yaml").stat().st_mode) == mode  # the same as a plain open()


def test_a_failed_write_leaves_the_previous_checkpoint_and_no_temporary_file(tmp_path):
    path = save_checkpoint({"model": {"w": torch.ones(1)}}, tmp_path / "last.pth")

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("cannot pickle this")

    with pytest.raises(RuntimeError, match="cannot pickle"):
        save_checkpoint({"model": {}, "bad": Unpicklable()}, path)
    assert [p.name for p in tmp_path.iterdir()] == ["last.pth"]
    assert torch.equal(load_checkpoint(path)["model"]["w"], torch.ones(1))


def test_the_fit_check_names_shapes_missing_and_unexpected_keys():
    model = nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4))
    state = {k: torch.randn_like(v.float()) for k, v in model.state_dict().items()}
    assert state_dict_mismatch(model.state_dict(), state) is None
    del state["1.num_batches_tracked"]  # files converted from other frameworks lack it: fine
    assert state_dict_mismatch(model.state_dict(), state) is None
    state["0.weight"] = torch.randn(5, 3, 1, 1)
    del state["1.bias"]
    state["2.weight"] = torch.randn(1)
    assert state_dict_mismatch(model.state_dict(), state) == (
        "1 tensors of another shape, e.g. 0.weight: (5, 3, 1, 1) in the file, (4, 3, 1, 1) in the model; "
        "1 missing keys, e.g. 1.bias; 1 unexpected keys, e.g. 2.weight"
    )
    with pytest.raises(
        CheckpointError, match=r"checkpoint 'f.pth' does not fit the configured model \(tiny\): 1 tensors"
    ):
        check_state_dict_fits(model, state, "f.pth", "tiny")
