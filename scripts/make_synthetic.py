"""Write the synthetic VOC-layout dataset: ``python scripts/make_synthetic.py data/synthetic``.

A thin face over ``deeplabv3plus make-synthetic`` (the installed command; logic in :mod:`deeplabv3plus.cli`).
"""

from deeplabv3plus.cli import run_script

if __name__ == "__main__":
    run_script("make-synthetic", "make_synthetic.py")
