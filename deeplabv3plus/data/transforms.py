"""Joint image/label transforms: the paper's training augmentation and the evaluation preprocessing.

Training (paper section 4; reference ``input_preprocess.py``): random scale from a discrete set (image bilinear, label nearest), pad to
the crop size (image with the mean pixel, label with the ignore index), random crop, horizontal flip
with p=0.5, then float conversion and mean/std normalisation. Built from ``torchvision.transforms.v2``
on ``tv_tensors.Image`` / ``tv_tensors.Mask`` so that every geometric step moves image and label
together. All randomness comes from torch's global RNG: ``torch.manual_seed`` plus the DataLoader's
``generator`` (which seeds each worker's torch RNG) fix the augmentation.

Every transform is called as ``transform(image, label)`` with image a (3, H, W) uint8 tensor and label
a (H, W) uint8 tensor of class indices, and returns ``(image, label)``: image (3, h, w) float32,
normalised; label (h, w) int64.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Optional

import numpy as np
import torch
from PIL import Image
from torchvision import tv_tensors
from torchvision.transforms import InterpolationMode, v2
from torchvision.transforms.v2 import functional as F

from .._compat import query_size, resize_mask_nearest_exact
from ..config import DataConfig


class RandomScale(v2.Transform):
    """Resize image and mask by one factor drawn uniformly from ``scales``.

    The image is resized bilinearly and the mask with nearest neighbour, so labels stay class indices.
    Antialiasing is off: the reference implementation resizes with plain bilinear interpolation, and
    at the smallest factor (0.5) antialiasing would blur the thin structures the decoder is meant
    to recover. Masks use NEAREST_EXACT (pixel-centre aligned like the bilinear image resize) so
    image and mask stay aligned at non-integer factors.

    Args:
        scales: The factors to draw from, e.g. (0.5, 0.75, ..., 2.0).
    """

    def __init__(self, scales: Sequence[float]) -> None:
        super().__init__()
        if not scales or any(s <= 0 for s in scales):
            raise ValueError(f"scales must be a non-empty list of positive factors, got {list(scales)}")
        self.scales = [float(s) for s in scales]

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        h, w = query_size(flat_inputs)
        scale = self.scales[int(torch.randint(len(self.scales), ()))]
        return dict(size=[max(1, round(h * scale)), max(1, round(w * scale))])

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        if isinstance(inpt, tv_tensors.Mask):
            return resize_mask_nearest_exact(inpt, params["size"])
        return F.resize(inpt, params["size"], interpolation=InterpolationMode.BILINEAR, antialias=False)

    # torchvision < 0.21 called these hooks by their private names.
    _get_params = make_params
    _transform = transform


def resize_to_range_size(
    height: int, width: int, min_size: int, max_size: Optional[int] = None, factor: Optional[int] = None
) -> tuple[int, int]:
    """The (height, width) the reference's ``resize_to_range`` gives an image of ``height x width``.

    tensorflow/models research/deeplab ``core/preprocess_utils.py`` ``resize_to_range``, step by
    step and in float32 as there: ``max_size`` is lowered to ``factor * k + 1``; the shorter side is
    scaled to ``min_size`` (each side floored), unless the longer side then exceeds ``max_size``:
    then the longer side is scaled to ``max_size``; finally each side is rounded *up* to
    ``factor * k + 1``. The aspect ratio is kept up to that rounding (``keep_aspect_ratio`` is
    never turned off in the reference).
    """
    f32 = np.float32
    top = None
    if max_size is not None:
        top = f32(max_size)
        if factor is not None:
            top = f32(top - (top - 1) % factor)
    h, w = f32(height), f32(width)
    large_scale = f32(min_size) / min(h, w)
    size = np.array([np.floor(h * large_scale), np.floor(w * large_scale)], dtype=np.int64)
    if top is not None and f32(size.max()) > top:
        small_scale = top / max(h, w)
        size = np.array([np.floor(h * small_scale), np.floor(w * small_scale)], dtype=np.int64)
    if factor is not None:
        size += (factor - (size - 1) % factor) % factor
    return int(size[0]), int(size[1])


def _align_corners_nearest(mask: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """TF's ``resize_nearest_neighbor(align_corners=True)``: output pixel i takes input pixel
    ``round(i * (in - 1) / (out - 1))`` along each axis (half away from zero, as C's ``roundf``)."""
    idx = []
    for n_in, n_out in zip(mask.shape[-2:], size):
        step = (n_in - 1) / (n_out - 1) if n_out > 1 else 0.0
        idx.append(
            torch.floor(torch.arange(n_out, dtype=torch.float64) * step + 0.5).long().clamp_(0, n_in - 1)
        )
    return mask[..., idx[0][:, None], idx[1][None, :]]


class ResizeToRange(v2.Transform):
    """Resize image and mask to :func:`resize_to_range_size` (the reference's ADE20K preprocessing).

    The image bilinearly, the mask by nearest neighbour, both with ``align_corners=True`` as the
    reference (``input_preprocess.py`` calls ``resize_to_range(..., align_corners=True)``). The
    reference keeps the resized image in float; here it is rounded back to uint8 (at most half a
    grey level) so that the rest of the pipeline stays the same.
    """

    def __init__(self, min_size: int, max_size: Optional[int] = None, factor: Optional[int] = None) -> None:
        super().__init__()
        self.min_size, self.max_size, self.factor = min_size, max_size, factor

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        h, w = query_size(flat_inputs)
        return dict(size=list(resize_to_range_size(h, w, self.min_size, self.max_size, self.factor)))

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        size = params["size"]
        if isinstance(inpt, tv_tensors.Mask):
            return tv_tensors.wrap(_align_corners_nearest(inpt.as_subclass(torch.Tensor), size), like=inpt)
        x = inpt.as_subclass(torch.Tensor)
        out = torch.nn.functional.interpolate(
            x[None].float(), size=size, mode="bilinear", align_corners=True
        )[0]
        if x.dtype == torch.uint8:
            out = out.round_().clamp_(0, 255).to(torch.uint8)
        return tv_tensors.wrap(out, like=inpt)

    _get_params = make_params
    _transform = transform


def resize_to_range_for(cfg: DataConfig) -> Optional[ResizeToRange]:
    """The reference's resize to range of a config, when ``data.min_resize_value`` is set (else None)."""
    if cfg.min_resize_value is None:
        return None
    return ResizeToRange(cfg.min_resize_value, cfg.max_resize_value, cfg.resize_factor)


def resize_labels_back(labels: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """(..., h, w) labels predicted on a resized image -> (..., H, W) at the image's own ``size``.

    Nearest neighbour with ``align_corners=True``, as the reference's ``vis.py`` undoes
    ``resize_to_range`` before it saves a prediction (``tf.image.resize_images(...,
    NEAREST_NEIGHBOR, align_corners=True)``).
    """
    return _align_corners_nearest(labels, size)


def _resize_steps(cfg: DataConfig) -> list[Any]:
    """The reference's resize to range, when ``data.min_resize_value`` is set (else nothing)."""
    resize = resize_to_range_for(cfg)
    return [] if resize is None else [resize]


class PadToSize(v2.Transform):
    """Pad at the bottom and right up to ``size`` x ``size`` (no-op for dimensions already as large).

    The reference pads with ``pad_to_bounding_box(image, 0, 0, ...)``, so a small image stays at
    the top-left of its crop; padding on every side (``RandomCrop(pad_if_needed=True)``) would
    add a random translation the paper's recipe does not have.

    Args:
        size: the crop size to reach.
        fill: pad value per tv_tensor type (image: the mean pixel; mask: the ignore index).
    """

    def __init__(self, size: int, fill: dict[type, Any]) -> None:
        super().__init__()
        self.size, self.fill = size, fill

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        h, w = query_size(flat_inputs)
        return dict(padding=[0, 0, max(0, self.size - w), max(0, self.size - h)])

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        if not any(params["padding"]):
            return inpt
        return F.pad(inpt, params["padding"], fill=self.fill[type(inpt)])

    _get_params = make_params
    _transform = transform


class _Pipeline:
    """Wraps raw tensors as tv_tensors, runs a v2 pipeline, returns (image float (3,h,w), label int64 (h,w))."""

    def __init__(self, steps: list[Any]) -> None:
        self.transform = v2.Compose(steps)

    def __call__(self, image: torch.Tensor, label: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        image, label = self.transform(tv_tensors.Image(image), tv_tensors.Mask(label[None]))
        return image.as_subclass(torch.Tensor), label.as_subclass(torch.Tensor)[0].long()

    def __repr__(self) -> str:
        return repr(self.transform)


def _normalise_steps(cfg: DataConfig) -> list[Any]:
    return [
        # Images uint8 -> float32 in [0, 1]; masks keep their values (ToDtype never scales masks).
        v2.ToDtype({tv_tensors.Image: torch.float32, tv_tensors.Mask: torch.int64}, scale=True),
        v2.Normalize(mean=list(cfg.mean), std=list(cfg.std)),
    ]


def mean_pixel(cfg: DataConfig) -> tuple[int, int, int]:
    """The mean colour as uint8 RGB: the image pad value (zero after normalisation)."""
    return tuple(int(round(255 * m)) for m in cfg.mean)


def train_transform(cfg: DataConfig) -> _Pipeline:
    """The training augmentation of the paper: scale, pad, crop ``crop_size`` x ``crop_size``, flip, normalise.

    Args:
        cfg: Uses ``scales``, ``crop_size``, ``hflip``, ``ignore_index``, ``mean``, ``std``.

    Returns:
        A callable ``(image (3,H,W) uint8, label (H,W) uint8) -> (image (3,c,c) float32, label (c,c) int64)``
        with ``c = crop_size``.
    """
    # The reference resizes to range first, then draws the scale (input_preprocess.py).
    steps: list[Any] = _resize_steps(cfg)
    if list(cfg.scales) != [1.0]:
        steps.append(RandomScale(cfg.scales))
    # Images smaller than the crop are padded (the image with the mean pixel, the label with the
    # ignore index so padding is never learned), then the crop offset is random.
    fill = {tv_tensors.Image: list(mean_pixel(cfg)), tv_tensors.Mask: cfg.ignore_index}
    steps += [PadToSize(cfg.crop_size, fill), v2.RandomCrop(cfg.crop_size)]
    if cfg.hflip:
        steps.append(v2.RandomHorizontalFlip(p=0.5))
    return _Pipeline(steps + _normalise_steps(cfg))


def eval_transform(cfg: DataConfig) -> _Pipeline:
    """Evaluation preprocessing: the full image, only converted to float and normalised.

    With ``data.min_resize_value`` set, image *and label* are first resized to range as in the
    reference's evaluation (``eval.py`` scores the preprocessed label), so the mIoU is computed at
    the resized resolution, as the reference's ADE20K figures.

    Returns:
        A callable ``(image (3,H,W) uint8, label (H,W) uint8) -> (image (3,h,w) float32, label (h,w) int64)``,
        ``(h, w) = (H, W)`` unless resized.
    """
    return _Pipeline(_resize_steps(cfg) + _normalise_steps(cfg))


class Preprocess:
    """Image -> normalised model input: ``(x / 255 - mean) / std`` per channel.

    The one image normaliser of the package (``predict``, the zoo entries' ``transforms()``; the
    dataset pipelines run the same arithmetic, to the bit, through ``v2.ToDtype`` and
    ``v2.Normalize``). Accepts a PIL image (any mode; converted to RGB), an (H, W, 3) or (N, H, W, 3) uint8 numpy array, or a uint8 tensor
    (3, H, W) / (N, 3, H, W) (a float tensor is taken to be in [0, 1] already). Returns a
    float32 tensor (1, 3, H, W) (or (N, 3, H, W)), any H and W: the models take any size. The
    reference additionally pads to 513x513 for its VOC evaluation; that is ``eval.pad_to``, not this.
    """

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)

    def __call__(self, image: Any) -> torch.Tensor:
        x = self._to_tensor(image)
        if x.dim() == 3:
            x = x.unsqueeze(0)
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(
                f"expected an RGB image (3, H, W) or batch (N, 3, H, W), got shape {tuple(x.shape)}"
            )
        mean = torch.tensor(self.mean, dtype=x.dtype).view(1, 3, 1, 1)
        std = torch.tensor(self.std, dtype=x.dtype).view(1, 3, 1, 1)
        return (x - mean) / std

    @staticmethod
    def _to_tensor(image: Any) -> torch.Tensor:
        if isinstance(image, torch.Tensor):
            if image.dtype == torch.uint8:
                # x * (1/255), not x / 255: v2.ToDtype's arithmetic, so that predict's inputs equal
                # the dataset pipeline's to the bit (and its predictions eval's).
                return image.float().mul(1.0 / 255)
            if image.is_floating_point():
                return image.float()
            raise ValueError(f"expected a uint8 or float image tensor, got {image.dtype}")
        if isinstance(image, np.ndarray):
            if image.dtype != np.uint8 or image.ndim not in (3, 4) or image.shape[-1] != 3:
                raise ValueError(
                    f"expected an (H, W, 3) or (N, H, W, 3) uint8 array, got {image.dtype} of shape {image.shape}"
                )
            x = torch.from_numpy(np.array(image))  # a copy: the input may be read-only
            return x.permute(*range(x.dim() - 3), -1, -3, -2).float().mul(1.0 / 255)
        if isinstance(image, Image.Image):
            return Preprocess._to_tensor(np.array(image.convert("RGB")))
        raise TypeError(
            f"expected a PIL image, an (H, W, 3) uint8 array or a tensor, got {type(image).__name__}"
        )

    def __repr__(self) -> str:
        return f"Preprocess(mean={self.mean}, std={self.std})"
