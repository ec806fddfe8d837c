"""ImageNet backbones: torchvision and timm state_dicts through our loader, and its errors."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

from deeplabv3plus import build_model
from deeplabv3plus.models import ResNet
from deeplabv3plus.weights import PretrainedWeightsError, load_pretrained_backbone


def test_torchvision_resnet101_file_loads_and_gives_the_source_features_at_os32(tmp_path):
    torch.manual_seed(0)
    source = torchvision.models.resnet101().eval()  # random init: the real download is not possible here
    torch.save(source.state_dict(), tmp_path / "resnet101.pth")  # with its fc, as torchvision ships it
    model = build_model(
        "resnet101", output_stride=32, pretrained_backbone=str(tmp_path / "resnet101.pth")
    ).eval()
    x = torch.randn(1, 3, 97, 97)
    with torch.no_grad():
        expected = nn.Sequential(*list(source.children())[:-2])(x)
        stem = source.maxpool(source.relu(source.bn1(source.conv1(x))))
        expected_low = source.layer1(stem)
        features = model.backbone(x)
    torch.testing.assert_close(features["out"], expected, rtol=0, atol=1e-5)
    torch.testing.assert_close(features["low_level"], expected_low, rtol=0, atol=1e-5)


def test_timm_xception65_state_dict_loads_and_gives_the_source_features_at_os32(tmp_path):
    timm = pytest.importorskip("timm", reason="timm (extra 'timm') is not installed")
    torch.manual_seed(0)
    source = timm.create_model("xception65").eval()  # with its 1000-class head
    torch.save(source.state_dict(), tmp_path / "xception65.pth")
    model = build_model(
        "xception65", output_stride=32, pretrained_backbone=str(tmp_path / "xception65.pth")
    ).eval()
    x = torch.randn(1, 3, 97, 97)
    with torch.no_grad():
        expected = source.forward_features(x)
        features = model.backbone(x)
    torch.testing.assert_close(features["out"], expected, rtol=0, atol=1e-5)


def test_a_missing_or_unexpected_key_is_an_error_not_a_warning(tmp_path):
    state = torchvision.models.resnet50().state_dict()
    del state["layer2.0.conv1.weight"]
    state["extra.weight"] = torch.zeros(1)
    torch.save(state, tmp_path / "broken.pth")
    with pytest.raises(
        PretrainedWeightsError,
        match=r"1 missing keys, e.g. layer2.0.conv1.weight; 1 unexpected keys, e.g. extra.weight",
    ):
        load_pretrained_backbone(ResNet(50), str(tmp_path / "broken.pth"))


def test_weights_of_another_depth_are_rejected_with_shapes(tmp_path):
    torch.save(torchvision.models.resnet50().state_dict(), tmp_path / "r50.pth")
    with pytest.raises(PretrainedWeightsError, match="missing keys"):
        load_pretrained_backbone(ResNet(101), str(tmp_path / "r50.pth"))


def test_a_missing_file_names_the_path():
    with pytest.raises(PretrainedWeightsError, match="'nowhere/r101.pth' does not exist"):
        build_model("resnet101", pretrained_backbone="nowhere/r101.pth")


def test_torchvision_source_offline_says_which_file_to_put_where(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))

    def offline(self, *args, **kwargs):
        raise OSError("no network")

    monkeypatch.setattr(torchvision.models.WeightsEnum, "get_state_dict", offline)
    expected = str(tmp_path / "hub" / "checkpoints" / "resnet101-")
    with pytest.raises(PretrainedWeightsError, match="offline, put that file at") as info:
        load_pretrained_backbone(ResNet(101), "torchvision:IMAGENET1K_V2")
    assert expected in str(info.value)


def test_torchvision_weights_do_not_fit_the_beta_resnet():
    with pytest.raises(PretrainedWeightsError, match="standard"):
        load_pretrained_backbone(ResNet(101, "beta"), "torchvision:IMAGENET1K_V1")


def test_unknown_torchvision_tag_lists_the_valid_ones():
    with pytest.raises(PretrainedWeightsError, match="IMAGENET1K_V1, IMAGENET1K_V2"):
        load_pretrained_backbone(ResNet(50), "torchvision:IMAGENET1K_V9")
