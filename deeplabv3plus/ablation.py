"""The paper in ten minutes: the decoder and the eval-time ablation of DeepLabv3+ on a CPU.

:func:`run_ablation` trains the quickstart model twice at equal budget (same config, seed and
iterations), with and without the decoder (DeepLabv3+ vs DeepLabv3), and reports side by side the
val mIoU, the trimap curve (mIoU in bands of 2..40 px around the void pixels, paper Fig. 5a), the
Multiply-Adds and the training wall time; then it evaluates the decoder model at OS 16 and 8,
single- and multi-scale, with and without flip (paper Table 3). ``controls=True`` adds two broken
recipes that must score clearly lower than the real one: labels shuffled independently of the
images, and a frozen randomly initialised backbone. ``deeplabv3plus paper-ablation`` (and
``scripts/paper_ablation.py``) is its command-line face, in :mod:`deeplabv3plus.cli`.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Optional

import numpy as np
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader

from .config import Config, EvalConfig
from .data.datasets import build_dataset, eval_collate, find_voc_dir, read_label, split_names
from .data.synthetic import SYNTHETIC_SIZE
from .data.voc_meta import voc_palette
from .evaluate import evaluate
from .inference import PAPER_SCALES, use_output_stride
from .macs import multi_scale_macs
from .train import train

TRIMAP_WIDTHS: tuple[int, ...] = tuple(range(2, 41, 2))
"""Band widths of the trimap curve, pixels."""

MACS_SIZE = SYNTHETIC_SIZE
"""Multiply-Adds are counted for one MACS_SIZE x MACS_SIZE image (the synthetic set's nominal side)."""

EVAL_ROWS: tuple[tuple[str, int, tuple[float, ...], bool], ...] = (
    ("OS 16", 16, (1.0,), False),
    ("OS 8", 8, (1.0,), False),
    ("OS 16, MS", 16, PAPER_SCALES, False),
    ("OS 16, MS + flip", 16, PAPER_SCALES, True),
    ("OS 8, MS", 8, PAPER_SCALES, False),
    ("OS 8, MS + flip", 8, PAPER_SCALES, True),
)
"""The eval-time rows of the decoder model: (name, output stride, scales, flip), as in Table 3."""


def default_eval_rows(cfg: Config) -> list[tuple[str, int, tuple[float, ...], bool]]:
    """:data:`EVAL_ROWS` plus multi-scale + flip over the training scales (``cfg.data.scales``).

    The paper's eval scales (0.5..1.75) lie inside its training scales (0.5..2.0); a recipe that
    trains on a narrower range sees the extra row tell whether multi-scale inference helps within it.
    """
    return list(EVAL_ROWS) + [("OS 16, training scales + flip", 16, tuple(cfg.data.scales), True)]


def inference_macs(
    model: nn.Module, output_stride: int, scales: Sequence[float] = (1.0,), flip: bool = False
) -> int:
    """Multiply-Adds of segmenting one MACS_SIZE x MACS_SIZE image: summed over scales, x2 with flip."""
    model = copy.deepcopy(model).to("meta")  # counted without computing anything
    with use_output_stride(model, output_stride):
        return multi_scale_macs(model, MACS_SIZE, MACS_SIZE, scales, flip)


def _val_loader(cfg: Config) -> tuple[DataLoader, list[str]]:
    val_set = build_dataset(cfg.data, cfg.data.val_split, train=False)
    loader = DataLoader(val_set, batch_size=1, num_workers=min(cfg.data.workers, 2), collate_fn=eval_collate)
    return loader, val_set.class_names


def evaluate_row(
    model: nn.Module, cfg: Config, output_stride: int, scales: Sequence[float] = (1.0,), flip: bool = False
) -> dict[str, Any]:
    """Val mIoU, trimap curve, Multiply-Adds and wall time of one inference setting.

    The setting is the row's alone (whole images, no padding, the void trimap band), not the
    recipe's ``cfg.eval``: every row of the table differs from the others only where its name says.
    """
    loader, class_names = _val_loader(cfg)
    setting = EvalConfig(
        output_stride=output_stride,
        scales=list(scales),
        flip=flip,
        trimap=True,
        trimap_widths=list(TRIMAP_WIDTHS),
    )
    start = time.perf_counter()
    results = evaluate(
        model, loader, setting, num_classes=cfg.data.num_classes, class_names=class_names,
        ignore_index=cfg.data.ignore_index, progress=False,
    )  # fmt: skip
    return {
        "mIoU": results["mIoU"],
        "trimap": {int(w): v for w, v in results["trimap"].items()},
        "macs": inference_macs(model, output_stride, scales, flip),
        "eval_wall_s": time.perf_counter() - start,
    }


def train_variant(cfg: Config, out_dir: Path, **changes: Any) -> tuple[nn.Module, dict[str, Any]]:
    """Train a copy of ``cfg`` with ``changes`` ("section.key" -> value) into ``out_dir``; time it."""
    cfg = copy.deepcopy(cfg)
    for dotted, value in changes.items():
        section, key = dotted.split(".")
        setattr(getattr(cfg, section), key, value)
    cfg.train.output_dir = str(out_dir)
    start = time.perf_counter()
    model, _ = train(cfg)
    wall = time.perf_counter() - start
    model.eval()
    row = evaluate_row(model, cfg, cfg.model.output_stride)
    row["train_wall_s"] = wall
    return model, row


def write_shuffled_label_copy(cfg: Config, out_root: Path, seed: int = 0) -> Path:
    """A copy of ``cfg``'s VOC tree whose training labels belong to other training images.

    Training image ``i`` gets the label of image ``perm[i]`` for a random permutation without fixed
    points, resized (nearest) to image ``i``'s size: the labels keep their statistics (class
    frequencies, shapes, void bands) but say nothing about the image. Val is copied unchanged.

    Returns:
        ``out_root``, readable with ``data.layout=voc``.
    """
    build_dataset(cfg.data, cfg.data.train_split, train=False)  # generates the synthetic set if needed
    src = find_voc_dir(Path(cfg.data.root))
    dst = out_root / "VOCdevkit" / "VOC2012"
    for sub in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (dst / sub).mkdir(parents=True, exist_ok=True)
    train_names = split_names(cfg.data, cfg.data.train_split)
    val_names = split_names(cfg.data, cfg.data.val_split)
    rng = np.random.default_rng(seed)
    # A random cyclic shift of a random order: a permutation with no image keeping its own label.
    order = rng.permutation(len(train_names))
    shift = int(rng.integers(1, len(train_names))) if len(train_names) > 1 else 0
    donor = {int(order[i]): int(order[(i + shift) % len(order)]) for i in range(len(order))}
    palette = voc_palette().flatten().tolist()
    for i, name in enumerate(train_names + val_names):
        image = src / "JPEGImages" / f"{name}.jpg"
        (dst / "JPEGImages" / image.name).write_bytes(image.read_bytes())
        label_name = train_names[donor[i]] if i < len(train_names) else name
        label = Image.fromarray(read_label(src / "SegmentationClass" / f"{label_name}.png").numpy())
        with Image.open(image) as im:
            label = label.resize(im.size, Image.NEAREST)
        png = label.convert("P") if label.mode != "P" else label
        png.putpalette(palette)
        png.save(dst / "SegmentationClass" / f"{name}.png")
    lists = dst / "ImageSets" / "Segmentation"
    (lists / f"{cfg.data.train_split}.txt").write_text("\n".join(train_names) + "\n")
    (lists / f"{cfg.data.val_split}.txt").write_text("\n".join(val_names) + "\n")
    return out_root


def run_ablation(
    cfg: Config,
    out_dir: Path,
    *,
    controls: bool = False,
    eval_rows: Optional[Sequence[tuple[str, int, tuple[float, ...], bool]]] = None,
) -> dict[str, Any]:
    """Train with and without the decoder, then the eval-time rows (and the broken controls).

    Args:
        cfg: The recipe (e.g. configs/quickstart.yaml); ``model.decoder`` is set per variant.
        out_dir: Runs go to ``out_dir/<variant>/``.
        controls: Also train the two broken recipes (shuffled labels, frozen random backbone).
        eval_rows: The eval-time settings of the decoder model, (name, output stride, scales, flip);
            None: :func:`default_eval_rows`; empty: none.

    Returns:
        JSON-ready dict with ``train`` (variant -> row), ``eval`` (setting -> row), ``controls``.
    """
    results: dict[str, Any] = {"train": {}, "eval": {}, "controls": {}}
    decoder_model = None
    for name, decoder in (("decoder", True), ("no_decoder", False)):
        model, row = train_variant(cfg, out_dir / name, **{"model.decoder": decoder})
        results["train"][name] = row
        if decoder:
            decoder_model = model
    for name, os_, scales, flip in default_eval_rows(cfg) if eval_rows is None else eval_rows:
        if decoder_model is not None:
            results["eval"][name] = evaluate_row(decoder_model, cfg, os_, scales, flip)
    if controls:
        shuffled = write_shuffled_label_copy(cfg, out_dir / "shuffled_labels_data", seed=cfg.train.seed)
        _, row = train_variant(
            cfg, out_dir / "shuffled_labels", **{"data.layout": "voc", "data.root": str(shuffled)}
        )
        results["controls"]["labels shuffled across images"] = row
        _, row = train_variant(cfg, out_dir / "frozen_backbone", **{"train.backbone_lr_mult": 0.0})
        results["controls"]["frozen random backbone"] = row
    return results


def _pct(v: Optional[float]) -> str:
    return "n/a" if v is None else f"{100 * v:.2f}"


def _gain(a: Optional[float], b: Optional[float]) -> str:
    return "n/a" if a is None or b is None else f"{100 * (a - b):+.2f}"


def format_report(results: dict[str, Any]) -> str:
    """Markdown tables: the decoder side by side (with its gain), the eval-time rows, the controls."""
    lines = []
    dec, base = results["train"].get("decoder"), results["train"].get("no_decoder")
    if dec and base:
        lines += [
            "Training at equal budget; val split, OS 16, single scale (gain = decoder - no decoder):",
            "",
            "| | decoder (DeepLabv3+) | no decoder (DeepLabv3) | gain |",
            "|---|---|---|---|",
            f"| mIoU % | {_pct(dec['mIoU'])} | {_pct(base['mIoU'])} | {_gain(dec['mIoU'], base['mIoU'])} |",
        ]
        for w in TRIMAP_WIDTHS:
            a, b = dec["trimap"].get(w), base["trimap"].get(w)
            lines.append(f"| trimap {w} px % | {_pct(a)} | {_pct(b)} | {_gain(a, b)} |")
        lines += [
            f"| Multiply-Adds per {MACS_SIZE}x{MACS_SIZE} image (G) | {dec['macs'] / 1e9:.3f} "
            f"| {base['macs'] / 1e9:.3f} | |",
            f"| training wall time s | {dec['train_wall_s']:.0f} | {base['train_wall_s']:.0f} | |",
            "",
        ]
    if results["eval"]:
        lines += [
            "Eval-time ablation of the decoder model (trained at OS 16):",
            "",
            f"| setting | mIoU % | trimap 2 px % | trimap 10 px % | Multiply-Adds per {MACS_SIZE}x{MACS_SIZE} "
            "image (G) | eval wall s |",
            "|---|---|---|---|---|---|",
        ]
        for name, r in results["eval"].items():
            lines.append(
                f"| {name} | {_pct(r['mIoU'])} | {_pct(r['trimap'].get(2))} | {_pct(r['trimap'].get(10))} "
                f"| {r['macs'] / 1e9:.3f} | {r['eval_wall_s']:.0f} |"
            )
        lines.append("")
    if results["controls"]:
        lines += ["Broken recipes (each must score clearly lower than the recipe itself):", ""]
        lines += ["| recipe | mIoU % |", "|---|---|"]
        if dec:
            lines.append(f"| the recipe (decoder) | {_pct(dec['mIoU'])} |")
        for name, r in results["controls"].items():
            lines.append(f"| {name} | {_pct(r['mIoU'])} |")
        lines.append("")
    return "\n".join(lines)
