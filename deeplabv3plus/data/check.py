"""Check a dataset before training: read every image/label pair, report statistics and problems.

The engine of ``deeplabv3plus check-data --config ...`` (:func:`check_config_data` reads a config's
splits with their label format) and of ``train.loss.class_weights: auto``
(:func:`dataset_class_weights`): :func:`check_data` takes the
(image, label) pairs of each split, the class count and the ignore index, reads every pair in a
thread pool and returns a :class:`DataReport`:

- per split: image count, image and label modes, size range, label value histogram, per-class
  pixel and image counts, the void (ignore) share;
- problems, each with a count and up to 5 examples: label values outside ``0..C-1`` and the
  ignore index, RGB/RGBA (colour-coded) masks, masks that look like 0/255 binary masks, 16-bit
  masks, image/label size mismatches, EXIF-rotated images, unreadable or truncated files, labels
  the declared format cannot decode, the same stem in two splits, classes never present in a split;
- suggestions: the ``data.*`` keys that would fit (``data.num_classes``, ``data.mask_format``) and
  class weights for ``train.loss.class_weights`` (median-frequency, ``data/class_weights.py``);
- ``ok``: no fatal problem, i.e. training would run (the fatal ones are what ``data/datasets.py``
  refuses: unreadable files, colour masks, values out of range, size mismatches, the same image
  in two splits; the rest are warnings).

:func:`to_json` and :func:`to_markdown` render the report; :func:`plot_class_frequencies` draws a
bar chart with matplotlib (the ``plot`` extra, imported only there); :func:`check_data_run` is the
whole ``check-data`` command (check, print, :func:`write_reports`).

Threads rather than processes by default: PIL releases the GIL while it decodes and numpy while it
counts, and a thread pool has no start-up or pickling cost. On a shared 2-core machine (load ~6),
200 pairs of 128x96 JPEG + PNG took 108-130 ms with 2 threads and 190 ms with 2 processes; 200
VOC-sized (500x375) pairs 1.24 s and 1.10 s, a difference within the noise. ``executor="process"``
is there for large images on many cores.

Layer 2 (docs/architecture.md): numpy, PIL and the data modules below it.
"""

from __future__ import annotations

import functools
import json
import os
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Union

import numpy as np
from PIL import Image

from ..config import DataConfig
from .class_weights import class_weights_from_counts
from .datasets import SegmentationDataset, dataset_class_names, read_label, split_samples
from .types import LabelMap, Sample

PathLike = Union[str, Path]
Pair = Union[tuple[PathLike, PathLike], tuple[PathLike, PathLike, Optional["Decoder"]]]
"""(image, label) or (image, label, decoder): a pair's own decoder wins over ``check_data``'s."""
Decoder = Callable[[PathLike], np.ndarray]
"""A label decoder from ``data/label_formats.py`` (a picklable callable: path -> (H, W) classes)."""

MAX_EXAMPLES = 5
EXIF_ORIENTATION = 0x0112

PROBLEM_KINDS: dict[str, tuple[bool, str]] = {
    # kind: (fatal, what it means / what to do)
    "unreadable": (True, "unreadable or truncated files"),
    "label_format": (True, "labels the declared mask format cannot decode"),
    "rgb_mask": (True, "RGB/RGBA colour masks: set data.mask_format=rgb and data.mask_colors"),
    "values_out_of_range": (True, "label values outside 0..num_classes-1 and the ignore index"),
    "size_mismatch": (True, "image and label sizes differ"),
    "stem_in_two_splits": (True, "the same file stem in two splits: evaluation would see training images"),
    "binary_mask": (
        False,
        "masks holding only 0 and 255: read as class indices every foreground pixel is ignored "
        "(data.mask_format=binary maps 255 to class 1)",
    ),
    "mask_16bit": (False, "16-bit label masks: values above 255 do not fit the 8-bit labels training reads"),
    "exif_rotated": (
        False,
        "images with an EXIF Orientation != 1: viewers and labelling tools show them rotated, training "
        "reads the stored pixels, so the label may be rotated against the image",
    ),
    "class_never_present": (False, "classes without a single pixel in a split"),
}


# ---------------------------------------------------------------------------------------------------
# One pair.


@dataclass
class PairResult:
    """What reading one (image, label) pair found. Plain data, picklable for worker processes.

    Sizes are (width, height) in pixels; ``values`` maps each label value (after decoding, if a
    decoder was given) to its pixel count, empty when the label could not be read as values.
    """

    image: str
    label: str
    image_mode: Optional[str] = None
    image_size: Optional[tuple[int, int]] = None
    exif_orientation: int = 1
    label_mode: Optional[str] = None
    label_size: Optional[tuple[int, int]] = None
    values: dict[int, int] = field(default_factory=dict)
    unreadable: list[str] = field(default_factory=list)
    format_error: Optional[str] = None


def inspect_pair(image: PathLike, label: PathLike, decoder: Optional[Decoder] = None) -> PairResult:
    """Open, fully decode and measure one image/label pair; never raises for a bad file.

    With a ``decoder`` the label file is read by it only (it may not be an image: a COCO JSON), and
    its mode is reported as ``"decoded"``.
    """
    result = PairResult(image=str(image), label=str(label))
    try:
        with Image.open(image) as im:
            result.image_mode, result.image_size = im.mode, im.size
            result.exif_orientation = int(im.getexif().get(EXIF_ORIENTATION, 1))
            im.load()  # a truncated file opens, and fails only here
    except Exception as e:
        result.unreadable.append(f"{image} ({_short(e)})")
    array = None
    if decoder is None:
        try:
            with Image.open(label) as im:
                result.label_mode, result.label_size = im.mode, im.size
                im.load()
                if im.mode not in ("RGB", "RGBA"):
                    array = np.array(im)
        except Exception as e:
            result.unreadable.append(f"{label} ({_short(e)})")
            return result
    else:
        try:
            array = np.asarray(decoder(label))
        except Exception as e:
            result.format_error = _short(e)
            return result
        result.label_mode = "decoded"
        if array.ndim == 2:
            result.label_size = (array.shape[1], array.shape[0])
    if array is not None and array.ndim == 2:
        if array.dtype == np.uint8:  # bincount: ~10x faster than np.unique's sort on VOC-sized masks
            counts = np.bincount(array.reshape(-1), minlength=256)
            result.values = {int(v): int(counts[v]) for v in np.flatnonzero(counts)}
        else:
            values, counts = np.unique(array, return_counts=True)
            result.values = {int(v): int(n) for v, n in zip(values, counts)}
    return result


def _short(e: BaseException) -> str:
    return " ".join(str(e).split()) or type(e).__name__


# ---------------------------------------------------------------------------------------------------
# The report.


@dataclass
class Problem:
    """One kind of problem: how many files (or classes) show it and up to 5 examples."""

    kind: str
    fatal: bool
    description: str
    count: int
    examples: list[str]


@dataclass
class SplitStats:
    """Statistics of one split. Sizes are (width, height) in pixels; counts are pixels or images.

    ``class_pixels[c]``: pixels of class c; ``class_images[c]``: images containing c;
    ``class_image_pixels[c]``: total labelled (non-ignore) pixels of those images (the denominator
    of median-frequency balancing); ``void_share``: ignore pixels / all label pixels read.
    """

    name: str
    num_images: int
    image_modes: dict[str, int]
    label_modes: dict[str, int]
    min_size: Optional[tuple[int, int]]
    max_size: Optional[tuple[int, int]]
    label_histogram: dict[int, int]
    class_pixels: list[int]
    class_images: list[int]
    class_image_pixels: list[int]
    void_share: float


@dataclass
class DataReport:
    """The result of :func:`check_data`; ``ok`` is False when a fatal problem was found."""

    num_classes: int
    ignore_index: int
    splits: dict[str, SplitStats]
    problems: list[Problem]
    suggestions: dict[str, Any]
    ok: bool

    def problem(self, kind: str) -> Optional[Problem]:
        """The problem of ``kind``, or None if none was found."""
        return next((p for p in self.problems if p.kind == kind), None)


class _Problems:
    """Collects problem occurrences by kind, keeping the first examples."""

    def __init__(self, max_examples: int) -> None:
        self.max_examples = max_examples
        self.counts: Counter[str] = Counter()
        self.examples: dict[str, list[str]] = {}

    def add(self, kind: str, example: str) -> None:
        self.counts[kind] += 1
        shown = self.examples.setdefault(kind, [])
        if len(shown) < self.max_examples:
            shown.append(example)

    def as_list(self, fatal_overrides: Mapping[str, bool]) -> list[Problem]:
        out = []
        for kind, (fatal, description) in PROBLEM_KINDS.items():  # the table's order: fatal first
            if self.counts[kind]:
                fatal = fatal_overrides.get(kind, fatal)
                out.append(Problem(kind, fatal, description, self.counts[kind], self.examples[kind]))
        return sorted(out, key=lambda p: not p.fatal)


def check_data(
    splits: Mapping[str, Sequence[Pair]],
    num_classes: int,
    ignore_index: int = 255,
    *,
    decoder: Optional[Decoder] = None,
    workers: Optional[int] = None,
    executor: str = "thread",
    allow_shared_stems: bool = False,
    weights_split: str = "train",
    max_examples: int = MAX_EXAMPLES,
) -> DataReport:
    """Read every pair of every split in parallel and report statistics, problems and suggestions.

    Args:
        splits: split name -> (image path, label path) pairs.
        num_classes: C; valid label values are ``0..C-1`` and ``ignore_index``.
        ignore_index: the void label.
        decoder: how label files become class masks (e.g. ``functools.partial(read_color_mask,
            colors=...)`` from ``data/label_formats.py``); None = the files hold class indices.
        workers: pool size (default: the CPU count, at most 8).
        executor: ``"thread"`` (default, see the module docstring) or ``"process"``.
        allow_shared_stems: a stem in two splits is a warning rather than fatal (as
            ``data.allow_val_in_train`` makes the training leakage check a warning).
        weights_split: the split the suggested class weights come from (the first split if absent).
        max_examples: examples kept per problem.

    Returns:
        The :class:`DataReport`.
    """
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes: expected a positive integer, got {num_classes!r}")
    if executor not in ("thread", "process"):
        raise ValueError(f"executor: expected 'thread' or 'process', got {executor!r}")
    workers = workers or min(8, os.cpu_count() or 1)
    pool_type: type[Executor] = ThreadPoolExecutor if executor == "thread" else ProcessPoolExecutor
    jobs = [
        (split, str(pair[0]), str(pair[1]), pair[2] if len(pair) > 2 else decoder)
        for split, pairs in splits.items()
        for pair in pairs
    ]
    with pool_type(max_workers=workers) as pool:
        chunk = {"chunksize": max(1, len(jobs) // (4 * workers))} if executor == "process" else {}
        results = list(
            pool.map(inspect_pair, [j[1] for j in jobs], [j[2] for j in jobs], [j[3] for j in jobs], **chunk)
        )

    problems = _Problems(max_examples)
    by_split: dict[str, list[PairResult]] = {name: [] for name in splits}
    for (split, _, _, pair_decoder), result in zip(jobs, results):
        by_split[split].append(result)
        _pair_problems(result, num_classes, ignore_index, pair_decoder is not None, problems)
    stats = {name: _split_stats(name, rs, num_classes, ignore_index) for name, rs in by_split.items()}
    for name, s in stats.items():
        if s.num_images:
            for c in range(num_classes):
                if s.class_pixels[c] == 0:
                    problems.add("class_never_present", f"{name}: class {c}")
    _shared_stems(splits, problems)
    problem_list = problems.as_list({"stem_in_two_splits": not allow_shared_stems})
    suggestions = _suggestions(stats, results, problems, num_classes, ignore_index, weights_split)
    return DataReport(
        num_classes=num_classes,
        ignore_index=ignore_index,
        splits=stats,
        problems=problem_list,
        suggestions=suggestions,
        ok=not any(p.fatal for p in problem_list),
    )


def _pair_problems(
    r: PairResult, num_classes: int, ignore_index: int, decoded: bool, problems: _Problems
) -> None:
    for what in r.unreadable:
        problems.add("unreadable", what)
    if r.format_error is not None:
        problems.add("label_format", f"{r.label} ({r.format_error})")
    if r.exif_orientation != 1:
        problems.add("exif_rotated", f"{r.image} (Orientation {r.exif_orientation})")
    if r.image_size and r.label_size and r.image_size != r.label_size:
        (iw, ih), (lw, lh) = r.image_size, r.label_size
        problems.add("size_mismatch", f"{r.image} is {iw}x{ih}, {r.label} is {lw}x{lh}")
    if not decoded and r.label_mode in ("RGB", "RGBA"):
        problems.add("rgb_mask", f"{r.label} ({r.label_mode})")
    if not decoded and r.label_mode is not None and r.label_mode.startswith("I"):
        problems.add("mask_16bit", f"{r.label} ({r.label_mode})")
    bad = [v for v in r.values if not (0 <= v < num_classes or v == ignore_index)]
    if bad:
        shown = bad[:10] + (["..."] if len(bad) > 10 else [])
        problems.add("values_out_of_range", f"{r.label} (values {shown})")
    if not decoded and set(r.values) == {0, 255}:
        problems.add("binary_mask", r.label)


def _split_stats(name: str, results: list[PairResult], num_classes: int, ignore_index: int) -> SplitStats:
    histogram: Counter[int] = Counter()
    class_pixels = np.zeros(num_classes, dtype=np.int64)
    class_images = np.zeros(num_classes, dtype=np.int64)
    class_image_pixels = np.zeros(num_classes, dtype=np.int64)
    for r in results:
        histogram.update(r.values)
        image_pixels = sum(n for v, n in r.values.items() if v != ignore_index)
        for v, n in r.values.items():
            if 0 <= v < num_classes:
                class_pixels[v] += n
                class_images[v] += 1
                class_image_pixels[v] += image_pixels
    sizes = [r.image_size for r in results if r.image_size]
    total = sum(histogram.values())
    return SplitStats(
        name=name,
        num_images=len(results),
        image_modes=dict(Counter(r.image_mode for r in results if r.image_mode)),
        label_modes=dict(Counter(r.label_mode for r in results if r.label_mode)),
        min_size=(min(w for w, _ in sizes), min(h for _, h in sizes)) if sizes else None,
        max_size=(max(w for w, _ in sizes), max(h for _, h in sizes)) if sizes else None,
        label_histogram=dict(sorted(histogram.items())),
        class_pixels=class_pixels.tolist(),
        class_images=class_images.tolist(),
        class_image_pixels=class_image_pixels.tolist(),
        void_share=histogram.get(ignore_index, 0) / total if total else 0.0,
    )


def _shared_stems(splits: Mapping[str, Sequence[Pair]], problems: _Problems) -> None:
    where: dict[str, list[str]] = {}
    for split, pairs in splits.items():
        for stem in dict.fromkeys(Path(pair[0]).stem for pair in pairs):
            where.setdefault(stem, []).append(split)
    for stem, names in where.items():
        if len(names) > 1:
            problems.add("stem_in_two_splits", f"{stem} ({', '.join(names)})")


def _suggestions(
    stats: Mapping[str, SplitStats],
    results: list[PairResult],
    problems: _Problems,
    num_classes: int,
    ignore_index: int,
    weights_split: str,
) -> dict[str, Any]:
    """The config keys that would fit what was read (keys of the ``data``/``train.loss`` sections)."""
    out: dict[str, Any] = {}
    values = {v for r in results for v in r.values if v != ignore_index}
    if values and max(values) >= num_classes and max(values) < 256:
        out["data.num_classes"] = max(values) + 1
    labelled = sum(1 for r in results if r.values or r.label_mode in ("RGB", "RGBA"))
    if labelled and problems.counts["rgb_mask"] * 2 > labelled:
        out["data.mask_format"] = "rgb"
    elif labelled and problems.counts["binary_mask"] * 2 > labelled:
        out["data.mask_format"] = "binary"
        out["data.num_classes"] = 2
    source = stats.get(weights_split) or next(iter(stats.values()), None)
    if source is not None and any(source.class_pixels):
        out["train.loss.class_weights"] = [
            round(w, 4) for w in class_weights_from_counts(source.class_pixels, source.class_image_pixels)
        ]
    return out


# ---------------------------------------------------------------------------------------------------
# From a config: what ``deeplabv3plus check-data`` and ``train.loss.class_weights=auto`` read.


def _read_mapped_label(path: PathLike, *, label_map: LabelMap) -> np.ndarray:
    # A layout whose raw label values are mapped (Cityscapes label IDs): read, check, map.
    return label_map.apply(read_label(Path(path)), Path(path)).numpy()


def _sample_decoder(sample: Sample) -> Optional[Decoder]:
    if sample.label_reader is not None:
        return sample.label_reader
    if sample.label_map is not None:
        return functools.partial(_read_mapped_label, label_map=sample.label_map)
    return None  # an index PNG: read raw, so that colour, binary and 16-bit masks are recognised


def config_splits(cfg: DataConfig) -> dict[str, list[Pair]]:
    """The (image, label, decoder) triples of ``data.train_split`` and ``data.val_split``, as training reads them.

    Raises:
        DatasetError: a missing list, a listed file that does not exist, a bad ``data.mask_*`` option.
    """
    out: dict[str, list[Pair]] = {}
    for split in dict.fromkeys((cfg.train_split, cfg.val_split)):
        samples, _ = split_samples(cfg, split)
        out[split] = [(s.image, s.label, _sample_decoder(s)) for s in samples]
    return out


def check_config_data(cfg: DataConfig, *, workers: Optional[int] = None) -> tuple[DataReport, list[str]]:
    """:func:`check_data` on the splits of ``cfg``, with its class count, ignore index and label format.

    Returns:
        The report and the class names (for :func:`to_markdown`).
    """
    splits = config_splits(cfg)
    names = dataset_class_names(cfg)
    report = check_data(
        splits,
        cfg.num_classes,
        cfg.ignore_index,
        workers=workers,
        allow_shared_stems=cfg.allow_val_in_train,
        weights_split=cfg.train_split,
    )
    return report, names


def dataset_class_weights(dataset: SegmentationDataset, *, workers: Optional[int] = None) -> list[float]:
    """Median-frequency class weights (capped, :func:`class_weights_from_counts`) of a dataset's labels.

    Reads every label once (no image), in a thread pool: ``train.loss.class_weights: auto``.
    Values outside the classes are skipped here; loading the sample reports them.
    """
    num_classes, ignore = dataset.num_classes, dataset.ignore_index

    def count(index: int) -> np.ndarray:
        return np.bincount(dataset.load_label(index).numpy().reshape(-1), minlength=256)

    with ThreadPoolExecutor(max_workers=workers or min(8, os.cpu_count() or 1)) as pool:
        per_image = list(pool.map(count, range(len(dataset))))
    pixels = np.zeros(num_classes, dtype=np.int64)
    image_pixels = np.zeros(num_classes, dtype=np.int64)
    for counts in per_image:
        labelled = int(counts.sum() - (counts[ignore] if ignore < 256 else 0))
        pixels += counts[:num_classes]
        image_pixels += (counts[:num_classes] > 0) * labelled
    return class_weights_from_counts(pixels, image_pixels)


# ---------------------------------------------------------------------------------------------------
# Rendering.


def to_dict(report: DataReport) -> dict[str, Any]:
    """The report as JSON-ready data (histogram keys become strings in JSON)."""
    return asdict(report)


def to_json(report: DataReport, indent: int = 2) -> str:
    """The report as a JSON document."""
    return json.dumps(to_dict(report), indent=indent)


def _size(size: Optional[tuple[int, int]]) -> str:
    return f"{size[0]}x{size[1]}" if size else "-"


def to_markdown(report: DataReport, class_names: Optional[Sequence[str]] = None) -> str:
    """The report as Markdown: verdict, splits, classes, problems, suggestions."""
    names = list(class_names) if class_names else [str(c) for c in range(report.num_classes)]
    verdict = "OK: training would run" if report.ok else "NOT OK: fatal problems below"
    lines = [f"# Data check: {verdict}", ""]
    lines += [
        f"{report.num_classes} classes, ignore index {report.ignore_index}.",
        "",
        "## Splits",
        "",
        "| split | images | image modes | label modes | sizes (WxH) | void share |",
        "|---|---:|---|---|---|---:|",
    ]
    for s in report.splits.values():
        modes = ", ".join(f"{m} {n}" for m, n in s.image_modes.items())
        label_modes = ", ".join(f"{m} {n}" for m, n in s.label_modes.items())
        lines.append(
            f"| {s.name} | {s.num_images} | {modes} | {label_modes} | {_size(s.min_size)} .. {_size(s.max_size)} "
            f"| {s.void_share:.1%} |"
        )
    split_names = list(report.splits)
    lines += ["", "## Classes (pixel share / images)", ""]
    lines.append("| class | " + " | ".join(split_names) + " |")
    lines.append("|---|" + "---:|" * len(split_names))
    for c in range(report.num_classes):
        cells = []
        for s in report.splits.values():
            total = sum(s.class_pixels) or 1
            cells.append(f"{s.class_pixels[c] / total:.2%} / {s.class_images[c]}")
        lines.append(f"| {c} {names[c] if c < len(names) else ''} | " + " | ".join(cells) + " |")
    lines += ["", "## Problems", ""]
    if not report.problems:
        lines.append("None found.")
    for p in report.problems:
        lines.append(f"- **{p.kind}** ({'fatal' if p.fatal else 'warning'}, {p.count}): {p.description}")
        lines += [f"  - `{example}`" for example in p.examples]
    lines += ["", "## Suggestions", ""]
    if not report.suggestions:
        lines.append("None.")
    lines += [f"- `{key}: {json.dumps(value)}`" for key, value in report.suggestions.items()]
    return "\n".join(lines) + "\n"


def plot_class_frequencies(
    report: DataReport, path: PathLike, class_names: Optional[Sequence[str]] = None
) -> Path:
    """Save a bar chart of each split's class pixel shares as a PNG; needs the ``plot`` extra.

    Raises:
        ImportError: matplotlib is not installed (the message names the extra).
    """
    try:
        import matplotlib

        matplotlib.use("Agg")  # no display needed; a file is the output
        import matplotlib.pyplot as plt
    except ImportError:
        raise ImportError(
            "plotting class frequencies needs matplotlib: pip install 'deeplabv3plus[plot]'"
        ) from None
    names = list(class_names) if class_names else [str(c) for c in range(report.num_classes)]
    x = np.arange(report.num_classes)
    width = 0.8 / max(1, len(report.splits))
    fig, ax = plt.subplots(figsize=(max(6, report.num_classes * 0.5), 4))
    for i, s in enumerate(report.splits.values()):
        total = sum(s.class_pixels) or 1
        ax.bar(x + i * width, [p / total for p in s.class_pixels], width, label=s.name)
    ax.set_xticks(x + width * (len(report.splits) - 1) / 2, names, rotation=90)
    ax.set_ylabel("share of labelled pixels")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return Path(path)


# --- the check-data command's job: check, print, write the reports -----------------------------


def fatal_summary(report: DataReport) -> str:
    """The fatal problems of ``report`` in one line, ``values_out_of_range (1), size_mismatch (2)``;
    "" when there are none (``report.ok``)."""
    return ", ".join(f"{p.kind} ({p.count})" for p in report.problems if p.fatal)


def write_reports(
    report: DataReport, out_dir: PathLike, class_names: Optional[Sequence[str]] = None
) -> list[Path]:
    """Write ``check_data.json``, ``check_data.md`` and, with the ``plot`` extra (matplotlib),
    ``check_data_classes.png`` into ``out_dir`` (created); without matplotlib, print why no chart.

    Returns:
        The files written, in that order.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "check_data.json").write_text(to_json(report) + "\n")
    (out / "check_data.md").write_text(to_markdown(report, class_names))
    written = [out / "check_data.json", out / "check_data.md"]
    try:
        written.append(plot_class_frequencies(report, out / "check_data_classes.png", class_names))
    except ImportError as e:
        print(f"no class-frequency chart: {e}")
    return written


def check_data_run(cfg: DataConfig, out_dir: PathLike, *, workers: Optional[int] = None) -> DataReport:
    """Check the splits of a config's ``data`` section, print the Markdown summary and write the reports.

    What ``deeplabv3plus check-data`` runs: :func:`check_config_data`, the summary
    (:func:`to_markdown`) on stdout, :func:`write_reports` into ``out_dir``, then one line with the
    pair count, the time taken and the files written.

    Args:
        cfg: A config's ``data`` section (layout, root, splits, class count, label format).
        out_dir: The folder for the reports (created).
        workers: Reader threads (default: the CPU count, at most 8).

    Returns:
        The report; ``report.ok`` is False when training would not run (:func:`fatal_summary`).

    Raises:
        ValueError: ``workers`` is below 1, or the config names no readable split (DatasetError).
    """
    if workers is not None and workers < 1:
        raise ValueError(f"--workers: expected a positive number, got {workers}")
    start = time.perf_counter()
    report, class_names = check_config_data(cfg, workers=workers)
    seconds = time.perf_counter() - start
    print(to_markdown(report, class_names))
    written = write_reports(report, out_dir, class_names)
    pairs = sum(s.num_images for s in report.splits.values())
    print(f"read {pairs} pairs in {seconds:.1f} s; wrote {', '.join(str(p) for p in written)}")
    return report
