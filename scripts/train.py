"""Train DeepLabv3+: ``python scripts/train.py --config configs/quickstart.yaml [key=value ...]``.

Multi-GPU: ``torchrun --nproc_per_node=8 scripts/train.py --config configs/voc_resnet101_os16.yaml``.
The loop itself is :func:`deeplabv3plus.train.train`.

A thin face over ``deeplabv3plus train`` (the installed command; ``--resume`` and its stored config
are :func:`deeplabv3plus.train.train`'s too).
"""

from deeplabv3plus.cli import run_script

if __name__ == "__main__":
    run_script("train", "train.py")
