"""What the recorded logits of test_regression.py guard, stated as behaviours.

Each test checks one wiring decision of the reference DeepLabv3+ (tensorflow/models research/deeplab
``model.py``) on a small random model, so that a bug there fails a test that names it, not only
the logits fixture: the bilinear resizes with align_corners=True, the order of the concatenations,
the ReLU of the decoder's low-level projection, the image-pooling branch (a mean, broadcast), the
dropout after the ASPP projection, the ReLU between depthwise and pointwise convs, Xception's
low-level tap and residuals, the classifier's initialisation.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from deeplabv3plus import build_model
from deeplabv3plus.models.layers import SeparableConv2d

C = 16  # head_channels


def _randomise_bn(model: nn.Module, seed: int = 0) -> nn.Module:
    """Non-trivial BN statistics and affine parameters (an identity BN would hide wiring mistakes)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.2, generator=g)
                m.running_var.uniform_(0.5, 2.0, generator=g)
                m.weight.uniform_(0.5, 1.5, generator=g)
                m.bias.normal_(0, 0.2, generator=g)
    return model.eval()


def _capture(module: nn.Module, store: dict, key: str, *, inputs: bool = False) -> None:
    """Keep a copy of ``module``'s first input (pre-hook) or its output."""
    if inputs:
        module.register_forward_pre_hook(lambda m, i: store.__setitem__(key, i[0].detach().clone()))
    else:
        module.register_forward_hook(lambda m, i, o: store.__setitem__(key, o.detach().clone()))


@pytest.fixture(scope="module")
def traced():
    """A ResNet-18 DeepLabv3+ on a 33x45 random image, with the tensors between its parts."""
    torch.manual_seed(0)
    model = _randomise_bn(build_model("resnet18", num_classes=3, head_channels=C))
    seen: dict[str, torch.Tensor] = {}
    _capture(model.backbone, seen, "image", inputs=True)
    _capture(model.aspp, seen, "aspp_in", inputs=True)
    _capture(model.aspp.project, seen, "project_in", inputs=True)
    _capture(model.aspp, seen, "aspp_out")
    _capture(model.decoder.low_level, seen, "low_level_in", inputs=True)
    _capture(model.decoder.fuse, seen, "fuse_in", inputs=True)
    _capture(model.classifier, seen, "classifier_out")
    x = torch.randn(1, 3, 33, 45, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        seen["logits"] = model(x)
    return model, seen


def test_logits_are_upsampled_to_the_image_bilinearly_with_aligned_corners(traced):
    _, seen = traced
    small = seen["classifier_out"]
    expected = F.interpolate(small, size=(33, 45), mode="bilinear", align_corners=True)
    torch.testing.assert_close(seen["logits"], expected, rtol=1e-5, atol=1e-6)
    other = F.interpolate(small, size=(33, 45), mode="bilinear", align_corners=False)
    assert (other - expected).abs().max() > 1e-3  # the two conventions differ on this input


def test_decoder_concatenates_the_upsampled_encoder_output_first_then_the_relu_projection(traced):
    model, seen = traced
    fuse_in = seen["fuse_in"]
    assert fuse_in.shape[1] == C + 48
    low = seen["low_level_in"]
    encoder = F.interpolate(seen["aspp_out"], size=low.shape[2:], mode="bilinear", align_corners=True)
    torch.testing.assert_close(fuse_in[:, :C], encoder, rtol=1e-5, atol=1e-6)
    with torch.no_grad():
        proj = model.decoder.low_level
        expected = torch.relu(proj.bn(proj.conv(low)))  # model.py: feature_projection0 is conv+BN+ReLU
    torch.testing.assert_close(fuse_in[:, C:], expected, rtol=1e-5, atol=1e-6)
    assert (fuse_in[:, C:] == 0).any() and (fuse_in[:, C:] > 0).any()


def test_aspp_concatenates_pooling_1x1_and_atrous_branches_in_the_reference_order(traced):
    model, seen = traced
    x, cat = seen["aspp_in"], seen["project_in"]
    aspp = model.aspp
    with torch.no_grad():
        # image pooling: the spatial mean, 1x1 conv+BN+ReLU, then "upsampled" (a broadcast)
        pooled = aspp.pooling[1](x.mean(dim=(2, 3), keepdim=True)).expand(-1, -1, *x.shape[2:])
        parts = [pooled, aspp.conv1x1(x), *(branch(x) for branch in aspp.atrous)]
    assert cat.shape[1] == C * len(parts)
    for i, part in enumerate(parts):
        torch.testing.assert_close(cat[:, i * C : (i + 1) * C], part, rtol=1e-5, atol=1e-6, msg=f"part {i}")


def test_aspp_dropout_acts_after_the_projection_not_before():
    torch.manual_seed(0)
    model = _randomise_bn(build_model("resnet18", num_classes=3, head_channels=C, aspp_dropout=0.5))
    x = torch.randn(1, 512, 5, 6)
    seen: dict[str, torch.Tensor] = {}
    _capture(model.aspp.project, seen, "project_in", inputs=True)
    _capture(model.aspp.project, seen, "project_out")
    with torch.no_grad():
        model.aspp(x)
        clean_in = seen["project_in"]
        model.aspp.dropout.train()  # dropout active, BN still on running statistics
        out = model.aspp(x)
    torch.testing.assert_close(seen["project_in"], clean_in, rtol=0, atol=0)  # nothing dropped before
    kept = out != 0
    assert 0.2 < kept.float().mean() < 0.8
    torch.testing.assert_close(out[kept], 2 * seen["project_out"][kept], rtol=1e-6, atol=1e-6)


def test_separable_conv_is_depthwise_bn_relu_then_pointwise_bn_relu():
    torch.manual_seed(0)
    conv = _randomise_bn(SeparableConv2d(8, 12, dilation=2))
    x = torch.randn(2, 8, 9, 11)
    with torch.no_grad():
        h = F.conv2d(x, conv.conv_dw.weight, padding=2, dilation=2, groups=8)
        h = torch.relu(F.batch_norm(h, conv.bn_dw.running_mean, conv.bn_dw.running_var, conv.bn_dw.weight,
                                    conv.bn_dw.bias, eps=conv.bn_dw.eps))  # fmt: skip
        h = F.conv2d(h, conv.conv_pw.weight)
        expected = torch.relu(F.batch_norm(h, conv.bn_pw.running_mean, conv.bn_pw.running_var, conv.bn_pw.weight,
                                           conv.bn_pw.bias, eps=conv.bn_pw.eps))  # fmt: skip
        torch.testing.assert_close(conv(x), expected, rtol=1e-5, atol=1e-5)


@pytest.fixture(scope="module")
def xception41():
    torch.manual_seed(0)
    return _randomise_bn(build_model("xception41", num_classes=3, head_channels=C).backbone)


def test_xception_low_level_feature_is_entry_block2_second_separable_conv_before_relu(xception41):
    # reference decoder end point: entry_flow/block2/unit_1/xception_module/separable_conv2_pointwise
    seen: dict[str, torch.Tensor] = {}
    _capture(xception41.blocks[1].stack.conv2, seen, "conv2")
    with torch.no_grad():
        low = xception41(torch.randn(1, 3, 33, 33))["low_level"]
    torch.testing.assert_close(low, seen["conv2"], rtol=0, atol=0)
    assert (low < 0).any()  # pre-ReLU


def test_xception_middle_flow_units_add_their_input(xception41):
    unit = xception41.blocks[3]  # the first middle-flow unit: identity shortcut
    x = torch.randn(1, unit.out_channels, 5, 5)
    with torch.no_grad():
        torch.testing.assert_close(unit(x), unit.stack(x.clone()) + x, rtol=1e-5, atol=1e-6)


def test_classifier_starts_from_normal_0_01_weights_and_zero_bias():
    # model.py: the logits conv is initialised with a truncated normal of stddev 0.01, biases 0
    torch.manual_seed(0)
    model = build_model("resnet18", num_classes=64, head_channels=256)
    w = model.classifier.weight
    assert 0.009 < w.std().item() < 0.011 and abs(w.mean().item()) < 0.001
    assert torch.count_nonzero(model.classifier.bias) == 0
