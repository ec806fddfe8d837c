"""Segmentation losses: plain, class-weighted, bootstrapped and OHEM cross-entropy, Lovász-softmax.

Every loss takes ``logits`` (N, C, H, W) float (already at the label resolution), ``target``
(N, H, W) int64 class indices with ``ignore_index`` on void pixels, and ``iteration`` (the number
of optimizer steps already taken: 0 at the first step, like TF's ``global_step``) and returns a
scalar tensor. Ignore pixels never contribute to a loss or its gradient.

:func:`build_loss` picks one by name from :data:`LOSSES` (a plain dict) and binds its options;
``"cross_entropy"`` without class weights is the paper's loss and exactly
``F.cross_entropy(logits, target, ignore_index=ignore_index)``, what ``train.py`` computes.

Layer 3 (docs/architecture.md): imports torch and, for the class-weight formula it re-exports,
``data/class_weights.py`` (layer 2; see there why the formula lives below).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any, Callable, Optional, Union

import numpy as np
import torch
import torch.nn.functional as F

from . import catalog
from .catalog import IGNORE_INDEX, load
from .data.class_weights import class_weights_from_counts

__all__ = [
    "LOSSES",
    "LossFn",
    "bootstrapped_cross_entropy",
    "build_loss",
    "class_weights_from_counts",
    "cross_entropy",
    "lovasz_softmax",
    "ohem_cross_entropy",
    "top_k_fraction",
]

LossFn = Callable[..., torch.Tensor]
"""``loss(logits, target, iteration=0) -> scalar`` as returned by :func:`build_loss`."""

Weights = Optional[Sequence[float]]


# ---------------------------------------------------------------------------------------------------
# Shared pieces.


def _check_inputs(logits: torch.Tensor, target: torch.Tensor) -> None:
    if logits.dim() != 4:
        raise ValueError(f"logits: expected (N, C, H, W), got shape {tuple(logits.shape)}")
    if target.shape != (logits.shape[0], *logits.shape[2:]):
        raise ValueError(
            f"target: expected shape {(logits.shape[0], *logits.shape[2:])} to match logits "
            f"{tuple(logits.shape)}, got {tuple(target.shape)}"
        )


def _check_weights(class_weights: Weights, num_classes: Optional[int]) -> Optional[list[float]]:
    """Validate a per-class weight list: ``num_classes`` finite non-negative numbers."""
    if class_weights is None:
        return None
    if isinstance(class_weights, (str, bytes)) or not isinstance(class_weights, (Sequence, np.ndarray)):
        raise ValueError(f"class_weights: expected a list of numbers (one per class), got {class_weights!r}")
    weights = [float(w) for w in class_weights]
    if any(not math.isfinite(w) or w < 0 for w in weights):
        raise ValueError(f"class_weights: expected finite non-negative numbers, got {weights}")
    if num_classes is not None and len(weights) != num_classes:
        raise ValueError(f"class_weights: expected {num_classes} numbers (one per class), got {len(weights)}")
    return weights


def _pixel_weights(
    target: torch.Tensor, class_weights: Optional[list[float]], ignore_index: int, dtype: torch.dtype
) -> torch.Tensor:
    """(N, H, W) weight of each pixel's loss: its class weight (1 without weights), 0 on ignore pixels.

    TF DeepLab's ``get_label_weight_mask`` (research/deeplab/core/utils.py) in torch.
    """
    valid = target != ignore_index
    if class_weights is None:
        return valid.to(dtype)
    table = torch.tensor(class_weights, dtype=dtype, device=target.device)
    return table[torch.where(valid, target, torch.zeros_like(target))] * valid.to(dtype)


def _pixel_losses(logits: torch.Tensor, target: torch.Tensor, ignore_index: int) -> torch.Tensor:
    """(N, H, W) unweighted per-pixel cross-entropy, 0 on ignore pixels."""
    return F.cross_entropy(logits, target, ignore_index=ignore_index, reduction="none")


# ---------------------------------------------------------------------------------------------------
# Cross-entropy, plain and class-weighted.


def cross_entropy(
    logits: torch.Tensor,
    target: torch.Tensor,
    iteration: int = 0,
    *,
    ignore_index: int = 255,
    class_weights: Weights = None,
) -> torch.Tensor:
    """Softmax cross-entropy averaged over the non-ignored pixels, optionally class-weighted.

    Without ``class_weights``: ``F.cross_entropy(logits, target, ignore_index=ignore_index)``
    itself (the paper's loss, bit-identical to ``train.py``; NaN when every pixel is ignored, as
    there). With them: ``sum_i w[t_i] * CE_i / #non-ignored pixels``, the normalisation of TF
    DeepLab's ``add_softmax_cross_entropy_loss_for_each_scale`` with a ``loss_weight`` list
    (research/deeplab/utils/train_utils.py: the sum of weighted losses over the count of non-ignored
    pixels, 0 when there are none). This differs from ``F.cross_entropy(weight=...)``, which
    divides by the sum of the pixels' weights: in the reference the weights also scale the loss.

    Args:
        logits: (N, C, H, W) float.
        target: (N, H, W) int64 class indices, ``ignore_index`` on void pixels.
        iteration: unused (the uniform loss signature).
        ignore_index: the void label.
        class_weights: C non-negative weights, or None.

    Returns:
        Scalar tensor (dtype of ``logits``).
    """
    _check_inputs(logits, target)
    if class_weights is None:
        return F.cross_entropy(logits, target, ignore_index=ignore_index)
    weights = _check_weights(class_weights, logits.shape[1])
    return bootstrapped_cross_entropy(logits, target, ignore_index=ignore_index, class_weights=weights)


# ---------------------------------------------------------------------------------------------------
# Bootstrapped cross-entropy (TF DeepLab's hard pixel mining).


def top_k_fraction(iteration: int, top_k_percent_pixels: float, hard_example_mining_step: int) -> float:
    """The share of pixels the bootstrapped loss keeps at ``iteration``.

    TF DeepLab (research/deeplab/utils/train_utils.py, ``add_softmax_cross_entropy_loss_for_each_scale``):
    with ``hard_example_mining_step == 0`` it is ``top_k_percent_pixels`` from the start; otherwise
    ``ratio = min(1, iteration / hard_example_mining_step)`` and the share is
    ``ratio * top_k_percent_pixels + (1 - ratio)``, a linear decay from 1.0 to
    ``top_k_percent_pixels`` reached at ``hard_example_mining_step``. Computed in float32, as the
    reference does, so the pixel count ``int(share * num_pixels)`` matches it exactly.
    """
    _check_top_k(top_k_percent_pixels, hard_example_mining_step)
    if hard_example_mining_step == 0:
        return float(np.float32(top_k_percent_pixels))
    ratio = np.minimum(np.float32(1.0), np.float32(iteration) / np.float32(hard_example_mining_step))
    return float(ratio * np.float32(top_k_percent_pixels) + (np.float32(1.0) - ratio))


def _top_k_pixels(iteration: int, top_k_percent_pixels: float, hard_example_mining_step: int, n: int) -> int:
    # The reference's tf.to_int32(share * num_pixels): a float32 product truncated towards zero.
    share = np.float32(top_k_fraction(iteration, top_k_percent_pixels, hard_example_mining_step))
    return int(share * np.float32(n))


def _check_top_k(top_k_percent_pixels: float, hard_example_mining_step: int) -> None:
    if not (isinstance(top_k_percent_pixels, (int, float)) and 0.0 < top_k_percent_pixels <= 1.0):
        raise ValueError(f"top_k_percent_pixels: expected a number in (0, 1], got {top_k_percent_pixels!r}")
    if isinstance(hard_example_mining_step, bool) or not isinstance(hard_example_mining_step, int):
        raise ValueError(
            f"hard_example_mining_step: expected an integer >= 0, got {hard_example_mining_step!r}"
        )
    if hard_example_mining_step < 0:
        raise ValueError(
            f"hard_example_mining_step: expected an integer >= 0, got {hard_example_mining_step}"
        )


def _div_maybe_zero(total: torch.Tensor, count: torch.Tensor) -> torch.Tensor:
    # The reference's _div_maybe_zero: total / max(1e-5, count), and exactly 0 when count is 0.
    return (count > 0).to(total.dtype) * total / torch.clamp(count.to(total.dtype), min=1e-5)


def bootstrapped_cross_entropy(
    logits: torch.Tensor,
    target: torch.Tensor,
    iteration: int = 0,
    *,
    ignore_index: int = 255,
    class_weights: Weights = None,
    top_k_percent_pixels: float = 1.0,
    hard_example_mining_step: int = 0,
) -> torch.Tensor:
    """Cross-entropy over the hardest pixels only: TF DeepLab's ``top_k_percent_pixels`` mining.

    As ``add_softmax_cross_entropy_loss_for_each_scale`` (research/deeplab/utils/train_utils.py,
    flags ``--top_k_percent_pixels`` and ``--hard_example_mining_step`` of train.py) computes it:

    - per-pixel losses ``w[t_i] * CE_i`` (weight 0 on ignore pixels, so their loss is 0);
    - ``top_k_percent_pixels == 1.0``: their sum over the number of non-ignored pixels;
    - otherwise the ``k = int(share * N*H*W)`` largest of them over the whole batch (ignore pixels
      included in ``N*H*W``; ``share`` from :func:`top_k_fraction`), summed and divided by the
      number of non-zero losses among the kept ones, ``max(1e-5, count)``, 0 when none.

    Args:
        logits: (N, C, H, W) float.
        target: (N, H, W) int64, ``ignore_index`` on void pixels.
        iteration: optimizer steps already taken (the reference's ``global_step``).
        ignore_index: the void label.
        class_weights: C non-negative weights, or None (all 1).
        top_k_percent_pixels: the share of pixels kept at the end of the schedule, in (0, 1].
        hard_example_mining_step: iterations over which the share decays linearly from 1.0; 0 =
            ``top_k_percent_pixels`` from the first step.

    Returns:
        Scalar tensor.
    """
    _check_inputs(logits, target)
    _check_top_k(top_k_percent_pixels, hard_example_mining_step)
    weights = _check_weights(class_weights, logits.shape[1])
    weighted = _pixel_losses(logits, target, ignore_index) * _pixel_weights(
        target, weights, ignore_index, logits.dtype
    )
    weighted = weighted.flatten()
    if top_k_percent_pixels == 1.0:
        return _div_maybe_zero(weighted.sum(), (target != ignore_index).sum())
    k = _top_k_pixels(iteration, top_k_percent_pixels, hard_example_mining_step, weighted.numel())
    kept, _ = torch.topk(weighted, k, sorted=False)
    return _div_maybe_zero(kept.sum(), (kept != 0).sum())


# ---------------------------------------------------------------------------------------------------
# OHEM (mmsegmentation's OHEMPixelSampler + CrossEntropyLoss).


def ohem_cross_entropy(
    logits: torch.Tensor,
    target: torch.Tensor,
    iteration: int = 0,
    *,
    ignore_index: int = 255,
    class_weights: Weights = None,
    thresh: float = 0.7,
    min_kept: int = 100000,
) -> torch.Tensor:
    """Cross-entropy over the pixels predicted with low confidence, as mmsegmentation's OHEM.

    mmseg's ``OHEMPixelSampler.sample`` (mmseg/structures/sampler/ohem_pixel_sampler.py) with
    ``thresh`` set, then its default ``CrossEntropyLoss`` with those pixel weights:

    - ``p_i`` = softmax probability of pixel i's true class (no gradient through the selection);
    - sort the non-ignored ``p`` ascending; ``t = max(thresh, p_sorted[min(min_kept * N, V - 1)])``
      (V = number of non-ignored pixels; ``t = thresh`` when V = 0);
    - kept = non-ignored pixels with ``p_i < t`` (strictly): all pixels below ``thresh``, and at
      least about ``min_kept`` per image when fewer are below it;
    - loss = ``sum over kept of w[t_i] * CE_i / (N*H*W)``: mmseg's ``weight_reduce_loss`` means over
      every pixel of the batch, ignored and unkept ones included (``avg_non_ignore=False``, its
      default), so the loss shrinks with the kept share.

    Args:
        logits: (N, C, H, W) float.
        target: (N, H, W) int64, ``ignore_index`` on void pixels.
        iteration: unused.
        ignore_index: the void label.
        class_weights: C non-negative weights, or None.
        thresh: probability threshold in (0, 1]; mmseg's configs use 0.7.
        min_kept: minimum kept pixels per image (mmseg: ``min_kept > 1``; configs use 100000).

    Returns:
        Scalar tensor.
    """
    _check_inputs(logits, target)
    _check_ohem(thresh, min_kept)
    weights = _check_weights(class_weights, logits.shape[1])
    with torch.no_grad():
        valid = target != ignore_index
        safe_target = torch.where(valid, target, torch.zeros_like(target))
        prob = F.softmax(logits, dim=1).gather(1, safe_target.unsqueeze(1)).squeeze(1)
        valid_prob = prob[valid]
        if valid_prob.numel() > 0:
            sorted_prob, _ = valid_prob.sort()
            floor = sorted_prob[min(min_kept * target.shape[0], valid_prob.numel() - 1)]
            threshold = torch.clamp(floor, min=thresh)
        else:
            threshold = torch.tensor(thresh, dtype=prob.dtype, device=prob.device)
        kept = (valid & (prob < threshold)).to(logits.dtype)
    losses = _pixel_losses(logits, target, ignore_index) * _pixel_weights(
        target, weights, ignore_index, logits.dtype
    )
    return (losses * kept).mean()


def _check_ohem(thresh: float, min_kept: int) -> None:
    if not (isinstance(thresh, (int, float)) and 0.0 < thresh <= 1.0):
        raise ValueError(f"ohem_thresh: expected a probability in (0, 1], got {thresh!r}")
    if isinstance(min_kept, bool) or not isinstance(min_kept, int) or min_kept <= 1:
        raise ValueError(
            f"ohem_min_kept: expected an integer > 1 (as mmseg's OHEMPixelSampler), got {min_kept!r}"
        )


# ---------------------------------------------------------------------------------------------------
# Lovász-softmax.


def _lovasz_grad(gt_sorted: torch.Tensor) -> torch.Tensor:
    """Gradient of the Lovász extension of the Jaccard loss w.r.t. errors sorted descending.

    Entry i is ``J(first i+1 pixels mispredicted) - J(first i)``, with
    ``J(M) = 1 - |gt minus M| / |gt union M|`` (Berman et al. 2018, eq. 9 and Algorithm 1).
    """
    gts = gt_sorted.sum()
    intersection = gts - gt_sorted.cumsum(0)
    union = gts + (1.0 - gt_sorted).cumsum(0)
    jaccard = 1.0 - intersection / union
    if gt_sorted.numel() > 1:
        jaccard[1:] = jaccard[1:] - jaccard[:-1].clone()
    return jaccard


def lovasz_softmax(
    logits: torch.Tensor,
    target: torch.Tensor,
    iteration: int = 0,
    *,
    ignore_index: int = 255,
    classes: Union[str, Sequence[int]] = "present",
) -> torch.Tensor:
    """Lovász-softmax loss: a convex surrogate of 1 - IoU, optimised directly.

    Berman, Rannen Triki & Blaschko, "The Lovász-Softmax loss: A tractable surrogate for the
    optimization of the intersection-over-union measure in neural networks", CVPR 2018 (eq. 12):
    for each class c, the pixel errors ``m_i = |[t_i = c] - p_i(c)|`` of the non-ignored pixels of
    the whole batch, sorted descending, dotted with the Lovász gradient of the Jaccard loss; the
    mean over the classes. Batch-level (the authors' ``per_image=False``).

    Args:
        logits: (N, C, H, W) float; softmax is applied here.
        target: (N, H, W) int64, ``ignore_index`` on void pixels (excluded).
        iteration: unused.
        ignore_index: the void label.
        classes: ``"present"`` (classes in the non-ignored target; the paper's choice for
            training), ``"all"`` (every class), or a list of class indices.

    Returns:
        Scalar tensor; 0 (still connected to ``logits``) when every pixel is ignored.
    """
    _check_inputs(logits, target)
    num_classes = logits.shape[1]
    if isinstance(classes, str):
        if classes not in ("present", "all"):
            raise ValueError(
                f"classes: expected 'present', 'all' or a list of class indices, got {classes!r}"
            )
    elif not all(isinstance(c, int) and 0 <= c < num_classes for c in classes):
        raise ValueError(f"classes: expected class indices in 0..{num_classes - 1}, got {list(classes)}")
    probs = F.softmax(logits, dim=1).permute(0, 2, 3, 1).reshape(-1, num_classes)
    labels = target.reshape(-1)
    valid = labels != ignore_index
    probs, labels = probs[valid], labels[valid]
    if labels.numel() == 0:
        return probs.sum() * 0.0
    if classes == "present":
        class_list = torch.unique(labels).tolist()
    elif classes == "all":
        class_list = list(range(num_classes))
    else:
        class_list = list(classes)
    per_class = []
    for c in class_list:
        fg = (labels == c).to(probs.dtype)
        errors = (fg - probs[:, c]).abs()
        errors_sorted, order = torch.sort(errors, descending=True)
        per_class.append(torch.dot(errors_sorted, _lovasz_grad(fg[order])))
    if not per_class:
        return probs.sum() * 0.0
    return torch.stack(per_class).mean()


# ---------------------------------------------------------------------------------------------------
# The factory.

LOSSES: dict[str, LossFn] = {name: load(entry.function) for name, entry in catalog.LOSSES.items()}
"""The loss functions by ``train.loss.name`` (the names and options are ``deeplabv3plus.catalog.LOSSES``)."""


def loss_options(name: str, options: Union[None, Mapping[str, Any], Any] = None) -> Optional[Any]:
    """The options of loss ``name`` as its catalogue dataclass, checked: ``options`` may be that
    dataclass, a mapping of its fields (the others keep their defaults), or None (all defaults).

    Raises:
        ValueError: an option the loss does not take or a bad value, naming the option.
    """
    kind = catalog.LOSSES[name].options
    if options is None:
        chosen = kind() if kind is not None else None
    elif kind is not None and isinstance(options, kind):
        chosen = options
    elif isinstance(options, Mapping):
        fields = {f.name for f in dataclasses.fields(kind)} if kind is not None else set()
        for key in options:
            if key not in fields:
                takes = f"it takes {', '.join(sorted(fields))}" if fields else "it takes none"
                raise ValueError(f"{key}: not an option of the {name!r} loss ({takes})")
        chosen = kind(**options) if kind is not None else None
    else:
        raise ValueError(
            f"options: expected a mapping or {getattr(kind, '__name__', 'None')} for the {name!r} loss, got {options!r}"
        )
    if chosen is not None:
        chosen.check()
    return chosen


def build_loss(
    name: str = "cross_entropy",
    *,
    ignore_index: int = IGNORE_INDEX,
    num_classes: Optional[int] = None,
    class_weights: Weights = None,
    options: Union[None, Mapping[str, Any], Any] = None,
) -> LossFn:
    """The loss ``name`` with its options bound: ``loss(logits, target, iteration=0) -> scalar``.

    Options a loss does not take are an error, not a silent no-op. ``class_weights`` is a list;
    weights computed from the data ("auto") come from :func:`class_weights_from_counts` on the
    counts ``data/check.py`` reports.

    Args:
        name: a key of ``deeplabv3plus.catalog.LOSSES``.
        ignore_index: the void label.
        num_classes: if given, ``class_weights`` must have this length (checked now, not at the
            first step).
        class_weights: C non-negative weights (the cross-entropy losses only).
        options: the loss's own options (``train.loss.<name>``): its catalogue dataclass
            (``OhemOptions(thresh=0.5)``) or a mapping (``{"thresh": 0.5}``); None: the defaults.

    Raises:
        ValueError: an unknown name, a bad or unused option (one line naming the argument).
    """
    if name not in LOSSES:
        raise ValueError(f"name: expected one of {sorted(LOSSES)}, got {name!r}")
    entry = catalog.LOSSES[name]
    weights = _check_weights(class_weights, num_classes)
    if weights is not None and not entry.class_weights:
        raise ValueError(f"class_weights: not used by the {name!r} loss (got {weights!r})")
    bound: dict[str, Any] = {"ignore_index": ignore_index}
    if entry.class_weights:
        bound["class_weights"] = weights
    chosen = loss_options(name, options)
    if chosen is not None:
        bound.update(dataclasses.asdict(chosen))
    fn = LOSSES[name]

    def loss(logits: torch.Tensor, target: torch.Tensor, iteration: int = 0) -> torch.Tensor:
        return fn(logits, target, iteration, **bound)

    loss.__name__ = name
    loss.__qualname__ = f"build_loss.<{name}>"
    return loss
