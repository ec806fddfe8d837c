"""ONNX export: dynamic batch/height/width, parity with PyTorch under onnxruntime."""

import importlib.util
import shutil
import sys

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

pytest.importorskip("onnx", reason='ONNX export needs the extra: pip install "deeplabv3plus[onnx]"')
pytest.importorskip("onnxruntime", reason='ONNX parity needs the extra: pip install "deeplabv3plus[onnx]"')

from deeplabv3plus._compat import ONNX_DYNAMO_EXPORT  # noqa: E402
from deeplabv3plus.export import check_onnx, export_onnx  # noqa: E402


class MiniDeepLab(nn.Module):
    """The ops DeepLabv3+ exports: strided and dilated convs, BN, image pooling + expand,
    a stride-4 skip, bilinear align_corners=True resizes to symbolic sizes, a settable output_stride."""

    def __init__(self, num_classes=3):
        super().__init__()
        torch.manual_seed(0)
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.BatchNorm2d(8), nn.ReLU())
        self.down = nn.Conv2d(8, 8, 3, stride=2, padding=1)
        self.deep = nn.Conv2d(8, 16, 3, stride=2, padding=1)
        self.atrous = nn.Conv2d(16, 16, 3, padding=2, dilation=2)
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(16, 16, 1))
        self.head = nn.Conv2d(16 + 16 + 8, num_classes, 1)
        self.output_stride = 16
        self.eval()

    def forward(self, x):
        low = self.down(self.stem(x))  # stride 4
        deep = self.deep(low)
        a = self.atrous(deep)
        g = self.pool(deep).expand(-1, -1, a.shape[2], a.shape[3])
        y = F.interpolate(torch.cat([a, g], 1), size=low.shape[2:], mode="bilinear", align_corners=True)
        y = self.head(torch.cat([y, low], 1))
        return F.interpolate(y, size=x.shape[2:], mode="bilinear", align_corners=True)


def _two_sizes():
    return [torch.randn(1, 3, 45, 61), torch.randn(3, 3, 30, 23)]


@pytest.mark.skipif(
    not ONNX_DYNAMO_EXPORT,
    reason=f"torch {torch.__version__} has no dynamo ONNX exporter (torch.onnx.export(dynamo=True), torch>=2.5)",
)
def test_dynamo_export_matches_pytorch_at_two_sizes(tmp_path):
    pytest.importorskip("onnxscript", reason="the dynamo exporter needs onnxscript")
    model = MiniDeepLab()
    used = export_onnx(model, tmp_path / "m.onnx", height=33, width=49, exporter="dynamo")
    assert used == "dynamo"
    assert check_onnx(model, tmp_path / "m.onnx", _two_sizes(), atol=1e-4, rtol=1e-4) < 1e-4


@pytest.fixture(scope="module")
def torchscript_export(tmp_path_factory):
    """One legacy-exporter export shared by the tests below (exports are the slow part)."""
    model = MiniDeepLab()
    path = tmp_path_factory.mktemp("onnx") / "m.onnx"
    used = export_onnx(model, path, height=33, width=49, exporter="torchscript")
    return model, path, used


def test_torchscript_export_matches_pytorch_at_two_sizes(torchscript_export):
    model, path, used = torchscript_export
    assert used == "torchscript"
    assert check_onnx(model, path, _two_sizes(), atol=1e-4, rtol=1e-4) < 1e-4


def test_graph_axes_are_named_and_dynamic(torchscript_export):
    import onnx

    graph = onnx.load(str(torchscript_export[1])).graph
    dims = [d.dim_param or d.dim_value for d in graph.input[0].type.tensor_type.shape.dim]
    assert graph.input[0].name == "image" and graph.output[0].name == "logits"
    assert dims == ["batch", 3, "height", "width"]


def test_check_fails_on_a_different_model(torchscript_export):
    other = MiniDeepLab()
    with torch.no_grad():
        other.head.bias += 1.0
    with pytest.raises(AssertionError, match="differs"):
        check_onnx(other, torchscript_export[1], _two_sizes())


def test_output_stride_is_restored_and_mode_kept(tmp_path):
    model = MiniDeepLab().train()
    export_onnx(model, tmp_path / "m.onnx", height=17, width=17, output_stride=8, exporter="torchscript")
    assert model.output_stride == 16 and model.training


def test_missing_extra_names_the_install_command(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx", None)  # makes `import onnx` raise ImportError
    with pytest.raises(ImportError, match=r"deeplabv3plus\[onnx\]"):
        export_onnx(MiniDeepLab(), tmp_path / "m.onnx")


def test_script_exports_and_checks(tmp_path, capsys, monkeypatch):
    import deeplabv3plus.export
    from deeplabv3plus import cli

    # Checkpoint loading is tested in tests/jobs/test_predict.py; a small model keeps this test fast.
    # Patched where export_checkpoint looks it up.
    loaded = []
    monkeypatch.setattr(
        deeplabv3plus.export,
        "load_model_from_checkpoint",
        lambda *a, **k: loaded.append(a) or (MiniDeepLab(), None),
    )
    out = str(tmp_path / "m.onnx")
    args = ["--checkpoint", "ckpt.pt", "--output", out, "--height", "33", "--width", "41"]
    args = cli.parse_command_args("export", args + ["--exporter", "torchscript", "--output-stride", "8"])
    assert cli.run_export(args) == "torchscript"
    assert loaded == [("ckpt.pt", None)]
    printed = capsys.readouterr().out
    assert "onnxruntime matches PyTorch" in printed and f"wrote {out} (torchscript exporter)" in printed


@pytest.fixture(scope="module")
def small_checkpoint(synthetic_voc, tmp_path_factory):
    """A random-weight ResNet-18 DeepLabv3+ checkpoint (head width 8) whose config reads the synthetic data."""
    import dataclasses

    from deeplabv3plus import build_model
    from deeplabv3plus.config import Config, config_to_dict

    cfg = Config()
    cfg.model.backbone, cfg.model.num_classes, cfg.model.head_channels = "resnet18", 6, 8
    cfg.data.layout, cfg.data.root, cfg.data.num_classes, cfg.data.workers = (
        "synthetic",
        str(synthetic_voc),
        6,
        0,
    )
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("checkpoint") / "m.pth"
    torch.save(
        {"model": build_model(**dataclasses.asdict(cfg.model)).state_dict(), "config": config_to_dict(cfg)},
        path,
    )
    return path


@pytest.mark.slow  # export + quantise + two onnxruntime sessions: ~6 s on 2 idle cores
def test_export_int8_calibrates_on_training_images_and_reports_label_agreement(
    small_checkpoint, tmp_path, capsys
):
    import onnx

    from deeplabv3plus import cli

    out = tmp_path / "m_int8.onnx"
    argv = ["export", "--checkpoint", small_checkpoint, "--output", out, "--int8", "--calibration-images", "3",
            "--height", "33", "--width", "33"]  # fmt: skip
    assert cli.main([str(a) for a in argv]) == 0
    printed = capsys.readouterr().out
    assert f"wrote {out} (int8 QDQ" in printed and "3 of the 6 'train' images" in printed
    assert "int8 labels agree with the fp32 PyTorch model's on" in printed
    ops = {n.op_type for n in onnx.load(str(out)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops  # really quantised, not a copy of the fp32 graph


def _optimized_ops(path, tmp_path):
    """The op types of the graph onnxruntime's CPU provider actually runs (after its fusions)."""
    import collections

    import onnx
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    options.log_severity_level = 3  # the "hardware-specific optimised graph" notice
    ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return collections.Counter(n.op_type for n in onnx.load(options.optimized_model_filepath).graph.node)


@pytest.mark.parametrize("exporter", ["torchscript", "dynamo"])
def test_int8_graph_runs_every_conv_as_an_int8_conv(tmp_path, exporter):
    import onnx

    from deeplabv3plus import build_model
    from deeplabv3plus.export import quantize_onnx_int8

    # Freshly built: BN folding gives every conv of one width the same zero bias, which the
    # exporter stores once and reads through Identity nodes (not initializers the quantiser can use).
    torch.manual_seed(0)
    model = build_model("resnet18", num_classes=3, head_channels=8, separable=True).eval()
    if exporter == "dynamo" and not (ONNX_DYNAMO_EXPORT and importlib.util.find_spec("onnxscript")):
        pytest.skip(f"torch {torch.__version__} or this install has no dynamo ONNX exporter")
    fp32 = tmp_path / "fp32.onnx"
    # The dynamo exporter keeps the weights in fp32.onnx.data, a file the quantiser must read too.
    export_onnx(model, fp32, height=33, width=33, exporter=exporter)
    convs = sum(n.op_type == "Conv" for n in onnx.load(str(fp32)).graph.node)
    calibration = [torch.randn(1, 3, 33, 33, generator=torch.Generator().manual_seed(i)) for i in range(2)]
    ops = _optimized_ops(quantize_onnx_int8(fp32, tmp_path / "int8.onnx", calibration), tmp_path)
    # An unfused conv runs as dequantise -> fp32 Conv -> quantise: slower than the fp32 graph.
    assert ops["Conv"] == 0 and ops["QLinearConv"] == convs, dict(ops)


# --- int8 through PyTorch's PT2E flow (torchao's x86 Inductor quantizer) ------------------------

needs_pt2e = pytest.mark.skipif(
    importlib.util.find_spec("torchao") is None or not (shutil.which("c++") or shutil.which("g++")),
    reason='PT2E int8 needs torchao (pip install "deeplabv3plus[pt2e]") and a C++ compiler for Inductor',
)


def test_pt2e_without_torchao_names_the_extra(tmp_path, monkeypatch):
    from deeplabv3plus.export import quantize_pt2e_int8

    monkeypatch.setitem(sys.modules, "torchao", None)  # makes `import torchao...` raise ImportError
    with pytest.raises(ImportError, match=r"PT2E int8 needs torchao: .*deeplabv3plus\[pt2e\]"):
        quantize_pt2e_int8(MiniDeepLab(), tmp_path / "m.pt2", [torch.randn(1, 3, 33, 33)])


def _tiny_real_model(seed=0):
    from deeplabv3plus import build_model

    torch.manual_seed(seed)
    return build_model("resnet18", num_classes=3, head_channels=8, separable=True).eval()


def test_unsharing_gives_each_stateless_call_its_own_module_and_keeps_the_output():
    from deeplabv3plus.export import _unshare_stateless_modules
    from deeplabv3plus.models import prepare_for_inference

    model = prepare_for_inference(_tiny_real_model(), channels_last=False, pack=False)
    traced = _unshare_stateless_modules(model)
    targets = [n.target for n in traced.graph.nodes if n.op == "call_module"]
    assert len(targets) == len(set(targets))  # ResNet's units call one ReLU two or three times
    assert not any(getattr(m, "inplace", False) for m in traced.modules())
    x = torch.randn(2, 3, 65, 49)
    with torch.no_grad():
        torch.testing.assert_close(traced(x), model(x), atol=0, rtol=0)


@pytest.fixture(scope="module")
def pt2e_program(tmp_path_factory):
    from deeplabv3plus.export import quantize_pt2e_int8

    model = _tiny_real_model()
    gen = torch.Generator().manual_seed(1)
    calibration = [torch.randn(1, 3, 65, 65, generator=gen) for _ in range(4)]
    path = quantize_pt2e_int8(model, tmp_path_factory.mktemp("pt2e") / "m.pt2", calibration)
    return model, path


@needs_pt2e
def test_pt2e_int8_program_quantises_every_conv(pt2e_program):
    model, path = pt2e_program
    graph = torch.export.load(str(path)).graph
    convs = [n for n in graph.nodes if n.op == "call_function" and "conv" in str(n.target)]
    assert len(convs) == sum(isinstance(m, nn.Conv2d) for m in model.modules())
    for conv in convs:
        activation, weight = conv.args[0], conv.args[1]
        assert "dequantize_per_tensor" in str(activation.target), conv.name
        assert "dequantize_per_channel" in str(weight.target), conv.name


@needs_pt2e
def test_pt2e_int8_program_stores_the_weights_once_in_int8(pt2e_program):
    model, path = pt2e_program
    program = torch.export.load(str(path))
    stored = [
        t for t in [*program.state_dict.values(), *program.constants.values()] if isinstance(t, torch.Tensor)
    ]
    conv_weights = sum(m.weight.numel() for m in model.modules() if isinstance(m, nn.Conv2d))
    assert sum(t.numel() for t in stored if t.dtype == torch.int8) == conv_weights
    # Biases and quantisation scales stay fp32: a few percent of the weights, not a second copy.
    assert sum(t.numel() for t in stored if t.dtype == torch.float32) < 0.1 * conv_weights


@needs_pt2e
@pytest.mark.slow  # Inductor compiles the program: ~10 s on 2 idle cores
def test_pt2e_int8_program_runs_at_another_size_and_batch_close_to_fp32(pt2e_program):
    from deeplabv3plus.export import label_agreement, load_int8_program

    model, path = pt2e_program
    program = load_int8_program(path)
    # Exported at 2x3x65x65: batch, height and width all differ here (the dims are dynamic).
    x = torch.randn(3, 3, 49, 81, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        expected, got = model(x), program(x)
    assert got.shape == expected.shape
    # 8-bit activations and weights: a few percent of the logits' scale, not more.
    assert (got - expected).norm() / expected.norm() < 0.1
    assert label_agreement(model, program, [x]) > 0.9


@needs_pt2e
def test_export_int8_pt2e_writes_a_program_calibrated_on_training_images(small_checkpoint, tmp_path, capsys):
    from deeplabv3plus import cli

    out = tmp_path / "m_int8.pt2"
    argv = [
        "export",
        "--checkpoint",
        small_checkpoint,
        "--output",
        out,
        "--int8",
        "--int8-backend",
        "pt2e",
        "--calibration-images",
        "3",
        "--no-check",
    ]  # the compiled check is timed in the test above
    assert cli.main([str(a) for a in argv]) == 0
    assert f"wrote {out} (int8 PT2E x86 program" in capsys.readouterr().out
    targets = {str(n.target) for n in torch.export.load(str(out)).graph.nodes}
    assert any("dequantize_per_channel" in t for t in targets), targets


@pytest.mark.slow  # an export and two evaluations of a small model: ~10 s on 2 idle cores
def test_eval_onnx_script_scores_an_exported_graph_as_eval_scores_the_checkpoint(small_checkpoint, tmp_path):
    import json
    from pathlib import Path

    from deeplabv3plus import cli

    onnx_path = tmp_path / "m.onnx"
    argv = [
        "export",
        "--checkpoint",
        small_checkpoint,
        "--output",
        onnx_path,
        "--exporter",
        "torchscript",
        "--no-check",
    ]
    assert cli.main([str(a) for a in argv]) == 0
    assert (
        cli.main(["eval", "--checkpoint", str(small_checkpoint), "--output", str(tmp_path / "torch.json")])
        == 0
    )
    script = Path(__file__).resolve().parents[2] / "scripts" / "eval_onnx.py"
    spec = importlib.util.spec_from_file_location("eval_onnx", script)
    eval_onnx = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(eval_onnx)
    argv = ["--checkpoint", small_checkpoint, "--onnx", onnx_path, "--output", tmp_path / "onnx.json"]
    assert eval_onnx.main([str(a) for a in argv]) == 0
    expected, got = (json.loads((tmp_path / f"{n}.json").read_text()) for n in ("torch", "onnx"))
    assert got["num_images"] == expected["num_images"] > 0
    # The same protocol on the same weights: fp32 rounding may flip a near-tie pixel, not more.
    assert got["mIoU"] == pytest.approx(expected["mIoU"], abs=1e-3)
    for name, iou in expected["per_class_iou"].items():  # random weights: several classes predicted
        assert got["per_class_iou"][name] == (None if iou is None else pytest.approx(iou, abs=1e-3)), name


# --- export_checkpoint: the export command's job from Python --------------------------------------


def test_export_checkpoint_writes_an_onnx_graph_that_matches_the_checkpoints_model(
    small_checkpoint, tmp_path, capsys
):
    from deeplabv3plus.export import ExportSettings, OnnxRuntimeModel, export_checkpoint
    from deeplabv3plus.loading import load_model_from_checkpoint

    out = tmp_path / "m.onnx"
    settings = ExportSettings(height=33, width=33, exporter="torchscript", output_stride=32, check=False)
    assert export_checkpoint(small_checkpoint, out, settings) == "torchscript"
    assert f"wrote {out} (torchscript exporter)" in capsys.readouterr().out
    model, _ = load_model_from_checkpoint(small_checkpoint, device="cpu")
    model.output_stride = 32
    x = torch.randn(1, 3, 41, 37, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(OnnxRuntimeModel(out)(x), model.eval()(x), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize(
    "settings, output, message",
    [
        ({"height": 8}, "m.onnx", "at least 16 pixels"),
        ({"opset": 3}, "m.onnx", "--opset"),
        ({"int8_backend": "pt2e"}, "m.onnx", "only with --int8"),
        ({"int8": True, "int8_backend": "pt2e"}, "m.onnx", "ending in .pt2"),
        ({"int8": True, "int8_backend": "pt2e", "opset": 17}, "m.pt2", "ONNX options"),
        ({}, "m.txt", "ending in .onnx"),
        ({"int8": True, "calibration_images": 0}, "m.onnx", "--calibration-images"),
    ],
)
def test_export_checkpoint_refuses_bad_settings_before_reading_the_checkpoint(
    tmp_path, settings, output, message
):
    from deeplabv3plus.export import ExportSettings, export_checkpoint

    # The checkpoint does not exist: the settings are refused first, with their own message.
    with pytest.raises(ValueError, match=message):
        export_checkpoint(tmp_path / "missing.pth", tmp_path / output, ExportSettings(**settings))
    assert list(tmp_path.iterdir()) == []


def test_calibration_images_spread_evenly_over_the_training_split(synthetic_voc):
    from deeplabv3plus.config import DataConfig
    from deeplabv3plus.data.datasets import build_dataset
    from deeplabv3plus.export import calibration_images

    data = DataConfig(layout="synthetic", root=str(synthetic_voc), num_classes=6, workers=0)
    images, note = calibration_images(data, 3)
    assert note == "3 of the 6 'train' images"
    dataset = build_dataset(data, data.train_split, train=False)
    for image, index in zip(images, (0, 2, 5)):  # first, middle (rounded), last
        assert image.shape[0] == 1
        torch.testing.assert_close(image[0], dataset[index][0], atol=0, rtol=0)
    assert calibration_images(data, 100)[1] == "6 of the 6 'train' images"  # at most the whole split
