"""Write the synthetic segmentation dataset (VOC 2012 layout) used by the quickstart and the tests.

Example::

    python scripts/make_synthetic.py data/synthetic --num-train 200 --num-val 50
    python scripts/make_synthetic.py data/synthetic_colour --kind colour   # the original colour set
"""

from __future__ import annotations

import argparse

from deeplabv3plus.cli import run_main
from deeplabv3plus.data.synthetic import (
    SYNTHETIC_KIND,
    SYNTHETIC_KINDS,
    SYNTHETIC_NUM_CLASSES,
    SYNTHETIC_NUM_TRAIN,
    SYNTHETIC_NUM_VAL,
    SYNTHETIC_SIZE,
    make_synthetic_voc,
)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "root", nargs="?", default="data/synthetic", help="output folder (default: data/synthetic)"
    )
    parser.add_argument("--num-train", type=int, default=SYNTHETIC_NUM_TRAIN)
    parser.add_argument("--num-val", type=int, default=SYNTHETIC_NUM_VAL)
    parser.add_argument("--size", type=int, default=SYNTHETIC_SIZE, help="nominal image side in pixels")
    parser.add_argument("--num-classes", type=int, default=SYNTHETIC_NUM_CLASSES, help="including background")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--kind",
        choices=list(SYNTHETIC_KINDS),
        default=SYNTHETIC_KIND,
        help="texture: classes differ by shape and texture only; colour: one hue per class (default: %(default)s)",
    )
    args = parser.parse_args(argv)
    voc = make_synthetic_voc(
        args.root,
        num_train=args.num_train,
        num_val=args.num_val,
        size=args.size,
        seed=args.seed,
        num_classes=args.num_classes,
        kind=args.kind,
    )
    print(f"the '{args.kind}' synthetic dataset is in {voc}")


if __name__ == "__main__":
    run_main(main, "make_synthetic.py")
