"""The inference fast path: :func:`prepare_for_inference`, a copy of a model made for fast exact inference.

In eval mode a BatchNorm after a convolution is an affine map per output channel,
``y = (conv(x) - mean) / sqrt(var + eps) * gamma + beta``, so it can be folded into the conv's
weights and bias: ``W' = W * s`` and ``b' = (b - mean) * s + beta`` with ``s = gamma / sqrt(var + eps)``.
That removes one full pass over every activation (113 BatchNorms in ResNet-101) and is exact up
to fp32 rounding. On CPU the convs then run oneDNN on a weight reordered once
(:class:`PackedConv2d`), and the copy is channels_last (docs/benchmarks.md has the timings).

The folding keeps the module tree: every conv stays an ``nn.Conv2d`` at the same place (with a
bias now) and each folded BatchNorm becomes an ``nn.Identity``. Everything that changes a built
model's geometry therefore keeps working on the prepared copy: the ``output_stride`` setter
(:func:`deeplabv3plus.models.layers.set_conv_geometry` edits conv stride/dilation/padding, not
weights), multi-scale and flip inference, ``torch.export`` / ONNX export.

Which conv feeds which BatchNorm is read from the data flow (a ``torch.fx`` trace), not from
names: a pair is folded only when the BatchNorm's sole input is the conv's output and nothing else
reads that output, so a custom model with other wiring is never folded wrongly.
"""

from __future__ import annotations

import copy
import functools
import warnings
from typing import Optional

import torch
import torch.nn.functional as F
from torch import fx, nn

from .._compat import cpu_autocast_enabled
from .layers import runs_eagerly, unwrap_model

__all__ = [
    "PRECISIONS",
    "PackedConv2d",
    "bf16_supported",
    "conv_bn_pairs",
    "fold_batchnorm",
    "pack_convs",
    "prepare_for_inference",
]

PRECISIONS: dict[str, torch.dtype] = {"fp32": torch.float32, "bf16": torch.bfloat16}
"""The ``precision=`` values of :func:`prepare_for_inference` (``eval.precision``, ``--precision``)."""


def _analyse(model: nn.Module) -> tuple[list[tuple[str, str]], list[str]]:
    """One ``torch.fx`` trace: the foldable (conv, batchnorm) pairs and the ReLUs safe to run in place.

    The trace is of the eval-mode forward (the mode is restored afterwards).
    """
    was_training = model.training
    try:
        graph = fx.symbolic_trace(model.eval()).graph
    finally:
        model.train(was_training)
    # A weight tied to another module cannot take one BatchNorm's fold.
    uses: dict[int, int] = {}
    for _, p in model.named_parameters(remove_duplicate=False):
        uses[id(p)] = uses.get(id(p), 0) + 1
    calls: dict[str, int] = {}
    for node in graph.nodes:
        if node.op == "call_module":
            calls[node.target] = calls.get(node.target, 0) + 1
    pairs, relu_ok, relu_unsafe = [], set(), set()
    for node in graph.nodes:
        if node.op != "call_module":
            continue
        module = model.get_submodule(node.target)
        src = node.args[0] if len(node.args) == 1 and not node.kwargs else None
        single_module_src = isinstance(src, fx.Node) and src.op == "call_module" and len(src.users) == 1
        if isinstance(module, nn.ReLU):
            # A conv or BatchNorm output read by nothing else is a fresh tensor (never a view).
            fresh = single_module_src and isinstance(
                model.get_submodule(src.target), (nn.Conv2d, nn.BatchNorm2d, nn.SyncBatchNorm, nn.Identity)
            )
            (relu_ok if fresh else relu_unsafe).add(node.target)
            continue
        if type(module) not in (nn.BatchNorm2d, nn.SyncBatchNorm) or module.running_mean is None:
            continue
        if calls[node.target] != 1 or not single_module_src or calls[src.target] != 1:
            continue
        conv = model.get_submodule(src.target)
        if (
            type(conv) is nn.Conv2d
            and conv.out_channels == module.num_features
            and uses[id(conv.weight)] == 1
        ):
            pairs.append((src.target, node.target))
    relus = [n for n in relu_ok - relu_unsafe if not model.get_submodule(n).inplace]
    return pairs, sorted(relus)


def conv_bn_pairs(model: nn.Module) -> list[tuple[str, str]]:
    """Qualified names of every ``(conv, batchnorm)`` pair whose BatchNorm can be folded.

    A pair qualifies when the BatchNorm (``nn.BatchNorm2d`` or ``nn.SyncBatchNorm`` with running
    statistics, which is what both normalise with in eval mode) is called once, on the output of
    one ``nn.Conv2d`` call, that output has no other reader, and the conv is called only once (a
    shared conv cannot absorb one of several BatchNorms).

    Raises:
        torch.fx.proxy.TraceError (or another tracing error): when ``model`` cannot be traced
            symbolically (data-dependent control flow).
    """
    return _analyse(model)[0]


def _folded(
    conv: nn.Conv2d,
    bn: nn.modules.batchnorm._BatchNorm,
    memory_format: torch.memory_format = torch.preserve_format,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The weight (in ``memory_format``) and bias of ``conv`` followed by eval-mode ``bn``, as one conv.

    The per-channel scale and the bias are computed in float64 and rounded once; the weight is
    multiplied in its own dtype (one rounding per element, as the unfolded BN's multiply).
    """
    scale = bn.running_var.double().add(bn.eps).rsqrt()
    if bn.weight is not None:
        scale = scale * bn.weight.double()
    bias = -bn.running_mean.double() * scale
    if conv.bias is not None:
        bias = bias + conv.bias.double() * scale
    if bn.bias is not None:
        bias = bias + bn.bias.double()
    w = conv.weight.detach()
    weight = torch.empty_like(w, memory_format=memory_format)  # one pass: scale and change layout
    torch.mul(w, scale.to(w.dtype).view(-1, *([1] * (w.dim() - 1))), out=weight)
    return weight, bias.to(w.dtype)


def _set_submodule(model: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, module)


@torch.no_grad()
def fold_batchnorm(model: nn.Module) -> int:
    """Fold every foldable eval-mode BatchNorm into its conv, in place (see :func:`conv_bn_pairs`).

    The conv gets the folded weight and a bias; the BatchNorm is replaced by ``nn.Identity``.
    Only meaningful for inference: the BatchNorms' running statistics are baked in, and the
    model's state_dict no longer matches its class's (do not save it as a checkpoint).
    :func:`prepare_for_inference` does this on a copy.

    Args:
        model: the model to change; must be in eval mode (a training-mode BatchNorm normalises
            with batch statistics, which cannot be folded).

    Returns:
        The number of BatchNorms folded.
    """
    if model.training:
        raise ValueError("fold_batchnorm needs a model in eval mode (call model.eval() first)")
    pairs = conv_bn_pairs(model)
    for conv_name, bn_name in pairs:
        conv = model.get_submodule(conv_name)
        weight, bias = _folded(conv, model.get_submodule(bn_name))
        conv.weight = nn.Parameter(weight, requires_grad=conv.weight.requires_grad)
        conv.bias = nn.Parameter(bias, requires_grad=conv.weight.requires_grad)
        _set_submodule(model, bn_name, nn.Identity())
    return len(pairs)


# oneDNN's fast depthwise kernels (jit_dw, brdgmm_dw) take at most 6 pixels of implicit zero
# padding; beyond that it runs its generic grouped kernel, 8-15x slower on the ASPP's depthwise
# convs (rates 12 and 18 at OS 16, 12-36 at OS 8; docs/benchmarks.md). Padding the input
# explicitly by the rest keeps the fast kernel; zeros either way, so the result is the same.
ONEDNN_DEPTHWISE_MAX_PADDING = 6


@functools.cache
def _onednn_bf16() -> bool:
    """Whether oneDNN runs bf16 natively on this CPU (AVX512-BF16, AVX512-core or AMX); without, it
    would emulate bf16 slower than fp32."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def bf16_supported(device: torch.device | str = "cpu") -> bool:
    """Whether ``precision="bf16"`` runs natively on ``device``: a CPU whose oneDNN has bf16 kernels
    (``avx512_bf16`` / ``amx_bf16`` in /proc/cpuinfo), a CUDA GPU of compute capability >= 8.0."""
    device = torch.device(device)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            return False
        try:
            return torch.cuda.is_bf16_supported(including_emulation=False)
        except TypeError:  # torch < 2.3 has no including_emulation: compute capability 8.0 is Ampere
            return torch.cuda.get_device_capability(device)[0] >= 8
    return device.type == "cpu" and torch.backends.mkldnn.is_available() and _onednn_bf16()


def _cast_inputs(module: nn.Module, args: tuple, dtype: torch.dtype) -> tuple:
    """Forward pre-hook of a reduced-precision prepared model: float inputs to its dtype (once, at the door)."""
    return tuple(a.to(dtype) if isinstance(a, torch.Tensor) and a.is_floating_point() else a for a in args)


def _cast_outputs(module: nn.Module, args: tuple, output):
    """Forward hook of a reduced-precision prepared model: logits back to fp32, as callers expect."""
    if isinstance(output, torch.Tensor):
        return output.float() if output.is_floating_point() else output
    if isinstance(output, dict):
        return {k: _cast_outputs(module, args, v) for k, v in output.items()}
    if isinstance(output, (list, tuple)):
        return type(output)(_cast_outputs(module, args, v) for v in output)
    return output


class PackedConv2d(nn.Conv2d):
    """An ``nn.Conv2d`` whose CPU fp32 or bf16 inference runs oneDNN on a weight reordered once, not every call.

    PyTorch's eager CPU convolution hands the weight to oneDNN (mkldnn) in PyTorch's layout, and
    oneDNN reorders it into its blocked layout on *every* call: for ResNet-101 that is ~180 MB
    copied per forward, a large share of the time at OS 16 where the deep layers are small. This
    conv keeps the reordered weight (``torch.ops.mkldnn._reorder_convolution_weight``, what
    inductor's freezing pass uses) and calls ``torch.ops.mkldnn._convolution_pointwise`` with it:
    the same oneDNN convolution (bit-identical outputs to the eager conv's in our checks).

    The reordered weight is re-made whenever stride, padding, dilation or the weight itself change
    (so ``output_stride`` stays settable); it is not in the state_dict and not copied by
    ``deepcopy``/pickle. A bf16 conv (weight and input bf16: ``prepare_for_inference(precision="bf16")``)
    takes the same path where oneDNN has native bf16 kernels. Everything else falls back to
    ``nn.Conv2d.forward``: CUDA, other dtypes or mixed ones,
    autocast, autograd, and tracing/export/compilation (FakeTensors, ``torch.jit`` tracing,
    ``torch.compile``), so ONNX export and ``torch.export`` see a plain convolution.

    A depthwise conv with more padding than oneDNN's depthwise kernels take
    (:data:`ONEDNN_DEPTHWISE_MAX_PADDING`) pads its input explicitly by the rest first.
    """

    _packed: Optional[torch.Tensor] = None
    _packed_key: Optional[tuple] = None

    @classmethod
    def from_conv(cls, conv: nn.Conv2d) -> PackedConv2d:
        """Turn ``conv`` (an exact ``nn.Conv2d``) into a PackedConv2d in place; returns it.

        The object stays the same (its class changes), so every reference to it (and every
        ``set_conv_geometry`` on it) keeps working, and no weight is copied or re-initialised.
        """
        if type(conv) is not nn.Conv2d:
            raise TypeError(f"expected an nn.Conv2d, got {type(conv).__name__}")
        conv.__class__ = cls
        return conv

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state.pop("_packed", None)
        state.pop("_packed_key", None)
        return state

    def _fast(self, x: torch.Tensor) -> bool:
        w = self.weight
        return (
            runs_eagerly(x)
            and x.device.type == "cpu"
            and x.dtype == w.dtype
            and w.device.type == "cpu"
            and (w.dtype == torch.float32 or (w.dtype == torch.bfloat16 and _onednn_bf16()))
            and x.dim() == 4
            and self.padding_mode == "zeros"
            and not isinstance(self.padding, str)
            and not (torch.is_grad_enabled() and (x.requires_grad or w.requires_grad))
            and torch.backends.mkldnn.enabled
            and not cpu_autocast_enabled()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self._fast(x):
            return super().forward(x)
        padding, stride, dilation = list(self.padding), list(self.stride), list(self.dilation)
        if self.groups == self.in_channels > 1 and max(padding) > ONEDNN_DEPTHWISE_MAX_PADDING:
            extra = [max(p - ONEDNN_DEPTHWISE_MAX_PADDING, 0) for p in padding]
            x = F.pad(x, (extra[1], extra[1], extra[0], extra[0]))
            padding = [p - e for p, e in zip(padding, extra)]
        w = self.weight
        # The version counter catches in-place weight updates (inference tensors have none).
        version = 0 if w.is_inference() else w._version
        key = (tuple(padding), tuple(stride), tuple(dilation), w.data_ptr(), version)
        if self._packed_key != key:
            self._packed = torch.ops.mkldnn._reorder_convolution_weight(
                w.detach(), padding, stride, dilation, self.groups, list(x.shape)
            )
            self._packed_key = key
        return torch.ops.mkldnn._convolution_pointwise(
            x, self._packed, self.bias, padding, stride, dilation, self.groups, "none", [], ""
        )


@functools.cache
def _mkldnn_packing_works() -> bool:
    """Whether this torch build has the oneDNN ops PackedConv2d needs, and they agree with conv2d.

    Runs once per process, at the first evaluation; it must leave the global RNG as it found it:
    a training run validates mid-run, and a run resumed in a new process (which runs this check
    afresh) continues bit for bit only if validation draws nothing from the stream dropout uses.
    """
    if not torch.backends.mkldnn.is_available():
        return False
    try:
        # Weights and input from a private generator: the conv's default init and torch.randn
        # would otherwise advance the global CPU RNG.
        rng = torch.Generator().manual_seed(0)
        conv = nn.Conv2d(3, 4, 3, padding=2, dilation=2, device="meta").to_empty(device="cpu")
        with torch.no_grad():
            conv.weight.copy_(torch.randn(conv.weight.shape, generator=rng))
            conv.bias.copy_(torch.randn(conv.bias.shape, generator=rng))
        x = torch.randn(1, 3, 7, 6, generator=rng)
        with torch.no_grad():
            expected = conv(x)
            got = PackedConv2d.from_conv(copy.deepcopy(conv)).requires_grad_(False)(x)
        return torch.allclose(got, expected, rtol=1e-4, atol=1e-5)
    except (RuntimeError, AttributeError, NotImplementedError):
        return False


def pack_convs(model: nn.Module) -> int:
    """Make every plain ``nn.Conv2d`` of ``model`` a :class:`PackedConv2d`, in place, where oneDNN can.

    Returns:
        The number of convs changed (0 when this torch build lacks the oneDNN ops).
    """
    convs = [m for m in model.modules() if type(m) is nn.Conv2d]
    if not convs or not _mkldnn_packing_works():
        return 0
    for conv in convs:
        PackedConv2d.from_conv(conv)
    return len(convs)


def unpack_convs(model: nn.Module) -> int:
    """Make every :class:`PackedConv2d` of ``model`` a plain ``nn.Conv2d`` again, in place.

    Exporters and quantizers match convs by their module type (PT2E's x86 quantizer needs
    ``nn.Conv2d`` exactly); a model prepared for inference before is handed to them this way.

    Returns:
        The number of convs changed.
    """
    convs = [m for m in model.modules() if isinstance(m, PackedConv2d)]
    for conv in convs:
        for key in ("_packed", "_packed_key"):
            conv.__dict__.pop(key, None)
        conv.__class__ = nn.Conv2d
    return len(convs)


def _fold_plan(source: nn.Module) -> tuple[list[tuple[str, str]], list[str]]:
    """:func:`_analyse` of ``source``: its (conv, BN) pairs to fold and the ReLUs that may run in
    place; none for a model without BatchNorm (nothing to fold, no trace) or one ``torch.fx``
    cannot trace (data-dependent control flow: it stays unfolded, with a warning)."""
    try:
        has_bn = any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in source.modules())
        return _analyse(source) if has_bn else ([], [])
    except Exception as e:
        warnings.warn(
            f"prepare_for_inference: {type(source).__name__} cannot be traced with torch.fx "
            f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}); BatchNorm is not folded",
            stacklevel=3,
        )
        return [], []


def _folded_copy(
    source: nn.Module, pairs: list[tuple[str, str]], relus: list[str], fmt: torch.memory_format
) -> nn.Module:
    """An eval-mode, frozen copy of ``source`` with each BN of ``pairs`` folded into its conv
    (the folded weights in memory format ``fmt``; the BN becomes ``nn.Identity``) and the ReLUs
    named in ``relus`` in place. ``source`` is only read."""
    # The copy is made with the folded weights in place of the originals (deepcopy's memo), so no
    # weight is copied twice and the source (e.g. the live training model) is only read.
    memo: dict[int, object] = {}
    biases = {}
    with torch.no_grad():
        for conv_name, bn_name in pairs:
            conv, bn = source.get_submodule(conv_name), source.get_submodule(bn_name)
            weight, bias = _folded(conv, bn, fmt)
            memo[id(conv.weight)] = nn.Parameter(weight, requires_grad=False)
            if conv.bias is not None:
                memo[id(conv.bias)] = nn.Parameter(bias, requires_grad=False)
            else:
                biases[conv_name] = nn.Parameter(bias, requires_grad=False)
            memo[id(bn)] = nn.Identity()
    prepared = copy.deepcopy(source, memo).eval()
    for conv_name, bias in biases.items():
        prepared.get_submodule(conv_name).bias = bias
    for name in relus:
        prepared.get_submodule(name).inplace = True
    prepared.requires_grad_(False)
    return prepared


def prepare_for_inference(
    model: nn.Module, *, channels_last: bool = True, pack: bool = True, precision: str = "fp32"
) -> nn.Module:
    """A copy of ``model`` made for fast exact inference; ``model`` itself is left untouched.

    The copy is in eval mode, its BatchNorms folded into the preceding convs
    (:func:`fold_batchnorm`), its ReLUs in place where that is safe, its parameters frozen
    (``requires_grad=False``), its convs running on once-reordered oneDNN weights on CPU
    (:class:`PackedConv2d`) and, by default, in channels_last memory format (the faster layout
    for convolutions on CPU/oneDNN and on GPU/cuDNN, docs/benchmarks.md). All of this is exact to
    fp32 rounding: its outputs equal ``model.eval()``'s within ~1e-5 relative
    (tests/models/test_fuse.py). ``output_stride`` stays settable on the copy.

    A model that cannot be traced symbolically with ``torch.fx`` is copied without folding, with
    a warning.

    Args:
        model: any segmentation model (a DDP or torch.compile wrapper is unwrapped first).
        channels_last: convert the copy's parameters to channels_last; inputs need no conversion
            (a conv with channels_last weights returns channels_last activations).
        pack: make the convs :class:`PackedConv2d` (CPU fp32 inference on a once-reordered
            oneDNN weight; the same outputs as the eager conv, no effect elsewhere). False: plain
            ``nn.Conv2d`` convs, even where ``model`` was prepared (packed) before (for exporters).
        precision: "fp32" (exact), or "bf16": every parameter and buffer is rounded to bfloat16
            once, here (after folding, which is done in float64), and the copy takes fp32 inputs,
            runs in bf16 (on CPU the packed oneDNN bf16 kernels) and returns fp32 logits. Not
            exact: logits differ by ~1e-2 relative (bf16 keeps 8 significant bits); the
            quickstart model's mIoU moves by a few hundredths of a point (docs/benchmarks.md).
            Where the device has no native bf16 (a CPU without AVX512-BF16/AMX, a GPU before
            Ampere) it warns and stays fp32, since emulated bf16 is slower than fp32.

    Returns:
        The prepared copy, on ``model``'s device. Use it for inference only; keep training and
        saving checkpoints with ``model``.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision: expected one of {', '.join(PRECISIONS)}, got {precision!r}")
    source = unwrap_model(model)
    device = next((p.device for p in source.parameters()), torch.device("cpu"))
    if precision == "bf16" and not bf16_supported(device):
        warnings.warn(
            f"prepare_for_inference: {device.type} has no native bf16 here "
            f"(CPU: avx512_bf16/amx_bf16; GPU: compute capability >= 8.0); running fp32",
            stacklevel=2,
        )
        precision = "fp32"
    pairs, relus = _fold_plan(source)
    fmt = torch.channels_last if channels_last else torch.preserve_format
    prepared = _folded_copy(source, pairs, relus, fmt)
    if precision != "fp32":
        # Rounded once, here, not per call as autocast does; inputs are cast at the model's door.
        dtype = PRECISIONS[precision]
        prepared = prepared.to(dtype)
        prepared.register_forward_pre_hook(functools.partial(_cast_inputs, dtype=dtype))
        prepared.register_forward_hook(_cast_outputs)
    if pack:
        pack_convs(prepared)
    else:
        unpack_convs(prepared)
    if channels_last:
        prepared = prepared.to(memory_format=torch.channels_last)  # the parameters not folded
    prepared.prepared_for_inference = True  # evaluate() runs such a model as it is
    prepared.inference_precision = precision
    return prepared
