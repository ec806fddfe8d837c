"""Checkpoint files: written atomically, read with ``weights_only=True``.

A training checkpoint is a plain dict of tensors and primitives::

    {"model": state_dict, "optimizer": ..., "scheduler": ..., "scaler": ... or None,
     "iteration": int, "rng": {"torch": ByteTensor, "cuda": [ByteTensor, ...]},
     "config": nested dict of the Config, "best_miou": float or None}

``deeplabv3plus eval`` and ``predict`` need only "model" and "config" (what ``best.pth`` holds
with ``train.best_weights_only``).
"""

from __future__ import annotations

import os
import pickle
import re
import tempfile
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any, BinaryIO, Callable, Optional, Union

import torch
from torch import nn


class CheckpointError(RuntimeError):
    """A checkpoint file is missing, unreadable or lacks an expected entry."""


def current_umask() -> int:
    """The process's file-creation mask (read by setting it, then set back at once)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_atomically(path: Union[str, Path], write: Callable[[BinaryIO], object]) -> Path:
    """Create ``path`` by ``write(file)`` into a temporary file beside it, fsync, then a rename.

    A crash or error mid-write leaves the previous file (if any) intact and no temporary file
    behind: the file is never half-written. The file gets the mode a plain ``open(path, "w")``
    gives (0666 less the umask), not the temporary file's private 0600, so that a run in a shared
    folder is readable by whoever the umask lets read it.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.chmod(f.fileno(), 0o666 & ~current_umask())
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def save_checkpoint(state: dict[str, Any], path: Union[str, Path]) -> Path:
    """Write ``state`` to ``path`` with :func:`write_atomically`: a checkpoint is never half-written."""
    return write_atomically(path, lambda f: torch.save(state, f))


def read_torch_file(path: Union[str, Path], what: str = "checkpoint") -> Any:
    """``torch.load(path, weights_only=True)`` with one-line errors naming the file.

    Raises:
        CheckpointError: the file does not exist, is not a PyTorch file (foreign or truncated), or
            holds pickled objects other than tensors and primitives (a pickle that would run code
            is refused, never executed).
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise CheckpointError(f"{what} '{path}' does not exist")
    try:
        with warnings.catch_warnings():
            # A plain pickle (protocol > 2) warns before it is refused or read; the outcome is what counts.
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            # weights_only: a checkpoint is data (tensors, dicts, numbers, strings); never run its pickles.
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        text = str(e)
        if "Weights only load failed" in text:
            found = re.search(r"GLOBAL ([\w.]+)", text)
            detail = f" (it references {found.group(1)})" if found else ""
            raise CheckpointError(
                f"refusing to load {what} '{path}': it holds pickled objects other than tensors{detail}, "
                "which could run code; only tensors, dicts, lists, numbers and strings are read "
                "(torch.load weights_only=True)"
            ) from None
        raise CheckpointError(f"cannot read {what} '{path}': not a PyTorch file ({_first_line(e)})") from None
    except RuntimeError as e:
        if "zip archive" in str(e):
            reason = str(e).split(". ")[0]
            raise CheckpointError(f"cannot read {what} '{path}': truncated or corrupt ({reason})") from None
        raise CheckpointError(f"cannot read {what} '{path}': {_first_line(e)}") from None
    except Exception as e:  # the unpickler choking on another format: KeyError, IndexError, EOFError, ...
        raise CheckpointError(
            f"cannot read {what} '{path}': not a PyTorch file ({type(e).__name__}: {_first_line(e)})"
        ) from None


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def load_checkpoint(path: Union[str, Path], map_location: Union[str, torch.device] = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint` (tensors and primitives only)."""
    state = read_torch_file(path)
    if not isinstance(state, dict) or "model" not in state:
        raise CheckpointError(f"'{path}' is not a deeplabv3plus checkpoint (no 'model' entry)")
    if str(map_location) != "cpu":
        state = _to_device(state, map_location)
    return state


def _to_device(obj: Any, device: Union[str, torch.device]) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.to(device)
    if isinstance(obj, dict):
        return {k: _to_device(v, device) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_device(v, device) for v in obj)
    return obj


def state_dict_mismatch(own: Mapping[str, Any], weights: Mapping[str, Any]) -> Optional[str]:
    """Why ``weights`` would not load strictly where ``own`` is the model's state_dict; None if it would.

    The one "do these weights fit this model" check (checkpoints, zoo conversions, ImageNet
    backbones). Only keys and shapes are compared, so ``own`` may come from a model built on the
    meta device. BatchNorm's ``num_batches_tracked`` may be missing: it is a training counter that
    files converted from other frameworks lack, and BatchNorm fills it itself.

    Returns:
        One line such as "2 tensors of another shape, e.g. classifier.weight: (19, 256, 1, 1) in the
        file, (21, 256, 1, 1) in the model; 1 missing keys, e.g. ...; 1 unexpected keys, e.g. ...".
    """
    missing = [k for k in own if k not in weights and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in weights if k not in own]
    wrong = [k for k in own if k in weights and tuple(weights[k].shape) != tuple(own[k].shape)]
    if not (missing or unexpected or wrong):
        return None
    parts = []
    if wrong:
        k = wrong[0]
        parts.append(
            f"{len(wrong)} tensors of another shape, e.g. {k}: {tuple(weights[k].shape)} in the file, "
            f"{tuple(own[k].shape)} in the model"
        )
    if missing:
        parts.append(f"{len(missing)} missing keys, e.g. {missing[0]}")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected keys, e.g. {unexpected[0]}")
    return "; ".join(parts)


def check_state_dict_fits(
    model: nn.Module, weights: dict[str, Any], source: Union[str, Path], expected: str
) -> None:
    """Raise a one-line :class:`CheckpointError` unless ``weights`` loads strictly into ``model``.

    Args:
        model: The freshly built model.
        weights: Its state_dict from ``source``.
        source: The file the weights came from (for the message).
        expected: What the model is, e.g. "resnet50, 21 classes" (for the message).
    """
    mismatch = state_dict_mismatch(model.state_dict(), weights)
    if mismatch is not None:
        raise CheckpointError(
            f"checkpoint '{source}' does not fit the configured model ({expected}): {mismatch}"
        )


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
