"""The command line: one ``deeplabv3plus`` command with a subcommand per job.

``deeplabv3plus <command> [options]`` (installed by pip, see ``[project.scripts]``),
``python -m deeplabv3plus <command>`` and ``python scripts/<command>.py`` run the same code:
each command is a pair of functions here, ``add_<command>_arguments(parser)`` and
``run_<command>(args)``, listed in :data:`COMMANDS`.

User errors (a bad config, file, key or value) end in one line on stderr,
``<prog>: error: <message naming the culprit>``, and exit code 2; errors raised inside DataLoader
workers are reported with their original message. Anything else is a bug and keeps its traceback.
A training run stopped by SIGTERM/SIGINT exits with 128 + the signal number after writing
``last.pth``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shlex
import sys
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, NoReturn, Optional

from ._version import __version__
from .catalog import BACKBONES, BENCHMARK_PEERS, PREDICT_FORMATS, SYNTHETIC, TF_NAME_MAPS
from .config import (
    Config,
    config_from_dict,
    find_config,
    load_config,
    shipped_configs,
    validate_config,
)

if TYPE_CHECKING:
    import torch

# Building the parsers imports no torch (``deeplabv3plus --help`` answers in a fraction of a second,
# docs/benchmarks.md "CLI start-up"): the modules a command runs (torch, the models, the jobs) are
# imported inside its run_<command> function; the names a parser offers come from the torch-free
# catalogues (deeplabv3plus.catalog), the same dicts the jobs read.


def user_errors() -> tuple[type[BaseException], ...]:
    """Bad input: a missing or unreadable file, a wrong key or value (ConfigError, DatasetError and
    TFCheckpointError are ValueErrors), a diverging loss. Their messages name the file, key or value.
    A missing optional extra (an ImportError whose message says what to ``pip install``) counts too."""
    # here, not at the top: --help must not import torch
    from .checkpoint import CheckpointError
    from .data.prepare import PrepareError
    from .weights.zoo import PretrainedWeightsError

    return (OSError, ValueError, CheckpointError, PretrainedWeightsError, PrepareError, FloatingPointError)


class CommandError(Exception):
    """A user error found by the command line itself (one line on stderr, exit code 2)."""


def is_user_error(e: BaseException) -> bool:
    """Whether ``e`` is bad input (reported in one line) rather than a bug (traceback)."""
    if isinstance(e, ImportError):
        return "pip install" in str(e)
    if isinstance(e, CommandError):
        return True
    return isinstance(e, user_errors())


def error_message(e: BaseException) -> str:
    """The one-line message of a user error.

    A DataLoader re-raises a worker's exception as ``type(e)("Caught X in DataLoader worker
    process N.\\nOriginal Traceback ...\\nmodule.X: message")``; the original message is recovered.
    """
    text = str(e).strip()
    if text.startswith("Caught ") and "Original Traceback" in text:
        last = text.splitlines()[-1]
        name = f"{type(e).__name__}: "
        text = last.split(name, 1)[1] if name in last else last
    if isinstance(e, OSError) and e.filename is not None and str(e.filename) not in text:
        text = f"{text} ('{e.filename}')"
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return " | ".join(lines) if lines else type(e).__name__


class _Parser(argparse.ArgumentParser):
    """argparse with usage errors in one line: ``prog: error: message (see --help)``."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


# --- train ---------------------------------------------------------------------------------------

TRAIN_DESCRIPTION = """Train DeepLabv3+ from a YAML config, overridden by dotted key=value pairs.

Examples::

    deeplabv3plus train --config quickstart
    deeplabv3plus train --config configs/quickstart.yaml train.max_iters=100 train.lr=1e-3
    torchrun --nproc_per_node=8 -m deeplabv3plus train --config configs/voc_resnet101_os16.yaml

SIGTERM or SIGINT (pre-emption, Ctrl-C) finishes the current step, writes last.pth and exits with
128 + the signal number; continue with --resume <output_dir>/last.pth (or --resume auto).

With --resume FILE the run's config is the one stored in FILE, then the keys the --config file sets,
then the overrides (train.max_iters=..., train.output_dir=..., data.root=... are honoured); a key
that may not change mid-run (model.*, data.num_classes, data.ignore_index, train.seed, batch_size,
accumulate, lr, momentum, weight_decay, ...) is refused. The run goes to train.output_dir: FILE's
own folder continues there; another folder starts at FILE's iteration, under the rule below
(--overwrite replaces a run there), and FILE's folder is left as it is.

--config takes a file or a shipped config's name (deeplabv3plus configs lists them). Relative paths
in the config (data.root, train.output_dir: data/... and runs/... in the shipped configs) are
relative to the folder the command runs in; the run prints both folders in full.
A train.output_dir that already holds a run (a checkpoint) is refused before any work: continue it
with --resume auto, pick another train.output_dir, or replace it whole with --overwrite; one that
another train command is writing into now is refused too (POSIX: a lock on .run.lock). A folder
left by an attempt that stopped before its first checkpoint is reused.
"""


def add_train_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--config",
        required=True,
        help="YAML config file, or a shipped config's name (quickstart; deeplabv3plus configs lists them)",
    )
    p.add_argument(
        "--resume",
        help="checkpoint to continue from (e.g. runs/x/last.pth); 'auto' = output_dir/last.pth if it "
        "exists, else a new run",
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace the run already in train.output_dir (its checkpoints, config.yaml, run_info.json, "
        "metrics.jsonl, val_results.json, TensorBoard events)",
    )
    p.add_argument("--stop-after", type=int, help="stop at this iteration with a checkpoint (resume later)")
    p.add_argument(
        "overrides", nargs="*", help="dotted overrides, e.g. train.max_iters=100 data.root=data/voc"
    )


def run_train(args: argparse.Namespace) -> Any:
    """The run's config (with --resume: the checkpoint's, then the file's keys and the overrides),
    then :func:`deeplabv3plus.train.train`."""
    # here, not at the top: --help must not import torch
    import torch.distributed as dist

    from .runtime import PeerFailure, is_distributed, rank
    from .train import resume_run_config, train

    try:
        if args.resume:
            cfg = resume_run_config(args.resume, args.config, args.overrides)
        else:
            cfg = load_config(args.config, args.overrides)
        used = find_config(args.config)
        if used != Path(args.config).expanduser() and rank() == 0:
            print(f"--config {args.config}: the shipped config {used}")
    except Exception as e:
        if rank() > 0 and is_user_error(e):
            raise PeerFailure("rank 0 reports the error") from None  # every rank reads the same files
        raise
    try:
        return train(cfg, resume=args.resume, stop_after=args.stop_after, overwrite=args.overwrite,
                     config_name=args.config)  # fmt: skip
    finally:
        if is_distributed():
            dist.destroy_process_group()


# --- eval ----------------------------------------------------------------------------------------

EVAL_DESCRIPTION = """Evaluate a checkpoint on a split: per-class IoU, mIoU and (optionally) the trimap curve.

The config is the checkpoint's, then the values of --config (if given) on top, then the dotted
a.b=c overrides, then the flags below, which set eval.*. Overrides may go anywhere except right
after a list option (--scales, --trimap-widths, --crop-size, --stride), which would take them as values. Results are
printed and written to a JSON file, by default next to the checkpoint, named after the settings:
<ckpt stem>_eval_os{OS}[_ms|_s<scales>][_flip][_slide][_pad<N>][_<amp>][_trimap][_<split>].json
(the trimap CSV/PNG go into the folder of that name without .json).

Examples::

    deeplabv3plus eval --checkpoint runs/voc/best.pth
    deeplabv3plus eval --checkpoint runs/voc/best.pth --output-stride 8 \\
        --scales 0.5 0.75 1.0 1.25 1.5 1.75 --flip --trimap data.root=/data/voc
"""


def _add_model_source(p: argparse.ArgumentParser) -> None:
    """--checkpoint FILE or --weights NAME (a reference model-zoo entry), exactly one."""
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", help="training checkpoint (.pth) or a bare state_dict")
    source.add_argument(
        "--weights",
        help="a reference model-zoo entry, e.g. xception65_coco_voc_trainaug, run with its published "
        "evaluation settings (downloaded and converted on first use; docs/pretrained.md), or portable "
        "weights: a save-pretrained folder or hf:owner/name (docs/deployment.md)",
    )


def _add_precision_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--precision",
        choices=("fp32", "bf16"),
        help="inference precision (eval.precision; default fp32): bf16 rounds the prepared weights once "
        "and runs ~2x faster where the CPU/GPU has native bf16 (docs/deployment.md)",
    )


def _add_window_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--mode", choices=("whole", "slide"), help="whole images or sliding windows (eval.mode)")
    p.add_argument("--crop-size", type=int, nargs="+", help="slide window: H W, or one side (eval.crop_size)")
    p.add_argument("--stride", type=int, nargs="+", help="slide step: H W, or one value (eval.stride)")


def add_eval_arguments(p: argparse.ArgumentParser) -> None:
    _add_model_source(p)
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
    _add_window_arguments(p)
    p.add_argument("--trimap", action=argparse.BooleanOptionalAction, help="also the trimap boundary mIoU")
    p.add_argument(
        "--trimap-widths", type=int, nargs="+", help="trimap band widths in pixels (eval.trimap_widths)"
    )
    p.add_argument("--batch-size", type=int, help="images per batch (eval.batch_size)")
    p.add_argument("--device", default="auto", help="auto (cuda if available), cpu, cuda, cuda:1")
    p.add_argument(
        "--amp", choices=("off", "bf16", "fp16"), default="off", help="autocast dtype (default off)"
    )
    _add_precision_argument(p)
    p.add_argument(
        "--output", help="JSON result file (default: next to the checkpoint, named after the settings)"
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def parse_eval_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    """The eval command's arguments (overrides may come before, between or after the options)."""
    return build_parser("eval").parse_intermixed_args(argv)


def _device(name: str) -> str:
    # here, not at the top: --help must not import torch
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except RuntimeError:
        raise CommandError(f"--device: expected auto, cpu, cuda or cuda:N, got {name!r}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise CommandError(f"--device {name}: CUDA is not available")
    return name


def load_model(args: argparse.Namespace, device: str) -> tuple[torch.nn.Module, Config]:
    """The model of ``--checkpoint`` (its stored config) or of ``--weights`` (the entry's published
    config), with the ``--config`` file's values and then the overrides on top."""
    # here, not at the top: --help must not import torch
    from .loading import load_model_from_checkpoint, load_weights_model

    overrides = getattr(args, "overrides", None)
    # --precision, when given, wins over the stored eval.precision (None leaves the config's).
    precision = getattr(args, "precision", None)
    extra = {"precision": precision} if precision is not None else {}
    if getattr(args, "weights", None):
        return load_weights_model(args.weights, overrides, device=device, config=args.config, **extra)
    return load_model_from_checkpoint(args.checkpoint, args.config, overrides, device=device, **extra)


EVAL_FLAGS = (
    "scales",
    "flip",
    "output_stride",
    "trimap",
    "trimap_widths",
    "batch_size",
    "mode",
    "crop_size",
    "stride",
)
"""The ``eval.*`` fields a command's flags of the same name set (eval and predict)."""


def apply_eval_flags(cfg: Config, args: argparse.Namespace) -> None:
    """The flags that were given override ``cfg.eval`` (None, or a flag the command lacks, leaves a
    field as the config has it); one value for ``--crop-size`` / ``--stride`` means a square."""
    values = {}
    for name in EVAL_FLAGS:
        value = getattr(args, name, None)
        if name in ("crop_size", "stride") and isinstance(value, list) and len(value) == 1:
            value = value[0]
        if value is not None:
            values[name] = value
    cfg.eval = config_from_dict({"eval": values}, base=cfg).eval
    validate_config(cfg)


def run_eval(args: argparse.Namespace) -> dict[str, Any]:
    """Load the model, apply the flags, then :func:`deeplabv3plus.evaluate.evaluate_run`; returns its payload."""
    # here, not at the top: --help must not import torch
    from .evaluate import evaluate_run

    device = _device(args.device)
    model, cfg = load_model(args, device)
    apply_eval_flags(cfg, args)
    return evaluate_run(
        model,
        cfg,
        checkpoint=args.checkpoint,
        weights=args.weights,
        split=args.split,
        output=args.output,
        device=device,
        amp=args.amp,
        progress=not args.no_progress,
    )


# --- predict -------------------------------------------------------------------------------------

PREDICT_DESCRIPTION = """Segment images with a trained checkpoint as eval scores it: label PNGs + overlays,
or a benchmark server's submission.

The config is the checkpoint's, then --config on top, then the flags; every eval.* setting applies
(eval.pad_to, output stride, scales, flip, sliding windows), through the function eval scores with.
--format picks the files (docs/evaluation.md): png (palette PNGs + overlays, the default),
cityscapes (label IDs in <output>/results/), voc (<output>/results/VOC2012/Segmentation/
comp6_test_cls/ and results.tar.gz) or ade20k (<output>/results/ and results.zip); with a
submission format overlays go to <output>/overlays/ (--no-overlay: none). The default --output is
predictions/<checkpoint stem or weights name> in the current folder.

Examples::

    deeplabv3plus predict --checkpoint runs/voc/best.pth photo.jpg --output out/
    deeplabv3plus predict --checkpoint runs/voc/best.pth "images/*.jpg" imgs2/ --output out/ \\
        --scales 0.5 0.75 1.0 1.25 1.5 1.75 --flip --output-stride 8
    deeplabv3plus predict --checkpoint runs/cityscapes/best.pth "leftImg8bit/test/*/*.png" \\
        --format cityscapes --no-overlay
"""


def add_predict_arguments(p: argparse.ArgumentParser) -> None:
    _add_model_source(p)
    p.add_argument(
        "--config",
        help="YAML config whose values go on top of the checkpoint's (required for a bare state_dict)",
    )
    p.add_argument("inputs", nargs="+", help="image files, folders or glob patterns")
    p.add_argument("--output", help="output folder (default: predictions/<checkpoint stem or weights name>)")
    p.add_argument(
        "--format",
        choices=list(PREDICT_FORMATS),
        default="png",
        help="png: palette PNGs + overlays; cityscapes, voc, ade20k: the benchmark server's submission",
    )
    p.add_argument(
        "--overlay",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="write colour overlays (--no-overlay: none; with a submission format they go to <output>/overlays/)",
    )
    p.add_argument("--device", default="auto", help="auto (cuda if available), cpu, cuda, cuda:1")
    p.add_argument(
        "--batch-size", type=int, help="images per forward pass, same-size images (eval.batch_size)"
    )
    p.add_argument(
        "--scales", type=float, nargs="+", help="inference scales (paper MS: 0.5..1.75; eval.scales)"
    )
    p.add_argument(
        "--flip", action=argparse.BooleanOptionalAction, help="also average the left-right flipped image"
    )
    p.add_argument("--output-stride", type=int, choices=(8, 16, 32), help="evaluate at this output stride")
    _add_window_arguments(p)
    p.add_argument(
        "--amp", choices=("off", "bf16", "fp16"), default="off", help="autocast dtype (default off)"
    )
    _add_precision_argument(p)
    p.add_argument("--alpha", type=float, default=0.5, help="weight of the class colours in the overlay")
    p.add_argument("--overlay-ext", default=".jpg", choices=(".jpg", ".png"))
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def default_predict_output(args: argparse.Namespace) -> Path:
    """``predictions/<checkpoint stem or weights name>``, relative to the current folder."""
    return Path("predictions") / (args.weights or Path(args.checkpoint).stem)


def run_predict(args: argparse.Namespace) -> list:
    """Load the model, apply the flags as eval does, then :func:`deeplabv3plus.predict.predict_run`."""
    # here, not at the top: --help must not import torch
    from .inference import AMP_DTYPES
    from .predict import PredictSettings, collect_inputs, predict_run

    device = _device(args.device)
    if args.scales is not None and any(s <= 0 for s in args.scales):
        raise CommandError(f"--scales: expected positive factors, got {args.scales}")
    if not 0 <= args.alpha <= 1:
        raise CommandError(f"--alpha: expected a weight in [0, 1], got {args.alpha}")
    paths = collect_inputs([os.path.expanduser(str(p)) for p in args.inputs])
    model, cfg = load_model(args, device)
    apply_eval_flags(cfg, args)  # the flags win over the checkpoint's / zoo entry's eval settings
    out = Path(os.path.expanduser(args.output)) if args.output else default_predict_output(args)
    settings = PredictSettings(fmt=args.format, device=device, amp_dtype=AMP_DTYPES[args.amp],
                               overlay=args.overlay, alpha=args.alpha, overlay_ext=args.overlay_ext,
                               progress=not args.no_progress, report=True)  # fmt: skip
    return predict_run(model, cfg, paths, out, settings, source=args.checkpoint or args.weights)


# --- export --------------------------------------------------------------------------------------

EXPORT_DESCRIPTION = """Export a trained checkpoint to ONNX (dynamic batch, height, width) and check it with onnxruntime.

Needs the extra: pip install "deeplabv3plus[onnx]". Example::

    deeplabv3plus export --checkpoint runs/voc/best.pth --output deeplab.onnx --output-stride 16

The dynamo exporter stores the weights next to the graph in <output>.data; keep both files together.

--int8 quantises (post-training, static, calibrated on training images) with ONNX Runtime into an
int8 .onnx, or with --int8-backend pt2e (the extra "pt2e": torchao) into a torch.export program
(.pt2) that deeplabv3plus.export.load_int8_program compiles for x86 CPUs (docs/deployment.md).
"""


def add_export_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", required=True, help="training checkpoint (.pth) or a bare state_dict")
    p.add_argument(
        "--config",
        help="YAML config whose values go on top of the checkpoint's (required for a bare state_dict)",
    )
    p.add_argument("--output", required=True, help="the .onnx file to write (.pt2 with --int8-backend pt2e)")
    p.add_argument("--height", type=int, default=513, help="height of the example input used for tracing")
    p.add_argument("--width", type=int, default=513, help="width of the example input used for tracing")
    p.add_argument("--output-stride", type=int, choices=(8, 16, 32), help="export at this output stride")
    p.add_argument("--exporter", default="auto", choices=("auto", "dynamo", "torchscript"))
    p.add_argument("--opset", type=int, help="ONNX opset version (default: the exporter's)")
    p.add_argument("--no-check", action="store_true", help="skip the onnxruntime parity check")
    q = p.add_argument_group("int8 (post-training static quantisation)")
    q.add_argument(
        "--int8", action="store_true",
        help="write an int8 model (per-channel weights) calibrated on training images instead of fp32",
    )  # fmt: skip
    q.add_argument(
        "--int8-backend", choices=("onnxruntime", "pt2e"), default=None,
        help="onnxruntime (default): an int8 QDQ .onnx; pt2e: a PT2E x86 torch.export program (.pt2)",
    )  # fmt: skip
    q.add_argument(
        "--calibration-images", type=int, default=200,
        help="training images (data.train_split of the checkpoint's config) to calibrate on (default 200)",
    )  # fmt: skip
    q.add_argument("--int8-exclude", nargs="+", default=[], metavar="NODE", help="ONNX nodes to keep in fp32")


def run_export(args: argparse.Namespace) -> str:
    """The flags as ``ExportSettings``, then :func:`deeplabv3plus.export.export_checkpoint`."""
    # here, not at the top: --help must not import torch
    from .export import ExportSettings, export_checkpoint

    settings = ExportSettings(
        height=args.height,
        width=args.width,
        output_stride=args.output_stride,
        exporter=args.exporter,
        opset=args.opset,
        check=not args.no_check,
        int8=args.int8,
        int8_backend=args.int8_backend,
        calibration_images=args.calibration_images,
        int8_exclude=tuple(args.int8_exclude),
    )
    return export_checkpoint(args.checkpoint, args.output, settings, config=args.config)


# --- convert -------------------------------------------------------------------------------------

CONVERT_DESCRIPTION = """Convert a reference TensorFlow DeepLab checkpoint into a PyTorch checkpoint (no TensorFlow needed).

Examples::

    # the model zoo's VOC model (ImageNet -> COCO -> VOC train_aug): 82.20% VOC val mIoU at OS 16
    deeplabv3plus convert --checkpoint deeplabv3_pascal_train_aug/model.ckpt \\
        --kind xception65_deeplab --output weights/xception65_coco_voc_trainaug.pth
    # ImageNet backbones, for model.pretrained_backbone=PATH
    deeplabv3plus convert --checkpoint xception/model.ckpt \\
        --kind xception65_imagenet --output weights/xception65_imagenet_tf.pth

xception65_deeplab writes {"model": state_dict, "config": ..., "source": ...} that the eval command
loads directly; the backbone kinds write a bare backbone state_dict. Every tensor is checked by
loading it (strict) into our freshly built model before the file is written. See docs/pretrained.md.
"""


def add_convert_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", required=True, help="TF checkpoint prefix, e.g. DIR/model.ckpt")
    p.add_argument("--kind", required=True, choices=list(TF_NAME_MAPS))
    p.add_argument("--output", required=True, type=Path, help="the .pth file to write")
    p.add_argument(
        "--num-classes",
        type=int,
        default=None,
        help="xception65_deeplab: check the logits (default: as stored)",
    )
    p.add_argument("--verify-crc", action="store_true", help="check every tensor's crc32c (slow)")


def run_convert(args: argparse.Namespace) -> Path:
    """:func:`deeplabv3plus.convert.convert_tf_checkpoint` (converted, checked, then written)."""
    # here, not at the top: --help must not import torch
    from .convert import convert_tf_checkpoint

    return convert_tf_checkpoint(
        args.checkpoint, args.kind, args.output, num_classes=args.num_classes, verify_crc=args.verify_crc
    )


# --- macs ----------------------------------------------------------------------------------------

MACS_DESCRIPTION = """Print our Multiply-Adds next to the paper's for every row of Tables 3 (ResNet-101) and 5 (Xception-65).

Counted on the meta device (no memory, no arithmetic) with torch.utils.flop_counter; MACs =
FLOPs / 2. Multi-scale rows sum the single-scale cost over the scales {0.5, ..., 1.75} at the
reference's scaled sizes (513 -> 257, 385, 513, 641, 769, 897); flip doubles it. docs/macs.md
explains the differences.

Examples::

    deeplabv3plus macs
    deeplabv3plus macs --strided-shortcut subsample --json macs.json
"""

SHORTCUT_MEANING = {
    "projection": "1x1 conv + BN shortcut in the three ResNet units that stride without changing channels "
    "(reproduces the paper's Table 3 counts)",
    "subsample": "plain subsampling shortcut in the three ResNet units that stride without changing channels "
    "(the reference code and its checkpoints; our default model)",
}


def add_macs_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--strided-shortcut",
        choices=("projection", "subsample"),
        default="projection",
        help="ResNet-101 beta shortcut in its strided units (default: projection)",
    )
    p.add_argument("--size", type=int, default=513, help="input height and width (the paper: 513)")
    p.add_argument("--json", help="also write the rows and both counts to this JSON file")


def run_macs(args: argparse.Namespace) -> list[dict]:
    """Count, print and optionally save the table; returns the rows of :func:`deeplabv3plus.macs.macs_table`."""
    # here, not at the top: --help must not import torch
    from .macs import PAPER_ROWS, format_macs_table, macs_table, write_macs_json

    if args.size < 33:
        raise CommandError(f"--size: expected at least 33 pixels, got {args.size}")
    print(
        f"ResNet-101 beta strided shortcut: {args.strided_shortcut} = {SHORTCUT_MEANING[args.strided_shortcut]}"
    )
    print(f"input {args.size}x{args.size}; Multiply-Adds counted on the meta device (FLOPs / 2)\n")
    results = macs_table(PAPER_ROWS, strided_shortcut=args.strided_shortcut, size=args.size)
    print(format_macs_table(results))
    if args.json:
        write_macs_json(results, args.json, size=args.size, strided_shortcut=args.strided_shortcut)
        print(f"\nwrote {args.json}")
    return results


# --- benchmark -----------------------------------------------------------------------------------

BENCHMARK_DESCRIPTION = """Time our DeepLabv3+ next to smp's DeepLabV3Plus and torchvision's deeplabv3 (see docs/benchmarks.md).

Examples::

    # CPU, inference only, 2 threads, ours vs the peers at 512x512 (smp needs sizes divisible by 16),
    # with the plain eager model and the ONNX export under onnxruntime alongside
    deeplabv3plus benchmark --device cpu --threads 2 --size 512 --batch 1 --modes infer --repeats 10 \\
        --eager --onnx

    # CUDA, the paper's training crop and batch, bf16 + channels_last, with the data pipeline
    deeplabv3plus benchmark --device cuda --size 513 --batch 16 --amp bf16 --channels-last \\
        --cudnn-benchmark --data --json bench.json

    # a config file's model, no peers
    deeplabv3plus benchmark --config configs/voc_resnet101_os16.yaml --peers none
"""


def add_benchmark_arguments(p: argparse.ArgumentParser) -> None:
    m = p.add_argument_group("model (ignored fields keep the config's / the defaults)")
    m.add_argument("--config", help="YAML config: its model (and data, for --data) section")
    m.add_argument("--backbone", help=", ".join(BACKBONES))
    m.add_argument("--resnet-variant", choices=("standard", "beta"))
    m.add_argument("--output-stride", type=int, choices=(8, 16, 32))
    m.add_argument(
        "--decoder", action=argparse.BooleanOptionalAction, default=None, help="DeepLabv3+ decoder"
    )
    m.add_argument(
        "--separable", action=argparse.BooleanOptionalAction, default=None, help="SC in ASPP/decoder"
    )
    m.add_argument("--num-classes", type=int)
    m.add_argument(
        "--peers", nargs="+", default=list(BENCHMARK_PEERS), choices=[*BENCHMARK_PEERS, "none"],
        help="peer implementations to run alongside (each with ours at its closest configuration)",
    )  # fmt: skip
    r = p.add_argument_group("run")
    r.add_argument("--device", default="auto", help="auto (cuda if available), cpu, cuda, cuda:1")
    r.add_argument("--size", type=int, default=513, help="input height and width in pixels")
    r.add_argument("--height", type=int, help="input height (overrides --size)")
    r.add_argument("--width", type=int, help="input width (overrides --size)")
    r.add_argument("--batch", type=int, default=1)
    r.add_argument("--modes", nargs="+", default=["infer", "train"], choices=("infer", "train"))
    r.add_argument("--amp", default="off", choices=("off", "bf16", "fp16"), help="torch.autocast dtype")
    r.add_argument("--channels-last", action="store_true", help="model and input in NHWC")
    r.add_argument(
        "--both-memory-formats", action="store_true",
        help="also run every ours row compared with a peer in channels_last ('ours-nhwc', "
        "'ours-v3-os8-nhwc', ...) in the same interleaved run (ours' default layout for training)",
    )  # fmt: skip
    r.add_argument(
        "--eager", action="store_true",
        help="also run 'ours-eager': inference of the plain model, not prepare_for_inference's copy",
    )  # fmt: skip
    r.add_argument(
        "--onnx", action="store_true",
        help="also run 'ours-onnx': the ONNX export of the prepared model under onnxruntime (CPU, inference)",
    )  # fmt: skip
    r.add_argument(
        "--precisions", nargs="+", default=[], choices=("bf16", "int8", "int8-pt2e"),
        help="also run ours' inference at these precisions ('ours-bf16': prepared bf16 weights; "
        "'ours-autocast-bf16': the plain model under autocast; 'ours-int8': ONNX Runtime static int8; "
        "'ours-int8-pt2e': PT2E x86 static int8 compiled by Inductor), timed against 'ours' (prepared fp32)",
    )  # fmt: skip
    r.add_argument(
        "--peak-probe", action="store_true",
        help="also time a 1x1-conv probe through the toolchain of 'ours' and of each --precisions row, "
        "and report each row's GMAC/s as a share of its probe's (the practical peak)",
    )  # fmt: skip
    r.add_argument("--compile", action="store_true", help="torch.compile every model")
    r.add_argument(
        "--freezing", action="store_true",
        help="with --compile: inductor freezing for inference (weights as constants, prepacked, fused)",
    )  # fmt: skip
    r.add_argument("--cudnn-benchmark", action="store_true", help="torch.backends.cudnn.benchmark = True")
    r.add_argument("--warmup", type=int, default=2, help="untimed steps per model and mode")
    r.add_argument("--repeats", type=int, default=10, help="timed steps per model and mode (median reported)")
    r.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's)")
    r.add_argument("--no-memory", action="store_true", help="skip the extra untimed step measuring memory")
    r.add_argument("--peak-tflops", type=float, help="device peak TFLOP/s for the %%peak column")
    d = p.add_argument_group("data pipeline")
    d.add_argument("--data", action="store_true", help="also time decode + augmentation of one worker")
    d.add_argument("--data-images", type=int, default=50, help="images to load for --data")
    d.add_argument(
        "--loader", action="store_true",
        help="also time the training DataLoader (the config's data.workers workers, batch --batch)",
    )  # fmt: skip
    d.add_argument("--loader-batches", type=int, default=10, help="timed batches for --loader")
    d.add_argument("--data-root", help="data.root for --data / --loader (default: the config's)")
    p.add_argument("--json", help="write the full report (all repeats, options, environment) here")
    p.add_argument("--markdown", help="write the report as a Markdown table (as in docs/benchmarks.md) here")


def benchmark_model_config(args: argparse.Namespace, cfg: Config):
    """The config's model with the command-line fields applied."""
    overrides = {
        "backbone": args.backbone,
        "resnet_variant": args.resnet_variant,
        "output_stride": args.output_stride,
        "decoder": args.decoder,
        "separable": args.separable,
        "num_classes": args.num_classes,
    }
    mcfg = dataclasses.replace(cfg.model, **{k: v for k, v in overrides.items() if v is not None})
    validate_config(
        dataclasses.replace(cfg, model=mcfg, data=dataclasses.replace(cfg.data, num_classes=mcfg.num_classes))
    )
    return mcfg


def _benchmark_options(args: argparse.Namespace, device: str, num_classes: int):
    """The run flags as a :class:`deeplabv3plus.benchmark.BenchOptions` (``--height`` / ``--width``
    over ``--size``); ``device`` is ``--device`` resolved, ``num_classes`` the model's."""
    # here, not at the top: --help must not import torch
    from .benchmark import BenchOptions

    return BenchOptions(
        device=device,
        batch=args.batch,
        height=args.height or args.size,
        width=args.width or args.size,
        num_classes=num_classes,
        amp=args.amp,
        channels_last=args.channels_last,
        compile=args.compile,
        freezing=args.freezing,
        cudnn_benchmark=args.cudnn_benchmark,
        warmup=args.warmup,
        repeats=args.repeats,
        threads=args.threads,
        modes=tuple(args.modes),
        memory=not args.no_memory,
        peak_tflops=args.peak_tflops,
    )


def run_benchmark(args: argparse.Namespace) -> dict:
    """Check the flags, then :func:`deeplabv3plus.benchmark.benchmark_report`; print the tables and
    write the files asked for (:func:`~deeplabv3plus.benchmark.write_report`); returns the report."""
    # here, not at the top: --help must not import torch
    from . import benchmark as bench

    cfg = load_config(args.config)
    device = _device(args.device)
    for name in ("size", "batch", "repeats"):
        if getattr(args, name) < 1:
            raise CommandError(f"--{name}: expected a positive number, got {getattr(args, name)}")
    mcfg = benchmark_model_config(args, cfg)
    lineup = bench.Lineup(
        peers=() if "none" in args.peers else tuple(args.peers), both_memory_formats=args.both_memory_formats,
        eager=args.eager, onnx=args.onnx, precisions=tuple(args.precisions), probe=args.peak_probe,
    )  # fmt: skip
    report = bench.benchmark_report(
        mcfg, _benchmark_options(args, device, mcfg.num_classes), lineup,
        dataclasses.replace(cfg.data, root=args.data_root) if args.data_root else cfg.data,
        data_images=args.data_images if args.data else None,
        loader_batches=args.loader_batches if args.loader else None,
        command=shlex.join([sys.executable, *sys.argv]),
    )  # fmt: skip
    print(bench.format_results(report))
    for path in bench.write_report(report, args.json, args.markdown):
        print(f"wrote {path}")
    return report


# --- prepare-voc ---------------------------------------------------------------------------------

PREPARE_VOC_DESCRIPTION = """Build PASCAL VOC 2012 train_aug (10,582 images) from the VOC 2012 and SBD releases.

Examples::

    deeplabv3plus prepare-voc --voc VOCtrainval_11-May-2012.tar --sbd benchmark.tgz --out data
    deeplabv3plus prepare-voc --out data --download

then train with data.layout=voc data.root=data data.train_split=train_aug.
"""


def add_prepare_voc_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--voc", help="VOCtrainval_11-May-2012.tar or an extracted VOCdevkit/VOC2012 folder")
    p.add_argument("--sbd", help="benchmark.tgz or an extracted benchmark_RELEASE folder")
    p.add_argument("--out", default="data", help="where archives are extracted/downloaded (default: data)")
    p.add_argument("--download", action="store_true", help="download missing archives (official URLs)")
    p.add_argument(
        "--allow-count-mismatch",
        action="store_true",
        help="warn instead of failing when the split sizes are not 10,582 / 1,449",
    )


def run_prepare_voc(args: argparse.Namespace) -> Path:
    # here, not at the top: --help must not import torch
    from .data.prepare import prepare_voc

    voc_dir = prepare_voc(
        args.voc,
        args.sbd,
        args.out,
        download_missing=args.download,
        allow_count_mismatch=args.allow_count_mismatch,
    )
    labels = voc_dir / "SegmentationClassAug"
    lst = voc_dir / "ImageSets" / "Segmentation" / "train_aug.txt"
    print(f"wrote {lst} and the label PNGs in {labels}; train with data.layout=voc data.root={args.out}")
    return voc_dir


# --- make-synthetic ------------------------------------------------------------------------------

MAKE_SYNTHETIC_DESCRIPTION = """Write the synthetic segmentation dataset (VOC 2012 layout) used by the quickstart and the tests.

Example::

    deeplabv3plus make-synthetic data/synthetic --num-train 200 --num-val 50
"""


def add_make_synthetic_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "root", nargs="?", default="data/synthetic", help="output folder (default: data/synthetic)"
    )
    p.add_argument("--num-train", type=int, default=SYNTHETIC.num_train)
    p.add_argument("--num-val", type=int, default=SYNTHETIC.num_val)
    p.add_argument("--size", type=int, default=SYNTHETIC.size, help="nominal image side in pixels")
    p.add_argument("--num-classes", type=int, default=SYNTHETIC.num_classes, help="including background")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--kind",
        choices=list(SYNTHETIC.kinds),
        default=SYNTHETIC.kind,
        help="texture: classes differ by shape and texture only; colour: one hue per class (default: %(default)s)",
    )


def run_make_synthetic(args: argparse.Namespace) -> Path:
    # here, not at the top: --help must not import torch
    from .data.synthetic import is_synthetic_root, make_synthetic_voc

    if args.size < 16:
        raise CommandError(f"--size: expected at least 16 pixels, got {args.size}")
    existed = is_synthetic_root(Path(args.root))
    voc = make_synthetic_voc(
        args.root,
        num_train=args.num_train,
        num_val=args.num_val,
        size=args.size,
        seed=args.seed,
        num_classes=args.num_classes,
        kind=args.kind,
    )
    if existed:
        print(f"a '{args.kind}' synthetic dataset already exists in {args.root}; left it as it is ({voc})")
    else:
        print(
            f"wrote {args.num_train} train / {args.num_val} val images ({args.num_classes} classes, "
            f"kind '{args.kind}') to {voc}"
        )
    return voc


# --- paper-ablation ------------------------------------------------------------------------------

PAPER_ABLATION_DESCRIPTION = """Train the quickstart model with and without the decoder at equal budget and print mIoU,
trimap curve, Multiply-Adds and wall time side by side, then the eval-time ablation (OS 16 vs 8,
multi-scale, flip) of the decoder model: paper Table 3 and Fig. 5a at a CPU's scale (docs/paper_ablation.md).

Examples::

    deeplabv3plus paper-ablation                       # the shipped quickstart config, runs/paper_ablation/
    deeplabv3plus paper-ablation --controls            # also the two broken recipes
    deeplabv3plus paper-ablation train.max_iters=100   # dotted config overrides

The tables are printed and written to <output>/ablation.md and ablation.json; each training run
keeps its own folder <output>/<variant>/.
"""


def add_paper_ablation_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--config",
        default="quickstart",
        help="recipe: a YAML file or a shipped config's name (default: %(default)s)",
    )
    p.add_argument("--output", default="runs/paper_ablation", help="output folder (default: %(default)s)")
    p.add_argument(
        "--controls",
        action="store_true",
        help="also train the broken recipes (shuffled labels, frozen backbone)",
    )
    p.add_argument("--no-eval-rows", action="store_true", help="skip the eval-time ablation")
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace the training runs of an earlier ablation in --output",
    )
    p.add_argument("overrides", nargs="*", help="dotted config overrides, e.g. train.max_iters=100")


def run_paper_ablation(args: argparse.Namespace) -> dict[str, Any]:
    """Train both variants, evaluate, print the tables and write them; returns :func:`run_ablation`'s results."""
    # here, not at the top: --help must not import torch
    from .ablation import format_report, run_ablation

    cfg = load_config(args.config, args.overrides)
    out_dir = Path(args.output).expanduser().resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    results = run_ablation(
        cfg,
        out_dir,
        controls=args.controls,
        eval_rows=() if args.no_eval_rows else None,
        overwrite=args.overwrite,
    )
    report = format_report(results)
    print(report)
    (out_dir / "ablation.md").write_text(report + "\n")
    (out_dir / "ablation.json").write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {out_dir / 'ablation.md'} and {out_dir / 'ablation.json'}")
    return results


# --- configs -------------------------------------------------------------------------------------

CONFIGS_DESCRIPTION = """List the configs that ship with the package (name and what it is), or print one.

Every --config takes a YAML file or one of these names: a path that exists wins, else a bare name
(quickstart, quickstart.yaml) or configs/<name>.yaml is looked up among the shipped configs, so
the commands work the same from a checkout and from any folder after pip install.

Examples::

    deeplabv3plus configs                       # the list
    deeplabv3plus configs quickstart            # print one (e.g. > my.yaml, then edit it)
    deeplabv3plus train --config quickstart     # train with one
"""


def add_configs_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("name", nargs="?", help="a shipped config to print (default: list them all)")


def config_summary(path: Path) -> str:
    """What a config is: its first comment line, without the ``#``."""
    for line in path.read_text().splitlines():
        if line.startswith("#"):
            return line.lstrip("#").strip()
        if line.strip():
            break
    return ""


def run_configs(args: argparse.Namespace) -> dict[str, Path]:
    """Print the list of :func:`deeplabv3plus.config.shipped_configs`, or the text of one; returns them."""
    shipped = shipped_configs()
    if not shipped:
        raise CommandError("no shipped configs found next to the package (reinstall deeplabv3plus)")
    if args.name is None:
        width = max(len(name) for name in shipped)
        for name, path in shipped.items():
            print(f"{name:<{width}}  {config_summary(path)}")
        folder = next(iter(shipped.values())).parent
        print(
            f"\n(in {folder}) train with one: deeplabv3plus train --config NAME; print one: deeplabv3plus configs NAME"
        )
        return shipped
    name = args.name[: -len(".yaml")] if args.name.endswith(".yaml") else args.name
    if name not in shipped:
        raise CommandError(f"no shipped config named '{args.name}'; expected one of {', '.join(shipped)}")
    sys.stdout.write(shipped[name].read_text())
    return shipped


# --- check-data ----------------------------------------------------------------------------------

CHECK_DATA_DESCRIPTION = """Read every image and label of the config's train and val splits (in parallel) and report.

Prints a Markdown summary (splits, class shares, problems with examples, suggested data.* keys and
class weights) and writes check_data.json, check_data.md and, with the plot extra (matplotlib),
check_data_classes.png into --output. Exit code 0 when training would run, 2 when a fatal problem
was found (unreadable files, colour masks read as indices, values out of range, size mismatches,
undecodable labels, an image in two splits). docs/own_data.md.

Example::

    deeplabv3plus check-data --config configs/own_data_rgb_masks.yaml data.root=mydata --output checks/
"""


def add_check_data_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", required=True, help="YAML config whose data.* section describes the dataset")
    p.add_argument("--output", default="check_data", help="folder for the reports (default: ./check_data)")
    p.add_argument("--workers", type=int, help="reader threads (default: the CPU count, at most 8)")
    p.add_argument("overrides", nargs="*", help="dotted overrides, e.g. data.root=mydata")


def run_check_data(args: argparse.Namespace) -> Any:
    """:func:`deeplabv3plus.data.check.check_data_run` (printed and written); fatal problems exit 2."""
    # here, not at the top: --help must not import torch
    from .data.check import check_data_run, fatal_summary

    if args.workers is not None and args.workers < 1:
        raise CommandError(f"--workers: expected a positive number, got {args.workers}")
    cfg = load_config(args.config, args.overrides)
    out = Path(args.output).expanduser()
    report = check_data_run(cfg.data, out, workers=args.workers)
    if not report.ok:
        raise CommandError(
            f"{args.config}: the data has fatal problems: {fatal_summary(report)}; see {out / 'check_data.md'}"
        )
    return report


# --- save-pretrained -----------------------------------------------------------------------------

SAVE_PRETRAINED_DESCRIPTION = """Save a trained model as portable weights: model.safetensors, config.json and a README.md model card.

The card takes its figures from the run: --eval-json (a result of `deeplabv3plus eval`, with its
per-class table), else the best periodic validation the run recorded, else it says "not evaluated".
Needs the extra: pip install "deeplabv3plus[portable]" (and [hub] for --push-to-hub). Examples::

    deeplabv3plus eval --checkpoint runs/voc/best.pth          # writes runs/voc/best_eval_os16.json
    deeplabv3plus save-pretrained --checkpoint runs/voc/best.pth --output exported/voc \
        --eval-json runs/voc/best_eval_os16.json
    python -c "from deeplabv3plus import build_model; build_model(weights='exported/voc')"
"""


def add_save_pretrained_arguments(p: argparse.ArgumentParser) -> None:
    _add_model_source(p)
    p.add_argument("--output", required=True, help="the folder to write (created)")
    p.add_argument(
        "--eval-json", help="an eval result JSON whose protocol and per-class table go into the card"
    )
    p.add_argument(
        "--config",
        help="YAML config whose values go on top of the checkpoint's (required for a bare state_dict)",
    )
    p.add_argument(
        "--push-to-hub", metavar="OWNER/NAME", help="also upload the folder to this Hub repository"
    )
    p.add_argument("--private", action="store_true", help="with --push-to-hub: create the repository private")


def run_save_pretrained(args: argparse.Namespace) -> list:
    # here, not at the top: --help must not import torch
    from .pretrained import push_to_hub, save_pretrained_run

    output = Path(args.output).expanduser()
    if output.exists() and not output.is_dir():
        raise CommandError(f"--output: '{output}' is a file, expected a folder")
    if args.push_to_hub is not None and (
        args.push_to_hub.count("/") != 1 or not all(args.push_to_hub.split("/"))
    ):
        raise CommandError(f"--push-to-hub: expected OWNER/NAME, got {args.push_to_hub!r}")
    paths = save_pretrained_run(
        output, checkpoint=args.checkpoint, weights=args.weights, eval_json=args.eval_json, config=args.config
    )
    print(f"wrote {', '.join(str(p) for p in paths)}")
    if args.push_to_hub:
        url = push_to_hub(output, args.push_to_hub, private=args.private)
        print(f"pushed {output} to {url}")
    return paths


# --- dispatch ------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Command:
    """One subcommand: its help line, description, argument builder and run function."""

    help: str
    description: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], Any]
    intermixed: bool = False
    """Parse with ``parse_intermixed_args`` (dotted overrides between the options)."""


COMMANDS: dict[str, Command] = {
    "train": Command("train a model from a YAML config", TRAIN_DESCRIPTION, add_train_arguments, run_train),
    "eval": Command(
        "mIoU (and trimap) of a checkpoint on a split", EVAL_DESCRIPTION, add_eval_arguments, run_eval, True
    ),
    "predict": Command(
        "segment image files (label PNGs + overlays)", PREDICT_DESCRIPTION, add_predict_arguments, run_predict
    ),
    "export": Command("export a checkpoint to ONNX", EXPORT_DESCRIPTION, add_export_arguments, run_export),
    "convert": Command(
        "convert a reference TensorFlow checkpoint", CONVERT_DESCRIPTION, add_convert_arguments, run_convert
    ),
    "macs": Command(
        "Multiply-Adds next to the paper's tables", MACS_DESCRIPTION, add_macs_arguments, run_macs
    ),
    "benchmark": Command(
        "speed next to smp and torchvision", BENCHMARK_DESCRIPTION, add_benchmark_arguments, run_benchmark
    ),
    "save-pretrained": Command(
        "save portable weights (safetensors + config.json + model card)",
        SAVE_PRETRAINED_DESCRIPTION,
        add_save_pretrained_arguments,
        run_save_pretrained,
    ),
    "prepare-voc": Command(
        "build VOC 2012 train_aug from the VOC and SBD releases",
        PREPARE_VOC_DESCRIPTION,
        add_prepare_voc_arguments,
        run_prepare_voc,
    ),
    "make-synthetic": Command(
        "write the synthetic VOC-layout dataset",
        MAKE_SYNTHETIC_DESCRIPTION,
        add_make_synthetic_arguments,
        run_make_synthetic,
    ),
    "paper-ablation": Command(
        "the decoder and eval-time ablation on a CPU (paper Table 3, Fig. 5a)",
        PAPER_ABLATION_DESCRIPTION,
        add_paper_ablation_arguments,
        run_paper_ablation,
    ),
    "configs": Command(
        "list the shipped configs, or print one", CONFIGS_DESCRIPTION, add_configs_arguments, run_configs
    ),
    "check-data": Command(
        "read every image and label of a config's splits and report problems",
        CHECK_DATA_DESCRIPTION,
        add_check_data_arguments,
        run_check_data,
        True,
    ),
}


def build_parser(command: str, prog: Optional[str] = None) -> argparse.ArgumentParser:
    """The argument parser of one subcommand (``prog`` defaults to ``deeplabv3plus <command>``)."""
    spec = COMMANDS[command]
    parser = _Parser(
        prog=prog or f"deeplabv3plus {command}",
        description=spec.description,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    spec.add_arguments(parser)
    return parser


def parse_command_args(command: str, argv: Optional[Sequence[str]] = None, prog: Optional[str] = None):
    parser = build_parser(command, prog)
    argv = list(argv) if argv is not None else None
    return parser.parse_intermixed_args(argv) if COMMANDS[command].intermixed else parser.parse_args(argv)


def _report(prog: str, e: BaseException) -> None:
    # here, not at the top: --help must not import torch
    from .runtime import rank

    message = error_message(e)
    this_rank = rank()
    line = f"{prog}: error: {f'rank {this_rank}: ' if this_rank else ''}{message}"
    print(line, file=sys.stderr)
    _write_torchelastic_error_file(line)


def _write_torchelastic_error_file(line: str) -> None:
    """Under torchrun, hand the message to its failure summary (its "Root Cause" then shows this
    line instead of "To enable traceback see ..."); the format of torch's ``ErrorHandler``."""
    path = os.environ.get("TORCHELASTIC_ERROR_FILE")
    if not path:
        return
    info = {"py_callstack": line, "timestamp": str(int(time.time()))}
    try:
        with open(path, "w") as f:
            json.dump({"message": {"message": line, "extraInfo": info}}, f)
    except OSError:
        pass


def run_command(command: str, argv: Optional[Sequence[str]] = None, prog: Optional[str] = None) -> int:
    """Parse ``argv`` for ``command``, run it and return the exit code.

    0 on success; 2 with one line on stderr for a user error (argparse's usage errors included);
    128 + signal number for a training run stopped by SIGTERM/SIGINT. Bugs raise.
    """
    prog = prog or f"deeplabv3plus {command}"
    args = parse_command_args(command, argv, prog)
    try:
        with warnings.catch_warnings():
            # torch.load of a plain pickle warns about its protocol before refusing it.
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            COMMANDS[command].run(args)
    except Exception as e:
        return _exit_code(prog, e)
    return 0


def _exit_code(prog: str, e: Exception) -> int:
    """The exit code of a command that raised ``e``, its one line printed; a bug is raised again."""
    # here, not at the top: --help must not import torch
    from .runtime import PeerFailure, TrainingInterrupted, rank

    if isinstance(e, TrainingInterrupted):
        if rank() == 0:
            print(f"{prog}: {e}", file=sys.stderr)
        return 128 + e.signum
    if isinstance(e, PeerFailure):
        # Another rank reports the error; exit a moment after it, so that torchrun's summary names
        # that rank (and its message) as the first failure, not this quiet one.
        time.sleep(3)
        return 2
    if not is_user_error(e):
        raise e
    _report(prog, e)
    return 2


def _main_help() -> str:
    width = max(len(name) for name in COMMANDS)
    lines = [
        "usage: deeplabv3plus <command> [options]   (deeplabv3plus <command> --help for its options)",
        "",
        "DeepLabv3+ semantic segmentation (Chen et al., ECCV 2018). Commands:",
        "",
    ]
    lines += [f"  {name:<{width}}  {spec.help}" for name, spec in COMMANDS.items()]
    lines += ["", "Also: python -m deeplabv3plus <command>, python scripts/<command>.py"]
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``deeplabv3plus <command> [options]``: the installed console script; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_main_help(), file=sys.stdout if argv else sys.stderr)
        return 0 if argv else 2
    if argv[0] == "--version":
        print(f"deeplabv3plus {__version__}")
        return 0
    if argv[0] not in COMMANDS:
        print(
            f"deeplabv3plus: error: unknown command '{argv[0]}'; expected one of {', '.join(COMMANDS)}",
            file=sys.stderr,
        )
        return 2
    return run_command(argv[0], argv[1:])


def run_script(command: str, prog: str) -> NoReturn:
    """What ``scripts/<name>.py`` do: run ``command`` with ``sys.argv`` and exit with its code."""
    sys.exit(run_command(command, sys.argv[1:], prog))
