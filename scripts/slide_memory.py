"""Peak memory and time of ``whole`` vs ``slide`` inference on one large frame (docs/benchmarks.md).

Each mode runs in a fresh process so the peaks do not mix: on CPU the peak resident set size
(``ru_maxrss``) and its growth over the process after the model was built and the input made;
on CUDA ``torch.cuda.max_memory_allocated``. The weights are random (memory and time do not
depend on them). Prints a Markdown table.

Example (the Cityscapes setting: a 1024x2048 frame, Xception-65 at output stride 8, 769 windows)::

    python scripts/slide_memory.py --size 1024 2048 --output-stride 8 --crop-size 769 769 --stride 513 513
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time


def measure(args: argparse.Namespace, mode: str) -> dict:
    """Run one mode in this process; returns its peak memory (MiB) and seconds."""
    import torch

    from deeplabv3plus import build_model
    from deeplabv3plus.inference import predict_probs

    torch.manual_seed(0)
    device = torch.device(args.device)
    model = build_model(args.backbone, num_classes=args.num_classes, separable=True).to(device).eval()
    image = torch.randn(1, 3, *args.size, device=device)
    kwargs = {"mode": mode, "crop_size": args.crop_size, "stride": args.stride} if mode == "slide" else {}
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    start = time.perf_counter()
    predict_probs(model, image, output_stride=args.output_stride, **kwargs)
    if device.type == "cuda":
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated()
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB
    return {"mode": mode, "peak_mib": peak / 2**20, "growth_mib": (peak - base) / 2**20,
            "seconds": time.perf_counter() - start}  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", type=int, nargs=2, default=[1024, 2048], metavar=("H", "W"))
    p.add_argument("--backbone", default="xception65")
    p.add_argument("--num-classes", type=int, default=19)
    p.add_argument("--output-stride", type=int, default=8, choices=(8, 16, 32))
    p.add_argument("--crop-size", type=int, nargs=2, default=[769, 769], metavar=("H", "W"))
    p.add_argument("--stride", type=int, nargs=2, default=[513, 513], metavar=("H", "W"))
    p.add_argument("--device", default="cpu")
    p.add_argument("--one", choices=("whole", "slide"), help=argparse.SUPPRESS)  # the child process
    args = p.parse_args(argv)
    if args.one:
        print(json.dumps(measure(args, args.one)))
        return
    rows = []
    for mode in ("whole", "slide"):
        child = [sys.executable, __file__, *(argv if argv is not None else sys.argv[1:]), "--one", mode]
        rows.append(json.loads(subprocess.run(child, check=True, capture_output=True, text=True).stdout))
    unit = "peak CUDA allocated" if args.device.startswith("cuda") else "peak RSS"
    print(f"{args.backbone}, OS {args.output_stride}, {args.size[0]}x{args.size[1]} frame, {args.device}")
    print(f"| mode | {unit} (MiB) | growth during inference (MiB) | seconds |\n|---|---|---|---|")
    for r, label in zip(
        rows, ("whole", f"slide {args.crop_size[0]}x{args.crop_size[1]}, stride {args.stride[0]}")
    ):
        print(f"| {label} | {r['peak_mib']:.0f} | {r['growth_mib']:.0f} | {r['seconds']:.1f} |")


if __name__ == "__main__":
    main()
