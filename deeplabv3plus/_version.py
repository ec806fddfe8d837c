"""The library's version, and the git commit of its source tree when it runs from a checkout."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Optional

__version__ = "0.1.0"


def library_commit() -> Optional[str]:
    """The git commit of this library's source tree (``git rev-parse HEAD``), None outside a checkout."""
    try:
        done = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() or None if done.returncode == 0 else None
