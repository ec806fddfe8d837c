"""DeepLabv3+ semantic segmentation (Chen et al., ECCV 2018) in PyTorch."""

from ._version import __version__ as __version__
from .builders import (
    build_model,
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
    "from_pretrained",
    "prepare_for_inference",
]
