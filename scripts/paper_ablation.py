"""The paper in ten minutes: DeepLabv3+ with and without its decoder, and the eval-time ablation, on a CPU.

Example::

    python scripts/paper_ablation.py                      # configs/quickstart.yaml, runs/paper_ablation/
    python scripts/paper_ablation.py --controls           # also the two broken recipes
    python scripts/paper_ablation.py train.max_iters=100  # dotted config overrides

The tables are printed and written to ``<output>/ablation.md`` (and ``ablation.json``).

A thin face over ``deeplabv3plus paper-ablation`` (the installed command; logic in
:mod:`deeplabv3plus.ablation`, arguments in :mod:`deeplabv3plus.cli`).
"""

from deeplabv3plus.cli import run_script

if __name__ == "__main__":
    run_script("paper-ablation", "paper_ablation.py")
