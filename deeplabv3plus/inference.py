"""Single- and multi-scale inference with left-right flipping (paper section 4, SPEC.md section 2).

The paper's best numbers average the softmax probabilities over scales {0.5, ..., 1.75} and
their left-right flips before the argmax. As the reference (``predict_labels_multi_scale`` in
research/deeplab/model.py), each scale resizes the image bilinearly to
``int((dim - 1) * scale + 1)`` with align_corners=True, the logits are resized back to the
input size bilinearly with align_corners=True, softmaxed, and the probabilities averaged.

Unlike a per-view loop, the flipped copies ride in the same batch as the images (one forward
pass per scale of 2N images), which keeps the GPU busy; ``max_batch`` bounds the images per
pass when memory is short. Works for any input size (the model must accept any size).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

PAPER_SCALES: tuple[float, ...] = (0.5, 0.75, 1.0, 1.25, 1.5, 1.75)
"""The evaluation scales of the paper's multi-scale rows (MS)."""

AMP_DTYPES: dict[str, Optional[torch.dtype]] = {"off": None, "bf16": torch.bfloat16, "fp16": torch.float16}
"""The autocast dtype of each ``train.amp`` / ``--amp`` setting."""


def scaled_size(height: int, width: int, scale: float) -> tuple[int, int]:
    """Image size at ``scale``, as the reference's ``scale_dimension``: ``int((dim - 1) * scale + 1)``.

    With align_corners=True resizing, this keeps the corner pixels aligned and maps a
    16k+1 crop (513) to 16k'+1 sizes at the paper's scales (0.5 -> 257, 1.5 -> 769).
    """
    return int((height - 1) * scale + 1), int((width - 1) * scale + 1)


def unwrap_model(model: nn.Module) -> nn.Module:
    """The module that owns ``output_stride`` under DDP (``.module``) or torch.compile (``._orig_mod``)."""
    while True:
        if hasattr(model, "_orig_mod"):
            model = model._orig_mod
        elif isinstance(model, nn.parallel.DistributedDataParallel) or type(model).__name__ == "DataParallel":
            model = model.module
        else:
            return model


@contextlib.contextmanager
def use_output_stride(model: nn.Module, output_stride: Optional[int]) -> Iterator[None]:
    """Temporarily set ``model.output_stride`` (None: leave it); restored on exit, even on error."""
    if output_stride is None:
        yield
        return
    inner = unwrap_model(model)
    previous = inner.output_stride
    inner.output_stride = output_stride
    try:
        yield
    finally:
        inner.output_stride = previous


def predict_probs(
    model: nn.Module,
    image: torch.Tensor,
    scales: Sequence[float] = (1.0,),
    flip: bool = False,
    output_stride: Optional[int] = None,
    max_batch: Optional[int] = None,
    amp_dtype: Optional[torch.dtype] = None,
    align_corners: bool = True,
) -> torch.Tensor:
    """Class probabilities averaged over scales and (optionally) left-right flips.

    Args:
        model: Maps a normalised (B, 3, h, w) float batch to (B, C, h, w) logits at any h, w.
            Its train/eval mode is left as it is (call ``model.eval()`` first).
        image: (N, 3, H, W) float, normalised like the training images.
        scales: Image scale factors; the paper's MS evaluation uses :data:`PAPER_SCALES`.
        flip: Also run the left-right flipped images (their outputs are flipped back).
        output_stride: Run at this output stride (8, 16, 32), restored afterwards; None keeps
            the model's.
        max_batch: At most this many images per forward pass (the N images and their N flips
            form one batch of 2N per scale); None puts them all in one pass.
        amp_dtype: Run the model under ``torch.autocast`` with this dtype (e.g.
            ``torch.bfloat16``); the resizing, softmax and averaging stay in float32.
        align_corners: Of the image and logit resizes; True as the reference.

    Returns:
        (N, C, H, W) float32 probabilities (each pixel sums to 1), on ``image``'s device.
    """
    if image.dim() != 4 or image.shape[1] != 3:
        raise ValueError(f"expected an (N, 3, H, W) image batch, got shape {tuple(image.shape)}")
    if not scales:
        raise ValueError("scales must not be empty")
    n, _, h, w = image.shape
    views = 2 * n if flip else n
    step = views if max_batch is None else max(1, int(max_batch))
    autocast = (
        torch.autocast(image.device.type, dtype=amp_dtype)
        if amp_dtype is not None
        else contextlib.nullcontext()
    )
    total: Optional[torch.Tensor] = None
    with torch.inference_mode(), use_output_stride(model, output_stride):
        for scale in scales:
            size = scaled_size(h, w, scale)
            x = image.float()
            if size != (h, w):
                x = F.interpolate(x, size=size, mode="bilinear", align_corners=align_corners)
            if flip:
                x = torch.cat([x, x.flip(-1)])
            for start in range(0, views, step):
                with autocast:
                    logits = model(x[start : start + step])
                logits = logits.float()
                if logits.shape[-2:] != (h, w):
                    logits = F.interpolate(logits, size=(h, w), mode="bilinear", align_corners=align_corners)
                probs = logits.softmax(dim=1)
                # Views start..start+len-1 of the 2N batch: view i is image i % N, flipped if i >= N.
                index = torch.arange(start, start + probs.shape[0], device=probs.device)
                flipped = index >= n
                if flipped.any():
                    probs = torch.where(flipped[:, None, None, None], probs.flip(-1), probs)
                if total is None:
                    total = torch.zeros(n, probs.shape[1], h, w, dtype=torch.float32, device=probs.device)
                total.index_add_(0, index % n, probs)
    assert total is not None
    return total / (len(scales) * (2 if flip else 1))


def segment(
    model: nn.Module,
    image: torch.Tensor,
    scales: Sequence[float] = (1.0,),
    flip: bool = False,
    output_stride: Optional[int] = None,
    max_batch: Optional[int] = None,
    amp_dtype: Optional[torch.dtype] = None,
) -> torch.Tensor:
    """Per-pixel class labels: the argmax of :func:`predict_probs`.

    Args:
        model, image, scales, flip, output_stride, max_batch, amp_dtype: As :func:`predict_probs`.

    Returns:
        (N, H, W) int64 class indices.
    """
    probs = predict_probs(
        model, image, scales, flip, output_stride=output_stride, max_batch=max_batch, amp_dtype=amp_dtype
    )
    return probs.argmax(dim=1)
