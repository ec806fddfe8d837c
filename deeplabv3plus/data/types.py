"""The types every dataset layout shares: a sample, a raw-label mapping and the one error type.

At the bottom of :mod:`deeplabv3plus.data`: the layout readers (:mod:`.cityscapes`, :mod:`.ade20k`,
the VOC/folders readers of :mod:`.datasets`) produce :class:`Sample` objects, and
:class:`~deeplabv3plus.data.datasets.SegmentationDataset` loads them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch

__all__ = ["DatasetError", "LabelMap", "Sample"]


class DatasetError(ValueError):
    """A dataset file or list is missing, unreadable or inconsistent; the message names the file.

    A plain one-argument ``ValueError`` subclass on purpose: the DataLoader re-raises worker
    exceptions by calling ``type(exc)(message)``, so the type and message survive workers.
    """


@dataclass(frozen=True, eq=False)
class LabelMap:
    """How the raw values of a layout's label PNGs become class indices (e.g. Cityscapes label IDs).

    The raw values are checked first, against the convention the files are written in, so an
    error reports the value as the file holds it; then they go through ``lut``. A plain
    picklable object: the mapping runs in DataLoader workers like the rest of :meth:`load`.

    Args:
        name: The raw convention, for messages (e.g. "Cityscapes label IDs").
        num_raw: Raw values ``0..num_raw-1`` are valid; any other value is an error.
        lut: (256,) uint8 table from raw value to class index (or the ignore index).
    """

    name: str
    num_raw: int
    lut: np.ndarray

    def apply(self, label: torch.Tensor, path: Path) -> torch.Tensor:
        """Check the raw (H, W) uint8 ``label`` read from ``path`` and map it: (H, W) uint8."""
        counts = torch.bincount(label.flatten().long(), minlength=256)
        bad = (torch.nonzero(counts[self.num_raw :]).flatten() + self.num_raw).tolist()
        if bad:
            raise DatasetError(
                f"label '{path}' has values {bad} outside the {self.name} 0..{self.num_raw - 1}"
            )
        return torch.from_numpy(self.lut)[label.long()]


@dataclass(frozen=True)
class Sample:
    """One image/label pair of a split; ``label_map`` (if any) turns the raw label values into classes;
    ``instances`` is the image's instance-ID map where the layout has one (Cityscapes'
    ``*_gtFine_instanceIds.png``, for the official iIoU).

    ``label_reader`` (if any) decodes ``label`` instead of reading it as an index PNG: a picklable
    ``path -> (H, W) uint8`` class mask from ``data/label_formats.py`` (``data.mask_format``).
    """

    name: str
    image: Path
    label: Path
    label_map: Optional[LabelMap] = None
    instances: Optional[Path] = None
    label_reader: Optional[Callable[[Path], np.ndarray]] = None
