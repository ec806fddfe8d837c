"""Multiply-Adds next to the paper's Tables 3 and 5: ``python scripts/macs.py``.

A thin face over ``deeplabv3plus macs`` (the installed command; logic in :mod:`deeplabv3plus.cli`).
"""

from deeplabv3plus.cli import run_script

if __name__ == "__main__":
    run_script("macs", "macs.py")
