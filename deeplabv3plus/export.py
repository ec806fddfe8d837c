"""ONNX export with dynamic batch, height and width, a parity check with onnxruntime, and int8.

The exported graph maps ``image`` (N, 3, H, W) float32, normalised like the training images,
to ``logits`` (N, C, H, W) float32 at any N, H, W (the bilinear resizes are exported with the
input's symbolic size). The output stride is fixed at export time.

int8, post-training static quantisation calibrated on training images, two ways:

- :func:`quantize_onnx_int8` turns the exported graph into an int8 ONNX graph (ONNX Runtime's
  quantiser, QDQ, per-channel weights): one portable file that onnxruntime runs anywhere.
- :func:`quantize_pt2e_int8` quantises the model with PyTorch's PT2E flow and the x86 Inductor
  quantizer (torchao) into a ``torch.export`` program (``.pt2``); :func:`load_int8_program` compiles
  it with Inductor into oneDNN int8 convolutions. Faster on x86 CPUs with VNNI/AMX (docs/benchmarks.md)
  but needs torch, torchao and a C++ compiler where it runs, and compiles on its first call.

onnx, onnxruntime and onnxscript are the optional extra ``onnx``:
``pip install "deeplabv3plus[onnx]"``; torchao is the extra ``pt2e``.

Exporter: ``torch.onnx.export(..., dynamo=True)`` (the torch.export-based exporter, the default
since PyTorch 2.9) with ``dynamic_shapes``; it exports the DeepLabv3+ models with fully dynamic
batch/height/width in torch 2.14. If it fails (an unsupported op), the legacy TorchScript exporter
with ``dynamic_axes`` is tried, unless an exporter is named explicitly; torch < 2.5, which has no
dynamo exporter, uses the TorchScript one (``deeplabv3plus._compat.ONNX_DYNAMO_EXPORT``).

:func:`export_checkpoint` is the whole ``deeplabv3plus export`` job (a checkpoint in, a checked
fp32 graph or an int8 model out), with its options in :class:`ExportSettings`.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import importlib
import importlib.util
import logging
import tempfile
import time
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Optional, Union

import torch
import torch.fx as fx
import torch.nn as nn

from deeplabv3plus._compat import ONNX_DYNAMO_EXPORT, onnx_export
from deeplabv3plus.config import DataConfig
from deeplabv3plus.data.datasets import build_dataset
from deeplabv3plus.inference import use_output_stride
from deeplabv3plus.loading import load_model_from_checkpoint
from deeplabv3plus.models import prepare_for_inference

INPUT_NAME = "image"
OUTPUT_NAME = "logits"


def _require(module: str, extra: str = "onnx", what: str = "ONNX export"):
    try:
        return importlib.import_module(module)
    except ImportError as e:
        package = module.split(".")[0]
        found = importlib.util.find_spec(package) is not None
        need = f"{module} (an older {package} is installed)" if found else package
        raise ImportError(f'{what} needs {need}: pip install -U "deeplabv3plus[{extra}]"') from e


def _dynamic_image_dims(min_side: int) -> dict[int, torch.export.Dim]:
    """torch.export's dynamic batch, height and width of an (N, 3, H, W) image input."""
    return {
        0: torch.export.Dim("batch", min=1),
        2: torch.export.Dim("height", min=min_side),
        3: torch.export.Dim("width", min=min_side),
    }


def export_onnx(
    model: nn.Module,
    path: Union[str, Path],
    *,
    height: int = 513,
    width: int = 513,
    output_stride: Optional[int] = None,
    exporter: str = "auto",
    opset: Optional[int] = None,
) -> str:
    """Export ``model`` to ONNX with dynamic batch, height and width.

    Args:
        model: Maps (N, 3, H, W) float32 to (N, C, H, W) logits. What is exported is its
            :func:`~deeplabv3plus.models.fuse.prepare_for_inference` copy (eval mode, BatchNorm
            folded into the convs); ``model`` itself is left as it is.
        path: The ``.onnx`` file to write.
        height, width: Size of the example input that traces the graph (the default 513 is the
            paper's crop); the graph accepts other sizes.
        output_stride: Export at this output stride (8, 16, 32); None keeps the model's.
        exporter: "dynamo" (torch.export-based, torch >= 2.5), "torchscript" (legacy), or "auto":
            dynamo, then torchscript if dynamo fails (torchscript alone on torch < 2.5).
        opset: ONNX opset version; None: the exporter's default.

    Returns:
        The exporter that wrote the file: "dynamo" or "torchscript".
    """
    if exporter not in ("auto", "dynamo", "torchscript"):
        raise ValueError(f"exporter must be 'auto', 'dynamo' or 'torchscript', got {exporter!r}")
    _require("onnx")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    # Batch 2: torch.export specialises dimensions of size 0 or 1 to constants.
    example = torch.randn(2, 3, height, width, device=device)
    was_training = model.training
    model.eval()
    # The graph of the prepared copy: BatchNorm folded into the convs (the caller's model is untouched).
    source, model = model, prepare_for_inference(model, channels_last=False, pack=False)
    try:
        with use_output_stride(model, output_stride), torch.no_grad():
            # "auto" on a torch without the dynamo exporter (< 2.5) goes straight to TorchScript.
            if exporter == "dynamo" or (exporter == "auto" and ONNX_DYNAMO_EXPORT):
                try:
                    _export_dynamo(model, example, path, opset)
                    return "dynamo"
                except Exception as e:
                    if exporter == "dynamo":
                        raise
                    warnings.warn(
                        f"dynamo ONNX export failed ({type(e).__name__}: {str(e)[:300]}); "
                        "falling back to the TorchScript exporter",
                        stacklevel=2,
                    )
            _export_torchscript(model, example, path, opset)
            return "torchscript"
    finally:
        source.train(was_training)


def _export_dynamo(model: nn.Module, example: torch.Tensor, path: Path, opset: Optional[int]) -> None:
    """``torch.onnx.export(dynamo=True)`` with dynamic batch, height and width."""
    _require("onnxscript")
    onnx_export(
        model,
        (example,),
        str(path),
        dynamo=True,
        dynamic_shapes=(_dynamic_image_dims(min_side=2),),
        input_names=[INPUT_NAME],
        output_names=[OUTPUT_NAME],
        opset_version=opset,
        verbose=False,
    )


def _export_torchscript(model: nn.Module, example: torch.Tensor, path: Path, opset: Optional[int]) -> None:
    """The legacy TorchScript exporter with ``dynamic_axes`` (opset 17 unless given)."""
    axes = {0: "batch", 2: "height", 3: "width"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # "legacy exporter": we know
        onnx_export(
            model,
            (example,),
            str(path),
            dynamo=False,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: axes, OUTPUT_NAME: axes},
            opset_version=opset if opset is not None else 17,
        )


class OnnxRuntimeModel(nn.Module):
    """An onnxruntime CPU session behind a module's call: (N, 3, H, W) float32 -> the graph's output.

    ``threads``: onnxruntime's intra-op threads (inter-op 1); None: its default.
    """

    def __init__(self, path: Union[str, Path], threads: Optional[int] = None):
        super().__init__()
        ort = _require("onnxruntime")
        options = ort.SessionOptions()
        if threads is not None:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.session.run(None, {self.input_name: x.detach().cpu().float().contiguous().numpy()})[0]
        return torch.from_numpy(out)


def check_onnx(
    model: nn.Module,
    path: Union[str, Path],
    inputs: Sequence[torch.Tensor],
    *,
    output_stride: Optional[int] = None,
    atol: float = 1e-4,
    rtol: float = 1e-4,
) -> float:
    """Compare the ONNX graph (onnxruntime, CPU) with the PyTorch model on several inputs.

    Pass inputs of at least two different sizes (and batch sizes) to check that the dynamic
    axes really are dynamic, not baked in at the export size.

    Args:
        model: The exported model.
        path: The ``.onnx`` file.
        inputs: (N, 3, H, W) float32 tensors.
        output_stride: The output stride the graph was exported at (None: the model's).
        atol, rtol: Allowed ``|onnx - torch| <= atol + rtol * |torch|``, elementwise.

    Returns:
        The largest absolute difference over all inputs.

    Raises:
        AssertionError: when an output differs beyond the tolerance or has the wrong shape.
    """
    _require("onnx").checker.check_model(str(path))
    graph = OnnxRuntimeModel(path)
    was_training = model.training
    model.eval()
    worst = 0.0
    try:
        with use_output_stride(model, output_stride), torch.no_grad():
            for x in inputs:
                expected = model(x).float().cpu()
                got = graph(x)
                if got.shape != expected.shape:
                    raise AssertionError(
                        f"ONNX output shape {tuple(got.shape)} != PyTorch {tuple(expected.shape)}"
                    )
                diff = (got - expected).abs()
                worst = max(worst, diff.max().item())
                bad = diff > atol + rtol * expected.abs()
                if bad.any():
                    raise AssertionError(
                        f"ONNX differs from PyTorch at input {tuple(x.shape)}: max |diff| {diff.max().item():.3g}, "
                        f"{int(bad.sum())} elements beyond atol={atol}, rtol={rtol}"
                    )
    finally:
        model.train(was_training)
    return worst


def quantize_onnx_int8(
    source: Union[str, Path],
    output: Union[str, Path],
    calibration: Iterable[torch.Tensor],
    *,
    per_channel: bool = True,
    nodes_to_exclude: Sequence[str] = (),
) -> Path:
    """Post-training static int8 quantisation of an exported fp32 graph with ONNX Runtime's quantiser.

    ``onnxruntime.quantization.quantize_static`` in QDQ format: weights int8 per output channel
    (symmetric), biases int32, activations uint8 per tensor with ranges calibrated (MinMax) on
    ``calibration``; onnxruntime's CPU provider then fuses each QuantizeLinear/DequantizeLinear
    group around a conv into one ``QLinearConv`` (VNNI or AMX where the CPU has it). Nodes named in
    ``nodes_to_exclude`` stay fp32 (layers too sensitive to 8 bits; ``deeplabv3plus export
    --int8-exclude``).

    The graph first goes through onnxruntime's quantisation pre-processing (``quant_pre_process``:
    constant folding and shape inference). It matters: the exporter stores equal tensors once and
    reads the copies through ``Identity`` nodes, as with the zero biases BN folding gives every
    untrained conv of one width. The quantiser can only turn an initializer into an int32 bias, and
    a conv with an fp32 bias is not fused: it runs as dequantise -> fp32 conv -> quantise, slower
    than the fp32 graph (docs/benchmarks.md).

    Args:
        source: the fp32 ``.onnx`` (e.g. :func:`export_onnx`'s, TorchScript exporter).
        output: the int8 ``.onnx`` to write.
        calibration: (1, 3, H, W) float32 images, normalised as in training: a few hundred
            training images (the reference's quantisation recipe calibrates on training data too).
        per_channel: per-output-channel weight scales (per-tensor loses the depthwise convs).
        nodes_to_exclude: ONNX node names to keep in fp32.

    Returns:
        ``output``.
    """
    quantization = _require("onnxruntime.quantization")
    images = iter(calibration)

    class _Reader(quantization.CalibrationDataReader):
        def get_next(self):
            x = next(images, None)
            return None if x is None else {INPUT_NAME: x.detach().cpu().float().contiguous().numpy()}

    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings(), _quiet_root_logger(), tempfile.TemporaryDirectory() as tmp:
        warnings.simplefilter("ignore")
        # One self-contained file first: the pre-processing loses the dynamo exporter's external
        # weights file (<source>.data) on the way (DeepLabv3+ graphs are far below ONNX's 2 GB limit).
        inline, prepared = Path(tmp) / "inline.onnx", Path(tmp) / "prepared.onnx"
        onnx = _require("onnx")
        graph = onnx.load(str(source))  # with the external weights read in
        onnx.external_data_helper.convert_model_from_external_data(graph)
        onnx.save(graph, str(inline))
        # Symbolic shape inference is for transformers' dynamic dims; ONNX's own covers convs.
        pre_process = _require("onnxruntime.quantization.shape_inference").quant_pre_process
        pre_process(str(inline), str(prepared), skip_symbolic_shape=True)
        quantization.quantize_static(
            str(prepared),
            str(output),
            _Reader(),
            quant_format=quantization.QuantFormat.QDQ,
            per_channel=per_channel,
            activation_type=quantization.QuantType.QUInt8,
            weight_type=quantization.QuantType.QInt8,
            calibrate_method=quantization.CalibrationMethod.MinMax,
            nodes_to_exclude=list(nodes_to_exclude),
        )
    return output


@contextlib.contextmanager
def _quiet_root_logger():
    """The quantiser and its pre-processing log at INFO/WARNING level through the root logger."""
    logger = logging.getLogger()
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def label_agreement(
    model: nn.Module, quantized: Union[str, Path, nn.Module], inputs: Sequence[torch.Tensor]
) -> float:
    """Fraction of pixels whose argmax class from ``quantized`` equals the PyTorch ``model``'s.

    The check for a quantised model, whose logits differ from the fp32 model's by design.
    ``quantized`` is an ``.onnx`` file (run by onnxruntime, CPU) or a module
    (:func:`load_int8_program`'s).
    """
    run = quantized if isinstance(quantized, nn.Module) else OnnxRuntimeModel(quantized)
    same = total = 0
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for x in inputs:
                expected = model(x).argmax(1)
                got = run(x).argmax(1)
                same += int((got == expected).sum())
                total += expected.numel()
    finally:
        model.train(was_training)
    return same / max(total, 1)


def _unshare_stateless_modules(model: nn.Module) -> fx.GraphModule:
    """A traced copy of ``model`` in which every call of a parameter-free module (a ReLU used twice in
    a residual unit) has its own module, none of them in place.

    The x86 quantizer matches conv -> add -> ReLU by the module each op came from, and refuses a
    ReLU module that produces several outputs (torchao's x86_inductor_quantizer,
    ``_get_output_nodes_of_partitions``); ResNet's units call one ReLU two or three times.
    """
    graph_module = fx.symbolic_trace(model)
    calls: dict[str, int] = {}
    for node in graph_module.graph.nodes:
        # torch.export would take the stale module path from fx's own node metadata.
        node.meta.clear()
        if node.op != "call_module":
            continue
        module = graph_module.get_submodule(node.target)
        if next(module.parameters(), None) is not None or next(module.buffers(), None) is not None:
            continue
        if hasattr(module, "inplace"):
            module.inplace = False  # an exported graph is functional anyway; in place hides the op's output
        calls[node.target] = calls.get(node.target, 0) + 1
        if calls[node.target] > 1:
            name = f"{node.target.replace('.', '_')}_call{calls[node.target]}"
            graph_module.add_submodule(name, copy.deepcopy(module))
            node.target = name
    graph_module.recompile()
    return graph_module


def quantize_pt2e_int8(
    model: nn.Module,
    output: Union[str, Path],
    calibration: Iterable[torch.Tensor],
    *,
    output_stride: Optional[int] = None,
) -> Path:
    """Post-training static int8 quantisation with PyTorch's PT2E flow, saved as a ``torch.export`` program.

    The model's :func:`~deeplabv3plus.models.fuse.prepare_for_inference` copy (BatchNorm folded) is
    exported with dynamic batch, height and width, annotated by torchao's ``X86InductorQuantizer``
    (its default config: int8 symmetric per-output-channel weights, uint8 per-tensor activations,
    conv + add + ReLU fused), calibrated on ``calibration`` and converted. The file holds the
    quantise/dequantise graph; :func:`load_int8_program` compiles it into int8 oneDNN convolutions.

    Args:
        model: Maps (N, 3, H, W) float32 to (N, C, H, W) logits; left as it is.
        output: the ``.pt2`` file to write.
        calibration: (1, 3, H, W) float32 images normalised as in training (a few hundred training
            images; any sizes above the output stride).
        output_stride: quantise at this output stride (8, 16, 32); None keeps the model's.

    Returns:
        ``output``.
    """
    pt2e = _require("torchao.quantization.pt2e.quantize_pt2e", "pt2e", "PT2E int8")
    x86 = _require("torchao.quantization.pt2e.quantizer.x86_inductor_quantizer", "pt2e", "PT2E int8")

    source = prepare_for_inference(model, channels_last=False, pack=False).cpu()  # an x86 CPU program
    calibration = [x.detach().cpu().float() for x in calibration]
    if not calibration:
        raise ValueError("quantize_pt2e_int8: calibration holds no image")
    with use_output_stride(source, output_stride), torch.no_grad():
        stride = getattr(source, "output_stride", 16)
        traced = _unshare_stateless_modules(source)
        example = (torch.cat([calibration[0], calibration[0]]),)  # batch 2: size-1 dims are specialised
        # torch.export itself (not the ONNX exporter) refuses a range that includes a 1x1 map at the
        # output stride: the ASPP's image pooling broadcasts over it, a special case it guards.
        dims = (_dynamic_image_dims(min_side=stride + 1),)
        exported = torch.export.export(traced, example, dynamic_shapes=dims).module()
        quantizer = x86.X86InductorQuantizer().set_global(x86.get_default_x86_inductor_quantization_config())
        observed = pt2e.prepare_pt2e(exported, quantizer)
        for x in calibration:
            observed(x)
        quantized = pt2e.convert_pt2e(observed)
        _drop_unused_tensors(quantized)
        program = torch.export.export(quantized, example, dynamic_shapes=dims)
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        # Weights sharing one storage, none of them whole (views of the folded int8 weights): the
        # file stores the storage once either way; the warning concerns weights not on the CPU.
        warnings.filterwarnings("ignore", message="No complete tensor found in the group")
        torch.export.save(program, str(output))
    return output


def _drop_unused_tensors(graph_module: fx.GraphModule) -> None:
    """Delete the parameters and buffers no node reads, in place.

    ``convert_pt2e`` folds each weight's quantisation into a new int8 constant but keeps the fp32
    original as an attribute, so the saved program would carry both (a ~5x larger file).
    """
    used = {node.target for node in graph_module.graph.nodes if node.op == "get_attr"}
    named = [*graph_module.named_parameters(), *graph_module.named_buffers()]
    for name in [name for name, _ in named if name not in used]:
        owner, _, attr = name.rpartition(".")
        delattr(graph_module.get_submodule(owner) if owner else graph_module, attr)


class Int8Program(nn.Module):
    """A compiled int8 ``torch.export`` program behind a module's call: (N, 3, H, W) float32 -> logits.

    ``train()``/``eval()`` do nothing (an exported program has one mode: inference).
    """

    def __init__(self, compiled):
        super().__init__()
        self._compiled = [compiled]  # a list: not a registered submodule, which train() would visit

    def train(self, mode: bool = True) -> Int8Program:
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Compilation happens at the first call of each new shape: freezing must be on then.
        # (torch.compile(options={"freezing": True}) fails here in torch 2.14: qconv_prepack has no
        # fake-tensor kernel on that path; the global config is what PyTorch's x86 Inductor
        # quantisation tutorial sets.)
        import torch._inductor.config as inductor_config

        with torch.no_grad(), inductor_config.patch(freezing=True):
            return self._compiled[0](x)


def load_int8_program(path: Union[str, Path]) -> Int8Program:
    """Load :func:`quantize_pt2e_int8`'s ``.pt2`` file and compile it with Inductor for the CPU.

    ``freezing`` makes Inductor fold the quantised weights into int8 constants and pack them once
    for oneDNN (without it every call re-quantises the fp32 weights). The first call at each new
    input shape compiles (seconds to a minute), later calls run the compiled code.
    """
    _require("torchao", "pt2e", "PT2E int8")  # registers the quantise/dequantise ops the file names
    program = torch.export.load(str(path))
    return Int8Program(torch.compile(program.module()))


# --- the export command's job: a checkpoint in, a checked fp32 or int8 file out -----------------


@dataclasses.dataclass(frozen=True)
class ExportSettings:
    """How :func:`export_checkpoint` writes a model (the options of ``deeplabv3plus export``)."""

    height: int = 513
    """Height of the example input that traces the graph, in pixels (the graph takes any size)."""
    width: int = 513
    """Width of that example input, in pixels."""
    output_stride: Optional[int] = None
    """Export at this output stride (8, 16, 32); None keeps the model's."""
    exporter: str = "auto"
    """ONNX exporter, as :func:`export_onnx`; with int8 (onnxruntime), "auto" is TorchScript."""
    opset: Optional[int] = None
    """ONNX opset version; None: the exporter's default."""
    check: bool = True
    """Check the written file: onnxruntime against PyTorch (fp32), label agreement (int8)."""
    int8: bool = False
    """Write an int8 model calibrated on training images instead of fp32."""
    int8_backend: Optional[str] = None
    """With ``int8``: "onnxruntime" (None: the default; an int8 QDQ .onnx) or "pt2e" (a .pt2 program)."""
    calibration_images: int = 200
    """With ``int8``: how many ``data.train_split`` images to calibrate on."""
    int8_exclude: Sequence[str] = ()
    """With ``int8`` (onnxruntime): ONNX node names kept in fp32."""


def check_export_settings(settings: ExportSettings, output: Union[str, Path]) -> None:
    """Refuse settings that cannot export (before any checkpoint is read).

    Raises:
        ValueError: naming the option: a trace size under 16 pixels, an opset outside 7..30, an
            int8 backend without int8, ONNX options with the PT2E backend, an ``output`` whose
            suffix is not ``.onnx`` (``.pt2`` for PT2E), fewer than one calibration image.
    """
    if settings.height < 16 or settings.width < 16:
        raise ValueError(
            f"--height/--width: expected at least 16 pixels, got {settings.height}x{settings.width}"
        )
    if settings.opset is not None and not 7 <= settings.opset <= 30:
        raise ValueError(f"--opset: expected an ONNX opset version such as 17 or 18, got {settings.opset}")
    if settings.int8_backend is not None and not settings.int8:
        raise ValueError("--int8-backend: only with --int8")
    if settings.int8_backend not in (None, "onnxruntime", "pt2e"):
        raise ValueError(f"--int8-backend: expected onnxruntime or pt2e, got {settings.int8_backend!r}")
    pt2e = settings.int8 and settings.int8_backend == "pt2e"
    if pt2e and (settings.int8_exclude or settings.opset is not None or settings.exporter != "auto"):
        raise ValueError("--int8-backend pt2e: --int8-exclude, --opset and --exporter are ONNX options")
    suffix = ".pt2" if pt2e else ".onnx"
    if Path(output).suffix.lower() != suffix:
        raise ValueError(f"--output: expected a file name ending in {suffix}, got '{output}'")
    if settings.calibration_images < 1:
        raise ValueError(
            f"--calibration-images: expected a positive number, got {settings.calibration_images}"
        )


def export_checkpoint(
    checkpoint: Union[str, Path],
    output: Union[str, Path],
    settings: Optional[ExportSettings] = None,
    *,
    config: Optional[Union[str, Path]] = None,
) -> str:
    """Export a training checkpoint to a checked fp32 ONNX graph or an int8 model; print what was written.

    What ``deeplabv3plus export`` runs: :func:`check_export_settings`, the model of ``checkpoint``
    (:func:`~deeplabv3plus.loading.load_model_from_checkpoint`, on the CPU), then
    :func:`export_fp32` or, with ``settings.int8``, :func:`export_int8`.

    Args:
        checkpoint: A training checkpoint (.pth) or a bare state_dict (then ``config`` is required).
        output: The ``.onnx`` file to write (``.pt2`` with the PT2E int8 backend).
        settings: How to export (default: :class:`ExportSettings`'s defaults, fp32 at 513x513).
        config: A YAML config whose values go on top of the checkpoint's.

    Returns:
        What wrote the file: "dynamo" or "torchscript" (the ONNX exporter), or "pt2e".

    Raises:
        ValueError: bad settings (:func:`check_export_settings`), or no calibration image.
        CheckpointError: a checkpoint that cannot be read or does not fit its config.
        ImportError: the extra ``onnx`` (or ``pt2e``) is not installed.
        AssertionError: the check found onnxruntime's output differing from PyTorch's.
    """
    settings = ExportSettings() if settings is None else settings
    check_export_settings(settings, output)
    model, cfg = load_model_from_checkpoint(checkpoint, config, device="cpu")
    if settings.int8:
        return export_int8(model, cfg.data, output, settings)
    return export_fp32(model, output, settings)


def export_fp32(model: nn.Module, output: Union[str, Path], settings: ExportSettings) -> str:
    """:func:`export_onnx`, then (``settings.check``) :func:`check_onnx` at two sizes and batch sizes
    other than the tracing example's; prints the files written and the largest difference.

    Returns:
        The exporter that wrote the file: "dynamo" or "torchscript".
    """
    started = time.time()
    used = export_onnx(
        model,
        output,
        height=settings.height,
        width=settings.width,
        output_stride=settings.output_stride,
        exporter=settings.exporter,
        opset=settings.opset,
    )
    data = Path(f"{output}.data")
    if data.is_file() and data.stat().st_mtime >= started - 1:
        print(f"wrote {output} and its weights {data} ({used} exporter; keep the two files together)")
    else:
        print(f"wrote {output} ({used} exporter)")
    if settings.check:
        # Two sizes and batch sizes other than the tracing example: the axes must be dynamic.
        height, width = settings.height, settings.width
        inputs = [torch.randn(1, 3, height, width), torch.randn(2, 3, height // 2 + 7, width - 10)]
        worst = check_onnx(model, output, inputs, output_stride=settings.output_stride)
        print(f"onnxruntime matches PyTorch at {[tuple(x.shape) for x in inputs]}: max |diff| {worst:.2e}")
    return used


def calibration_images(data: DataConfig, count: int) -> tuple[list[torch.Tensor], str]:
    """``count`` training images spread evenly over ``data.train_split``, normalised as in evaluation.

    Returns:
        (1, 3, H, W) float32 images (whole images, one per batch), and a note saying how many of
        how many, e.g. "3 of the 6 'train' images".

    Raises:
        ValueError: the split holds no image.
    """
    dataset = build_dataset(data, data.train_split, train=False)
    if len(dataset) == 0:
        raise ValueError(f"--int8: split '{data.train_split}' under '{data.root}' holds no image")
    count = min(count, len(dataset))
    indices = sorted({round(i * (len(dataset) - 1) / max(count - 1, 1)) for i in range(count)})
    images = [dataset[i][0].unsqueeze(0) for i in indices]
    return images, f"{len(images)} of the {len(dataset)} '{data.train_split}' images"


def export_int8(
    model: nn.Module, data: DataConfig, output: Union[str, Path], settings: ExportSettings
) -> str:
    """Post-training static int8, calibrated on :func:`calibration_images` of ``data``, into ``output``.

    By ONNX Runtime (the fp32 graph, TorchScript exporter unless ``settings.exporter`` names
    another, into a temporary folder, then :func:`quantize_onnx_int8`) or, with
    ``settings.int8_backend == "pt2e"``, by :func:`quantize_pt2e_int8` (a .pt2 program). With
    ``settings.check``, prints the share of pixels whose int8 labels agree with the fp32 model's
    on 4 of the calibration images.

    Returns:
        "pt2e", or the ONNX exporter of the fp32 graph ("torchscript" or "dynamo").
    """
    images, note = calibration_images(data, settings.calibration_images)
    if settings.int8_backend == "pt2e":
        quantize_pt2e_int8(model, output, images, output_stride=settings.output_stride)
        used, what = "pt2e", "int8 PT2E x86 program"
    else:
        used = "torchscript" if settings.exporter == "auto" else settings.exporter
        with tempfile.TemporaryDirectory() as tmp:
            fp32 = Path(tmp) / "fp32.onnx"
            export_onnx(model, fp32, height=settings.height, width=settings.width,
                        output_stride=settings.output_stride, exporter=used, opset=settings.opset)  # fmt: skip
            quantize_onnx_int8(fp32, output, images, nodes_to_exclude=settings.int8_exclude)
        what = "int8 QDQ"
    print(f"wrote {output} ({what}, per-channel weights; calibrated on {note})")
    if settings.check:
        quantized = load_int8_program(output) if used == "pt2e" else output
        with use_output_stride(model, settings.output_stride):
            agree = label_agreement(model, quantized, images[:4])
        print(
            f"int8 labels agree with the fp32 PyTorch model's on {100 * agree:.2f}% of the pixels of 4 images"
        )
    return used
