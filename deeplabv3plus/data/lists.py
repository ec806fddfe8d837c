"""Where a layout's data is: the dataset folder under ``data.root`` and the ``<split>.txt`` lists that
name a split's images, shared by the layout readers."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Callable

from .types import DatasetError

__all__ = ["find_dataset_dir", "find_list", "read_split_list"]


def find_dataset_dir(
    root: Path,
    candidates: Sequence[Path],
    holds: Callable[[Path], bool],
    what: str,
    looked_for: str,
    hint: str,
) -> Path:
    """The first of ``candidates`` (folders at or under ``root``) that ``holds`` the dataset.

    Raises:
        DatasetError: none does; the message names ``what`` was not found under ``root``, what was
            ``looked_for`` in which folders, and the ``hint`` (the setting, or the command that builds it).
    """
    for path in candidates:
        if holds(path):
            return path
    raise DatasetError(
        f"no {what} under '{root}': looked for {looked_for} in "
        f"{', '.join(repr(str(c)) for c in candidates)} ({hint})"
    )


def read_split_list(path: Path) -> list[str]:
    """The non-empty, non-comment lines of a split list, stripped.

    Raises:
        DatasetError: if the list has no entries.
    """
    try:
        lines = path.read_text().splitlines()
    except OSError as e:
        raise DatasetError(f"cannot read split list '{path}': {e}") from None
    entries = [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
    if not entries:
        raise DatasetError(f"split list '{path}' is empty")
    return entries


def find_list(candidates: Iterable[Path], split: str) -> Path:
    """The first of ``candidates`` that exists.

    Raises:
        DatasetError: none exists (the message lists where it looked and the lists that do exist).
    """
    candidates = list(dict.fromkeys(candidates))
    for path in candidates:
        if path.is_file():
            return path
    available = sorted({p.stem for c in candidates if c.parent.is_dir() for p in c.parent.glob("*.txt")})
    raise DatasetError(
        f"split '{split}': no list file; looked for {', '.join(repr(str(c)) for c in candidates)}"
        + (f" (lists found: {', '.join(available)})" if available else "")
    )
