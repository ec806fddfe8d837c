"""Convert a reference TensorFlow DeepLab checkpoint into a PyTorch checkpoint (no TensorFlow needed).

Examples::

    # the model zoo's VOC model (ImageNet -> COCO -> VOC train_aug): 82.20% VOC val mIoU at OS 16
    python scripts/convert_tf_checkpoint.py --checkpoint deeplabv3_pascal_train_aug/model.ckpt \\
        --kind xception65_deeplab --output weights/xception65_coco_voc_trainaug.pth
    # ImageNet backbones, for model.pretrained_backbone=PATH
    python scripts/convert_tf_checkpoint.py --checkpoint xception/model.ckpt \\
        --kind xception65_imagenet --output weights/xception65_imagenet_tf.pth

``xception65_deeplab`` writes ``{"model": state_dict, "config": ..., "source": ...}`` that
``scripts/eval.py`` loads directly; the backbone kinds write a bare backbone state_dict. Every tensor
is checked by loading it (strict) into our freshly built model before the file is written.
See docs/pretrained.md.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from deeplabv3plus.checkpoint import save_checkpoint
from deeplabv3plus.cli import run_main
from deeplabv3plus.weights.tf_bundle import TFCheckpoint
from deeplabv3plus.weights.tf_convert import XCEPTION65_VOC_SOURCE, convert, deeplab_checkpoint, target_module
from deeplabv3plus.weights.tf_names import KINDS


def build_target(kind: str, num_classes: int) -> torch.nn.Module:
    """The module the converted weights must fit exactly."""
    return target_module(kind, num_classes)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", required=True, help="TF checkpoint prefix, e.g. DIR/model.ckpt")
    parser.add_argument("--kind", required=True, choices=KINDS)
    parser.add_argument("--output", required=True, type=Path, help="the .pth file to write")
    parser.add_argument(
        "--num-classes",
        type=int,
        default=None,
        help="xception65_deeplab: check the logits (default: as stored)",
    )
    parser.add_argument("--verify-crc", action="store_true", help="check every tensor's crc32c (slow)")
    args = parser.parse_args(argv)

    ckpt = TFCheckpoint(args.checkpoint, verify=args.verify_crc)
    state = convert(ckpt, args.kind)
    num_classes = 0
    if args.kind == "xception65_deeplab":
        num_classes = int(state["classifier.bias"].shape[0])
        if args.num_classes is not None and args.num_classes != num_classes:
            parser.error(
                f"--num-classes {args.num_classes} but the checkpoint's logits have {num_classes} classes"
            )
    # Loading into our model checks every shape (and that nothing is missing or left over).
    build_target(args.kind, num_classes).load_state_dict(state, strict=True)

    if args.kind == "xception65_deeplab":
        source = dict(XCEPTION65_VOC_SOURCE, checkpoint=str(Path(args.checkpoint).resolve()), kind=args.kind)
        obj: object = deeplab_checkpoint(state, num_classes=num_classes, source=source)
    else:
        obj = state
    save_checkpoint(obj, args.output)
    print(f"converted {len(state)} tensors from {args.checkpoint} ({args.kind}) -> {args.output}")
    return 0


if __name__ == "__main__":
    run_main(main, "convert_tf_checkpoint.py")
