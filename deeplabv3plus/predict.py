"""Segment image files: palette label PNGs and overlays, or a benchmark server's submission.

:func:`predict_files` segments every image with :func:`deeplabv3plus.inference.segment_eval`, the
function ``eval`` scores with, under the config's ``eval`` section (``pad_to``, output stride,
scales, flip, sliding windows): what is written is what was evaluated. :func:`predict_run` is the
whole ``deeplabv3plus predict`` job once the model is loaded (format check, messages, archive).
:class:`PredictSettings` holds how a run goes; its ``fmt`` picks the files:

* ``png`` (default): ``<out>/<stem>.png``, a mode "P" PNG of the class indices with the palette of
  the checkpoint's dataset (:func:`dataset_palette`; ``np.array(Image.open(p))`` gives the indices
  back), and ``<out>/<stem>_overlay.jpg``, the class colours blended over the photo;
* ``cityscapes``: ``<out>/results/<city>_<seq>_<frame>_leftImg8bit.png``, 8-bit label IDs (train
  IDs mapped back through cityscapesScripts' ``labels.py``), the files the official evaluator
  (``CITYSCAPES_RESULTS=<out>/results``) and benchmark server match by ``<city>_<seq>_<frame>*.png``;
* ``voc``: ``<out>/results/VOC2012/Segmentation/comp6_test_cls/<id>.png`` in the VOC palette (the
  VOC devkit's results layout; comp6: trained with data beyond VOC's) and ``<out>/results.tar.gz``,
  the archive to upload;
* ``ade20k``: ``<out>/results/<stem>.png``, grey values in the annotation convention of the
  SceneParsing devkit (0 "other", 1..150 the classes: class index + 1 under
  ``data.label_convention=reduce_zero``, the index itself under ``reference``) and
  ``<out>/results.zip``, the archive its README asks for.

With a submission format the results folder holds those files only (a stray file there is an
error: the evaluators read every match) and the overlays go to ``<out>/overlays/`` (or nowhere,
``PredictSettings(overlay=False)``).
"""

from __future__ import annotations

import dataclasses
import glob
import re
import tarfile
import zipfile
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Callable, Optional, Union

import numpy as np
import torch
import torch.nn as nn
from PIL import Image
from torchvision import tv_tensors
from tqdm import tqdm

from deeplabv3plus.catalog import LAYOUTS, PREDICT_FORMATS, load
from deeplabv3plus.config import Config, DataConfig, EvalConfig
from deeplabv3plus.data.cityscapes_meta import train_id_to_label_id_lut
from deeplabv3plus.data.datasets import dataset_class_names
from deeplabv3plus.data.images import DEFAULT_MAX_PIXELS, read_rgb
from deeplabv3plus.data.transforms import Preprocess, ResizeToRange, resize_labels_back, resize_to_range_for
from deeplabv3plus.data.voc_meta import save_label_png, voc_palette
from deeplabv3plus.inference import segment_eval
from deeplabv3plus.models.fuse import prepare_for_inference

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


def collect_inputs(inputs: Sequence[Union[str, Path]]) -> list[Path]:
    """Expand image files, folders (their images, not recursive) and glob patterns, in order.

    Raises:
        FileNotFoundError: when an input matches no image.
        ValueError: when two images share a file stem (their outputs would collide).
    """
    paths: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_file():
            found = [p]
        elif p.is_dir():
            found = sorted(f for f in p.iterdir() if f.suffix.lower() in IMAGE_EXTENSIONS)
        else:
            found = sorted(Path(f) for f in glob.glob(str(item), recursive=True))
            found = [f for f in found if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS]
        if not found:
            raise FileNotFoundError(f"no image found for input '{item}' (a file, a folder or a glob pattern)")
        paths.extend(f for f in found if f not in paths)
    stems: dict[str, Path] = {}
    for p in paths:
        if p.stem in stems:
            raise ValueError(
                f"'{stems[p.stem]}' and '{p}' share the stem '{p.stem}': their outputs would collide"
            )
        stems[p.stem] = p
    return paths


SLIDE_ADVICE = (
    ", and segment it in windows: eval.mode=slide eval.crop_size=[513, 513] "
    "(predict --mode slide --crop-size 513)"
)
"""What the too-large message of :func:`load_rgb` adds under ``eval.mode=whole``."""


def load_rgb(
    path: Union[str, Path], max_pixels: int = DEFAULT_MAX_PIXELS, advice: str = SLIDE_ADVICE
) -> np.ndarray:
    """An image file as an (H, W, 3) uint8 RGB array, as training and eval read it
    (:func:`deeplabv3plus.data.images.read_rgb`): 16-bit images scaled to 8 bits (``value >> 8``),
    the size (width x height) checked against ``max_pixels`` (``data.max_image_pixels``) from the
    header, before decoding.

    Raises:
        ValueError: over ``max_pixels`` (:class:`~deeplabv3plus.data.images.ImageTooLargeError`,
            ``advice`` appended), or pixel values no 8-bit scale is known for.
        OSError: an unreadable file, named.
    """
    try:
        return read_rgb(path, max_pixels, advice)
    except OSError as e:
        if str(path) in str(e):
            raise
        raise OSError(f"cannot read image '{path}': {e}") from None


def dataset_palette(layout: str, label_convention: Optional[str] = None) -> np.ndarray:
    """The (256, 3) uint8 class colours of a ``data.layout`` (its catalogue entry's palette: VOC's,
    Cityscapes', ADE20K's, ...); ADE20K's depend on ``data.label_convention``."""
    return load(LAYOUTS[layout].palette)(256, label_convention)


def background_class(layout: str, label_convention: Optional[str] = None) -> Optional[int]:
    """The class an overlay leaves as the photo: 0 where it means "nothing of interest" (VOC's
    background in the voc, voc_aug, synthetic and folders layouts; ADE20K's "other" in the
    reference convention); None where every class is drawn (Cityscapes: class 0 is road)."""
    return LAYOUTS[layout].background_class(label_convention)


def colour_overlay(
    rgb: np.ndarray,
    labels: np.ndarray,
    alpha: float = 0.5,
    palette: Optional[np.ndarray] = None,
    background: Optional[int] = None,
) -> np.ndarray:
    """Blend the colour of each pixel's class over the image.

    Args:
        rgb: (H, W, 3) uint8 image.
        labels: (H, W) integer class indices.
        alpha: Weight of the class colour, in [0, 1].
        palette: (256, 3) uint8 class colours; None: VOC's.
        background: Pixels of this class keep the photo as it is (VOC's background is black in
            the palette: blending it would darken the whole photo); None: every class is blended.

    Returns:
        (H, W, 3) uint8 ``(1 - alpha) * rgb + alpha * palette[labels]``, ``rgb`` on ``background``.
    """
    palette = voc_palette(256) if palette is None else palette
    colours = palette[labels.astype(np.int64) % 256].astype(np.float32)
    blend = (1 - alpha) * rgb.astype(np.float32) + alpha * colours
    out = np.clip(np.rint(blend), 0, 255).astype(np.uint8)
    if background is not None:
        out[labels == background] = rgb[labels == background]
    return out


# --- output formats ------------------------------------------------------------------------------

FORMATS = tuple(PREDICT_FORMATS)
"""The values of ``predict --format`` (``deeplabv3plus.catalog.PREDICT_FORMATS``): palette PNGs +
overlays, or a benchmark server's submission."""

_CITYSCAPES_NAME = re.compile(r"^([A-Za-z-]+)_(\d+)_(\d+)(?:_|$)")


def png_path(out_dir: Path, image: Path) -> Path:
    """``png``: ``<out>/<name>.png``."""
    return out_dir / f"{image.stem}.png"


def cityscapes_path(out_dir: Path, image: Path) -> Path:
    """``cityscapes``: ``<out>/results/<city>_<seq>_<frame>_leftImg8bit.png``."""
    match = _CITYSCAPES_NAME.match(image.stem)
    if match is None:
        raise ValueError(
            f"'{image}': --format cityscapes needs Cityscapes file names "
            "<city>_<seq>_<frame>_leftImg8bit.png (the evaluator matches predictions by <city>_<seq>_<frame>)"
        )
    city, seq, frame = match.groups()
    # The reference's vis.py (also_save_raw_predictions) names the PNG after the input image.
    return out_dir / "results" / f"{city}_{seq}_{frame}_leftImg8bit.png"


def voc_path(out_dir: Path, image: Path) -> Path:
    """``voc``: the devkit's ``results/VOC2012/Segmentation/comp6_test_cls/<id>.png``."""
    return out_dir / "results" / "VOC2012" / "Segmentation" / "comp6_test_cls" / f"{image.stem}.png"


def ade20k_path(out_dir: Path, image: Path) -> Path:
    """``ade20k``: ``<out>/results/<name>.png``."""
    return out_dir / "results" / f"{image.stem}.png"


SUBMISSION_PATHS: dict[str, Callable[[Path, Path], Path]] = {
    name: load(entry.path) for name, entry in PREDICT_FORMATS.items()
}
"""Where each format writes the label PNG of an input image: ``path(out_dir, image)``."""


def check_format(fmt: str, layout: str, num_classes: int, label_convention: Optional[str] = None) -> None:
    """Raise ValueError when a submission format does not fit the checkpoint's dataset (the layouts
    and class count of its catalogue entry)."""
    if fmt not in PREDICT_FORMATS:
        raise ValueError(f"format: expected one of {', '.join(PREDICT_FORMATS)}, got {fmt!r}")
    entry = PREDICT_FORMATS[fmt]
    fits_layout = entry.layouts is None or layout in entry.layouts
    if not fits_layout or entry.num_classes not in (None, num_classes):
        needs = [f"data.layout {' or '.join(entry.layouts)}"] if entry.layouts is not None else []
        needs += [f"data.num_classes={entry.num_classes}"] if entry.num_classes is not None else []
        raise ValueError(
            f"--format {fmt} needs a model of {', '.join(needs)} ({entry.description}); this one has "
            f"data.layout={layout}, data.num_classes={num_classes}"
        )


def cityscapes_label_ids(labels: np.ndarray, label_convention: Optional[str] = None) -> np.ndarray:
    """Train IDs -> the label IDs the Cityscapes evaluator reads, (H, W) uint8."""
    return train_id_to_label_id_lut()[labels.astype(np.int64)]


def ade20k_annotation_values(labels: np.ndarray, label_convention: Optional[str] = None) -> np.ndarray:
    """Classes -> the annotation values of SceneParsing: class + 1 under ``reduce_zero`` (150
    classes), as they are under ``reference`` (151 classes, 0 = "other"), (H, W) uint8."""
    if label_convention == "reduce_zero":
        return (labels + 1).astype(np.uint8)
    return labels.astype(np.uint8)


def encode_labels(fmt: str, labels: np.ndarray, label_convention: Optional[str] = None) -> np.ndarray:
    """(H, W) class indices -> the (H, W) uint8 values a format's PNG holds (its catalogue entry's
    ``encode``; the indices as they are for png and voc)."""
    encode = PREDICT_FORMATS[fmt].encode
    return load(encode)(labels, label_convention) if encode is not None else labels.astype(np.uint8)


def check_results_folder(results: Path, planned: Sequence[Path]) -> None:
    """Raise ValueError when ``results`` holds a file this run does not write (an evaluator reads every
    matching file under it: a stale prediction would be scored, or clash with a new one)."""
    if not results.is_dir():
        return
    planned_set = {p.resolve() for p in planned}
    stray = sorted(p for p in results.rglob("*") if p.is_file() and p.resolve() not in planned_set)
    if stray:
        raise ValueError(
            f"'{results}' already holds '{stray[0]}'"
            + (f" and {len(stray) - 1} more files" if len(stray) > 1 else "")
            + " that this run does not write; a submission folder must hold its predictions only: "
            "choose a new --output or empty it"
        )


def write_archive(fmt: str, out_dir: Path) -> Optional[Path]:
    """The file to upload, ``<out>/<archive>`` of the format's catalogue entry (VOC:
    ``results.tar.gz`` of ``results/``; ADE20K: ``results.zip`` of its PNGs); None where the
    evaluator reads the folder (Cityscapes) or there is nothing to upload (png)."""
    name = PREDICT_FORMATS[fmt].archive
    if name is None:
        return None
    results, archive = out_dir / "results", out_dir / name
    tmp = archive.with_name(archive.name + ".tmp")
    if name.endswith(".tar.gz"):
        with tarfile.open(tmp, "w:gz") as tar:
            tar.add(results, arcname="results")
    else:
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
            for path in sorted(results.glob("*.png")):
                zf.write(path, arcname=path.name)
    tmp.replace(archive)  # never a half-written archive under the final name
    return archive


def class_shares(labels: np.ndarray, num_classes: int) -> dict[int, float]:
    """{class: fraction of the pixels} of the classes present, largest first."""
    counts = np.bincount(labels.reshape(-1).astype(np.int64), minlength=num_classes)
    total = counts.sum()
    present = np.flatnonzero(counts)
    order = present[np.argsort(-counts[present], kind="stable")]
    return {int(c): float(counts[c] / total) for c in order}


def format_shares(shares: dict[int, float], class_names: Optional[Sequence[str]] = None) -> str:
    """``road 41.2%, building 20.1%, ...``."""

    def name(c: int) -> str:
        return class_names[c] if class_names is not None and c < len(class_names) else f"class {c}"

    return ", ".join(f"{name(c)} {100 * v:.1f}%" for c, v in shares.items())


@dataclasses.dataclass(frozen=True)
class PredictSettings:
    """How :func:`predict_files` runs the model and what it writes; every field has a default.

    Raises ValueError on a value no run could use (``fmt``, ``alpha``, ``overlay_ext``).
    """

    fmt: str = "png"
    """"png", "cityscapes", "voc" or "ade20k" (module docstring); the model's classes must fit it
    (:func:`check_format`)."""
    batch_size: Optional[int] = None
    """Images per forward pass (times 2 with flip); None: the ``eval`` config's ``batch_size``."""
    device: Optional[Union[str, torch.device]] = None
    """Where the model runs; None: its parameters' device."""
    amp_dtype: Optional[torch.dtype] = None
    """Autocast dtype, as :func:`deeplabv3plus.inference.predict_probs` (None: fp32)."""
    max_batch: Optional[int] = None
    """As :func:`deeplabv3plus.inference.predict_probs`."""
    overlay: bool = True
    """Write overlays (next to the PNGs for "png", in ``<out>/overlays/`` otherwise)."""
    alpha: float = 0.5
    """Weight of the class colours in the overlay, in [0, 1]."""
    overlay_ext: str = ".jpg"
    """".jpg" or ".png"."""
    progress: bool = True
    """Show a tqdm progress bar."""
    report: bool = False
    """Print each image's classes by share of pixels, one line per image, then a summary."""
    prepare: bool = True
    """Run a :func:`~deeplabv3plus.models.fuse.prepare_for_inference` copy, as
    :func:`deeplabv3plus.evaluate.evaluate` does (the same numbers to the bit)."""
    palette: Optional[np.ndarray] = None
    """(256, 3) uint8 colours of the PNGs and overlays (:func:`dataset_palette`); None: VOC's."""
    background: Optional[int] = None
    """The class overlays leave as the photo (:func:`background_class`); None: none."""
    label_convention: Optional[str] = None
    """``data.label_convention`` (ADE20K's decides the submission values)."""
    class_names: Optional[Sequence[str]] = None
    """Names for the per-image report."""
    max_image_pixels: int = DEFAULT_MAX_PIXELS
    """``data.max_image_pixels``: a larger image is refused (one line naming it) before it is decoded."""
    resize: Optional[ResizeToRange] = None
    """The config's resize to range (``data.min_resize_value``, ADE20K's protocol;
    :func:`~deeplabv3plus.data.transforms.resize_to_range_for`): each image is resized as ``eval``
    resizes it, segmented, and its labels resized back to the image's own size
    (:func:`~deeplabv3plus.data.transforms.resize_labels_back`, as the reference's ``vis.py``),
    since a submission is scored at the original size. None: no resize."""

    def __post_init__(self) -> None:
        if self.fmt not in SUBMISSION_PATHS:
            raise ValueError(f"format: expected one of {', '.join(FORMATS)}, got {self.fmt!r}")
        if self.overlay_ext.lower() not in (".jpg", ".jpeg", ".png"):
            raise ValueError(f"overlay_ext must be .jpg or .png, got {self.overlay_ext!r}")
        if not 0 <= self.alpha <= 1:
            raise ValueError(f"alpha: expected a weight in [0, 1], got {self.alpha}")


def settings_for_data(data: DataConfig, settings: Optional[PredictSettings] = None) -> PredictSettings:
    """``settings`` with the fields a dataset decides taken from ``data`` (a config's ``data`` section).

    ``palette`` and ``background`` from ``data.layout`` (:func:`dataset_palette`,
    :func:`background_class`), ``label_convention``, ``class_names``
    (:func:`~deeplabv3plus.data.datasets.dataset_class_names`), ``max_image_pixels`` and ``resize``
    (:func:`~deeplabv3plus.data.transforms.resize_to_range_for`); the other fields are kept.
    """
    return dataclasses.replace(
        PredictSettings() if settings is None else settings,
        palette=dataset_palette(data.layout, data.label_convention),
        background=background_class(data.layout, data.label_convention),
        label_convention=data.label_convention,
        class_names=dataset_class_names(data),
        max_image_pixels=data.max_image_pixels,
        resize=resize_to_range_for(data),
    )


def predict_files(
    model: nn.Module,
    paths: Sequence[Union[str, Path]],
    out_dir: Union[str, Path],
    mean: Sequence[float],
    std: Sequence[float],
    eval_cfg: Optional[EvalConfig] = None,
    settings: Optional[PredictSettings] = None,
) -> list[tuple[Path, Optional[Path]]]:
    """Segment image files as ``eval`` does; write a label PNG (and an overlay) for each.

    Consecutive images of the same size are batched (up to ``settings.batch_size``); an image of
    another size starts a new batch, so any mix of sizes works.

    Args:
        model: Maps (B, 3, H, W) normalised images to (B, C, H, W) logits; set to eval mode.
        paths: Image files (see :func:`collect_inputs` for folders and globs).
        out_dir: Output folder, created if missing.
        mean, std: Per-channel normalisation of images scaled to [0, 1] (the config's
            ``data.mean`` / ``data.std``).
        eval_cfg: The evaluation protocol, a config's ``eval`` section (default ``EvalConfig()``):
            ``pad_to``, ``scales``, ``flip``, ``output_stride``, ``mode``, ``crop_size``,
            ``stride`` as :func:`deeplabv3plus.inference.segment_eval`, and ``batch_size``.
        settings: How to run and what to write (:class:`PredictSettings`; default: its defaults).

    Returns:
        ``(label_png, overlay or None)`` paths, one pair per input in order.

    Raises:
        ValueError: a file name the format cannot place (``cityscapes``), or a submission
            results folder that holds files this run does not write (:func:`check_results_folder`),
            or an image over ``settings.max_image_pixels`` (:func:`load_rgb`, refused before decoding;
            the message suggests sliding windows under ``eval.mode=whole``).
        OSError: an unreadable image.
    """
    settings = PredictSettings() if settings is None else settings
    eval_cfg = EvalConfig() if eval_cfg is None else eval_cfg
    batch_size = eval_cfg.batch_size if settings.batch_size is None else settings.batch_size
    out_dir = Path(out_dir)
    paths = [Path(p) for p in paths]
    targets = _plan_outputs(out_dir, paths, settings)  # fails on a bad name before any work
    device = settings.device
    if device is None:
        param = next(model.parameters(), None)
        device = param.device if param is not None else torch.device("cpu")
    model.eval()
    if settings.prepare and not getattr(model, "prepared_for_inference", False):
        model = prepare_for_inference(model)
    preprocess = Preprocess(mean, std)
    outputs: list[tuple[Path, Optional[Path]]] = []
    totals: Counter[int] = Counter()
    advice = "" if eval_cfg.mode == "slide" else SLIDE_ADVICE
    batches = _same_size_batches(paths, batch_size, settings.progress, settings.max_image_pixels, advice)
    for batch in batches:
        rgbs = np.stack([rgb for _, rgb in batch])  # (B, H, W, 3) uint8
        labels = _segment_batch(model, rgbs, preprocess, eval_cfg, settings, device)
        for (i, rgb), lab in zip(batch, labels):
            outputs.append((targets[i], _write_outputs(rgb, lab, targets[i], paths[i], out_dir, settings)))
            counts = np.bincount(lab.reshape(-1), minlength=1)
            totals.update({int(c): int(counts[c]) for c in np.flatnonzero(counts)})
            if settings.report:
                tqdm.write(f"{paths[i].name}: {format_shares(class_shares(lab, 1), settings.class_names)}")
    num_pixels = sum(totals.values())
    if settings.report and num_pixels:
        overall = {c: n / num_pixels for c, n in sorted(totals.items(), key=lambda kv: (-kv[1], kv[0]))}
        print(
            f"{len(outputs)} images, {len(overall)} classes found, by share of all pixels: "
            f"{format_shares(overall, settings.class_names)}"
        )
    return outputs


def _overlay_dir(out_dir: Path, fmt: str) -> Path:
    return out_dir if fmt == "png" else out_dir / "overlays"


def _plan_outputs(out_dir: Path, paths: list[Path], settings: PredictSettings) -> list[Path]:
    """The label PNG of each image; checks the names and the results folder, creates the folders."""
    targets = [SUBMISSION_PATHS[settings.fmt](out_dir, p) for p in paths]
    if settings.fmt != "png":
        check_results_folder(out_dir / "results", targets)
    overlays = {_overlay_dir(out_dir, settings.fmt)} if settings.overlay else set()
    for folder in {t.parent for t in targets} | overlays:
        folder.mkdir(parents=True, exist_ok=True)
    return targets


def _same_size_batches(
    paths: list[Path], batch_size: int, progress: bool, max_pixels: int, advice: str
) -> Iterator[list[tuple[int, np.ndarray]]]:
    """``(index, (H, W, 3) uint8 RGB)`` of consecutive images of one size, at most ``batch_size``."""
    batch: list[tuple[int, np.ndarray]] = []
    for i, path in enumerate(tqdm(paths, desc="predict", disable=not progress, dynamic_ncols=True)):
        rgb = load_rgb(path, max_pixels, advice)
        if batch and (len(batch) >= batch_size or batch[0][1].shape != rgb.shape):
            yield batch
            batch = []
        batch.append((i, rgb))
    if batch:
        yield batch


def _segment_batch(
    model: nn.Module,
    rgbs: np.ndarray,
    preprocess: Preprocess,
    eval_cfg: EvalConfig,
    settings: PredictSettings,
    device: Union[str, torch.device],
) -> np.ndarray:
    """(B, H, W, 3) uint8 images of one size -> (B, H, W) class indices at that size."""
    images = torch.from_numpy(rgbs).permute(0, 3, 1, 2)  # (B, 3, H, W), as the transforms take it
    resize = settings.resize
    if resize is not None:
        images = torch.stack([resize(tv_tensors.Image(im)).as_subclass(torch.Tensor) for im in images])
    labels = segment_eval(
        model,
        preprocess(images).to(device),
        eval_cfg,
        max_batch=settings.max_batch,
        amp_dtype=settings.amp_dtype,
    )
    if resize is not None:
        labels = resize_labels_back(labels, rgbs.shape[1:3])
    return labels.cpu().numpy()


def _write_outputs(
    rgb: np.ndarray,
    labels: np.ndarray,
    label_path: Path,
    image: Path,
    out_dir: Path,
    settings: PredictSettings,
) -> Optional[Path]:
    """Write one image's label PNG (and overlay); returns the overlay's path (None: no overlay)."""
    values = encode_labels(settings.fmt, labels, settings.label_convention)
    if PREDICT_FORMATS[settings.fmt].grey:
        Image.fromarray(values, mode="L").save(label_path)
    else:
        save_label_png(values, label_path, settings.palette)
    if not settings.overlay:
        return None
    overlay_path = _overlay_dir(out_dir, settings.fmt) / f"{image.stem}_overlay{settings.overlay_ext}"
    blend = colour_overlay(rgb, labels, settings.alpha, settings.palette, settings.background)
    Image.fromarray(blend).save(overlay_path)
    return overlay_path


def _describe_protocol(cfg: Config) -> str:
    """``output stride 16, scales [1.0], flip False`` (and pad, slide, resize): how ``cfg`` predicts."""
    ev, data = cfg.eval, cfg.data
    return (
        f"output stride {ev.output_stride or cfg.model.output_stride}, scales {ev.scales}, flip {ev.flip}"
        + (f", pad to {ev.pad_to}" if ev.pad_to else "")
        + (f", slide {ev.crop_size} stride {ev.stride}" if ev.mode == "slide" else "")
        + (
            f", resized to range {data.min_resize_value}..{data.max_resize_value} and back"
            if data.min_resize_value is not None
            else ""
        )
    )


def predict_run(
    model: nn.Module,
    cfg: Config,
    paths: Sequence[Union[str, Path]],
    out_dir: Union[str, Path],
    settings: Optional[PredictSettings] = None,
    *,
    source: Optional[str] = None,
) -> list[tuple[Path, Optional[Path]]]:
    """Segment image files with ``model`` under ``cfg`` and write a format's files; print what was done.

    What ``deeplabv3plus predict`` runs once it has loaded the model (e.g. with
    :func:`deeplabv3plus.loading.load_model_from_checkpoint`) and applied its flags to ``cfg.eval``:
    checks that ``settings.fmt`` fits the model's dataset (:func:`check_format`), prints the
    protocol, runs :func:`predict_files` with the normalisation of ``cfg.data``, the protocol of
    ``cfg.eval`` and the dataset's palette, classes and resize (:func:`settings_for_data`), prints
    where the files went, and for ``voc`` / ``ade20k`` writes the archive to upload
    (:func:`write_archive`).

    Args:
        model: The model ``cfg.model`` describes; maps (B, 3, H, W) to (B, C, H, W) logits.
        cfg: Its config.
        paths: Image files (:func:`collect_inputs` expands folders and globs).
        out_dir: The output folder (created).
        settings: How to run and what to write; its dataset fields are replaced by ``cfg.data``'s.
        source: Where the model came from (a checkpoint file or a weights name), for the messages.

    Returns:
        ``(label_png, overlay or None)`` paths, one pair per image in order.

    Raises:
        ValueError: a format that does not fit the model's dataset, or :func:`predict_files`'s errors.
    """
    settings = settings_for_data(cfg.data, settings)
    fmt, out_dir = settings.fmt, Path(out_dir)
    check_format(fmt, cfg.data.layout, cfg.data.num_classes, cfg.data.label_convention)
    print(
        f"predicting {len(paths)} images with {source or 'the model'} into {out_dir}/ "
        f"(format {fmt}): {_describe_protocol(cfg)}"
    )
    outputs = predict_files(model, paths, out_dir, cfg.data.mean, cfg.data.std, cfg.eval, settings=settings)
    folder = outputs[0][0].parent if outputs else out_dir
    print(f"wrote {len(outputs)} {PREDICT_FORMATS[fmt].written} to {folder}")
    if fmt == "png" and LAYOUTS[cfg.data.layout].submission == "cityscapes":
        print(
            "(their values are train IDs 0..18; --format cityscapes writes the label IDs the official evaluator reads)"
        )
    if outputs and outputs[0][1] is not None:
        print(
            f"wrote {len(outputs)} overlays (<name>_overlay{settings.overlay_ext}) to {outputs[0][1].parent}"
        )
    archive = write_archive(fmt, out_dir)
    if archive is not None:
        print(f"wrote {archive} (the file to upload)")
    return outputs
