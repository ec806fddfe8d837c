"""The model library: shapes, output stride, weights layouts, gradients, modes, export paths."""

from __future__ import annotations

import io

import pytest
import torch
import torchvision
from torch import nn

from deeplabv3plus import build_model, deeplabv3plus_resnet101, deeplabv3plus_xception65
from deeplabv3plus._compat import TORCH_EXPORT_DYNAMIC_HW
from deeplabv3plus.models import ResNet, Xception, aspp_rates_for
from deeplabv3plus.models.layers import (
    SeparableConv2d,
    atrous_plan,
    depthwise_space_to_batch,
    space_to_batch_pays,
)

torch.backends.cudnn.deterministic = True

# The real ResNet-101 (both flavours) and Xception-65, with and without SC.
CONFIGS = {
    "resnet101": dict(backbone="resnet101"),
    "resnet101_beta": dict(backbone="resnet101", resnet_variant="beta"),
    "xception65": dict(backbone="xception65", separable=False),
    "xception65_sc": dict(backbone="xception65", separable=True),
}


@pytest.fixture(scope="module")
def models():
    torch.manual_seed(0)
    return {name: build_model(num_classes=5, **kwargs).eval() for name, kwargs in CONFIGS.items()}


@pytest.mark.parametrize("name", list(CONFIGS))
@pytest.mark.parametrize("output_stride", [8, 16, 32])
def test_logits_have_the_input_size_at_every_output_stride(models, name, output_stride):
    model = models[name]
    model.output_stride = output_stride
    with torch.no_grad():
        out = model(torch.randn(1, 3, 65, 65))
    model.output_stride = 16
    assert out.shape == (1, 5, 65, 65)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", ["resnet101_beta", "xception65_sc"])
@pytest.mark.parametrize("size", [(97, 131), (50, 37), (33, 33)])
def test_odd_input_sizes_give_logits_of_that_size(models, name, size):
    with torch.no_grad():
        assert models[name](torch.randn(1, 3, *size)).shape == (1, 5, *size)


@pytest.mark.parametrize("output_stride", [8, 16, 32])
def test_basic_block_resnet18_runs_at_every_output_stride(output_stride):
    model = build_model("resnet18", num_classes=3, head_channels=16, output_stride=output_stride).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 45, 61)).shape == (1, 3, 45, 61)
    assert model.backbone.feature_channels == {"low_level": 64, "out": 512}


@pytest.mark.parametrize("backbone", ["resnet101", "xception65"])
def test_deeplabv3_baseline_without_decoder_has_the_input_size(backbone):
    model = build_model(backbone, num_classes=3, decoder=False, output_stride=8).eval()
    assert model.decoder is None
    with torch.no_grad():
        assert model(torch.randn(2, 3, 49, 67)).shape == (2, 3, 49, 67)


@pytest.mark.parametrize("name", list(CONFIGS))
@pytest.mark.parametrize("output_stride,out_size", [(8, 65), (16, 33), (32, 17)])
def test_features_at_513_have_the_reference_sizes(name, output_stride, out_size):
    # Shapes only: built and run on the meta device, no memory or arithmetic.
    with torch.device("meta"):
        model = build_model(output_stride=output_stride, **CONFIGS[name]).eval()
        features = model.backbone(torch.empty(1, 3, 513, 513))
        logits = model(torch.empty(1, 3, 513, 513))
    assert features["low_level"].shape[1:] == (model.backbone.feature_channels["low_level"], 129, 129)
    assert features["out"].shape[1:] == (model.backbone.feature_channels["out"], out_size, out_size)
    assert model.backbone.feature_strides == {"low_level": 4, "out": output_stride}
    assert logits.shape == (1, 21, 513, 513)


def test_output_stride_8_doubles_aspp_rates():
    assert aspp_rates_for(16) == (6, 12, 18)
    assert aspp_rates_for(8) == (12, 24, 36)
    assert aspp_rates_for(32) == (3, 6, 9)
    model = deeplabv3plus_resnet101(output_stride=16)
    assert model.aspp.rates == (6, 12, 18)
    model.output_stride = 8
    assert model.aspp.rates == (12, 24, 36)


def test_custom_aspp_rates_scale_with_the_output_stride():
    model = deeplabv3plus_xception65(aspp_rates=[4, 8, 12], output_stride=8)
    assert model.aspp.rates == (8, 16, 24)


def test_atrous_plan_follows_the_reference_rule():
    # ResNet-101 standard: stem 4, stages stride in their first unit.
    strides = [1, 1, 1, 2, 1, 1, 1, 2, 1, 1, 2, 1]
    assert atrous_plan(strides, 32, 4) == [(s, 1) for s in strides]
    # OS 16: the last strided unit keeps rate 1, every later unit gets rate 2.
    assert atrous_plan(strides, 16, 4)[-3:] == [(1, 1), (1, 1), (1, 2)]
    os8 = atrous_plan(strides, 8, 4)
    assert os8[7:] == [(1, 1), (1, 2), (1, 2), (1, 2), (1, 4)]
    with pytest.raises(ValueError, match="output_stride"):
        atrous_plan(strides, 12, 4)


def test_changing_the_output_stride_equals_building_at_it():
    torch.manual_seed(0)
    trained_at_16 = build_model("resnet50", num_classes=4, output_stride=16).eval()
    built_at_8 = build_model("resnet50", num_classes=4, output_stride=8).eval()
    built_at_8.load_state_dict(trained_at_16.state_dict())
    x = torch.randn(1, 3, 65, 81)
    with torch.no_grad():
        at_16 = trained_at_16(x)
        trained_at_16.output_stride = 8
        at_8 = trained_at_16(x)
        expected_8 = built_at_8(x)
        trained_at_16.output_stride = 16
        back_at_16 = trained_at_16(x)
    torch.testing.assert_close(at_8, expected_8, rtol=0, atol=0)
    torch.testing.assert_close(back_at_16, at_16, rtol=0, atol=0)
    assert (at_8 - at_16).abs().max() > 1e-4


def test_invalid_arguments_raise_clear_errors():
    with pytest.raises(ValueError, match="output_stride"):
        build_model("resnet50", output_stride=12)
    with pytest.raises(ValueError, match="unknown backbone 'resnet26'"):
        build_model("resnet26")
    with pytest.raises(ValueError, match="do not apply"):
        build_model("xception65", resnet_variant="beta")
    with pytest.raises(ValueError, match="variant"):
        ResNet(50, variant="gamma")


# --- parameter layouts and counts ------------------------------------------------------------


def test_standard_resnet101_loads_torchvision_weights_strictly_and_matches_its_features():
    torch.manual_seed(0)
    reference = torchvision.models.resnet101(replace_stride_with_dilation=[False, True, True]).eval()
    ours = ResNet(101, "standard", output_stride=8).eval()
    state = {k: v for k, v in reference.state_dict().items() if not k.startswith("fc.")}
    ours.load_state_dict(state, strict=True)
    x = torch.randn(1, 3, 65, 65)
    with torch.no_grad():
        expected = nn.Sequential(*list(reference.children())[:-2])(x)
        features = ours(x)
    torch.testing.assert_close(features["out"], expected, rtol=1e-4, atol=1e-5)


def test_trunk_parameter_counts_are_the_known_values():
    # torchvision resnet101 minus its fc (44,549,160 - 2,049,000); timm xception65 minus its head.
    assert sum(p.numel() for p in ResNet(101).parameters()) == 42_500_160
    assert sum(p.numel() for p in ResNet(50).parameters()) == 23_508_032
    assert sum(p.numel() for p in ResNet(18).parameters()) == 11_176_512
    assert sum(p.numel() for p in Xception(65).parameters()) == 37_867_312


def test_xception65_matches_timm_at_output_stride_16():
    timm = pytest.importorskip("timm", reason="timm (extra 'timm') is not installed")
    torch.manual_seed(0)
    reference = timm.create_model("xception65", num_classes=0, output_stride=16).eval()
    ours = Xception(65, output_stride=16).eval()
    ours.load_state_dict(reference.state_dict(), strict=True)
    x = torch.randn(1, 3, 65, 65)
    with torch.no_grad():
        features = ours(x)
        # timm's stride-4 tap (feature_info[1], blocks.1.stack.act3 in timm 0.9 and 1.0) is after
        # the ReLU of our (pre-ReLU) low-level feature. A hook, as timm 0.9 has no forward_intermediates.
        taps = []
        tap = reference.get_submodule(reference.feature_info[1]["module"])
        handle = tap.register_forward_hook(lambda module, args, out: taps.append(out.clone()))
        expected = reference.forward_features(x)
        handle.remove()
        (expected_low,) = taps
    torch.testing.assert_close(features["out"], expected, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(torch.relu(features["low_level"]), expected_low, rtol=1e-4, atol=1e-5)
    assert (features["low_level"] < 0).any(), "the reference tap is before the ReLU"


def test_beta_low_level_feature_is_the_second_units_residual_before_the_add():
    torch.manual_seed(0)
    backbone = ResNet(50, "beta", output_stride=16).eval()
    captured = {}
    backbone.layer1[1].bn3.register_forward_hook(lambda m, i, o: captured.setdefault("bn3", o.clone()))
    with torch.no_grad():
        features = backbone(torch.randn(1, 3, 65, 65))
    torch.testing.assert_close(features["low_level"], captured["bn3"], rtol=0, atol=0)
    # Beta strides in the last unit of each stage: layer1's last unit has no projection.
    assert backbone.layer1[2].downsample is None and backbone.layer1[2].stride == 2
    assert backbone.layer1[0].stride == 1 and backbone.layer1[0].downsample is not None


def test_beta_projection_shortcut_adds_exactly_three_1x1_convs():
    subsample = ResNet(101, "beta", strided_shortcut="subsample")
    projection = ResNet(101, "beta", strided_shortcut="projection")
    extra = set(projection.state_dict()) - set(subsample.state_dict())
    convs = sorted(k for k in extra if k.endswith("downsample.0.weight"))
    assert convs == [f"layer{i}.{n - 1}.downsample.0.weight" for i, n in ((1, 3), (2, 4), (3, 23))]


# --- training behaviour ----------------------------------------------------------------------


@pytest.mark.parametrize("name", ["resnet101_beta", "xception65_sc"])
def test_gradients_reach_every_parameter(name):
    torch.manual_seed(0)
    model = build_model(num_classes=3, **CONFIGS[name]).train()
    logits = model(torch.randn(2, 3, 65, 65))
    nn.functional.cross_entropy(logits, torch.randint(0, 3, (2, 65, 65))).backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert missing == []


def test_eval_mode_is_deterministic_and_train_mode_updates_bn_statistics():
    torch.manual_seed(0)
    model = build_model("resnet50", num_classes=3, aspp_dropout=0.5)
    x = torch.randn(2, 3, 65, 65)
    model.eval()
    with torch.no_grad():
        first, second = model(x), model(x)
    torch.testing.assert_close(first, second, rtol=0, atol=0)
    running_mean = model.aspp.project.bn.running_mean.clone()
    model.train()
    with torch.no_grad():
        train_out = model(x)
    assert not torch.equal(model.aspp.project.bn.running_mean, running_mean)
    assert (train_out - first).abs().max() > 1e-4


def test_state_dict_round_trip_through_a_file_gives_identical_outputs(tmp_path):
    torch.manual_seed(0)
    model = build_model("xception65", num_classes=4, output_stride=16).eval()
    torch.save(model.state_dict(), tmp_path / "model.pth")
    torch.manual_seed(1)
    restored = build_model("xception65", num_classes=4, output_stride=16).eval()
    restored.load_state_dict(torch.load(tmp_path / "model.pth", weights_only=True))
    x = torch.randn(1, 3, 65, 65)
    with torch.no_grad():
        torch.testing.assert_close(restored(x), model(x), rtol=0, atol=0)


# --- compile, export, memory format ----------------------------------------------------------


def _small_model():
    torch.manual_seed(0)
    return build_model("resnet50", num_classes=3, output_stride=16).eval()


def test_channels_last_gives_the_same_logits():
    model = _small_model()
    x = torch.randn(1, 3, 65, 65)
    with torch.no_grad():
        expected = model(x)
        model = model.to(memory_format=torch.channels_last)
        out = model(x.to(memory_format=torch.channels_last))
    torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(
    ("rate", "size"), [(2, (17, 20)), (6, (33, 33)), (12, (33, 29)), (18, (7, 9)), (36, (65, 65))]
)
def test_space_to_batch_depthwise_conv_equals_the_dilated_conv_forward_and_backward(rate, size):
    # Sizes not divisible by the rate, and rates above the size (only the centre tap reads the image).
    torch.manual_seed(0)
    conv = nn.Conv2d(16, 16, 3, padding=rate, dilation=rate, groups=16).to(memory_format=torch.channels_last)
    x = torch.randn(2, 16, *size).contiguous(memory_format=torch.channels_last).requires_grad_()
    assert space_to_batch_pays(conv, x)
    grad = torch.randn(2, 16, *size)
    out = depthwise_space_to_batch(conv, x)
    got = torch.autograd.grad(out, (x, conv.weight, conv.bias), grad)
    expected = conv(x)
    want = torch.autograd.grad(expected, (x, conv.weight, conv.bias), grad)
    assert out.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, rtol=1e-4, atol=1e-4)


def test_separable_conv_takes_space_to_batch_only_where_it_pays():
    conv = SeparableConv2d(8, 8, dilation=4).to(memory_format=torch.channels_last)
    cl = torch.randn(2, 8, 9, 9).contiguous(memory_format=torch.channels_last)
    assert space_to_batch_pays(conv.conv_dw, cl)
    assert not space_to_batch_pays(conv.conv_dw, cl.contiguous())  # NCHW: the rearrangement costs more
    assert not space_to_batch_pays(SeparableConv2d(8, 8).conv_dw, cl)  # rate 1: the fast kernels already
    assert not space_to_batch_pays(SeparableConv2d(8, 8, stride=2, dilation=2).conv_dw, cl)
    conv.train()
    out = conv(cl)  # space-to-batch
    plain = conv(cl.contiguous())  # the dilated conv itself
    torch.testing.assert_close(out, plain, rtol=1e-4, atol=1e-4)


@pytest.mark.skipif(
    not TORCH_EXPORT_DYNAMIC_HW,
    reason=f"torch {torch.__version__}: torch.export cannot keep this model's height and width dynamic (torch>=2.13)",
)
def test_torch_export_with_dynamic_height_and_width_matches_eager():
    model = _small_model()
    height, width = torch.export.Dim("height", min=33, max=1025), torch.export.Dim("width", min=33, max=1025)
    exported = torch.export.export(
        model, (torch.randn(1, 3, 65, 65),), dynamic_shapes={"x": {2: height, 3: width}}
    )
    x = torch.randn(1, 3, 71, 89)
    with torch.no_grad():
        torch.testing.assert_close(exported.module()(x), model(x), rtol=1e-4, atol=1e-4)


@pytest.mark.slow
def test_torch_compile_matches_eager():
    model = _small_model()
    compiled = torch.compile(model)
    x = torch.randn(1, 3, 65, 65)
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), model(x), rtol=1e-3, atol=1e-3)


def test_saved_model_state_is_a_plain_tensor_dict():
    buffer = io.BytesIO()
    torch.save(_small_model().state_dict(), buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)
    assert all(isinstance(v, torch.Tensor) for v in state.values())
