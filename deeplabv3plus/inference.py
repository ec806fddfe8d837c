"""Single- and multi-scale inference with left-right flipping (paper section 4; the reference's
``eval.py`` flags ``eval_scales`` and ``add_flipped_images``).

The paper's best numbers average the softmax probabilities over scales {0.5, ..., 1.75} and
their left-right flips before the argmax. As the reference (``predict_labels_multi_scale`` in
research/deeplab/model.py), each scale resizes the image bilinearly to
``int((dim - 1) * scale + 1)`` with align_corners=True, the logits are resized back to the
input size bilinearly with align_corners=True, softmaxed, and the probabilities averaged.

Unlike a per-view loop, the flipped copies ride in the same batch as the images (one forward
pass per scale of 2N images), which keeps the GPU busy; ``max_batch`` bounds the images per
pass when memory is short. Works for any input size (the model must accept any size).

``mode="slide"`` runs each (scaled, flipped) image as windows of ``crop_size`` instead of in one
pass, for images too large to run whole (Cityscapes' 1024x2048 frames at output stride 8):

* windows start every ``stride`` pixels and the last one in each direction is aligned to the
  image edge, so every window is full-size; along a side of the (scaled) image that is no longer
  than the crop there is one window, the whole side. A crop covering the image is therefore
  exactly ``whole``, at every scale; to pad small images to the crop as the reference pads to
  its eval crop, use ``pad_to`` of :func:`deeplabv3plus.evaluate.evaluate` (it applies before);
* the **logits** of overlapping windows are averaged (then resized and softmaxed like the
  ``whole`` logits, so scales and flips combine as before). A window's pixels within half the
  overlap of one of its sides that lies inside the image are left out of the average: they
  lack the context beyond the window, and the neighbouring window, which has it, covers them.
  So on a model whose receptive field reaches at most half the overlap, ``slide`` equals
  ``whole``; DeepLab's image-pooling branch sees one window, not the image, so it differs there
  (peers such as mmsegmentation average every window pixel with equal weight).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Optional, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

from .config import EvalConfig
from .models.layers import unwrap_model

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


Window = Union[int, Sequence[int]]
"""A window size or step: one int (square) or (height, width)."""


def _pair(value: Window, name: str) -> tuple[int, int]:
    pair = (value, value) if isinstance(value, int) else tuple(int(v) for v in value)
    if len(pair) != 2 or min(pair) < 1:
        raise ValueError(f"{name}: expected a positive int or (height, width), got {value!r}")
    return pair


def slide_window_pairs(
    crop_size: Window, stride: Optional[Window] = None
) -> tuple[tuple[int, int], tuple[int, int]]:
    """``(crop (h, w), stride (h, w))``; the default stride is 2/3 of the crop (769 -> 513)."""
    crop = _pair(crop_size, "crop_size")
    step = _pair(stride, "stride") if stride is not None else tuple(max(1, round(2 * c / 3)) for c in crop)
    if step[0] > crop[0] or step[1] > crop[1]:
        raise ValueError(
            f"stride {step} is larger than crop_size {crop}: pixels between windows get no prediction"
        )
    return crop, step


def window_starts(size: int, crop: int, stride: int) -> list[int]:
    """Offsets of the windows along one side: every ``stride``, the last aligned to the edge.

    A side no longer than ``crop`` gets one window at 0 (the whole side).
    """
    if size <= crop:
        return [0]
    count = -(-(size - crop) // stride) + 1
    return [min(i * stride, size - crop) for i in range(count)]


def slide_logits(
    model: nn.Module,
    x: torch.Tensor,
    crop_size: Window,
    stride: Optional[Window] = None,
    max_batch: Optional[int] = None,
    autocast: Optional[contextlib.AbstractContextManager] = None,
) -> torch.Tensor:
    """Logits of a batch computed window by window (see the module docstring for the rule).

    Args:
        model: Maps (B, 3, h, w) to (B, C, h, w) logits.
        x: (B, 3, H, W) float, normalised.
        crop_size: The window, (height, width) or one int.
        stride: The step between windows; None: 2/3 of ``crop_size``.
        max_batch: At most this many images per forward pass (each pass holds one window of
            up to ``max_batch`` images); None: all ``B`` at once.
        autocast: Context the forward passes run in (e.g. ``torch.autocast``).

    Returns:
        (B, C, H, W) float32 logits.
    """
    (ch, cw), (sh, sw) = slide_window_pairs(crop_size, stride)
    b, _, height, width = x.shape
    ch, cw = min(ch, height), min(cw, width)  # a side within the crop is one window
    step = b if max_batch is None else max(1, int(max_batch))
    # Half the overlap: the widest margin every pixel is still trusted by some window.
    mh, mw = (ch - sh) // 2, (cw - sw) // 2
    total: Optional[torch.Tensor] = None
    count = torch.zeros(1, 1, height, width, dtype=torch.float32, device=x.device)
    for y in window_starts(height, ch, sh):
        top, bottom = (mh if y > 0 else 0), (mh if y + ch < height else 0)
        for x0 in window_starts(width, cw, sw):
            left, right = (mw if x0 > 0 else 0), (mw if x0 + cw < width else 0)
            window = x[:, :, y : y + ch, x0 : x0 + cw]
            for start in range(0, b, step):
                with autocast if autocast is not None else contextlib.nullcontext():
                    logits = model(window[start : start + step])
                if logits.shape[-2:] != (ch, cw):
                    raise ValueError(
                        f"the model returned logits of size {tuple(logits.shape[-2:])} for a window of "
                        f"{(ch, cw)}; slide needs logits at the input size"
                    )
                if total is None:
                    total = torch.zeros(
                        b, logits.shape[1], height, width, dtype=torch.float32, device=x.device
                    )
                total[start : start + step, :, y + top : y + ch - bottom, x0 + left : x0 + cw - right] += (
                    logits[:, :, top : ch - bottom, left : cw - right].float()
                )
            count[:, :, y + top : y + ch - bottom, x0 + left : x0 + cw - right] += 1
    assert total is not None and bool((count > 0).all())
    return total / count


def _check_predict_args(
    image: torch.Tensor,
    scales: Sequence[float],
    mode: str,
    crop_size: Optional[Window],
    stride: Optional[Window],
) -> None:
    """Raise ValueError on arguments :func:`predict_probs` cannot run, before any forward pass."""
    if image.dim() != 4 or image.shape[1] != 3:
        raise ValueError(f"expected an (N, 3, H, W) image batch, got shape {tuple(image.shape)}")
    if not scales:
        raise ValueError("scales must not be empty")
    if mode not in ("whole", "slide"):
        raise ValueError(f"mode: expected 'whole' or 'slide', got {mode!r}")
    if mode == "slide":
        if crop_size is None:
            raise ValueError("mode='slide' needs crop_size (the window)")
        slide_window_pairs(crop_size, stride)


def _add_view_probs(
    total: Optional[torch.Tensor],
    logits: torch.Tensor,
    start: int,
    n: int,
    size: tuple[int, int],
    align_corners: bool,
) -> torch.Tensor:
    """Add the class probabilities of views ``start, ..., start + v - 1`` to ``total``; returns it.

    Args:
        total: (N, C, H, W) float32 sums so far, or None (the first call: zeros).
        logits: (v, C, h, w) logits of ``v`` consecutive views of the (2)N-view batch: view i is
            image i % N, left-right flipped if i >= N.
        start: The index of the first of these views.
        n: The number of images ``N``.
        size: (H, W), the image size the logits are resized to (bilinear) before the softmax.
        align_corners: Of that resize.
    """
    logits = logits.float()
    if logits.shape[-2:] != size:
        logits = F.interpolate(logits, size=size, mode="bilinear", align_corners=align_corners)
    probs = logits.softmax(dim=1)
    index = torch.arange(start, start + probs.shape[0], device=probs.device)
    flipped = index >= n
    if flipped.any():
        probs = torch.where(flipped[:, None, None, None], probs.flip(-1), probs)
    if total is None:
        total = torch.zeros(n, probs.shape[1], *size, dtype=torch.float32, device=probs.device)
    return total.index_add_(0, index % n, probs)


def predict_probs(
    model: nn.Module,
    image: torch.Tensor,
    scales: Sequence[float] = (1.0,),
    flip: bool = False,
    output_stride: Optional[int] = None,
    max_batch: Optional[int] = None,
    amp_dtype: Optional[torch.dtype] = None,
    align_corners: bool = True,
    *,
    mode: str = "whole",
    crop_size: Optional[Window] = None,
    stride: Optional[Window] = None,
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
        mode: "whole" (each scaled view in one pass) or "slide" (each scaled view as windows,
            :func:`slide_logits`; ``max_batch`` then bounds the images per window pass).
        crop_size: "slide": the window, (height, width) or one int, in pixels of the scaled image.
        stride: "slide": the step between windows; None: 2/3 of ``crop_size``.

    Returns:
        (N, C, H, W) float32 probabilities (each pixel sums to 1), on ``image``'s device.
    """
    _check_predict_args(image, scales, mode, crop_size, stride)
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
                if mode == "slide":
                    logits = slide_logits(
                        model, x[start : start + step], crop_size, stride, autocast=autocast
                    )
                else:
                    with autocast:
                        logits = model(x[start : start + step])
                total = _add_view_probs(total, logits, start, n, (h, w), align_corners)
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
    *,
    mode: str = "whole",
    crop_size: Optional[Window] = None,
    stride: Optional[Window] = None,
) -> torch.Tensor:
    """Per-pixel class labels: the argmax of :func:`predict_probs`.

    Args:
        model, image, scales, flip, output_stride, max_batch, amp_dtype, mode, crop_size, stride:
            As :func:`predict_probs`.

    Returns:
        (N, H, W) int64 class indices.
    """
    probs = predict_probs(
        model,
        image,
        scales,
        flip,
        output_stride=output_stride,
        max_batch=max_batch,
        amp_dtype=amp_dtype,
        mode=mode,
        crop_size=crop_size,
        stride=stride,
    )
    return probs.argmax(dim=1)


def pad_sizes(pad_to: Optional[Window]) -> tuple[int, int]:
    """``eval.pad_to`` as (height, width); (0, 0) for None (no padding)."""
    if pad_to is None:
        return 0, 0
    return _pair(pad_to, "pad_to")


def segment_eval(
    model: nn.Module,
    images: torch.Tensor,
    eval_cfg: EvalConfig,
    *,
    max_batch: Optional[int] = None,
    amp_dtype: Optional[torch.dtype] = None,
) -> torch.Tensor:
    """The class map of each image under a config's evaluation protocol: what ``eval`` scores and
    ``predict`` writes (both call this, so a submission is the model that was evaluated).

    Pads images smaller than ``eval_cfg.pad_to`` at the bottom and right with zeros (the mean pixel
    after normalisation, the reference's pad value: ``eval_crop_size`` in research/deeplab/eval.py,
    513 on VOC, 1025x2049 on Cityscapes), runs :func:`segment` with ``eval_cfg``'s scales, flip,
    output stride and whole/slide mode, and crops the prediction back to the image. The padding
    matters: the image-pooling branch averages over the padded window.

    Args:
        model: Maps (B, 3, h, w) normalised images to (B, C, h, w) logits, in eval mode.
        images: (N, 3, H, W) float, normalised.
        eval_cfg: A config's ``eval`` section (``pad_to``, ``scales``, ``flip``, ``output_stride``,
            ``mode``, ``crop_size``, ``stride``).
        max_batch, amp_dtype: As :func:`predict_probs`.

    Returns:
        (N, H, W) int64 class indices.
    """
    height, width = images.shape[-2:]
    pad_h, pad_w = pad_sizes(eval_cfg.pad_to)
    if height < pad_h or width < pad_w:
        images = F.pad(images, (0, max(0, pad_w - width), 0, max(0, pad_h - height)))
    return segment(
        model,
        images,
        scales=eval_cfg.scales,
        flip=eval_cfg.flip,
        output_stride=eval_cfg.output_stride,
        max_batch=max_batch,
        amp_dtype=amp_dtype,
        mode=eval_cfg.mode,
        crop_size=eval_cfg.crop_size,
        stride=eval_cfg.stride,
    )[..., :height, :width]
