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
import re
import shutil
import tempfile
import warnings
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, BinaryIO, Callable, Optional, Union

import torch
from torch import nn


class CheckpointError(RuntimeError):
    """A checkpoint file is missing, unreadable, damaged or lacks an expected entry."""


class CheckpointWriteError(CheckpointError, OSError):
    """Writing a checkpoint failed (e.g. a full disk): the previous file is intact, no temporary file is left.

    Both a :class:`CheckpointError` and an :class:`OSError` (``errno`` is the failed write's, when
    known; ``strerror`` the reason in words), so that code catching a failed write as an OSError
    still does; ``str()`` is the one-line message naming the file.
    """

    def __init__(self, message: str, path: Union[str, Path], errno_: Optional[int], reason: str):
        super().__init__(message)
        self.errno, self.strerror, self.filename = errno_, reason, str(path)

    def __str__(self) -> str:
        return str(self.args[0])


# Below this much free space (measured before the temporary file is removed), a failed write is a full disk.
LOW_DISK_SPACE = 64 * 2**20


def current_umask() -> int:
    """The process's file-creation mask (read by setting it, then set back at once)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_atomically(
    path: Union[str, Path], write: Callable[[BinaryIO], object], what: Optional[str] = None
) -> Path:
    """Create ``path`` by ``write(file)`` into a temporary file beside it, fsync, then a rename.

    A crash or error mid-write leaves the previous file (if any) intact and no temporary file
    behind: the file is never half-written. The file gets the mode a plain ``open(path, "w")``
    gives (0666 less the umask), not the temporary file's private 0600, so that a run in a shared
    folder is readable by whoever the umask lets read it.

    Args:
        path: The file to create or replace.
        write: Writes the content into the open temporary file.
        what: What the file is, e.g. "checkpoint": a failed write (an OSError such as a full disk, or
            the RuntimeError torch's zip writer turns it into) is then re-raised as a one-line
            :class:`CheckpointWriteError` naming ``what`` and ``path``. None: re-raised as it is.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as e:
        if what is None:
            raise
        raise _write_error(what, path, e, tmp=None) from e
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.chmod(f.fileno(), 0o666 & ~current_umask())
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        # Measured before the temporary file goes: removing it frees what the failed write took.
        failure = _write_error(what, path, e, Path(tmp)) if what and _is_write_failure(e) else None
        Path(tmp).unlink(missing_ok=True)
        if failure is not None:
            raise failure from e
        raise
    return path


# What torch's zip writer raises when a write fails: it hides the OSError (ENOSPC, EIO, ...) of the file.
_TORCH_WRITE_FAILURE = re.compile(r"PytorchStreamWriter failed|unexpected pos \d+ vs \d+|file write failed")


def _is_write_failure(e: BaseException) -> bool:
    return isinstance(e, OSError) or (
        isinstance(e, RuntimeError) and bool(_TORCH_WRITE_FAILURE.search(str(e)))
    )


def _write_error(what: str, path: Path, e: BaseException, tmp: Optional[Path]) -> CheckpointWriteError:
    """The one-line error of a failed write of ``path``, saying whether the disk is full."""
    os_error = next((x for x in _exception_chain(e) if isinstance(x, OSError) and x.errno), None)
    code = os_error.errno if os_error is not None else None
    try:
        usage = shutil.disk_usage(path.parent if path.parent.is_dir() else Path.cwd())
    except OSError:
        usage = None
    if code is not None:
        reason = os.strerror(code)
    else:
        reason = f"the write failed ({_first_line(e).split('] . ')[-1]})"
    if usage is not None and usage.free < LOW_DISK_SPACE:
        written = f", {_size(tmp.stat().st_size)} of it written" if tmp is not None and tmp.is_file() else ""
        reason += f" (the disk is full: {_size(usage.free)} free of {_size(usage.total)}{written})"
    previous = f"the previous '{path}' is intact" if path.is_file() else "nothing was written"
    return CheckpointWriteError(f"cannot write {what} '{path}': {reason}; {previous}", path, code, reason)


def _exception_chain(e: Optional[BaseException]) -> list[BaseException]:
    chain: list[BaseException] = []
    while e is not None and e not in chain:
        chain.append(e)
        e = e.__cause__ or e.__context__
    return chain


def _size(n: int) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def save_checkpoint(state: dict[str, Any], path: Union[str, Path]) -> Path:
    """Write ``state`` to ``path`` with :func:`write_atomically`: a checkpoint is never half-written.

    torch.save's zip archive holds a CRC-32 of every record, which :func:`read_torch_file` checks.

    Raises:
        CheckpointWriteError: the write failed (a full disk, an I/O error); the previous file is
            intact and no temporary file is left.
    """
    return write_atomically(path, lambda f: torch.save(state, f), what="checkpoint")


_ZIP_MAGIC = b"PK\x03\x04"  # torch.save's format since torch 1.6: a zip archive
_LEGACY_MAGIC = (
    b"\x80\x02\x8a\nl\xfc\x9cF\xf9 j\xa8P\x19."  # torch.save(_use_new_zipfile_serialization=False)
)


def verify_torch_archive(path: Union[str, Path], what: str = "checkpoint") -> bool:
    """Check the CRC-32 of every record of the zip archive torch.save wrote at ``path``.

    torch.load does not check them, so without this a file damaged on a disk or in a copy loads
    with changed weights. Reading the file costs about what loading it does (the page cache then
    serves torch.load). Records written with torch's CRC-32 turned off
    (``torch.serialization.set_crc32_options(False)``, stored as 0) cannot be checked and are skipped.

    Returns:
        True if ``path`` is a zip archive and all its records are intact; False if it is not a zip
        archive (a legacy torch.save file, or not a PyTorch file: :func:`read_torch_file` tells).

    Raises:
        CheckpointError: the archive is truncated, damaged (a record fails its CRC-32, or the archive's
            structure is broken) or holds no ``data.pkl`` (a zip file not written by torch.save).
    """
    path = Path(path)
    with open(path, "rb") as f:
        if f.read(4) != _ZIP_MAGIC:
            return False
    member = None
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
            if not any(m.filename.rsplit("/", 1)[-1] == "data.pkl" for m in members):
                raise CheckpointError(
                    f"cannot read {what} '{path}': not a PyTorch file (a zip archive without the data.pkl "
                    "that torch.save writes)"
                )
            for member in members:
                if member.CRC == 0 and member.file_size:
                    continue  # written with torch's CRC-32 turned off: nothing to check against
                with archive.open(member) as record:  # checks the CRC-32 at the record's end
                    while record.read(2**24):
                        pass
    except CheckpointError:
        raise
    except zipfile.BadZipFile as e:
        if member is None and "not a zip file" in str(e):  # no end-of-directory record where it belongs
            raise CheckpointError(
                f"cannot read {what} '{path}': truncated or corrupt: its zip archive ends at "
                f"{_size(path.stat().st_size)} without the directory that closes it (a copy or a write cut short?)"
            ) from None
        raise _damaged(path, what, member, e) from None
    except Exception as e:  # BadZipFile (a bad CRC-32 or header), or a broken structure read as nonsense
        raise _damaged(path, what, member, e) from None
    return True


def _damaged(path: Path, what: str, member: Optional[zipfile.ZipInfo], e: Exception) -> CheckpointError:
    where = f" in record '{member.filename}'" if member is not None else ""
    return CheckpointError(
        f"{what} '{path}' is damaged: its bytes changed after torch.save wrote them{where} "
        f"({_first_line(e)}); restore it from another copy"
    )


def read_torch_file(path: Union[str, Path], what: str = "checkpoint", mmap: bool = False) -> Any:
    """``torch.load(path, weights_only=True)`` of a verified file, with one-line errors naming the file.

    The CRC-32 of every record of the zip archive torch.save writes is checked first
    (:func:`verify_torch_archive`); a legacy-format file (torch.save with
    ``_use_new_zipfile_serialization=False``) has none to check and is read as it is. ``mmap``: the
    tensors of a zip archive are mapped, not read, for a caller that needs only the other entries.

    Raises:
        CheckpointError: the file does not exist; is not a PyTorch file (foreign, a plain pickle);
            is truncated; is damaged (a record fails its CRC-32); or holds pickled objects other
            than tensors and primitives (a pickle that would run code is refused, never executed).
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise CheckpointError(f"{what} '{path}' does not exist")
    archive = verify_torch_archive(path, what)
    try:
        with warnings.catch_warnings():
            # A plain pickle (protocol > 2) warns before it is refused or read; the outcome is what counts.
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            # weights_only: a checkpoint is data (tensors, dicts, numbers, strings); never run its pickles.
            return torch.load(str(path), map_location="cpu", weights_only=True, mmap=mmap and archive)
    except MemoryError:
        raise
    except Exception as e:
        raise _read_error(path, what, e, archive) from None


def _read_error(path: Path, what: str, e: Exception, archive: bool) -> CheckpointError:
    """What torch.load's failure on ``path`` means, in one line."""
    text = str(e)
    unsafe = re.search(r"GLOBAL ([\w.]+)|Unsupported (?:class|global):? ([\w.]+)", text)
    if "Weights only load failed" in text and "Unsupported operand" not in text:
        found = next((g for g in unsafe.groups() if g), None) if unsafe else None
        detail = f" (it references {found})" if found else ""
        return CheckpointError(
            f"refusing to load {what} '{path}': it holds pickled objects other than tensors{detail}, "
            "which could run code; only tensors, dicts, lists, numbers and strings are read "
            "(torch.load weights_only=True)"
        )
    with open(path, "rb") as f:
        head = f.read(len(_LEGACY_MAGIC))
    if archive:
        return CheckpointError(
            f"cannot read {what} '{path}': its zip archive is intact but torch.load cannot read it "
            f"({_first_line(e).split('] . ')[-1]})"
        )
    if head == _LEGACY_MAGIC:
        return CheckpointError(
            f"cannot read {what} '{path}': truncated or corrupt legacy-format PyTorch file "
            f"({type(e).__name__}{': ' + str(e).strip().splitlines()[0] if str(e).strip() else ''})"
        )
    elif head[:1] == b"\x80":
        kind = "a plain pickle, not what torch.save writes"
    elif len(head) >= 9 and head[8:9] == b"{":
        kind = "it looks like a safetensors file, not what torch.save writes"
    else:
        kind = "neither the zip archive torch.save writes nor a pickle"
    return CheckpointError(f"cannot read {what} '{path}': not a PyTorch file ({kind})")


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


def stored_config(path: Union[str, Path]) -> dict[str, Any]:
    """The config (a nested dict) stored in the checkpoint at ``path``, its tensors mapped, not read.

    Raises:
        CheckpointError: the file cannot be read (as :func:`read_torch_file`) or holds no config.
    """
    state = read_torch_file(path, mmap=True)
    config = state.get("config") if isinstance(state, dict) else None
    if not isinstance(config, dict):
        raise CheckpointError(f"'{path}' holds no config (not a deeplabv3plus checkpoint?)")
    return config


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
