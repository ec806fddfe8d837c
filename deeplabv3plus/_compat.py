"""Every difference between the supported torch / torchvision releases, in one place.

The floor is torch 2.2 + torchvision 0.17 (README "Supported versions"; ``.ci/run`` runs the suite on
it and on the latest release). Call sites import from here instead of testing versions themselves.
Each shim names the release that made it unnecessary: when the floor passes that release, delete
the shim and call the API directly.
"""

from __future__ import annotations

import inspect
import re
from typing import Any

import torch
from torchvision import tv_tensors
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as F


def _release(version: str) -> tuple[int, int]:
    """``"2.2.2+cu121"`` -> ``(2, 2)``: the major.minor release a feature check compares against."""
    match = re.match(r"(\d+)\.(\d+)", version)
    if match is None:
        raise ValueError(f"cannot read a major.minor release from version string {version!r}")
    return int(match.group(1)), int(match.group(2))


TORCH_RELEASE = _release(torch.__version__)

# torch.onnx.export(..., dynamo=True, dynamic_shapes=...): the torch.export-based ONNX exporter,
# torch >= 2.5. Before it, torch.onnx.export is the TorchScript exporter and takes no ``dynamo``.
ONNX_DYNAMO_EXPORT = "dynamo" in inspect.signature(torch.onnx.export).parameters

# torch.export.export of the DeepLabv3+ models with symbolic height and width: torch 2.2 specialises
# both to the example size, 2.3 to 2.12 reject the range (they emit a guard on the parity of
# (H - 1) // 2); torch >= 2.13 keeps them dynamic. Tested on 2.2.2, 2.3.1, 2.4.1, 2.5.1, 2.7.1,
# 2.10.0, 2.12.0 (fail) and 2.13.0, 2.14.1 (pass).
TORCH_EXPORT_DYNAMIC_HW = TORCH_RELEASE >= (2, 13)

# torch.compile of the training step on CPU (train.compile): torch 2.2's inductor writes Python
# floor division ("//") into the C++ of the symbolic-shape kernels, a CppCompileError; torch >= 2.3
# compiles it. (Compiled inference on CPU works on torch 2.2.)
CPU_COMPILED_TRAINING = TORCH_RELEASE >= (2, 3)

# torch.amp.GradScaler(device_type): loss scaling on any device, torch >= 2.3. torch 2.2 only has
# torch.cuda.amp.GradScaler, which scales CUDA tensors only.
DEVICE_GRAD_SCALER = hasattr(torch.amp, "GradScaler")


# torch.compiler.is_compiling(): torch >= 2.3; torch 2.2 has torch._dynamo.is_compiling. Chosen once
# here, not by a getattr chain at call time: code that dynamo traces (torch.export of a prepared model)
# must call a function dynamo knows, and torch 2.2's dynamo cannot trace ``module is not None``.
if TORCH_RELEASE >= (2, 3):
    is_compiling = torch.compiler.is_compiling
else:
    import torch._dynamo

    is_compiling = torch._dynamo.is_compiling


def cpu_autocast_enabled() -> bool:
    """Whether CPU autocast is on: ``torch.is_autocast_enabled("cpu")`` from torch 2.4, before it
    ``torch.is_autocast_cpu_enabled()`` (deprecated since)."""
    if TORCH_RELEASE >= (2, 4):
        return torch.is_autocast_enabled("cpu")
    return torch.is_autocast_cpu_enabled()


# F.resize(mask, interpolation=NEAREST_EXACT) on a tv_tensors.Mask: honoured only since the fix of
# pytorch/vision#9188 (May 2026); before it every torchvision resized masks with NEAREST whatever was
# asked, which shifts labels against a bilinearly resized image at non-integer scales.
MASK_RESIZE_INTERPOLATION = "interpolation" in inspect.signature(F.resize_mask).parameters


def resize_mask_nearest_exact(mask: tv_tensors.Mask, size: list[int]) -> tv_tensors.Mask:
    """Resize a (..., H, W) mask to ``size`` = [h, w] with pixel-centre aligned nearest neighbour.

    NEAREST_EXACT samples the source pixel whose centre is nearest, the same alignment as the
    ``align_corners=False`` bilinear resize of the image, on every torchvision release.
    """
    if MASK_RESIZE_INTERPOLATION:
        return F.resize(mask, size, interpolation=InterpolationMode.NEAREST_EXACT)
    out = F.resize_image(mask.as_subclass(torch.Tensor), size, interpolation=InterpolationMode.NEAREST_EXACT)
    return tv_tensors.wrap(out, like=mask)


def query_size(flat_inputs: list[Any]) -> tuple[int, int]:
    """(height, width) shared by the images/masks of a v2 transform's flattened inputs.

    ``torchvision.transforms.v2.query_size`` is public from torchvision 0.20; before, the same
    function lives in ``torchvision.transforms.v2._utils``.
    """
    try:
        from torchvision.transforms.v2 import query_size as _query_size
    except ImportError:  # torchvision < 0.20
        from torchvision.transforms.v2._utils import query_size as _query_size
    return _query_size(flat_inputs)


def grad_scaler(device_type: str, enabled: bool) -> Any:
    """A loss scaler for fp16 training on ``device_type`` ("cuda", "cpu", ...); a no-op when not ``enabled``.

    Raises:
        ValueError: fp16 loss scaling on a non-CUDA device with torch < 2.3, which has no scaler
            for it (training in fp16 unscaled would silently underflow small gradients to zero).
    """
    if DEVICE_GRAD_SCALER:
        return torch.amp.GradScaler(device_type, enabled=enabled)
    if enabled and device_type != "cuda":
        raise ValueError(
            f"amp fp16 on device {device_type!r} needs loss scaling there (torch.amp.GradScaler, torch>=2.3), "
            f"which torch {torch.__version__} lacks: use amp bf16, a CUDA device or torch>=2.3"
        )
    # enabled=False off CUDA: passing it keeps torch from warning that CUDA is unavailable.
    return torch.cuda.amp.GradScaler(enabled=enabled)


def onnx_export(
    model: torch.nn.Module, args: tuple[Any, ...], path: str, *, dynamo: bool, **kwargs: Any
) -> None:
    """``torch.onnx.export`` choosing the exporter: ``dynamo=True`` the torch.export-based one (torch >= 2.5),
    ``dynamo=False`` the TorchScript one (every release; torch >= 2.5 needs it asked for by name).

    Raises:
        ValueError: ``dynamo=True`` on torch < 2.5 (a one-line user error in the scripts).
    """
    if ONNX_DYNAMO_EXPORT:
        torch.onnx.export(model, args, path, dynamo=dynamo, **kwargs)
    elif dynamo:
        raise ValueError(
            f"the dynamo ONNX exporter (torch.onnx.export(..., dynamo=True)) needs torch >= 2.5, this is "
            f"torch {torch.__version__}: use the 'torchscript' exporter"
        )
    else:
        torch.onnx.export(model, args, path, **kwargs)
