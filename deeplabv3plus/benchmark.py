"""Throughput, latency, memory and Multiply-Adds of our models next to other DeepLab implementations.

Every candidate model is timed in the same process, on the same input, and the timed repeats are
*interleaved* (repeat 1 of every model, then repeat 2 of every model, ...): on a shared machine the
background load then affects all models alike, and the medians and their ratios stay comparable
even when the absolute numbers drift.

Peers (optional, imported lazily): ``segmentation_models_pytorch.DeepLabV3Plus`` (ResNet-101,
OS 16; its ASPP and decoder use separable convs, one 3x3 fuse conv, dropout 0.5) and torchvision's
``deeplabv3_resnet101`` (DeepLabv3, OS 8, no decoder). Their configurations differ from ours, so each
row carries its own Multiply-Adds, and ours is also run at the configuration closest to each peer.

The data pipeline is measured alone: decode + training augmentation of one process (one DataLoader
worker), in images/s.
"""

from __future__ import annotations

import contextlib
import copy
import ctypes
import dataclasses
import datetime
import functools
import importlib.util
import json
import os
import platform
import statistics
import tempfile
import threading
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Union

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader
from torch.utils.flop_counter import FlopCounterMode

from . import catalog
from ._compat import grad_scaler
from .builders import build_model
from .catalog import IGNORE_INDEX
from .config import DataConfig, ModelConfig
from .data.datasets import SegmentationDataset, build_dataset
from .export import OnnxRuntimeModel, export_onnx, load_int8_program, quantize_onnx_int8, quantize_pt2e_int8
from .inference import AMP_DTYPES
from .models import prepare_for_inference

# Peak dense (no 2:4 sparsity) tensor/vector throughput in TFLOP/s, by device-name substring (first
# match wins) and math precision. The datasheets quote the sparse figure for tensor cores with an
# asterisk; dense is half of it.
#   H100 SXM: https://www.nvidia.com/en-us/data-center/h100/ (datasheet table "H100 SXM"):
#     FP32 67, TF32 989* (494.7 dense), BF16/FP16 1,979* (989.4 dense).
#   H100 PCIe (same page, "H100 NVL/PCIe" column of the 2022 datasheet): FP32 51, TF32 756* (378 dense),
#     BF16/FP16 1,513* (756 dense).
#   H200 SXM: https://www.nvidia.com/en-us/data-center/h200/ : same compute as H100 SXM (FP32 67,
#     TF32 989*, BF16/FP16 1,979*); only the memory differs.
#   A100 SXM/PCIe: https://www.nvidia.com/content/dam/en-zz/Solutions/Data-Center/a100/pdf/
#     nvidia-a100-datasheet-us-nvidia-1758950-r4-web.pdf : FP32 19.5, TF32 156 (312*), BF16/FP16 312 (624*).
# "tf32" is what fp32 convolutions run as by default on these GPUs (torch.backends.cudnn.allow_tf32
# is True by default), so it is the peak used for fp32 runs unless TF32 is switched off.
PEAK_TFLOPS: list[tuple[str, dict[str, float]]] = [
    ("H200", {"fp32": 67.0, "tf32": 494.7, "bf16": 989.4, "fp16": 989.4}),
    ("H100 PCIe", {"fp32": 51.0, "tf32": 378.0, "bf16": 756.0, "fp16": 756.0}),
    ("H100", {"fp32": 67.0, "tf32": 494.7, "bf16": 989.4, "fp16": 989.4}),
    ("A100", {"fp32": 19.5, "tf32": 156.0, "bf16": 312.0, "fp16": 312.0}),
]

PEERS = tuple(catalog.BENCHMARK_PEERS)


@dataclass
class BenchOptions:
    """How to run: device, input, numerics and the timing protocol.

    Attributes:
        device: 'cpu', 'cuda' or 'cuda:N'.
        batch: images per step.
        height, width: input size in pixels.
        num_classes: output classes of every candidate (and label range of the training step).
        amp: 'off', 'bf16' or 'fp16' (torch.autocast; fp16 training uses a GradScaler).
        channels_last: model and input in NHWC memory format.
        compile: wrap each model in torch.compile.
        freezing: with ``compile``, inference graphs use inductor's freezing (weights become
            constants: BN folded, weights prepacked for oneDNN, conv + ReLU/add fused); training
            is compiled without it.
        cudnn_benchmark: torch.backends.cudnn.benchmark (CUDA only).
        warmup: untimed steps per model and mode before timing.
        repeats: timed steps per model and mode (interleaved across models); the median is reported.
        threads: torch intra-op threads (None leaves torch's default).
        modes: any of 'infer' (forward under inference_mode) and 'train' (forward + cross-entropy +
            backward + SGD step on random labels).
        memory: measure peak memory in one extra untimed step per model and mode.
        peak_tflops: the device's peak in TFLOP/s (None: look it up by GPU name; unknown on CPU).
    """

    device: str = "cpu"
    batch: int = 1
    height: int = 513
    width: int = 513
    num_classes: int = 21
    amp: str = "off"
    channels_last: bool = False
    compile: bool = False
    freezing: bool = False
    cudnn_benchmark: bool = False
    warmup: int = 2
    repeats: int = 10
    threads: Optional[int] = None
    modes: tuple[str, ...] = ("infer", "train")
    memory: bool = True
    peak_tflops: Optional[float] = None


@dataclass
class Candidate:
    """One model to time: a name, a builder (called once on the device, once on 'meta' to count).

    ``channels_last`` overrides :attr:`BenchOptions.channels_last` for this model, so both memory
    formats of one model can be timed in the same interleaved run. ``prepare`` turns the built
    (trainable) model into the one timed in 'infer' mode (ours: :func:`prepare_for_inference`, the
    default inference path); training always times the built model. ``count_build`` builds the
    model whose Multiply-Adds and parameters are counted on 'meta' (default: ``build``; an
    onnxruntime session cannot be counted, its PyTorch source can). ``modes`` limits the modes
    this candidate runs in (None: all of :attr:`BenchOptions.modes`).
    """

    name: str
    build: Callable[[], nn.Module]
    description: str
    config: dict = field(default_factory=dict)
    channels_last: Optional[bool] = None
    prepare: Optional[Callable[[nn.Module], nn.Module]] = None
    count_build: Optional[Callable[[], nn.Module]] = None
    modes: Optional[tuple[str, ...]] = None
    compare_to: tuple[str, ...] = ()
    """Peers this candidate's configuration matches: the report gives its time and time per
    Multiply-Add relative to each (see :func:`comparisons`)."""


class _OutOnly(nn.Module):
    """torchvision's segmentation models return ``{"out": logits}``; this returns the tensor."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)["out"]


def describe_ours(cfg: dict) -> str:
    """One-line summary of an ours-model config dict (ModelConfig fields)."""
    parts = [cfg.get("backbone", "resnet101"), f"OS{cfg.get('output_stride', 16)}"]
    parts.append("decoder" if cfg.get("decoder", True) else "no decoder")
    if cfg.get("separable", False):
        parts.append("SC")
    if cfg.get("backbone", "resnet101").startswith("resnet"):
        parts.append(cfg.get("resnet_variant", "standard"))
    return ", ".join(parts)


def ours_candidate(name: str, model_cfg: ModelConfig, prepared: bool = True) -> Candidate:
    """Our model from a ModelConfig; pretrained weights are never loaded (timing needs none).

    ``prepared``: inference times :func:`prepare_for_inference`'s copy, the path ``evaluate()``,
    ``scripts/eval.py`` and ``scripts/predict.py`` run; False times the plain eager model.
    """
    cfg = dataclasses.asdict(model_cfg)
    cfg["pretrained_backbone"] = None
    desc = (
        "ours: "
        + describe_ours(cfg)
        + (" (inference: prepared)" if prepared else " (inference: plain eager model)")
    )
    return Candidate(
        name, lambda: build_model(**cfg), desc, cfg, prepare=prepare_for_inference if prepared else None
    )


class _Autocast(nn.Module):
    """A model run under ``torch.autocast(dtype)``: fp32 weights cast per call (the baseline bf16 path)."""

    def __init__(self, model: nn.Module, dtype: torch.dtype):
        super().__init__()
        self.model, self.dtype = model, dtype

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(x.device.type, dtype=self.dtype):
            return self.model(x).float()


def _label(source: Candidate) -> str:
    """What a precision row is a variant of: ours' configuration, or the probe's description."""
    return "ours: " + describe_ours(source.config) if source.config else source.description


def int8_candidate(
    name: str,
    model_cfg: ModelConfig,
    height: int,
    width: int,
    threads: Optional[int] = None,
    source: Optional[Candidate] = None,
) -> Candidate:
    """Ours (or ``source``'s model) exported to ONNX and quantised to int8
    (:func:`~deeplabv3plus.export.quantize_onnx_int8`), run by onnxruntime on CPU. For timing only:
    calibrated on two random images (the ranges do not change the speed; ``deeplabv3plus export
    --int8`` calibrates on training images)."""
    source = source or ours_candidate(name, model_cfg)

    def build() -> nn.Module:
        gen = torch.Generator().manual_seed(0)
        with tempfile.TemporaryDirectory() as tmp:
            fp32, int8 = os.path.join(tmp, "model.onnx"), os.path.join(tmp, "int8.onnx")
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                export_onnx(source.build(), fp32, height=height, width=width, exporter="torchscript")
            quantize_onnx_int8(
                fp32, int8, [torch.randn(1, 3, height, width, generator=gen) for _ in range(2)]
            )
            return OnnxRuntimeModel(int8, threads)

    desc = _label(source) + ", int8 (ONNX Runtime static QDQ, per-channel), onnxruntime CPU"
    return Candidate(
        name, build, desc, source.config, channels_last=False, count_build=source.build, modes=("infer",)
    )


def int8_pt2e_candidate(
    name: str, model_cfg: ModelConfig, height: int, width: int, source: Optional[Candidate] = None
) -> Candidate:
    """Ours (or ``source``'s model) quantised to int8 with PyTorch's PT2E x86 flow
    (:func:`~deeplabv3plus.export.quantize_pt2e_int8`) and compiled by Inductor
    (:func:`~deeplabv3plus.export.load_int8_program`). For timing only: calibrated on two random
    images. ``build`` compiles at 1x3xHxW (tens of seconds); another batch size recompiles once, in
    the warmup steps."""
    source = source or ours_candidate(name, model_cfg)

    def build() -> nn.Module:
        gen = torch.Generator().manual_seed(0)
        calibration = [torch.randn(1, 3, height, width, generator=gen) for _ in range(2)]
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "int8.pt2")
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                quantize_pt2e_int8(source.build(), path, calibration)
                program = load_int8_program(path)
                program(calibration[0])  # compile here, not in a timed step
            return program

    desc = _label(source) + ", int8 (PT2E x86 Inductor quantizer), torch.compile CPU"
    return Candidate(
        name, build, desc, source.config, channels_last=False, count_build=source.build, modes=("infer",)
    )


class ConvPeakProbe(nn.Module):
    """A precision's practical peak on this machine: wide 1x1 convolutions, oneDNN's best case.

    (N, 3, H, W) -> 8x8 average pool -> 1x1 conv to 1024 channels -> four 1x1 1024 -> 1024 convs
    with ReLU -> 1x1 conv to 21 channels, (N, 21, H/8, W/8). The four wide convs are 99% of its
    Multiply-Adds: large, dense GEMMs with no halo, padding or depthwise work. A segmentation model's
    GMAC/s as a share of the probe's, run through the same toolchain and precision, says how close
    it comes to what that toolchain can do here (the spec-sheet peak needs the CPU model, clock and
    vector units, which a VM often does not name).
    """

    WIDTH, DEPTH, POOL = 1024, 4, 8

    def __init__(self, num_classes: int = 21):
        super().__init__()
        width = self.WIDTH
        self.pool = nn.AvgPool2d(self.POOL)
        self.stem = nn.Conv2d(3, width, 1)
        self.body = nn.Sequential(
            *[m for _ in range(self.DEPTH) for m in (nn.Conv2d(width, width, 1), nn.ReLU())]
        )
        self.head = nn.Conv2d(width, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(self.stem(self.pool(x))))


PROBE_OF = {
    "ours": "probe",
    "ours-bf16": "probe-bf16",
    "ours-int8": "probe-int8",
    "ours-int8-pt2e": "probe-int8-pt2e",
}
"""The probe row that measures each precision row's toolchain (:class:`ConvPeakProbe`)."""


def probe_candidates(
    precisions: tuple[str, ...], size: Optional[tuple[int, int]] = None, threads: Optional[int] = None
) -> list[Candidate]:
    """:class:`ConvPeakProbe` through each toolchain of ours' rows: 'probe' (prepared fp32),
    'probe-bf16', 'probe-int8' (ONNX Runtime), 'probe-int8-pt2e', as ``precisions`` asks (and the
    extras allow: :func:`precision_candidates` notes what is skipped)."""
    probe = Candidate(
        "probe", ConvPeakProbe, "1x1-conv probe (4 x 1024->1024 at 1/8 size)", {},
        prepare=prepare_for_inference, modes=("infer",),
    )  # fmt: skip
    return [probe, *precision_candidates(None, precisions, size, threads, source=probe)[0]]


def probe_fractions(report: dict) -> list[dict]:
    """Each precision row's GMAC/s as a share of its toolchain's probe (:data:`PROBE_OF`), per mode."""
    rows = {(r["mode"], r["name"]): r for r in report["results"]}
    out = []
    for (mode, name), row in rows.items():
        probe = rows.get((mode, PROBE_OF.get(name, "")))
        if probe is not None:
            out.append(
                dict(
                    mode=mode, name=name, probe=probe["name"], gmacs_per_s=row["gmacs_per_s"],
                    probe_gmacs_per_s=probe["gmacs_per_s"], fraction=row["gmacs_per_s"] / probe["gmacs_per_s"],
                )
            )  # fmt: skip
    return out


def precision_candidates(
    model_cfg: Optional[ModelConfig],
    precisions: tuple[str, ...],
    size: Optional[tuple[int, int]] = None,
    threads: Optional[int] = None,
    source: Optional[Candidate] = None,
) -> tuple[list[Candidate], list[str]]:
    """Inference rows of ours (or ``source``) at other precisions, to time next to its prepared fp32
    row in one run, named after it ('ours-bf16', 'probe-int8', ...).

    ``"bf16"`` adds '-bf16', :func:`prepare_for_inference` with ``precision="bf16"`` (weights
    rounded once, packed oneDNN bf16 convs), and for ours 'ours-autocast-bf16', the plain model
    under ``torch.autocast`` (fp32 weights cast on every call: what a user gets without preparing).
    ``"int8"`` adds '-int8' (:func:`int8_candidate`, exported at ``size``; needs the extra onnx);
    ``"int8-pt2e"`` '-int8-pt2e' (:func:`int8_pt2e_candidate`, compiled at ``size``; the extra pt2e).

    Returns:
        The candidates and notes on rows that were skipped.
    """
    source = source or ours_candidate("ours", model_cfg)
    base, size = source.name, size or (513, 513)
    cands, notes = [], []
    if "bf16" in precisions:
        cands.append(
            dataclasses.replace(
                source, name=f"{base}-bf16", prepare=functools.partial(prepare_for_inference, precision="bf16"),
                description=_label(source) + " (inference: prepared, bf16 weights)", modes=("infer",),
            )
        )  # fmt: skip
        if source.config:  # ours: the baseline a user gets without preparing
            cand = ours_candidate(f"{base}-autocast-bf16", model_cfg, prepared=False)
            cand.prepare = lambda model: _Autocast(model.eval(), torch.bfloat16)
            cand.description = cand.description.replace(
                "plain eager model)", "plain model under autocast bf16)"
            )
            cand.modes = ("infer",)
            cands.append(cand)
    if "int8" in precisions:
        if onnx_available():
            cands.append(int8_candidate(f"{base}-int8", model_cfg, *size, threads=threads, source=source))
        else:
            notes.append(f"{base}-int8 skipped: onnx/onnxruntime are not installed (pip install '.[onnx]')")
    if "int8-pt2e" in precisions:
        if importlib.util.find_spec("torchao") is not None:
            cands.append(int8_pt2e_candidate(f"{base}-int8-pt2e", model_cfg, *size, source=source))
        else:
            notes.append(f"{base}-int8-pt2e skipped: torchao is not installed (pip install '.[pt2e]')")
    return cands, notes


def onnx_available() -> bool:
    return all(importlib.util.find_spec(m) is not None for m in ("onnx", "onnxruntime"))


def onnx_candidate(
    name: str, model_cfg: ModelConfig, height: int, width: int, threads: Optional[int] = None
) -> Candidate:
    """Ours exported to ONNX (from the prepared model, BN folded; legacy exporter) run by onnxruntime.

    Inference only, CPU (``CPUExecutionProvider``). The export happens in ``build``, into a
    temporary file that is deleted once the session has loaded it.
    """
    source = ours_candidate(name, model_cfg)

    def build() -> nn.Module:
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "model.onnx")
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                export_onnx(source.build(), path, height=height, width=width, exporter="torchscript")
            return OnnxRuntimeModel(path, threads)

    desc = "ours: " + describe_ours(source.config) + ", ONNX export of the prepared model, onnxruntime CPU"
    return Candidate(
        name, build, desc, source.config, channels_last=False, count_build=source.build, modes=("infer",)
    )


def smp_available() -> bool:
    return importlib.util.find_spec("segmentation_models_pytorch") is not None


def smp_candidate(num_classes: int, encoder: str = "resnet101") -> Candidate:
    """segmentation_models_pytorch's DeepLabV3Plus on a ResNet ``encoder``, OS 16, random init."""

    def build() -> nn.Module:
        import segmentation_models_pytorch as smp

        return smp.DeepLabV3Plus(
            encoder_name=encoder, encoder_weights=None, classes=num_classes, encoder_output_stride=16
        )

    return Candidate(
        "smp", build, f"smp DeepLabV3Plus: {encoder}, OS16, separable ASPP + decoder (1 fuse conv)", {}
    )


def torchvision_candidate(num_classes: int, backbone: str = "resnet101") -> Candidate:
    """torchvision's deeplabv3_resnet50/101 (DeepLabv3: OS 8, no decoder), random init, no aux head."""

    def build() -> nn.Module:
        from torchvision.models import segmentation

        builder = getattr(segmentation, f"deeplabv3_{backbone}")
        return _OutOnly(builder(weights=None, weights_backbone=None, num_classes=num_classes, aux_loss=False))

    return Candidate("torchvision", build, f"torchvision deeplabv3_{backbone}: OS8, no decoder", {})


def default_candidates(
    model_cfg: ModelConfig,
    peers: tuple[str, ...] = PEERS,
    both_memory_formats: bool = False,
    *,
    eager: bool = False,
    onnx: Optional[tuple[int, int]] = None,
    threads: Optional[int] = None,
    precisions: tuple[str, ...] = (),
    probe: bool = False,
) -> tuple[list[Candidate], list[str]]:
    """Ours as configured, plus each available peer and ours at the configuration closest to it.

    Every 'ours' row runs its inference through :func:`prepare_for_inference` (the default path).

    Args:
        model_cfg: ours' configuration ('ours').
        peers: any of :data:`PEERS`.
        both_memory_formats: add ours again as 'ours-nhwc' (and each peer-matching row, e.g.
            'ours-v3-os8-nhwc'), always channels_last input (and, for training, model), to time
            both memory formats in one run (the other rows follow :attr:`BenchOptions.channels_last`).
        eager: add 'ours-eager', inference of the plain model (not prepared), for the gain.
        onnx: (height, width) to export ours at: adds 'ours-onnx', the ONNX export of the prepared
            model under onnxruntime (inference only, CPU; skipped with a note without the extra).
        threads: onnxruntime intra-op threads (as ``--threads``).
        precisions: inference at other precisions (:func:`precision_candidates`): "bf16", "int8",
            "int8-pt2e" (int8 is exported at ``onnx``'s size, else 513x513).
        probe: add :class:`ConvPeakProbe` rows through the toolchain of 'ours' and of each precision
            row (:func:`probe_candidates`); the report then gives each row's share of its probe.

    Returns:
        The candidates and notes on peers that were skipped.
    """
    cands = [ours_candidate("ours", model_cfg)]
    if both_memory_formats:
        cands.append(_nhwc_twin("ours", model_cfg))
    notes = []
    if eager:
        cand = ours_candidate("ours-eager", model_cfg, prepared=False)
        cand.modes = ("infer",)  # training is the same model either way
        cands.append(cand)
    if onnx is not None:
        if onnx_available():
            cands.append(onnx_candidate("ours-onnx", model_cfg, *onnx, threads=threads))
        else:
            notes.append("ours-onnx skipped: onnx/onnxruntime are not installed (pip install '.[onnx]')")
    extra, skipped = precision_candidates(model_cfg, precisions, onnx, threads)
    cands += extra
    notes += skipped
    # The peers come with the trunks of their catalogue entries: take ours' when they share it.
    trunks = [
        b
        for b in catalog.BENCHMARK_PEERS["smp"].backbones
        if b in catalog.BENCHMARK_PEERS["torchvision"].backbones
    ]
    peer_backbone = model_cfg.backbone if model_cfg.backbone in trunks else trunks[-1]
    # The rows of ours' own configuration ('ours' and its eager / NHWC / ONNX twins).
    own = list(cands)
    if "smp" in peers:
        if smp_available():
            # smp's ASPP and decoder convs are separable: ours with SC is the closest configuration.
            sc = dataclasses.replace(model_cfg, separable=True)
            cands += _closest_to_peer("smp", "ours-sc", sc, model_cfg, own, both_memory_formats)
            cands.append(smp_candidate(model_cfg.num_classes, peer_backbone))
        else:
            notes.append("smp skipped: segmentation_models_pytorch is not installed (pip install '.[smp]')")
    if "torchvision" in peers:
        # torchvision's deeplabv3 is OS 8 without decoder: ours as DeepLabv3 at OS 8 matches it.
        v3 = dataclasses.replace(model_cfg, output_stride=8, decoder=False, separable=False)
        cands += _closest_to_peer("torchvision", "ours-v3-os8", v3, model_cfg, own, both_memory_formats)
        cands.append(torchvision_candidate(model_cfg.num_classes, peer_backbone))
    if probe:  # last: a probe matches no peer
        cands += probe_candidates(precisions, onnx, threads)
    return cands, notes


def _nhwc_twin(name: str, cfg: ModelConfig, compare_to: tuple[str, ...] = ()) -> Candidate:
    """Ours at ``cfg`` as '<name>-nhwc': channels_last input (and model, for training)."""
    cand = ours_candidate(name + "-nhwc", cfg)
    cand.channels_last = True
    cand.description += ", channels_last input (and model, for training)"
    cand.compare_to = compare_to
    return cand


def _closest_to_peer(
    peer: str,
    name: str,
    closest: ModelConfig,
    model_cfg: ModelConfig,
    own: list[Candidate],
    both_memory_formats: bool,
) -> list[Candidate]:
    """The rows to add for ``peer``: ours at its ``closest`` configuration as ``name`` (and its
    NHWC twin), compared with it; none when ``closest`` is ours' own ``model_cfg``: then the
    ``own`` rows are marked as compared with it instead."""
    if closest == model_cfg:
        for cand in own:
            cand.compare_to += (peer,)
        return []
    rows = [ours_candidate(name, closest)]
    rows[-1].compare_to = (peer,)
    if both_memory_formats:
        rows.append(_nhwc_twin(name, closest, (peer,)))
    return rows


def count_params(build: Callable[[], nn.Module]) -> int:
    """Parameters of a freshly built model (built on the meta device: no memory)."""
    with torch.device("meta"):
        return sum(p.numel() for p in build().parameters())


def count_step_macs(build: Callable[[], nn.Module], opts: BenchOptions, train: bool) -> int:
    """Multiply-Adds of one step (whole batch) of a freshly built model, counted on the meta device.

    Training is counted as 3x the forward: the backward computes a gradient for the input and one
    for the weights of every conv/matmul, each as costly as its forward (the usual convention; it
    overcounts the first conv, whose input needs no gradient). ``torch.utils.flop_counter`` is not
    used for the backward because it counts grouped (depthwise) conv gradients as dense convs
    (torch 2.14: 256x too many for a 256-channel depthwise 3x3).

    Args:
        build: the model builder.
        opts: input size, batch and classes.
        train: count a training step instead of an inference forward.

    Returns:
        MACs = FLOPs / 2 as counted by ``torch.utils.flop_counter`` (convs, matmuls).
    """
    with torch.device("meta"):
        model = build()
    model.eval()
    x = torch.empty(opts.batch, 3, opts.height, opts.width, device="meta")
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(x)
    forward = counter.get_total_flops() // 2
    return 3 * forward if train else forward


def device_name(device: torch.device) -> str:
    """GPU name from CUDA, or the CPU model from /proc/cpuinfo (platform.processor() elsewhere)."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    with contextlib.suppress(OSError):
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    return platform.processor() or "cpu"


def peak_tflops_for(device: torch.device, amp: str) -> Optional[float]:
    """The device's peak dense TFLOP/s at the precision the run's convolutions use, or None if unknown."""
    if device.type != "cuda":
        return None
    precision = amp if amp in ("bf16", "fp16") else ("tf32" if torch.backends.cudnn.allow_tf32 else "fp32")
    name = device_name(device)
    for key, peaks in PEAK_TFLOPS:
        if key in name:
            return peaks[precision]
    return None


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _malloc_trim() -> None:
    """Give the heap's free pages back to the OS (glibc only), so the next step's RSS growth is its peak.

    Without it a step reuses the memory the previous steps freed and its RSS delta reads ~0.
    """
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def _rss_bytes() -> int:
    """Resident set size of this process in bytes (Linux /proc; 0 elsewhere)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        return 0


@contextlib.contextmanager
def _rss_peak_sampler(interval_s: float = 0.001) -> Iterator[dict]:
    """Samples RSS in a thread; yields a dict whose 'delta' is peak RSS minus RSS at entry, in bytes.

    CPU tensors come from malloc, which has no peak counter: sampling is the portable way to see the
    transient activations (an approximation: allocations shorter than the interval can be missed).
    """
    base = _rss_bytes()
    result = {"delta": 0}
    peak = [base]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], _rss_bytes())
            stop.wait(interval_s)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield result
    finally:
        stop.set()
        thread.join()
        result["delta"] = max(0, max(peak[0], _rss_bytes()) - base)


def _autocast(device: torch.device, amp: str):
    if amp == "off":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=AMP_DTYPES[amp])


def make_step(
    model: nn.Module, mode: str, opts: BenchOptions, device: torch.device, channels_last: bool
) -> Callable[[], None]:
    """A closure running one inference or training step of ``model`` on a fixed random batch."""
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(opts.batch, 3, opts.height, opts.width, generator=gen)
    x = x.to(device).contiguous(memory_format=memory_format)
    run = model
    if opts.compile:
        frozen = opts.freezing and mode == "infer"
        run = torch.compile(model, options={"freezing": True}) if frozen else torch.compile(model)
    if mode == "infer":

        def infer() -> None:
            model.eval()
            with torch.inference_mode(), _autocast(device, opts.amp):
                run(x)

        return infer
    labels = torch.randint(0, opts.num_classes, (opts.batch, opts.height, opts.width), generator=gen)
    labels[:, ::7] = IGNORE_INDEX  # some void pixels, as real labels have
    labels = labels.to(device)
    # A tiny LR: the step must do the full update arithmetic but not drive random weights to inf.
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-6, momentum=0.9, weight_decay=1e-4)
    scaler = grad_scaler(device.type, enabled=opts.amp == "fp16")

    def train() -> None:
        model.train()
        optimizer.zero_grad(set_to_none=True)
        with _autocast(device, opts.amp):
            loss = F.cross_entropy(run(x), labels, ignore_index=IGNORE_INDEX)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()

    return train


def _timed(step: Callable[[], None], device: torch.device) -> float:
    _sync(device)
    t0 = time.perf_counter()
    step()
    _sync(device)
    return time.perf_counter() - t0


def _peak_memory_mb(step: Callable[[], None], device: torch.device) -> Optional[float]:
    """Peak memory of one step in MiB.

    CUDA: torch.cuda.max_memory_allocated (absolute: weights, gradients and optimizer state included).
    CPU: peak RSS during the step minus RSS before it, sampled every 1 ms: the step's transient memory
    (activations; for training also the gradients, which zero_grad(set_to_none=True) frees every step).
    """
    if device.type == "cuda":
        _sync(device)
        torch.cuda.reset_peak_memory_stats(device)
        step()
        _sync(device)
        return torch.cuda.max_memory_allocated(device) / 2**20
    _malloc_trim()
    with _rss_peak_sampler() as rss:
        step()
    return rss["delta"] / 2**20 if _rss_bytes() else None


def _countable(
    candidates: list[Candidate], opts: BenchOptions, notes: list[str]
) -> tuple[list[Candidate], dict[str, int], dict[str, float]]:
    """The candidates that take ``opts``' input, with their forward Multiply-Adds and parameters
    (millions), counted on 'meta'; each one that does not gets a note in ``notes`` instead."""
    usable, forward_macs, params = [], {}, {}
    for cand in candidates:
        try:
            # A forward on 'meta' fails fast where a model cannot take this input (e.g. smp wants H and
            # W divisible by its output stride): skip that model, not the whole run.
            forward_macs[cand.name] = count_step_macs(cand.count_build or cand.build, opts, train=False)
            params[cand.name] = count_params(cand.count_build or cand.build) / 1e6
        except (RuntimeError, ValueError) as e:
            notes.append(f"{cand.name} skipped at {opts.height}x{opts.width}: {str(e).splitlines()[0]}")
            continue
        usable.append(cand)
    return usable, forward_macs, params


def _timed_steps(steps: dict[str, Callable[[], None]], opts: BenchOptions, device: torch.device) -> dict:
    """Warm up every step, measure its memory, then time the repeats interleaved.

    Returns:
        ``{"memory": {name: MiB or None}, "times": {name: [seconds per repeat]}}``.
    """
    for step in steps.values():
        for _ in range(opts.warmup):
            step()
    memory = {name: (_peak_memory_mb(step, device) if opts.memory else None) for name, step in steps.items()}
    times: dict[str, list[float]] = {name: [] for name in steps}
    for r in range(opts.repeats):
        # Alternate the order every repeat so no model always runs right after the same neighbour.
        order = list(steps) if r % 2 == 0 else list(reversed(steps))
        for name in order:
            times[name].append(_timed(steps[name], device))
    return {"memory": memory, "times": times}


def _result_row(
    cand: Candidate,
    mode: str,
    macs: int,
    params_m: float,
    measured: dict,
    opts: BenchOptions,
    channels_last: bool,
    peak: Optional[float],
) -> dict:
    """One report row of :func:`run_benchmark` but its ratios to ours.

    Args:
        cand, mode: the candidate and the mode it ran in.
        macs: Multiply-Adds of one step in this mode; params_m: its parameters in millions.
        measured: :func:`_timed_steps`' result for the mode.
        opts: the run's options (the batch); channels_last: the candidate's memory format.
        peak: the device's peak TFLOP/s, None where unknown.
    """
    times = measured["times"][cand.name]
    t = statistics.median(times)
    return dict(
        name=cand.name,
        description=cand.description,
        config=cand.config,
        channels_last=channels_last,
        compare_to=list(cand.compare_to),
        mode=mode,
        macs_g=macs / 1e9,
        params_m=params_m,
        latency_ms=1e3 * t,
        latency_all_ms=[1e3 * s for s in times],
        latency_min_ms=1e3 * min(times),
        images_per_s=opts.batch / t,
        gmacs_per_s=macs / t / 1e9,
        peak_mem_mb=measured["memory"][cand.name],
        flops_fraction=(2 * macs / t / (peak * 1e12)) if peak else None,
    )


def _add_ratios_vs_ours(rows: list[dict], modes: tuple[str, ...]) -> None:
    """Set each row's ``ratio_vs_ours`` and ``paired_ratio_vs_ours`` (None without an 'ours' row)."""
    for mode in modes:
        ours = [r for r in rows if r["mode"] == mode and r["name"] == "ours"]
        for r in rows:
            if r["mode"] != mode:
                continue
            r["ratio_vs_ours"] = r["latency_ms"] / ours[0]["latency_ms"] if ours else None
            # The ratio within each repeat, then the median: models timed back to back share the
            # machine's load at that moment, so this is the robust number on a shared machine.
            r["paired_ratio_vs_ours"] = (
                statistics.median(t / o for t, o in zip(r["latency_all_ms"], ours[0]["latency_all_ms"]))
                if ours
                else None
            )


def run_benchmark(candidates: list[Candidate], opts: BenchOptions, notes: Optional[list[str]] = None) -> dict:
    """Time every candidate in every mode, interleaved, and collect the results.

    Args:
        candidates: the models (see :func:`default_candidates`).
        opts: device, input and protocol.
        notes: messages to carry into the report (e.g. skipped peers).

    Returns:
        ``{"meta": {...}, "results": [row, ...], "notes": [...]}`` with one row per candidate and mode:
        name, description, mode, macs_g (GMACs of one step), params_m, latency_ms (median step time),
        latency_all_ms (every repeat), latency_min_ms, images_per_s, gmacs_per_s, peak_mem_mb (None if
        unmeasured), flops_fraction (None without a known peak), ratio_vs_ours (median latency / ours'
        median latency) and paired_ratio_vs_ours (median over repeats of latency / ours' latency in the
        same repeat: the number to quote on a loaded machine).
    """
    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    load_start = _load_avg()
    device = torch.device(opts.device)
    if opts.threads is not None:
        torch.set_num_threads(opts.threads)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = opts.cudnn_benchmark
    notes = list(notes or [])
    peak = opts.peak_tflops if opts.peak_tflops is not None else peak_tflops_for(device, opts.amp)
    channels_last = {
        c.name: opts.channels_last if c.channels_last is None else c.channels_last for c in candidates
    }
    candidates, forward_macs, params = _countable(candidates, opts, notes)
    models, prepared = {}, {}
    for cand in candidates:
        torch.manual_seed(0)
        fmt = torch.channels_last if channels_last[cand.name] else torch.contiguous_format
        models[cand.name] = model = cand.build().to(device, memory_format=fmt)
        if cand.prepare is not None and "infer" in opts.modes:
            prepared[cand.name] = cand.prepare(model)

    rows = []
    for mode in opts.modes:
        if mode == "train" and opts.batch < 2:
            # BatchNorm after ASPP's image pooling sees one value per channel at batch 1 and raises.
            notes.append("train skipped: the training step needs batch >= 2 (BatchNorm on the pooled branch)")
            continue
        active = [c for c in candidates if c.modes is None or mode in c.modes]
        steps = {
            c.name: make_step(
                prepared.get(c.name, models[c.name]) if mode == "infer" else models[c.name],
                mode, opts, device, channels_last[c.name],
            )
            for c in active
        }  # fmt: skip
        measured = _timed_steps(steps, opts, device)
        for cand in active:
            macs = forward_macs[cand.name] * (3 if mode == "train" else 1)  # as count_step_macs: 3 forwards
            fmt = channels_last[cand.name]
            rows.append(_result_row(cand, mode, macs, params[cand.name], measured, opts, fmt, peak))
    _add_ratios_vs_ours(rows, opts.modes)
    meta = dict(
        date=date,
        load_avg_start=load_start,
        load_avg_end=_load_avg(),
        device=str(device),
        device_name=device_name(device),
        torch=torch.__version__,
        threads=torch.get_num_threads(),
        cpu_count=os.cpu_count(),
        peak_tflops=peak,
        options=dataclasses.asdict(opts),
    )
    report = {"meta": meta, "results": rows, "notes": notes}
    report["comparisons"] = comparisons(report)
    report["probe_fractions"] = probe_fractions(report)
    return report


def _load_avg() -> Optional[list[float]]:
    """The 1, 5 and 15 minute load averages (None where the OS has none): how shared the machine was."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except (OSError, AttributeError):
        return None


def comparisons(report: dict) -> list[dict]:
    """Each candidate against the peers its configuration matches (``compare_to``), per mode.

    ``time_ratio`` is the paired ratio (median over repeats of its time / the peer's time in the
    same repeat); ``per_mac_ratio`` divides it by the ratio of Multiply-Adds, i.e. time per
    Multiply-Add relative to the peer's (< 1: ours does each Multiply-Add faster).
    """
    out = []
    for r in report["results"]:
        for peer_name in r.get("compare_to", []):
            peer = next(
                (p for p in report["results"] if p["name"] == peer_name and p["mode"] == r["mode"]), None
            )
            if peer is None:
                continue
            paired = statistics.median(a / b for a, b in zip(r["latency_all_ms"], peer["latency_all_ms"]))
            out.append(
                dict(
                    mode=r["mode"],
                    name=r["name"],
                    peer=peer_name,
                    time_ratio=paired,
                    macs_ratio=r["macs_g"] / peer["macs_g"],
                    per_mac_ratio=paired * peer["macs_g"] / r["macs_g"],
                )
            )
    return out


@contextlib.contextmanager
def training_split(
    data_cfg: DataConfig, split: Optional[str] = None
) -> Iterator[tuple[Optional[SegmentationDataset], str]]:
    """The training split the data benchmarks read, with its augmentation (``train=True``).

    With the synthetic layout and a ``root`` that is empty or not a folder, the dataset is generated
    into a temporary folder (rather than littering the working directory), removed on exit;
    ``data_cfg`` itself is not changed.

    Args:
        data_cfg: the data config (layout, root, crop, scales).
        split: defaults to ``data_cfg.train_split``.

    Yields:
        ``(dataset, "")``, or ``(None, reason)`` when the dataset cannot be built (a one-line
        reason naming the layout and root, to report next to the model rows).
    """
    cfg = copy.deepcopy(data_cfg)
    with contextlib.ExitStack() as stack:
        if catalog.LAYOUTS[cfg.layout].generated and not (cfg.root and os.path.isdir(cfg.root)):
            cfg.root = os.path.join(stack.enter_context(tempfile.TemporaryDirectory()), "synthetic")
            cfg.synthetic.generate = (
                True  # a generated layout refuses to generate into a root it was not told to
            )
        dataset, skipped = None, ""
        try:
            dataset = build_dataset(cfg, split or cfg.train_split, train=True)
        except (ValueError, OSError) as e:  # DatasetError is a ValueError
            skipped = f"cannot build the {cfg.layout} dataset at '{cfg.root}': {e}"
        yield dataset, skipped


def benchmark_data(data_cfg: DataConfig, num_images: int = 50, split: Optional[str] = None) -> dict:
    """Images/s of one data worker: read + decode + validate + training augmentation, one image at a time.

    Runs in this process with one torch thread, as a DataLoader worker does. With the synthetic layout
    and an empty ``root`` the dataset is generated first (into a temporary folder when root is '').

    Args:
        data_cfg: the data config; ``crop_size`` and ``scales`` set the augmentation cost.
        num_images: images to load (cycling over the split if it is shorter).
        split: defaults to ``data_cfg.train_split``.

    Returns:
        ``{"images_per_s", "ms_per_image", "num_images", "layout", "crop_size"}``, or
        ``{"skipped": reason}`` when the dataset cannot be built.
    """
    with training_split(data_cfg, split) as (dataset, skipped):
        if dataset is None:
            return {"skipped": skipped}
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            torch.manual_seed(0)
            dataset[0]  # first read pays for imports and file-system caches
            t0 = time.perf_counter()
            for i in range(num_images):
                dataset[i % len(dataset)]
            elapsed = time.perf_counter() - t0
        finally:
            torch.set_num_threads(threads)
    return dict(
        images_per_s=num_images / elapsed,
        ms_per_image=1e3 * elapsed / num_images,
        num_images=num_images,
        layout=data_cfg.layout,
        crop_size=data_cfg.crop_size,
    )


def benchmark_loader(
    data_cfg: DataConfig,
    batch_size: int,
    num_batches: int = 10,
    workers: Optional[int] = None,
    split: Optional[str] = None,
) -> dict:
    """Images/s of the training DataLoader: ``workers`` processes decoding and augmenting in parallel.

    The first batch (worker start-up) is not timed. With the synthetic layout and an empty
    ``root`` the dataset is generated first, into a temporary folder (``data_cfg.synthetic_size``
    sets how many images; ``make_synthetic_voc``'s default image size is small, so for VOC-sized
    images generate the folder with ``scripts/make_synthetic.py --size 438`` and pass its root).

    Args:
        data_cfg: the data config (crop, scales, layout, root).
        batch_size: images per batch (the training batch).
        num_batches: timed batches.
        workers: DataLoader workers (None: ``data_cfg.workers``, the training default).
        split: defaults to ``data_cfg.train_split``.

    Returns:
        ``{"images_per_s", "num_images", "workers", "batch_size", "layout", "crop_size"}``, or
        ``{"skipped": reason}``.
    """
    workers = data_cfg.workers if workers is None else workers
    with training_split(data_cfg, split) as (dataset, skipped):
        if dataset is None:
            return {"skipped": skipped}
        # Sample with replacement: a short split still yields num_batches + 1 full batches.
        sampler = torch.utils.data.RandomSampler(
            dataset, replacement=True, num_samples=(num_batches + 1) * batch_size
        )
        loader = DataLoader(
            dataset, batch_size=batch_size, sampler=sampler, num_workers=workers, drop_last=True
        )
        batches = iter(loader)
        next(batches)  # worker start-up and the first decode: not timed
        t0 = time.perf_counter()
        n = sum(len(batch[0]) for batch in batches)
        elapsed = time.perf_counter() - t0
    return dict(
        images_per_s=n / elapsed,
        num_images=n,
        workers=workers,
        batch_size=batch_size,
        layout=data_cfg.layout,
        crop_size=data_cfg.crop_size,
    )


def _fmt(value: Optional[float], spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _extra_lines(report: dict) -> list[str]:
    """The data-pipeline, loader and note lines of a report."""
    lines: list[str] = []
    data = report.get("data")
    if data is not None:
        if "skipped" in data:
            lines.append(f"data pipeline: skipped ({data['skipped']})")
        else:
            lines.append(
                f"data pipeline ({data['layout']}, crop {data['crop_size']}, 1 worker, 1 thread): "
                f"{data['images_per_s']:.1f} images/s ({data['ms_per_image']:.1f} ms/image over {data['num_images']})"
            )
    for c in report.get("comparisons", []):
        lines.append(
            f"{c['mode']} {c['name']} / {c['peer']}: time {c['time_ratio']:.3f} (paired), MACs "
            f"{c['macs_ratio']:.3f}, time per Multiply-Add {c['per_mac_ratio']:.3f}"
        )
    for f in report.get("probe_fractions", []):
        lines.append(
            f"{f['mode']} {f['name']}: {f['gmacs_per_s']:.1f} GMAC/s = {100 * f['fraction']:.1f}% of "
            f"{f['probe']}'s {f['probe_gmacs_per_s']:.1f} (the same toolchain's 1x1-conv probe)"
        )
    loader = report.get("loader")
    if loader is not None:
        if "skipped" in loader:
            lines.append(f"training loader: skipped ({loader['skipped']})")
        else:
            lines.append(
                f"training loader ({loader['layout']}, crop {loader['crop_size']}, {loader['workers']} workers, "
                f"batch {loader['batch_size']}): {loader['images_per_s']:.1f} images/s over {loader['num_images']}"
            )
    lines += [f"note: {n}" for n in report.get("notes", [])]
    return lines


def format_results(report: dict) -> str:
    """Plain-text table of a :func:`run_benchmark` report (plus the data-pipeline line if present)."""
    meta, opts = report["meta"], report["meta"]["options"]
    lines = [
        f"{meta['date']}  device {meta['device']} ({meta['device_name']}), {meta['threads']} threads, "
        f"torch {meta['torch']}",
        f"input {opts['batch']}x3x{opts['height']}x{opts['width']}, amp {opts['amp']}, channels_last "
        f"{opts['channels_last']}, compile {opts['compile']}{' (freezing)' if opts.get('freezing') else ''}, "
        f"warmup {opts['warmup']}, repeats {opts['repeats']} "
        f"(interleaved, median), peak {_fmt(meta['peak_tflops'], '.1f')} TFLOP/s",
        f"load average (1, 5, 15 min) at start {meta.get('load_avg_start')}, at end {meta.get('load_avg_end')}",
    ]
    head = (
        f"{'mode':<5} {'model':<12} {'GMACs':>8} {'Mparams':>7} {'ms':>9} {'img/s':>8} {'GMAC/s':>7} "
        f"{'min ms':>9} {'mem MiB':>8} {'%peak':>6} {'x ours':>6} {'paired':>6}  description"
    )
    lines += [head, "-" * len(head)]
    for r in report["results"]:
        frac = None if r["flops_fraction"] is None else 100 * r["flops_fraction"]
        lines.append(
            f"{r['mode']:<5} {r['name']:<12} {r['macs_g']:>8.2f} {r['params_m']:>7.1f} {r['latency_ms']:>9.1f} "
            f"{r['images_per_s']:>8.2f} {r['gmacs_per_s']:>7.1f} {r['latency_min_ms']:>9.1f} "
            f"{_fmt(r['peak_mem_mb'], '.0f'):>8} {_fmt(frac, '.1f'):>6} {_fmt(r.get('ratio_vs_ours'), '.2f'):>6} "
            f"{_fmt(r.get('paired_ratio_vs_ours'), '.2f'):>6}  {r['description']}"
        )
    lines += _extra_lines(report)
    return "\n".join(lines)


def format_markdown(report: dict) -> str:
    """The report as Markdown (what docs/benchmarks.md holds): setup, one table, the comparisons."""
    meta, opts = report["meta"], report["meta"]["options"]
    lines = [
        f"{meta['date']}, {meta['device_name']} ({meta['device']}, {meta['threads']} threads), torch "
        f"{meta['torch']}; input {opts['batch']}x3x{opts['height']}x{opts['width']}, amp {opts['amp']}, "
        f"channels_last {opts['channels_last']}, compile {opts['compile']}; warmup {opts['warmup']}, "
        f"{opts['repeats']} interleaved repeats; load average (1/5/15 min) {meta.get('load_avg_start')} at "
        f"start, {meta.get('load_avg_end')} at end.",
    ]
    if meta.get("command"):
        lines += ["", f"    {meta['command']}"]
    lines += [
        "",
        "| mode | model | GMACs | Mparams | median ms | min ms | img/s | GMAC/s | mem MiB | %peak | paired vs ours |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in report["results"]:
        frac = None if r["flops_fraction"] is None else 100 * r["flops_fraction"]
        lines.append(
            f"| {r['mode']} | {r['name']} | {r['macs_g']:.2f} | {r['params_m']:.1f} | {r['latency_ms']:.1f} | "
            f"{r['latency_min_ms']:.1f} | {r['images_per_s']:.2f} | {r['gmacs_per_s']:.1f} | "
            f"{_fmt(r['peak_mem_mb'], '.0f')} | {_fmt(frac, '.1f')} | {_fmt(r.get('paired_ratio_vs_ours'), '.3f')} |"
        )
    if report.get("comparisons"):
        lines += ["", "| mode | ours | peer | time ratio (paired) | MACs ratio | time per Multiply-Add |"]
        lines.append("|---|---|---|---:|---:|---:|")
        for c in report["comparisons"]:
            lines.append(
                f"| {c['mode']} | {c['name']} | {c['peer']} | {c['time_ratio']:.3f} | {c['macs_ratio']:.3f} | "
                f"{c['per_mac_ratio']:.3f} |"
            )
    if report.get("probe_fractions"):
        lines += ["", "| mode | model | GMAC/s | probe | probe GMAC/s | % of the probe |"]
        lines.append("|---|---|---:|---|---:|---:|")
        for f in report["probe_fractions"]:
            lines.append(
                f"| {f['mode']} | {f['name']} | {f['gmacs_per_s']:.1f} | {f['probe']} | "
                f"{f['probe_gmacs_per_s']:.1f} | {100 * f['fraction']:.1f} |"
            )
    lines += ["", "Models:", ""]
    lines += [
        f"- `{r['name']}`: {r['description']}"
        for r in report["results"]
        if r["mode"] == report["results"][0]["mode"]
    ]
    extra = _extra_lines({**report, "comparisons": []})  # the comparisons are the table above
    if extra:
        lines += [""] + [f"{line}  " for line in extra]
    return "\n".join(lines)


# --- the benchmark command's job -----------------------------------------------------------------


@dataclass
class Lineup:
    """Which rows run beside 'ours' (:func:`default_candidates`): the benchmark command's row flags.

    Attributes:
        peers: any of :data:`PEERS`, each with ours at its closest configuration.
        both_memory_formats: add a channels_last twin of every ours row compared with a peer
            ('ours-nhwc', 'ours-v3-os8-nhwc', ...).
        eager: add 'ours-eager', inference of the plain model (not prepared).
        onnx: add 'ours-onnx', the ONNX export of the prepared model under onnxruntime (CPU,
            inference), exported at the benchmark's input size.
        precisions: any of "bf16", "int8", "int8-pt2e" (:func:`precision_candidates`; the int8
            rows are exported at the benchmark's input size).
        probe: add the :class:`ConvPeakProbe` rows (:func:`probe_candidates`).
    """

    peers: tuple[str, ...] = PEERS
    both_memory_formats: bool = False
    eager: bool = False
    onnx: bool = False
    precisions: tuple[str, ...] = ()
    probe: bool = False


def benchmark_report(
    model_cfg: ModelConfig,
    opts: BenchOptions,
    lineup: Optional[Lineup] = None,
    data_cfg: Optional[DataConfig] = None,
    *,
    data_images: Optional[int] = None,
    loader_batches: Optional[int] = None,
    command: Optional[str] = None,
) -> dict:
    """What ``deeplabv3plus benchmark`` measures: ours and the rows of ``lineup``, timed by
    :func:`run_benchmark`, and optionally the data pipeline.

    Args:
        model_cfg: ours' configuration ('ours').
        opts: device, input size, numerics and timing protocol; ``opts.threads`` is also the
            onnxruntime rows' intra-op thread count.
        lineup: the rows beside ours (default ``Lineup()``: ours and each installed peer).
        data_cfg: the data config ``data_images`` and ``loader_batches`` read (default ``DataConfig()``).
        data_images: also time one data worker over this many images (:func:`benchmark_data`,
            the report's ``"data"``); None: not timed.
        loader_batches: also time the training DataLoader over this many batches of ``opts.batch``
            images (:func:`benchmark_loader`, the report's ``"loader"``); None: not timed.
        command: the command line, recorded as ``report["meta"]["command"]``.

    Returns:
        :func:`run_benchmark`'s report, plus ``"data"`` / ``"loader"`` when asked for.
    """
    lineup = lineup if lineup is not None else Lineup()
    data_cfg = data_cfg if data_cfg is not None else DataConfig()
    # The ONNX and int8 rows run a graph exported at one fixed size: the benchmark's input.
    exported = lineup.onnx or bool({"int8", "int8-pt2e"} & set(lineup.precisions))
    candidates, notes = default_candidates(
        model_cfg,
        tuple(lineup.peers),
        lineup.both_memory_formats,
        eager=lineup.eager,
        onnx=(opts.height, opts.width) if exported else None,
        threads=opts.threads,
        precisions=tuple(lineup.precisions),
        probe=lineup.probe,
    )
    report = run_benchmark(candidates, opts, notes)
    if command is not None:
        report["meta"]["command"] = command
    if data_images is not None:
        report["data"] = benchmark_data(data_cfg, num_images=data_images)
    if loader_batches is not None:
        report["loader"] = benchmark_loader(data_cfg, opts.batch, num_batches=loader_batches)
    return report


def write_report(
    report: dict,
    json_path: Optional[Union[str, Path]] = None,
    markdown_path: Optional[Union[str, Path]] = None,
) -> list[str]:
    """Write a :func:`run_benchmark` report as JSON (every repeat, options, environment) and/or as the
    Markdown tables of :func:`format_markdown`; None skips a format.

    Returns:
        The paths written, as given, JSON first.
    """
    written = []
    if json_path:
        with open(json_path, "w") as f:
            json.dump(report, f, indent=2)
        written.append(str(json_path))
    if markdown_path:
        with open(markdown_path, "w") as f:
            f.write(format_markdown(report) + "\n")
        written.append(str(markdown_path))
    return written
