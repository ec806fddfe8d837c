"""Segment image files: palette label PNGs and colour overlays.

For every input image ``<stem>.<ext>`` two files are written to the output folder:

* ``<stem>.png``: mode "P" PNG whose pixel values are the predicted class indices, with the
  colour palette of the checkpoint's dataset (:func:`dataset_palette`: VOC's, as its
  ``SegmentationClass``, Cityscapes' or ADE20K's; ``np.array(Image.open(p))`` gives the indices back);
* ``<stem>_overlay.jpg`` (or ``.png``): the palette colours alpha-blended over the image.

:func:`predict_files` is the core (any model honouring the logits contract);
:func:`deeplabv3plus.loading.load_model_from_checkpoint` builds the model a training checkpoint describes.
"""

from __future__ import annotations

import glob
from collections.abc import Sequence
from pathlib import Path
from typing import Optional, Union

import numpy as np
import torch
import torch.nn as nn
from PIL import Image
from tqdm import tqdm

from deeplabv3plus.data.ade20k_meta import ade20k_palette
from deeplabv3plus.data.cityscapes_meta import cityscapes_palette
from deeplabv3plus.data.transforms import Preprocess
from deeplabv3plus.data.voc_meta import save_label_png, voc_palette
from deeplabv3plus.inference import segment

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


def colour_overlay(
    rgb: np.ndarray, labels: np.ndarray, alpha: float = 0.5, palette: Optional[np.ndarray] = None
) -> np.ndarray:
    """Blend the colour of each pixel's class over the image.

    Args:
        rgb: (H, W, 3) uint8 image.
        labels: (H, W) integer class indices.
        alpha: Weight of the class colour, in [0, 1].
        palette: (256, 3) uint8 class colours; None: VOC's.

    Returns:
        (H, W, 3) uint8 ``(1 - alpha) * rgb + alpha * palette[labels]``.
    """
    palette = voc_palette(256) if palette is None else palette
    colours = palette[labels.astype(np.int64) % 256].astype(np.float32)
    blend = (1 - alpha) * rgb.astype(np.float32) + alpha * colours
    return np.clip(np.rint(blend), 0, 255).astype(np.uint8)


def predict_files(
    model: nn.Module,
    paths: Sequence[Union[str, Path]],
    out_dir: Union[str, Path],
    mean: Sequence[float],
    std: Sequence[float],
    *,
    batch_size: int = 1,
    device: Optional[Union[str, torch.device]] = None,
    scales: Sequence[float] = (1.0,),
    flip: bool = False,
    output_stride: Optional[int] = None,
    amp_dtype: Optional[torch.dtype] = None,
    alpha: float = 0.5,
    overlay_ext: str = ".jpg",
    progress: bool = True,
    palette: Optional[np.ndarray] = None,
    mode: str = "whole",
    crop_size: Optional[Union[int, Sequence[int]]] = None,
    stride: Optional[Union[int, Sequence[int]]] = None,
) -> list[tuple[Path, Path]]:
    """Segment image files; write a palette label PNG and a colour overlay for each.

    Consecutive images of the same size are batched (up to ``batch_size``); an image of another
    size starts a new batch, so any mix of sizes works.

    Args:
        model: Maps (B, 3, H, W) normalised images to (B, C, H, W) logits; set to eval mode.
        paths: Image files (see :func:`collect_inputs` for folders and globs).
        out_dir: Output folder, created if missing.
        mean, std: Per-channel normalisation of images scaled to [0, 1] (the config's
            ``data.mean`` / ``data.std``).
        batch_size: Images per forward pass (times 2 with ``flip``).
        device: Where the model runs; default: its parameters' device.
        scales, flip, output_stride, amp_dtype: As :func:`deeplabv3plus.inference.predict_probs`.
        alpha: Weight of the class colours in the overlay.
        overlay_ext: ".jpg" or ".png".
        progress: Show a tqdm progress bar.
        palette: (256, 3) uint8 colours of the PNGs and overlays (:func:`dataset_palette`); None: VOC's.
        mode, crop_size, stride: "whole" or "slide" inference, as :func:`deeplabv3plus.inference.predict_probs`.

    Returns:
        ``(label_png, overlay)`` paths, one pair per input in order.
    """
    if overlay_ext.lower() not in (".jpg", ".jpeg", ".png"):
        raise ValueError(f"overlay_ext must be .jpg or .png, got {overlay_ext!r}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if device is None:
        param = next(model.parameters(), None)
        device = param.device if param is not None else torch.device("cpu")
    model.eval()
    preprocess = Preprocess(mean, std)
    outputs: list[tuple[Path, Path]] = []

    def run(batch: list[tuple[Path, np.ndarray]]) -> None:
        x = preprocess(np.stack([rgb for _, rgb in batch])).to(device)
        labels = segment(
            model, x, scales=scales, flip=flip, output_stride=output_stride, amp_dtype=amp_dtype,
            mode=mode, crop_size=crop_size, stride=stride,
        )  # fmt: skip
        for (path, rgb), lab in zip(batch, labels.cpu().numpy()):
            label_path = out_dir / f"{path.stem}.png"
            overlay_path = out_dir / f"{path.stem}_overlay{overlay_ext}"
            save_label_png(lab, label_path, palette)
            Image.fromarray(colour_overlay(rgb, lab, alpha, palette)).save(overlay_path)
            outputs.append((label_path, overlay_path))

    batch: list[tuple[Path, np.ndarray]] = []
    for path in tqdm([Path(p) for p in paths], desc="predict", disable=not progress, dynamic_ncols=True):
        rgb = load_rgb(path)
        if batch and (len(batch) >= batch_size or batch[0][1].shape != rgb.shape):
            run(batch)
            batch = []
        batch.append((path, rgb))
    if batch:
        run(batch)
    return outputs
