"""mIoU of an exported model on a split of a checkpoint's config: an ONNX graph (fp32 or int8) under
onnxruntime, or a PT2E int8 program (``export --int8 --int8-backend pt2e``) compiled by Inductor.

The same evaluation as ``deeplabv3plus eval`` (whole images, single scale, the config's eval.pad_to),
with the model replaced by an onnxruntime CPU session or the compiled program::

    PYTHONPATH=. python scripts/eval_onnx.py --checkpoint runs/x/best.pth --onnx model_int8.onnx \\
        --output runs/x/best_eval_int8.json data.root=/data/x
    PYTHONPATH=. python scripts/eval_onnx.py --checkpoint runs/x/best.pth --pt2 model_int8.pt2 \\
        --output runs/x/best_eval_pt2e.json data.root=/data/x
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from deeplabv3plus.data.datasets import build_dataset, eval_collate
from deeplabv3plus.evaluate import EvalOptions, evaluate
from deeplabv3plus.export import OnnxRuntimeModel, load_int8_program
from deeplabv3plus.loading import load_model_from_checkpoint


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--checkpoint", required=True, help="the checkpoint the graph was exported from (its config)"
    )
    model_file = p.add_mutually_exclusive_group(required=True)
    model_file.add_argument("--onnx", help="the .onnx graph to evaluate")
    model_file.add_argument("--pt2", help="the PT2E int8 .pt2 program to evaluate (the extra pt2e)")
    p.add_argument("--output", required=True, help="JSON result file")
    p.add_argument("--threads", type=int, help="onnxruntime intra-op threads (torch threads with --pt2)")
    p.add_argument("overrides", nargs="*", help="dotted config overrides, e.g. data.root=/data/x")
    args = p.parse_args(argv)
    _, cfg = load_model_from_checkpoint(args.checkpoint, overrides=args.overrides, prepare=False)
    cfg.eval.output_stride = None  # fixed in the graph at export time (export --output-stride)
    dataset = build_dataset(cfg.data, cfg.data.val_split, train=False)
    loader = DataLoader(dataset, batch_size=1, collate_fn=eval_collate, num_workers=0)
    if args.onnx:
        model = OnnxRuntimeModel(args.onnx, args.threads)
    else:
        if args.threads:
            torch.set_num_threads(args.threads)
        model = load_int8_program(args.pt2)
    results = evaluate(model, loader, cfg.eval, EvalOptions(device="cpu", prepare=False),
                       num_classes=cfg.data.num_classes, class_names=dataset.class_names,
                       ignore_index=cfg.data.ignore_index)  # fmt: skip
    print(results["table"])
    print(f"mIoU {100 * results['mIoU']:.2f}% over {results['num_images']} images")
    source = {"onnx": args.onnx} if args.onnx else {"pt2": args.pt2}
    payload = {"checkpoint": args.checkpoint, **source, "split": cfg.data.val_split,
               **{k: v for k, v in results.items() if k != "table"}}  # fmt: skip
    Path(args.output).write_text(json.dumps(payload, indent=2))
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
