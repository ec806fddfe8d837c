"""MobileNetV2, the catalogue's third backbone family: shapes, output stride, channels, wiring.

The reference values are tensorflow/models: research/slim/nets/mobilenet (``mobilenet_v2.V2_DEF``,
``mobilenet._make_divisible``, ``conv_blocks.expanded_conv``) and research/deeplab/core/
feature_extractor.py (``_mobilenet_v2``'s rounding, ``networks_to_feature_maps``).
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from deeplabv3plus import build_model, catalog, deeplabv3plus_mobilenetv2
from deeplabv3plus.builders import MODEL_BUILDERS, bn_momenta
from deeplabv3plus.config import ConfigError, load_config
from deeplabv3plus.models import MobileNetV2
from deeplabv3plus.models.mobilenetv2 import MOBILENETV2_BN_DECAY, make_divisible, mobilenetv2_channels

SMALL = dict(num_classes=5, head_channels=16, low_level_channels=8)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return deeplabv3plus_mobilenetv2(**SMALL).eval()


@pytest.mark.parametrize("output_stride", [8, 16, 32])
@pytest.mark.parametrize("size", [(65, 49), (33, 33), (64, 64)])
def test_logits_have_the_input_size_and_features_the_stride_at_every_output_stride(
    model, output_stride, size
):
    model.output_stride = output_stride
    x = torch.randn(1, 3, *size)
    with torch.no_grad():
        features = model.backbone(x)
        logits = model(x)
    assert logits.shape == (1, 5, *size)
    ceil = lambda n, s: -(-n // s)  # noqa: E731
    assert features["out"].shape == (1, 320, ceil(size[0], output_stride), ceil(size[1], output_stride))
    assert features["low_level"].shape == (1, 144, ceil(size[0], 4), ceil(size[1], 4))
    assert model.backbone.feature_strides == {"low_level": 4, "out": output_stride}
    model.output_stride = 16


def _geometry(backbone: nn.Module) -> dict[str, tuple]:
    return {
        n: (m.stride, m.dilation, m.padding) for n, m in backbone.named_modules() if isinstance(m, nn.Conv2d)
    }


def test_switching_output_stride_changes_only_strides_and_dilations_of_the_depthwise_convs():
    torch.manual_seed(0)
    built8 = MobileNetV2(output_stride=8)
    net = MobileNetV2(output_stride=16)
    state = {k: v.clone() for k, v in net.state_dict().items()}
    count = sum(p.numel() for p in net.parameters())
    net.output_stride = 8
    assert _geometry(net) == _geometry(built8)  # as if built at 8
    assert sum(p.numel() for p in net.parameters()) == count
    assert all(torch.equal(state[k], v) for k, v in net.state_dict().items())
    # The reference's rule (mobilenet_base): layer_8 and layer_15 stop striding, later rates 2 then 4.
    dilations = [unit.depthwise.dilation[0] for unit in net.units()]
    strides = [unit.depthwise.stride[0] for unit in net.units()]
    assert strides == [1, 2, 1, 2, 1, 1] + [1] * 11
    assert dilations == [1] * 6 + [1, 2, 2, 2, 2, 2, 2, 2, 4, 4, 4]
    pointwise = [m for m in net.modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (1, 1)]
    assert {(m.stride, m.dilation) for m in pointwise} == {((1, 1), (1, 1))}


@pytest.mark.parametrize(
    ("value", "divisor", "min_value", "expected"),
    [(12, 8, None, 16), (8.4, 8, None, 8), (11.2, 8, None, 16), (3.2, 8, 8, 8), (36, 8, None, 40),
     (100, 8, None, 104), (12, 1, 1, 12), (5.6, 1, 1, 6)],
)  # fmt: skip
def test_make_divisible_rounds_as_the_reference(value, divisor, min_value, expected):
    assert make_divisible(value, divisor, min_value) == expected


def test_channels_of_each_layer_match_the_reference_at_depth_multipliers_1_and_0_5():
    # V2_DEF's num_outputs of layer_1 ... layer_18 (1.0: divisible by 8 with min 8).
    assert mobilenetv2_channels(1.0) == [
        32,
        16,
        24,
        24,
        32,
        32,
        32,
        64,
        64,
        64,
        64,
        96,
        96,
        96,
        160,
        160,
        160,
        320,
    ]
    # DeepLab's _mobilenet_v2 at 0.5: divisible_by=1, min_depth=1 (the mobilenetv2_dm05 checkpoints:
    # expanded_conv_1/project has 12 channels, tensorflow/models issue #5507).
    assert mobilenetv2_channels(0.5) == [
        16,
        8,
        12,
        12,
        16,
        16,
        16,
        32,
        32,
        32,
        32,
        48,
        48,
        48,
        80,
        80,
        80,
        160,
    ]
    # slim's ImageNet mobilenet_v2_0.5_224 (divisible_by=8, min_depth=8): 16 there.
    assert mobilenetv2_channels(0.5, 8, 8) == [
        16,
        8,
        16,
        16,
        16,
        16,
        16,
        32,
        32,
        32,
        32,
        48,
        48,
        48,
        80,
        80,
        80,
        160,
    ]


def test_a_built_half_width_trunk_has_the_reference_expansions_and_no_first_expansion_conv():
    net = MobileNetV2(depth_multiplier=0.5)
    units = net.units()
    # layer_2 (t=1): depthwise + project only; the others expand to make_divisible(6 * inputs, 8).
    assert len(units[0].conv) == 3 and units[0].hidden_channels == 16
    assert [u.hidden_channels for u in units[1:4]] == [48, 72, 72]
    assert [u.out_channels for u in units[:3]] == [8, 12, 12]
    assert net.features[0][0].out_channels == 16  # the first conv is scaled too
    assert net.feature_channels == {"low_level": 72, "out": 160}


def test_low_level_feature_is_layer_4_depthwise_output_at_stride_4():
    net = MobileNetV2().eval()
    seen = {}
    unit = net.features[3]  # layer_4: features.i is the reference's layer_{i+1}
    unit.conv[1].register_forward_hook(lambda m, i, o: seen.update(dw=o.clone()))
    x = torch.randn(1, 3, 33, 33)
    with torch.no_grad():
        features = net(x)
    assert net.feature_channels["low_level"] == 144 == unit.hidden_channels
    assert net.low_level_stride == 4
    torch.testing.assert_close(features["low_level"], seen["dw"])
    assert features["low_level"].min() >= 0 and features["low_level"].max() <= 6  # after BN + ReLU6


def test_the_residual_follows_the_stride_a_unit_runs_at_as_the_reference():
    # At width 0.1 rounded by 8, layer_8 maps 8 -> 8 channels: a residual only when OS 8 unstrides it.
    net = MobileNetV2(0.1, output_stride=16, divisible_by=8, min_depth=8)
    layer_8 = net.features[7]
    assert (layer_8.in_channels, layer_8.out_channels, layer_8.use_residual) == (8, 8, False)
    net.output_stride = 8
    assert layer_8.use_residual


def test_batchnorm_epsilon_is_the_references():
    assert {m.eps for m in MobileNetV2().modules() if isinstance(m, nn.BatchNorm2d)} == {1e-3}


def test_the_builder_is_the_catalogues_and_build_model_passes_the_depth_multiplier():
    assert MODEL_BUILDERS["mobilenetv2"] is deeplabv3plus_mobilenetv2
    assert catalog.BACKBONES["mobilenetv2"].family == "mobilenetv2"
    model = build_model("mobilenetv2", depth_multiplier=0.5, **SMALL)
    assert model.backbone.feature_channels == {"low_level": 72, "out": 160}
    assert model.build_args["depth_multiplier"] == 0.5 and model.build_args["backbone"] == "mobilenetv2"
    with pytest.raises(ValueError, match="depth_multiplier"):
        build_model("resnet18", depth_multiplier=0.5, **SMALL)
    with pytest.raises(ValueError, match="resnet_variant"):
        build_model("mobilenetv2", resnet_variant="beta", **SMALL)


def test_the_config_key_depth_multiplier_builds_and_belongs_to_mobilenetv2_only():
    cfg = load_config(overrides=["model.backbone=mobilenetv2", "model.depth_multiplier=0.5"])
    assert cfg.model.depth_multiplier == 0.5
    with pytest.raises(ConfigError, match="model.depth_multiplier"):
        load_config(overrides=["model.backbone=resnet18", "model.depth_multiplier=0.5"])


def test_reference_bn_momenta_are_the_familys():
    family = catalog.BACKBONE_FAMILIES["mobilenetv2"]
    # mobilenet.training_scope bn_decay 0.997 for the trunk; model.py 0.9997 for ASPP and decoder.
    assert bn_momenta("mobilenetv2", "reference") == family.reference_bn_momentum == (0.003, 0.0003)
    assert family.reference_bn_momentum[0] == pytest.approx(1 - MOBILENETV2_BN_DECAY)
    model = build_model("mobilenetv2", bn_momentum="reference", **SMALL)
    trunk = {m.momentum for m in model.backbone.modules() if isinstance(m, nn.BatchNorm2d)}
    head = {
        m.momentum for n, m in model.named_modules() if isinstance(m, nn.BatchNorm2d) and "backbone" not in n
    }
    assert (trunk, head) == ({0.003}, {0.0003})


def test_the_mobile_aspp_of_the_reference_is_image_pooling_and_1x1_only():
    torch.manual_seed(0)
    model = deeplabv3plus_mobilenetv2(decoder=False, aspp_rates=[], **SMALL).eval()
    assert len(model.aspp.atrous) == 0 and model.aspp.rates == ()
    assert model.aspp.project.conv.in_channels == 2 * 16  # image pooling + 1x1, concatenated
    model.output_stride = 8  # no rates to rescale
    assert model.aspp.rates == ()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 65, 49)).shape == (1, 5, 65, 49)
