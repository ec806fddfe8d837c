"""DeepLabv3+ semantic segmentation (Chen et al., ECCV 2018) in PyTorch.

The public names are loaded on first use (PEP 562 module ``__getattr__``): ``import deeplabv3plus``
imports no torch, so that ``deeplabv3plus --help`` answers at once; ``deeplabv3plus.build_model``
and ``from deeplabv3plus import deeplabv3plus_resnet101`` import the builders then.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._version import __version__ as __version__

if TYPE_CHECKING:  # what IDEs and type checkers see; at run time __getattr__ below loads these
    from .builders import (
        build_model,
        deeplabv3plus_mobilenetv2,
        deeplabv3plus_resnet18,
        deeplabv3plus_resnet34,
        deeplabv3plus_resnet50,
        deeplabv3plus_resnet101,
        deeplabv3plus_xception41,
        deeplabv3plus_xception65,
        deeplabv3plus_xception71,
    )
    from .loading import from_pretrained
    from .models import DeepLabV3Plus, prepare_for_inference

__all__ = [
    "DeepLabV3Plus",
    "build_model",
    "deeplabv3plus_resnet18",
    "deeplabv3plus_resnet34",
    "deeplabv3plus_resnet50",
    "deeplabv3plus_resnet101",
    "deeplabv3plus_xception41",
    "deeplabv3plus_xception65",
    "deeplabv3plus_xception71",
    "deeplabv3plus_mobilenetv2",
    "from_pretrained",
    "prepare_for_inference",
]

_HOMES = {
    name: "models"
    if name in ("DeepLabV3Plus", "prepare_for_inference")
    else "loading"
    if name == "from_pretrained"
    else "builders"
    for name in __all__
}
"""Public name -> the submodule that defines it."""


def __getattr__(name: str) -> Any:
    """``deeplabv3plus.<public name>``: import its submodule (and torch) on first use, then cache it."""
    if name not in _HOMES:
        raise AttributeError(f"module 'deeplabv3plus' has no attribute {name!r}")
    # here, not at the top: --help must not import torch
    value = getattr(importlib.import_module(f".{_HOMES[name]}", __name__), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
