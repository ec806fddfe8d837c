"""The TF -> PyTorch name maps against the reference variable lists, and conversion into our models.

``tests/fixtures/tf_names/*.txt`` hold the variable names and shapes of the reference graphs
(built with tf_slim by ``tests/fixtures/tf/make_tf_names.py``; see the README there).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from deeplabv3plus.weights.tf_convert import (
    IncompleteConversionError,
    check_complete,
    convert,
    to_torch_layout,
)
from deeplabv3plus.weights.tf_names import KINDS, is_ignored, name_map

NAMES = Path(__file__).parents[1] / "fixtures" / "tf_names"
LISTS = {
    "xception65_imagenet": "xception_65_imagenet",
    "resnet101_beta_imagenet": "resnet_v1_101_beta_imagenet",
    "xception65_deeplab": "xception65_coco_voc_trainaug",
}


def reference_shapes(kind: str) -> dict[str, tuple[int, ...]]:
    shapes = {}
    for line in (NAMES / f"{LISTS[kind]}.txt").read_text().splitlines():
        name, shape = line.split("\t")
        shapes[name] = tuple(int(d) for d in shape.split(",")) if shape else ()
    return shapes


def synthetic_checkpoint(kind: str) -> dict[str, np.ndarray]:
    """TF-layout arrays for every reference variable: a distinct constant per tensor (cheap, traceable)."""
    return {
        name: np.full(shape, i, dtype=np.float32)
        for i, (name, shape) in enumerate(reference_shapes(kind).items())
    }


def our_keys(state_dict: dict[str, torch.Tensor]) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in state_dict.items() if not k.endswith("num_batches_tracked")}


@pytest.mark.parametrize("kind", list(LISTS))
def test_every_reference_weight_is_mapped_and_every_mapped_name_exists(kind):
    unmapped, missing = check_complete(reference_shapes(kind), kind)
    assert unmapped == [] and missing == []


@pytest.mark.parametrize("kind", KINDS)
def test_map_is_one_to_one(kind):
    params = name_map(kind)
    assert len({p.key for p in params}) == len(params)
    assert len({p.tf_name for p in params}) == len(params)


def test_only_step_counter_and_imagenet_classifier_are_skipped():
    skipped = {kind: sorted(n for n in reference_shapes(kind) if is_ignored(n, kind)) for kind in LISTS}
    assert skipped == {
        "xception65_imagenet": ["global_step", "xception_65/logits/biases", "xception_65/logits/weights"],
        "resnet101_beta_imagenet": [
            "global_step",
            "resnet_v1_101/logits/biases",
            "resnet_v1_101/logits/weights",
        ],
        "xception65_deeplab": ["global_step"],
    }
    # The segmentation classifier is a weight, not an ImageNet head.
    assert not is_ignored("logits/semantic/weights", "xception65_deeplab")


@pytest.mark.parametrize(
    "name",
    ["aspp0/weights/Momentum", "xception_65/entry_flow/conv1_1/BatchNorm/gamma/ExponentialMovingAverage"],
)
def test_optimizer_slots_and_moving_averages_are_skipped(name):
    assert is_ignored(name, "xception65_deeplab")


def test_backbone_map_is_the_full_model_map_without_prefix():
    backbone = {(p.key, p.tf_name) for p in name_map("xception65_imagenet")}
    full = {
        (p.key[len("backbone.") :], p.tf_name)
        for p in name_map("xception65_deeplab")
        if p.key.startswith("backbone.")
    }
    assert backbone == full


def test_reference_names_map_to_our_keys():
    pairs = {p.tf_name: p.key for p in name_map("xception65_deeplab")}
    assert pairs["xception_65/entry_flow/conv1_1/weights"] == "backbone.stem.0.conv.weight"
    middle16 = "xception_65/middle_flow/block1/unit_16/xception_module"
    assert (
        pairs[f"{middle16}/separable_conv3_pointwise/weights"]
        == "backbone.blocks.18.stack.conv3.conv_pw.weight"
    )
    exit1 = "xception_65/exit_flow/block1/unit_1/xception_module"
    assert (
        pairs[f"{exit1}/shortcut/BatchNorm/moving_variance"] == "backbone.blocks.19.shortcut.bn.running_var"
    )
    assert pairs["aspp1_depthwise/BatchNorm/gamma"] == "aspp.atrous.0.bn_dw.weight"
    assert pairs["decoder/decoder_conv1_pointwise/weights"] == "decoder.fuse.1.conv_pw.weight"
    assert pairs["logits/semantic/biases"] == "classifier.bias"
    resnet = {p.tf_name: p.key for p in name_map("resnet101_beta_imagenet")}
    assert resnet["resnet_v1_101/conv1_3/BatchNorm/beta"] == "bn1.bias"
    assert resnet["resnet_v1_101/block3/unit_23/bottleneck_v1/conv2/weights"] == "layer3.22.conv2.weight"
    assert (
        resnet["resnet_v1_101/block2/unit_1/bottleneck_v1/shortcut/weights"] == "layer2.0.downsample.0.weight"
    )


def test_conv_layout_hwio_to_oihw():
    hwio = np.arange(3 * 3 * 2 * 5, dtype=np.float32).reshape(3, 3, 2, 5)
    oihw = to_torch_layout(hwio, "conv")
    assert oihw.shape == (5, 2, 3, 3)
    assert oihw[4, 1, 2, 0] == hwio[2, 0, 1, 4]


def test_depthwise_layout_hwc1_to_c1hw():
    hwc1 = np.arange(3 * 3 * 4, dtype=np.float32).reshape(3, 3, 4, 1)
    c1hw = to_torch_layout(hwc1, "depthwise")
    assert c1hw.shape == (4, 1, 3, 3)
    assert c1hw[3, 0, 1, 2] == hwc1[1, 2, 3, 0]


def test_converted_depthwise_conv_computes_what_tensorflow_would():
    """TF depthwise: out[c] = sum_hw x[c, h, w] * k[h, w, c, 0]; the converted torch kernel agrees."""
    rng = np.random.default_rng(0)
    k = rng.standard_normal((3, 3, 4, 1)).astype(np.float32)
    x = rng.standard_normal((1, 4, 3, 3)).astype(np.float32)
    expected = np.einsum("chw,hwc->c", x[0], k[..., 0])
    conv = torch.nn.functional.conv2d(
        torch.from_numpy(x), torch.from_numpy(to_torch_layout(k, "depthwise")), groups=4
    )
    np.testing.assert_allclose(conv.flatten().numpy(), expected, rtol=1e-5)


def test_missing_weights_are_an_error_listing_them():
    names = dict.fromkeys(reference_shapes("xception65_deeplab"))
    del names["aspp0/weights"]
    with pytest.raises(IncompleteConversionError, match=r"1 variable\(s\) missing.*aspp0/weights"):
        convert(names, "xception65_deeplab")


def test_unmapped_weights_are_an_error_naming_them():
    """E.g. a DeepLabv3 (no decoder) or non-separable checkpoint converted as the wrong kind."""
    names = dict.fromkeys(reference_shapes("xception65_deeplab"))
    names["aspp1/weights"] = None
    with pytest.raises(IncompleteConversionError, match=r"unmapped.*aspp1/weights"):
        convert(names, "xception65_deeplab")


def test_wrong_kind_is_an_error():
    with pytest.raises(IncompleteConversionError, match="missing"):
        convert(dict.fromkeys(reference_shapes("xception65_imagenet")), "resnet101_beta_imagenet")
    with pytest.raises(ValueError, match="unknown checkpoint kind"):
        convert({}, "xception65")


@pytest.mark.parametrize("kind", ["xception41_imagenet", "xception71_imagenet", "resnet50_beta_imagenet"])
def test_maps_without_a_reference_list_cover_our_backbone_exactly(kind):
    """Generated by the same rules as the checked maps: every key of the target once, one TF scope."""
    from deeplabv3plus.weights.tf_convert import target_module

    with torch.device("meta"):
        target = target_module(kind)
    params = name_map(kind)
    assert {p.key for p in params} == set(our_keys(target.state_dict()))
    scope = {"xception41_imagenet": "xception_41", "xception71_imagenet": "xception_71"}.get(
        kind, "resnet_v1_50"
    )
    assert all(p.tf_name.startswith(scope + "/") for p in params)


@pytest.mark.slow
def test_converted_full_model_loads_strictly_into_deeplabv3plus_xception65():
    from deeplabv3plus.builders import deeplabv3plus_xception65

    model = deeplabv3plus_xception65(num_classes=21, output_stride=16, decoder=True, separable=True)
    tf = synthetic_checkpoint("xception65_deeplab")
    tf["dummy/Momentum"] = np.zeros(1, np.float32)  # optimizer slots are ignored
    state = convert(tf, "xception65_deeplab")
    assert {k: tuple(v.shape) for k, v in state.items()} == our_keys(model.state_dict())
    model.load_state_dict(state, strict=True)
    np.testing.assert_array_equal(
        model.aspp.atrous[2].conv_dw.weight.detach().numpy(),
        to_torch_layout(tf["aspp3_depthwise/depthwise_weights"], "depthwise"),
    )


@pytest.mark.slow
def test_converted_resnet_beta_loads_strictly_into_our_resnet101_beta():
    from deeplabv3plus.models import ResNet

    backbone = ResNet(101, variant="beta")
    state = convert(synthetic_checkpoint("resnet101_beta_imagenet"), "resnet101_beta_imagenet")
    assert {k: tuple(v.shape) for k, v in state.items()} == our_keys(backbone.state_dict())
    backbone.load_state_dict(state, strict=True)


@pytest.mark.slow
def test_convert_script_writes_a_checkpoint_the_eval_loader_accepts(tmp_path, monkeypatch):
    import deeplabv3plus.weights.tf_bundle
    from deeplabv3plus import cli

    monkeypatch.setattr(  # patched where it lives: the convert command imports it when it runs
        deeplabv3plus.weights.tf_bundle,
        "TFCheckpoint",
        lambda path, verify=False: synthetic_checkpoint("xception65_deeplab"),
    )
    out = tmp_path / "voc.pth"
    args = ["--checkpoint", "x/model.ckpt", "--kind", "xception65_deeplab", "--output", str(out)]
    assert cli.main(["convert", *args]) == 0
    assert [p.name for p in tmp_path.iterdir()] == ["voc.pth"]  # no temp file left behind

    saved = torch.load(out, map_location="cpu", weights_only=True)
    assert saved["config"]["model"]["backbone"] == "xception65"
    assert saved["config"]["data"]["mean"] == [0.5] * 3 and saved["config"]["data"]["std"] == [0.5] * 3
    assert saved["source"]["name"] == "xception65_coco_voc_trainaug"
    assert saved["source"]["reported"] == {"val_mIoU_os16": 82.20, "val_mIoU_os8_ms_flip": 83.58}

    from deeplabv3plus.loading import load_model_from_checkpoint

    model, cfg = load_model_from_checkpoint(out)
    assert cfg.model.separable and cfg.model.output_stride == 16 and cfg.model.num_classes == 21
    assert torch.equal(model.classifier.bias, saved["model"]["classifier.bias"])
