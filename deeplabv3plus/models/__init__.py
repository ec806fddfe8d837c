"""DeepLabv3+ models: backbones, ASPP, decoder and the builders."""

from .aspp import ASPP, aspp_rates_for
from .backbone import Backbone
from .decoder import Decoder
from .deeplab import (
    MODEL_BUILDERS,
    DeepLabV3Plus,
    build_model,
    deeplabv3plus_resnet,
    deeplabv3plus_resnet18,
    deeplabv3plus_resnet34,
    deeplabv3plus_resnet50,
    deeplabv3plus_resnet101,
    deeplabv3plus_xception,
    deeplabv3plus_xception41,
    deeplabv3plus_xception65,
    deeplabv3plus_xception71,
)
from .fuse import prepare_for_inference
from .resnet import RESNET_DEPTHS, ResNet
from .xception import XCEPTION_BLOCKS, Xception

__all__ = [
    "ASPP",
    "MODEL_BUILDERS",
    "RESNET_DEPTHS",
    "XCEPTION_BLOCKS",
    "Backbone",
    "DeepLabV3Plus",
    "Decoder",
    "ResNet",
    "Xception",
    "aspp_rates_for",
    "build_model",
    "deeplabv3plus_resnet",
    "deeplabv3plus_resnet18",
    "deeplabv3plus_resnet34",
    "deeplabv3plus_resnet50",
    "deeplabv3plus_resnet101",
    "deeplabv3plus_xception",
    "deeplabv3plus_xception41",
    "deeplabv3plus_xception65",
    "deeplabv3plus_xception71",
    "prepare_for_inference",
]
