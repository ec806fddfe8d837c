"""The reference model zoo by name: entries, weights= on the builders, download/convert/cache, torch.hub.

The zoo's tarballs cannot be downloaded here, so the tests make their own the way the zoo packs them:
a model's weights under the reference variable names (tf_convert.to_tf_variables), written as a real
TF tensor bundle (tf_writer), in a .tar.gz next to a frozen graph, served from a file:// URL through
an entry of the same dataclass as the real ones.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from deeplabv3plus import (
    build_model,
    deeplabv3plus_resnet50,
    deeplabv3plus_xception41,
    deeplabv3plus_xception65,
)
from deeplabv3plus.data.voc_meta import VOC_CLASSES
from deeplabv3plus.loading import load_weights_model
from deeplabv3plus.weights import (
    DeepLabV3PlusXception65Weights,
    PretrainedWeights,
    PretrainedWeightsError,
    TFBackboneWeights,
    get_weights,
    list_weights,
    to_tf_variables,
    write_tf_checkpoint,
    zoo,
)
from deeplabv3plus.weights import download as zoo_download
from deeplabv3plus.weights.tf_names import KINDS

ROOT = Path(__file__).resolve().parents[2]
VOC = DeepLabV3PlusXception65Weights.XCEPTION65_COCO_VOC_TRAINAUG


def _perturb(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Non-trivial BN statistics and affine parameters, so that every tensor is distinct and checked."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.1, generator=g)
                m.running_var.uniform_(0.5, 1.5, generator=g)
                m.weight.uniform_(0.5, 1.5, generator=g)
                m.bias.normal_(0, 0.1, generator=g)
    return model.eval()


def pack_zoo_tarball(
    path: Path, folder: str, tf_variables: dict[str, np.ndarray], ckpt: str = "model.ckpt"
) -> str:
    """``folder/model.ckpt.{index,data-00000-of-00001}`` + ``folder/frozen_inference_graph.pb`` in a
    .tar.gz, as the model zoo ships them; returns its sha256. (gzip level 0: float noise does not compress.)"""
    work = path.parent / f"{path.name}.src"
    write_tf_checkpoint(work / folder / ckpt, tf_variables)
    (work / folder / "frozen_inference_graph.pb").write_bytes(b"not read by the converter")
    with tarfile.open(path, "w:gz", compresslevel=0) as tar:
        tar.add(work / folder, arcname=folder)
    for f in sorted(work.rglob("*"), reverse=True):
        f.unlink() if f.is_file() else f.rmdir()
    work.rmdir()
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def hub_dir(tmp_path, monkeypatch) -> Path:
    monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path / "hub"))
    return tmp_path / "hub"


def no_download(*args, **kwargs):
    raise AssertionError("downloaded although the converted weights are cached")


# --------------------------------------------------------------------------------------------------
# The entries


def test_every_entry_of_the_reference_zoo_is_there_with_its_published_metadata():
    assert list_weights(backbones=False) == [
        "xception65_coco_voc_trainaug",
        "xception65_coco_voc_trainval",
        "xception65_cityscapes_trainfine",
        "xception65_ade20k_train",
    ]
    assert list_weights(backbones=True) == [
        "xception_41", "xception_65", "xception_71", "xception_65_coco", "resnet_v1_50_beta", "resnet_v1_101_beta"
    ]  # fmt: skip
    figures = {
        str(w): [(r.metric, r.value, r.split, r.eval.output_stride, r.eval.flip) for r in w.results]
        for w in DeepLabV3PlusXception65Weights
    }
    assert figures == {
        "xception65_coco_voc_trainaug": [("mIoU", 82.20, "val", 16, False), ("mIoU", 83.58, "val", 8, True)],
        "xception65_coco_voc_trainval": [("mIoU", 87.80, "test", 8, True)],
        "xception65_cityscapes_trainfine": [
            ("mIoU", 78.79, "val", 16, False),
            ("mIoU", 80.42, "val", 8, True),
        ],
        "xception65_ade20k_train": [
            ("mIoU", 45.65, "val", 8, True),
            ("pixel accuracy", 82.52, "val", 8, True),
        ],
    }
    for w in list(DeepLabV3PlusXception65Weights) + list(TFBackboneWeights):
        assert w.kind in KINDS and w.url.startswith("https://download.tensorflow.org/models/")
        assert w.url.endswith(".tar.gz") and w.mean == w.std == (0.5, 0.5, 0.5)
        assert w.licence.startswith("Apache-2.0") and w.download_mb > 0
        assert len(w.class_names) == (w.num_classes or 0)
        assert w.eval == (w.results[0].eval if w.results else w.eval)


def test_dataset_conventions_of_the_entries():
    ade = get_weights("xception65_ade20k_train")
    assert ade.num_classes == 151 and ade.class_names[:2] == ("other", "wall") and ade.ignore_index == 0
    cityscapes = get_weights("xception65_cityscapes_trainfine")
    assert cityscapes.num_classes == 19 and cityscapes.ignore_index == 255
    assert cityscapes.eval.crop_size == (1025, 2049) and cityscapes.data_layout == "cityscapes"
    assert VOC.class_names == VOC_CLASSES and VOC.eval.pad_to == 513 and VOC.eval.output_stride == 16
    assert get_weights("xception65_coco_voc_trainval").eval.scales == (0.5, 0.75, 1.0, 1.25, 1.5, 1.75)


def test_a_name_a_member_and_an_entry_are_the_same_weights():
    assert (
        get_weights("xception65_coco_voc_trainaug") is VOC.value is get_weights(VOC) is get_weights(VOC.value)
    )
    assert get_weights("tf:resnet_v1_101_beta") is TFBackboneWeights.RESNET_V1_101_BETA.value
    assert VOC.url == VOC.value.url and str(VOC) == "xception65_coco_voc_trainaug"
    with pytest.raises(
        PretrainedWeightsError, match="unknown weights 'voc'; expected one of xception65_coco"
    ):
        get_weights("voc")


def test_config_of_an_entry_evaluates_it_as_published():
    cfg = VOC.config()
    assert (cfg.model.backbone, cfg.model.separable, cfg.model.decoder) == ("xception65", True, True)
    assert cfg.model.num_classes == cfg.data.num_classes == 21 and cfg.model.output_stride == 16
    assert (cfg.data.mean, cfg.data.std, cfg.data.layout) == ([0.5] * 3, [0.5] * 3, "voc")
    assert (cfg.eval.output_stride, cfg.eval.scales, cfg.eval.flip, cfg.eval.pad_to) == (
        16,
        [1.0],
        False,
        513,
    )
    ms = get_weights("xception65_coco_voc_trainval").config()
    assert (ms.eval.output_stride, ms.eval.flip, len(ms.eval.scales)) == (8, True, 6)


def test_preprocess_maps_a_pil_image_to_the_reference_range():
    rgb = np.random.default_rng(0).integers(0, 256, (7, 9, 3), dtype=np.uint8)
    preprocess = VOC.transforms()
    x = preprocess(Image.fromarray(rgb))
    assert x.shape == (1, 3, 7, 9) and x.dtype == torch.float32
    torch.testing.assert_close(x[0], torch.from_numpy(rgb).permute(2, 0, 1).float() / 127.5 - 1)
    torch.testing.assert_close(preprocess(rgb[None]), x)  # a (N, H, W, 3) batch as predict passes it
    batch = torch.from_numpy(rgb).permute(2, 0, 1).unsqueeze(0).repeat(2, 1, 1, 1)
    torch.testing.assert_close(preprocess(batch), x.repeat(2, 1, 1, 1))
    torch.testing.assert_close(preprocess(rgb), x)
    assert float(preprocess(Image.new("L", (3, 2), 255)).min()) == 1.0  # grey -> RGB
    with pytest.raises(ValueError, match=r"\(N, H, W, 3\) uint8 array, got float32"):
        preprocess(rgb.astype(np.float32))


# --------------------------------------------------------------------------------------------------
# Builder arguments that contradict an entry (checked before any download)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (
            dict(num_classes=19),
            r"num_classes=19 contradicts weights 'xception65_coco_voc_trainaug' \(num_classes=21\); leave",
        ),
        (dict(decoder=False), "decoder=False contradicts"),
        (dict(separable=False), "separable=False contradicts"),
        (dict(head_channels=64), "head_channels=64 contradicts"),
        (dict(aspp_rates=[12, 24, 36]), r"aspp_rates=\(12, 24, 36\) contradicts"),
        (dict(pretrained_backbone="tf:xception_65"), "the weights hold the backbone too"),
    ],
)
def test_contradicting_builder_arguments_are_a_clear_error(hub_dir, monkeypatch, kwargs, message):
    monkeypatch.setattr(torch.hub, "download_url_to_file", no_download)
    with pytest.raises(PretrainedWeightsError, match=message):
        deeplabv3plus_xception65(weights="xception65_coco_voc_trainaug", **kwargs)


def test_weights_of_another_backbone_or_a_backbone_entry_are_refused(hub_dir, monkeypatch):
    monkeypatch.setattr(torch.hub, "download_url_to_file", no_download)
    with pytest.raises(PretrainedWeightsError, match="for a xception65 model, not xception41"):
        deeplabv3plus_xception41(weights=VOC)
    with pytest.raises(PretrainedWeightsError, match="for a xception65 model, not resnet50"):
        deeplabv3plus_resnet50(weights=VOC)
    with pytest.raises(PretrainedWeightsError, match="pass pretrained_backbone='tf:xception_65' instead"):
        deeplabv3plus_xception65(weights="xception_65")
    with pytest.raises(PretrainedWeightsError, match="trained segmentation model: pass weights="):
        build_model("xception65", pretrained_backbone="tf:xception65_coco_voc_trainaug")


def test_offline_the_error_is_one_line_naming_the_url_and_where_to_put_the_file(hub_dir, monkeypatch):
    def offline(url, dst, **kwargs):
        raise OSError("Name or service not known")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    with pytest.raises(PretrainedWeightsError) as info:
        deeplabv3plus_xception65(weights="xception65_cityscapes_trainfine")
    message = str(info.value)
    expected = hub_dir / "deeplabv3plus" / "archives" / "deeplabv3_cityscapes_train_2018_02_06.tar.gz"
    assert "\n" not in message
    assert f"cannot download {get_weights('xception65_cityscapes_trainfine').url}" in message
    assert f"offline, put that file at '{expected}'" in message


# --------------------------------------------------------------------------------------------------
# The whole path, offline


@pytest.fixture(scope="module")
def voc_like(tmp_path_factory):
    """A DeepLabv3+ Xception-65 (the zoo's architecture, 21 classes) packed as a model-zoo tarball."""
    tmp = tmp_path_factory.mktemp("zoo")
    torch.manual_seed(0)
    original = _perturb(deeplabv3plus_xception65(num_classes=21), seed=1)
    tarball = tmp / "deeplabv3_test_voc.tar.gz"
    sha = pack_zoo_tarball(tarball, "deeplabv3_test_voc", to_tf_variables(original.state_dict(), VOC.kind))
    entry = dataclasses.replace(
        VOC.value,
        name="test_voc",
        url=tarball.as_uri(),
        checkpoint="deeplabv3_test_voc/model.ckpt",
        sha256=sha,
    )
    return original, entry


def _assert_same_weights(model: torch.nn.Module, original: dict[str, torch.Tensor]) -> None:
    ours = {k: v for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    assert ours.keys() == {k for k in original if not k.endswith("num_batches_tracked")}
    for key, value in ours.items():
        assert torch.equal(value, original[key]), key


@pytest.mark.slow
def test_weights_download_convert_and_cache_give_exactly_the_original_model(
    voc_like, hub_dir, monkeypatch, capsys
):
    original, entry = voc_like
    model = deeplabv3plus_xception65(weights=entry)
    assert not model.training and model.num_classes == 21 and model.output_stride == 16
    err = capsys.readouterr().err
    assert f"downloading test_voc (439 MB) from {entry.url}" in err and "wrote " in err
    _assert_same_weights(model, original.state_dict())
    x = VOC.transforms()(
        Image.fromarray(np.random.default_rng(2).integers(0, 256, (33, 41, 3), dtype=np.uint8))
    )
    with torch.no_grad():
        expected = original(x)
        torch.testing.assert_close(model(x), expected, rtol=0, atol=0)
    cached = hub_dir / "deeplabv3plus" / "converted" / "test_voc.pth"
    assert sorted(p.name for p in cached.parent.iterdir()) == ["test_voc.pth", "test_voc.pth.sha256"]
    assert zoo_download.sha256_record(cached).read_text().split()[0] == zoo_download.file_sha256(cached)
    archive = hub_dir / "deeplabv3plus" / "archives" / "deeplabv3_test_voc.tar.gz"
    assert zoo_download.sha256_record(archive).read_text().split()[0] == entry.sha256
    assert "recorded the tarball's sha256" in err
    assert not list((hub_dir / "deeplabv3plus" / "tmp").iterdir())  # the extracted members are gone

    # A second use loads the cache: no tarball, no network; through torch.hub from this checkout.
    (hub_dir / "deeplabv3plus" / "archives" / "deeplabv3_test_voc.tar.gz").unlink()
    monkeypatch.setattr(torch.hub, "download_url_to_file", no_download)
    del model
    hub_model = torch.hub.load(str(ROOT), "deeplabv3plus_xception65", source="local", weights=entry)
    assert not hub_model.training
    _assert_same_weights(hub_model, original.state_dict())  # the same tensors: the same outputs
    del hub_model

    # The scripts' loader, by name: the published config (with overrides) and the model.
    monkeypatch.setitem(zoo.WEIGHTS, entry.name, entry)
    overrides = ["data.root=/data/voc", "eval.output_stride=8"]
    model, cfg = load_weights_model("test_voc", overrides, prepare=False)
    assert cfg.data.root == "/data/voc" and cfg.eval.output_stride == 8 and cfg.eval.pad_to == 513
    assert not model.training
    _assert_same_weights(model, original.state_dict())
    # By default the inference copy (BN folded, channels_last): the same outputs to fp32 rounding.
    prepared, _ = load_weights_model("test_voc", overrides)
    assert prepared.prepared_for_inference and prepared.classifier.weight.is_contiguous(
        memory_format=torch.channels_last
    )
    with torch.no_grad():
        torch.testing.assert_close(prepared(x), expected, rtol=1e-4, atol=1e-4 * expected.abs().max().item())

    # A cached file that changed since it was written is never used: every load checks its sha256.
    with open(cached, "ab") as f:
        f.write(b"\0")
    with pytest.raises(PretrainedWeightsError, match=r"test_voc.pth' have sha256 .* not the .* recorded"):
        deeplabv3plus_xception65(weights=entry)


def test_output_stride_is_free_with_weights_and_defaults_to_the_published_one():
    given = dict(
        backbone="xception65", decoder=True, separable=True, aspp_rates=None, pretrained_backbone=None
    )
    for weights, os_given, os_built in [(VOC, None, 16), (VOC, 8, 8), ("xception65_ade20k_train", None, 8)]:
        _, args = zoo.resolve_builder_args(weights, dict(given, num_classes=None, output_stride=os_given))
        assert args["output_stride"] == os_built and args["num_classes"] == get_weights(weights).num_classes


def _narrow_entry() -> PretrainedWeights:
    """A zoo entry whose head differs from the builder's defaults: Xception-41, 16 channels, no decoder."""
    return dataclasses.replace(
        VOC.value,
        name="narrow_voc",
        backbone="xception41",
        head=zoo.HeadSpec(head_channels=16, decoder=False),
    )


def test_builder_adopts_the_architecture_of_a_zoo_entry(monkeypatch):
    entry = _narrow_entry()
    torch.manual_seed(0)
    original = _perturb(deeplabv3plus_xception41(num_classes=21, head_channels=16, decoder=False), seed=2)
    monkeypatch.setattr("deeplabv3plus.builders.load_state_dict", lambda e: original.state_dict())
    model = deeplabv3plus_xception41(weights=entry)  # head_channels and decoder left at their defaults
    assert model.build_args["head_channels"] == 16 and model.build_args["decoder"] is False
    assert model.build_args["weights"] == "narrow_voc" and model.output_stride == entry.eval.output_stride
    _assert_same_weights(model, original.state_dict())


def test_builder_refuses_an_explicit_contradiction_of_a_zoo_entry(monkeypatch):
    def no_weights(entry):
        raise AssertionError("the arguments are checked before any download")

    monkeypatch.setattr("deeplabv3plus.builders.load_state_dict", no_weights)
    with pytest.raises(PretrainedWeightsError, match=r"head_channels=256 contradicts weights 'narrow_voc'"):
        deeplabv3plus_xception41(weights=_narrow_entry(), head_channels=256)  # the default's value, passed
    with pytest.raises(PretrainedWeightsError, match=r"decoder=True contradicts"):
        deeplabv3plus_xception41(weights=_narrow_entry(), decoder=True)


def test_predict_command_applies_the_entrys_eval_settings(tmp_path, monkeypatch, capsys):
    import deeplabv3plus.loading
    import deeplabv3plus.predict
    from deeplabv3plus import cli

    calls, seen = [], {}

    def fake_loader(name, overrides=None, device="cpu", config=None):  # the real one: the test above
        calls.append(name)
        cfg = get_weights(name).config()
        return build_model("resnet18", num_classes=cfg.model.num_classes, head_channels=16).eval(), cfg

    real_predict = deeplabv3plus.predict.predict_files

    def spy(model, paths, out_dir, mean, std, eval_cfg, **kwargs):
        seen.update(mean=mean, **dataclasses.asdict(eval_cfg))
        return real_predict(model, paths, out_dir, mean, std, eval_cfg, **kwargs)

    # patched where they live: the predict command imports them when it runs
    monkeypatch.setattr(deeplabv3plus.loading, "load_weights_model", fake_loader)
    monkeypatch.setattr(deeplabv3plus.predict, "predict_files", spy)
    Image.fromarray(np.random.default_rng(3).integers(0, 256, (29, 37, 3), dtype=np.uint8)).save(
        tmp_path / "a.jpg"
    )
    args = [
        "--weights",
        "xception65_coco_voc_trainval",
        str(tmp_path / "a.jpg"),
        "--output",
        str(tmp_path / "out"),
    ]
    outputs = cli.run_predict(cli.parse_command_args("predict", [*args, "--no-flip", "--scales", "1.0"]))
    assert calls == ["xception65_coco_voc_trainval"] and [p.name for p in outputs[0]] == [
        "a.png",
        "a_overlay.jpg",
    ]
    assert seen["mean"] == [0.5] * 3 and seen["output_stride"] == 8  # as published: OS 8 ...
    assert seen["scales"] == [1.0] and seen["flip"] is False  # ... but the flags win
    assert "with xception65_coco_voc_trainval into" in (out := capsys.readouterr().out)
    assert "output stride 8, scales [1.0], flip False" in out


def test_eval_command_takes_weights_in_place_of_checkpoint(capsys):
    from deeplabv3plus import cli

    args = cli.parse_eval_args(["--weights", "xception65_coco_voc_trainaug", "data.root=/data/voc"])
    assert args.weights == "xception65_coco_voc_trainaug" and args.checkpoint is None
    assert args.overrides == ["data.root=/data/voc"]
    with pytest.raises(SystemExit):
        cli.parse_eval_args(["--weights", "x", "--checkpoint", "y.pt"])
    assert cli.run_command("eval", ["--weights", "nope"], "eval.py") == 2
    assert "unknown weights 'nope'" in capsys.readouterr().err


# --------------------------------------------------------------------------------------------------
# ImageNet backbones: tf:<name>, converted files (issue 7: num_batches_tracked), damaged downloads


@pytest.fixture(scope="module")
def r50_zoo(tmp_path_factory) -> tuple[PretrainedWeights, dict[str, torch.Tensor]]:
    """A resnet_v1_50_beta-like ImageNet checkpoint (with its 1001-way classifier and step counter)
    as a zoo tarball: its entry and the original backbone state_dict."""
    from deeplabv3plus.models import ResNet

    torch.manual_seed(0)
    backbone = _perturb(ResNet(50, "beta"), seed=0)
    tf = to_tf_variables(backbone.state_dict(), "resnet50_beta_imagenet")
    tf["resnet_v1_50/logits/weights"] = np.zeros((1, 1, 2048, 1001), np.float32)
    tf["resnet_v1_50/logits/biases"] = np.zeros((1001,), np.float32)
    tf["global_step"] = np.int64(1)
    tarball = tmp_path_factory.mktemp("r50") / "resnet_v1_50_test.tar.gz"
    sha = pack_zoo_tarball(tarball, "resnet_v1_50", tf)
    entry = dataclasses.replace(
        TFBackboneWeights.RESNET_V1_50_BETA.value, name="test_r50", url=tarball.as_uri(), sha256=sha
    )
    return entry, backbone.state_dict()


def test_tf_backbone_source_downloads_converts_caches_and_loads_the_backbone(r50_zoo, hub_dir, monkeypatch):
    entry, original = r50_zoo
    monkeypatch.setitem(zoo.WEIGHTS, entry.name, entry)
    model = build_model(
        "resnet50", resnet_variant="beta", pretrained_backbone="tf:test_r50", head_channels=16
    )
    _assert_same_weights(model.backbone, original)
    monkeypatch.setattr(torch.hub, "download_url_to_file", no_download)
    zoo_download.archive_path(entry).unlink()
    assert zoo_download.load_state_dict(entry).keys() == {k for k in original if "num_batches" not in k}


def test_converted_imagenet_backbone_file_loads_as_pretrained_backbone(r50_zoo, tmp_path):
    """The documented route: convert_tf_checkpoint.py --kind ..._imagenet -> PATH -> pretrained_backbone=PATH."""
    entry, original = r50_zoo
    with tarfile.open(entry.url.removeprefix("file://")) as tar:
        tar.extractall(tmp_path / "x", filter="data")
    from deeplabv3plus import cli

    out = tmp_path / "resnet50_beta_imagenet_tf.pth"
    prefix = tmp_path / "x" / "resnet_v1_50" / "model.ckpt"
    argv = ["--checkpoint", str(prefix), "--kind", "resnet50_beta_imagenet", "--output", str(out)]
    assert cli.run_command("convert", argv, "convert_tf_checkpoint.py") == 0
    assert not any("num_batches_tracked" in k for k in torch.load(out, weights_only=True))
    model = build_model("resnet50", resnet_variant="beta", pretrained_backbone=str(out), head_channels=16)
    _assert_same_weights(model.backbone, original)


def test_an_interrupted_conversion_leaves_no_cache_file(r50_zoo, hub_dir, monkeypatch):
    entry, _ = r50_zoo

    def killed(state, path):  # the process dies while writing the converted file
        raise KeyboardInterrupt

    monkeypatch.setattr(zoo_download, "save_checkpoint", killed)
    with pytest.raises(KeyboardInterrupt):
        zoo_download.load_state_dict(entry, progress=False)
    assert not zoo_download.converted_path(entry).parent.exists()
    assert not list((hub_dir / "deeplabv3plus" / "tmp").iterdir())


def test_a_damaged_download_is_deleted_and_never_cached(r50_zoo, hub_dir, tmp_path):
    entry, _ = r50_zoo
    half = tmp_path / "half.tar.gz"  # a connection that closed early
    with open(entry.url.removeprefix("file://"), "rb") as f:
        half.write_bytes(f.read(10_000_000))
    entry = dataclasses.replace(entry, url=half.as_uri(), sha256=None)
    with pytest.raises(PretrainedWeightsError, match="not a complete tar.gz.*the download was deleted"):
        zoo_download.load_state_dict(entry, progress=False)
    assert not zoo_download.archive_path(entry).exists() and not zoo_download.converted_path(entry).exists()


def test_a_tarball_with_the_wrong_sha256_is_refused(r50_zoo, hub_dir):
    entry = dataclasses.replace(r50_zoo[0], sha256="0" * 64)
    with pytest.raises(PretrainedWeightsError, match="does not have the recorded sha256"):
        zoo_download.load_state_dict(entry, progress=False)
    assert not zoo_download.archive_path(entry).exists()


def test_hubconf_exposes_the_builders_with_their_arguments():
    model = torch.hub.load(
        str(ROOT), "deeplabv3plus_resnet18", source="local", num_classes=3, head_channels=16
    )
    assert model.num_classes == 3
    with torch.no_grad():
        assert model.eval()(torch.randn(1, 3, 33, 33)).shape == (1, 3, 33, 33)
    spec = importlib.util.spec_from_file_location("hubconf", ROOT / "hubconf.py")
    hubconf = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hubconf)
    assert {"deeplabv3plus_xception65", "deeplabv3plus_resnet101"} <= set(hubconf.__all__)
    assert {"torch", "torchvision"} <= set(hubconf.dependencies)


def test_a_cached_file_of_another_source_is_not_trusted(hub_dir, monkeypatch):
    from deeplabv3plus.checkpoint import save_checkpoint

    entry = get_weights("xception65_cityscapes_trainfine")
    stale = {
        "model": {"classifier.bias": torch.zeros(19)},
        "source": {"name": entry.name, "url": "elsewhere"},
    }
    save_checkpoint(stale, zoo_download.converted_path(entry))

    def offline(url, dst, **kwargs):
        raise OSError("no network")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    with pytest.raises(PretrainedWeightsError, match="offline, put that file at"):
        zoo_download.load_state_dict(entry)


def test_cityscapes_and_ade20k_entries_configure_their_dataset_readers():
    from deeplabv3plus.config import validate_config

    cityscapes = get_weights("xception65_cityscapes_trainfine").config()
    assert cityscapes.data.layout == "cityscapes" and cityscapes.eval.pad_to == [1025, 2049]
    ade = get_weights("xception65_ade20k_train").config()
    assert (ade.data.layout, ade.data.label_convention, ade.data.ignore_index) == ("ade20k", "reference", 0)
    for cfg in (cityscapes, ade):
        validate_config(cfg)  # the readers accept what the entries ask for


# --------------------------------------------------------------------------------------------------
# The ImageNet + COCO Xception-65 (tf:xception_65_coco): a backbone from a checkpoint that may hold a head


def test_the_coco_xception_entry_names_its_tarball_and_checkpoint_path():
    coco = TFBackboneWeights.XCEPTION_65_COCO
    assert coco.url == "https://download.tensorflow.org/models/xception_65_coco_pretrained_2018_10_02.tar.gz"
    assert coco.checkpoint == "xception_65_coco_pretrained/x65-b2u1s2p-d48-2-3x256-sc-cr300k_init.ckpt"
    assert coco.kind == "xception65_imagenet" and coco.backbone == "xception65" and coco.is_backbone
    assert coco.skip_head and "not confirmed" in coco.notes
    assert not any(w.skip_head for w in list(TFBackboneWeights) if w is not coco)


@pytest.mark.slow  # a 100 MB tarball written and converted (~5 s on 2 quiet cores)
def test_a_backbone_entry_with_skip_head_loads_the_backbone_and_reports_the_head_variables(
    hub_dir, monkeypatch, tmp_path, capsys
):
    """A COCO-like tarball: an Xception backbone + ASPP/decoder/logits variables + a step counter, at
    the COCO entry's path; the backbone loads exactly, the 72 head variables are skipped and counted.
    (Xception-41 stands in for 65 to keep the file small; the head scopes do not depend on depth.)"""
    from deeplabv3plus.models import Xception
    from deeplabv3plus.weights.tf_convert import target_module
    from deeplabv3plus.weights.tf_names import name_map

    torch.manual_seed(0)
    backbone = _perturb(Xception(41), seed=3)
    tf = to_tf_variables(backbone.state_dict(), "xception41_imagenet")
    with torch.device("meta"):
        shapes = {k: v.shape for k, v in target_module("xception65_deeplab", 21).state_dict().items()}
    rng = np.random.default_rng(0)
    head = {p.tf_name: rng.standard_normal(shapes[p.key], dtype=np.float32) for p in name_map("xception65_deeplab")
            if not p.tf_name.startswith("xception_65/")}  # fmt: skip
    assert (
        len(head) == 72
        and "aspp1_depthwise/depthwise_weights" in head
        and "decoder/decoder_conv1_pointwise/weights" in head
    )
    tf.update(head, global_step=np.int64(300000))
    coco = TFBackboneWeights.XCEPTION_65_COCO.value
    folder, ckpt = coco.checkpoint.split("/")
    tarball = tmp_path / "xception_41_coco_test.tar.gz"
    sha = pack_zoo_tarball(tarball, folder, tf, ckpt=ckpt)
    entry = dataclasses.replace(coco, name="test_x41_coco", url=tarball.as_uri(), kind="xception41_imagenet",
                                backbone="xception41", sha256=sha)  # fmt: skip
    monkeypatch.setitem(zoo.WEIGHTS, entry.name, entry)
    model = build_model("xception41", pretrained_backbone="tf:test_x41_coco", head_channels=16)
    _assert_same_weights(model.backbone, backbone.state_dict())
    err = capsys.readouterr().err
    assert "test_x41_coco: the checkpoint also holds 72 variable(s) of a DeepLab head" in err
    assert "only the backbone is loaded" in err

    # Without skip_head (every other backbone entry) the same variables are refused, naming the extras.
    from deeplabv3plus.weights.tf_convert import IncompleteConversionError, convert

    with pytest.raises(IncompleteConversionError, match=r"72 unmapped variable\(s\)"):
        convert(tf, "xception41_imagenet")
    assert convert(tf, "xception41_imagenet", skip_head=True).keys() == model.backbone.state_dict().keys() - {
        k for k in model.backbone.state_dict() if k.endswith("num_batches_tracked")
    }
