"""The evaluation loop: mIoU (and optionally trimap boundary mIoU) of a model over a split.

:func:`evaluate` scores a model on a loader with the settings of a config's ``eval`` section; the
training loop's periodic validation calls it. :func:`evaluate_run` is the whole ``deeplabv3plus
eval`` job for a loaded model and its config: loader, scores, printed tables and the JSON result
file. One confusion matrix is accumulated over the whole split (paper section 4) and, under DDP,
summed over the ranks before the scores are computed, so every rank returns the same results.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Union

import torch
import torch.distributed as dist
import torch.nn as nn
from torch.utils.data import DataLoader
from torch.utils.data import Dataset as TorchDataset
from tqdm import tqdm

from .catalog import LAYOUTS
from .config import Config, EvalConfig, config_to_dict, trimap_band
from .data.cityscapes import read_instances
from .data.datasets import SegmentationDataset, build_dataset, eval_collate
from .data.types import DatasetError
from .data.voc_meta import IGNORE_INDEX
from .inference import AMP_DTYPES, PAPER_SCALES, segment_eval
from .metrics import (
    CityscapesMeter,
    ConfusionMatrix,
    TrimapMeter,
    format_cityscapes_table,
    format_trimap_table,
)
from .models.fuse import prepare_for_inference
from .runtime import is_distributed, is_main_process


def iter_image_groups(batch: Any) -> Iterator[tuple[torch.Tensor, ...]]:
    """Split one loader batch into stacks of same-size images.

    Accepts what the usual collates produce: an ``(image, label)`` pair of tensors ((N, 3, H, W),
    (N, H, W)) or of a single image ((3, H, W), (H, W)); a pair of lists of images and labels
    (variable sizes); a list of ``(image, label)`` pairs; or a dict with ``"image"`` and
    ``"label"`` keys holding any of these. Each may carry a third per-pixel map after the label
    (the ``"instances"`` key of a dict: Cityscapes' ``*_instanceIds.png``), stacked alongside.

    Yields:
        ``(images (n, 3, H, W) float, labels (n, H, W))`` with images of one size stacked, plus
        ``instances (n, H, W)`` when the batch has them.
    """
    if isinstance(batch, dict):
        batch = tuple(batch[k] for k in ("image", "label", "instances") if k in batch)
    if not isinstance(batch, (list, tuple)) or len(batch) == 0:
        raise TypeError(f"expected (image, label) pairs from the loader, got {type(batch).__name__}")
    first = batch[0]
    if isinstance(first, torch.Tensor):
        fields = tuple(batch)
        if fields[0].dim() == 3:
            fields = tuple(f[None] for f in fields)
        yield fields
        return
    if len(first) in (2, 3) and isinstance(first[1], torch.Tensor) and first[1].dim() == 2:
        samples = [tuple(s) for s in batch]  # a list of (image (3, H, W), label (H, W)[, instances]) tuples
    else:
        samples = list(zip(*batch))  # (list of images, list of labels[, list of instance maps])
    groups: dict[tuple[int, int], list[tuple[torch.Tensor, ...]]] = {}
    for sample in samples:
        groups.setdefault(tuple(sample[0].shape[-2:]), []).append(sample)
    for group in groups.values():
        yield tuple(torch.stack(field) for field in zip(*group))


@dataclass
class EvalOptions:
    """How :func:`evaluate` runs and what it adds to its results: the options a config's ``eval``
    section (:class:`~deeplabv3plus.config.EvalConfig`, the inference protocol) does not hold.

    Attributes:
        device: Where images, labels and matrices go; None: the model's parameters' device.
        amp_dtype: Autocast dtype of the forward passes (e.g. ``torch.bfloat16``); None: no autocast.
        max_batch: At most this many images per forward pass (:func:`deeplabv3plus.inference.predict_probs`).
        prepare: Run a :func:`~deeplabv3plus.models.fuse.prepare_for_inference` copy of the model
            (BatchNorm folded, channels_last: the same outputs to fp32 rounding, faster), made afresh
            on each call at ``eval_cfg.precision`` (fp32, or bf16 weights rounded once), so the
            caller's (e.g. the live training) model is never changed; False runs the model itself
            (a model prepared already runs as it is, at its own precision).
        trimap_dir: Write ``trimap.csv`` (and ``trimap.png`` with matplotlib) here (rank 0), when
            the trimap is scored.
        cityscapes: Add Cityscapes' official category IoU and, when the loader's batches carry
            instance maps (``(image, label, instances)``), the instance-weighted iIoU
            (:class:`deeplabv3plus.metrics.CityscapesMeter`); labels are train IDs.
        include_matrix: Add the confusion matrix (``confusion_matrix``, rows = true class).
    """

    device: Optional[Union[str, torch.device]] = None
    amp_dtype: Optional[torch.dtype] = None
    max_batch: Optional[int] = None
    prepare: bool = True
    trimap_dir: Optional[Union[str, Path]] = None
    cityscapes: bool = False
    include_matrix: bool = False


def model_device(model: nn.Module) -> torch.device:
    """The device of ``model``'s first parameter; CPU for a model without parameters."""
    param = next(model.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


@dataclass
class _Meters:
    """What :func:`evaluate` accumulates over a split (all on one device)."""

    matrix: ConfusionMatrix
    trimap: Optional[TrimapMeter]
    official: Optional[CityscapesMeter]
    num_images: int = 0
    with_instances: Optional[bool] = None  # whether every batch carried instance maps


def _new_meters(
    eval_cfg: EvalConfig, num_classes: int, ignore_index: int, device: torch.device, cityscapes: bool
) -> _Meters:
    """Empty meters: the confusion matrix, the trimap's (with ``eval_cfg.trimap``; band None is
    "void") and Cityscapes' official scores (with ``cityscapes``)."""
    trimap = None
    if eval_cfg.trimap:
        band = eval_cfg.trimap_band or "void"
        trimap = TrimapMeter(num_classes, eval_cfg.trimap_widths, ignore_index, device, band)
    official = CityscapesMeter(device) if cityscapes else None
    return _Meters(ConfusionMatrix(num_classes, ignore_index, device), trimap, official)


def _update_meters(meters: _Meters, pred: torch.Tensor, labels: torch.Tensor, extra: list) -> None:
    """Add one stack: ``pred`` and ``labels`` (n, H, W) int64, ``extra`` ``[instances (n, H, W)]`` or []."""
    meters.matrix.update(pred, labels)
    if meters.trimap is not None:
        meters.trimap.update(pred, labels)
    if meters.official is not None:
        had = meters.with_instances
        meters.with_instances = bool(extra) if had is None else had and bool(extra)
        if extra:
            meters.official.update(pred, extra[0].to(pred.device, non_blocking=True))
    meters.num_images += pred.shape[0]


def _score_batches(
    model: nn.Module,
    batches: Iterable,
    eval_cfg: EvalConfig,
    options: EvalOptions,
    meters: _Meters,
    device: torch.device,
) -> None:
    """Segment every same-size stack of every batch (:func:`iter_image_groups`) on ``device`` and
    add it to ``meters``; ``model`` runs as it is (in eval mode, prepared or not)."""
    for batch in batches:
        for images, labels, *extra in iter_image_groups(batch):
            images = images.to(device, non_blocking=True)
            labels = labels.to(device, non_blocking=True)
            pred = segment_eval(
                model, images, eval_cfg, max_batch=options.max_batch, amp_dtype=options.amp_dtype
            )
            _update_meters(meters, pred, labels, extra)


def _reduce_meters(meters: _Meters, device: torch.device) -> None:
    """Sum the counts of every rank (a no-op outside DDP)."""
    for meter in (meters.matrix, meters.trimap, meters.official):
        if meter is not None:
            meter.all_reduce()
    if is_distributed():
        count = torch.tensor([meters.num_images], device=device)
        dist.all_reduce(count)
        meters.num_images = int(count.item())


def _meter_results(meters: _Meters, class_names: Optional[Sequence[str]], options: EvalOptions) -> dict:
    """The scores of :func:`evaluate` (see its Returns); writes the trimap files on rank 0."""
    results = meters.matrix.to_dict(class_names, include_matrix=options.include_matrix)
    results["num_images"] = meters.num_images
    results["table"] = meters.matrix.format_table(class_names)
    if meters.official is not None:
        results.update(meters.official.compute(meters.matrix, with_instances=bool(meters.with_instances)))
        results["cityscapes_table"] = format_cityscapes_table(results)
    if meters.trimap is not None:
        scores = meters.trimap.compute()
        results["trimap"] = {w: (None if v != v else v) for w, v in scores.items()}
        results["trimap_table"] = format_trimap_table(
            scores, {w: m.compute()["num_pixels"] for w, m in meters.trimap.meters.items()}
        )
        if options.trimap_dir is not None and is_main_process():
            meters.trimap.save(options.trimap_dir)
    return results


def evaluate(
    model: nn.Module,
    loader: Iterable,
    eval_cfg: Optional[EvalConfig] = None,
    options: Optional[EvalOptions] = None,
    *,
    num_classes: int,
    class_names: Optional[Sequence[str]] = None,
    ignore_index: int = IGNORE_INDEX,
    progress: bool = True,
    desc: str = "eval",
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
        eval_cfg: The inference settings, a config's ``eval`` section (default: ``EvalConfig()``,
            single scale at the model's output stride, whole images, no trimap):
            ``scales``, ``flip``, ``output_stride`` and ``mode`` / ``crop_size`` / ``stride``
            (whole images or sliding windows) go to :func:`deeplabv3plus.inference.predict_probs`
            (the paper's best rows use OS 8, ``PAPER_SCALES`` and flip). ``pad_to`` pads smaller
            images at the bottom and right with the mean pixel to this size (one int, or
            (height, width)) before inference and crops the prediction back, as the reference
            evaluation does (eval_crop_size 513; 1025x2049 on Cityscapes): the image-pooling
            branch then averages over the padded window, which the reference checkpoints were
            scored with. ``trimap`` adds the trimap boundary mIoU for the band widths
            ``trimap_widths`` (pixels) around ``trimap_band`` ("void", VOC's void band, or
            "boundary", every change of label value, see :class:`deeplabv3plus.metrics.TrimapMeter`;
            None is "void": :func:`deeplabv3plus.config.trimap_band` resolves it from a layout).
            ``precision`` is the prepared copy's. ``batch_size`` is the loader's business. To
            change one setting for one call, pass ``dataclasses.replace(cfg.eval, trimap=False)``.
        options: Device, autocast, batching, model preparation and the optional extra results
            (:class:`EvalOptions`; default: ``EvalOptions()``).
        num_classes: Number of classes ``C``.
        class_names: Names of the ``C`` classes for the tables and dict keys.
        ignore_index: The void label value.
        progress: Show a tqdm progress bar (rank 0 only).
        desc: The progress bar's label.

    Returns:
        JSON-ready dict: ``mIoU``, ``pixel_acc``, ``mean_class_acc`` (fractions, None if
        undefined), ``num_pixels``, ``per_class_iou`` and ``per_class_acc`` ({name: fraction or
        None for an absent class}), ``num_images``, ``table`` (text); with the trimap also
        ``trimap`` ({width: mIoU or None}) and ``trimap_table`` (text); with ``options.cityscapes``
        the keys of :meth:`~deeplabv3plus.metrics.CityscapesMeter.compute` and ``cityscapes_table``.
    """
    if eval_cfg is None:
        eval_cfg = EvalConfig()
    elif not isinstance(eval_cfg, EvalConfig):
        raise TypeError(
            f"evaluate(model, loader, eval_cfg, *, num_classes=...): eval_cfg is a config's eval section "
            f"(an EvalConfig), got {type(eval_cfg).__name__}"
        )
    options = options if options is not None else EvalOptions()
    device = torch.device(options.device) if options.device is not None else model_device(model)
    meters = _new_meters(eval_cfg, num_classes, ignore_index, device, options.cityscapes)
    was_training = model.training
    model.eval()
    if options.prepare and not getattr(model, "prepared_for_inference", False):
        inference_model = prepare_for_inference(model, precision=eval_cfg.precision)
    else:
        inference_model = model
    bar = tqdm(loader, desc=desc, disable=not (progress and is_main_process()), dynamic_ncols=True)
    try:
        _score_batches(inference_model, bar, eval_cfg, options, meters, device)
    finally:
        bar.close()
        model.train(was_training)
    _reduce_meters(meters, device)
    return _meter_results(meters, class_names, options)


# --- the eval command's job ----------------------------------------------------------------------


class WithInstances(TorchDataset):
    """A Cityscapes split whose items carry the instance map for the iIoU: ``(image (3, H, W) float,
    label (H, W) int64, instances (H, W) int64)`` (every sample must have ``instances``)."""

    def __init__(self, dataset: SegmentationDataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        image, label = self.dataset[index]
        path = self.dataset.samples[index].instances
        instances = torch.from_numpy(read_instances(path))
        if tuple(instances.shape) != tuple(label.shape):
            raise DatasetError(
                f"instance map '{path}' is {instances.shape[1]}x{instances.shape[0]} but its label is "
                f"{label.shape[1]}x{label.shape[0]} (width x height)"
            )
        return image, label, instances


def _scales_tag(scales: Sequence[float]) -> str:
    scales = [float(s) for s in scales]
    if scales == [1.0]:
        return ""
    if scales == [float(s) for s in PAPER_SCALES]:
        return "_ms"
    return "_s" + "-".join(f"{s:g}" for s in scales)


def default_output_path(
    checkpoint: str,
    output_stride: int,
    scales: Sequence[float],
    flip: bool,
    split: str,
    *,
    trimap: bool = False,
    pad_to: Optional[Union[int, Sequence[int]]] = None,
    amp: str = "off",
    mode: str = "whole",
    precision: str = "fp32",
) -> Path:
    """Where results go by default: next to the checkpoint, one name per setting, so that runs
    with other settings never overwrite each other:
    ``<ckpt stem>_eval_os{OS}[_ms|_s<scales>][_flip][_slide][_pad<N>][_<amp>][_bf16][_trimap][_<split>].json``
    (``_bf16``: ``eval.precision``; ``_ms`` is the paper's scales 0.5..1.75; other sets are spelled out, e.g. ``_s0.5-1``; a
    non-square pad is ``_pad<H>x<W>``). ``checkpoint`` may be a model-zoo name: then the file goes
    into the current directory."""
    name = f"{Path(checkpoint).stem}_eval_os{output_stride}"
    name += _scales_tag(scales)
    name += "_flip" if flip else ""
    name += "_slide" if mode == "slide" else ""
    if pad_to:
        name += f"_pad{pad_to}" if isinstance(pad_to, int) else "_pad" + "x".join(str(v) for v in pad_to)
    name += f"_{amp}" if amp and amp != "off" else ""
    name += f"_{precision}" if precision != "fp32" else ""
    name += "_trimap" if trimap else ""
    name += f"_{split}" if split != "val" else ""
    return Path(checkpoint).parent / f"{name}.json"


def _default_output(eval_cfg: EvalConfig, source: str, output_stride: int, split: str, amp: str) -> Path:
    """:func:`default_output_path` for the settings of ``eval_cfg``."""
    return default_output_path(
        source, output_stride, eval_cfg.scales, eval_cfg.flip, split,
        trimap=eval_cfg.trimap, pad_to=eval_cfg.pad_to, amp=amp, mode=eval_cfg.mode,
        precision=eval_cfg.precision,
    )  # fmt: skip


def trimap_dir_for(output: Union[str, Path]) -> Path:
    """The folder of the trimap CSV/PNG beside a JSON result file: its name without ``.json``,
    ending in ``_trimap`` once (``r.json`` -> ``r_trimap``; ``x_trimap.json`` -> ``x_trimap``)."""
    output = Path(output)
    return output.with_name(output.stem.removesuffix("_trimap") + "_trimap")


def eval_loader(
    cfg: Config, split: str, device: Union[str, torch.device]
) -> tuple[SegmentationDataset, DataLoader, bool]:
    """The loader the eval command scores: ``split`` of ``cfg.data``, unshuffled, ``cfg.eval.batch_size``.

    On the cityscapes layout, when every image of the split has its ``*_gtFine_instanceIds.png``
    (the official iIoU needs them all; the evaluator stops otherwise), the batches carry the
    instance maps too (:class:`WithInstances`).

    Returns:
        ``(dataset, loader, with_instances)``: the split's dataset (its ``class_names``), a
        :class:`~torch.utils.data.DataLoader` of :func:`~deeplabv3plus.data.datasets.eval_collate`
        batches, and whether they carry instance maps.
    """
    dataset = build_dataset(cfg.data, split, train=False)
    with_instances = LAYOUTS[cfg.data.layout].instance_iou and all(
        s.instances is not None for s in dataset.samples
    )
    loader = DataLoader(
        WithInstances(dataset) if with_instances else dataset,
        batch_size=cfg.eval.batch_size,
        shuffle=False,
        num_workers=cfg.data.workers,
        collate_fn=eval_collate,
        pin_memory=torch.device(device).type == "cuda",
    )
    return dataset, loader, with_instances


def _print_scores(results: dict, band: str, ignore_index: int, with_instances: bool, seconds: float) -> None:
    """The eval command's tables: per class, the trimap's and Cityscapes' when scored, then the mIoU."""
    print(results["table"])
    if "trimap_table" in results:
        around = f"a void ({ignore_index}) pixel" if band == "void" else "a class boundary"
        print(f"\ntrimap: mIoU over the labelled pixels within this many pixels of {around}")
        print(results["trimap_table"])
        if any(v is None for v in results["trimap"].values()):
            print("n/a: the band holds no labelled pixel (width 0 is the void itself)")
    if "cityscapes_table" in results:
        print("\nCityscapes' official scores (cityscapesScripts evalPixelLevelSemanticLabeling.py)")
        print(results["cityscapes_table"])
        if not with_instances:
            print("no iIoU: not every image of the split has its *_gtFine_instanceIds.png")
    print(f"\nmIoU {100 * results['mIoU']:.2f}% over {results['num_images']} images ({seconds:.1f} s)"
          if results["mIoU"] is not None else "\nmIoU undefined (no labelled pixel)")  # fmt: skip


def _write_payload(payload: dict[str, Any], output: Path, trimap_dir: Optional[Path]) -> None:
    """Write the JSON result file and say so (and name the trimap files beside it)."""
    output.parent.mkdir(parents=True, exist_ok=True)
    with open(output, "w") as f:
        json.dump(payload, f, indent=2)
    print(f"wrote {output}")
    if trimap_dir is not None:
        for path in sorted(trimap_dir.glob("trimap.*")):
            print(f"wrote {path}")


def evaluate_run(
    model: nn.Module,
    cfg: Config,
    *,
    checkpoint: Optional[str] = None,
    weights: Optional[str] = None,
    split: Optional[str] = None,
    output: Optional[Union[str, Path]] = None,
    device: Optional[Union[str, torch.device]] = None,
    amp: str = "off",
    progress: bool = True,
) -> dict[str, Any]:
    """Evaluate ``model`` on a split of ``cfg.data`` with ``cfg.eval``; print and write the results.

    What ``deeplabv3plus eval`` runs once it has loaded the model (e.g. with
    :func:`deeplabv3plus.loading.load_model_from_checkpoint`) and applied its flags to ``cfg``.
    Prints the per-class table (and the trimap table), then the mIoU; writes the JSON payload
    (settings, seconds, scores, the config) to ``output`` and, with ``cfg.eval.trimap``,
    ``trimap.csv`` (and ``trimap.png``) into the folder of the same name without ``.json``.

    Args:
        model: The model ``cfg.model`` describes.
        cfg: Its config; ``data`` says what to read, ``eval`` how to infer.
        checkpoint, weights: Where the model came from (exactly one): a checkpoint file or a
            model-zoo name; recorded in the payload and naming the default ``output``.
        split: The split list to read (default: ``cfg.data.val_split``).
        output: The JSON file (default: :func:`default_output_path`, next to the checkpoint).
        device: Where to run (default: the model's parameters' device).
        amp: Autocast dtype, "off", "bf16" or "fp16".
        progress: Show a progress bar.

    Returns:
        The JSON payload written to ``output``.
    """
    if (checkpoint is None) == (weights is None):
        raise ValueError("evaluate_run: pass the model's source as exactly one of checkpoint= and weights=")
    device = device if device is not None else model_device(model)
    split = split or cfg.data.val_split
    output_stride = cfg.eval.output_stride or cfg.model.output_stride
    band = trimap_band(cfg)
    dataset, loader, with_instances = eval_loader(cfg, split, device)
    source = checkpoint or weights
    precision = getattr(model, "inference_precision", cfg.eval.precision)
    print(
        f"evaluating {source} on {len(dataset)} '{split}' images: OS {output_stride}, "
        f"scales {cfg.eval.scales}, flip {cfg.eval.flip}, device {device}, precision {precision}"
        + (f", slide {cfg.eval.crop_size} stride {cfg.eval.stride}" if cfg.eval.mode == "slide" else "")
    )
    output = Path(output) if output else _default_output(cfg.eval, source, output_stride, split, amp)
    trimap_dir = trimap_dir_for(output) if cfg.eval.trimap else None
    cityscapes = LAYOUTS[cfg.data.layout].instance_iou  # Cityscapes' category IoU and iIoU
    options = EvalOptions(device, AMP_DTYPES[amp], trimap_dir=trimap_dir, cityscapes=cityscapes)
    options.include_matrix = cityscapes
    start = time.perf_counter()
    results = evaluate(
        model, loader, dataclasses.replace(cfg.eval, trimap_band=band), options,
        num_classes=cfg.data.num_classes, class_names=dataset.class_names, ignore_index=cfg.data.ignore_index,
        progress=progress,
    )  # fmt: skip
    seconds = time.perf_counter() - start
    _print_scores(results, band, cfg.data.ignore_index, with_instances, seconds)
    payload = {
        "checkpoint": str(checkpoint) if checkpoint else None,
        "weights": weights,
        "split": split,
        "output_stride": output_stride,
        "scales": list(cfg.eval.scales),
        "flip": cfg.eval.flip,
        "mode": cfg.eval.mode,
        **({"trimap_band": band} if cfg.eval.trimap else {}),
        "amp": amp,
        "precision": precision,
        "seconds": seconds,
        **{k: v for k, v in results.items() if k not in ("table", "trimap_table", "cityscapes_table")},
        "config": config_to_dict(cfg),
    }
    _write_payload(payload, output, trimap_dir)
    return payload
