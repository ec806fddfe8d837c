"""Class weights from label statistics (median-frequency balancing, Eigen & Fergus, ICCV 2015).

Here, in the data layer (layer 2, numpy only), rather than in ``losses.py`` (layer 3): the weights
are a statistic of the labels, computed by ``data/check.py`` (which may not import upwards) and
used by the losses; ``losses.py`` re-exports :func:`class_weights_from_counts` so both layers see
one formula.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Union

import numpy as np

DEFAULT_CAP = (0.1, 10.0)
"""The default clip range of the weights: no class counts more than 10x (or less than 0.1x) the
median class. Eigen & Fergus do not cap; without a cap a class seen on a few pixels of one image
gets a weight in the thousands and its pixels dominate every batch that holds them."""

WEIGHT_METHODS = ("median_frequency",)

Counts = Union[Sequence[float], np.ndarray]


def class_weights_from_counts(
    pixel_counts: Counts,
    image_pixel_counts: Counts,
    method: str = "median_frequency",
    cap: tuple[float, float] = DEFAULT_CAP,
) -> list[float]:
    """Per-class loss weights from pixel counts: median-frequency balancing with the extremes capped.

    Median-frequency balancing (Eigen & Fergus, "Predicting Depth, Surface Normals and Semantic
    Labels with a Common Multi-Scale Convolutional Architecture", ICCV 2015, section 4.2):
    ``f_c = pixel_counts[c] / image_pixel_counts[c]`` is the frequency of class c in the images
    where it appears, and ``w_c = median(f) / f_c``; the median runs over the classes present
    (numpy's median: the mean of the two middle values for an even count). The weights are then
    clipped to ``[cap[0], cap[1]]``.

    A class absent from every image gets ``cap[1]``, the weight of the rarest class allowed: it
    changes no loss on this data (no pixel has that class), and if the class appears in later data
    it is treated as the rarest one rather than silently as common.

    Args:
        pixel_counts: (C,) pixels of each class over the dataset (ignore pixels excluded).
        image_pixel_counts: (C,) total pixels of the images in which the class is present (each
            image counted once per class it contains); ``>= pixel_counts``.
        method: ``"median_frequency"`` (the only one so far).
        cap: ``(min_weight, max_weight)``, ``0 <= min_weight <= max_weight``.

    Returns:
        C weights (Python floats), in class order.

    Raises:
        ValueError: a negative count, mismatched lengths, a class with pixels but no image pixels,
            an unknown method or a bad cap (one line naming the argument).
    """
    if method not in WEIGHT_METHODS:
        raise ValueError(f"method: expected one of {list(WEIGHT_METHODS)}, got {method!r}")
    lo, hi = _check_cap(cap)
    pixels = np.asarray(pixel_counts, dtype=np.float64)
    images = np.asarray(image_pixel_counts, dtype=np.float64)
    if pixels.ndim != 1 or pixels.size == 0:
        raise ValueError(
            f"pixel_counts: expected a non-empty list of per-class counts, got shape {pixels.shape}"
        )
    if images.shape != pixels.shape:
        raise ValueError(
            f"image_pixel_counts: expected {pixels.size} counts (one per class, like pixel_counts), "
            f"got shape {images.shape}"
        )
    for name, values in (("pixel_counts", pixels), ("image_pixel_counts", images)):
        if not np.all(np.isfinite(values)) or np.any(values < 0):
            raise ValueError(f"{name}: expected finite non-negative counts, got {values.tolist()}")
    present = pixels > 0
    if np.any(present & (images < pixels)):
        bad = np.flatnonzero(present & (images < pixels)).tolist()
        raise ValueError(
            f"image_pixel_counts: classes {bad} have fewer image pixels than class pixels "
            "(expected the total pixels of the images where each class is present)"
        )
    weights = np.full(pixels.shape, hi)
    if present.any():
        freq = pixels[present] / images[present]
        weights[present] = np.clip(np.median(freq) / freq, lo, hi)
    return [float(w) for w in weights]


def _check_cap(cap: tuple[float, float]) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in cap)
    except (TypeError, ValueError):
        raise ValueError(f"cap: expected (min_weight, max_weight), got {cap!r}") from None
    if not (0 <= lo <= hi) or not np.isfinite(hi):
        raise ValueError(f"cap: expected 0 <= min_weight <= max_weight (finite), got {cap!r}")
    return lo, hi
