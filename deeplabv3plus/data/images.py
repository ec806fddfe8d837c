"""Photos read as a person expects: 8-bit RGB from any depth, within a size limit checked before decoding.

The one image reader of the package: datasets (:func:`deeplabv3plus.data.datasets.read_image`) and
``predict`` (:func:`deeplabv3plus.predict.load_rgb`) both read through :func:`read_rgb`. Labels are
not images and keep their own reader (a 16-bit label PNG is refused beyond 255, never rescaled).

* **16-bit images** (grey PNGs and TIFFs, PIL modes ``I;16*`` and ``I``) are scaled to 8 bits by
  ``value >> 8``, the high byte: what PIL itself does to 16-bit RGB and grey+alpha PNGs (its
  ``RGB;16B`` unpacker), so a 16-bit grey image and a 16-bit colour image of the same scene get the
  same 8-bit values, and what an image viewer shows. PIL's own ``convert("RGB")`` clips them
  instead (11308..51914 all become 255: a white image). A fixed rescale, not a per-image
  stretch: the same value reads the same in every image. 32-bit values outside ``0..65535`` and
  float images (mode ``F``) are refused: no scale to 8 bits is known for them.
* **The size** (width x height) is read from the header (``Image.open`` decodes nothing) and
  checked against ``data.max_image_pixels`` before any pixel is decoded; PIL's own
  decompression-bomb warning and error become the same one-line :class:`ImageTooLargeError`.
"""

from __future__ import annotations

import contextlib
import re
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Union

import numpy as np
from PIL import Image

from ..config import DataConfig
from .types import DatasetError

__all__ = ["DEFAULT_MAX_PIXELS", "ImageTooLargeError", "check_image_size", "read_rgb", "to_rgb8"]

DEFAULT_MAX_PIXELS: int = DataConfig.max_image_pixels
"""``data.max_image_pixels``'s default (50 megapixels; its docstring says why)."""

SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N")
"""PIL's modes of 16-bit grey images (``I;16`` for a 16-bit grey PNG)."""


class ImageTooLargeError(DatasetError):
    """An image over ``data.max_image_pixels``, found from its header before decoding."""


def _megapixels(pixels: int) -> str:
    return f"{pixels / 1e6:.1f} megapixels"


def _check_limit(max_pixels: int) -> None:
    if isinstance(max_pixels, bool) or not isinstance(max_pixels, int) or max_pixels <= 0:
        raise ValueError(f"data.max_image_pixels: expected a positive number of pixels, got {max_pixels!r}")


def _too_large(path: Union[str, Path], what: str, max_pixels: int, advice: str) -> ImageTooLargeError:
    return ImageTooLargeError(
        f"image '{path}' is {what}, over the limit of {_megapixels(max_pixels)} (data.max_image_pixels "
        f"= {max_pixels}, against running out of memory): set data.max_image_pixels higher to read it"
        f"{advice}"
    )


def check_image_size(
    path: Union[str, Path], size: tuple[int, int], max_pixels: int = DEFAULT_MAX_PIXELS, advice: str = ""
) -> None:
    """Raise :class:`ImageTooLargeError` when ``size`` (width, height) exceeds ``max_pixels``.

    Args:
        path: The image, for the message.
        size: Its (width, height), as PIL's ``Image.size``.
        max_pixels: ``data.max_image_pixels``.
        advice: Appended to the message (predict suggests sliding windows).
    """
    _check_limit(max_pixels)
    width, height = size
    if width * height > max_pixels:
        raise _too_large(path, f"{width}x{height} ({_megapixels(width * height)})", max_pixels, advice)


@contextlib.contextmanager
def _pil_limit_at_least(max_pixels: int) -> Iterator[None]:
    """PIL's decompression-bomb limit raised to ``max_pixels`` while the file is opened, when the
    setting is above it: ``data.max_image_pixels`` decides, not PIL's default (89 megapixels; it
    raises at twice that). PIL reads a module global, so this is not thread-safe; the readers run
    in the main thread or in DataLoader worker processes."""
    old = Image.MAX_IMAGE_PIXELS
    if old is None or old >= max_pixels:
        yield
        return
    Image.MAX_IMAGE_PIXELS = max_pixels
    try:
        yield
    finally:
        Image.MAX_IMAGE_PIXELS = old


def to_rgb8(im: Image.Image, path: Union[str, Path]) -> np.ndarray:
    """An opened PIL image as an (H, W, 3) uint8 RGB array; 16-bit grey as ``value >> 8`` (module
    docstring).

    Raises:
        DatasetError: naming the file, for a float image or 32-bit values outside ``0..65535``.
    """
    if im.mode in SIXTEEN_BIT_MODES or im.mode == "I":
        values = np.asarray(im)
        if im.mode == "I" and values.size and (values.min() < 0 or values.max() > 65535):
            raise DatasetError(
                f"image '{path}' holds 32-bit values {values.min()}..{values.max()} (mode I); expected "
                "an 8-bit or 16-bit image (values 0..65535)"
            )
        grey = (values.astype(np.uint32) >> 8).astype(np.uint8)
        return np.repeat(grey[:, :, None], 3, axis=2)
    if im.mode == "F":
        raise DatasetError(
            f"image '{path}' is a 32-bit float image (mode F); expected an 8-bit or 16-bit image"
        )
    return np.array(im.convert("RGB"))


def read_rgb(path: Union[str, Path], max_pixels: int = DEFAULT_MAX_PIXELS, advice: str = "") -> np.ndarray:
    """An image file as an (H, W, 3) uint8 RGB array, its size checked before it is decoded.

    Args:
        path: The image file (any format PIL reads).
        max_pixels: ``data.max_image_pixels``: the most pixels (width x height) read.
        advice: Appended to the too-large message (predict suggests sliding windows).

    Raises:
        ImageTooLargeError: over ``max_pixels`` (from the header, or PIL's decompression-bomb check).
        DatasetError: a float image, or 32-bit values beyond 16 bits.
        ValueError: ``max_pixels`` is not a positive integer.
        OSError: an unreadable file (PIL's error).
    """
    _check_limit(max_pixels)
    with warnings.catch_warnings():
        # Only over PIL's limit, itself raised to at least max_pixels: the check below refuses it.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            with _pil_limit_at_least(max_pixels):
                im = Image.open(path)
        except Image.DecompressionBombError as e:
            found = re.search(r"(\d+) pixels", str(e))
            what = f"{_megapixels(int(found.group(1)))}" if found else "too large for PIL"
            raise _too_large(path, what, max_pixels, advice) from None
    with im:
        check_image_size(path, im.size, max_pixels, advice)
        return to_rgb8(im, path)
