"""torch.hub entry points: the DeepLabv3+ builders, with the reference model zoo through ``weights=``.

    model = torch.hub.load("<owner>/deeplabv3plus", "deeplabv3plus_xception65",
                           weights="xception65_coco_voc_trainaug")  # eval mode, 21 VOC classes
    model = torch.hub.load("/path/to/checkout", "deeplabv3plus_resnet101", source="local", num_classes=5)

Every keyword argument is the builder's (docs: docs/pretrained.md).
"""

dependencies = ["torch", "torchvision", "numpy", "PIL", "yaml", "tqdm"]

from deeplabv3plus.builders import (  # noqa: E402  (torch.hub reads `dependencies` first)
    deeplabv3plus_mobilenetv2,
    deeplabv3plus_resnet18,
    deeplabv3plus_resnet34,
    deeplabv3plus_resnet50,
    deeplabv3plus_resnet101,
    deeplabv3plus_xception41,
    deeplabv3plus_xception65,
    deeplabv3plus_xception71,
)

__all__ = [
    "deeplabv3plus_resnet18",
    "deeplabv3plus_resnet34",
    "deeplabv3plus_resnet50",
    "deeplabv3plus_resnet101",
    "deeplabv3plus_xception41",
    "deeplabv3plus_xception65",
    "deeplabv3plus_xception71",
    "deeplabv3plus_mobilenetv2",
]
