"""Train DeepLabv3+: ``python scripts/train.py --config configs/quickstart.yaml [key=value ...]``.

Multi-GPU: ``torchrun --nproc_per_node=8 scripts/train.py --config configs/voc_resnet101_os16.yaml``.
The loop itself is :func:`deeplabv3plus.train.train`.
"""

import sys

from deeplabv3plus.train import main

if __name__ == "__main__":
    sys.exit(main())
