"""The builders' BatchNorm momentum: PyTorch's by default, the reference's per part on request."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from deeplabv3plus import build_model, deeplabv3plus_resnet18, deeplabv3plus_xception65
from deeplabv3plus.builders import MODEL_BUILDERS, bn_momenta
from deeplabv3plus.config import load_config


def _momenta(model: nn.Module) -> tuple[set[float], set[float]]:
    """The momenta of the backbone's BatchNorms and of the other ones (ASPP, decoder)."""
    trunk, head = set(), set()
    for name, m in model.named_modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            (trunk if name.startswith("backbone.") else head).add(m.momentum)
    return trunk, head


@pytest.mark.parametrize(
    "backbone, preset, expected",
    [
        ("resnet18", "pytorch", ({0.1}, {0.1})),
        ("xception41", "pytorch", ({0.1}, {0.1})),
        # tensorflow/models research/deeplab: core/feature_extractor.py ResNet decay 0.95, Xception
        # 0.9997; model.py ASPP and decoder 0.9997 (PyTorch momentum = 1 - decay).
        ("resnet18", "reference", ({0.05}, {0.0003})),
        ("xception41", "reference", ({0.0003}, {0.0003})),
        ("resnet18", 0.01, ({0.01}, {0.01})),
    ],
)
def test_bn_momentum_preset_sets_every_batchnorm_of_each_part(backbone, preset, expected):
    with torch.device("meta"):
        model = build_model(backbone, num_classes=3, head_channels=16, bn_momentum=preset)
    assert _momenta(model) == expected


def test_builder_keywords_set_the_backbone_and_head_momentum_separately():
    model = deeplabv3plus_resnet18(
        num_classes=3, head_channels=16, backbone_bn_momentum=0.2, head_bn_momentum=0.3
    )
    assert _momenta(model) == ({0.2}, {0.3})
    assert _momenta(deeplabv3plus_resnet18(num_classes=3, head_channels=16)) == ({0.1}, {0.1})


def test_running_statistics_move_by_the_momentum_in_one_training_step():
    torch.manual_seed(0)
    model = deeplabv3plus_resnet18(
        num_classes=3, head_channels=16, backbone_bn_momentum=0.05, head_bn_momentum=0.0003
    )
    model.train()
    stem_bn, proj_bn = model.backbone.bn1, model.aspp.project.bn
    seen = {}
    # pre-hooks with a copy (the BN's input is changed in place later in the forward), returning None
    stem_bn.register_forward_pre_hook(lambda m, i: seen.update(stem=i[0].detach().clone()))
    proj_bn.register_forward_pre_hook(lambda m, i: seen.update(proj=i[0].detach().clone()))
    model(torch.randn(2, 3, 33, 33))
    for bn, key, momentum in ((stem_bn, "stem", 0.05), (proj_bn, "proj", 0.0003)):
        batch_mean = seen[key].mean(dim=(0, 2, 3))  # the running mean started at 0
        torch.testing.assert_close(bn.running_mean, momentum * batch_mean, rtol=1e-5, atol=1e-8)


def test_paper_configs_use_the_reference_momentum_and_small_configs_pytorchs():
    for name in ("voc_resnet101_os16", "voc_resnet101_beta_os16", "voc_xception65_os16", "voc_xception65_coco_os16",
                 "cityscapes_xception65_os16", "cityscapes_resnet101_os16", "ade20k_xception65_os16"):  # fmt: skip
        assert load_config(f"configs/{name}.yaml").model.bn_momentum == "reference", name
    small = ["quickstart", "own_data_example"] + [p.stem for p in Path("configs").glob("*_smoke.yaml")]
    assert len(small) >= 5
    for name in small:
        assert load_config(f"configs/{name}.yaml").model.bn_momentum == "pytorch", name


def test_an_unknown_preset_is_a_clear_error():
    with pytest.raises(ValueError, match="bn_momentum"):
        bn_momenta("resnet18", "fast")


@pytest.mark.parametrize("name", sorted(MODEL_BUILDERS))
def test_depth_builders_show_their_family_builders_keywords_to_help(name):
    import inspect

    from deeplabv3plus import catalog

    builder = MODEL_BUILDERS[name]
    family = catalog.load(catalog.BACKBONE_FAMILIES[catalog.BACKBONES[name].family].builder)
    shown = inspect.signature(builder).parameters
    expected = {k: p for k, p in inspect.signature(family).parameters.items() if k != "depth"}
    assert list(shown) == list(expected) and "kwargs" not in shown
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in shown.values())
    assert {k: p.default for k, p in shown.items()} == {k: p.default for k, p in expected.items()}
    with pytest.raises(TypeError, match="depth"):
        builder(depth=50)  # the depth is the builder's own


@pytest.mark.parametrize(
    "builder, shown",
    [
        (
            deeplabv3plus_resnet18,
            {"separable": "False", "head_channels": "256", "resnet_variant": "'standard'"},
        ),
        (
            deeplabv3plus_xception65,
            {"separable": "True", "low_level_channels": "48", "align_corners": "True"},
        ),
    ],
)
def test_help_shows_the_defaults_that_weights_may_override_as_their_values(builder, shown):
    import inspect
    import re

    text = str(inspect.signature(builder))
    for name, value in shown.items():
        assert re.search(rf"{name}: '?\w+'? = {re.escape(value)}[,)]", text), (name, text)
    assert inspect.signature(builder).parameters["head_channels"].default == 256  # compares as its value
