"""The training loop: config -> data -> model -> SGD with poly LR -> checkpoints and validation.

Read top to bottom: :func:`train` builds everything from a :class:`Config` and runs the
iterations; the helpers above it are the pieces it calls. ``scripts/train.py`` is its
command-line face. The same code runs on one CPU, one GPU, or under ``torchrun`` with
DistributedDataParallel (NCCL on CUDA, gloo on CPU).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import platform
import subprocess
import sys
import time
import warnings
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Optional

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Subset
from tqdm import tqdm

from ._compat import grad_scaler
from .checkpoint import CheckpointError, load_checkpoint, rng_state, save_checkpoint, set_rng_state
from .config import Config, ConfigError, config_from_dict, config_to_dict, load_config, save_config
from .data.datasets import DatasetError, build_dataset, check_config_leakage, eval_collate
from .data.sampling import SeededDataset, TrainStream
from .evaluate import evaluate
from .inference import AMP_DTYPES
from .models import build_model
from .weights.imagenet import PretrainedWeightsError

# --- environment -----------------------------------------------------------------------------


@dataclasses.dataclass
class Runtime:
    """Where this process runs: device, DDP rank and world size, precision settings."""

    device: torch.device
    rank: int = 0
    world_size: int = 1
    amp_dtype: Optional[torch.dtype] = None
    channels_last: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def setup_runtime(cfg: Config) -> Runtime:
    """Join the torchrun process group when launched by torchrun, pick device and precision."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    want = cfg.train.device
    if want == "auto":
        want = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(want)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"train.device={cfg.train.device!r} but CUDA is not available")
        if world_size > 1:
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
        # Training crops have one size: let cuDNN pick the fastest algorithms once.
        torch.backends.cudnn.benchmark = True
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    amp = cfg.train.amp
    if amp == "auto":
        if device.type == "cuda":
            amp = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        else:
            amp = "off"  # CPU autocast is slower than fp32 for convolutions on most CPUs
    amp_dtype = AMP_DTYPES[amp]
    channels_last = cfg.train.channels_last == "on" or (
        cfg.train.channels_last == "auto" and device.type == "cuda"
    )
    return Runtime(device, rank, world_size, amp_dtype, channels_last)


def run_info(cfg: Config, runtime: Runtime) -> dict[str, Any]:
    """What is needed to trace a result back: config, seed, commit, versions, device."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
            cwd=Path(__file__).resolve().parent,
        ).stdout.strip() or None  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        commit = None
    import torchvision

    from . import __version__

    device_name = (
        torch.cuda.get_device_name(runtime.device) if runtime.device.type == "cuda" else platform.processor()
    )
    return {
        "config": config_to_dict(cfg),
        "seed": cfg.train.seed,
        "git_commit": commit,
        "versions": {
            "deeplabv3plus": __version__,
            "torch": torch.__version__,
            "torchvision": torchvision.__version__,
            "python": platform.python_version(),
        },
        "device": str(runtime.device),
        "device_name": device_name or platform.machine(),
        "world_size": runtime.world_size,
        "amp": str(runtime.amp_dtype) if runtime.amp_dtype else "off",
        "channels_last": runtime.channels_last,
        "command": sys.argv,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


# --- model and optimisation ------------------------------------------------------------------


def check_recipe(cfg: Config, runtime: Runtime) -> None:
    """Refuse or warn about the known causes of "I can't reproduce the paper's mIoU"."""
    if (
        cfg.model.pretrained_backbone is None
        and cfg.train.init_from is None
        and not cfg.train.allow_scratch_backbone
    ):
        raise ConfigError(
            "model.pretrained_backbone is not set: training without an ImageNet-pretrained backbone is far "
            "below the paper's numbers; set model.pretrained_backbone (e.g. torchvision:IMAGENET1K_V1 or "
            "timm:xception65.tf_in1k) or opt in with train.allow_scratch_backbone=true"
        )
    per_device = cfg.train.batch_size // runtime.world_size
    synced = cfg.train.sync_bn and runtime.distributed
    if not cfg.train.freeze_bn and per_device < 8 and not synced:
        warnings.warn(
            f"BatchNorm statistics are trained with {per_device} images per device and no SyncBatchNorm; "
            "the paper fine-tunes BN with batch 16 at output stride 16 (and freezes BN for OS 8). "
            "Use train.freeze_bn=true, a larger batch, or torchrun with train.sync_bn=true.",
            stacklevel=2,
        )


def freeze_batchnorm(model: nn.Module) -> None:
    """Use BN's running statistics in training (the reference's ``fine_tune_batch_norm=False``).

    As in the reference, the affine parameters (gamma, beta) stay trainable; only the
    statistics are frozen. Call after every ``model.train()``.
    """
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()


def build_optimizer(model: nn.Module, cfg: Config) -> torch.optim.SGD:
    """SGD with momentum; weight decay on conv weights only; backbone LR multiplier.

    The reference regularises conv kernels (slim's ``weights_regularizer``), not BN parameters
    or biases.
    """
    groups: dict[tuple[bool, bool], list[nn.Parameter]] = {}
    for name, p in model.named_parameters():
        if p.requires_grad:
            groups.setdefault((name.startswith("backbone."), p.ndim > 1), []).append(p)
    param_groups = []
    for (is_backbone, decay), params in sorted(groups.items()):
        lr = cfg.train.lr * (cfg.train.backbone_lr_mult if is_backbone else 1.0)
        param_groups.append(
            {"params": params, "lr": lr, "weight_decay": cfg.train.weight_decay if decay else 0.0}
        )
    return torch.optim.SGD(param_groups, lr=cfg.train.lr, momentum=cfg.train.momentum)


def poly_lr_factor(iteration: int, max_iters: int, power: float = 0.9) -> float:
    """The "poly" policy: ``(1 - iteration / max_iters) ** power`` (times the base LR)."""
    return (1.0 - min(iteration, max_iters) / max_iters) ** power


# --- data ------------------------------------------------------------------------------------


def build_loaders(cfg: Config, runtime: Runtime, start_iteration: int):
    """The endless training loader (resuming at ``start_iteration``) and the validation loader."""
    if cfg.train.batch_size % runtime.world_size:
        raise ConfigError(
            f"train.batch_size={cfg.train.batch_size} is not divisible by the {runtime.world_size} processes"
        )
    per_rank = cfg.train.batch_size // runtime.world_size
    check_config_leakage(cfg.data)
    train_set = build_dataset(cfg.data, cfg.data.train_split, train=True)
    val_set = build_dataset(cfg.data, cfg.data.val_split, train=False)
    stream = TrainStream(
        len(train_set), cfg.train.seed, runtime.rank, runtime.world_size, start_iteration * per_rank
    )
    train_loader = DataLoader(
        SeededDataset(train_set, cfg.train.seed),
        batch_size=per_rank,
        sampler=stream,
        num_workers=cfg.data.workers,
        pin_memory=runtime.device.type == "cuda",
        drop_last=True,
        persistent_workers=cfg.data.workers > 0,
        # Its own generator: creating the iterator must not draw from the global RNG, which
        # the resumed run restores for dropout. (Augmentation is seeded per sample anyway.)
        generator=torch.Generator().manual_seed(cfg.train.seed),
    )
    # Each rank scores a disjoint shard; evaluate() all-reduces the confusion matrices.
    val_shard = Subset(val_set, range(runtime.rank, len(val_set), runtime.world_size))
    val_loader = DataLoader(
        val_shard,
        batch_size=cfg.eval.batch_size,
        num_workers=min(cfg.data.workers, 2),
        collate_fn=eval_collate,
    )
    return train_loader, val_loader, train_set, val_set


# --- the loop --------------------------------------------------------------------------------


def train(
    cfg: Config, *, resume: Optional[str] = None, stop_after: Optional[int] = None
) -> tuple[nn.Module, dict[str, Any]]:
    """Train a model as ``cfg`` describes; returns the model and its last validation results.

    Args:
        cfg: the full config.
        resume: a checkpoint written by this loop (e.g. ``<output_dir>/last.pth``); training
            continues from its iteration with its optimizer, LR, scaler and RNG states, so the
            weights equal those of an uninterrupted run.
        stop_after: stop (with a checkpoint) once this iteration is reached, as if interrupted;
            for pre-emptible jobs and tests. The schedule still runs to ``train.max_iters``.
    """
    runtime = setup_runtime(cfg)
    check_recipe(cfg, runtime)
    out_dir = Path(cfg.train.output_dir)
    torch.manual_seed(cfg.train.seed)  # identical initial weights on every rank

    state = load_checkpoint(resume) if resume else None
    start = state["iteration"] if state else 0

    model_kwargs = dataclasses.asdict(cfg.model)
    if state or cfg.train.init_from:
        model_kwargs["pretrained_backbone"] = None  # every weight comes from the checkpoint
    model = build_model(**model_kwargs)
    if cfg.train.init_from and not state:
        model.load_state_dict(load_checkpoint(cfg.train.init_from)["model"])
    if runtime.distributed and cfg.train.sync_bn and not cfg.train.freeze_bn:
        if runtime.device.type == "cuda":
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        elif runtime.is_main:
            # torch's SyncBatchNorm runs on GPUs only; DDP still broadcasts rank 0's statistics.
            warnings.warn(
                "train.sync_bn: SyncBatchNorm needs CUDA; BN statistics stay per process", stacklevel=2
            )
    model.to(runtime.device)
    if runtime.channels_last:
        model.to(memory_format=torch.channels_last)
    optimizer = build_optimizer(model, cfg)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda it: poly_lr_factor(it, cfg.train.max_iters, cfg.train.lr_power)
    )
    use_scaler = runtime.amp_dtype == torch.float16
    try:
        scaler = grad_scaler(runtime.device.type, enabled=use_scaler)
    except ValueError as e:  # fp16 on a device this torch cannot loss-scale on
        raise ConfigError(f"train.amp={cfg.train.amp!r}: {e}") from None
    best_miou = None
    if state:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        if state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        best_miou = state.get("best_miou")

    train_model: nn.Module = model
    if runtime.distributed:
        train_model = nn.parallel.DistributedDataParallel(
            model, device_ids=[runtime.device.index] if runtime.device.type == "cuda" else None
        )
    if cfg.train.compile:
        train_model = torch.compile(train_model)

    train_loader, val_loader, train_set, val_set = build_loaders(cfg, runtime, start)
    if runtime.is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
        save_config(cfg, out_dir / "config.yaml")
        (out_dir / "run_info.json").write_text(json.dumps(run_info(cfg, runtime), indent=2, default=str))
    log = MetricsLog(out_dir, enabled=runtime.is_main)
    autocast = (
        torch.autocast(runtime.device.type, dtype=runtime.amp_dtype) if runtime.amp_dtype else nullcontext()
    )

    def checkpoint(iteration: int, name: str) -> None:
        if runtime.is_main:
            save_checkpoint(
                {
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "scaler": scaler.state_dict() if use_scaler else None,
                    "iteration": iteration,
                    "rng": rng_state(),
                    "config": config_to_dict(cfg),
                    "best_miou": best_miou,
                },
                out_dir / name,
            )

    def validate(iteration: int) -> dict[str, Any]:
        nonlocal best_miou
        results = evaluate(
            model, val_loader, cfg.data.num_classes,
            scales=cfg.eval.scales, flip=cfg.eval.flip, output_stride=cfg.eval.output_stride,
            device=runtime.device, class_names=train_set.class_names, ignore_index=cfg.data.ignore_index,
            amp_dtype=runtime.amp_dtype, pad_to=cfg.eval.pad_to, progress=runtime.is_main, desc=f"val@{iteration}",
        )  # fmt: skip
        log.write(
            {"iteration": iteration, "val_mIoU": results["mIoU"], "val_pixel_acc": results["pixel_acc"]}
        )
        if runtime.is_main:
            tqdm.write(f"iteration {iteration}: val mIoU {100 * (results['mIoU'] or 0):.2f}%")
        if results["mIoU"] is not None and (best_miou is None or results["mIoU"] > best_miou):
            best_miou = results["mIoU"]
            checkpoint(iteration, "best.pth")
        return results

    # Restore the RNG last: everything above (data workers, model init) must not shift it.
    if state:
        set_rng_state(state["rng"])
    end = min(cfg.train.max_iters, stop_after) if stop_after is not None else cfg.train.max_iters
    train_model.train()
    if cfg.train.freeze_bn:
        freeze_batchnorm(train_model)
    bar = tqdm(
        total=cfg.train.max_iters,
        initial=start,
        desc="train",
        disable=not runtime.is_main,
        dynamic_ncols=True,
    )
    results: dict[str, Any] = {}
    iteration, window_start, window_iters, loss_sum = start, time.perf_counter(), 0, 0.0
    for images, labels in train_loader:
        if iteration >= end:
            break
        images = images.to(runtime.device, non_blocking=True)
        labels = labels.to(runtime.device, non_blocking=True)
        if runtime.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        with autocast:
            logits = train_model(images)
        # Mean over non-void pixels, in fp32 whatever the autocast dtype.
        loss = F.cross_entropy(logits.float(), labels, ignore_index=cfg.data.ignore_index)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        scheduler.step()
        iteration += 1

        # Summed on the device: no host synchronisation between log intervals.
        loss_sum = loss_sum + loss.detach()
        window_iters += 1
        if iteration % cfg.train.log_interval == 0 or iteration == end:
            mean_loss = (loss_sum / window_iters).item()
            if not math.isfinite(mean_loss):
                raise FloatingPointError(f"loss is {mean_loss} before iteration {iteration}; lower train.lr")
            elapsed = time.perf_counter() - window_start
            record = {
                "iteration": iteration,
                "loss": mean_loss,
                "lr": optimizer.param_groups[-1]["lr"],
                "images_per_s": window_iters * cfg.train.batch_size / max(elapsed, 1e-9),
            }
            log.write(record)
            bar.set_postfix(
                loss=f"{mean_loss:.3f}", lr=f"{record['lr']:.2e}", img_s=f"{record['images_per_s']:.1f}"
            )
            bar.update(iteration - bar.n)
            window_start, window_iters, loss_sum = time.perf_counter(), 0, 0.0
        if (
            cfg.train.val_interval
            and iteration % cfg.train.val_interval == 0
            and iteration < cfg.train.max_iters
        ):
            results = validate(iteration)
            train_model.train()
            if cfg.train.freeze_bn:
                freeze_batchnorm(train_model)
        if iteration % cfg.train.ckpt_interval == 0 or iteration == end:
            checkpoint(iteration, "last.pth")
    bar.close()

    if iteration >= cfg.train.max_iters:
        results = validate(iteration)
        if runtime.is_main:
            print(results["table"])
            (out_dir / "val_results.json").write_text(json.dumps(results, indent=2))
    log.close()
    return model, results


class MetricsLog:
    """JSON lines in ``metrics.jsonl``, mirrored to TensorBoard when it is installed (rank 0)."""

    def __init__(self, out_dir: Path, enabled: bool = True):
        self.enabled, self.path, self.writer = enabled, out_dir / "metrics.jsonl", None
        if enabled:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.writer = SummaryWriter(str(out_dir / "tensorboard"))
            except ImportError:  # optional extra "tensorboard"
                self.writer = None

    def write(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        with open(self.path, "a") as f:
            f.write(json.dumps({**record, "time": time.time()}) + "\n")
        if self.writer is not None:
            for key, value in record.items():
                if key != "iteration" and isinstance(value, (int, float)):
                    self.writer.add_scalar(key, value, record["iteration"])

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


# --- command line ----------------------------------------------------------------------------


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        description="Train DeepLabv3+ from a YAML config. Overrides: dotted key=value, e.g. train.max_iters=100.",
    )
    parser.add_argument("--config", required=True, help="YAML config, e.g. configs/quickstart.yaml")
    parser.add_argument(
        "--resume", help="checkpoint to continue from (e.g. runs/x/last.pth); 'auto' = output_dir/last.pth"
    )
    parser.add_argument(
        "--stop-after", type=int, help="stop at this iteration with a checkpoint (resume later)"
    )
    parser.add_argument(
        "overrides", nargs="*", help="dotted overrides, e.g. train.max_iters=100 data.root=data/voc"
    )
    args = parser.parse_args(argv)
    try:
        cfg = load_config(args.config, args.overrides)
        resume = args.resume
        if resume == "auto":
            last = Path(cfg.train.output_dir) / "last.pth"
            resume = str(last) if last.is_file() else None
        if resume:
            # The run's own config wins over the file, so that a resumed run is the same run.
            saved = config_from_dict(load_checkpoint(resume)["config"])
            if saved != cfg:
                warnings.warn(
                    f"--resume: using the config stored in {resume}, not {args.config}", stacklevel=1
                )
            cfg = saved
        train(cfg, resume=resume, stop_after=args.stop_after)
    except (ConfigError, DatasetError, CheckpointError, PretrainedWeightsError) as e:
        print(f"train.py: error: {e}", file=sys.stderr)
        return 2
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    return 0
