"""Export a trained checkpoint to ONNX (dynamic batch, height, width) and check it with onnxruntime.

Needs the extra: ``pip install "deeplabv3plus[onnx]"``. Example::

    python scripts/export_onnx.py --checkpoint runs/voc/last.pt --output deeplab.onnx --output-stride 16
"""

from __future__ import annotations

import argparse

import torch

from deeplabv3plus.cli import run_main
from deeplabv3plus.export import check_onnx, export_onnx
from deeplabv3plus.predict import load_model_from_checkpoint


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True, help="training checkpoint (.pt)")
    p.add_argument("--config", help="YAML config replacing the checkpoint's (needed for a bare state_dict)")
    p.add_argument("--output", required=True, help="the .onnx file to write")
    p.add_argument("--height", type=int, default=513, help="height of the example input used for tracing")
    p.add_argument("--width", type=int, default=513, help="width of the example input used for tracing")
    p.add_argument("--output-stride", type=int, choices=(8, 16, 32), help="export at this output stride")
    p.add_argument("--exporter", default="auto", choices=("auto", "dynamo", "torchscript"))
    p.add_argument("--opset", type=int, help="ONNX opset version (default: the exporter's)")
    p.add_argument("--no-check", action="store_true", help="skip the onnxruntime parity check")
    return p.parse_args(argv)


def main(argv=None) -> str:
    args = parse_args(argv)
    model, _ = load_model_from_checkpoint(args.checkpoint, args.config, device="cpu")
    used = export_onnx(
        model,
        args.output,
        height=args.height,
        width=args.width,
        output_stride=args.output_stride,
        exporter=args.exporter,
        opset=args.opset,
    )
    print(f"wrote {args.output} ({used} exporter)")
    if not args.no_check:
        # Two sizes and batch sizes other than the tracing example: the axes must be dynamic.
        inputs = [
            torch.randn(1, 3, args.height, args.width),
            torch.randn(2, 3, args.height // 2 + 7, args.width - 10),
        ]
        worst = check_onnx(model, args.output, inputs, output_stride=args.output_stride)
        print(f"onnxruntime matches PyTorch at {[tuple(x.shape) for x in inputs]}: max |diff| {worst:.2e}")
    return used


if __name__ == "__main__":
    run_main(main, "export_onnx.py")
