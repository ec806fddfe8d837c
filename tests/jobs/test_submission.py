"""predict writes what eval scores, in the formats the benchmark servers read.

The Cityscapes checks run the official evaluator (cityscapesScripts' evalPixelLevelSemanticLabeling.py,
the ``dev`` extra) in-process on a small synthetic Cityscapes-layout tree.
"""

from __future__ import annotations

import dataclasses
import glob
import json
import math
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from deeplabv3plus import build_model, cli
from deeplabv3plus.config import Config, EvalConfig, config_to_dict
from deeplabv3plus.data.cityscapes import make_synthetic_cityscapes
from deeplabv3plus.data.transforms import Preprocess
from deeplabv3plus.data.voc_meta import voc_palette
from deeplabv3plus.inference import segment_eval
from deeplabv3plus.metrics import CityscapesMeter, ConfusionMatrix
from deeplabv3plus.predict import background_class, colour_overlay, encode_labels

# cityscapesScripts labels.py, written out here so the test does not check the package with itself:
# label ID of each train ID 0..18.
LABEL_IDS = [7, 8, 11, 12, 13, 17, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 31, 32, 33]
PAD_TO = [80, 144]  # the synthetic frames are 64x128: the padding changes the image pooling


def _checkpoint(path: Path, layout: str, num_classes: int, **data) -> Path:
    """A small random DeepLab (resnet18, head 16) with varied BatchNorm statistics, so that its
    predictions vary over the image, saved with its config."""
    cfg = Config()
    cfg.model.backbone, cfg.model.head_channels = "resnet18", 16
    cfg.model.num_classes = cfg.data.num_classes = num_classes
    cfg.data.layout, cfg.data.workers = layout, 0
    for key, value in data.items():
        setattr(cfg.data, key, value)
    torch.manual_seed(0)
    model = build_model(**dataclasses.asdict(cfg.model)).eval()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
    torch.save({"model": model.state_dict(), "config": config_to_dict(cfg)}, path)
    return path


def _run(argv: list, capsys) -> str:
    assert cli.main([str(a) for a in argv]) == 0, capsys.readouterr().err
    return capsys.readouterr().out


@pytest.fixture(scope="module")
def cityscapes_run(tmp_path_factory):
    """eval and ``predict --format cityscapes`` of one checkpoint (eval.pad_to [80, 144]) on the val
    split of a synthetic Cityscapes tree with instance maps: (root, eval JSON, predict folder, stdout)."""
    tmp = tmp_path_factory.mktemp("cityscapes")
    root = make_synthetic_cityscapes(tmp / "cs", num_images=6, instance_ids=True)
    ckpt = _checkpoint(tmp / "model.pth", "cityscapes", 19, root=str(root))
    (tmp / "pad.yaml").write_text(yaml.safe_dump({"eval": {"pad_to": PAD_TO}}))
    common = ["--checkpoint", ckpt, "--config", tmp / "pad.yaml", "--device", "cpu", "--no-progress"]
    assert cli.main([str(a) for a in ["eval", *common, "--output", tmp / "eval.json"]]) == 0
    images = str(root / "leftImg8bit" / "val" / "*" / "*_leftImg8bit.png")
    assert (
        cli.main(
            [str(a) for a in ["predict", *common, images, "--output", tmp / "pred", "--format", "cityscapes"]]
        )
        == 0
    )
    return root, json.loads((tmp / "eval.json").read_text()), tmp / "pred", ckpt


def test_predict_writes_exactly_what_eval_scores_with_pad_to(cityscapes_run):
    root, scores, pred, _ = cityscapes_run
    results = sorted((pred / "results").iterdir())
    assert [p.name for p in results] == [
        "frankfurt_000000_000019_leftImg8bit.png",
        "frankfurt_000001_000019_leftImg8bit.png",
    ]
    # An independent confusion matrix: label IDs back to train IDs with the table above, plain numpy.
    to_train = np.full(256, 255, dtype=np.int64)
    to_train[LABEL_IDS] = np.arange(19)
    matrix = np.zeros((19, 19), dtype=np.int64)
    for path in results:
        city = path.name.split("_")[0]
        gt = root / "gtFine" / "val" / city / path.name.replace("_leftImg8bit.png", "_gtFine_labelIds.png")
        predicted = np.asarray(Image.open(path))
        assert Image.open(path).mode == "L" and set(np.unique(predicted)) <= set(LABEL_IDS)
        truth, guess = to_train[np.asarray(Image.open(gt))], to_train[predicted]
        keep = truth != 255
        np.add.at(matrix, (truth[keep], guess[keep]), 1)
    assert np.array_equal(matrix, np.array(scores["confusion_matrix"]))
    assert scores["config"]["eval"]["pad_to"] == PAD_TO
    assert len(np.flatnonzero(matrix.sum(0))) >= 2  # the random model predicts more than one class


def test_pad_to_changes_the_predictions_so_the_test_above_sees_it(cityscapes_run):
    root, _, pred, ckpt = cityscapes_run
    from deeplabv3plus.loading import load_model_from_checkpoint

    model, cfg = load_model_from_checkpoint(ckpt, device="cpu")
    path = sorted((root / "leftImg8bit" / "val").glob("*/*.png"))[0]
    x = Preprocess(cfg.data.mean, cfg.data.std)(np.asarray(Image.open(path).convert("RGB")))
    padded = segment_eval(model, x, EvalConfig(pad_to=PAD_TO))[0]
    plain = segment_eval(model, x, EvalConfig())[0]
    assert (padded != plain).any()
    written = np.asarray(Image.open(pred / "results" / path.name))
    assert np.array_equal(written, np.array(LABEL_IDS)[padded.numpy()])


def _official_evaluator(monkeypatch, gt_root: Path, results: Path) -> dict:
    """cityscapesScripts' evaluator, in-process, on ``gt_root``'s val split and the ``results`` folder."""
    ev = pytest.importorskip("cityscapesscripts.evaluation.evalPixelLevelSemanticLabeling")
    if not hasattr(np, "in1d"):
        # numpy 2.4 removed np.in1d (deprecated since 2.0); the evaluator's instance path calls it
        # for its category masks. np.isin(...).ravel() is what in1d returned.
        monkeypatch.setattr(
            np, "in1d", lambda a, b, invert=False: np.isin(a, b, invert=invert).ravel(), raising=False
        )
    args = ev.args
    for key, value in {
        "cityscapesPath": str(gt_root), "predictionPath": str(results), "predictionWalk": None,
        "JSONOutput": False, "quiet": True, "colorized": False, "evalInstLevelScore": True,
    }.items():  # fmt: skip
        monkeypatch.setattr(args, key, value)
    gt = sorted(glob.glob(str(gt_root / "gtFine" / "val" / "*" / "*_gtFine_labelIds.png")))
    return ev.evaluateImgLists([ev.getPrediction(args, g) for g in gt], gt, args)


def _same(official: float, ours) -> bool:
    return ours is None if math.isnan(official) else ours is not None and abs(official - ours) < 1e-6


def test_the_official_evaluator_scores_the_submission_as_eval_does(cityscapes_run, monkeypatch):
    root, scores, pred, _ = cityscapes_run
    official = _official_evaluator(monkeypatch, root, pred / "results")
    assert abs(official["averageScoreClasses"] - scores["mIoU"]) < 1e-6
    for name, iou in scores["per_class_iou"].items():
        assert _same(official["classScores"][name], iou), name
    assert _same(official["averageScoreCategories"], scores["category_mIoU"])
    for name, iou in scores["per_category_iou"].items():
        assert _same(official["categoryScores"][name], iou), name
    assert _same(official["averageScoreInstClasses"], scores["iIoU"])
    for name, iiou in scores["per_class_iiou"].items():
        assert _same(official["classInstScores"][name], iiou), name
    assert _same(official["averageScoreInstCategories"], scores["category_iIoU"])
    for name, iiou in scores["per_category_iiou"].items():
        assert _same(official["categoryInstScores"][name], iiou), name


def test_category_iou_and_iiou_match_the_official_evaluator_on_noisy_predictions(tmp_path, monkeypatch):
    # Ground truth with random blocks of random classes: every score is non-trivial.
    root = make_synthetic_cityscapes(tmp_path / "cs", num_images=9, instance_ids=True, size=(48, 96))
    to_train = np.full(256, 255, dtype=np.int64)
    to_train[LABEL_IDS] = np.arange(19)
    rng = np.random.default_rng(0)
    matrix, meter = ConfusionMatrix(19), CityscapesMeter()
    (tmp_path / "results").mkdir()
    for gt in sorted((root / "gtFine" / "val").glob("*/*_gtFine_labelIds.png")):
        truth = to_train[np.asarray(Image.open(gt))]
        guess = np.where(truth == 255, 0, truth)
        for _ in range(6):
            y, x = rng.integers(0, 40), rng.integers(0, 88)
            guess[y : y + rng.integers(2, 20), x : x + rng.integers(2, 40)] = rng.integers(0, 19)
        name = gt.name.replace("_gtFine_labelIds.png", "_leftImg8bit.png")
        Image.fromarray(encode_labels("cityscapes", guess), mode="L").save(tmp_path / "results" / name)
        instances = np.asarray(Image.open(str(gt).replace("labelIds", "instanceIds"))).astype(np.int64)
        matrix.update(torch.from_numpy(guess), torch.from_numpy(truth))
        meter.update(torch.from_numpy(guess)[None], torch.from_numpy(instances)[None])
    ours = meter.compute(matrix)
    official = _official_evaluator(monkeypatch, root, tmp_path / "results")
    assert abs(official["averageScoreClasses"] - matrix.compute()["miou"]) < 1e-9
    assert sum(v is not None and v > 0 for v in ours["per_class_iiou"].values()) >= 2
    for key, official_key in [("per_category_iou", "categoryScores"), ("per_class_iiou", "classInstScores"),
                              ("per_category_iiou", "categoryInstScores")]:  # fmt: skip
        for name, value in ours[key].items():
            assert _same(official[official_key][name], value), (key, name)
    assert _same(official["averageScoreCategories"], ours["category_mIoU"])
    assert _same(official["averageScoreInstClasses"], ours["iIoU"])
    assert _same(official["averageScoreInstCategories"], ours["category_iIoU"])


def test_cityscapes_overlays_go_to_their_own_folder_and_the_results_hold_only_predictions(cityscapes_run):
    _, _, pred, _ = cityscapes_run
    assert sorted(p.name for p in pred.iterdir()) == ["overlays", "results"]
    assert all(p.name.endswith("_overlay.jpg") for p in (pred / "overlays").iterdir())


def _write_images(folder: Path, names: list[str], size=(33, 33)) -> list[Path]:
    rng = np.random.default_rng(1)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in names:
        Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(folder / name)
        paths.append(folder / name)
    return paths


def test_voc_format_writes_the_devkit_results_layout_and_the_archive(tmp_path, capsys):
    ckpt = _checkpoint(tmp_path / "voc.pth", "voc", 21)
    paths = _write_images(tmp_path / "in", ["2008_000001.png", "2008_000002.png"])
    out = _run(["predict", "--checkpoint", ckpt, tmp_path / "in", "--output", tmp_path / "o", "--format", "voc",
                "--device", "cpu", "--no-progress"], capsys)  # fmt: skip
    folder = tmp_path / "o" / "results" / "VOC2012" / "Segmentation" / "comp6_test_cls"
    from deeplabv3plus.loading import load_model_from_checkpoint

    model, cfg = load_model_from_checkpoint(ckpt, device="cpu")
    for path in paths:
        with Image.open(folder / f"{path.stem}.png") as im:
            assert im.mode == "P" and np.array_equal(
                np.asarray(im.getpalette()[:63]), voc_palette(21).reshape(-1)
            )
            x = Preprocess(cfg.data.mean, cfg.data.std)(np.asarray(Image.open(path).convert("RGB")))
            assert np.array_equal(np.asarray(im), segment_eval(model, x, cfg.eval)[0].numpy())
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["overlays", "results", "results.tar.gz"]
    with tarfile.open(tmp_path / "o" / "results.tar.gz") as tar:
        members = sorted(m.name for m in tar.getmembers() if m.isfile())
        assert members == [f"results/VOC2012/Segmentation/comp6_test_cls/{p.stem}.png" for p in paths]
        data = tar.extractfile(members[0]).read()
    assert data == (folder / f"{paths[0].stem}.png").read_bytes()
    assert f"wrote {tmp_path / 'o' / 'results.tar.gz'}" in out


@pytest.mark.parametrize("convention, num_classes", [("reduce_zero", 150), ("reference", 151)])
def test_ade20k_format_writes_the_annotation_values_and_a_zip(tmp_path, capsys, convention, num_classes):
    labels = np.array([[0, 1], [149, 5]])
    shift = 1 if convention == "reduce_zero" else 0  # class i is annotation value i + 1 under reduce_zero
    assert np.array_equal(encode_labels("ade20k", labels, convention), labels + shift)
    ignore = 255 if convention == "reduce_zero" else 0
    ckpt = _checkpoint(
        tmp_path / "ade.pth", "ade20k", num_classes, label_convention=convention, ignore_index=ignore
    )
    _write_images(tmp_path / "in", ["ADE_test_00000001.jpg"])
    _run(["predict", "--checkpoint", ckpt, tmp_path / "in", "--output", tmp_path / "o", "--format", "ade20k",
          "--no-overlay", "--device", "cpu", "--no-progress"], capsys)  # fmt: skip
    written = tmp_path / "o" / "results" / "ADE_test_00000001.png"
    values = np.asarray(Image.open(written))
    assert Image.open(written).mode == "L" and values.max() <= 150 and (values.min() >= 1 or shift == 0)
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["results", "results.zip"]  # no overlays
    with zipfile.ZipFile(tmp_path / "o" / "results.zip") as zf:
        assert (
            zf.namelist() == ["ADE_test_00000001.png"] and zf.read(zf.namelist()[0]) == written.read_bytes()
        )


def test_overlay_leaves_the_background_class_as_the_photo():
    rgb = np.random.default_rng(2).integers(0, 256, (4, 5, 3), dtype=np.uint8)
    labels = np.zeros((4, 5), dtype=np.int64)
    labels[1:3, 1:4] = 15
    out = colour_overlay(rgb, labels, alpha=0.5, background=0)
    assert np.array_equal(out[labels == 0], rgb[labels == 0])
    blend = np.rint(0.5 * rgb[labels == 15] + 0.5 * voc_palette()[15].astype(np.float64))
    assert np.array_equal(out[labels == 15], blend.astype(np.uint8))
    assert [background_class(layout) for layout in ("voc", "voc_aug", "synthetic", "folders")] == [0] * 4
    assert background_class("cityscapes") is None  # class 0 is road
    assert background_class("ade20k", "reference") == 0 and background_class("ade20k", "reduce_zero") is None


def test_predict_reports_class_shares_and_writes_to_a_default_folder(tmp_path, capsys, monkeypatch):
    ckpt = _checkpoint(tmp_path / "best.pth", "voc", 21)
    _write_images(tmp_path / "in", ["a.png", "b.png"], size=(33, 41))
    monkeypatch.chdir(tmp_path)
    out = _run(
        ["predict", "--checkpoint", ckpt, "in", "--no-overlay", "--device", "cpu", "--no-progress"], capsys
    )
    folder = Path("predictions") / "best"
    assert sorted(p.name for p in folder.iterdir()) == ["a.png", "b.png"]  # no overlays
    lines = out.splitlines()
    assert f"into {folder}/" in lines[0] and f"wrote 2 label PNGs (<name>.png) to {folder}" in out
    for name in ("a", "b"):
        (line,) = [line for line in lines if line.startswith(f"{name}.png: ")]
        labels = np.asarray(Image.open(folder / f"{name}.png"))
        counts = np.bincount(labels.reshape(-1), minlength=21)
        shares = [float(part.rsplit(" ", 1)[1].rstrip("%")) for part in line.split(": ", 1)[1].split(", ")]
        assert len(shares) == np.count_nonzero(counts) and shares == sorted(shares, reverse=True)
        assert abs(shares[0] - 100 * counts.max() / labels.size) < 0.051
    assert any(line.startswith("2 images, ") and "by share of all pixels" in line for line in lines)


def test_iiou_weights_each_instance_by_the_average_size_of_its_class_over_its_own():
    # One image: a person instance of 100 px (60 predicted person, 40 road) and 10 road px predicted
    # person; a second person instance of 20 px fully found. Person's average size: 3462.4756337644.
    truth = torch.zeros(10, 20, dtype=torch.long)  # road
    instances = torch.full((10, 20), 7, dtype=torch.long)  # label ID 7 (road), no instance
    truth[:, :10], instances[:, :10] = 11, 24000  # person instance 0: 100 px
    truth[:2, 10:20], instances[:2, 10:20] = 11, 24001  # person instance 1: 20 px
    pred = truth.clone()
    pred[6:, :10] = 0  # 40 px of instance 0 missed
    pred[5, 10:20] = 11  # 10 road px called person: false positives
    matrix, meter = ConfusionMatrix(19), CityscapesMeter()
    matrix.update(pred, truth)
    meter.update(pred[None], instances[None])
    scores = meter.compute(matrix)
    avg = 3462.4756337644
    tp, fn = 60 * avg / 100 + 20 * avg / 20, 40 * avg / 100
    assert abs(scores["per_class_iiou"]["person"] - tp / (tp + 10 + fn)) < 1e-12
    assert scores["per_class_iiou"]["car"] is None and scores["iIoU"] == scores["per_class_iiou"]["person"]
    # Categories: human = {person, rider}, flat = {road, sidewalk}: the class table in categories.
    assert scores["per_category_iou"]["human"] == 80 / (80 + 10 + 40)
    assert scores["per_category_iou"]["flat"] == 70 / (70 + 40 + 10)
    assert scores["per_category_iou"]["sky"] is None
