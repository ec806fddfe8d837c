"""Segment images with a trained checkpoint: palette label PNGs + colour overlays.

Examples::

    python scripts/predict.py --checkpoint runs/voc/last.pt photo.jpg --output out/
    python scripts/predict.py --checkpoint runs/voc/last.pt "images/*.jpg" imgs2/ --output out/ \\
        --scales 0.5 0.75 1.0 1.25 1.5 1.75 --flip --output-stride 8
    python scripts/predict.py --weights xception65_coco_voc_trainaug photo.jpg --output out/  # model zoo
"""

from __future__ import annotations

import argparse

import torch

from deeplabv3plus.cli import run_main
from deeplabv3plus.config import config_from_dict, validate_config
from deeplabv3plus.predict import collect_inputs, dataset_palette, load_model_from_checkpoint, predict_files
from deeplabv3plus.weights import load_weights_model


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", help="training checkpoint (.pt)")
    source.add_argument(
        "--weights",
        help="a reference model-zoo entry, e.g. xception65_coco_voc_trainaug (docs/pretrained.md)",
    )
    p.add_argument("--config", help="YAML config replacing the checkpoint's (needed for a bare state_dict)")
    p.add_argument("inputs", nargs="+", help="image files, folders or glob patterns")
    p.add_argument("--output", required=True, help="output folder")
    p.add_argument("--device", default="auto", help="auto (cuda if available), cpu, cuda, cuda:1")
    p.add_argument("--batch-size", type=int, default=1, help="images per forward pass (same-size images)")
    p.add_argument(
        "--scales", type=float, nargs="+", help="inference scales (paper MS: 0.5..1.75; default 1.0)"
    )
    p.add_argument(
        "--flip", action=argparse.BooleanOptionalAction, help="also average the left-right flipped image"
    )
    p.add_argument("--output-stride", type=int, choices=(8, 16, 32), help="evaluate at this output stride")
    p.add_argument("--mode", choices=("whole", "slide"), help="whole images or sliding windows (eval.mode)")
    p.add_argument("--crop-size", type=int, nargs="+", help="slide window: H W, or one side (eval.crop_size)")
    p.add_argument("--stride", type=int, nargs="+", help="slide step: H W, or one value (eval.stride)")
    p.add_argument("--alpha", type=float, default=0.5, help="weight of the class colours in the overlay")
    p.add_argument("--overlay-ext", default=".jpg", choices=(".jpg", ".png"))
    return p.parse_args(argv)


def main(argv=None) -> list:
    args = parse_args(argv)
    device = args.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    paths = collect_inputs(args.inputs)
    if args.weights:  # the entry's published evaluation settings, unless given here
        model, cfg = load_weights_model(args.weights, device=device)
        scales, flip, output_stride = cfg.eval.scales, cfg.eval.flip, cfg.eval.output_stride
        print(f"{args.weights}: output stride {output_stride}, scales {scales}, flip {flip}")
    else:
        model, cfg = load_model_from_checkpoint(args.checkpoint, args.config, device=device)
        scales, flip, output_stride = [1.0], False, None
    # The flags set eval.mode / crop_size / stride (else the config's), checked like the config.
    flags = {"mode": args.mode, "crop_size": args.crop_size, "stride": args.stride}
    flags = {k: v[0] if isinstance(v, list) and len(v) == 1 else v for k, v in flags.items() if v is not None}
    cfg = config_from_dict({"eval": flags}, base=cfg)
    validate_config(cfg)
    outputs = predict_files(
        model,
        paths,
        args.output,
        cfg.data.mean,
        cfg.data.std,
        batch_size=args.batch_size,
        device=device,
        scales=args.scales or scales,
        flip=flip if args.flip is None else args.flip,
        output_stride=args.output_stride or output_stride,
        alpha=args.alpha,
        overlay_ext=args.overlay_ext,
        palette=dataset_palette(cfg.data.layout, cfg.data.label_convention),
        mode=cfg.eval.mode,
        crop_size=cfg.eval.crop_size,
        stride=cfg.eval.stride,
    )
    print(f"wrote {len(outputs)} label PNGs and overlays to {args.output}")
    return outputs


if __name__ == "__main__":
    run_main(main, "predict.py")
