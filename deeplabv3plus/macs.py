"""Multiply-Adds of our models next to the paper's Tables 3 and 5 (at a 513x513 input).

Counted with ``torch.utils.flop_counter`` on the meta device (no memory, no arithmetic):
MACs = FLOPs / 2. Multi-scale rows sum the single-scale cost over the scales
{0.5, 0.75, 1.0, 1.25, 1.5, 1.75} at the reference's scaled sizes, and flip doubles it.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

import torch
from torch.utils.flop_counter import FlopCounterMode

from .builders import build_model
from .inference import PAPER_SCALES, scaled_size


@dataclass(frozen=True)
class PaperRow:
    """One row of the paper's Table 3 (ResNet-101) or Table 5 (Xception-65)."""

    table: int
    backbone: str
    train_os: int
    eval_os: int
    decoder: bool
    ms: bool
    flip: bool
    sc: bool
    pretraining: str
    miou: float
    """VOC 2012 val mIoU in %, as published."""
    gmacs: float
    """Multiply-Adds in billions, as published."""

    @property
    def regular_atrous(self) -> bool:
        """Whether the row runs regular (non-separable) atrous 3x3 convs.

        The reference TF code runs those through space-to-batch and its profiler counts the
        padded positions, so these rows come out *below* the paper (docs/macs.md).
        """
        return not self.sc and self.eval_os != 32


def _rows(table: int, backbone: str, sc: bool, text: str) -> list[PaperRow]:
    rows = []
    for line in text.strip().splitlines():
        f = line.split()
        rows.append(
            PaperRow(
                table, backbone, int(f[0]), int(f[1]), f[2] == "y", f[3] == "y", f[4] == "y",
                sc or f[5] == "y", f[6] if f[6] != "-" else "", float(f[7]), float(f[8]),
            )
        )  # fmt: skip
    return rows


# train_os eval_os decoder ms flip sc pretraining mIoU GMACs
PAPER_ROWS: list[PaperRow] = _rows(
    3, "resnet101", False,
    """
16 16 n n n n - 77.21 81.02
16 8  n n n n - 78.51 276.18
16 8  n y n n - 79.45 2435.37
16 8  n y y n - 79.77 4870.59
16 16 y n n n - 78.85 101.28
16 16 y y n n - 80.09 898.69
16 16 y y y n - 80.22 1797.23
16 8  y n n n - 79.35 297.92
16 8  y y n n - 80.43 2623.61
16 8  y y y n - 80.57 5247.07
32 32 n n n n - 75.43 52.43
32 32 y n n n - 77.37 74.20
32 16 y n n n - 77.80 101.28
32 8  y n n n - 77.92 297.92
""",
) + _rows(
    5, "xception65", False,
    """
16 16 n n n n - 79.17 68.00
16 16 n y n n - 80.57 601.74
16 16 n y y n - 80.79 1203.34
16 8  n n n n - 79.64 240.85
16 8  n y n n - 81.15 2149.91
16 8  n y y n - 81.34 4299.68
16 16 y n n n - 79.93 89.76
16 16 y y n n - 81.38 790.12
16 16 y y y n - 81.44 1580.10
16 8  y n n n - 80.22 262.59
16 8  y y n n - 81.60 2338.15
16 8  y y y n - 81.63 4676.16
16 16 y n n y - 79.79 54.17
16 16 y y y y - 81.21 928.81
16 8  y n n y - 80.02 177.10
16 8  y y y y - 81.39 3055.35
16 16 y n n y COCO 82.20 54.17
16 8  y y y y COCO 83.58 3055.35
16 8  y y y y COCO+JFT 84.56 3055.35
""",
)  # fmt: skip


def count_macs(model: torch.nn.Module, height: int = 513, width: int = 513, batch: int = 1) -> int:
    """Multiply-Adds of one forward pass of ``model`` (on the meta device, or anywhere).

    Args:
        model: any module; build it under ``torch.device("meta")`` to count without memory.
        height, width: input size in pixels.

    Returns:
        MACs (FLOPs / 2) as counted by ``torch.utils.flop_counter`` (convs, matmuls).
    """
    device = next(model.parameters()).device
    x = torch.empty(batch, 3, height, width, device=device)
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(x)
    return counter.get_total_flops() // 2


def macs_of_row(row: PaperRow, size: int = 513, strided_shortcut: str = "projection") -> int:
    """Our Multiply-Adds for a paper row: the model at the row's eval OS, over its scales and flips.

    ResNet rows use the paper's ``beta`` ResNet, with projection shortcuts in its strided
    units by default: the form whose counts match Table 3 (docs/macs.md says why).
    """
    kwargs = {}
    if row.backbone.startswith("resnet"):
        kwargs = {"resnet_variant": "beta", "strided_shortcut": strided_shortcut}
    with torch.device("meta"):
        model = build_model(
            row.backbone, output_stride=row.eval_os, decoder=row.decoder, separable=row.sc, **kwargs
        ).eval()
    return multi_scale_macs(model, size, size, PAPER_SCALES if row.ms else (1.0,), row.flip)


def multi_scale_macs(
    model: torch.nn.Module,
    height: int = 513,
    width: int = 513,
    scales: Sequence[float] = (1.0,),
    flip: bool = False,
) -> int:
    """Multiply-Adds of segmenting one ``height`` x ``width`` image as ``predict_probs`` does: one
    forward pass per scale at the reference's scaled size, doubled with flip (the flipped copies
    are the same passes again)."""
    total = sum(count_macs(model, *scaled_size(height, width, s)) for s in scales)
    return total * (2 if flip else 1)


def macs_table(
    rows: Optional[Sequence[PaperRow]] = None, strided_shortcut: str = "projection", size: int = 513
) -> list[dict]:
    """Our Multiply-Adds next to the paper's for each row (default: all of Tables 3 and 5).

    Each distinct configuration is counted once, without flip; a flip row is exactly twice its
    twin (the flipped batch is the same forward pass).
    """
    out, cache = [], {}
    for row in rows if rows is not None else PAPER_ROWS:
        key = (row.backbone, row.eval_os, row.decoder, row.ms, row.sc)
        if key not in cache:
            unflipped = dataclasses.replace(row, flip=False)
            cache[key] = macs_of_row(unflipped, size=size, strided_shortcut=strided_shortcut)
        ours = cache[key] * (2 if row.flip else 1) / 1e9
        out.append({"row": row, "ours_gmacs": ours, "rel_diff": ours / row.gmacs - 1.0})
    return out


def format_macs_table(results: list[dict]) -> str:
    """Plain-text table: one line per paper row with both counts and the relative difference."""
    head = f"{'table':>5} {'backbone':<10} {'train':>5} {'eval':>4} {'dec':>3} {'MS':>2} {'flip':>4} {'SC':>2} " \
           f"{'pretrain':<9} {'mIoU':>6} {'paper GMACs':>11} {'ours GMACs':>10} {'diff':>7}"  # fmt: skip
    lines = [head, "-" * len(head)]
    yes = {True: "y", False: ""}
    for r in results:
        row = r["row"]
        lines.append(
            f"{row.table:>5} {row.backbone:<10} {row.train_os:>5} {row.eval_os:>4} {yes[row.decoder]:>3} "
            f"{yes[row.ms]:>2} {yes[row.flip]:>4} {yes[row.sc]:>2} {row.pretraining:<9} {row.miou:>6.2f} "
            f"{row.gmacs:>11.2f} {r['ours_gmacs']:>10.2f} {100 * r['rel_diff']:>+6.1f}%"
        )
    return "\n".join(lines)


def write_macs_json(
    results: list[dict], path: Union[str, Path], *, size: int = 513, strided_shortcut: str = "projection"
) -> dict:
    """Write :func:`macs_table`'s rows and both counts to a JSON file (what ``macs --json`` writes).

    Args:
        results: :func:`macs_table`'s result.
        path: The JSON file.
        size, strided_shortcut: The settings the table was counted with (recorded in the file).

    Returns:
        The payload written: ``{"size", "strided_shortcut", "rows"}``, each row the paper row's fields
        with ``paper_gmacs`` (its ``gmacs``), ``ours_gmacs`` (GMACs, 1e9 Multiply-Adds) and ``rel_diff``
        (ours / paper - 1).
    """
    rows = [
        {
            **{k: v for k, v in dataclasses.asdict(r["row"]).items() if k != "gmacs"},
            "paper_gmacs": r["row"].gmacs,
            "ours_gmacs": r["ours_gmacs"],
            "rel_diff": r["rel_diff"],
        }
        for r in results
    ]
    payload = {"size": size, "strided_shortcut": strided_shortcut, "rows": rows}
    with open(path, "w") as f:
        json.dump(payload, f, indent=2)
    return payload
