"""Segment images: ``python scripts/predict.py --checkpoint runs/x/best.pth photo.jpg --output out/``.

A thin face over ``deeplabv3plus predict`` (the installed command); the logic lives in
:mod:`deeplabv3plus.cli` (``add_predict_arguments``, ``run_predict``). The names below are kept for
code that imported this script.
"""

import sys
from typing import Optional

from deeplabv3plus.cli import parse_command_args, run_command
from deeplabv3plus.predict import load_model_from_checkpoint  # noqa: F401


def parse_args(argv: Optional[list[str]] = None):
    return parse_command_args("predict", argv, "predict.py")


def main(argv: Optional[list[str]] = None) -> int:
    """Exit code: 0, or 2 with one line on stderr for a user error."""
    return run_command("predict", argv, "predict.py")


if __name__ == "__main__":
    sys.exit(main())
