"""Segment image files: palette label PNGs and colour overlays.

For every input image ``<stem>.<ext>`` two files are written to the output folder:

* ``<stem>.png``: mode "P" PNG whose pixel values are the predicted class indices, with the
  colour palette of the checkpoint's dataset (:func:`dataset_palette`: VOC's, as its
  ``SegmentationClass``, Cityscapes' or ADE20K's; ``np.array(Image.open(p))`` gives the indices back);
* ``<stem>_overlay.jpg`` (or ``.png``): the palette colours alpha-blended over the image.

:func:`predict_files` is the core (any model honouring the logits contract);
:func:`load_model_from_checkpoint` builds the model a training checkpoint describes.
"""

from __future__ import annotations

import dataclasses
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


def to_input(rgb: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """(H, W, 3) uint8 RGB -> (3, H, W) float32 normalised: ``(x / 255 - mean) / std``."""
    x = torch.from_numpy(np.array(rgb, dtype=np.uint8)).permute(2, 0, 1).float().div_(255)  # copy: writable
    return (x - torch.tensor(mean).view(3, 1, 1)) / torch.tensor(std).view(3, 1, 1)


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
    outputs: list[tuple[Path, Path]] = []

    def run(batch: list[tuple[Path, np.ndarray]]) -> None:
        x = torch.stack([to_input(rgb, mean, std) for _, rgb in batch]).to(device)
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


def load_model_from_checkpoint(
    checkpoint: Union[str, Path],
    config: Optional[Union[str, Path]] = None,
    overrides: Optional[Sequence[str]] = None,
    device: Union[str, torch.device] = "cpu",
    prepare: bool = True,
):
    """Build the model a training checkpoint describes and load its weights.

    The config is layered: the checkpoint's own config, then the values of the ``config`` file on
    top (only the keys it sets), then the dotted ``overrides``. For a bare state_dict (no stored
    config) the ``config`` file is the whole config.

    Args:
        checkpoint: A ``.pth`` file holding ``{"model": state_dict, "config": nested dict}`` as
            the training loop writes, or a bare state_dict (then ``config`` is required).
        config: A YAML config whose values go on top of the checkpoint's.
        overrides: Dotted ``a.b=c`` overrides applied last.
        device: Where the model goes.
        prepare: Return :func:`~deeplabv3plus.models.fuse.prepare_for_inference`'s copy (BN
            folded, channels_last, frozen: for inference only); False returns the trainable model.

    Returns:
        ``(model, cfg)``: the model in eval mode on ``device`` (prepared for inference unless
        ``prepare=False``) and its :class:`Config`.

    Raises:
        CheckpointError: unreadable, foreign or unsafe file, or weights that do not fit the model.
        ConfigError: a bad config file, stored config or override.
    """
    from deeplabv3plus import build_model  # lazily: the model package is heavy
    from deeplabv3plus.checkpoint import CheckpointError, check_state_dict_fits, read_torch_file
    from deeplabv3plus.config import Config, ConfigError, config_from_dict, layer_config

    state = read_torch_file(checkpoint)
    if not isinstance(state, dict):
        raise CheckpointError(f"checkpoint '{checkpoint}' holds a {type(state).__name__}, not a state_dict")
    has_wrapper = "model" in state and isinstance(state["model"], dict)
    stored = state.get("config") if has_wrapper else None
    if isinstance(stored, dict):
        try:
            base = config_from_dict(stored)
        except ConfigError as e:
            raise ConfigError(f"checkpoint '{checkpoint}', stored config: {e}") from None
    elif config is not None:
        base = Config()  # a bare state_dict: the file is the whole config
    else:
        raise ConfigError(
            f"checkpoint '{checkpoint}' holds no config: pass the training config with --config"
        )
    cfg = layer_config(base, config, overrides)
    model_kwargs = dataclasses.asdict(cfg.model)
    model_kwargs["pretrained_backbone"] = None  # the checkpoint holds every weight
    model = build_model(**model_kwargs)
    weights = state["model"] if has_wrapper else state
    # Checkpoints of a DDP or torch.compile'd model carry prefixes.
    for prefix in ("module.", "_orig_mod."):
        if weights and all(k.startswith(prefix) for k in weights):
            weights = {k[len(prefix) :]: v for k, v in weights.items()}
    if not all(isinstance(v, torch.Tensor) for v in weights.values()):
        raise CheckpointError(
            f"checkpoint '{checkpoint}' is not a state_dict (its values are not all tensors)"
        )
    m = cfg.model
    check_state_dict_fits(
        model,
        weights,
        checkpoint,
        f"{m.backbone}, {m.num_classes} classes, decoder {m.decoder}, SC {m.separable}",
    )
    model.load_state_dict(weights)
    model = model.to(device).eval()
    if prepare:
        from deeplabv3plus.models.fuse import prepare_for_inference

        # BN folded, channels_last, packed oneDNN weights: the fastest exact path (docs/benchmarks.md).
        model = prepare_for_inference(model)
    return model, cfg
