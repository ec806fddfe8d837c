"""Download, convert and cache the reference model-zoo checkpoints, once.

``load_state_dict(entry)`` gives the converted PyTorch state_dict of a
:class:`~deeplabv3plus.weights.zoo.PretrainedWeights` entry. Files live under torch.hub's cache
(``torch.hub.get_dir()``, i.e. ``$TORCH_HOME/hub``, by default ``~/.cache/torch/hub``)::

    deeplabv3plus/archives/<tarball>            the model-zoo download, as it is
    deeplabv3plus/archives/<tarball>.sha256     its sha256, recorded at the first download
    deeplabv3plus/converted/<name>.pth          {"model": state_dict, "source": {...}}: what later uses load
    deeplabv3plus/converted/<name>.pth.sha256   its sha256, checked at every load

First use prints the download size and downloads with a progress bar
(``torch.hub.download_url_to_file``: a temporary file renamed once complete, and checked against the
entry's sha256 when one is recorded), reads only the checkpoint members (``*.index`` and
``*.data-*``) out of the tarball, converts them (:func:`~deeplabv3plus.weights.tf_convert.convert`),
checks every key and shape against the model the entry builds, and only then writes
the converted file, atomically. A later use loads that file without network. Nothing an interrupted
download or conversion leaves behind is trusted: a tarball counts only through a complete conversion
(or its recorded sha256), and the converted file only appears whole.

The model zoo publishes no checksum, so a first download cannot be checked against one: its sha256
is printed and recorded, and every later use of the tarball or the converted file is checked
against what was recorded (a changed file is an error that says to delete it).
"""

from __future__ import annotations

import hashlib
import re
import shutil
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import IO, Optional

import torch

from ..checkpoint import save_checkpoint, state_dict_mismatch, write_atomically
from .tf_bundle import TFCheckpoint
from .tf_convert import convert, target_module
from .zoo import PretrainedWeights, PretrainedWeightsError

__all__ = ["archive_path", "cache_dir", "converted_path", "load_state_dict"]

CACHE_FORMAT = 1
"""Bumped when the converted files change meaning; an older file is converted again."""

_CKPT_MEMBER = re.compile(r".*\.(index|data-\d{5}-of-\d{5})")


def cache_dir() -> Path:
    """``torch.hub.get_dir()/deeplabv3plus``."""
    return Path(torch.hub.get_dir()) / "deeplabv3plus"


def archive_path(entry: PretrainedWeights) -> Path:
    """Where the entry's tarball is (or must be put, offline)."""
    return cache_dir() / "archives" / entry.url.rsplit("/", 1)[-1]


def converted_path(entry: PretrainedWeights) -> Path:
    """Where the entry's converted state_dict is cached."""
    return cache_dir() / "converted" / f"{entry.name}.pth"


def sha256_record(path: Path) -> Path:
    """The file beside ``path`` holding its sha256, written when ``path`` was first made."""
    return path.with_name(path.name + ".sha256")


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _write_record(path: Path, digest: str) -> None:
    write_atomically(sha256_record(path), lambda f: f.write(f"{digest}  {path.name}\n".encode()))


def _recorded(path: Path) -> Optional[str]:
    record = sha256_record(path)
    return record.read_text().split()[0] if record.is_file() and record.read_text().strip() else None


def _source(entry: PretrainedWeights) -> dict:
    return {"name": entry.name, "url": entry.url, "kind": entry.kind, "format": CACHE_FORMAT}


def _read_cache(entry: PretrainedWeights) -> Optional[dict[str, torch.Tensor]]:
    path = converted_path(entry)
    if not path.is_file():
        return None
    digest, recorded = file_sha256(path), _recorded(path)
    if recorded is not None and digest != recorded:
        raise PretrainedWeightsError(
            f"the converted weights '{path}' have sha256 {digest}, not the {recorded} recorded when they "
            "were written; delete it to convert again"
        )
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise PretrainedWeightsError(
            f"cannot read the converted weights '{path}' ({e}); delete it to convert again"
        ) from None
    if not isinstance(saved, dict) or not isinstance(saved.get("model"), dict):
        return None  # not a file of ours: convert again (the new one replaces it)
    source = saved.get("source") if isinstance(saved.get("source"), dict) else {}
    if any(source.get(k) != v for k, v in _source(entry).items()):
        return None  # another entry's file, or an older format: convert again
    if recorded is None:  # written by a version that kept no record: keep one from now on
        _write_record(path, digest)
    return saved["model"]


def _download(entry: PretrainedWeights, archive: Path, progress: bool) -> None:
    size = f"{entry.download_mb} MB" if entry.download_mb else "size unknown"
    print(f"downloading {entry.name} ({size}) from {entry.url} to {archive}", file=sys.stderr)
    archive.parent.mkdir(parents=True, exist_ok=True)
    try:
        torch.hub.download_url_to_file(entry.url, str(archive), hash_prefix=entry.sha256, progress=progress)
    except Exception as e:
        if "invalid hash value" in str(e):  # download_url_to_file checks before it renames
            raise PretrainedWeightsError(
                f"the download of {entry.url} does not have the recorded sha256 {entry.sha256}; nothing was kept"
            ) from None
        reason = f"{type(e).__name__}: {str(e).splitlines()[0]}" if str(e) else type(e).__name__
        raise PretrainedWeightsError(
            f"cannot download {entry.url} ({reason}); offline, put that file at '{archive}'"
        ) from None


class _HashingReader:
    """A read-only file wrapper that hashes what passes through (the tarball's sha256 in one pass)."""

    def __init__(self, f: IO[bytes]) -> None:
        self.f = f
        self.sha256 = hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        data = self.f.read(size)
        self.sha256.update(data)
        return data

    def finish(self) -> str:
        while self.read(1 << 20):
            pass
        return self.sha256.hexdigest()


def _extract_checkpoint(entry: PretrainedWeights, archive: Path, into: Path) -> tuple[Path, str]:
    """Copy the tarball's checkpoint members into ``into``; returns (TF prefix, tarball sha256)."""
    found: dict[str, Path] = {}
    try:
        with open(archive, "rb") as raw:
            reader = _HashingReader(raw)
            with tarfile.open(fileobj=reader, mode="r|*") as tar:  # one streaming pass
                for member in tar:
                    name = member.name.removeprefix("./")
                    if not member.isfile() or not _CKPT_MEMBER.fullmatch(name) or ".." in name.split("/"):
                        continue  # frozen_inference_graph.pb and anything else is not read out
                    target = into / name.replace("/", "__")  # flat: no path from the tarball is trusted
                    with tar.extractfile(member) as src, open(target, "wb") as dst:
                        shutil.copyfileobj(src, dst, 1 << 20)
                    found[name] = target
            digest = reader.finish()
    except (tarfile.TarError, EOFError, OSError, ValueError) as e:
        raise PretrainedWeightsError(
            f"'{archive}' is not a complete tar.gz ({type(e).__name__}: {e}); delete it to download again"
        ) from None
    if entry.sha256 is not None and digest != entry.sha256:
        raise PretrainedWeightsError(
            f"'{archive}' has sha256 {digest}, expected {entry.sha256} for {entry.url}; delete it to download again"
        )
    recorded = _recorded(archive)
    if recorded is not None and digest != recorded:
        raise PretrainedWeightsError(
            f"'{archive}' has sha256 {digest}, not the {recorded} recorded at its first download; "
            "delete it to download again"
        )
    indexes = sorted(n.removesuffix(".index") for n in found if n.endswith(".index"))
    if entry.checkpoint in indexes:
        prefix = entry.checkpoint
    elif len(indexes) == 1:
        prefix = indexes[0]
    else:
        raise PretrainedWeightsError(
            f"'{archive}' holds no checkpoint '{entry.checkpoint}' (checkpoint prefixes found: {indexes or 'none'})"
        )
    return into / prefix.replace("/", "__"), digest


def _check_fits(state: dict[str, torch.Tensor], entry: PretrainedWeights) -> None:
    """Every tensor of the model the entry builds is there with its shape, or no cache file."""
    with torch.device("meta"):  # shapes only: nothing allocated or initialised
        own = target_module(entry.kind, entry.num_classes or 1).state_dict()
    mismatch = state_dict_mismatch(own, state)
    if mismatch is not None:
        raise ValueError(f"does not fit the model: {mismatch}")


def _convert(entry: PretrainedWeights, archive: Path) -> dict[str, torch.Tensor]:
    print(f"converting {archive} ({entry.kind}) -> {converted_path(entry)}", file=sys.stderr)
    work = cache_dir() / "tmp"
    work.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f"{entry.name}.", dir=work) as tmp:
        prefix, digest = _extract_checkpoint(entry, archive, Path(tmp))
        try:
            state = convert(TFCheckpoint(prefix), entry.kind)
            _check_fits(state, entry)
        except Exception as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise PretrainedWeightsError(
                f"cannot convert '{archive}' as {entry.name} ({entry.kind}): {first}; "
                "if the file is damaged, delete it to download again"
            ) from None
    if _recorded(archive) is None:
        _write_record(archive, digest)
        print(
            f"recorded the tarball's sha256 {digest} in {sha256_record(archive)}: later uses are checked "
            "against it (the model zoo publishes no hash to compare a first download with)",
            file=sys.stderr,
        )
    source = dict(_source(entry), archive_sha256=digest, tensors=len(state))
    path = save_checkpoint({"model": state, "source": source}, converted_path(entry))
    _write_record(path, file_sha256(path))
    print(f"wrote {path} ({len(state)} tensors; tarball sha256 {digest})", file=sys.stderr)
    return state


def load_state_dict(entry: PretrainedWeights, *, progress: bool = True) -> dict[str, torch.Tensor]:
    """The entry's converted state_dict: from the cache, else downloaded (if need be) and converted.

    Returns:
        Float32 tensors under our keys: the full ``DeepLabV3Plus`` for a segmentation entry, the
        backbone's own keys for an ImageNet one (no ``num_batches_tracked``).

    Raises:
        PretrainedWeightsError: offline (one line naming the URL and where to put the file), a
            damaged tarball, or a checkpoint that does not fit the entry.
    """
    state = _read_cache(entry)
    if state is not None:
        return state
    archive = archive_path(entry)
    if archive.is_file():
        return _convert(entry, archive)
    _download(entry, archive, progress)
    try:
        return _convert(entry, archive)
    except PretrainedWeightsError as e:
        archive.unlink(missing_ok=True)  # ours, and damaged (e.g. a connection closed early)
        raise PretrainedWeightsError(
            f"{e} (the download was deleted: run again to download it anew)"
        ) from None
