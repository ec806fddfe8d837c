"""Checkpoint files: written atomically, read with ``weights_only=True``.

A training checkpoint is a plain dict of tensors and primitives::

    {"model": state_dict, "optimizer": ..., "scheduler": ..., "scaler": ... or None,
     "iteration": int, "rng": {"torch": ByteTensor, "cuda": [ByteTensor, ...]},
     "config": nested dict of the Config, "best_miou": float or None}

``scripts/eval.py`` and ``scripts/predict.py`` need only "model" and "config".
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, Union

import torch


class CheckpointError(RuntimeError):
    """A checkpoint file is missing, unreadable or lacks an expected entry."""


def save_checkpoint(state: dict[str, Any], path: Union[str, Path]) -> Path:
    """Write ``state`` to ``path`` through a temporary file and a rename.

    A crash mid-write leaves the previous file intact: a checkpoint is never half-written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_checkpoint(path: Union[str, Path], map_location: Union[str, torch.device] = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint` (tensors and primitives only)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint '{path}' does not exist")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:
        raise CheckpointError(f"cannot read checkpoint '{path}': {e}") from None
    if not isinstance(state, dict) or "model" not in state:
        raise CheckpointError(f"'{path}' is not a deeplabv3plus checkpoint (no 'model' entry)")
    return state


def rng_state() -> dict[str, Any]:
    """The RNG states that training consumes (dropout, and anything else on the main process)."""
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
