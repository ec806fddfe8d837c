"""predict: label PNGs in the VOC palette that read back to the predicted class indices."""

import dataclasses

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image

from deeplabv3plus.data.transforms import Preprocess
from deeplabv3plus.data.voc_meta import voc_palette
from deeplabv3plus.inference import segment
from deeplabv3plus.predict import PredictSettings, collect_inputs, colour_overlay, predict_files, predict_run

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


class StandIn(nn.Module):
    """A strided conv + bilinear upsampling: image-dependent predictions over 5 classes."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 5, 3, stride=2, padding=1)
        self.output_stride = 16
        self.batch_sizes = []

    def forward(self, x):
        self.batch_sizes.append(x.shape[0])
        return F.interpolate(self.conv(x) * 10, size=x.shape[-2:], mode="bilinear", align_corners=True)


def _write_images(folder, sizes):
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, (h, w) in enumerate(sizes):
        p = folder / f"img{i}.png"  # lossless, so the test reads the same pixels as predict
        Image.fromarray(rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)).save(p)
        paths.append(p)
    return paths


def test_label_pngs_read_back_to_the_predicted_indices(tmp_path):
    paths = _write_images(tmp_path / "in", [(20, 30), (20, 30), (17, 13)])
    model = StandIn()
    settings = PredictSettings(batch_size=2, progress=False, prepare=False)
    outputs = predict_files(model, paths, tmp_path / "out", MEAN, STD, settings=settings)
    assert model.batch_sizes == [2, 1]  # the two 20x30 images share a pass
    for path, (label_png, overlay) in zip(paths, outputs):
        rgb = np.asarray(Image.open(path).convert("RGB"))
        expected = segment(model, Preprocess(MEAN, STD)(rgb))[0].numpy()
        with Image.open(label_png) as im:
            assert im.mode == "P"
            assert np.array_equal(np.asarray(im), expected)
            assert np.array_equal(np.asarray(im.getpalette()[: 3 * 5]), voc_palette(5).reshape(-1))
        assert label_png.name == f"{path.stem}.png" and overlay.name == f"{path.stem}_overlay.jpg"
        assert Image.open(overlay).size == Image.open(path).size


def test_overlay_blends_class_colours_over_the_image():
    rgb = np.full((2, 2, 3), 200, dtype=np.uint8)
    labels = np.array([[0, 1], [2, 15]])
    out = colour_overlay(rgb, labels, alpha=0.25)
    expected = np.rint(0.75 * 200 + 0.25 * voc_palette()[labels].astype(np.float64))
    assert np.array_equal(out, expected.astype(np.uint8))


def test_inputs_may_be_files_folders_and_globs(tmp_path):
    a = _write_images(tmp_path / "a", [(8, 8), (8, 8)])
    (tmp_path / "a" / "notes.txt").write_text("not an image")
    b = _write_images(tmp_path / "b", [(8, 8)])
    b = [b[0].rename(tmp_path / "b" / "other.png")]
    assert collect_inputs([tmp_path / "a"]) == a
    assert collect_inputs([str(tmp_path / "b" / "*.png"), a[1]]) == b + [a[1]]
    with pytest.raises(FileNotFoundError, match="no image"):
        collect_inputs([str(tmp_path / "missing*.jpg")])
    with pytest.raises(ValueError, match="share the stem"):
        collect_inputs([a[0], tmp_path / "a" / "img0.png", *_write_images(tmp_path / "c", [(8, 8)])])


def test_script_runs_a_training_checkpoint(tmp_path):
    from deeplabv3plus import build_model
    from deeplabv3plus.config import Config, config_to_dict

    cfg = Config()
    cfg.model.backbone, cfg.model.num_classes, cfg.data.num_classes = "resnet50", 3, 3
    model = build_model(**dataclasses.asdict(cfg.model)).eval()
    torch.save({"model": model.state_dict(), "config": config_to_dict(cfg)}, tmp_path / "ckpt.pt")
    paths = _write_images(tmp_path / "in", [(33, 41)])
    from deeplabv3plus import cli

    outputs = cli.run_predict(cli.parse_command_args("predict",
        ["--checkpoint", str(tmp_path / "ckpt.pt"), str(tmp_path / "in"), "--output", str(tmp_path / "out"),
         "--device", "cpu", "--flip", "--overlay-ext", ".png"]
    ))  # fmt: skip
    rgb = np.asarray(Image.open(paths[0]).convert("RGB"))
    expected = segment(model, Preprocess(cfg.data.mean, cfg.data.std)(rgb), flip=True)[0].numpy()
    assert np.array_equal(np.asarray(Image.open(outputs[0][0])), expected)
    assert outputs[0][1].suffix == ".png"


@pytest.mark.parametrize("layout", ["cityscapes", "ade20k"])
def test_predictions_use_the_palette_of_the_checkpoints_dataset_and_the_slide_flags(tmp_path, layout):
    from deeplabv3plus import build_model
    from deeplabv3plus.config import Config, config_to_dict
    from deeplabv3plus.data.ade20k_meta import ADE20K_PALETTE
    from deeplabv3plus.data.cityscapes_meta import CITYSCAPES_PALETTE
    from deeplabv3plus.predict import dataset_palette

    cfg = Config()
    num_classes = 19 if layout == "cityscapes" else 151
    cfg.model.backbone, cfg.model.head_channels = "resnet18", 8
    cfg.model.num_classes = cfg.data.num_classes = num_classes
    cfg.data.layout = layout
    model = build_model(**dataclasses.asdict(cfg.model)).eval()
    torch.save({"model": model.state_dict(), "config": config_to_dict(cfg)}, tmp_path / "ckpt.pt")
    paths = _write_images(tmp_path / "in", [(33, 57)])
    from deeplabv3plus import cli

    outputs = cli.run_predict(cli.parse_command_args("predict",
        ["--checkpoint", str(tmp_path / "ckpt.pt"), str(paths[0]), "--output", str(tmp_path / "out"),
         "--device", "cpu", "--mode", "slide", "--crop-size", "33", "41", "--stride", "16", "--overlay-ext", ".png"]
    ))  # fmt: skip
    rgb = np.asarray(Image.open(paths[0]).convert("RGB"))
    x = Preprocess(cfg.data.mean, cfg.data.std)(rgb)
    expected = segment(model, x, mode="slide", crop_size=(33, 41), stride=16)[0].numpy()
    palette = dataset_palette(layout)
    colours = CITYSCAPES_PALETTE if layout == "cityscapes" else ((0, 0, 0), *ADE20K_PALETTE)  # "other" black
    assert np.array_equal(palette[: len(colours)], np.array(colours, dtype=np.uint8))
    with Image.open(outputs[0][0]) as im:
        assert np.array_equal(np.asarray(im), expected)  # indices read back
        assert np.array_equal(
            np.asarray(im.getpalette()[: 3 * len(colours)]), palette[: len(colours)].reshape(-1)
        )
    overlay = np.asarray(Image.open(outputs[0][1])).astype(np.float64)
    blend = 0.5 * rgb + 0.5 * palette[expected]
    if layout == "ade20k":  # "other" (class 0) stays the photo; Cityscapes' class 0 is road
        blend[expected == 0] = rgb[expected == 0]
    assert np.abs(overlay - blend).max() <= 0.5


def test_resize_to_range_feeds_the_model_evals_input_and_writes_labels_at_the_images_size(tmp_path):
    from torchvision import tv_tensors

    from deeplabv3plus.config import DataConfig
    from deeplabv3plus.data.transforms import eval_transform, resize_labels_back, resize_to_range_for

    cfg = DataConfig(min_resize_value=33, max_resize_value=65)  # ADE20K's protocol, at a small size
    paths = _write_images(tmp_path / "in", [(40, 60), (40, 60), (30, 22)])
    model, seen = StandIn(), []
    model.register_forward_pre_hook(lambda module, args: seen.append(args[0].clone()))
    settings = PredictSettings(
        batch_size=2, progress=False, prepare=False, overlay=False, resize=resize_to_range_for(cfg)
    )
    outputs = predict_files(model, paths, tmp_path / "out", cfg.mean, cfg.std, settings=settings)
    inputs = [x for batch in seen for x in batch]
    for path, (label_png, _), x in zip(paths, outputs, inputs):
        rgb = np.array(Image.open(path).convert("RGB"))  # a writable copy, as torch.from_numpy wants
        image = tv_tensors.Image(torch.from_numpy(rgb).permute(2, 0, 1).contiguous())
        label = tv_tensors.Mask(torch.zeros(rgb.shape[:2], dtype=torch.uint8))
        expected_input, _ = eval_transform(cfg)(image, label)
        assert x.shape[-2:] != rgb.shape[:2]  # really resized
        torch.testing.assert_close(x, expected_input, atol=0, rtol=0)  # what eval feeds the model
        with torch.no_grad():
            at_eval_size = model(x[None]).argmax(1)
        expected = resize_labels_back(at_eval_size, rgb.shape[:2])[0].numpy()
        with Image.open(label_png) as im:
            assert np.array_equal(np.asarray(im), expected)  # back at the image's own size


def _voc_config(num_classes=5):
    from deeplabv3plus.config import Config

    cfg = Config()
    cfg.model.num_classes = cfg.data.num_classes = num_classes
    cfg.data.mean, cfg.data.std = list(MEAN), list(STD)
    cfg.eval.scales, cfg.eval.flip = [1.0], False
    return cfg


def test_predict_run_writes_one_png_per_image_and_says_where(tmp_path, capsys):
    paths = _write_images(tmp_path / "in", [(20, 30), (17, 13)])
    model = StandIn()
    settings = PredictSettings(progress=False, prepare=False, overlay=False)
    outputs = predict_run(model, _voc_config(), paths, tmp_path / "out", settings, source="stand-in.pth")
    assert [label.name for label, _ in outputs] == ["img0.png", "img1.png"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["img0.png", "img1.png"]  # no overlays
    for path, (label_png, overlay) in zip(paths, outputs):
        rgb = np.asarray(Image.open(path).convert("RGB"))
        assert np.array_equal(
            np.asarray(Image.open(label_png)), segment(model, Preprocess(MEAN, STD)(rgb))[0]
        )
        assert overlay is None
    out = capsys.readouterr().out
    assert "predicting 2 images with stand-in.pth" in out and "scales [1.0], flip False" in out
    assert f"wrote 2 label PNGs (<name>.png) to {tmp_path / 'out'}" in out


def test_predict_run_voc_format_writes_the_devkit_layout_and_the_archive(tmp_path, capsys):
    import tarfile

    paths = _write_images(tmp_path / "in", [(16, 16)])
    settings = PredictSettings(fmt="voc", progress=False, prepare=False)
    outputs = predict_run(StandIn(), _voc_config(21), paths, tmp_path / "out", settings)
    label, overlay = outputs[0]
    assert label == tmp_path / "out" / "results" / "VOC2012" / "Segmentation" / "comp6_test_cls" / "img0.png"
    assert overlay == tmp_path / "out" / "overlays" / "img0_overlay.jpg"
    with tarfile.open(tmp_path / "out" / "results.tar.gz") as tar:
        assert "results/VOC2012/Segmentation/comp6_test_cls/img0.png" in tar.getnames()
    assert f"wrote {tmp_path / 'out' / 'results.tar.gz'} (the file to upload)" in capsys.readouterr().out


def test_predict_run_refuses_a_format_the_models_dataset_does_not_fit_before_writing(tmp_path):
    paths = _write_images(tmp_path / "in", [(16, 16)])
    with pytest.raises(
        ValueError,
        match="--format voc needs a model of data.layout voc or voc_aug or synthetic or folders, data.num_classes=21",
    ):
        predict_run(StandIn(), _voc_config(5), paths, tmp_path / "out", PredictSettings(fmt="voc"))
    assert not (tmp_path / "out").exists()


def test_predict_run_takes_the_palette_from_the_models_dataset(tmp_path):
    from deeplabv3plus.predict import dataset_palette

    cfg = _voc_config(19)
    cfg.data.layout = "cityscapes"
    paths = _write_images(tmp_path / "in", [(16, 16)])
    settings = PredictSettings(progress=False, prepare=False, overlay=False)  # palette None: VOC's
    label_png, _ = predict_run(StandIn(), cfg, paths, tmp_path / "out", settings)[0]
    with Image.open(label_png) as im:
        assert np.array_equal(np.asarray(im.getpalette()[:15]), dataset_palette("cityscapes")[:5].reshape(-1))


@pytest.mark.parametrize(
    "field, value, message",
    [("fmt", "jpeg", "format"), ("alpha", 1.5, "alpha"), ("overlay_ext", ".gif", "overlay_ext")],
)
def test_predict_settings_refuse_values_no_run_could_use(field, value, message):
    with pytest.raises(ValueError, match=message):
        PredictSettings(**{field: value})


def test_predict_reads_a_16_bit_grey_png_as_its_high_byte(tmp_path):
    values = np.random.default_rng(0).integers(0, 65536, size=(12, 10), dtype=np.uint16)
    path = tmp_path / "in" / "deep.png"
    path.parent.mkdir()
    Image.fromarray(values).save(path)  # a 16-bit grey PNG, PIL's mode "I;16"
    model = StandIn()
    settings = PredictSettings(progress=False, prepare=False)
    (label_png, overlay), *_ = predict_files(model, [path], tmp_path / "out", MEAN, STD, settings=settings)
    rgb = np.repeat((values >> 8).astype(np.uint8)[:, :, None], 3, axis=2)  # what a viewer shows
    with Image.open(label_png) as im:
        assert np.array_equal(np.asarray(im), segment(model, Preprocess(MEAN, STD)(rgb))[0].numpy())
    assert np.asarray(Image.open(overlay)).mean() < 200  # not the white image convert("RGB") makes


def test_predict_run_refuses_an_image_over_the_limit_before_decoding_and_suggests_windows(
    tmp_path, monkeypatch
):
    from PIL import ImageFile

    paths = _write_images(tmp_path / "in", [(16, 16)])
    decoded = []
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda im: decoded.append(im.size))
    cfg = _voc_config()
    cfg.data.max_image_pixels = 255
    settings = PredictSettings(progress=False, prepare=False)
    with pytest.raises(ValueError) as info:
        predict_run(StandIn(), cfg, paths, tmp_path / "out", settings)
    message = str(info.value)
    assert message.startswith(f"image '{paths[0]}' is 16x16 (0.0 megapixels), over the limit")
    assert "data.max_image_pixels = 255" in message and "\n" not in message
    assert "eval.mode=slide eval.crop_size=[513, 513]" in message  # whole images: windows take less memory
    assert decoded == [] and not (tmp_path / "out" / "img0.png").exists()
    cfg.eval.mode, cfg.eval.crop_size = "slide", 8
    with pytest.raises(ValueError, match=r"16x16 .*data\.max_image_pixels = 255") as info:
        predict_run(StandIn(), cfg, paths, tmp_path / "out", settings)
    assert "eval.mode=slide" not in str(info.value)  # already in windows: only the limit to raise


def test_predict_names_an_image_it_cannot_decode(tmp_path):
    from deeplabv3plus.predict import load_rgb

    path = _write_images(tmp_path, [(32, 32)])[0]
    path.write_bytes(path.read_bytes()[:200])  # the header reads, the pixels do not
    with pytest.raises(OSError, match=rf"^cannot read image '{path}': "):
        load_rgb(path)
