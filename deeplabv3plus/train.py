"""The training loop: config -> data -> model -> SGD with poly LR -> checkpoints and validation.

Read :func:`train` top to bottom: build (runtime, model, optimiser, data), restore (``--resume``),
then the loop (step, log, validate, checkpoint); the helpers above it are the pieces it calls, in
that order. ``deeplabv3plus train`` (:mod:`deeplabv3plus.cli`) is its command-line face. The same
code runs on one CPU, one GPU, or under ``torchrun`` with DistributedDataParallel (NCCL on CUDA,
gloo on CPU); the process plumbing (ranks, stop signals, agreement between ranks) is
:mod:`deeplabv3plus.runtime`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import platform
import sys
import time
import warnings
from contextlib import nullcontext
from pathlib import Path
from typing import Any, NoReturn, Optional

import torch
import torch.distributed as dist
import torchvision
from torch import nn
from torch.utils.data import DataLoader, Subset
from tqdm import tqdm

try:
    import fcntl
except ImportError:  # Windows: run folders are not locked (RunFolderLock)
    fcntl = None  # type: ignore[assignment]

from ._compat import grad_scaler
from ._version import __version__, library_commit
from .builders import build_model
from .catalog import BACKBONES, LAYOUTS
from .checkpoint import (
    CheckpointError,
    CheckpointWriteError,
    check_state_dict_fits,
    load_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
    stored_config,
    write_atomically,
)
from .config import (
    Config,
    ConfigError,
    config_from_dict,
    config_to_dict,
    layer_config,
    load_config,
    save_config,
)
from .data.check import dataset_class_weights
from .data.datasets import DataSplits, SegmentationDataset, eval_collate
from .data.sampling import SeededDataset, TrainStream
from .data.synthetic import is_synthetic_root
from .evaluate import EvalOptions, evaluate
from .losses import LossFn, build_loss
from .runtime import (
    PeerFailure,
    Runtime,
    StopSignals,
    TrainingInterrupted,
    agreed_signal,
    all_or_none,
    host_group,
    rank,
    setup_runtime,
)

# --- the run's record ----------------------------------------------------------------------------


def run_info(cfg: Config, runtime: Runtime, class_weights: Optional[list[float]] = None) -> dict[str, Any]:
    """What is needed to trace a result back: config, seed, commit, versions, device, the loss's class weights."""
    device_name = (
        torch.cuda.get_device_name(runtime.device) if runtime.device.type == "cuda" else platform.processor()
    )
    return {
        "config": config_to_dict(cfg),
        "seed": cfg.train.seed,
        "git_commit": library_commit(),
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
        "loss": {"name": cfg.train.loss.name, "class_weights": class_weights},
    }


# --- model and optimisation ------------------------------------------------------------------


def check_recipe(cfg: Config, runtime: Runtime) -> None:
    """Refuse or warn about the known causes of "I can't reproduce the paper's mIoU"."""
    if (
        cfg.model.pretrained_backbone is None
        and cfg.train.init_from is None
        and not cfg.train.allow_scratch_backbone
    ):
        sources = BACKBONES[cfg.model.backbone].imagenet
        example = (
            f" (for {cfg.model.backbone}: {' or '.join(sources)})" if sources else " (a state_dict file)"
        )
        raise ConfigError(
            "model.pretrained_backbone is not set: training without an ImageNet-pretrained backbone is far "
            f"below the paper's numbers; set model.pretrained_backbone{example} or opt in with "
            "train.allow_scratch_backbone=true"
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


def depthwise_parameters(model: nn.Module) -> set[str]:
    """Names of the depthwise conv kernels (``groups == in_channels > 1``) of ``model``."""
    return {
        f"{name}.weight" if name else "weight"
        for name, m in model.named_modules()
        if isinstance(m, nn.Conv2d) and m.groups > 1 and m.groups == m.in_channels
    }


def build_optimizer(model: nn.Module, cfg: Config) -> torch.optim.SGD:
    """SGD with momentum; weight decay on conv weights only; backbone LR multiplier.

    The reference regularises conv kernels (slim's ``weights_regularizer``), not BN parameters
    or biases; with ``train.depthwise_weight_decay: false`` not the depthwise kernels either (its
    default: ``regularize_depthwise=False``). ``train.logits_bias_lr_mult`` puts the classifier's
    bias in a group of its own with the LR times that factor. The reference multiplies that
    bias's *gradient* by 2 instead (``utils/train_utils.py``); for SGD with momentum the two are
    the same update (the momentum buffer then holds 2x the gradients, and LR x buffer is what is
    applied) because the bias has no weight decay, which would otherwise be doubled too.

    Returns:
        SGD over groups keyed by (backbone?, decayed?, logits bias with its own LR?), in that
        sorted order.
    """
    undecayed = set() if cfg.train.depthwise_weight_decay else depthwise_parameters(model)
    # The logits bias gets a group of its own only when its LR differs (the groups stay as before).
    own_bias_group = cfg.train.logits_bias_lr_mult != 1.0
    groups: dict[tuple[bool, bool, bool], list[nn.Parameter]] = {}
    for name, p in model.named_parameters():
        if p.requires_grad:
            decay = p.ndim > 1 and name not in undecayed
            key = (name.startswith("backbone."), decay, own_bias_group and name == "classifier.bias")
            groups.setdefault(key, []).append(p)
    param_groups = []
    for (is_backbone, decay, is_logits_bias), params in sorted(groups.items()):
        lr = cfg.train.lr * (cfg.train.backbone_lr_mult if is_backbone else 1.0)
        lr *= cfg.train.logits_bias_lr_mult if is_logits_bias else 1.0
        param_groups.append(
            {"params": params, "lr": lr, "weight_decay": cfg.train.weight_decay if decay else 0.0}
        )
    return torch.optim.SGD(param_groups, lr=cfg.train.lr, momentum=cfg.train.momentum)


def poly_lr_factor(iteration: int, max_iters: int, power: float = 0.9) -> float:
    """The "poly" policy: ``(1 - iteration / max_iters) ** power`` (times the base LR)."""
    return (1.0 - min(iteration, max_iters) / max_iters) ** power


def resolve_class_weights(cfg: Config, train_set: SegmentationDataset) -> Optional[list[float]]:
    """``train.loss.class_weights``: None, the configured list, or for 'auto' the median-frequency
    weights (capped to 0.1..10, data/class_weights.py) of the training split's labels, read once."""
    weights = cfg.train.loss.class_weights
    if weights == "auto":
        return dataset_class_weights(train_set, workers=max(1, cfg.data.workers))
    return weights


def build_train_loss(cfg: Config, class_weights: Optional[list[float]]) -> LossFn:
    """The loss of ``train.loss``; the default is exactly ``F.cross_entropy(logits, labels, ignore_index=...)``."""
    loss = cfg.train.loss
    try:
        return build_loss(
            loss.name,
            ignore_index=cfg.data.ignore_index,
            num_classes=cfg.data.num_classes,
            class_weights=class_weights,
            options=getattr(loss, loss.name, None),  # train.loss.<name>: the catalogue's options of that loss
        )
    except ValueError as e:
        # "class_weights: ..." is a key of train.loss; "thresh: ..." one of the loss's own options.
        key = str(e).split(":", 1)[0]
        raise ConfigError(
            f"train.loss.{e}" if key in ("name", "class_weights") else f"train.loss.{loss.name}.{e}"
        ) from None


# --- data ------------------------------------------------------------------------------------


def build_loaders(cfg: Config, runtime: Runtime, start_iteration: int, splits: Optional[DataSplits] = None):
    """The endless training loader (resuming at ``start_iteration``) and the validation loader,
    from ``splits`` (the run's listing, each split listed once) or a fresh listing."""
    if cfg.train.batch_size % runtime.world_size:
        raise ConfigError(
            f"train.batch_size={cfg.train.batch_size} is not divisible by the {runtime.world_size} processes"
        )
    per_rank = cfg.train.batch_size // runtime.world_size
    splits = splits if splits is not None else DataSplits(cfg.data)
    train_set = splits.dataset(cfg.data.train_split, train=True)
    val_set = splits.dataset(cfg.data.val_split, train=False)
    # Each optimizer step draws train.accumulate micro-batches from the stream.
    drawn = start_iteration * per_rank * cfg.train.accumulate
    stream = TrainStream(len(train_set), cfg.train.seed, runtime.rank, runtime.world_size, drawn)
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


# --- build and restore ---------------------------------------------------------------------------


@dataclasses.dataclass
class TrainState:
    """What the loop changes and a checkpoint keeps: the (unwrapped) model, its optimisation, where it is."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    scaler: Any  # torch's GradScaler (its module moved between releases, see _compat.grad_scaler)
    iteration: int = 0
    best_miou: Optional[float] = None


def start_runtime(cfg: Config) -> Runtime:
    """:func:`~deeplabv3plus.runtime.setup_runtime`, then :func:`check_recipe`.

    Every rank reads the same config: under torchrun only rank 0 reports an error in it, the others
    raise :class:`PeerFailure`.
    """
    try:
        runtime = setup_runtime(cfg)
        check_recipe(cfg, runtime)
    except Exception:
        if rank() > 0:
            raise PeerFailure("rank 0 reports the error") from None
        raise
    return runtime


def load_resume_checkpoint(
    resume: Optional[str], cfg: Config, runtime: Runtime, group: Any, config_name: Optional[str] = None
) -> Optional[dict[str, Any]]:
    """The checkpoint ``--resume`` names (None without one); it must hold the optimiser state, and
    ``cfg`` may not change a key of :data:`FIXED_ON_RESUME` (:func:`check_resume_config`)."""
    with all_or_none(runtime, group):
        saved = load_checkpoint(resume) if resume else None
        if saved is not None and "optimizer" not in saved:
            raise CheckpointError(
                f"--resume {resume}: the checkpoint holds weights only (train.best_weights_only); resume from "
                "last.pth, or start a new run from these weights with train.init_from"
            )
        if saved is not None:
            check_resume_config(cfg, saved.get("config") or {}, str(resume), config_name)
    return saved


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


def _describe(cfg: Config) -> str:
    m = cfg.model
    return f"{m.backbone}, {m.num_classes} classes, decoder {m.decoder}, SC {m.separable}"


def build_model_to_train(
    cfg: Config, saved: Optional[dict[str, Any]], resume: Optional[str], runtime: Runtime, group: Any
) -> nn.Module:
    """The model of ``cfg.model`` on the runtime's device (channels_last, SyncBatchNorm as configured).

    Its weights: the pretrained backbone's, or all of ``train.init_from``'s; when resuming, the
    checkpoint's are checked to fit here and loaded by :func:`restore`.
    """
    model_kwargs = dataclasses.asdict(cfg.model)
    if saved or cfg.train.init_from:
        model_kwargs["pretrained_backbone"] = None  # every weight comes from the checkpoint
    model = build_train_model(model_kwargs, runtime, group)
    with all_or_none(runtime, group):
        if cfg.train.init_from and not saved:
            weights = load_checkpoint(cfg.train.init_from)["model"]
            check_state_dict_fits(model, weights, cfg.train.init_from, _describe(cfg))
            model.load_state_dict(weights)
        if saved:
            check_state_dict_fits(model, saved["model"], resume, _describe(cfg))
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
    return model


def build_train_state(model: nn.Module, cfg: Config, runtime: Runtime) -> TrainState:
    """SGD with the poly schedule, and a gradient scaler (active for fp16 autocast only), at iteration 0."""
    optimizer = build_optimizer(model, cfg)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda it: poly_lr_factor(it, cfg.train.max_iters, cfg.train.lr_power)
    )
    try:
        scaler = grad_scaler(runtime.device.type, enabled=runtime.amp_dtype == torch.float16)
    except ValueError as e:  # fp16 on a device this torch cannot loss-scale on
        raise ConfigError(f"train.amp={cfg.train.amp!r}: {e}") from None
    return TrainState(model, optimizer, scheduler, scaler)


def restore(state: TrainState, saved: dict[str, Any]) -> None:
    """Continue from a checkpoint of this loop: weights, optimiser, LR schedule, scaler, position."""
    state.model.load_state_dict(saved["model"])
    state.optimizer.load_state_dict(saved["optimizer"])
    state.scheduler.load_state_dict(saved["scheduler"])
    if saved.get("scaler"):
        state.scaler.load_state_dict(saved["scaler"])
    state.best_miou = saved.get("best_miou")
    state.iteration = saved["iteration"]


def wrap_for_training(model: nn.Module, cfg: Config, runtime: Runtime) -> nn.Module:
    """What the steps call: ``model`` in DDP under torchrun, compiled with ``train.compile``.

    The wrapper shares ``model``'s parameters; checkpoints and validation use ``model`` itself.
    """
    if runtime.distributed:
        model = nn.parallel.DistributedDataParallel(
            model, device_ids=[runtime.device.index] if runtime.device.type == "cuda" else None
        )
    if cfg.train.compile:
        model = torch.compile(model)
    return model


def set_train_mode(model: nn.Module, cfg: Config) -> None:
    """``model.train()``, with BN statistics frozen when ``train.freeze_bn`` says so."""
    model.train()
    if cfg.train.freeze_bn:
        freeze_batchnorm(model)


# --- the run's folder ---------------------------------------------------------------------------

RUN_FILES = ("last.pth", "best.pth", "config.yaml", "run_info.json", "metrics.jsonl", "val_results.json")
"""The files a run writes into ``train.output_dir`` (and TensorBoard's events under ``tensorboard/``)."""


class RunExistsError(FileExistsError):
    """``train.output_dir`` holds a run, and neither continuing nor replacing it was asked for."""


def run_files(out_dir: Path) -> list[Path]:
    """The files of a run that exist in ``out_dir``: :data:`RUN_FILES` and TensorBoard event files.

    Only these: anything else in the folder (eval results, the user's notes) is never touched.
    """
    files = [out_dir / name for name in RUN_FILES if (out_dir / name).is_file()]
    return files + sorted((out_dir / "tensorboard").glob("events.out.tfevents.*"))


def resume_checkpoint(resume: Optional[str], out_dir: Path) -> Optional[str]:
    """The checkpoint a ``resume`` request names: the one place ``--resume auto`` is resolved.

    Args:
        resume: None or "" (a new run), a checkpoint path, or ``"auto"``.
        out_dir: ``train.output_dir`` of the config the run was started with.

    Returns:
        ``out_dir/last.pth`` for ``"auto"`` when that file exists, else None (a new run,
        :func:`claim_run_folder`); a path as given; None for None or "".
    """
    if resume == "auto":
        last = out_dir / "last.pth"
        return str(last) if last.is_file() else None
    return resume or None


def _flat(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """A nested config dict as ``{"model.head_channels": 16, ...}``."""
    flat: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, dict):
            flat.update(_flat(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


FIXED_ON_RESUME = (
    "model.",  # the architecture: the stored weights are of it (pretrained_backbone aside, below)
    "data.num_classes",
    "data.ignore_index",
    "train.seed",  # the data order and augmentation of the steps still to come
    "train.batch_size",
    "train.accumulate",
    # restored from the checkpoint's optimiser state: a new value would be silently ignored
    "train.lr",
    "train.momentum",
    "train.weight_decay",
    "train.backbone_lr_mult",
    "train.logits_bias_lr_mult",
    "train.depthwise_weight_decay",
)
"""The config keys a resumed run may not change (a prefix ending in "." covers a section).

Every other key may: ``train.max_iters`` (the poly schedule then ends there), the log, validation and
checkpoint intervals, ``train.output_dir``, ``data.root``, ``data.workers``, the device, AMP,
channels_last, compile, ``eval.*``. ``model.pretrained_backbone`` is ignored: every weight comes from
the checkpoint.
"""

_FREE_ON_RESUME = ("model.pretrained_backbone",)


def check_resume_config(
    cfg: Config, stored: dict[str, Any], checkpoint: str, config_name: Optional[str] = None
) -> None:
    """Refuse a resumed run whose config changes a key of :data:`FIXED_ON_RESUME`.

    Args:
        cfg: the config the run goes on with.
        stored: the config stored in the checkpoint (a nested dict).
        checkpoint: the checkpoint's path, for the message.
        config_name: where ``cfg`` came from, for the message.

    Raises:
        ConfigError: one line naming the first key that differs, both values and what to do instead.
    """
    try:
        before = _flat(config_to_dict(config_from_dict(stored)))
    except ConfigError as e:
        raise ConfigError(f"--resume {checkpoint}: the config stored in it is invalid: {e}") from None
    now = _flat(config_to_dict(cfg))
    for key, value in now.items():
        fixed = any(key == k or (k.endswith(".") and key.startswith(k)) for k in FIXED_ON_RESUME)
        if fixed and key not in _FREE_ON_RESUME and before.get(key) != value:
            given = f" (from {config_name} and the overrides)" if config_name else ""
            raise ConfigError(
                f"--resume {checkpoint}: {key}={value!r}{given} differs from the run's {before.get(key)!r}; "
                f"{key} cannot change mid-run (drop it, or start a new run from these weights with "
                f"train.init_from={checkpoint} and another train.output_dir)"
            )


def resume_run_config(
    resume: str, config_path: Optional[str], overrides: Optional[list[str]] = None
) -> Config:
    """The config of ``train --resume``: the checkpoint's stored config, then the keys the file at
    ``config_path`` sets, then the dotted ``overrides`` (:func:`~deeplabv3plus.config.layer_config`).

    So ``train.max_iters=...``, ``train.output_dir=...`` or ``data.root=...`` given on resume are
    honoured; a change of a key of :data:`FIXED_ON_RESUME` is refused by :func:`train`.

    Args:
        resume: a checkpoint path, or ``"auto"``: ``<train.output_dir>/last.pth`` of the config the
            file and overrides give, when it exists (else that config: a new run).
        config_path: the user's ``--config`` (a file or a shipped config's name), or None.
        overrides: dotted ``a.b=c`` overrides.

    Raises:
        CheckpointError, OSError: the checkpoint cannot be read.
        ConfigError: the file, an override or the stored config is invalid.
    """
    given = load_config(config_path, overrides)
    checkpoint = resume_checkpoint(resume, Path(given.train.output_dir))
    if checkpoint is None:
        return given
    stored = stored_config(checkpoint)  # the weights are read once, by train()
    try:
        base = config_from_dict(stored)
    except ConfigError as e:
        raise ConfigError(f"--resume {checkpoint}: the config stored in it is invalid: {e}") from None
    return layer_config(base, config_path, overrides)


CHECKPOINT_FILES = ("last.pth", "best.pth")
"""The run files that make a folder a run to protect; without them it is an attempt that stopped early."""


def claim_run_folder(
    out_dir: Path, resume: Optional[str], overwrite: bool, checkpoint: Optional[str] = None
) -> list[Path]:
    """What this run does with ``out_dir``, decided before any work: a run is never overwritten by accident.

    A folder that holds no checkpoint (only the ``config.yaml``, ``run_info.json`` or ``metrics.jsonl``
    of an attempt that stopped before its first ``last.pth``) is not a run to protect: it is reused,
    those files removed (:func:`remove_run_files` says so).

    Args:
        out_dir: ``train.output_dir``.
        resume: what was asked: None (a new run), a checkpoint to continue from, or ``"auto"``.
        overwrite: replace a run already in ``out_dir`` (all of its :func:`run_files`).
        checkpoint: the checkpoint ``resume`` resolved to (:func:`resume_checkpoint`). One inside
            ``out_dir`` continues the run there (its files are kept); one elsewhere starts ``out_dir``
            at the checkpoint's iteration, under the same rule as a new run.

    Returns:
        The files to remove before the run writes its own.

    Raises:
        RunExistsError: ``out_dir`` holds a run (a checkpoint) and neither continuing it nor ``overwrite``
            was asked for.
        ConfigError: ``overwrite`` with ``resume="auto"``, or with a checkpoint inside ``out_dir``
            (it would replace the run it continues).
    """
    in_place = checkpoint is not None and Path(checkpoint).resolve().parent == out_dir.resolve()
    if overwrite and (resume == "auto" or in_place):
        raise ConfigError(
            f"--resume {checkpoint or resume} and --overwrite contradict each other: continue the run in "
            f"'{out_dir}' or replace it, not both"
        )
    if in_place:
        return []
    existing = run_files(out_dir)
    holds_run = any(p.name in CHECKPOINT_FILES for p in existing)
    if resume == "auto" and (out_dir / "best.pth").is_file():  # and no last.pth to continue from
        raise RunExistsError(
            f"--resume auto: train.output_dir '{out_dir}' holds best.pth but no last.pth to continue "
            "from; replace the run with --overwrite, or choose another train.output_dir"
        )
    if holds_run and not overwrite:
        if checkpoint:
            raise RunExistsError(
                f"--resume {checkpoint}: train.output_dir '{out_dir}' already holds another run "
                f"({_list_files(existing)}); resume into the checkpoint's own folder, choose another "
                "train.output_dir, or replace that run with --overwrite"
            )
        raise RunExistsError(
            f"train.output_dir '{out_dir}' already holds a run ({_list_files(existing)}); continue it "
            "with --resume auto, choose another train.output_dir, or replace it with --overwrite"
        )
    return existing


class RunFolderInUseError(RunExistsError):
    """Another process is training into ``train.output_dir`` now (it holds the folder's lock)."""


class RunFolderLock:
    """An exclusive lock on ``<train.output_dir>/.run.lock``, held by rank 0 for the whole run.

    ``fcntl.flock(LOCK_EX | LOCK_NB)``: of two runs started into one folder at the same time, the
    second is refused at once; the kernel releases the lock when the process ends, however it ends,
    so a killed run leaves no lock behind (a stale ``.run.lock`` file is just reused). POSIX only: where
    ``fcntl`` is missing (Windows) no lock is taken. :meth:`release` removes the file, and the folder
    (and parents) if :meth:`acquire` created it and it is still empty (a run refused before any work
    leaves nothing behind).
    """

    NAME = ".run.lock"

    def __init__(self, out_dir: Path):
        self.out_dir, self.path = Path(out_dir), Path(out_dir) / self.NAME
        self.fd: Optional[int] = None
        self.created: list[Path] = []

    def acquire(self) -> None:
        """Take the lock, creating the folder if needed.

        Raises:
            RunFolderInUseError: another process holds it ("... is in use by another run (pid N)").
        """
        if fcntl is None:
            return
        missing = [d for d in (self.out_dir, *self.out_dir.parents) if not d.exists()]
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.created = missing
        for _ in range(5):
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                pid = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
                os.close(fd)
                self.created = []
                raise RunFolderInUseError(
                    f"train.output_dir '{self.out_dir}' is in use by another run (pid {pid}); wait for it to "
                    "end, or choose another train.output_dir"
                ) from None
            try:  # the holder may have removed the file between our open and our lock: lock the new one
                same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                os.ftruncate(fd, 0)
                os.write(fd, f"{os.getpid()}\n".encode())
                self.fd = fd
                return
            os.close(fd)
        raise RunFolderInUseError(f"train.output_dir '{self.out_dir}': cannot lock {self.path}")

    def release(self) -> None:
        """Remove the lock file and let go of the lock; remove the folders :meth:`acquire` created if empty."""
        if self.fd is None:
            return
        self.path.unlink(missing_ok=True)  # before closing: nobody locks a file that is gone
        os.close(self.fd)
        self.fd = None
        for folder in self.created:  # the run folder first, then its parents
            try:
                folder.rmdir()
            except OSError:  # not empty: the run wrote into it
                break
        self.created = []

    def __enter__(self) -> RunFolderLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def remove_stale_temp_files(out_dir: Path) -> list[Path]:
    """Remove the temporary files a checkpoint write killed mid-way left in ``out_dir`` (rank 0, lock held).

    Only the names :func:`~deeplabv3plus.checkpoint.write_atomically` gives this run's checkpoints
    (``.last.pth.*.tmp``, ``.best.pth.*.tmp``), only in ``out_dir``; says so in one line.
    """
    stale = sorted(p for name in CHECKPOINT_FILES for p in out_dir.glob(f".{name}.*.tmp") if p.is_file())
    for path in stale:
        path.unlink(missing_ok=True)
    if stale:
        print(
            f"removed {len(stale)} stale temporary checkpoint file{'s' * (len(stale) > 1)} of an interrupted "
            f"write from {out_dir}: {', '.join(p.name for p in stale)}"
        )
    return stale


def _list_files(files: list[Path]) -> str:
    """``last.pth, metrics.jsonl, 2 TensorBoard event files``: :func:`run_files` for a message."""
    names = [p.name for p in files if not p.name.startswith("events.out.tfevents.")]
    events = len(files) - len(names)
    return ", ".join(names + ([f"{events} TensorBoard event file{'s' * (events > 1)}"] if events else []))


def _logged_at(line: str) -> float:
    """The iteration of a ``metrics.jsonl`` line; infinity for a line cut short by a killed process."""
    try:
        return json.loads(line)["iteration"]
    except (ValueError, KeyError, TypeError):
        return math.inf


def remove_run_files(files: list[Path], out_dir: Path) -> None:
    """Remove a replaced run's files, or an early-stopped attempt's (rank 0, just before the run writes its own)."""
    for path in files:
        path.unlink(missing_ok=True)
    if files and not any(p.name in CHECKPOINT_FILES for p in files):
        print(
            f"reusing {out_dir}: it held no checkpoint, only what an attempt that stopped before its first "
            f"last.pth left ({_list_files(files)}), now removed"
        )
    elif files:
        print(f"removed the previous run's files from {out_dir}: {_list_files(files)}")


def trim_metrics(out_dir: Path, iteration: int) -> None:
    """Keep the lines of ``metrics.jsonl`` up to ``iteration``, the resumed checkpoint's.

    The lines after it were logged by the session that went on past that checkpoint before it
    stopped; the resumed run logs those iterations again, and one file holds one history.
    """
    path = out_dir / "metrics.jsonl"
    if not path.is_file():
        return
    lines = path.read_text().splitlines(keepends=True)
    kept = [line for line in lines if _logged_at(line) <= iteration]
    if len(kept) != len(lines):
        write_atomically(path, lambda f: f.write("".join(kept).encode()))


def write_run_files(
    cfg: Config, runtime: Runtime, out_dir: Path, class_weights: Optional[list[float]] = None
) -> None:
    """``config.yaml`` and ``run_info.json`` in the run's folder (rank 0 calls it)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    save_config(cfg, out_dir / "config.yaml")
    info = run_info(cfg, runtime, class_weights)
    (out_dir / "run_info.json").write_text(json.dumps(info, indent=2, default=str))


def announce(cfg: Config, out_dir: Path, num_train: int, num_val: int, generated: bool) -> None:
    """The run's first printed lines: the data it reads and the files it writes.

    Both folders are printed absolute: a relative ``data.root`` or ``train.output_dir`` (the
    shipped configs' ``data/...`` and ``runs/...``) is relative to the folder the command ran in.
    """
    root, out_dir = Path(cfg.data.root).resolve(), out_dir.resolve()
    if generated:
        print(f"generated a synthetic dataset in {root} (data.layout=synthetic)")
    print(
        f"training on {num_train} '{cfg.data.train_split}' images, validating on {num_val} "
        f"'{cfg.data.val_split}' images from {root}; writing the run to {out_dir} (config.yaml, "
        "run_info.json, metrics.jsonl, last.pth, best.pth)"
    )


class MetricsLog:
    """JSON lines in ``metrics.jsonl``, mirrored to TensorBoard when it is installed (rank 0).

    ``start``: the iteration the run starts at; TensorBoard drops what an earlier session logged
    after it (its ``purge_step``), as :func:`trim_metrics` does for ``metrics.jsonl``.
    """

    def __init__(self, out_dir: Path, enabled: bool = True, start: int = 0):
        self.enabled, self.path, self.writer = enabled, out_dir / "metrics.jsonl", None
        if enabled:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.writer = SummaryWriter(str(out_dir / "tensorboard"), purge_step=start or None)
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


# --- checkpoints -------------------------------------------------------------------------------


class Checkpoints:
    """Writes the run's ``last.pth`` and ``best.pth`` (rank 0 only; the others return).

    Remembers what it wrote in this session, so that a failed write can say which earlier file is
    intact. ``resume``: the checkpoint this session continued from, at ``iteration``; when it is this
    run's ``last.pth`` it counts as written.
    """

    def __init__(self, out_dir: Path, cfg: Config, runtime: Runtime, resume: Optional[str], iteration: int):
        self.out_dir, self.cfg, self.runtime = out_dir, cfg, runtime
        self.written: dict[str, int] = {}  # checkpoint name -> iteration, this session
        if resume and Path(resume).resolve() == (out_dir / "last.pth").resolve():
            self.written["last.pth"] = iteration

    def write(self, state: TrainState, name: str) -> None:
        """Save ``state`` as ``name`` atomically; ``best.pth`` holds weights only with train.best_weights_only.

        Raises:
            CheckpointWriteError: the file could not be written (the previous one is intact).
        """
        if not self.runtime.is_main:
            return
        path = self.out_dir / name
        content: dict[str, Any] = {
            "model": state.model.state_dict(),
            "iteration": state.iteration,
            "config": config_to_dict(self.cfg),
            "best_miou": state.best_miou,
        }
        if not (name == "best.pth" and self.cfg.train.best_weights_only):
            content.update(
                optimizer=state.optimizer.state_dict(),
                scheduler=state.scheduler.state_dict(),
                scaler=state.scaler.state_dict() if self.runtime.amp_dtype == torch.float16 else None,
                rng=rng_state(),
            )
        try:
            save_checkpoint(content, path)
        except OSError as e:
            if name in self.written:
                previous = f"the previous {path} (iteration {self.written[name]}) is intact"
            elif path.exists():
                previous = f"the previous {path} is intact"
            else:
                previous = f"no earlier {name} exists"
            raise CheckpointWriteError(
                f"cannot write checkpoint '{path}' at iteration {state.iteration}: {e.strerror or e}; "
                f"{previous}; training stopped (free space, then continue with --resume)",
                path,
                e.errno,
                e.strerror or str(e),
            ) from None
        self.written[name] = state.iteration
        tqdm.write(f"wrote {path} (iteration {state.iteration})")


# --- one step, its log line, validation, stopping --------------------------------------------------


def micro_batch_shares(labels: list[torch.Tensor], ignore_index: int) -> list[float]:
    """Each micro-batch's share of the step's non-void pixels (equal shares when all are void).

    Weighting the micro-batches' mean losses by these makes the summed gradient that of the mean
    over all the step's pixels: exactly the large batch's for (weighted) cross-entropy, which
    averages over the non-void pixels; an approximation for the losses that select pixels per
    batch (bootstrapped top-k, OHEM, Lovász).
    """
    if len(labels) == 1:
        return [1.0]
    counts = [int((y != ignore_index).sum()) for y in labels]
    total = sum(counts)
    return [c / total for c in counts] if total else [1.0 / len(labels)] * len(labels)


def train_step(
    train_model: nn.Module,
    micro_batches: list[tuple[torch.Tensor, torch.Tensor]],
    state: TrainState,
    cfg: Config,
    runtime: Runtime,
    loss_fn: LossFn,
) -> torch.Tensor:
    """One SGD step on ``train.accumulate`` micro-batches ((B, 3, H, W) float images, (B, H, W) int64
    labels each), their gradients summed; returns the step's loss.

    The loss (``loss_fn``, fp32 whatever the autocast dtype) of each micro-batch is weighted by its
    share of the non-void pixels (:func:`micro_batch_shares`); with one micro-batch it is used as is.
    Returned detached, on the device (reading it would synchronise the host).
    """
    shares = micro_batch_shares([labels for _, labels in micro_batches], cfg.data.ignore_index)
    state.optimizer.zero_grad(set_to_none=True)
    total = None
    for k, ((images, labels), share) in enumerate(zip(micro_batches, shares)):
        images = images.to(runtime.device, non_blocking=True)
        labels = labels.to(runtime.device, non_blocking=True)
        if runtime.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        autocast = (
            torch.autocast(runtime.device.type, dtype=runtime.amp_dtype)
            if runtime.amp_dtype
            else nullcontext()
        )
        # Under DDP, gradients are all-reduced at the last micro-batch's backward only.
        last = k == len(micro_batches) - 1
        sync = nullcontext() if last or not hasattr(train_model, "no_sync") else train_model.no_sync()
        with sync:
            with autocast:
                logits = train_model(images)
            loss = loss_fn(logits.float(), labels, state.iteration)
            if len(micro_batches) > 1:
                loss = loss * share
            state.scaler.scale(loss).backward()
        total = loss.detach() if total is None else total + loss.detach()
    state.scaler.step(state.optimizer)
    state.scaler.update()
    state.scheduler.step()
    return total


class LossWindow:
    """The losses of the steps since the last log line, summed on the device (no host synchronisation)."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.start, self.steps, self.loss_sum = time.perf_counter(), 0, 0.0

    def add(self, loss: torch.Tensor) -> None:
        self.loss_sum = self.loss_sum + loss
        self.steps += 1


def log_window(window: LossWindow, state: TrainState, cfg: Config, log: MetricsLog, bar: tqdm) -> None:
    """Mean loss, LR and images/s of the window to ``metrics.jsonl`` and the progress bar; a new window.

    Raises:
        FloatingPointError: the mean loss is not finite (the run diverged).
    """
    iteration = state.iteration
    mean_loss = (window.loss_sum / window.steps).item()
    if not math.isfinite(mean_loss):
        raise FloatingPointError(
            f"training diverged: the mean loss of iterations {iteration - window.steps + 1}-"
            f"{iteration} is {mean_loss}; lower train.lr (now {cfg.train.lr:g}) or check the labels"
        )
    elapsed = time.perf_counter() - window.start
    record = {
        "iteration": iteration,
        "loss": mean_loss,
        "lr": state.optimizer.param_groups[-1]["lr"],
        "images_per_s": window.steps * cfg.train.batch_size * cfg.train.accumulate / max(elapsed, 1e-9),
    }
    log.write(record)
    bar.set_postfix(loss=f"{mean_loss:.3f}", lr=f"{record['lr']:.2e}", img_s=f"{record['images_per_s']:.1f}")
    bar.update(iteration - bar.n)
    window.reset()


def validation_due(iteration: int, cfg: Config) -> bool:
    """Whether to validate after ``iteration`` within the run (the end of the run always validates)."""
    interval = cfg.train.val_interval
    return bool(interval) and iteration % interval == 0 and iteration < cfg.train.max_iters


def validate(
    state: TrainState,
    val_loader: DataLoader,
    class_names: list[str],
    cfg: Config,
    runtime: Runtime,
    log: MetricsLog,
    checkpoints: Checkpoints,
) -> dict[str, Any]:
    """Score the model on the val split with ``cfg.eval``; log it; a new best mIoU writes ``best.pth``.

    Returns:
        :func:`~deeplabv3plus.evaluate.evaluate`'s results (the same on every rank).
    """
    results = evaluate(
        state.model, val_loader,
        dataclasses.replace(cfg.eval, trimap=False),  # the boundary curve is the eval command's
        EvalOptions(device=runtime.device, amp_dtype=runtime.amp_dtype),
        num_classes=cfg.data.num_classes, class_names=class_names, ignore_index=cfg.data.ignore_index,
        progress=runtime.is_main, desc=f"val@{state.iteration}",
    )  # fmt: skip
    miou = results["mIoU"]
    log.write({"iteration": state.iteration, "val_mIoU": miou, "val_pixel_acc": results["pixel_acc"]})
    if runtime.is_main:
        tqdm.write(f"iteration {state.iteration}: val mIoU {100 * (miou or 0):.2f}%")
    if miou is not None and (state.best_miou is None or miou > state.best_miou):
        state.best_miou = miou
        checkpoints.write(state, "best.pth")
    return results


class FiniteGuard:
    """Whether the run stayed finite since the last check: no non-finite weight is ever written.

    :meth:`add` ORs each step's "loss is not finite" into a flag on the device (no host
    synchronisation); :meth:`check`, before every checkpoint and validation, reads it once, with
    one ``isfinite`` over the sum of the parameters' and buffers' sums (agreed between ranks).
    """

    def __init__(self, device: torch.device, iteration: int):
        self.bad = torch.zeros((), dtype=torch.bool, device=device)
        self.checked_at = iteration

    def add(self, loss: torch.Tensor) -> None:
        self.bad = self.bad | ~torch.isfinite(loss)

    def check(
        self, state: TrainState, cfg: Config, runtime: Runtime, group: Any, checkpoints: Checkpoints
    ) -> None:
        """Raise unless every loss since the last check and every weight now is finite.

        Raises:
            FloatingPointError: the run diverged (rank 0; the other ranks raise :class:`PeerFailure`).
        """
        if state.iteration == self.checked_at:
            return
        tensors = [t.detach() for t in state.model.parameters()]
        tensors += [b for b in state.model.buffers() if b.is_floating_point()]
        total = torch.stack([t.float().sum() for t in tensors]).sum()
        flag = (self.bad | ~torch.isfinite(total)).to("cpu", torch.int64).reshape(1)  # one host sync
        if runtime.distributed:
            dist.all_reduce(flag, op=dist.ReduceOp.MAX, group=group)
        if flag.item():
            if not runtime.is_main:
                raise PeerFailure("rank 0 reports the error")
            kept = checkpoints.written.get("last.pth")
            last = checkpoints.out_dir / "last.pth"
            kept_text = (
                f"{last} (iteration {kept}) is the last good checkpoint" if kept is not None
                else f"{last} was not written" if not last.is_file() else f"the previous {last} is kept"
            )  # fmt: skip
            raise FloatingPointError(
                f"training diverged: a non-finite loss or weight between iterations {self.checked_at + 1} and "
                f"{state.iteration}; nothing was written from them, {kept_text}; lower train.lr "
                f"(now {cfg.train.lr:g}) or check the labels"
            )
        self.checked_at = state.iteration


def stop_with_checkpoint(
    signum: int,
    state: TrainState,
    checkpoints: Checkpoints,
    runtime: Runtime,
    group: Any,
    finite: Optional[FiniteGuard] = None,
) -> NoReturn:
    """End the run on an agreed stop signal with ``last.pth`` at the current (finished) step (checked
    finite by ``finite`` first)."""
    if finite is not None:
        finite.check(state, checkpoints.cfg, runtime, group, checkpoints)
    if checkpoints.written.get("last.pth") != state.iteration:
        checkpoints.write(state, "last.pth")
    if runtime.distributed:
        dist.barrier(group=group)  # nobody exits while rank 0 writes
    raise TrainingInterrupted(signum, state.iteration, checkpoints.out_dir / "last.pth")


# --- the loop ------------------------------------------------------------------------------------


def train(
    cfg: Config,
    *,
    resume: Optional[str] = None,
    stop_after: Optional[int] = None,
    overwrite: bool = False,
    config_name: Optional[str] = None,
) -> tuple[nn.Module, dict[str, Any]]:
    """Train a model as ``cfg`` describes; returns the model and its last validation results.

    Args:
        cfg: the full config.
        resume: a checkpoint written by this loop (e.g. ``<output_dir>/last.pth``); training
            continues from its iteration with its optimizer, LR, scaler and RNG states, so the
            weights equal those of an uninterrupted run. ``cfg`` is the run's config (the command
            line builds it with :func:`resume_run_config`: the stored config, then the file's keys
            and the overrides): the keys of :data:`FIXED_ON_RESUME` (the architecture ``model.*``
            but ``pretrained_backbone``, ``data.num_classes``, ``data.ignore_index``, ``train.seed``,
            ``batch_size``, ``accumulate`` and the optimiser's ``lr``, ``momentum``,
            ``weight_decay``, LR multipliers, ``depthwise_weight_decay``) must equal the stored ones;
            every other key may change (``train.max_iters``, the log/val/checkpoint intervals,
            ``train.output_dir``, ``data.root``, ``data.workers``, the device, AMP, ``eval.*``, ...).
            The run is written to ``train.output_dir``: the checkpoint's own folder continues the
            run there; another folder starts at the checkpoint's iteration (its ``metrics.jsonl``
            from there on) under the rule of a new run (refused if it holds a run, unless
            ``overwrite``), and the checkpoint's folder is left untouched. ``"auto"``:
            ``<output_dir>/last.pth`` if it exists, else a new run (:func:`resume_checkpoint`).
        stop_after: stop (with a checkpoint) once this iteration is reached, as if interrupted;
            for pre-emptible jobs and tests. The schedule still runs to ``train.max_iters``.
        overwrite: replace a run already in ``train.output_dir`` (its files are removed just
            before this run writes its own); without it such a folder is an error, unless ``resume``
            continues it in place. With ``resume``: allowed when the checkpoint is not in that folder.
        config_name: where ``cfg`` came from (a file or a shipped config's name), named in the
            message when a resumed run changes a key that may not change.

    Before anything costs (a model built, weights fetched, a file written) the run folder is
    claimed (:func:`claim_run_folder`, under rank 0's exclusive :class:`RunFolderLock` held until
    the run ends; a folder without a checkpoint is reused) and the data checked
    (:meth:`~deeplabv3plus.data.datasets.DataSplits.check`, the leakage check), each split listed
    once for the whole run. Stale temporary files of a checkpoint write that was killed are removed
    (:func:`remove_stale_temp_files`). The loss and the weights are checked finite before every
    checkpoint and validation (:class:`FiniteGuard`): a diverged run stops, leaving the last good
    ``last.pth`` and ``best.pth`` as they were.

    Raises:
        RunExistsError: ``train.output_dir`` holds a run (and neither ``resume`` nor ``overwrite``);
            :class:`RunFolderInUseError` when another run is training into it now.
        ConfigError: ``resume`` with a config that changes a key of :data:`FIXED_ON_RESUME`.
        FloatingPointError: the run diverged (a non-finite loss or weight).
        DatasetError: a split list, a listed file, or the first pair of a split is missing or invalid.
        TrainingInterrupted: on SIGTERM/SIGINT, after the current step and a ``last.pth`` at it
            (under torchrun every rank stops at the same iteration).
        CheckpointWriteError: a checkpoint could not be written (the previous one is intact).
        PeerFailure: under torchrun, on the ranks that did not fail themselves.
    """
    out_dir = Path(cfg.train.output_dir)
    checkpoint = resume_checkpoint(resume, out_dir)
    runtime = start_runtime(cfg)
    group = host_group(runtime)
    # A resumed run is the same run: its stored state, and the keys that may not change, checked.
    saved = load_resume_checkpoint(checkpoint, cfg, runtime, group, config_name)
    with RunFolderLock(out_dir) as lock:
        # Checked before it costs: what becomes of the run folder (rank 0 holds its lock from here to
        # the end), and the data, before any model is built, weight fetched or file written
        # (generating the default synthetic set aside).
        with all_or_none(runtime, group):
            if runtime.is_main:
                lock.acquire()
            replaced = claim_run_folder(out_dir, resume, overwrite, checkpoint)
            generating = LAYOUTS[cfg.data.layout].generated and not is_synthetic_root(Path(cfg.data.root))
            splits = DataSplits(cfg.data)  # each split listed once: checked here, read by the loaders
            splits.check([cfg.data.train_split, cfg.data.val_split])
            splits.check_leakage()
        torch.manual_seed(cfg.train.seed)  # identical initial weights on every rank

        # Build and restore: the model, its optimisation, the data, the run's folder.
        model = build_model_to_train(cfg, saved, checkpoint, runtime, group)
        state = build_train_state(model, cfg, runtime)
        if saved:
            restore(state, saved)
        train_model = wrap_for_training(model, cfg, runtime)
        with all_or_none(runtime, group):
            train_loader, val_loader, train_set, val_set = build_loaders(
                cfg, runtime, state.iteration, splits
            )
            class_weights = resolve_class_weights(cfg, train_set)
            loss_fn = build_train_loss(cfg, class_weights)
            if runtime.is_main:
                remove_run_files(replaced, out_dir)
                remove_stale_temp_files(out_dir)
                if saved and Path(checkpoint).resolve().parent == out_dir.resolve():
                    trim_metrics(out_dir, state.iteration)  # continuing in place: one history
                write_run_files(cfg, runtime, out_dir, class_weights)
        if runtime.is_main:
            announce(cfg, out_dir, len(train_set), len(val_set), generating)
            if saved:
                print(f"resumed from {checkpoint} at iteration {state.iteration}")
            if cfg.train.loss.class_weights == "auto":
                shown = ", ".join(f"{w:.3g}" for w in class_weights)
                print(f"train.loss.class_weights=auto (median frequency, capped to 0.1..10): [{shown}]")
        class_names = train_set.class_names
        log = MetricsLog(out_dir, enabled=runtime.is_main, start=state.iteration)
        checkpoints = Checkpoints(out_dir, cfg, runtime, checkpoint, state.iteration)
        # Restore the RNG last: everything above (data workers, model init) must not shift it.
        if saved:
            set_rng_state(saved["rng"])

        end = min(cfg.train.max_iters, stop_after) if stop_after is not None else cfg.train.max_iters
        set_train_mode(train_model, cfg)
        bar = tqdm(
            total=cfg.train.max_iters,
            initial=state.iteration,
            desc="train",
            disable=not runtime.is_main,
            dynamic_ncols=True,
        )
        results: dict[str, Any] = {}
        window, stop, finite = LossWindow(), StopSignals(), FiniteGuard(runtime.device, state.iteration)
        try:
            with stop:
                batches = iter(train_loader)
                while state.iteration < end:
                    # Checked between steps, before the next batch is fetched: the checkpoint is of a
                    # finished step, and every rank stops at the same iteration.
                    signum = agreed_signal(stop.signum, runtime, group)
                    if signum is not None:
                        stop_with_checkpoint(signum, state, checkpoints, runtime, group, finite)
                    micro_batches = [next(batches) for _ in range(cfg.train.accumulate)]
                    loss = train_step(train_model, micro_batches, state, cfg, runtime, loss_fn)
                    state.iteration += 1
                    window.add(loss)
                    finite.add(loss)
                    if state.iteration % cfg.train.log_interval == 0 or state.iteration == end:
                        log_window(window, state, cfg, log, bar)
                    validating = validation_due(state.iteration, cfg)
                    saving = state.iteration % cfg.train.ckpt_interval == 0 or state.iteration == end
                    if validating or saving:  # nothing non-finite is validated (best.pth) or written
                        finite.check(state, cfg, runtime, group, checkpoints)
                    if validating:
                        results = validate(state, val_loader, class_names, cfg, runtime, log, checkpoints)
                        set_train_mode(train_model, cfg)
                    if saving:
                        checkpoints.write(state, "last.pth")
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

        if state.iteration >= cfg.train.max_iters:
            results = validate(state, val_loader, class_names, cfg, runtime, log, checkpoints)
            if runtime.is_main:
                print(results["table"])
                (out_dir / "val_results.json").write_text(json.dumps(results, indent=2))
                print(f"wrote {out_dir / 'val_results.json'}")
        return model, results
