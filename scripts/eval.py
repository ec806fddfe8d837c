"""Evaluate a checkpoint: ``python scripts/eval.py --checkpoint runs/x/best.pth [--flip ...]``.

A thin face over ``deeplabv3plus eval`` (the installed command); the logic lives in
:mod:`deeplabv3plus.cli` (``add_eval_arguments``, ``load_model``, ``apply_eval_flags``,
``default_output_path``, ``run_eval``). The names below are kept for code that imported this script.
"""

import sys
from typing import Optional

from deeplabv3plus.cli import apply_eval_flags, default_output_path, load_model, run_command  # noqa: F401
from deeplabv3plus.cli import parse_eval_args as parse_args  # noqa: F401
from deeplabv3plus.cli import run_eval as run  # noqa: F401
from deeplabv3plus.predict import load_model_from_checkpoint  # noqa: F401


def main(argv: Optional[list[str]] = None) -> int:
    """Exit code: 0, or 2 with one line on stderr for a user error."""
    return run_command("eval", argv, "eval.py")


if __name__ == "__main__":
    sys.exit(main())
