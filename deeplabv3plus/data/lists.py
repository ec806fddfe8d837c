"""Split lists: the ``<split>.txt`` files that name a split's images, shared by the layout readers."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from .types import DatasetError

__all__ = ["find_list", "read_split_list"]


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
