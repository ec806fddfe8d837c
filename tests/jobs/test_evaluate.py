"""The eval command (deeplabv3plus.cli, scripts/eval.py) and its job, ``evaluate.evaluate_run``: a tiny
checkpoint on the synthetic val split."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pytest
import torch

from deeplabv3plus import build_model, cli
from deeplabv3plus.config import Config, config_to_dict
from deeplabv3plus.data.datasets import build_dataset
from deeplabv3plus.evaluate import default_output_path, evaluate_run
from deeplabv3plus.inference import predict_probs
from deeplabv3plus.loading import load_model_from_checkpoint

NUM_CLASSES = 6  # the synthetic_voc fixture's class count (not the default 21)


def eval_main(argv: list) -> int:
    """What ``python scripts/eval.py ARGV`` runs, in-process."""
    return cli.run_command("eval", argv, "eval.py")


@pytest.fixture(scope="module")
def checkpoint(synthetic_voc: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random-weight OS-16 ResNet-50 DeepLabv3+ checkpoint whose config reads the synthetic data.

    Its ``data.val_split`` is a two-image list ``val2`` written into a copy of the session's
    synthetic dataset (which is read-only), to keep the CPU evaluations short.
    """
    root = tmp_path_factory.mktemp("data") / "synthetic"
    shutil.copytree(synthetic_voc, root)
    voc = root / "VOCdevkit" / "VOC2012"
    names = (voc / "ImageSets" / "Segmentation" / "val.txt").read_text().split()[:2]
    (voc / "ImageSets" / "Segmentation" / "val2.txt").write_text("\n".join(names) + "\n")
    cfg = Config()
    cfg.model.backbone, cfg.model.num_classes, cfg.model.output_stride = "resnet50", NUM_CLASSES, 16
    cfg.data.layout, cfg.data.root, cfg.data.num_classes = "synthetic", str(root), NUM_CLASSES
    cfg.data.val_split = "val2"
    cfg.data.workers = 0
    torch.manual_seed(0)
    model = build_model(**dataclasses.asdict(cfg.model)).eval()
    path = tmp_path_factory.mktemp("ckpt") / "model.pt"
    torch.save({"model": model.state_dict(), "config": config_to_dict(cfg)}, path)
    return path


def test_eval_os8_multiscale_flip_trimap(checkpoint: Path, tmp_path: Path, capsys):
    out = tmp_path / "res.json"
    argv = ["--checkpoint", str(checkpoint), "--output-stride", "8", "--scales", "0.5", "1.0", "--flip"]
    argv += [
        "--trimap",
        "--trimap-widths",
        "0",
        "4",
        "--device",
        "cpu",
        "--no-progress",
        "--output",
        str(out),
    ]
    assert eval_main(argv + ["eval.batch_size=2"]) == 0
    printed = capsys.readouterr().out
    assert "mIoU" in printed and "background" in printed  # the per-class table with class names

    res = json.loads(out.read_text())
    assert res["output_stride"] == 8 and res["scales"] == [0.5, 1.0] and res["flip"] is True
    assert res["checkpoint"] == str(checkpoint) and res["split"] == "val2" and res["num_images"] == 2
    assert len(res["per_class_iou"]) == NUM_CLASSES and "background" in res["per_class_iou"]
    assert all(v is None or 0.0 <= v <= 1.0 for v in res["per_class_iou"].values())
    assert 0.0 <= res["mIoU"] <= 1.0
    assert set(res["trimap"]) == {"0", "4"}  # JSON keys: the band widths
    assert all(v is None or 0.0 <= v <= 1.0 for v in res["trimap"].values())
    assert res["config"]["eval"]["batch_size"] == 2 and res["config"]["eval"]["output_stride"] == 8
    assert res["config"]["model"]["output_stride"] == 16  # the model keeps its training stride
    assert (tmp_path / "res_trimap" / "trimap.csv").is_file()
    assert f"wrote {out}\n" in printed and f"wrote {tmp_path / 'res_trimap' / 'trimap.csv'}" in printed
    assert "n/a: the band holds no labelled pixel" in printed  # width 0 is the void itself


def test_eval_default_output_next_to_checkpoint(checkpoint: Path):
    assert eval_main(["--checkpoint", str(checkpoint), "--device", "cpu", "--no-progress"]) == 0
    res = json.loads((checkpoint.parent / "model_eval_os16_val2.json").read_text())
    assert res["output_stride"] == 16 and res["scales"] == [1.0] and res["flip"] is False
    assert "trimap" not in res
    assert (
        default_output_path("a/b.pt", 8, [0.5, 1.0], True, "train").name
        == "b_eval_os8_s0.5-1_flip_train.json"
    )
    paper_ms = [0.5, 0.75, 1.0, 1.25, 1.5, 1.75]
    assert default_output_path("b.pt", 8, paper_ms, False, "val").name == "b_eval_os8_ms.json"


def test_evaluate_run_is_the_eval_command_for_a_python_user(checkpoint: Path, tmp_path: Path, capsys):
    model, cfg = load_model_from_checkpoint(checkpoint)
    cfg.eval.flip = True
    payload = evaluate_run(model, cfg, checkpoint=str(checkpoint), output=tmp_path / "r.json", progress=False)
    printed = capsys.readouterr().out
    assert printed.startswith(
        f"evaluating {checkpoint} on 2 'val2' images: OS 16, scales [1.0], flip True, device cpu"
    )
    assert f"wrote {tmp_path / 'r.json'}" in printed
    assert json.loads((tmp_path / "r.json").read_text()) == json.loads(json.dumps(payload))
    assert payload["flip"] is True and payload["weights"] is None and payload["num_images"] == 2

    argv = ["--checkpoint", str(checkpoint), "--flip", "--no-progress", "--output", str(tmp_path / "c.json")]
    assert eval_main(argv) == 0
    command = json.loads((tmp_path / "c.json").read_text())
    assert {k: v for k, v in command.items() if k != "seconds"} == {
        k: v for k, v in json.loads((tmp_path / "r.json").read_text()).items() if k != "seconds"
    }
    with pytest.raises(ValueError, match="exactly one of checkpoint= and weights="):
        evaluate_run(model, cfg, output=tmp_path / "x.json")


def test_results_of_different_settings_get_different_file_names():
    settings = [
        dict(),
        dict(trimap=True),
        dict(pad_to=513),
        dict(amp="bf16"),
        dict(scales=[0.75, 1.0]),
        dict(scales=[0.5, 1.0]),
        dict(flip=True),
        dict(output_stride=8),
        dict(split="train"),
    ]
    names = set()
    for extra in settings:
        kwargs = {**dict(output_stride=16, scales=[1.0], flip=False, split="val"), **extra}
        positional = [kwargs.pop(k) for k in ("output_stride", "scales", "flip", "split")]
        names.add(default_output_path("r/best.pth", *positional, **kwargs).name)
    assert len(names) == len(settings)


def test_os8_of_an_os16_model_runs_and_differs(checkpoint: Path):
    """The issue's requirement: evaluating an OS-16 model at OS 8 works and changes the output."""
    model, cfg = load_model_from_checkpoint(checkpoint)
    image = build_dataset(cfg.data, "val2", train=False)[0][0][:, :33, :33]
    p16 = predict_probs(model, image[None], output_stride=16)
    p8 = predict_probs(model, image[None], output_stride=8)
    assert p8.shape == p16.shape == (1, NUM_CLASSES, *image.shape[-2:])
    assert torch.allclose(p8.sum(1), torch.ones(1)) and torch.isfinite(p8).all()
    assert (p8 - p16).abs().max() > 1e-4
    assert model.output_stride == 16  # restored


def test_config_file_values_go_on_top_of_the_checkpoint(checkpoint: Path, tmp_path: Path):
    (tmp_path / "cfg.yaml").write_text("eval:\n  scales: [0.75]\n  flip: true\n")
    args = cli.parse_eval_args(["--checkpoint", str(checkpoint), "--config", str(tmp_path / "cfg.yaml")])
    _, cfg = cli.load_model(args, "cpu")
    assert cfg.eval.scales == [0.75] and cfg.eval.flip is True
    assert cfg.model.num_classes == NUM_CLASSES  # the rest is still the checkpoint's
    args = cli.parse_eval_args(["--checkpoint", "x.pt", "--no-flip", "eval.flip=true"])
    cli.apply_eval_flags(cfg, args)
    assert cfg.eval.flip is False and cfg.eval.scales == [0.75]  # flags beat the config


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--checkpoint", "missing.pt"], "checkpoint 'missing.pt' does not exist"),
        (["model.nope=1"], "unknown config key 'model.nope'"),
        (["data.root=/nonexistent/voc", "data.layout=voc"], "no VOC 2012 folder"),
        (["--config", "missing.yaml"], "config file 'missing.yaml' does not exist"),
    ],
)
def test_errors_are_one_line_and_exit_code_2(checkpoint: Path, extra: list, message: str, capsys):
    argv = ["--checkpoint", str(checkpoint), "--device", "cpu", "--no-progress", *extra]
    assert eval_main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and err.startswith("eval.py: error:") and len(err.splitlines()) == 1


def test_eval_slide_on_cityscapes_reports_boundary_trimap_and_names_the_file(tmp_path: Path, capsys):
    from deeplabv3plus.data.cityscapes import make_synthetic_cityscapes
    from deeplabv3plus.data.cityscapes_meta import CITYSCAPES_CLASSES

    root = make_synthetic_cityscapes(tmp_path / "cs", num_images=3, size=(32, 64))
    cfg = Config()
    cfg.model.backbone, cfg.model.head_channels, cfg.model.num_classes = "resnet18", 8, 19
    cfg.data.layout, cfg.data.root, cfg.data.num_classes, cfg.data.workers = "cityscapes", str(root), 19, 0
    torch.manual_seed(0)
    model = build_model(**dataclasses.asdict(cfg.model)).eval()
    ckpt = tmp_path / "cs.pt"
    torch.save({"model": model.state_dict(), "config": config_to_dict(cfg)}, ckpt)
    argv = ["--checkpoint", str(ckpt), "--mode", "slide", "--crop-size", "32", "33", "--stride", "16"]
    assert eval_main(argv + ["--trimap", "--trimap-widths", "2", "--no-progress"]) == 0
    out = tmp_path / "cs_eval_os16_slide_trimap.json"
    result = json.loads(out.read_text())
    assert result["mode"] == "slide" and result["trimap_band"] == "boundary"
    assert result["config"]["eval"]["crop_size"] == [32, 33] and result["config"]["eval"]["stride"] == 16
    assert list(result["per_class_iou"]) == list(CITYSCAPES_CLASSES)
    assert "pixels of a class boundary" in capsys.readouterr().out
    assert eval_main(argv[:4] + ["eval.crop_size=null", "--no-progress"]) == 2
    assert "eval.mode=slide needs eval.crop_size" in capsys.readouterr().err


def test_eval_precision_bf16_is_recorded_and_names_the_file(checkpoint: Path, monkeypatch):
    from deeplabv3plus.models import fuse

    monkeypatch.setattr(fuse, "bf16_supported", lambda device="cpu": True)
    args = ["--checkpoint", str(checkpoint), "--device", "cpu", "--no-progress", "--precision", "bf16"]
    assert eval_main(args) == 0
    res = json.loads((checkpoint.parent / "model_eval_os16_bf16_val2.json").read_text())
    assert res["precision"] == "bf16" and res["config"]["eval"]["precision"] == "bf16"
    assert res["mIoU"] is not None


# evaluate()'s settings objects and the eval job's helpers, from Python.


class _Constant(torch.nn.Module):
    """Predicts class 1 everywhere (its logits do not depend on the image)."""

    def __init__(self) -> None:
        super().__init__()
        self.bias = torch.nn.Parameter(torch.tensor([0.0, 1.0, 0.0]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bias[None, :, None, None].expand(x.shape[0], 3, *x.shape[-2:])


def test_eval_options_add_the_matrix_and_run_the_model_itself_without_prepare(monkeypatch):
    import deeplabv3plus.evaluate as evaluate_module
    from deeplabv3plus.evaluate import EvalOptions, evaluate

    monkeypatch.setattr(evaluate_module, "prepare_for_inference", lambda *a, **k: pytest.fail("prepared"))
    label = torch.tensor([[[0, 1], [1, 255]]])
    options = EvalOptions(device="cpu", prepare=False, include_matrix=True)
    results = evaluate(
        _Constant(), [(torch.zeros(1, 3, 2, 2), label)], None, options, num_classes=3, progress=False
    )
    assert results["confusion_matrix"] == [[0, 1, 0], [0, 2, 0], [0, 0, 0]]  # rows: true class
    assert results["num_images"] == 1 and results["num_pixels"] == 3
    assert "confusion_matrix" not in evaluate(
        _Constant(),
        [(torch.zeros(1, 3, 2, 2), label)],
        None,
        EvalOptions(prepare=False),
        num_classes=3,
        progress=False,
    )


def test_evaluate_takes_the_trimap_band_from_the_eval_config():
    from deeplabv3plus.config import EvalConfig
    from deeplabv3plus.evaluate import EvalOptions, evaluate

    label = torch.zeros(1, 8, 8, dtype=torch.long)
    label[:, :, 4:] = 1  # two classes, no void: only a "boundary" band holds labelled pixels
    batches = [(torch.zeros(1, 3, 8, 8), label)]
    options = EvalOptions(prepare=False)
    void = evaluate(_Constant(), batches, EvalConfig(trimap=True, trimap_widths=[1]), options, num_classes=3)
    boundary = evaluate(
        _Constant(),
        batches,
        EvalConfig(trimap=True, trimap_widths=[1], trimap_band="boundary"),
        options,
        num_classes=3,
    )
    assert void["trimap"] == {1: None}
    assert boundary["trimap"][1] is not None and 0 < boundary["trimap"][1] < 1


def test_trimap_dir_for_names_the_folder_after_the_result_file_once():
    from deeplabv3plus.evaluate import trimap_dir_for

    assert trimap_dir_for("runs/r.json") == Path("runs/r_trimap")
    assert trimap_dir_for(Path("runs/m_eval_os16_trimap.json")) == Path("runs/m_eval_os16_trimap")


def test_model_device_is_the_first_parameters_or_the_cpu():
    from deeplabv3plus.evaluate import model_device

    assert model_device(_Constant()) == torch.device("cpu")
    assert model_device(torch.nn.ReLU()) == torch.device("cpu")
    with torch.device("meta"):
        assert model_device(torch.nn.Linear(1, 1)) == torch.device("meta")


def test_eval_loader_reads_the_split_in_order_in_batches_of_eval_batch_size(checkpoint: Path):
    from deeplabv3plus.evaluate import eval_loader

    _, cfg = load_model_from_checkpoint(checkpoint)
    cfg.eval.batch_size = 2
    dataset, loader, with_instances = eval_loader(cfg, "val2", "cpu")
    assert len(dataset) == 2 and not with_instances  # instance maps are Cityscapes' only
    (batch,) = list(loader)
    expected = [dataset[i][1] for i in range(2)]
    labels = batch[1]
    assert len(labels) == 2 and all(torch.equal(a, b) for a, b in zip(labels, expected))
