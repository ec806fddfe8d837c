"""Segment image files: palette label PNGs and overlays, or a benchmark server's submission.

:func:`predict_files` segments every image with :func:`deeplabv3plus.inference.segment_eval`, the
function ``eval`` scores with, under the config's ``eval`` section (``pad_to``, output stride,
scales, flip, sliding windows): what is written is what was evaluated. ``fmt`` picks the files:

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
``overlay=False``).
"""

from __future__ import annotations

import glob
import re
import tarfile
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Callable, Optional, Union

import numpy as np
import torch
import torch.nn as nn
from PIL import Image
from torchvision import tv_tensors
from tqdm import tqdm

from deeplabv3plus.config import EvalConfig
from deeplabv3plus.data.ade20k_meta import ade20k_palette
from deeplabv3plus.data.cityscapes_meta import cityscapes_palette, train_id_to_label_id_lut
from deeplabv3plus.data.transforms import Preprocess, ResizeToRange, resize_labels_back
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


def load_rgb(path: Union[str, Path]) -> np.ndarray:
    """An image file as an (H, W, 3) uint8 RGB array."""
    with Image.open(path) as im:
        return np.array(im.convert("RGB"))


def dataset_palette(layout: str, label_convention: Optional[str] = None) -> np.ndarray:
    """The (256, 3) uint8 class colours of a ``data.layout``: Cityscapes', ADE20K's, else VOC's.

    ADE20K's depend on ``data.label_convention`` (class 0 is "other", black, in the reference one).
    """
    if layout == "cityscapes":
        return cityscapes_palette(256)
    if layout == "ade20k":
        return ade20k_palette(label_convention or "reference", 256)
    return voc_palette(256)


def background_class(layout: str, label_convention: Optional[str] = None) -> Optional[int]:
    """The class an overlay leaves as the photo: 0 where it means "nothing of interest" (VOC's
    background in the voc, voc_aug, synthetic and folders layouts; ADE20K's "other" in the
    reference convention); None for Cityscapes (class 0 is road) and ADE20K reduce_zero."""
    if layout == "cityscapes" or (layout == "ade20k" and label_convention == "reduce_zero"):
        return None
    return 0


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

FORMATS = ("png", "cityscapes", "voc", "ade20k")
"""The values of ``predict --format``: palette PNGs + overlays, or a benchmark server's submission."""

_CITYSCAPES_NAME = re.compile(r"^([A-Za-z-]+)_(\d+)_(\d+)(?:_|$)")


def _png_path(out_dir: Path, image: Path) -> Path:
    return out_dir / f"{image.stem}.png"


def _cityscapes_path(out_dir: Path, image: Path) -> Path:
    match = _CITYSCAPES_NAME.match(image.stem)
    if match is None:
        raise ValueError(
            f"'{image}': --format cityscapes needs Cityscapes file names "
            "<city>_<seq>_<frame>_leftImg8bit.png (the evaluator matches predictions by <city>_<seq>_<frame>)"
        )
    city, seq, frame = match.groups()
    # The reference's vis.py (also_save_raw_predictions) names the PNG after the input image.
    return out_dir / "results" / f"{city}_{seq}_{frame}_leftImg8bit.png"


def _voc_path(out_dir: Path, image: Path) -> Path:
    return out_dir / "results" / "VOC2012" / "Segmentation" / "comp6_test_cls" / f"{image.stem}.png"


def _ade20k_path(out_dir: Path, image: Path) -> Path:
    return out_dir / "results" / f"{image.stem}.png"


SUBMISSION_PATHS: dict[str, Callable[[Path, Path], Path]] = {
    "png": _png_path,
    "cityscapes": _cityscapes_path,
    "voc": _voc_path,
    "ade20k": _ade20k_path,
}
"""Where each format writes the label PNG of an input image: ``path(out_dir, image)``."""


def check_format(fmt: str, layout: str, num_classes: int, label_convention: Optional[str] = None) -> None:
    """Raise ValueError when a submission format does not fit the checkpoint's dataset."""
    if fmt not in FORMATS:
        raise ValueError(f"format: expected one of {', '.join(FORMATS)}, got {fmt!r}")
    if fmt == "cityscapes" and layout != "cityscapes":
        raise ValueError(
            f"--format cityscapes needs a Cityscapes model (data.layout=cityscapes, train IDs); "
            f"this one has data.layout={layout}"
        )
    if fmt == "ade20k" and layout != "ade20k":
        raise ValueError(
            f"--format ade20k needs an ADE20K model (data.layout=ade20k); this one has data.layout={layout}"
        )
    if fmt == "voc" and (layout in ("cityscapes", "ade20k") or num_classes != 21):
        raise ValueError(
            f"--format voc needs a model of VOC's 21 classes; this one has data.layout={layout}, "
            f"data.num_classes={num_classes}"
        )


def encode_labels(fmt: str, labels: np.ndarray, label_convention: Optional[str] = None) -> np.ndarray:
    """(H, W) class indices -> the (H, W) uint8 values a format's PNG holds.

    Cityscapes: train ID -> label ID; ADE20K: class + 1 under ``reduce_zero`` (150 classes), as is
    under ``reference`` (151 classes, 0 = "other"); png and voc: the indices.
    """
    if fmt == "cityscapes":
        return train_id_to_label_id_lut()[labels.astype(np.int64)]
    if fmt == "ade20k" and label_convention == "reduce_zero":
        return (labels + 1).astype(np.uint8)
    return labels.astype(np.uint8)


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
    """The file to upload: ``<out>/results.tar.gz`` (VOC) or ``<out>/results.zip`` (ADE20K); None
    for the other formats (the Cityscapes evaluator reads the folder)."""
    results = out_dir / "results"
    if fmt == "voc":
        archive = out_dir / "results.tar.gz"
        tmp = archive.with_name(archive.name + ".tmp")
        with tarfile.open(tmp, "w:gz") as tar:
            tar.add(results, arcname="results")
    elif fmt == "ade20k":
        archive = out_dir / "results.zip"
        tmp = archive.with_name(archive.name + ".tmp")
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
            for path in sorted(results.glob("*.png")):
                zf.write(path, arcname=path.name)
    else:
        return None
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


def predict_files(
    model: nn.Module,
    paths: Sequence[Union[str, Path]],
    out_dir: Union[str, Path],
    mean: Sequence[float],
    std: Sequence[float],
    eval_cfg: Optional[EvalConfig] = None,
    *,
    fmt: str = "png",
    batch_size: Optional[int] = None,
    device: Optional[Union[str, torch.device]] = None,
    amp_dtype: Optional[torch.dtype] = None,
    max_batch: Optional[int] = None,
    overlay: bool = True,
    alpha: float = 0.5,
    overlay_ext: str = ".jpg",
    progress: bool = True,
    palette: Optional[np.ndarray] = None,
    background: Optional[int] = None,
    label_convention: Optional[str] = None,
    class_names: Optional[Sequence[str]] = None,
    report: bool = False,
    prepare: bool = True,
    resize: Optional[ResizeToRange] = None,
) -> list[tuple[Path, Optional[Path]]]:
    """Segment image files as ``eval`` does; write a label PNG (and an overlay) for each.

    Consecutive images of the same size are batched (up to ``batch_size``); an image of another
    size starts a new batch, so any mix of sizes works.

    Args:
        model: Maps (B, 3, H, W) normalised images to (B, C, H, W) logits; set to eval mode.
        paths: Image files (see :func:`collect_inputs` for folders and globs).
        out_dir: Output folder, created if missing.
        mean, std: Per-channel normalisation of images scaled to [0, 1] (the config's
            ``data.mean`` / ``data.std``).
        eval_cfg: The evaluation protocol, a config's ``eval`` section (default ``EvalConfig()``):
            ``pad_to``, ``scales``, ``flip``, ``output_stride``, ``mode``, ``crop_size``,
            ``stride`` as :func:`deeplabv3plus.inference.segment_eval`, and ``batch_size``.
        fmt: "png", "cityscapes", "voc" or "ade20k" (module docstring); the model's classes must
            fit it (:func:`check_format`, which the command runs first).
        batch_size: Images per forward pass (times 2 with flip); None: ``eval_cfg.batch_size``.
        device: Where the model runs; default: its parameters' device.
        amp_dtype, max_batch: As :func:`deeplabv3plus.inference.predict_probs`.
        overlay: Write overlays (next to the PNGs for "png", in ``<out>/overlays/`` otherwise).
        alpha: Weight of the class colours in the overlay.
        overlay_ext: ".jpg" or ".png".
        progress: Show a tqdm progress bar.
        palette: (256, 3) uint8 colours of the PNGs and overlays (:func:`dataset_palette`); None: VOC's.
        background: The class overlays leave as the photo (:func:`background_class`); None: none.
        label_convention: ``data.label_convention`` (ADE20K's decides the submission values).
        class_names: Names for the per-image report.
        report: Print each image's classes by share of pixels, one line per image, then a summary.
        prepare: Run a :func:`~deeplabv3plus.models.fuse.prepare_for_inference` copy, as
            :func:`deeplabv3plus.evaluate.evaluate` does (the same numbers to the bit).
        resize: The config's resize to range (``data.min_resize_value``, ADE20K's protocol;
            :func:`~deeplabv3plus.data.transforms.resize_to_range_for`): each image is resized as
            ``eval`` resizes it, segmented, and its labels resized back to the image's own size
            (:func:`~deeplabv3plus.data.transforms.resize_labels_back`, as the reference's
            ``vis.py``), since a submission is scored at the original size. None: no resize.

    Returns:
        ``(label_png, overlay or None)`` paths, one pair per input in order.
    """
    if overlay_ext.lower() not in (".jpg", ".jpeg", ".png"):
        raise ValueError(f"overlay_ext must be .jpg or .png, got {overlay_ext!r}")
    if fmt not in SUBMISSION_PATHS:
        raise ValueError(f"format: expected one of {', '.join(FORMATS)}, got {fmt!r}")
    eval_cfg = EvalConfig() if eval_cfg is None else eval_cfg
    batch_size = eval_cfg.batch_size if batch_size is None else batch_size
    out_dir = Path(out_dir)
    paths = [Path(p) for p in paths]
    targets = [SUBMISSION_PATHS[fmt](out_dir, p) for p in paths]  # fails on a bad name before any work
    if fmt != "png":
        check_results_folder(out_dir / "results", targets)
    overlay_dir = out_dir if fmt == "png" else out_dir / "overlays"
    for folder in {t.parent for t in targets} | ({overlay_dir} if overlay else set()):
        folder.mkdir(parents=True, exist_ok=True)
    if device is None:
        param = next(model.parameters(), None)
        device = param.device if param is not None else torch.device("cpu")
    model.eval()
    if prepare and not getattr(model, "prepared_for_inference", False):
        model = prepare_for_inference(model)
    preprocess = Preprocess(mean, std)
    outputs: list[tuple[Path, Optional[Path]]] = []
    totals: dict[int, int] = {}
    num_pixels = 0

    def run(batch: list[tuple[int, np.ndarray]]) -> None:
        nonlocal num_pixels
        rgbs = np.stack([rgb for _, rgb in batch])  # (B, H, W, 3) uint8
        images = torch.from_numpy(rgbs).permute(0, 3, 1, 2)  # (B, 3, H, W), as the transforms take it
        if resize is not None:
            images = torch.stack([resize(tv_tensors.Image(im)).as_subclass(torch.Tensor) for im in images])
        labels = segment_eval(
            model, preprocess(images).to(device), eval_cfg, max_batch=max_batch, amp_dtype=amp_dtype
        )
        if resize is not None:
            labels = resize_labels_back(labels, batch[0][1].shape[:2])
        for (i, rgb), lab in zip(batch, labels.cpu().numpy()):
            label_path = targets[i]
            values = encode_labels(fmt, lab, label_convention)
            if fmt == "cityscapes" or fmt == "ade20k":
                Image.fromarray(values, mode="L").save(label_path)
            else:
                save_label_png(values, label_path, palette)
            overlay_path = None
            if overlay:
                overlay_path = overlay_dir / f"{paths[i].stem}_overlay{overlay_ext}"
                Image.fromarray(colour_overlay(rgb, lab, alpha, palette, background)).save(overlay_path)
            outputs.append((label_path, overlay_path))
            counts = np.bincount(lab.reshape(-1), minlength=1)
            for c in np.flatnonzero(counts):
                totals[int(c)] = totals.get(int(c), 0) + int(counts[c])
            num_pixels += lab.size
            if report:
                tqdm.write(f"{paths[i].name}: {format_shares(class_shares(lab, 1), class_names)}")

    batch: list[tuple[int, np.ndarray]] = []
    for i, path in enumerate(tqdm(paths, desc="predict", disable=not progress, dynamic_ncols=True)):
        rgb = load_rgb(path)
        if batch and (len(batch) >= batch_size or batch[0][1].shape != rgb.shape):
            run(batch)
            batch = []
        batch.append((i, rgb))
    if batch:
        run(batch)
    if report and num_pixels:
        overall = {c: n / num_pixels for c, n in sorted(totals.items(), key=lambda kv: (-kv[1], kv[0]))}
        print(
            f"{len(outputs)} images, {len(overall)} classes found, by share of all pixels: "
            f"{format_shares(overall, class_names)}"
        )
    return outputs
