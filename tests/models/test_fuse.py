"""prepare_for_inference: BatchNorm folded, channels_last, same outputs, the trainable model untouched.

Tolerance: the prepared model's logits equal the eval-mode model's within
``TOL * max|logits|`` elementwise. Folding rounds each product once instead of twice and
channels_last changes the summation order, so the differences are fp32 rounding, which grows
with depth; 1e-4 of the output's scale covers ResNet-101 and Xception-71 with randomised BN
statistics and is ~1000x below what one unfolded BN (or a wrong fold) would change.
"""

from __future__ import annotations

import copy
import pickle
import warnings

import pytest
import torch
import torch.nn as nn

from deeplabv3plus.builders import build_model
from deeplabv3plus.inference import predict_probs
from deeplabv3plus.models.fuse import PackedConv2d, conv_bn_pairs, fold_batchnorm, prepare_for_inference
from deeplabv3plus.models.layers import set_conv_geometry

TOL = 1e-4
NUM_CLASSES = 5


def randomise_batchnorm(model: nn.Module, seed: int = 0) -> nn.Module:
    """Non-trivial running statistics and affines in every BatchNorm (fresh ones are the identity)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                c = m.num_features
                m.running_mean.copy_(0.2 * torch.randn(c, generator=g))
                m.running_var.copy_(0.5 + torch.rand(c, generator=g))
                m.weight.copy_(0.7 + 0.6 * torch.rand(c, generator=g))
                m.bias.copy_(0.1 * torch.randn(c, generator=g))
    return model


def assert_same_logits(prepared: nn.Module, model: nn.Module, x: torch.Tensor) -> None:
    with torch.inference_mode():
        expected = model.eval()(x)
        got = prepared(x)
    scale = expected.abs().max().item()
    assert scale > 0 and expected.std() > 1e-3 * scale  # a meaningful, non-constant output
    torch.testing.assert_close(got, expected, rtol=0, atol=TOL * scale)


def _num_bn(model: nn.Module) -> int:
    return sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())


# Small heads where the backbone is what differs; the backbones are always full width. ResNet-101
# and Xception-65 run as the paper's models (256-wide ASPP/decoder, 21 classes).
SMALL = dict(num_classes=NUM_CLASSES, head_channels=16, low_level_channels=8)
CASES = [
    ("resnet18", dict(SMALL, resnet_variant="standard")),
    ("resnet18", dict(SMALL, resnet_variant="beta", decoder=False)),
    ("resnet34", dict(SMALL, resnet_variant="standard")),
    ("resnet34", dict(SMALL, resnet_variant="beta")),
    ("resnet50", dict(SMALL, resnet_variant="standard", separable=True)),
    ("resnet50", dict(SMALL, resnet_variant="beta", strided_shortcut="projection")),
    ("resnet101", dict(num_classes=21)),
    ("resnet101", dict(SMALL, resnet_variant="beta")),
    ("xception41", SMALL),
    ("xception65", dict(num_classes=21)),
    ("xception71", SMALL),
]


@pytest.mark.parametrize(("backbone", "kwargs"), CASES, ids=lambda c: c if isinstance(c, str) else "-".join(
    f"{v}" for k, v in c.items() if k in ("resnet_variant", "decoder", "separable", "strided_shortcut")
))  # fmt: skip
def test_prepared_model_matches_the_eval_model_for_every_backbone(backbone, kwargs):
    torch.manual_seed(0)
    model = randomise_batchnorm(build_model(backbone, **kwargs)).eval()
    prepared = prepare_for_inference(model)
    assert _num_bn(prepared) == 0, "every BatchNorm of our models follows a conv and is folded"
    assert sum(isinstance(m, PackedConv2d) for m in prepared.modules()) == sum(
        isinstance(m, nn.Conv2d) for m in model.modules()
    )
    assert_same_logits(prepared, model, torch.randn(2, 3, 33, 41))


def test_trainable_model_is_untouched():
    torch.manual_seed(0)
    model = randomise_batchnorm(build_model("resnet18", **SMALL)).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    prepared = prepare_for_inference(model)
    assert model.training and not prepared.training
    assert _num_bn(model) == 29 and all(p.requires_grad for p in model.parameters())
    assert not any(p.requires_grad for p in prepared.parameters())
    after = model.state_dict()
    assert after.keys() == before.keys() and all(torch.equal(after[k], before[k]) for k in before)
    assert all(p.is_contiguous() for p in model.parameters())  # the copy alone is channels_last
    assert prepared.backbone.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    assert prepared.backbone.conv1.bias is not None and model.backbone.conv1.bias is None


def test_output_stride_stays_settable_on_the_prepared_copy():
    torch.manual_seed(0)
    model = randomise_batchnorm(build_model("resnet18", resnet_variant="beta", **SMALL)).eval()
    prepared = prepare_for_inference(model)
    x = torch.randn(1, 3, 41, 41)
    for os in (8, 32, 16):
        prepared.output_stride = os
        model.output_stride = os
        assert_same_logits(prepared, model, x)
    # use_output_stride (evaluate's path) and multi-scale + flip on the prepared copy
    expected = predict_probs(model, x, scales=(0.75, 1.25), flip=True, output_stride=8)
    got = predict_probs(prepared, x, scales=(0.75, 1.25), flip=True, output_stride=8)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-4)
    assert prepared.output_stride == 16


def test_a_conv_whose_output_is_read_twice_keeps_its_batchnorm():
    class Branching(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3, padding=1)
            self.bn = nn.BatchNorm2d(4)
            self.conv2 = nn.Conv2d(4, 4, 1)
            self.bn2 = nn.BatchNorm2d(4)

        def forward(self, x):
            y = self.conv(x)
            return self.bn(y) + y + self.bn2(self.conv2(y))

    torch.manual_seed(0)
    model = randomise_batchnorm(Branching()).eval()
    assert conv_bn_pairs(model) == [("conv2", "bn2")]
    prepared = prepare_for_inference(model)
    assert isinstance(prepared.bn, nn.BatchNorm2d) and isinstance(prepared.bn2, nn.Identity)
    assert_same_logits(prepared, model, torch.randn(2, 3, 9, 9))


def test_untraceable_model_is_copied_unfolded_with_a_warning():
    class DataDependent(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3)
            self.bn = nn.BatchNorm2d(4)

        def forward(self, x):
            y = self.bn(self.conv(x))
            return y if y.sum() > 0 else -y  # fx cannot trace a branch on a value

    model = randomise_batchnorm(DataDependent()).eval()
    with pytest.warns(UserWarning, match="cannot be traced"):
        prepared = prepare_for_inference(model)
    assert isinstance(prepared.bn, nn.BatchNorm2d)
    assert_same_logits(prepared, model, torch.randn(1, 3, 8, 8))


def test_fold_batchnorm_refuses_a_training_model():
    with pytest.raises(ValueError, match="eval mode"):
        fold_batchnorm(build_model("resnet18", **SMALL).train())


def test_prepared_copy_exports_with_torch_export():
    torch.manual_seed(0)
    model = randomise_batchnorm(build_model("resnet18", **SMALL)).eval()
    prepared = prepare_for_inference(model)
    x = torch.randn(2, 3, 33, 33)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        exported = torch.export.export(prepared, (x,))
    ops = {str(n.target) for n in exported.graph.nodes if n.op == "call_function"}
    assert not any("batch_norm" in op for op in ops)
    assert_same_logits(exported.module(), model, x)


def _packed_pair(**conv_kwargs):
    torch.manual_seed(0)
    conv = nn.Conv2d(8, 12, 3, **conv_kwargs).requires_grad_(False)
    packed = PackedConv2d.from_conv(copy.deepcopy(conv))
    return conv, packed


def test_packed_conv_equals_the_eager_conv_through_geometry_and_weight_changes():
    conv, packed = _packed_pair(padding=1)
    if packed._fast(torch.randn(1, 8, 5, 5)):  # this build has the oneDNN ops
        assert isinstance(packed, nn.Conv2d)
    x = torch.randn(2, 8, 19, 23).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        torch.testing.assert_close(packed(x), conv(x), rtol=1e-5, atol=1e-5)
        for stride, dilation in ((2, 1), (1, 2), (1, 4)):  # what set_conv_geometry does to a built model
            for c in (conv, packed):
                set_conv_geometry(c, stride, dilation)
            torch.testing.assert_close(packed(x), conv(x), rtol=1e-5, atol=1e-5)
            torch.testing.assert_close(packed(x[:1, :, :11]), conv(x[:1, :, :11]), rtol=1e-5, atol=1e-5)
    with torch.no_grad():
        for c in (conv, packed):
            c.weight.mul_(-0.5)  # an in-place update must not run on the stale reordered weight
    with torch.inference_mode():
        torch.testing.assert_close(packed(x), conv(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("dilation", [7, 12, 18, 36])
def test_depthwise_conv_padded_beyond_onednn_kernels_equals_the_eager_conv(dilation):
    # The ASPP's rates: beyond 6 px of padding the input is padded explicitly (same zeros).
    torch.manual_seed(0)
    conv = nn.Conv2d(32, 32, 3, padding=dilation, dilation=dilation, groups=32).eval().requires_grad_(False)
    packed = PackedConv2d.from_conv(copy.deepcopy(conv))
    for fmt in (torch.channels_last, torch.contiguous_format):
        x = torch.randn(2, 32, 21, 26).contiguous(memory_format=fmt)
        with torch.inference_mode():
            out = packed(x)
            torch.testing.assert_close(out, conv(x), rtol=1e-5, atol=1e-5)
        assert out.shape == (2, 32, 21, 26)
    x = torch.randn(1, 32, 33, 33).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        assert packed(x).is_contiguous(memory_format=torch.channels_last)
        for c in (conv, packed):  # output_stride 8 doubles the rate
            set_conv_geometry(c, 1, 2 * dilation)
        torch.testing.assert_close(packed(x), conv(x), rtol=1e-5, atol=1e-5)


def test_aspp_concatenation_keeps_channels_last_for_the_projection():
    # A stride-0 pooled map concatenated with channels_last maps would make the projection's input NCHW.
    torch.manual_seed(0)
    model = randomise_batchnorm(build_model("resnet18", **SMALL)).eval()
    prepared = prepare_for_inference(model)
    seen = []
    prepared.aspp.project.conv.register_forward_pre_hook(lambda m, inp: seen.append(inp[0]))
    x = torch.randn(2, 3, 65, 65)
    with torch.inference_mode():
        out = prepared(x)
        expected = model(x)
    assert seen[0].is_contiguous(memory_format=torch.channels_last) and not seen[0].is_contiguous()
    torch.testing.assert_close(out, expected, rtol=0, atol=TOL * expected.abs().max().item())


def test_packed_conv_falls_back_for_autograd_and_is_not_saved():
    conv, packed = _packed_pair(padding=1)
    x = torch.randn(1, 8, 9, 9, requires_grad=True)
    packed(x).sum().backward()  # the oneDNN op has no gradient: the plain conv runs
    assert x.grad is not None and x.grad.abs().sum() > 0
    with torch.no_grad():
        packed(x.detach())
    assert set(packed.state_dict()) == {"weight", "bias"}
    clone = pickle.loads(pickle.dumps(packed))
    assert clone._packed is None and torch.equal(clone.weight, packed.weight)


def test_prepared_copy_runs_under_autocast_and_torch_compile_free_paths():
    torch.manual_seed(0)
    model = randomise_batchnorm(build_model("resnet18", **SMALL)).eval()
    prepared = prepare_for_inference(model)
    x = torch.randn(1, 3, 33, 33)
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        out = prepared(x)
    with torch.inference_mode():
        expected = model(x)
    assert out.dtype == torch.bfloat16  # autocast reached the convs (the oneDNN fp32 path stood aside)
    assert (out.float().argmax(1) == expected.argmax(1)).float().mean() > 0.9


# The call sites: evaluate(), load_model_from_checkpoint (scripts/eval.py, scripts/predict.py), ONNX export.


def test_evaluate_runs_a_prepared_copy_and_never_changes_the_training_model(monkeypatch):
    import deeplabv3plus.evaluate as evaluate_module
    from deeplabv3plus.evaluate import EvalOptions, evaluate

    torch.manual_seed(0)
    model = randomise_batchnorm(build_model("resnet18", **SMALL)).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    g = torch.Generator().manual_seed(0)
    label = torch.randint(0, NUM_CLASSES, (2, 33, 33), generator=g)
    loader = [(torch.randn(2, 3, 33, 33, generator=g), label)]
    calls = []
    monkeypatch.setattr(
        evaluate_module,
        "prepare_for_inference",
        lambda m, **kwargs: calls.append(m) or prepare_for_inference(m, **kwargs),
    )
    fast = evaluate(model, loader, num_classes=NUM_CLASSES, progress=False)
    plain = evaluate(model, loader, None, EvalOptions(prepare=False), num_classes=NUM_CLASSES, progress=False)
    assert calls == [model]  # made afresh per call, from the live model
    assert model.training and all(p.requires_grad for p in model.parameters())
    after = model.state_dict()
    assert all(torch.equal(after[k], before[k]) for k in before)  # BN statistics untouched
    # The same predictions, up to argmax ties that fp32 rounding could flip.
    assert fast["num_pixels"] == plain["num_pixels"]
    assert fast["pixel_acc"] == pytest.approx(plain["pixel_acc"], abs=1e-3)


def test_checkpoint_loads_as_a_prepared_model_unless_asked(tmp_path):
    from deeplabv3plus.config import Config, DataConfig, ModelConfig, config_to_dict
    from deeplabv3plus.loading import load_model_from_checkpoint

    cfg = Config(
        model=ModelConfig(backbone="resnet18", num_classes=NUM_CLASSES, head_channels=16),
        data=DataConfig(num_classes=NUM_CLASSES),
    )
    torch.manual_seed(0)
    model = randomise_batchnorm(build_model("resnet18", num_classes=NUM_CLASSES, head_channels=16)).eval()
    torch.save({"model": model.state_dict(), "config": config_to_dict(cfg)}, tmp_path / "ckpt.pt")
    prepared, _ = load_model_from_checkpoint(tmp_path / "ckpt.pt")
    plain, _ = load_model_from_checkpoint(tmp_path / "ckpt.pt", prepare=False)
    assert prepared.prepared_for_inference and _num_bn(prepared) == 0
    assert _num_bn(plain) == _num_bn(model) and not plain.training
    assert_same_logits(prepared, model, torch.randn(1, 3, 33, 33))


def test_onnx_export_traces_the_prepared_copy(tmp_path, monkeypatch):
    pytest.importorskip("onnx")
    from deeplabv3plus import export

    exported = []
    monkeypatch.setattr(torch.onnx, "export", lambda m, *a, **k: exported.append(m))
    model = randomise_batchnorm(build_model("resnet18", **SMALL)).train()
    export.export_onnx(
        model, tmp_path / "m.onnx", height=33, width=33, exporter="torchscript", output_stride=8
    )
    (graph_model,) = exported
    assert _num_bn(graph_model) == 0 and not graph_model.training
    assert not any(isinstance(m, PackedConv2d) for m in graph_model.modules())  # plain convs for the graph
    assert model.training and _num_bn(model) == 29 and model.output_stride == 16


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_prepared_model_on_cuda_matches_in_fp32_and_runs_under_bf16_autocast():
    torch.manual_seed(0)
    model = randomise_batchnorm(build_model("resnet50", **SMALL)).cuda().eval()
    prepared = prepare_for_inference(model)
    x = torch.randn(2, 3, 65, 65, device="cuda")
    with torch.backends.cudnn.flags(allow_tf32=False):  # compare fp32 with fp32
        assert_same_logits(prepared, model, x)
    with torch.inference_mode(), torch.autocast("cuda", dtype=torch.bfloat16):
        out = prepared(x).float().softmax(1)
    with torch.inference_mode():
        expected = model(x).float().softmax(1)
    torch.testing.assert_close(out, expected, rtol=0, atol=0.05)


# --- bf16: weights rounded once at prepare time -----------------------------------------------------


def test_bf16_prepared_copy_stores_bf16_weights_and_returns_fp32_logits_close_to_fp32(monkeypatch):
    from deeplabv3plus.models import fuse

    monkeypatch.setattr(fuse, "bf16_supported", lambda device="cpu": True)  # oneDNN emulates it elsewhere
    torch.manual_seed(0)
    model = randomise_batchnorm(build_model("resnet18", num_classes=NUM_CLASSES, head_channels=16)).eval()
    prepared = prepare_for_inference(model, precision="bf16")
    assert prepared.inference_precision == "bf16"
    assert {p.dtype for p in prepared.parameters()} == {torch.bfloat16}
    assert {p.dtype for p in model.parameters()} == {torch.float32}  # the source is untouched
    x = torch.randn(2, 3, 33, 33)
    with torch.inference_mode():
        expected = model(x)
        got = prepared(x)
    assert got.dtype == torch.float32 and got.shape == expected.shape
    scale = expected.abs().max().item()
    # bf16 keeps 8 significant bits: ~0.4% per rounding, a few % of the logits' range end to end.
    torch.testing.assert_close(got, expected, rtol=0, atol=0.05 * scale)
    assert (got - expected).abs().max() > 0  # it really ran in bf16


def test_bf16_convs_run_the_packed_onednn_path_where_the_cpu_has_bf16():
    from deeplabv3plus.models.fuse import bf16_supported

    if not bf16_supported("cpu"):
        pytest.skip("this CPU has no native bf16 (avx512_bf16 / amx_bf16)")
    conv = nn.Conv2d(8, 16, 3, padding=2, dilation=2).eval()
    prepared = prepare_for_inference(nn.Sequential(conv), precision="bf16")
    packed = prepared[0]
    assert isinstance(packed, PackedConv2d)
    x = torch.randn(1, 8, 17, 15)
    with torch.inference_mode():
        got = prepared(x)
        expected = nn.functional.conv2d(
            x.bfloat16().float(),
            conv.weight.bfloat16().float(),
            conv.bias.bfloat16().float(),
            padding=2,
            dilation=2,
        )
    assert packed._packed is not None and packed._packed_key is not None
    torch.testing.assert_close(got, expected, rtol=2e-2, atol=2e-2 * expected.abs().max().item())


def test_bf16_without_native_support_warns_and_stays_fp32(monkeypatch):
    from deeplabv3plus.models import fuse

    monkeypatch.setattr(fuse, "bf16_supported", lambda device="cpu": False)
    model = randomise_batchnorm(build_model("resnet18", num_classes=NUM_CLASSES, head_channels=16)).eval()
    with pytest.warns(UserWarning, match="no native bf16.*running fp32"):
        prepared = prepare_for_inference(model, precision="bf16")
    assert prepared.inference_precision == "fp32"
    assert_same_logits(prepared, model, torch.randn(1, 3, 33, 33))


def test_unknown_precision_is_refused():
    with pytest.raises(ValueError, match="precision: expected one of fp32, bf16, got 'fp16'"):
        prepare_for_inference(nn.Sequential(nn.Conv2d(3, 3, 1)), precision="fp16")


def test_preparing_without_packing_gives_plain_convs_even_for_a_packed_model():
    torch.manual_seed(0)
    model = build_model("resnet18", num_classes=3, head_channels=8).eval()
    packed = prepare_for_inference(model, channels_last=False)
    if not any(isinstance(m, PackedConv2d) for m in packed.modules()):
        pytest.skip("this torch build cannot pack oneDNN convs")
    plain = prepare_for_inference(packed, channels_last=False, pack=False)
    # Quantizers and exporters match nn.Conv2d exactly, not a subclass.
    assert all(type(m) is nn.Conv2d for m in plain.modules() if isinstance(m, nn.Conv2d))
    assert any(isinstance(m, PackedConv2d) for m in packed.modules())  # the source is left packed
    x = torch.randn(2, 3, 65, 49)
    with torch.no_grad():
        torch.testing.assert_close(plain(x), packed(x), atol=1e-5, rtol=1e-4)
