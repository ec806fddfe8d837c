"""The config schema: YAML files, dotted overrides, strict keys and types."""

from __future__ import annotations

from pathlib import Path

import pytest

from deeplabv3plus.config import (
    Config,
    ConfigError,
    config_from_dict,
    find_config,
    load_config,
    parse_override,
    save_config,
    shipped_configs,
)

CONFIGS = sorted((Path(__file__).parent.parent / "configs").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_every_shipped_config_loads_and_builds_its_model(path):
    import torch

    from deeplabv3plus import build_model

    cfg = load_config(path)
    kwargs = {**cfg.model.__dict__, "pretrained_backbone": None}
    with torch.device("meta"):
        model = build_model(**kwargs)
    assert model.output_stride == cfg.model.output_stride


def test_unknown_key_is_an_error_suggesting_the_closest_and_listing_the_valid_keys(tmp_path):
    (tmp_path / "bad.yaml").write_text("train:\n  max_iter: 10\n")
    with pytest.raises(
        ConfigError,
        match=r"unknown config key 'train.max_iter'; did you mean 'train.max_iters'\? valid keys here: max_iters, ",
    ):
        load_config(tmp_path / "bad.yaml")


def test_an_unknown_key_like_no_valid_one_gets_no_suggestion():
    with pytest.raises(ConfigError) as e:
        load_config(None, ["eval.zzzzzz=1"])
    assert "did you mean" not in str(e.value) and "valid keys here: output_stride" in str(e.value)


def test_unknown_section_is_an_error():
    with pytest.raises(ConfigError, match="unknown config key 'optim'"):
        config_from_dict({"optim": {"lr": 1}})


def test_wrong_type_names_the_key_and_the_expected_type():
    with pytest.raises(ConfigError, match="train.max_iters: expected int, got 'many'"):
        load_config(None, ["train.max_iters=many"])
    with pytest.raises(ConfigError, match=r"data.scales\[1\]: expected float"):
        load_config(None, ["data.scales=[0.5,big]"])


def test_dotted_overrides_are_parsed_as_yaml_values():
    cfg = load_config(None, ["train.max_iters=100", "data.scales=[0.5, 1]", "model.pretrained_backbone=null"])
    assert cfg.train.max_iters == 100
    assert cfg.data.scales == [0.5, 1.0]
    assert cfg.model.pretrained_backbone is None
    assert parse_override("a.b.c=x") == {"a": {"b": {"c": "x"}}}
    with pytest.raises(ConfigError, match="expected key=value"):
        parse_override("train.max_iters")


def test_on_and_off_are_option_words_not_booleans(tmp_path):
    # YAML 1.1 would read them as True/False and reject "channels_last: off" as "expected str".
    cfg = load_config(None, ["train.channels_last=off", "train.amp=off"])
    assert (cfg.train.channels_last, cfg.train.amp) == ("off", "off")
    (tmp_path / "c.yaml").write_text(
        "train:\n  channels_last: on\n  compile: true\nmodel:\n  decoder: False\n"
    )
    cfg = load_config(tmp_path / "c.yaml")
    assert (cfg.train.channels_last, cfg.train.compile, cfg.model.decoder) == ("on", True, False)
    with pytest.raises(ConfigError, match="model.decoder: expected bool, got 'yes'"):
        load_config(None, ["model.decoder=yes"])


def test_cross_field_mistakes_are_errors():
    with pytest.raises(ConfigError, match="model.num_classes \\(21\\) differs from data.num_classes \\(6\\)"):
        load_config(None, ["data.num_classes=6"])
    with pytest.raises(ConfigError, match="output_stride: expected 8, 16 or 32"):
        load_config(None, ["model.output_stride=12"])
    with pytest.raises(ConfigError, match="train.amp"):
        load_config(None, ["train.amp=fp8"])


def test_a_saved_config_reads_back_equal(tmp_path):
    cfg = load_config(None, ["train.max_iters=7", "data.class_names=null", "eval.flip=true"])
    save_config(cfg, tmp_path / "c.yaml")
    assert load_config(tmp_path / "c.yaml") == cfg
    assert Config() == load_config(None)


def test_missing_file_is_an_error_naming_it():
    with pytest.raises(ConfigError, match="config file 'nope.yaml' does not exist"):
        load_config("nope.yaml")


def test_slide_window_keys_take_one_side_or_height_and_width():
    cfg = load_config(None, ["eval.mode=slide", "eval.crop_size=[1025, 2049]", "eval.stride=513"])
    assert (cfg.eval.crop_size, cfg.eval.stride) == ([1025, 2049], 513)
    assert load_config(None, ["eval.pad_to=[1025, 2049]"]).eval.pad_to == [1025, 2049]
    with pytest.raises(ConfigError, match=r"eval.mode=slide needs eval.crop_size"):
        load_config(None, ["eval.mode=slide"])
    with pytest.raises(ConfigError, match=r"eval.mode: expected whole or slide, got 'tiles'"):
        load_config(None, ["eval.mode=tiles"])
    with pytest.raises(
        ConfigError, match=r"eval.crop_size: expected a positive int or \[height, width\], got \[1, 2, 3\]"
    ):
        load_config(None, ["eval.crop_size=[1, 2, 3]"])
    with pytest.raises(
        ConfigError, match=r"eval.stride \[600, 600\] is larger than eval.crop_size \[513, 513\]"
    ):
        load_config(None, ["eval.crop_size=513", "eval.stride=600"])
    with pytest.raises(ConfigError, match=r"eval.trimap_band: expected void, boundary or null"):
        load_config(None, ["eval.trimap_band=edges"])


def test_the_shipped_configs_are_the_checkouts_configs_folder():
    assert list(shipped_configs().values()) == CONFIGS


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_every_shipped_config_says_what_it_is_in_its_first_line(path):
    first = path.read_text().splitlines()[0]
    assert first.startswith("# ") and len(first) > 20, first


def test_a_config_is_found_by_name_from_any_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no configs/ here
    quickstart = Path(__file__).parent.parent / "configs" / "quickstart.yaml"
    for name in ("quickstart", "quickstart.yaml", "configs/quickstart.yaml"):
        assert find_config(name) == quickstart, name
    assert load_config("voc_resnet101_os16") == load_config(quickstart.parent / "voc_resnet101_os16.yaml")


def test_a_file_that_exists_wins_over_a_shipped_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "quickstart.yaml").write_text("train:\n  max_iters: 7\n")
    assert find_config("quickstart.yaml") == Path("quickstart.yaml")
    assert load_config("quickstart.yaml").train.max_iters == 7
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "quickstart.yaml").write_text("train:\n  max_iters: 9\n")
    assert load_config("configs/quickstart.yaml").train.max_iters == 9
    assert load_config("quickstart").train.max_iters == 800  # a bare name that is no file: the shipped one


def test_a_missing_path_in_another_folder_is_not_replaced_by_a_shipped_config(tmp_path):
    with pytest.raises(ConfigError, match=r"config file '.*mine/quickstart.yaml' does not exist.*shipped: "):
        find_config(tmp_path / "mine" / "quickstart.yaml")


def test_a_path_starting_with_a_tilde_expands_to_the_home_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "c.yaml").write_text("data:\n  root: ~/voc\n")
    cfg = load_config(tmp_path / "c.yaml", ["train.output_dir=~/runs/a", "train.init_from=~/w.pth"])
    assert cfg.data.root == str(tmp_path / "voc")
    assert (cfg.train.output_dir, cfg.train.init_from) == (str(tmp_path / "runs/a"), str(tmp_path / "w.pth"))


def test_defaults_are_the_papers_voc_recipe():
    """Each default with its value and source: DeepLabv3+ (arXiv:1802.02611) section 4 and the
    reference (tensorflow/models research/deeplab) train.py / common.py flags."""
    from deeplabv3plus.models.aspp import ASPP_RATES_AT_OS16

    cfg = Config()
    t, d, m = cfg.train, cfg.data, cfg.model
    assert t.lr == 0.007  # section 4: "initial learning rate 0.007"; train.py base_learning_rate
    assert t.lr_power == 0.9  # "poly" policy; train.py learning_power 0.9
    assert t.momentum == 0.9  # train.py momentum 0.9
    assert t.weight_decay == 1e-4  # train.py: 0.0001 for ResNet (the default backbone)
    assert t.batch_size == 16  # DeepLabv3 section 4.1: batch 16 for BN; train.py train_batch_size
    assert t.max_iters == 30000  # train.py training_number_of_steps 30000
    assert t.backbone_lr_mult == 1.0 and t.logits_bias_lr_mult == 1.0 and t.depthwise_weight_decay
    assert not t.freeze_bn  # BN fine-tuned at OS 16 (train.py fine_tune_batch_norm True)
    assert d.crop_size == 513  # section 4: crop 513x513; train.py train_crop_size 513,513
    assert d.scales == [
        0.5,
        0.75,
        1.0,
        1.25,
        1.5,
        1.75,
        2.0,
    ]  # train.py min/max_scale_factor 0.5/2.0, step 0.25
    assert d.hflip and d.ignore_index == 255  # input_preprocess.py random flip; VOC ignore_label 255
    assert d.min_resize_value is None and d.max_resize_value is None and d.resize_factor is None  # VOC: none
    assert m.output_stride == 16  # train.py output_stride 16 (section 4.2: train OS 16)
    assert m.aspp_rates is None and ASPP_RATES_AT_OS16 == (6, 12, 18)  # train.py atrous_rates 6,12,18
    assert m.low_level_channels == 48  # Table 1: 48 channels; model.py decoder feature projection
    assert m.head_channels == 256  # section 3.1 / model.py depth 256 for ASPP and decoder convs
    assert m.aspp_dropout == 0.1  # model.py dropout keep_prob 0.9 after concat_projection
    assert m.decoder and m.align_corners  # decoder_output_stride 4; common.py / model.py align_corners True
    assert m.bn_momentum == "pytorch"  # the builders' default; the paper configs ask for "reference"


def test_evaluation_and_inference_defaults_are_the_documented_ones():
    import inspect

    from deeplabv3plus.config import DataConfig, EvalConfig
    from deeplabv3plus.data.transforms import mean_pixel
    from deeplabv3plus.inference import PAPER_SCALES, predict_probs, slide_window_pairs

    ev = EvalConfig()
    assert ev.output_stride is None and ev.scales == [1.0] and not ev.flip  # single scale at the training OS
    assert ev.mode == "whole" and ev.pad_to is None and ev.batch_size == 1 and ev.stride is None
    assert ev.trimap_widths == list(range(2, 41, 2)) and ev.trimap_band is None
    assert PAPER_SCALES == (0.5, 0.75, 1.0, 1.25, 1.5, 1.75)  # eval.py eval_scales of the MS rows (model zoo)
    sig = inspect.signature(predict_probs).parameters
    assert (
        sig["scales"].default == (1.0,)
        and sig["flip"].default is False
        and sig["align_corners"].default is True
    )
    assert sig["mode"].default == "whole" and sig["stride"].default is None
    assert slide_window_pairs(769) == ((769, 769), (513, 513))  # the default stride: 2/3 of the window
    assert slide_window_pairs((1025, 2049)) == ((1025, 2049), (683, 1366))
    # pad value = the mean pixel (0 after normalisation); labels padded with the ignore index
    assert mean_pixel(DataConfig()) == (124, 116, 104) and mean_pixel(DataConfig(mean=[0.5] * 3)) == (
        128,
        128,
        128,
    )
    assert DataConfig().ignore_index == 255
    voc = load_config(Path(__file__).parent.parent / "configs" / "voc_eval_os8_ms_flip.yaml")
    assert voc.eval.output_stride == 8 and voc.eval.scales == list(PAPER_SCALES) and voc.eval.flip
    assert voc.eval.pad_to == 513  # eval.py eval_crop_size 513


def test_the_loss_section_and_accumulation_read_from_yaml_and_save_back(tmp_path):
    (tmp_path / "c.yaml").write_text(
        "model: {num_classes: 3}\n"
        "data: {layout: folders, num_classes: 3, mask_format: rgb, rgb: {colors: [[0, 0, 0], [1, 1, 1], [2, 2, 2]]}}\n"
        "train:\n  accumulate: 2\n  loss: {name: bootstrapped_cross_entropy, class_weights: auto,\n"
        "         bootstrapped_cross_entropy: {top_k_percent_pixels: 0.25, hard_example_mining_step: 1e3}}\n"
    )
    cfg = load_config(tmp_path / "c.yaml")
    assert (
        cfg.train.accumulate == 2
        and cfg.train.loss.bootstrapped_cross_entropy.hard_example_mining_step == 1000
    )
    assert cfg.train.loss.class_weights == "auto" and cfg.data.rgb.colors[2] == [2, 2, 2]
    save_config(cfg, tmp_path / "saved.yaml")
    assert load_config(tmp_path / "saved.yaml") == cfg
    assert Config().train.loss.name == "cross_entropy" and Config().train.loss.class_weights is None


def test_coco_options_take_a_file_per_split_and_a_mapping_by_id_or_name():
    cfg = load_config(overrides=[
        "data.layout=folders", "data.mask_format=coco", "data.coco.annotations={train: t.json, val: v.json}",
        "data.coco.mapping={1: 1, car: 2}", "model.num_classes=3", "data.num_classes=3",
    ])  # fmt: skip
    assert cfg.data.coco.mapping == {1: 1, "car": 2} and cfg.data.coco.annotations["val"] == "v.json"
    with pytest.raises(ConfigError, match="data.coco.annotations"):
        load_config(overrides=["data.layout=folders", "data.mask_format=coco", "data.coco.annotations=[1]",
                               "data.coco.mapping=voc"])  # fmt: skip


@pytest.mark.parametrize(
    ("old", "new", "read"),
    [
        ("data.mask_colors=[[0,0,0],[9,9,9]]", "data.rgb.colors", lambda c: c.data.rgb.colors[1]),
        ("data.synthetic_kind=colour", "data.synthetic.kind", lambda c: c.data.synthetic.kind),
        ("data.image_ext=.png", "data.folders.image_ext", lambda c: c.data.folders.image_ext),
        ("train.loss.ohem_thresh=0.5", "train.loss.ohem.thresh", lambda c: c.train.loss.ohem.thresh),
    ],
)
def test_a_renamed_key_still_works_with_a_note_naming_the_new_key(old, new, read, monkeypatch):
    import deeplabv3plus.config as config_module

    monkeypatch.setattr(config_module, "_NOTED", set())  # each old key is noted once per process
    base = config_from_dict({"data": {"layout": "folders"}, "train": {"loss": {"name": "ohem"}}})
    key, _, value = old.partition("=")
    with pytest.warns(FutureWarning, match=f"'{key}' is now '{new}'"):
        cfg = config_from_dict(parse_override(old), base=base)
    assert read(cfg) == read(config_from_dict(parse_override(f"{new}={value}"), base=base))


def test_a_renamed_key_given_next_to_its_new_name_is_refused():
    with pytest.raises(ConfigError, match="'data.mask_colors' is the old name of 'data.rgb.colors'"):
        config_from_dict({"data": {"mask_colors": [[0, 0, 0]], "rgb": {"colors": [[1, 1, 1]]}}})


@pytest.mark.parametrize(
    "override, expected",
    [
        ("train.max_iters=0", "train.max_iters: expected an integer >= 1"),
        ("train.max_iters=-5", "train.max_iters: expected an integer >= 1"),
        ("train.batch_size=0", "train.batch_size: expected an integer >= 1"),
        ("train.lr=0", "train.lr: expected a positive learning rate"),
        ("train.lr=-0.01", "train.lr: expected a positive learning rate"),
        ("train.log_interval=0", "train.log_interval: expected an integer >= 1"),
        ("train.ckpt_interval=0", "train.ckpt_interval: expected an integer >= 1"),
        ("train.val_interval=-1", "train.val_interval: expected an integer >= 0"),
        ("train.accumulate=0", "train.accumulate: expected an integer >= 1"),
        ("data.crop_size=0", "data.crop_size: expected an integer >= 1"),
        ("data.workers=-1", "data.workers: expected an integer >= 0"),
        ("data.scales=[]", "data.scales: expected a non-empty list"),
        ("eval.batch_size=0", "eval.batch_size: expected an integer >= 1"),
        ("data.max_image_pixels=0", "data.max_image_pixels: expected an integer >= 1"),
        ("model.num_classes=0", "model.num_classes: expected an integer >= 1"),
        ("model.head_channels=0", r"model.head_channels: expected an integer in 1..4096"),
        ("model.head_channels=1e9", r"model.head_channels: expected an integer in 1..4096 .*got 1000000000"),
        ("model.low_level_channels=0", r"model.low_level_channels: expected an integer in 1..4096"),
        ("model.low_level_channels=5000", r"model.low_level_channels: expected an integer in 1..4096"),
        ("model.aspp_dropout=1.0", r"model.aspp_dropout: expected a probability in \[0, 1\)"),
        ("model.aspp_dropout=-0.1", r"model.aspp_dropout: expected a probability in \[0, 1\)"),
        ("model.aspp_rates=[6,0,18]", r"model.aspp_rates: expected atrous rates >= 1, got \[6, 0, 18\]"),
        ("train.device=cpuu", r"train.device: expected auto, cpu, cuda, cuda:N .* or mps, got 'cpuu'"),
        ("train.device=cuda:x", "train.device: expected auto, cpu, cuda, cuda:N"),
        ("train.device=gpu", "train.device: expected auto, cpu, cuda, cuda:N"),
    ],
)
def test_nonsense_values_are_refused_when_the_config_loads_naming_the_key(override, expected):
    with pytest.raises(ConfigError, match=expected) as e:
        load_config(None, [override])
    assert "\n" not in str(e.value)


@pytest.mark.parametrize(
    "override",
    [
        "train.max_iters=1",
        "train.val_interval=0",
        "data.workers=0",
        "data.crop_size=1",
        "model.head_channels=4096",
        "model.low_level_channels=1",
        "model.aspp_dropout=0.0",
        "model.aspp_dropout=0.99",
        "train.device=auto",
        "train.device=cpu",
        "train.device=cuda",
        "train.device=cuda:1",
        "train.device=mps",
    ],
)
def test_the_edges_of_the_valid_ranges_and_every_device_form_load(override):
    load_config(None, [override])  # the device is checked against the machine when a run starts
