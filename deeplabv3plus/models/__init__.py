"""DeepLabv3+ as ``nn.Module``s: backbones, ASPP, decoder, the model, and its inference preparation.

Nothing here downloads, reads a file or knows a config: the builders that do are in
:mod:`deeplabv3plus.builders`.
"""

from .aspp import ASPP, aspp_rates_for
from .backbone import Backbone
from .decoder import Decoder
from .deeplab import DeepLabV3Plus
from .fuse import prepare_for_inference
from .mobilenetv2 import MOBILENETV2_ROWS, MobileNetV2
from .resnet import RESNET_DEPTHS, ResNet
from .xception import XCEPTION_BLOCKS, Xception

__all__ = [
    "ASPP",
    "MOBILENETV2_ROWS",
    "RESNET_DEPTHS",
    "XCEPTION_BLOCKS",
    "Backbone",
    "DeepLabV3Plus",
    "Decoder",
    "MobileNetV2",
    "ResNet",
    "Xception",
    "aspp_rates_for",
    "prepare_for_inference",
]
