"""The process a job runs in: its rank, device and precision, stop signals, and agreement between ranks.

Layer 1 (docs/architecture.md), after ``config``: imports torch and the config only. :func:`rank` and
:func:`is_main_process` are the one answer to "which process am I" (the joined process group's
rank, or torchrun's ``RANK`` before the group is joined); :func:`setup_runtime` joins the group.
Under torchrun every rank must stop together: :func:`all_or_none` turns one rank's error into one
report and :class:`PeerFailure` on the others, :func:`agreed_signal` makes every rank see a
SIGTERM/SIGINT that reached any of them.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Optional

import torch
import torch.distributed as dist

from .config import DEVICE_FORMS, Config, ConfigError

AMP_DTYPES: dict[str, Optional[torch.dtype]] = {"off": None, "bf16": torch.bfloat16, "fp16": torch.float16}
"""The autocast dtype of each ``train.amp`` / ``--amp`` setting."""


# --- which process am I --------------------------------------------------------------------------


def is_distributed() -> bool:
    """Whether this process has joined a ``torch.distributed`` process group (collectives run)."""
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    """This process's rank: the process group's, or torchrun's ``RANK`` before it is joined; else 0."""
    if is_distributed():
        return dist.get_rank()
    return int(os.environ.get("RANK", "0")) if int(os.environ.get("WORLD_SIZE", "1")) > 1 else 0


def is_main_process() -> bool:
    """Whether this process prints, writes files and shows progress bars (rank 0)."""
    return rank() == 0


# --- device and precision ------------------------------------------------------------------------


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


def resolve_device(text: str, key: str = "train.device") -> torch.device:
    """The device ``text`` names (``auto``: CUDA when available, else the CPU), checked to exist here.

    Raises:
        ConfigError: one line naming ``key``: not one of :data:`~deeplabv3plus.config.DEVICE_FORMS`,
            or CUDA / that GPU / MPS is not available on this machine.
    """
    if text == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(text)
    except (RuntimeError, ValueError):
        device = None
    if (
        device is None
        or device.type not in ("cpu", "cuda", "mps")
        or (device.type != "cuda" and device.index is not None)
    ):
        raise ConfigError(f"{key}: expected {DEVICE_FORMS}, got {text!r}")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(
                f"{key}={text!r} but CUDA is not available on this machine; expected {DEVICE_FORMS} "
                "(cpu or auto here)"
            )
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise ConfigError(
                f"{key}={text!r} but this machine has {count} CUDA device(s): expected cuda:0..cuda:{count - 1}"
            )
    if device.type == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise ConfigError(
                f"{key}={text!r} but MPS (Apple GPU) is not available on this machine; expected {DEVICE_FORMS}"
            )
    return device


def setup_runtime(cfg: Config) -> Runtime:
    """Join the torchrun process group when launched by torchrun, pick device and precision.

    Reads ``cfg.train.device``, ``cfg.train.amp`` and ``cfg.train.channels_last``.

    Raises:
        ConfigError: ``train.device`` is not a device string, or names a device this machine lacks.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    device = resolve_device(cfg.train.device)
    if device.type == "cuda":
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
    # channels_last is the faster layout for convolutions on GPUs (cuDNN) and CPUs (oneDNN: on this
    # project's CPU a training step takes 0.89-0.96x the NCHW time, docs/benchmarks.md).
    channels_last = cfg.train.channels_last == "on" or (
        cfg.train.channels_last == "auto" and device.type in ("cuda", "cpu")
    )
    return Runtime(device, rank(), world_size, AMP_DTYPES[amp], channels_last)


def host_group(runtime: Runtime) -> Any:
    """The process group for host-side agreements (errors, stop signals): gloo, so that they never
    synchronise a CUDA stream. None (the default group) when that is gloo already or single-process."""
    if runtime.distributed and dist.get_backend() != "gloo":
        return dist.new_group(backend="gloo")
    return None


# --- stopping together ---------------------------------------------------------------------------


class PeerFailure(Exception):
    """Another process of the distributed job failed and reports it; this one stops quietly."""


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


def agreed_signal(local: Optional[int], runtime: Runtime, group: Any) -> Optional[int]:
    """The stop signal any rank received (all ranks get the same answer), or None."""
    if not runtime.distributed:
        return local
    flag = torch.tensor([local or 0], dtype=torch.int64)
    dist.all_reduce(flag, op=dist.ReduceOp.MAX, group=group)
    return int(flag.item()) or None
