"""Time our DeepLabv3+ next to smp's DeepLabV3Plus and torchvision's deeplabv3 (see docs/benchmarks.md).

Examples::

    # CPU, inference only, 2 threads, ours vs the peers at 512x512 (smp needs sizes divisible by 16),
    # with the plain eager model and the ONNX export under onnxruntime alongside
    python scripts/benchmark.py --device cpu --threads 2 --size 512 --batch 1 --modes infer --repeats 10 \\
        --eager --onnx

    # CUDA, the paper's training crop and batch, bf16 + channels_last, with the data pipeline
    python scripts/benchmark.py --device cuda --size 513 --batch 16 --amp bf16 --channels-last \\
        --cudnn-benchmark --data --json bench.json

    # a config file's model, no peers
    python scripts/benchmark.py --config configs/voc_resnet101_os16.yaml --peers none
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shlex
import sys

import torch

from deeplabv3plus.benchmark import (
    PEERS,
    BenchOptions,
    benchmark_data,
    benchmark_loader,
    default_candidates,
    format_markdown,
    format_results,
    run_benchmark,
)
from deeplabv3plus.cli import run_main
from deeplabv3plus.config import Config, ModelConfig, load_config


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    m = p.add_argument_group("model (ignored fields keep the config's / the defaults)")
    m.add_argument("--config", help="YAML config: its model (and data, for --data) section")
    m.add_argument("--backbone", help="resnet50, resnet101, xception41, xception65, xception71")
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
        "--peers", nargs="+", default=list(PEERS), choices=(*PEERS, "none"),
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
        help="also run ours as 'ours-nhwc' (channels_last) in the same interleaved run",
    )  # fmt: skip
    r.add_argument(
        "--eager", action="store_true",
        help="also run 'ours-eager': inference of the plain model, not prepare_for_inference's copy",
    )  # fmt: skip
    r.add_argument(
        "--onnx", action="store_true",
        help="also run 'ours-onnx': the ONNX export of the prepared model under onnxruntime (CPU, inference)",
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
    return p.parse_args(argv)


def model_config(args: argparse.Namespace, cfg: Config) -> ModelConfig:
    """The config's model with the command-line fields applied."""
    overrides = {
        "backbone": args.backbone,
        "resnet_variant": args.resnet_variant,
        "output_stride": args.output_stride,
        "decoder": args.decoder,
        "separable": args.separable,
        "num_classes": args.num_classes,
    }
    return dataclasses.replace(cfg.model, **{k: v for k, v in overrides.items() if v is not None})


def main(argv=None) -> dict:
    args = parse_args(argv)
    cfg = load_config(args.config)
    device = args.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    mcfg = model_config(args, cfg)
    peers = () if "none" in args.peers else tuple(args.peers)
    height, width = args.height or args.size, args.width or args.size
    candidates, notes = default_candidates(
        mcfg,
        peers,
        args.both_memory_formats,
        eager=args.eager,
        onnx=(height, width) if args.onnx else None,
        threads=args.threads,
    )
    opts = BenchOptions(
        device=device,
        batch=args.batch,
        height=height,
        width=width,
        num_classes=mcfg.num_classes,
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
    report = run_benchmark(candidates, opts, notes)
    report["meta"]["command"] = shlex.join([sys.executable, *sys.argv]) if argv is None else shlex.join(argv)
    data_cfg = dataclasses.replace(cfg.data, root=args.data_root) if args.data_root else cfg.data
    if args.data:
        report["data"] = benchmark_data(data_cfg, num_images=args.data_images)
    if args.loader:
        report["loader"] = benchmark_loader(data_cfg, args.batch, num_batches=args.loader_batches)
    print(format_results(report))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)
        print(f"wrote {args.json}")
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(format_markdown(report) + "\n")
        print(f"wrote {args.markdown}")
    return report


if __name__ == "__main__":
    run_main(main, "benchmark.py")
