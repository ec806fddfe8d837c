"""Segmentation metrics: a streaming confusion matrix (mIoU) and the trimap boundary accuracy.

The paper's metric (section 4) is the mean intersection-over-union over the 21 VOC
classes, from **one** confusion matrix accumulated over the whole split (not a mean of
per-image IoUs). Void pixels (label 255) are ignored. A class that appears neither in the
labels nor in the predictions of the split has an undefined IoU (0/0): it is reported as
absent and left out of the mean, as ``tf.metrics.mean_iou`` in the reference does.

Boundary accuracy ("trimap", paper Fig. 5a) restricts the same computation to the pixels
within a band of ``w`` pixels around the void pixels of each label, which in VOC outline
every object: see :func:`void_distance`, :func:`trimap_mask` and :class:`TrimapMeter`.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Optional, Union

import torch
import torch.distributed as dist
import torch.nn.functional as F

from .data.cityscapes_meta import (
    AVERAGE_INSTANCE_SIZE,
    CITYSCAPES_CATEGORIES,
    CITYSCAPES_CLASSES,
    CLASS_CATEGORY,
    INSTANCE_ID_DIVISOR,
    label_id_lut,
)
from .data.voc_meta import IGNORE_INDEX
from .runtime import is_distributed


class ConfusionMatrix:
    """Confusion matrix of one split, accumulated on the device of the predictions.

    ``matrix[t, p]`` counts the pixels of true class ``t`` predicted as class ``p``. Counts are
    int64 (a float32 matrix would stop counting exactly past 2**24 pixels, i.e. ~70 VOC images).

    Args:
        num_classes: Number of classes ``C``; labels and predictions must lie in ``[0, C)``
            except for ``ignore_index`` in the labels.
        ignore_index: Label value excluded from every count (VOC void = 255).
        device: Where the matrix lives; should be the device of the tensors given to
            :meth:`update` (the counting then never leaves the GPU).
    """

    def __init__(
        self, num_classes: int, ignore_index: int = IGNORE_INDEX, device: Union[str, torch.device] = "cpu"
    ):
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.matrix = torch.zeros(num_classes, num_classes, dtype=torch.int64, device=device)

    def reset(self) -> None:
        self.matrix.zero_()

    @torch.no_grad()
    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        """Add one image or a batch.

        Args:
            pred: (N, H, W) or (H, W) integer class indices in ``[0, C)``.
            target: Integer labels of the same shape; ``ignore_index`` pixels are skipped.

        Raises:
            ValueError: on a shape mismatch, or on a label / prediction outside ``[0, C)``
                (which ``bincount`` would otherwise silently count as another class pair).
        """
        if pred.shape != target.shape:
            raise ValueError(f"pred shape {tuple(pred.shape)} != target shape {tuple(target.shape)}")
        if pred.is_floating_point() or target.is_floating_point():
            raise ValueError("pred and target must be integer class indices (take the argmax of the logits)")
        c = self.num_classes
        pred = pred.to(self.matrix.device, torch.int64).reshape(-1)
        target = target.to(self.matrix.device, torch.int64).reshape(-1)
        keep = target != self.ignore_index
        pred, target = pred[keep], target[keep]
        if target.numel() == 0:
            return
        # One host sync per update for the range check; evaluation is not sync-free anyway.
        lo = torch.minimum(pred.min(), target.min())
        hi = torch.maximum(pred.max(), target.max())
        lo, hi = lo.item(), hi.item()
        if lo < 0 or hi >= c:
            raise ValueError(
                f"class index out of range [0, {c}) (min {lo}, max {hi}); "
                f"labels other than ignore_index={self.ignore_index} must be valid classes"
            )
        self.matrix += torch.bincount(target * c + pred, minlength=c * c).reshape(c, c)

    def all_reduce(self) -> None:
        """Sum the matrix over all ``torch.distributed`` ranks (no-op when not initialised).

        With NCCL the matrix must be on the rank's CUDA device (pass ``device`` accordingly).
        """
        if is_distributed():
            dist.all_reduce(self.matrix, op=dist.ReduceOp.SUM)

    def compute(self) -> dict:
        """The scores of the accumulated matrix.

        Returns:
            A dict of float64 CPU tensors / floats:
            ``iou`` (C,) per-class IoU in [0, 1], NaN for a class absent from both labels and
            predictions; ``acc`` (C,) per-class accuracy (recall), NaN for a class absent
            from the labels; ``miou`` mean of the non-NaN IoUs; ``pixel_acc`` correct / all
            counted pixels; ``mean_class_acc`` mean of the non-NaN accuracies;
            ``present`` (C,) bool, the classes that enter the mIoU; ``num_pixels`` int.
            Scores of an empty matrix are NaN.
        """
        m = self.matrix.detach().to("cpu", torch.float64)
        tp = m.diag()
        gt = m.sum(1)  # pixels of each true class
        pr = m.sum(0)  # pixels predicted as each class
        union = gt + pr - tp
        nan = torch.full_like(tp, float("nan"))
        iou = torch.where(union > 0, tp / union.clamp(min=1), nan)
        acc = torch.where(gt > 0, tp / gt.clamp(min=1), nan)
        total = m.sum()
        return {
            "iou": iou,
            "acc": acc,
            "miou": _nanmean(iou),
            "pixel_acc": (tp.sum() / total).item() if total > 0 else float("nan"),
            "mean_class_acc": _nanmean(acc),
            "present": union > 0,
            "num_pixels": int(total.item()),
        }

    def to_dict(self, class_names: Optional[Sequence[str]] = None, include_matrix: bool = False) -> dict:
        """JSON-ready scores: fractions in [0, 1], ``None`` where a score is undefined.

        Returns:
            ``{"mIoU", "pixel_acc", "mean_class_acc", "num_pixels", "per_class_iou": {name: iou},
            "per_class_acc": {name: acc}}`` and ``"confusion_matrix"`` (nested lists, rows = true
            class) when ``include_matrix``.
        """
        names = _class_names(class_names, self.num_classes)
        r = self.compute()
        out = {
            "mIoU": _none_if_nan(r["miou"]),
            "pixel_acc": _none_if_nan(r["pixel_acc"]),
            "mean_class_acc": _none_if_nan(r["mean_class_acc"]),
            "num_pixels": r["num_pixels"],
            "per_class_iou": {n: _none_if_nan(v) for n, v in zip(names, r["iou"].tolist())},
            "per_class_acc": {n: _none_if_nan(v) for n, v in zip(names, r["acc"].tolist())},
        }
        if include_matrix:
            out["confusion_matrix"] = self.matrix.cpu().tolist()
        return out

    def format_table(self, class_names: Optional[Sequence[str]] = None) -> str:
        """A per-class table (IoU and accuracy in %) with mIoU and pixel accuracy at the bottom."""
        names = _class_names(class_names, self.num_classes)
        r = self.compute()
        width = max(12, *(len(n) for n in names))
        lines = [f"{'class':<{width}}  {'IoU %':>7}  {'acc %':>7}", "-" * (width + 18)]
        for name, iou, acc in zip(names, r["iou"].tolist(), r["acc"].tolist()):
            lines.append(f"{name:<{width}}  {_pct(iou, 'absent'):>7}  {_pct(acc, '-'):>7}")
        lines.append("-" * (width + 18))
        present = int(r["present"].sum())
        lines.append(
            f"{'mIoU':<{width}}  {_pct(r['miou'], 'n/a'):>7}  ({present}/{self.num_classes} classes present)"
        )
        lines.append(f"{'pixel acc':<{width}}  {_pct(r['pixel_acc'], 'n/a'):>7}")
        lines.append(f"{'mean acc':<{width}}  {_pct(r['mean_class_acc'], 'n/a'):>7}")
        return "\n".join(lines)


def _nanmean(x: torch.Tensor) -> float:
    x = x[~torch.isnan(x)]
    return x.mean().item() if x.numel() else float("nan")


def _none_if_nan(v: float) -> Optional[float]:
    return None if math.isnan(v) else float(v)


def _pct(v: float, missing: str) -> str:
    return missing if math.isnan(v) else f"{100 * v:.2f}"


def _class_names(class_names: Optional[Sequence[str]], num_classes: int) -> list[str]:
    if class_names is None:
        return [str(i) for i in range(num_classes)]
    if len(class_names) != num_classes:
        raise ValueError(f"{len(class_names)} class names for {num_classes} classes")
    return list(class_names)


# ---------------------------------------------------------------------------------------------
# Cityscapes' official scores beyond the class IoU (cityscapesScripts
# evaluation/evalPixelLevelSemanticLabeling.py): category IoU and the instance-weighted iIoU
# ---------------------------------------------------------------------------------------------


def category_matrix(
    matrix: torch.Tensor, category_of_class: Sequence[int], num_categories: int
) -> torch.Tensor:
    """Sum a (C, C) confusion matrix into a (K, K) one over the classes' categories.

    The official category IoU (``getIouScoreForCategory``) counts as true positive every pixel of a
    category's classes predicted as any class of that category, and its false positives only on
    evaluated pixels of other categories: exactly the IoU of this summed matrix.
    """
    one_hot = torch.zeros(len(category_of_class), num_categories, dtype=torch.float64)
    one_hot[torch.arange(len(category_of_class)), torch.as_tensor(category_of_class)] = 1
    m = matrix.detach().to("cpu", torch.float64)
    return one_hot.T @ m @ one_hot


def _iou(tp: torch.Tensor, fp: torch.Tensor, fn: torch.Tensor) -> torch.Tensor:
    denom = tp + fp + fn
    return torch.where(denom > 0, tp / denom.clamp(min=1e-300), torch.full_like(tp, float("nan")))


class CityscapesMeter:
    """Cityscapes' category IoU and instance-level iIoU, as the official evaluator defines them.

    * **category IoU** (7 categories): the IoU of the confusion matrix summed over the categories
      (:func:`category_matrix`); its mean is the benchmark's "IoU category".
    * **iIoU** (classes with instances: person, rider, car, truck, bus, train, motorcycle, bicycle):
      ``iTP / (iTP + FP + iFN)``, where every ground-truth instance (a value > 1000 in
      ``*_gtFine_instanceIds.png``) adds its true positive and false negative pixel counts weighted
      by ``average instance size of its class / its size`` (so a small person counts as much as a
      large one); FP is the class's plain false positive count from the confusion matrix. The
      category iIoU (human, vehicle) weights the same instances with a true positive meaning "any
      class of the instance's category". Means are over the defined (non-NaN) values, as the
      evaluator's ``getScoreAverage``.

    :meth:`update` takes train-ID predictions and the raw instance maps; :meth:`compute` takes the
    split's :class:`ConfusionMatrix` for the false positives.

    Args:
        device: Where the tallies live (that of the predictions).
    """

    def __init__(self, device: Union[str, torch.device] = "cpu") -> None:
        num_classes = len(CITYSCAPES_CLASSES)
        self.device = torch.device(device)
        average = torch.full((num_classes,), float("nan"), dtype=torch.float64)
        for train_id, size in AVERAGE_INSTANCE_SIZE.items():
            average[train_id] = size
        self.average_size = average.to(self.device)
        # Label ID -> train ID of the classes with an average size (caravan and trailer have
        # instances but are not evaluated: their instances are skipped, as the evaluator does).
        lut = torch.from_numpy(label_id_lut().astype("int64"))
        lut[torch.isin(lut, torch.tensor(list(AVERAGE_INSTANCE_SIZE)), invert=True)] = -1
        self.instance_class = lut.to(self.device)
        self.category = torch.tensor(CLASS_CATEGORY, dtype=torch.int64, device=self.device)
        num_categories = len(CITYSCAPES_CATEGORIES)
        # [class tp, class fn, category tp, category fn], instance-weighted
        self.tallies = torch.zeros(
            2 * num_classes + 2 * num_categories, dtype=torch.float64, device=self.device
        )
        self.num_instances = 0

    @torch.no_grad()
    def update(self, pred: torch.Tensor, instances: torch.Tensor) -> None:
        """Add images: ``pred`` (N, H, W) train IDs, ``instances`` (N, H, W) raw instance IDs."""
        pred, instances = pred.reshape(-1, *pred.shape[-2:]), instances.reshape(-1, *instances.shape[-2:])
        num_classes, num_categories = len(CITYSCAPES_CLASSES), len(CITYSCAPES_CATEGORIES)
        for p, inst in zip(pred, instances):
            ids = inst.reshape(-1).long()
            keep = ids > INSTANCE_ID_DIVISOR
            ids, p = ids[keep], p.reshape(-1)[keep].long()
            cls = self.instance_class[(ids // INSTANCE_ID_DIVISOR).clamp(max=255)]
            evaluated = cls >= 0
            ids, p, cls = ids[evaluated], p[evaluated], cls[evaluated]
            if ids.numel() == 0:
                continue
            uniq, inverse, size = torch.unique(ids, return_inverse=True, return_counts=True)
            uniq_cls = cls.new_empty(uniq.shape).scatter_(0, inverse, cls)
            hit = torch.bincount(inverse, weights=(p == cls).double(), minlength=uniq.numel())
            cat = self.category[uniq_cls]
            cat_hit = torch.bincount(
                inverse, weights=(self.category[p] == self.category[cls]).double(), minlength=uniq.numel()
            )
            size = size.double()
            weight = self.average_size[uniq_cls] / size
            t = self.tallies
            t[:num_classes].index_add_(0, uniq_cls, hit * weight)
            t[num_classes : 2 * num_classes].index_add_(0, uniq_cls, (size - hit) * weight)
            base = 2 * num_classes
            t[base : base + num_categories].index_add_(0, cat, cat_hit * weight)
            t[base + num_categories :].index_add_(0, cat, (size - cat_hit) * weight)
            self.num_instances += uniq.numel()

    def all_reduce(self) -> None:
        """Sum the tallies over all ``torch.distributed`` ranks (no-op when not initialised)."""
        if is_distributed():
            dist.all_reduce(self.tallies, op=dist.ReduceOp.SUM)

    def compute(self, matrix: ConfusionMatrix, with_instances: bool = True) -> dict:
        """The official scores of the split, JSON-ready (fractions, None where undefined).

        Args:
            matrix: The split's (19, 19) train-ID confusion matrix.
            with_instances: Also the iIoU scores (False when the split has no instance maps).

        Returns:
            ``per_category_iou`` ({category: IoU}), ``category_mIoU``; with instances also
            ``per_class_iiou`` ({class: iIoU} of the 8 instance classes), ``iIoU`` (their mean),
            ``per_category_iiou`` ({human, vehicle}), ``category_iIoU``.
        """
        num_classes, num_categories = len(CITYSCAPES_CLASSES), len(CITYSCAPES_CATEGORIES)
        m = matrix.matrix.detach().to("cpu", torch.float64)
        cm = category_matrix(m, CLASS_CATEGORY, num_categories)
        cat_tp = cm.diag()
        cat_iou = _iou(cat_tp, cm.sum(0) - cat_tp, cm.sum(1) - cat_tp)
        out: dict = {
            "per_category_iou": {n: _none_if_nan(v) for n, v in zip(CITYSCAPES_CATEGORIES, cat_iou.tolist())},
            "category_mIoU": _none_if_nan(_nanmean(cat_iou)),
        }
        if not with_instances:
            return out
        t = self.tallies.to("cpu")
        fp = m.sum(0) - m.diag()
        iiou = _iou(t[:num_classes], fp, t[num_classes : 2 * num_classes])
        instance_classes = sorted(AVERAGE_INSTANCE_SIZE)
        base = 2 * num_classes
        cat_iiou = _iou(t[base : base + num_categories], cm.sum(0) - cat_tp, t[base + num_categories :])
        instance_categories = sorted({CLASS_CATEGORY[c] for c in instance_classes})
        out["per_class_iiou"] = {
            CITYSCAPES_CLASSES[c]: _none_if_nan(iiou[c].item()) for c in instance_classes
        }
        out["iIoU"] = _none_if_nan(_nanmean(iiou[instance_classes]))
        out["per_category_iiou"] = {
            CITYSCAPES_CATEGORIES[k]: _none_if_nan(cat_iiou[k].item()) for k in instance_categories
        }
        out["category_iIoU"] = _none_if_nan(_nanmean(cat_iiou[instance_categories]))
        return out


def format_cityscapes_table(scores: dict) -> str:
    """The category IoU (and iIoU) table of :meth:`CityscapesMeter.compute`, in %, with the means."""
    iiou = scores.get("per_category_iiou")
    lines = [f"{'category':<14}  {'IoU %':>7}" + (f"  {'iIoU %':>7}" if iiou is not None else "")]
    lines.append("-" * len(lines[0]))
    for name, v in scores["per_category_iou"].items():
        row = f"{name:<14}  {_pct(_nan_if_none(v), 'absent'):>7}"
        if iiou is not None:
            row += f"  {_pct(_nan_if_none(iiou.get(name)), '-'):>7}"
        lines.append(row)
    lines.append("-" * len(lines[0]))
    row = f"{'mean':<14}  {_pct(_nan_if_none(scores['category_mIoU']), 'n/a'):>7}"
    if iiou is not None:
        row += f"  {_pct(_nan_if_none(scores['category_iIoU']), 'n/a'):>7}"
    lines.append(row)
    if iiou is not None:
        lines.append("")
        lines.append(f"{'class':<14}  {'iIoU %':>7}")
        lines.append("-" * 23)
        for name, v in scores["per_class_iiou"].items():
            lines.append(f"{name:<14}  {_pct(_nan_if_none(v), 'absent'):>7}")
        lines.append("-" * 23)
        lines.append(f"{'iIoU':<14}  {_pct(_nan_if_none(scores['iIoU']), 'n/a'):>7}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Trimap (boundary) accuracy
# ---------------------------------------------------------------------------------------------


def void_distance(label: torch.Tensor, max_distance: int, ignore_index: int = IGNORE_INDEX) -> torch.Tensor:
    """Chessboard distance of every pixel to the nearest void pixel, saturated at ``max_distance + 1``.

    The distance is the Chebyshev (chessboard) one: the band of width ``w`` is the void mask
    dilated by a (2w+1) x (2w+1) square, the structuring element of a plain image dilation. It
    is chosen over the Euclidean distance because it is exact with integer widths, needs no
    SciPy, and runs on the label's device as ``max_distance`` 3x3 max-pools (dilating w times
    by a 3x3 square is dilating once by a (2w+1) square), which also gives every width at once.
    The paper does not say which distance DeepLab-v2 used; the curves differ only in how fast
    the band widens along diagonals. The image border is not void.

    Args:
        label: (H, W) or (N, H, W) integer label map.
        max_distance: Largest distance resolved; farther pixels (and all pixels of a label
            without void) get ``max_distance + 1``.
        ignore_index: The void label value.

    Returns:
        int64 tensor of ``label``'s shape: 0 on void pixels, d >= 1 elsewhere.
    """
    if max_distance < 0:
        raise ValueError(f"max_distance must be >= 0, got {max_distance}")
    reached = (label == ignore_index).to(torch.float32).reshape(-1, 1, *label.shape[-2:])
    # A pixel at distance k is unreached after dilations 0..k-1, so counting the unreached
    # steps gives k (or max_distance + 1 if it is never reached).
    dist_map = (reached == 0).to(torch.int64)
    for _ in range(max_distance):
        reached = F.max_pool2d(reached, kernel_size=3, stride=1, padding=1)
        dist_map += (reached == 0).to(torch.int64)
    return dist_map.reshape(label.shape)


def boundary_distance(label: torch.Tensor, max_distance: int) -> torch.Tensor:
    """Chessboard distance of every pixel to the nearest pixel of another label value, saturated.

    The band of Cityscapes and ADE20K, whose labels have no void band around objects: a pixel
    at distance 1 has an 8-neighbour of another class (or void), as every pixel next to a
    boundary. Computed like :func:`void_distance` with 3x3 max-pools, here of the label values
    and of their negatives (the window's max and min both equal the pixel's own value as long
    as the window holds no other label). The image border is not a boundary.

    Args:
        label: (H, W) or (N, H, W) integer label map.
        max_distance: Largest distance resolved; farther pixels get ``max_distance + 1``.

    Returns:
        int64 tensor of ``label``'s shape, every value >= 1.
    """
    if max_distance < 0:
        raise ValueError(f"max_distance must be >= 0, got {max_distance}")
    x = label.to(torch.float32).reshape(-1, 1, *label.shape[-2:])  # exact for any label value < 2**24
    high, low = x, x
    dist_map = torch.ones_like(x, dtype=torch.int64)
    for _ in range(max_distance):
        high = F.max_pool2d(high, kernel_size=3, stride=1, padding=1)
        low = -F.max_pool2d(-low, kernel_size=3, stride=1, padding=1)
        dist_map += ((high == x) & (low == x)).to(torch.int64)
    return dist_map.reshape(label.shape)


TRIMAP_BANDS = ("void", "boundary")
"""What the trimap band surrounds: the void pixels (VOC's 255 band around every object) or every
change of label value (datasets without a void band: Cityscapes, ADE20K)."""


def trimap_mask(label: torch.Tensor, width: int, ignore_index: int = IGNORE_INDEX) -> torch.Tensor:
    """The evaluated pixels of the trimap band of ``width`` pixels around the void pixels.

    A pixel is in the band when it is not void and its chessboard distance to the nearest
    void pixel is at most ``width`` (see :func:`void_distance`). Width 0 therefore selects no
    pixel (the band is the void pixels themselves, which are never scored); width 1 selects
    the 8-neighbours of void pixels.

    Args:
        label: (H, W) or (N, H, W) integer label map.
        width: Band width in pixels, >= 0.
        ignore_index: The void label value.

    Returns:
        bool tensor of ``label``'s shape.
    """
    if width < 0:
        raise ValueError(f"width must be >= 0, got {width}")
    d = void_distance(label, width, ignore_index)
    return (d >= 1) & (d <= width)


class TrimapMeter:
    """mIoU restricted to bands around the void pixels, for several band widths at once.

    One :class:`ConfusionMatrix` per width, each updated with the labels outside the band set
    to ``ignore_index``. The void distance is computed once per update for all widths.

    Args:
        num_classes: Number of classes.
        widths: Band widths in pixels (DeepLab-v2 plotted 0..40; the default is every 2 px).
        ignore_index: The void label value.
        device: Device of the matrices (that of the predictions).
        band: "void": bands around the void pixels (:func:`void_distance`, VOC); "boundary":
            around every change of label value (:func:`boundary_distance`, Cityscapes, ADE20K).
            Void pixels are never scored.
    """

    def __init__(
        self,
        num_classes: int,
        widths: Iterable[int] = range(0, 41, 2),
        ignore_index: int = IGNORE_INDEX,
        device: Union[str, torch.device] = "cpu",
        band: str = "void",
    ):
        if band not in TRIMAP_BANDS:
            raise ValueError(f"trimap band: expected one of {', '.join(TRIMAP_BANDS)}, got {band!r}")
        self.band = band
        self.widths = sorted({int(w) for w in widths})
        if not self.widths or self.widths[0] < 0:
            raise ValueError(f"widths must be non-empty and >= 0, got {self.widths}")
        self.ignore_index = ignore_index
        self.meters = {w: ConfusionMatrix(num_classes, ignore_index, device) for w in self.widths}

    @torch.no_grad()
    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        """Add one image or a batch: ``pred`` and ``target`` (N, H, W) or (H, W) integer."""
        if self.band == "boundary":
            d = boundary_distance(target, self.widths[-1])
        else:
            d = void_distance(target, self.widths[-1], self.ignore_index)
        for w, meter in self.meters.items():
            if w == 0:
                continue  # the band holds no scored pixel (see trimap_mask)
            band = (d >= 1) & (d <= w)
            meter.update(pred, torch.where(band, target, torch.full_like(target, self.ignore_index)))

    def all_reduce(self) -> None:
        for meter in self.meters.values():
            meter.all_reduce()

    def compute(self) -> dict[int, float]:
        """Width (pixels) -> mIoU in [0, 1] (NaN when the band held no pixel)."""
        return {w: m.compute()["miou"] for w, m in self.meters.items()}

    def format_table(self) -> str:
        return format_trimap_table(
            self.compute(), {w: m.compute()["num_pixels"] for w, m in self.meters.items()}
        )

    def save(self, out_dir: Union[str, Path], name: str = "trimap") -> list[Path]:
        """Write ``<name>.csv`` and, when matplotlib is installed, ``<name>.png``; returns the paths."""
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        results = self.compute()
        paths = [save_trimap_csv(results, out_dir / f"{name}.csv")]
        png = out_dir / f"{name}.png"
        if plot_trimap({"mIoU": results}, png):
            paths.append(png)
        return paths


def format_trimap_table(results: dict[int, float], num_pixels: Optional[dict[int, int]] = None) -> str:
    """``width -> mIoU`` as a two-column text table (mIoU in %, 'n/a' for an empty band)."""
    lines = [f"{'width px':>8}  {'mIoU %':>7}" + (f"  {'pixels':>12}" if num_pixels else "")]
    for w, v in sorted(results.items()):
        row = f"{w:>8}  {_pct(_nan_if_none(v), 'n/a'):>7}"
        if num_pixels:
            row += f"  {num_pixels.get(w, 0):>12}"
        lines.append(row)
    return "\n".join(lines)


def save_trimap_csv(results: dict[int, float], path: Union[str, Path]) -> Path:
    """Write ``width_px,miou`` rows (mIoU as a fraction, empty when undefined)."""
    path = Path(path)
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["width_px", "miou"])
        for w, v in sorted(results.items()):
            v = _nan_if_none(v)
            writer.writerow([w, "" if math.isnan(v) else f"{v:.6f}"])
    return path


def plot_trimap(curves: dict[str, dict[int, float]], path: Union[str, Path]) -> bool:
    """Plot mIoU (%) against trimap width, one line per entry of ``curves`` (as paper Fig. 5a).

    Returns:
        False (with a message) when matplotlib is not installed, True once the PNG is written.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print(f'matplotlib is not installed, skipping the plot {path}: pip install "deeplabv3plus[plot]"')
        return False
    fig, ax = plt.subplots(figsize=(5, 4))
    for label, results in curves.items():
        ws = sorted(w for w, v in results.items() if not math.isnan(_nan_if_none(v)))
        ax.plot(ws, [100 * results[w] for w in ws], marker="o", markersize=3, label=label)
    ax.set_xlabel("trimap width (pixels)")
    ax.set_ylabel("mIoU (%)")
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True


def _nan_if_none(v: Optional[float]) -> float:
    return float("nan") if v is None else float(v)
