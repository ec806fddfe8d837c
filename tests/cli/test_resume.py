"""``train --resume`` on the command line: the stored config, then the --config file's keys and the overrides."""

from __future__ import annotations

from pathlib import Path

import pytest

from deeplabv3plus import cli
from deeplabv3plus.checkpoint import load_checkpoint
from deeplabv3plus.config import config_from_dict, load_config, save_config

pytestmark = pytest.mark.filterwarnings("ignore:BatchNorm statistics are trained:UserWarning")


def _tiny(root: Path, out: Path, max_iters: int) -> dict:
    return {
        "model": {"backbone": "resnet18", "num_classes": 6, "head_channels": 16},
        "data": {"layout": "synthetic", "root": str(root), "num_classes": 6, "crop_size": 49, "workers": 0},
        "train": {"max_iters": max_iters, "batch_size": 2, "lr": 0.01, "allow_scratch_backbone": True,
                  "device": "cpu", "log_interval": 1, "val_interval": 0, "ckpt_interval": 1000, "seed": 5,
                  "output_dir": str(out)},
    }  # fmt: skip


@pytest.fixture
def stopped_run(tmp_path, synthetic_voc, no_val, capsys) -> Path:
    """A run stopped at iteration 1 of 2 in tmp_path/a, from tmp_path/c.yaml."""
    save_config(config_from_dict(_tiny(synthetic_voc, tmp_path / "a", 2)), tmp_path / "c.yaml")
    assert cli.main(["train", "--config", str(tmp_path / "c.yaml"), "--stop-after", "1"]) == 0
    capsys.readouterr()
    return tmp_path / "a" / "last.pth"


def test_overrides_and_the_files_keys_given_on_resume_are_honoured_over_the_stored_config(
    stopped_run, tmp_path, capsys
):
    # A file that sets only max_iters: every other key is the stored run's (head_channels 16, seed 5).
    (tmp_path / "longer.yaml").write_text("train: {max_iters: 3}\n")
    argv = [
        "train",
        "--config",
        tmp_path / "longer.yaml",
        "--resume",
        stopped_run,
        f"train.output_dir={tmp_path / 'b'}",
    ]
    assert cli.main([str(a) for a in argv]) == 0
    assert f"resumed from {stopped_run} at iteration 1" in capsys.readouterr().out
    assert load_checkpoint(tmp_path / "b" / "last.pth")["iteration"] == 3
    ran = load_config(tmp_path / "b" / "config.yaml")
    assert (ran.train.max_iters, ran.train.output_dir, ran.train.seed) == (3, str(tmp_path / "b"), 5)
    assert ran.model.head_channels == 16
    assert load_checkpoint(stopped_run)["iteration"] == 1  # the source run is left as it was


def test_a_changed_architecture_on_resume_is_one_line_naming_the_key(stopped_run, tmp_path, capsys):
    argv = [
        "train",
        "--config",
        str(tmp_path / "c.yaml"),
        "--resume",
        str(stopped_run),
        "model.head_channels=8",
    ]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert "model.head_channels=8" in err and "cannot change mid-run" in err
