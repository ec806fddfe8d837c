"""Build PASCAL VOC 2012 train_aug (10,582 images) from the VOC 2012 and SBD releases.

Example::

    python scripts/prepare_voc.py --voc VOCtrainval_11-May-2012.tar --sbd benchmark.tgz --out data
    python scripts/prepare_voc.py --out data --download

then train with ``data.layout=voc data.root=data data.train_split=train_aug``.
"""

from __future__ import annotations

import argparse

from deeplabv3plus.cli import run_main
from deeplabv3plus.data.prepare import prepare_voc


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--voc", help="VOCtrainval_11-May-2012.tar or an extracted VOCdevkit/VOC2012 folder")
    parser.add_argument("--sbd", help="benchmark.tgz or an extracted benchmark_RELEASE folder")
    parser.add_argument(
        "--out", default="data", help="where archives are extracted/downloaded (default: data)"
    )
    parser.add_argument("--download", action="store_true", help="download missing archives (official URLs)")
    parser.add_argument(
        "--allow-count-mismatch",
        action="store_true",
        help="warn instead of failing when the split sizes are not 10,582 / 1,449",
    )
    args = parser.parse_args(argv)
    prepare_voc(
        args.voc,
        args.sbd,
        args.out,
        download_missing=args.download,
        allow_count_mismatch=args.allow_count_mismatch,
    )


if __name__ == "__main__":
    run_main(main, "prepare_voc.py")
