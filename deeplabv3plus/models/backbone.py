"""What every backbone hands to ASPP and the decoder: named features with channels and strides."""

from __future__ import annotations

import torch
from torch import nn

from .layers import atrous_plan


class Backbone(nn.Module):
    """Base of the atrous backbones.

    A subclass builds its stem and a flat list of residual units (``self.units()``), each
    with a nominal ``stride`` and a ``set_stride_dilation(stride, dilation)`` method, and
    sets ``stem_stride``, ``feature_channels`` and ``low_level_stride``. The output stride is
    then a property that can change on a built model (train at 16, evaluate at 8) without
    new weights.

    ``forward(x)`` takes (N, 3, H, W) and returns ``{"low_level": (N, C_low, ~H/4, ~W/4),
    "out": (N, C_out, ~H/OS, ~W/OS)}``; sizes round up on odd inputs (513 -> 129 -> 33 at OS 16).
    """

    stem_stride: int
    low_level_stride: int = 4
    feature_channels: dict[str, int]

    def units(self) -> list[nn.Module]:
        raise NotImplementedError

    @property
    def feature_strides(self) -> dict[str, int]:
        return {"low_level": self.low_level_stride, "out": self._output_stride}

    @property
    def output_stride(self) -> int:
        return self._output_stride

    @output_stride.setter
    def output_stride(self, value: int) -> None:
        units = self.units()
        plan = atrous_plan([u.stride for u in units], value, self.stem_stride)
        for unit, (stride, dilation) in zip(units, plan):
            unit.set_stride_dilation(stride, dilation)
        self._output_stride = value

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        raise NotImplementedError
