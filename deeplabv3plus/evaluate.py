"""The evaluation loop: mIoU (and optionally trimap boundary mIoU) of a model over a split.

Used by the training loop's periodic validation and by ``scripts/eval.py``. One confusion
matrix is accumulated over the whole split (paper section 4) and, under DDP, summed over the
ranks before the scores are computed, so every rank returns the same results.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, Optional, Union

import torch
import torch.distributed as dist
import torch.nn as nn
from tqdm import tqdm

from deeplabv3plus.data.voc_meta import IGNORE_INDEX
from deeplabv3plus.inference import segment
from deeplabv3plus.metrics import ConfusionMatrix, TrimapMeter, format_trimap_table


def _is_main_process() -> bool:
    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


def iter_image_groups(batch: Any) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Split one loader batch into stacks of same-size images.

    Accepts what the usual collates produce: an ``(image, label)`` pair of tensors ((N, 3, H, W),
    (N, H, W)) or of a single image ((3, H, W), (H, W)); a pair of lists of images and labels
    (variable sizes); a list of ``(image, label)`` pairs; or a dict with ``"image"`` and
    ``"label"`` keys holding any of these.

    Yields:
        ``(images (n, 3, H, W) float, labels (n, H, W))`` with images of one size stacked.
    """
    if isinstance(batch, dict):
        batch = (batch["image"], batch["label"])
    if not isinstance(batch, (list, tuple)) or len(batch) == 0:
        raise TypeError(f"expected (image, label) pairs from the loader, got {type(batch).__name__}")
    first = batch[0]
    if isinstance(first, torch.Tensor):
        images, labels = batch[0], batch[1]
        if images.dim() == 3:
            images, labels = images[None], labels[None]
        yield images, labels
        return
    if len(first) == 2 and isinstance(first[1], torch.Tensor) and first[1].dim() == 2:
        pairs = list(batch)  # a list of (image (3, H, W), label (H, W)) pairs
    else:
        pairs = list(zip(batch[0], batch[1]))  # (list of images, list of labels)
    groups: dict[tuple[int, int], list[tuple[torch.Tensor, torch.Tensor]]] = {}
    for image, label in pairs:
        groups.setdefault(tuple(image.shape[-2:]), []).append((image, label))
    for group in groups.values():
        yield torch.stack([p[0] for p in group]), torch.stack([p[1] for p in group])


def evaluate(
    model: nn.Module,
    loader: Iterable,
    num_classes: int,
    *,
    scales: Sequence[float] = (1.0,),
    flip: bool = False,
    output_stride: Optional[int] = None,
    trimap_widths: Optional[Sequence[int]] = None,
    device: Optional[Union[str, torch.device]] = None,
    class_names: Optional[Sequence[str]] = None,
    ignore_index: int = IGNORE_INDEX,
    amp_dtype: Optional[torch.dtype] = None,
    max_batch: Optional[int] = None,
    pad_to: Optional[Union[int, Sequence[int]]] = None,
    trimap_dir: Optional[Union[str, Path]] = None,
    progress: bool = True,
    desc: str = "eval",
    mode: str = "whole",
    crop_size: Optional[Union[int, Sequence[int]]] = None,
    stride: Optional[Union[int, Sequence[int]]] = None,
    trimap_band: str = "void",
    prepare: bool = True,
) -> dict:
    """Segment every image of ``loader`` and score it against its label.

    Under DDP each rank should see a disjoint shard of the split (``DistributedSampler`` pads
    the last shard with repeated images, which would count them twice; a
    ``Subset(dataset, range(rank, len(dataset), world_size))`` does not). The matrices are
    summed over the ranks before scoring.

    Args:
        model: Maps (B, 3, h, w) normalised images to (B, C, h, w) logits. Put in eval mode
            for the loop; its previous mode is restored.
        loader: Yields ``(image, label)`` batches, see :func:`iter_image_groups`; image float
            normalised, label integer with ``ignore_index`` for void.
        num_classes: Number of classes ``C``.
        scales, flip, output_stride, max_batch, amp_dtype: Passed to
            :func:`deeplabv3plus.inference.predict_probs` (single scale at the model's output
            stride by default; the paper's best rows use OS 8, ``PAPER_SCALES`` and flip).
        pad_to: Pad smaller images at the bottom and right with the mean pixel to this size
            (one int, or (height, width)) before inference and crop the prediction back, as the
            reference evaluation does (eval_crop_size 513; 1025x2049 on Cityscapes): the
            image-pooling branch then averages over the padded window, which the reference
            checkpoints were scored with.
        trimap_widths: Also compute the trimap boundary mIoU for these band widths (pixels).
        trimap_band: What the bands surround: "void" (VOC's void band) or "boundary" (every
            change of label value, for labels without a void band), see
            :class:`deeplabv3plus.metrics.TrimapMeter`.
        device: Where images, labels and matrices go; default: the model's parameters' device.
        class_names: Names of the ``C`` classes for the tables and dict keys.
        ignore_index: The void label value.
        trimap_dir: Write ``trimap.csv`` (and ``trimap.png`` with matplotlib) here (rank 0).
        progress: Show a tqdm progress bar (rank 0 only).
        desc: The progress bar's label.
        mode, crop_size, stride: "whole" (default) or "slide" inference with windows of
            ``crop_size`` every ``stride`` pixels (``eval.mode``, ``eval.crop_size``,
            ``eval.stride``), see :func:`deeplabv3plus.inference.predict_probs`.
        prepare: Run a :func:`~deeplabv3plus.models.fuse.prepare_for_inference` copy of the
            model (BatchNorm folded, channels_last: the same outputs to fp32 rounding, faster),
            made afresh on each call, so the caller's (e.g. the live training) model is never
            changed; False runs ``model`` itself.

    Returns:
        JSON-ready dict: ``mIoU``, ``pixel_acc``, ``mean_class_acc`` (fractions, None if
        undefined), ``num_pixels``, ``per_class_iou`` and ``per_class_acc`` ({name: fraction or
        None for an absent class}), ``num_images``, ``table`` (text); with ``trimap_widths`` also
        ``trimap`` ({width: mIoU or None}) and ``trimap_table`` (text).
    """
    if device is None:
        param = next(model.parameters(), None)
        device = param.device if param is not None else torch.device("cpu")
    device = torch.device(device)
    matrix = ConfusionMatrix(num_classes, ignore_index, device)
    trimap = (
        TrimapMeter(num_classes, trimap_widths, ignore_index, device, trimap_band) if trimap_widths else None
    )
    was_training = model.training
    model.eval()
    if prepare and not getattr(model, "prepared_for_inference", False):
        from deeplabv3plus.models.fuse import prepare_for_inference  # lazily: the model package is heavy

        inference_model = prepare_for_inference(model)
    else:
        inference_model = model
    num_images = 0
    bar = tqdm(loader, desc=desc, disable=not (progress and _is_main_process()), dynamic_ncols=True)
    try:
        for batch in bar:
            for images, labels in iter_image_groups(batch):
                images = images.to(device, non_blocking=True)
                labels = labels.to(device, non_blocking=True)
                height, width = images.shape[-2:]
                pad_h, pad_w = (pad_to, pad_to) if isinstance(pad_to, int) else (pad_to or (0, 0))
                if height < pad_h or width < pad_w:
                    # Zero after normalisation is the mean pixel, the reference's pad value.
                    images = torch.nn.functional.pad(
                        images, (0, max(0, pad_w - width), 0, max(0, pad_h - height))
                    )
                pred = segment(
                    inference_model,
                    images,
                    scales=scales,
                    flip=flip,
                    output_stride=output_stride,
                    max_batch=max_batch,
                    amp_dtype=amp_dtype,
                    mode=mode,
                    crop_size=crop_size,
                    stride=stride,
                )[..., :height, :width]
                matrix.update(pred, labels)
                if trimap is not None:
                    trimap.update(pred, labels)
                num_images += images.shape[0]
    finally:
        bar.close()
        model.train(was_training)

    matrix.all_reduce()
    if trimap is not None:
        trimap.all_reduce()
    if dist.is_available() and dist.is_initialized():
        count = torch.tensor([num_images], device=device)
        dist.all_reduce(count)
        num_images = int(count.item())

    results = matrix.to_dict(class_names)
    results["num_images"] = num_images
    results["table"] = matrix.format_table(class_names)
    if trimap is not None:
        scores = trimap.compute()
        results["trimap"] = {w: (None if v != v else v) for w, v in scores.items()}
        results["trimap_table"] = format_trimap_table(
            scores, {w: m.compute()["num_pixels"] for w, m in trimap.meters.items()}
        )
        if trimap_dir is not None and _is_main_process():
            trimap.save(trimap_dir)
    return results
