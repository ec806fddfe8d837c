"""Build VOC 2012 train_aug: ``python scripts/prepare_voc.py --voc VOCtrainval_11-May-2012.tar --sbd benchmark.tgz``.

A thin face over ``deeplabv3plus prepare-voc`` (the installed command; logic in :mod:`deeplabv3plus.cli`).
"""

from deeplabv3plus.cli import run_script

if __name__ == "__main__":
    run_script("prepare-voc", "prepare_voc.py")
