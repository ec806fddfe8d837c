"""Every GPU check of docs/benchmarks.md in one run: the CUDA tests, the benchmark tables, the targets.

Run it on a machine with one CUDA GPU (the package importable, smp installed for the peer rows)::

    PYTHONPATH=. python scripts/gpu_checks.py --out gpu_results

It writes, into ``--out``:

* ``tests.txt``: ``pytest -m gpu`` (tests/test_gpu.py and the CUDA tests of tests/models/test_fuse.py);
* ``<run>.json`` / ``<run>.md`` / ``<run>.txt`` for each benchmark run (see ``RUNS``): ours at the
  paper's 513x513 batch 16 in fp32, bf16 + channels_last and bf16 + channels_last + torch.compile;
  ours next to smp and torchvision at 512x512 batch 16 in fp32 and in bf16 + channels_last; the
  bf16 run also times the training DataLoader on VOC-sized JPEGs (synthetic, ~330-550 px a side,
  generated into ``<out>/voc_sized``) with the default workers;
* ``ours_513_precisions``: inference of the prepared fp32 model, the prepared bf16 model
  (``precision="bf16"``: weights rounded once) and the plain model under autocast bf16, interleaved;
* ``summary.md``: every table and the issue's targets (bf16 + channels_last training >= 1.5x the
  fp32 loop, inference >= 40% of the bf16 peak, data pipeline >= 2x the training images/s), each
  with its measured value.

``--only RUN ...`` runs a subset (e.g. when one command may run at most 10 minutes: first
``--only tests ours_513_fp32 ours_513_bf16_cl ours_513_bf16_cl_compile``, then the rest);
``summary.md`` is rebuilt from every JSON in ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCH = [sys.executable, str(ROOT / "scripts" / "benchmark.py"), "--device", "cuda", "--cudnn-benchmark"]
OURS_513 = ["--size", "513", "--batch", "16", "--peers", "none", "--warmup", "3", "--repeats", "10"]
PEERS_512 = ["--size", "512", "--batch", "16", "--warmup", "3", "--repeats", "10"]
BF16_CL = ["--amp", "bf16", "--channels-last"]

RUNS: dict[str, list[str]] = {
    "ours_513_fp32": OURS_513,
    "ours_513_bf16_cl": OURS_513 + BF16_CL,
    "ours_513_bf16_cl_compile": OURS_513 + BF16_CL + ["--compile"],
    "peers_512_fp32": PEERS_512,
    "peers_512_bf16_cl": PEERS_512 + BF16_CL + ["--loader", "--loader-batches", "10"],
    # Inference precisions (issue 21): prepared fp32 ('ours') vs prepared bf16 weights ('ours-bf16')
    # vs the plain model under autocast, interleaved; channels_last as the other bf16 rows.
    "ours_513_precisions": OURS_513 + ["--modes", "infer", "--channels-last", "--precisions", "bf16"],
}
"""Benchmark runs by name: arguments of scripts/benchmark.py after ``--device cuda --cudnn-benchmark``."""


def run_tests(out: Path, timeout: int) -> dict:
    cmd = [sys.executable, "-m", "pytest", "-m", "gpu", "-q", "-rs", str(ROOT / "tests")]
    return _run("tests", cmd, out / "tests.txt", timeout)


def _run(name: str, cmd: list[str], log: Path, timeout: int) -> dict:
    t0 = time.perf_counter()
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    try:
        proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
        text, rc = proc.stdout + proc.stderr, proc.returncode
    except subprocess.TimeoutExpired as e:
        text = (e.stdout or b"").decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
        text, rc = text + f"\n[timed out after {timeout} s]", 124
    log.write_text(f"$ {' '.join(cmd)}\n{text}")
    seconds = time.perf_counter() - t0
    print(f"{name}: exit {rc} in {seconds:.0f} s (log {log})", flush=True)
    return {"name": name, "rc": rc, "seconds": seconds}


def make_voc_sized(out: Path) -> Path:
    """VOC-sized JPEGs (synthetic, sides 328-547 px, mean ~438 as VOC's 500x375) for the loader."""
    from deeplabv3plus.data.synthetic import make_synthetic_voc

    root = out / "voc_sized"
    if not root.is_dir():
        make_synthetic_voc(root, num_train=200, num_val=10, size=438, seed=0, num_classes=21)
    return root


def _rows(report: dict, mode: str, name: str = "ours") -> dict | None:
    return next((r for r in report["results"] if r["mode"] == mode and r["name"] == name), None)


def targets(reports: dict[str, dict]) -> list[str]:
    """The issue's GPU targets, each with the measured value (or why it is missing)."""
    lines = []
    fp32, bf16 = reports.get("ours_513_fp32"), reports.get("ours_513_bf16_cl")
    if fp32 and bf16 and _rows(fp32, "train") and _rows(bf16, "train"):
        ratio = _rows(bf16, "train")["images_per_s"] / _rows(fp32, "train")["images_per_s"]
        lines.append(
            f"- bf16 + channels_last training / fp32 training (ours, 513, batch 16): **{ratio:.2f}x** (target >= 1.5x)"
        )
    else:
        lines.append("- bf16 + channels_last vs fp32 training: not measured (a run is missing)")
    for name in ("ours_513_bf16_cl", "ours_513_bf16_cl_compile"):
        row = reports.get(name) and _rows(reports[name], "infer")
        if row and row["flops_fraction"] is not None:
            lines.append(
                f"- inference, {name}: **{100 * row['flops_fraction']:.1f}%** of the bf16 dense peak (target >= 40%)"
            )
        else:
            lines.append(f"- inference % of peak, {name}: not measured")
    lines += precision_targets(reports.get("ours_513_precisions"))
    peers = reports.get("peers_512_bf16_cl")
    loader = peers.get("loader") if peers else None
    train = peers and _rows(peers, "train")
    if loader and "images_per_s" in loader and train:
        ratio = loader["images_per_s"] / train["images_per_s"]
        lines.append(
            f"- data pipeline ({loader['workers']} workers, VOC-sized JPEGs) {loader['images_per_s']:.0f} images/s "
            f"/ bf16 training {train['images_per_s']:.0f} images/s (ours, 512): **{ratio:.2f}x** (target >= 2x)"
        )
    else:
        lines.append("- data pipeline vs training images/s: not measured")
    return lines


def precision_targets(report: dict | None) -> list[str]:
    """Prepared bf16 inference against prepared fp32 (paired ratio) and its share of the bf16 peak."""
    bf16 = report and _rows(report, "infer", "ours-bf16")
    if not bf16:
        return ["- prepared bf16 inference vs prepared fp32: not measured"]
    from deeplabv3plus.benchmark import PEAK_TFLOPS

    name = report["meta"].get("device_name", "")
    peak = next((peaks["bf16"] for key, peaks in PEAK_TFLOPS if key in name), None)
    share = (
        f"{100 * 2 * bf16['gmacs_per_s'] / 1e3 / peak:.1f}% of the bf16 dense peak"
        if peak
        else "peak unknown"
    )
    autocast = _rows(report, "infer", "ours-autocast-bf16")
    lines = [
        f"- inference, prepared bf16 / prepared fp32 (ours, 513, batch 16, paired): "
        f"**{bf16['paired_ratio_vs_ours']:.3f}x** the time ({share})"
    ]
    if autocast:
        lines.append(
            f"- inference, plain model under autocast bf16 / prepared fp32: {autocast['paired_ratio_vs_ours']:.3f}x"
        )
    return lines


def write_summary(out: Path, status: list[dict]) -> Path:
    from deeplabv3plus.benchmark import format_markdown

    reports = {}
    for name in RUNS:
        path = out / f"{name}.json"
        if path.is_file():
            reports[name] = json.loads(path.read_text())
    lines = ["# GPU checks", "", "## Targets", "", *targets(reports), "", "## Runs", ""]
    lines += [f"- {s['name']}: exit {s['rc']}, {s['seconds']:.0f} s" for s in status]
    tests = out / "tests.txt"
    if tests.is_file():
        tail = tests.read_text().strip().splitlines()[-1:]
        lines += ["", f"CUDA tests: `{tail[0] if tail else 'no output'}` (full log: tests.txt)"]
    for name, report in reports.items():
        lines += ["", f"## {name}", "", format_markdown(report)]
    path = out / "summary.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="gpu_results", help="folder for every log, JSON and table")
    p.add_argument("--only", nargs="+", choices=["tests", *RUNS], help="run only these (default: all)")
    p.add_argument("--timeout", type=int, default=420, help="seconds per run before it is stopped")
    args = p.parse_args(argv)
    out = Path(args.out).expanduser().resolve()
    out.mkdir(parents=True, exist_ok=True)
    import torch

    if not torch.cuda.is_available():
        print("gpu_checks.py: no CUDA device visible (torch.cuda.is_available() is False)", file=sys.stderr)
        return 2
    selected = args.only or ["tests", *RUNS]
    status = []
    if "tests" in selected:
        status.append(run_tests(out, args.timeout))
    for name, extra in RUNS.items():
        if name not in selected:
            continue
        cmd = [*BENCH, *extra, "--json", str(out / f"{name}.json"), "--markdown", str(out / f"{name}.md")]
        if "--loader" in extra:
            cmd += ["--data-root", str(make_voc_sized(out))]
        status.append(_run(name, cmd, out / f"{name}.txt", args.timeout))
    summary = write_summary(out, status)
    print(f"wrote {summary}")
    return 0 if all(s["rc"] == 0 for s in status) else 1


if __name__ == "__main__":
    sys.exit(main())
