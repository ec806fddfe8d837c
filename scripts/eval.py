"""Evaluate a checkpoint: ``python scripts/eval.py --checkpoint runs/x/best.pth [--flip ...]``.

A thin face over ``deeplabv3plus eval`` (the installed command; the job is
:func:`deeplabv3plus.evaluate.evaluate_run`, the flags are :mod:`deeplabv3plus.cli`'s).
"""

from deeplabv3plus.cli import run_script

if __name__ == "__main__":
    run_script("eval", "eval.py")
