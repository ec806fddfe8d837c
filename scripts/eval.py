"""Evaluate a trained checkpoint on a split: per-class IoU, mIoU and (optionally) the trimap curve.

The config is the checkpoint's, then the values of ``--config`` (if given) on top, then the dotted
``a.b=c`` overrides, then the flags below, which set ``eval.*``. Overrides may go anywhere except
right after a list option (``--scales``, ``--trimap-widths``, ``--crop-size``, ``--stride``), which
would take them as values. Results are printed and written to a JSON file, by default next to the
checkpoint: ``<ckpt stem>_eval_os{OS}[_ms][_flip].json``
(plus ``_slide`` for sliding-window inference and ``_<split>`` for a split other than val).

Examples::

    python scripts/eval.py --checkpoint runs/voc/last.pt
    python scripts/eval.py --checkpoint runs/voc/last.pt --output-stride 8 \\
        --scales 0.5 0.75 1.0 1.25 1.5 1.75 --flip --trimap data.root=/data/voc
    python scripts/eval.py --weights xception65_coco_voc_trainaug data.root=/data/voc  # model zoo, as published
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, Optional

import torch
import yaml
from torch.utils.data import DataLoader

from deeplabv3plus.config import (
    Config,
    ConfigError,
    config_from_dict,
    config_to_dict,
    trimap_band,
    validate_config,
)
from deeplabv3plus.data.datasets import DatasetError, build_dataset, eval_collate
from deeplabv3plus.evaluate import evaluate
from deeplabv3plus.inference import AMP_DTYPES
from deeplabv3plus.predict import load_model_from_checkpoint


class EvalScriptError(Exception):
    """A user error worth one line on stderr and exit code 2 (not a traceback)."""


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", help="training checkpoint (.pt) or a bare state_dict")
    source.add_argument(
        "--weights",
        help="a reference model-zoo entry, e.g. xception65_coco_voc_trainaug, evaluated as published "
        "(downloaded and converted on first use; docs/pretrained.md)",
    )
    p.add_argument(
        "--config",
        help="YAML config whose values go on top of the checkpoint's (required for a bare state_dict)",
    )
    p.add_argument(
        "overrides", nargs="*", help="dotted config overrides, e.g. data.root=/data/voc data.workers=2"
    )
    p.add_argument("--split", help="split list to evaluate (default: data.val_split)")
    p.add_argument(
        "--scales", type=float, nargs="+", help="inference scales (paper MS: 0.5 0.75 1.0 1.25 1.5 1.75)"
    )
    p.add_argument("--flip", action=argparse.BooleanOptionalAction, help="average with the left-right flip")
    p.add_argument("--output-stride", type=int, choices=(8, 16, 32), help="evaluate at this output stride")
    p.add_argument("--trimap", action=argparse.BooleanOptionalAction, help="also the trimap boundary mIoU")
    p.add_argument(
        "--trimap-widths", type=int, nargs="+", help="trimap band widths in pixels (eval.trimap_widths)"
    )
    p.add_argument("--mode", choices=("whole", "slide"), help="whole images or sliding windows (eval.mode)")
    p.add_argument("--crop-size", type=int, nargs="+", help="slide window: H W, or one side (eval.crop_size)")
    p.add_argument("--stride", type=int, nargs="+", help="slide step: H W, or one value (eval.stride)")
    p.add_argument("--batch-size", type=int, help="images per batch (eval.batch_size)")
    p.add_argument("--device", default="auto", help="auto (cuda if available), cpu, cuda, cuda:1")
    p.add_argument(
        "--amp", choices=("off", "bf16", "fp16"), default="off", help="autocast dtype (default off)"
    )
    p.add_argument("--output", help="JSON result file (default: next to the checkpoint)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    # intermixed: overrides may come before, between or after the options
    return p.parse_intermixed_args(argv)


def flatten_overrides(values: dict, prefix: str = "") -> list[str]:
    """A nested config dict as dotted ``a.b=<json>`` overrides (JSON is valid YAML)."""
    out = []
    for key, value in values.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict):
            out.extend(flatten_overrides(value, f"{path}."))
        else:
            out.append(f"{path}={json.dumps(value)}")
    return out


def read_config_overrides(path: str) -> list[str]:
    """The values of a YAML config file as dotted overrides (to layer them on the checkpoint's)."""
    if not Path(path).is_file():
        raise EvalScriptError(f"config file '{path}' does not exist")
    with open(path) as f:
        values = yaml.safe_load(f) or {}
    if not isinstance(values, dict):
        raise EvalScriptError(f"config file '{path}': expected a mapping at the top level")
    return flatten_overrides(values)


def load_model(args: argparse.Namespace, device: str) -> tuple[torch.nn.Module, Config]:
    """The checkpoint's model and config, with ``--config`` values and the overrides applied."""
    if args.weights:
        from deeplabv3plus.weights import PretrainedWeightsError, load_weights_model

        try:
            overrides = (read_config_overrides(args.config) if args.config else []) + args.overrides
            return load_weights_model(args.weights, overrides, device=device)
        except (PretrainedWeightsError, ConfigError) as e:
            raise EvalScriptError(str(e)) from None
    if not Path(args.checkpoint).is_file():
        raise EvalScriptError(f"checkpoint '{args.checkpoint}' does not exist")
    file_overrides = read_config_overrides(args.config) if args.config else []
    try:
        try:
            return load_model_from_checkpoint(
                args.checkpoint, overrides=file_overrides + args.overrides, device=device
            )
        except ValueError as e:
            if "holds no config" not in str(e):
                raise
            if args.config is None:
                raise EvalScriptError(str(e)) from None
            # A bare state_dict: the --config file is the whole config.
            return load_model_from_checkpoint(args.checkpoint, args.config, args.overrides, device=device)
    except EvalScriptError:
        raise
    except ConfigError as e:
        raise EvalScriptError(str(e)) from None
    except Exception as e:  # unpickling, a state_dict that does not fit the config's model, ...
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise EvalScriptError(f"cannot load checkpoint '{args.checkpoint}': {first}") from None


def apply_eval_flags(cfg: Config, args: argparse.Namespace) -> None:
    """The command-line flags override ``cfg.eval`` (None leaves a field as the config has it)."""
    flags = {
        "scales": args.scales,
        "flip": args.flip,
        "output_stride": args.output_stride,
        "trimap": args.trimap,
        "trimap_widths": args.trimap_widths,
        "batch_size": args.batch_size,
        "mode": args.mode,
        "crop_size": args.crop_size[0] if args.crop_size and len(args.crop_size) == 1 else args.crop_size,
        "stride": args.stride[0] if args.stride and len(args.stride) == 1 else args.stride,
    }
    values = {k: v for k, v in flags.items() if v is not None}
    cfg.eval = config_from_dict({"eval": values}, base=cfg).eval
    validate_config(cfg)


def default_output_path(
    checkpoint: str, output_stride: int, scales: list[float], flip: bool, split: str, mode: str = "whole"
) -> Path:
    """``<ckpt dir>/<ckpt stem>_eval_os{OS}[_ms][_flip][_slide][_<split>].json``."""
    name = f"{Path(checkpoint).stem}_eval_os{output_stride}"
    name += "_ms" if list(scales) != [1.0] else ""
    name += "_flip" if flip else ""
    name += "_slide" if mode == "slide" else ""
    name += f"_{split}" if split != "val" else ""
    return Path(checkpoint).parent / f"{name}.json"


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Load, evaluate, print and write the results; returns the JSON-ready dict."""
    device = args.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    model, cfg = load_model(args, device)
    try:
        apply_eval_flags(cfg, args)
    except ConfigError as e:
        raise EvalScriptError(str(e)) from None
    split = args.split or cfg.data.val_split
    output_stride = cfg.eval.output_stride or cfg.model.output_stride
    dataset = build_dataset(cfg.data, split, train=False)
    loader = DataLoader(
        dataset,
        batch_size=cfg.eval.batch_size,
        shuffle=False,
        num_workers=cfg.data.workers,
        collate_fn=eval_collate,
        pin_memory=torch.device(device).type == "cuda",
    )
    print(
        f"evaluating {args.checkpoint or args.weights} on {len(dataset)} '{split}' images: OS {output_stride}, "
        f"scales {cfg.eval.scales}, flip {cfg.eval.flip}, device {device}"
        + (f", slide {cfg.eval.crop_size} stride {cfg.eval.stride}" if cfg.eval.mode == "slide" else "")
    )
    output = Path(args.output) if args.output else default_output_path(
        args.checkpoint or args.weights, output_stride, cfg.eval.scales, cfg.eval.flip, split, cfg.eval.mode
    )  # fmt: skip
    start = time.perf_counter()
    results = evaluate(
        model,
        loader,
        cfg.data.num_classes,
        scales=cfg.eval.scales,
        flip=cfg.eval.flip,
        output_stride=output_stride,
        trimap_widths=cfg.eval.trimap_widths if cfg.eval.trimap else None,
        device=device,
        class_names=dataset.class_names,
        ignore_index=cfg.data.ignore_index,
        amp_dtype=AMP_DTYPES[args.amp],
        pad_to=cfg.eval.pad_to,
        mode=cfg.eval.mode,
        crop_size=cfg.eval.crop_size,
        stride=cfg.eval.stride,
        trimap_band=trimap_band(cfg),
        trimap_dir=output.with_name(f"{output.stem}_trimap") if cfg.eval.trimap else None,
        progress=not args.no_progress,
    )
    seconds = time.perf_counter() - start
    print(results["table"])
    if "trimap_table" in results:
        around = "the void pixels" if trimap_band(cfg) == "void" else "every class boundary"
        print(f"\ntrimap (mIoU within a band of this width around {around})")
        print(results["trimap_table"])
    print(f"\nmIoU {100 * results['mIoU']:.2f}% over {results['num_images']} images ({seconds:.1f} s)"
          if results["mIoU"] is not None else "\nmIoU undefined (no labelled pixel)")  # fmt: skip

    payload = {
        "checkpoint": str(args.checkpoint) if args.checkpoint else None,
        "weights": args.weights,
        "split": split,
        "output_stride": output_stride,
        "scales": list(cfg.eval.scales),
        "flip": cfg.eval.flip,
        "mode": cfg.eval.mode,
        **({"trimap_band": trimap_band(cfg)} if cfg.eval.trimap else {}),
        "amp": args.amp,
        "seconds": seconds,
        **{k: v for k, v in results.items() if k not in ("table", "trimap_table")},
        "config": config_to_dict(cfg),
    }
    output.parent.mkdir(parents=True, exist_ok=True)
    with open(output, "w") as f:
        json.dump(payload, f, indent=2)
    print(f"wrote {output}")
    return payload


def main(argv: Optional[list[str]] = None) -> int:
    """Command-line entry point; returns the exit code (2 with one line on stderr for user errors)."""
    args = parse_args(argv)
    try:
        run(args)
    except (EvalScriptError, DatasetError, ConfigError, FileNotFoundError) as e:
        print(f"eval.py: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
