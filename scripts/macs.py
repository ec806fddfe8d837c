"""Print our Multiply-Adds next to the paper's for every row of Tables 3 (ResNet-101) and 5 (Xception-65).

Counted on the meta device (no memory, no arithmetic) with ``torch.utils.flop_counter``; MACs =
FLOPs / 2. Multi-scale rows sum the single-scale cost over the scales {0.5, ..., 1.75} at the
reference's scaled sizes (513 -> 257, 385, 513, 641, 769, 897); flip doubles it. docs/macs.md
explains the differences.

Examples::

    python scripts/macs.py
    python scripts/macs.py --strided-shortcut subsample --json macs.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from typing import Optional

from deeplabv3plus.cli import run_main
from deeplabv3plus.macs import PAPER_ROWS, format_macs_table, macs_table

SHORTCUT_MEANING = {
    "projection": "1x1 conv + BN shortcut in the three ResNet units that stride without changing channels "
    "(reproduces the paper's Table 3 counts)",
    "subsample": "plain subsampling shortcut in the three ResNet units that stride without changing channels "
    "(the reference code and its checkpoints; our default model)",
}


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--strided-shortcut",
        choices=("projection", "subsample"),
        default="projection",
        help="ResNet-101 beta shortcut in its strided units (default: projection)",
    )
    p.add_argument("--size", type=int, default=513, help="input height and width (the paper: 513)")
    p.add_argument("--json", help="also write the rows and both counts to this JSON file")
    return p.parse_args(argv)


def main(argv: Optional[list[str]] = None) -> list[dict]:
    """Count, print and optionally save the table; returns the rows of :func:`macs_table`."""
    args = parse_args(argv)
    print(
        f"ResNet-101 beta strided shortcut: {args.strided_shortcut} = {SHORTCUT_MEANING[args.strided_shortcut]}"
    )
    print(f"input {args.size}x{args.size}; Multiply-Adds counted on the meta device (FLOPs / 2)\n")
    results = macs_table(PAPER_ROWS, strided_shortcut=args.strided_shortcut, size=args.size)
    print(format_macs_table(results))
    if args.json:
        rows = [
            {
                **{k: v for k, v in dataclasses.asdict(r["row"]).items() if k != "gmacs"},
                "paper_gmacs": r["row"].gmacs,
                "ours_gmacs": r["ours_gmacs"],
                "rel_diff": r["rel_diff"],
            }
            for r in results
        ]
        payload = {"size": args.size, "strided_shortcut": args.strided_shortcut, "rows": rows}
        with open(args.json, "w") as f:
            json.dump(payload, f, indent=2)
        print(f"\nwrote {args.json}")
    return results


if __name__ == "__main__":
    run_main(main, "macs.py")
