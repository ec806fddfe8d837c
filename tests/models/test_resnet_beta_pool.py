"""The beta ResNet's stem max-pool pads as TensorFlow's 'SAME' (0 before, 1 after on even sides)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from deeplabv3plus.models import ResNet
from deeplabv3plus.models.resnet import SamePadMaxPool2d


def tf_same_max_pool(x: torch.Tensor) -> torch.Tensor:
    """TF's max_pool(ksize 3, stride 2, 'SAME') from its definition: out = ceil(n / 2) and
    pad_total = max((out - 1) * 2 + 3 - n, 0), the smaller half before."""
    pads = []
    for n in (x.shape[-1], x.shape[-2]):  # F.pad order: last dim first
        total = max((math.ceil(n / 2) - 1) * 2 + 3 - n, 0)
        pads += [total // 2, total - total // 2]
    return F.max_pool2d(F.pad(x, pads, value=float("-inf")), 3, 2)


@pytest.mark.parametrize("size", [(8, 8), (9, 9), (8, 9), (11, 6), (2, 3)])
def test_same_pad_pool_matches_tensorflow_on_even_and_odd_sides(size):
    x = torch.randn(2, 3, *size)
    out = SamePadMaxPool2d()(x)
    assert out.shape[-2:] == (math.ceil(size[0] / 2), math.ceil(size[1] / 2))
    torch.testing.assert_close(out, tf_same_max_pool(x), rtol=0, atol=0)


def test_torchvision_pooling_differs_on_even_sides_and_agrees_on_odd():
    torch_pool = nn.MaxPool2d(3, 2, padding=1)
    even, odd = torch.randn(1, 4, 16, 16), torch.randn(1, 4, 17, 17)
    assert not torch.equal(torch_pool(even), tf_same_max_pool(even))
    assert torch.equal(torch_pool(odd), tf_same_max_pool(odd))


def test_beta_pools_the_reference_way_and_standard_keeps_torchvision():
    assert isinstance(ResNet(50, "beta").maxpool, SamePadMaxPool2d)
    standard = ResNet(18, "standard").maxpool
    assert isinstance(standard, nn.MaxPool2d) and standard.padding == 1


def test_beta_stem_output_is_the_tensorflow_pooled_stem():
    torch.manual_seed(0)
    net = ResNet(50, "beta").eval()
    x = torch.randn(1, 3, 64, 64)  # stem conv -> 32x32: even, where the paddings differ
    with torch.no_grad():
        stem = net.relu(net.bn1(net.conv1(x)))
        torch.testing.assert_close(net.maxpool(stem), tf_same_max_pool(stem), rtol=0, atol=0)
