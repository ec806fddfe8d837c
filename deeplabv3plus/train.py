"""The training loop: config -> data -> model -> SGD with poly LR -> checkpoints and validation.

Read top to bottom: :func:`train` builds everything from a :class:`Config` and runs the
iterations; the helpers above it are the pieces it calls. ``scripts/train.py`` is its
command-line face. The same code runs on one CPU, one GPU, or under ``torchrun`` with
DistributedDataParallel (NCCL on CUDA, gloo on CPU).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import platform
import signal
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any, Optional

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Subset
from tqdm import tqdm

from ._compat import grad_scaler
from .checkpoint import (
    CheckpointError,
    check_state_dict_fits,
    load_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from .config import Config, ConfigError, config_to_dict, save_config
from .data.datasets import build_dataset, check_config_leakage, eval_collate
from .data.sampling import SeededDataset, TrainStream
from .data.synthetic import is_synthetic_root
from .evaluate import evaluate
from .inference import AMP_DTYPES
from .models import build_model

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
    # channels_last is the faster layout for convolutions on GPUs (cuDNN) and CPUs (oneDNN: on this
    # project's CPU a training step takes 0.89-0.96x the NCHW time, docs/benchmarks.md).
    channels_last = cfg.train.channels_last == "on" or (
        cfg.train.channels_last == "auto" and device.type in ("cuda", "cpu")
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
    # torch's SyncBatchNorm runs on CUDA only: on CPU (gloo) every process keeps its own statistics.
    synced = cfg.train.sync_bn and runtime.distributed and runtime.device.type == "cuda"
    if not cfg.train.freeze_bn and per_device < 8 and not synced and runtime.is_main:
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


# --- stopping together ------------------------------------------------------------------------


class TrainingInterrupted(Exception):
    """Training stopped on SIGTERM/SIGINT after finishing a step, with ``last.pth`` at that iteration.

    Attributes:
        signum: The signal received (on any rank).
        iteration: The iteration the run stopped at (the checkpoint's).
        checkpoint: The checkpoint to pass to ``--resume``.
    """

    def __init__(self, signum: int, iteration: int, checkpoint: Path):
        self.signum, self.iteration, self.checkpoint = signum, iteration, checkpoint
        name = signal.Signals(signum).name
        super().__init__(
            f"stopped by {name} at iteration {iteration}; wrote {checkpoint}; "
            f"continue with: --resume {checkpoint}"
        )


class PeerFailure(Exception):
    """Another process of the distributed job failed and reports it; this one stops quietly."""


class CheckpointWriteError(CheckpointError):
    """Writing a checkpoint failed (e.g. a full disk); the previous file is intact."""


class StopSignals:
    """SIGTERM / SIGINT become a request to stop after the current step (a second SIGINT aborts).

    Installed only in the main thread; the previous handlers are restored on exit. DataLoader
    workers forked while it is installed inherit the handler, so a Ctrl-C (sent to the whole
    process group) does not kill them mid-batch: the main process decides when to stop.
    """

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self) -> None:
        self.signum: Optional[int] = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for sig in self.SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if self.signum is not None:
            if signum == signal.SIGINT:  # Ctrl-C twice: stop now, without a checkpoint
                self.__exit__()
                raise KeyboardInterrupt
            return  # SLURM and torchrun may both forward one SIGTERM: already stopping
        self.signum = signum

    def __exit__(self, *exc: Any) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous = {}


@contextmanager
def all_or_none(runtime: Runtime, group: Any = None) -> Iterator[None]:
    """Run a block on every rank; if it raises on any rank, the job stops with one report.

    The lowest failing rank re-raises its exception; every other rank raises :class:`PeerFailure`
    (no second message, no rank left waiting in a collective). Single-process: a plain block.
    """
    error: Optional[BaseException] = None
    try:
        yield
    except Exception as e:
        error = e
    if runtime.distributed:
        failed: list[Optional[int]] = [None] * runtime.world_size
        dist.all_gather_object(failed, runtime.rank if error is not None else None, group=group)
        first = next((r for r in failed if r is not None), None)
        if first is not None and first != runtime.rank:
            raise PeerFailure(f"rank {first} failed") from error
    if error is not None:
        raise error


def build_train_model(model_kwargs: dict[str, Any], runtime: Runtime, group: Any = None) -> nn.Module:
    """Build the model; under torchrun only rank 0 fetches the pretrained backbone.

    The other ranks wait, then build from the cache rank 0 filled (torchvision's / timm's download
    cache, or the file). A failure on rank 0 ends every rank with rank 0's one message.
    """
    fetch_first = runtime.distributed and model_kwargs.get("pretrained_backbone") is not None
    model = None
    with all_or_none(runtime, group):
        if runtime.is_main or not fetch_first:
            model = build_model(**model_kwargs)
    with all_or_none(runtime, group):
        if model is None:
            model = build_model(**model_kwargs)
    return model


def _agreed_signal(local: Optional[int], runtime: Runtime, group: Any) -> Optional[int]:
    """The stop signal any rank received (all ranks get the same answer), or None."""
    if not runtime.distributed:
        return local
    flag = torch.tensor([local or 0], dtype=torch.int64)
    dist.all_reduce(flag, op=dist.ReduceOp.MAX, group=group)
    return int(flag.item()) or None


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

    Raises:
        TrainingInterrupted: on SIGTERM/SIGINT, after the current step and a ``last.pth`` at it
            (under torchrun every rank stops at the same iteration).
        CheckpointWriteError: a checkpoint could not be written (the previous one is intact).
        PeerFailure: under torchrun, on the ranks that did not fail themselves.
    """
    try:
        runtime = setup_runtime(cfg)
        check_recipe(cfg, runtime)
    except Exception:
        if int(os.environ.get("WORLD_SIZE", "1")) > 1 and int(os.environ.get("RANK", "0")) > 0:
            raise PeerFailure("rank 0 reports the error") from None  # the same config on every rank
        raise
    # Host-side agreements (errors, stop signals) go through gloo, so they never sync a CUDA stream.
    group = None
    if runtime.distributed and dist.get_backend() != "gloo":
        group = dist.new_group(backend="gloo")
    out_dir = Path(cfg.train.output_dir)
    torch.manual_seed(cfg.train.seed)  # identical initial weights on every rank

    with all_or_none(runtime, group):
        state = load_checkpoint(resume) if resume else None
        if state is not None and "optimizer" not in state:
            raise CheckpointError(
                f"--resume {resume}: the checkpoint holds weights only (train.best_weights_only); resume from "
                "last.pth, or start a new run from these weights with train.init_from"
            )
    start = state["iteration"] if state else 0

    model_kwargs = dataclasses.asdict(cfg.model)
    if state or cfg.train.init_from:
        model_kwargs["pretrained_backbone"] = None  # every weight comes from the checkpoint
    model = build_train_model(model_kwargs, runtime, group)
    with all_or_none(runtime, group):
        if cfg.train.init_from and not state:
            weights = load_checkpoint(cfg.train.init_from)["model"]
            check_state_dict_fits(model, weights, cfg.train.init_from, _describe(cfg))
            model.load_state_dict(weights)
        if state:
            check_state_dict_fits(model, state["model"], resume, _describe(cfg))
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

    generating = cfg.data.layout == "synthetic" and not is_synthetic_root(Path(cfg.data.root))
    with all_or_none(runtime, group):
        train_loader, val_loader, train_set, val_set = build_loaders(cfg, runtime, start)
        if runtime.is_main:
            out_dir.mkdir(parents=True, exist_ok=True)
            save_config(cfg, out_dir / "config.yaml")
            (out_dir / "run_info.json").write_text(json.dumps(run_info(cfg, runtime), indent=2, default=str))
    if runtime.is_main:
        if generating:
            print(f"generated a synthetic dataset in {cfg.data.root} (data.layout=synthetic)")
        print(
            f"training on {len(train_set)} '{cfg.data.train_split}' images, validating on {len(val_set)} "
            f"'{cfg.data.val_split}' images; writing the run to {out_dir} (config.yaml, run_info.json, "
            "metrics.jsonl, last.pth, best.pth)"
        )
    log = MetricsLog(out_dir, enabled=runtime.is_main)
    autocast = (
        torch.autocast(runtime.device.type, dtype=runtime.amp_dtype) if runtime.amp_dtype else nullcontext()
    )
    written: dict[str, int] = {}  # checkpoint name -> iteration, this session
    if state and resume and Path(resume).resolve() == (out_dir / "last.pth").resolve():
        written["last.pth"] = start

    def checkpoint(iteration: int, name: str) -> None:
        if not runtime.is_main:
            return
        path = out_dir / name
        content: dict[str, Any] = {
            "model": model.state_dict(),
            "iteration": iteration,
            "config": config_to_dict(cfg),
            "best_miou": best_miou,
        }
        if not (name == "best.pth" and cfg.train.best_weights_only):
            content.update(
                optimizer=optimizer.state_dict(),
                scheduler=scheduler.state_dict(),
                scaler=scaler.state_dict() if use_scaler else None,
                rng=rng_state(),
            )
        try:
            save_checkpoint(content, path)
        except OSError as e:
            if name in written:
                previous = f"the previous {path} (iteration {written[name]}) is intact"
            elif path.exists():
                previous = f"the previous {path} is intact"
            else:
                previous = f"no earlier {name} exists"
            raise CheckpointWriteError(
                f"cannot write checkpoint '{path}' at iteration {iteration}: {e.strerror or e}; {previous}; "
                "training stopped (free space, then continue with --resume)"
            ) from None
        written[name] = iteration
        tqdm.write(f"wrote {path} (iteration {iteration})")

    def validate(iteration: int) -> dict[str, Any]:
        nonlocal best_miou
        results = evaluate(
            model, val_loader, cfg.data.num_classes,
            scales=cfg.eval.scales, flip=cfg.eval.flip, output_stride=cfg.eval.output_stride,
            device=runtime.device, class_names=train_set.class_names, ignore_index=cfg.data.ignore_index,
            amp_dtype=runtime.amp_dtype, pad_to=cfg.eval.pad_to, progress=runtime.is_main, desc=f"val@{iteration}",
            mode=cfg.eval.mode, crop_size=cfg.eval.crop_size, stride=cfg.eval.stride,
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
    stop = StopSignals()
    try:
        with stop:
            batches = iter(train_loader)
            while iteration < end:
                # Checked between steps, before the next batch is fetched: the checkpoint is of a
                # finished step, and every rank stops at the same iteration.
                signum = _agreed_signal(stop.signum, runtime, group)
                if signum is not None:
                    if written.get("last.pth") != iteration:
                        checkpoint(iteration, "last.pth")
                    if runtime.distributed:
                        dist.barrier(group=group)  # nobody exits while rank 0 writes
                    raise TrainingInterrupted(signum, iteration, out_dir / "last.pth")
                images, labels = next(batches)
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
                        raise FloatingPointError(
                            f"training diverged: the mean loss of iterations {iteration - window_iters + 1}-"
                            f"{iteration} is {mean_loss}; lower train.lr (now {cfg.train.lr:g}) or check the labels"
                        )
                    elapsed = time.perf_counter() - window_start
                    record = {
                        "iteration": iteration,
                        "loss": mean_loss,
                        "lr": optimizer.param_groups[-1]["lr"],
                        "images_per_s": window_iters * cfg.train.batch_size / max(elapsed, 1e-9),
                    }
                    log.write(record)
                    bar.set_postfix(
                        loss=f"{mean_loss:.3f}",
                        lr=f"{record['lr']:.2e}",
                        img_s=f"{record['images_per_s']:.1f}",
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
    except (TrainingInterrupted, PeerFailure):
        raise
    except RuntimeError as e:
        if stop.signum is not None and runtime.distributed and not isinstance(e, CheckpointError):
            # Stopping (torchrun signals every rank when one fails): a peer is gone mid-collective.
            raise PeerFailure("stopped while another rank failed") from e
        raise
    finally:
        bar.close()
        log.close()

    if iteration >= cfg.train.max_iters:
        results = validate(iteration)
        if runtime.is_main:
            print(results["table"])
            (out_dir / "val_results.json").write_text(json.dumps(results, indent=2))
            print(f"wrote {out_dir / 'val_results.json'}")
    return model, results


def _describe(cfg: Config) -> str:
    m = cfg.model
    return f"{m.backbone}, {m.num_classes} classes, decoder {m.decoder}, SC {m.separable}"


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
    """``deeplabv3plus train`` (see :mod:`deeplabv3plus.cli`); returns the exit code."""
    from .cli import run_command

    return run_command("train", argv)
