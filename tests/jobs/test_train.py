"""The training loop: poly LR, recipe guards, a short run, exact resume, 2-process DDP on CPU."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from deeplabv3plus._compat import CPU_COMPILED_TRAINING, DEVICE_GRAD_SCALER
from deeplabv3plus.builders import build_model
from deeplabv3plus.checkpoint import load_checkpoint, save_checkpoint
from deeplabv3plus.config import ConfigError, config_from_dict
from deeplabv3plus.runtime import setup_runtime
from deeplabv3plus.train import build_optimizer, poly_lr_factor, train

# The tiny runs use 4 images per device on purpose; the warning itself is tested below.
pytestmark = pytest.mark.filterwarnings("ignore:BatchNorm statistics are trained:UserWarning")


def tiny_config(root: Path, out: Path, **train_overrides):
    """A CPU-sized run on the session's synthetic VOC set: ResNet-18, 16-wide head, 49 px crops."""
    return config_from_dict(
        {
            "model": {"backbone": "resnet18", "num_classes": 6, "head_channels": 16, "aspp_dropout": 0.1},
            "data": {"layout": "synthetic", "root": str(root), "num_classes": 6, "crop_size": 49, "workers": 0},
            "train": {
                "max_iters": 4, "batch_size": 4, "lr": 0.01, "allow_scratch_backbone": True, "device": "cpu",
                "log_interval": 1, "val_interval": 0, "ckpt_interval": 2, "output_dir": str(out), "seed": 3,
                **train_overrides,
            },
        }
    )  # fmt: skip


def test_poly_lr_follows_the_formula_number_by_number():
    assert poly_lr_factor(0, 30000) == 1.0
    assert poly_lr_factor(15000, 30000) == pytest.approx(0.5**0.9, rel=1e-12)
    assert poly_lr_factor(29999, 30000) == pytest.approx((1 / 30000) ** 0.9, rel=1e-12)
    assert poly_lr_factor(30000, 30000) == 0.0

    cfg = config_from_dict({"train": {"lr": 0.007, "max_iters": 10, "backbone_lr_mult": 0.1}})
    model = build_model("resnet18", num_classes=2, head_channels=8)
    optimizer = build_optimizer(model, cfg)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda it: poly_lr_factor(it, 10, 0.9))
    seen = []
    for _ in range(10):
        seen.append([g["lr"] for g in optimizer.param_groups])
        optimizer.step()
        scheduler.step()
    for it, lrs in enumerate(seen):
        expected_head = 0.007 * (1 - it / 10) ** 0.9
        # groups are sorted: head (no decay, decay), then backbone (no decay, decay)
        assert lrs == pytest.approx([expected_head, expected_head, 0.1 * expected_head, 0.1 * expected_head])


def test_weight_decay_applies_to_conv_weights_only():
    cfg = config_from_dict({"train": {"weight_decay": 4e-5}})
    model = build_model("resnet18", num_classes=2, head_channels=8)
    optimizer = build_optimizer(model, cfg)
    for group in optimizer.param_groups:
        dims = {p.ndim for p in group["params"]}
        assert group["weight_decay"] == (4e-5 if dims == {4} else 0.0)
    assert sum(len(g["params"]) for g in optimizer.param_groups) == len(list(model.parameters()))


def test_training_from_scratch_needs_an_explicit_opt_in_and_names_the_backbones_imagenet_sources(
    tmp_path, synthetic_voc
):
    cfg = tiny_config(synthetic_voc, tmp_path, allow_scratch_backbone=False)
    with pytest.raises(
        ConfigError, match=r"\(for resnet18: torchvision:IMAGENET1K_V1\).*allow_scratch_backbone"
    ):
        train(cfg)


def test_small_per_device_batch_without_sync_bn_warns_with_the_papers_recipe(tmp_path, synthetic_voc, no_val):
    with pytest.warns(UserWarning, match="batch 16"):
        train(tiny_config(synthetic_voc, tmp_path, max_iters=1))


def test_val_image_in_the_training_list_is_an_error(tmp_path, synthetic_voc):
    from deeplabv3plus.data.datasets import DatasetError

    cfg = tiny_config(synthetic_voc, tmp_path)
    cfg.data.train_split = "trainval"
    with pytest.raises(DatasetError, match="also in the training split"):
        train(cfg)


def test_a_folder_holding_a_run_is_refused_with_a_user_error_before_any_work(tmp_path, synthetic_voc):
    from deeplabv3plus.cli import is_user_error
    from deeplabv3plus.train import RunExistsError

    (tmp_path / "config.yaml").write_text("train: {}\n")
    (tmp_path / "last.pth").write_bytes(b"state")
    with pytest.raises(RunExistsError, match="already holds a run \\(last.pth, config.yaml\\)") as e:
        train(tiny_config(synthetic_voc, tmp_path))
    assert is_user_error(e.value) and "\n" not in str(e.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.yaml", "last.pth"]  # no .run.lock left


def test_a_short_run_lowers_the_loss_and_writes_its_records(tmp_path, synthetic_voc, no_val):
    cfg = tiny_config(synthetic_voc, tmp_path, max_iters=16, lr=0.02, log_interval=4)
    train(cfg)
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in records if "loss" in r]
    assert len(losses) == 4
    assert losses[-1] < 0.8 * losses[0]
    info = json.loads((tmp_path / "run_info.json").read_text())
    assert {"config", "seed", "git_commit", "versions", "device"} <= set(info)
    assert info["versions"]["torch"] == torch.__version__
    assert (tmp_path / "config.yaml").is_file() and (tmp_path / "last.pth").is_file()
    assert (tmp_path / "best.pth").is_file()


def test_resume_after_an_interruption_gives_bitwise_the_same_weights(tmp_path, synthetic_voc, no_val):
    straight = tiny_config(synthetic_voc, tmp_path / "straight", max_iters=6)
    straight.model.aspp_dropout = 0.5  # the RNG that dropout consumes must be restored too
    model_a, _ = train(straight)

    interrupted = tiny_config(synthetic_voc, tmp_path / "interrupted", max_iters=6)
    interrupted.model.aspp_dropout = 0.5
    train(interrupted, stop_after=3)
    assert load_checkpoint(tmp_path / "interrupted" / "last.pth")["iteration"] == 3
    model_b, _ = train(interrupted, resume=str(tmp_path / "interrupted" / "last.pth"))

    state_a, state_b = model_a.state_dict(), model_b.state_dict()
    assert state_a.keys() == state_b.keys()
    for key in state_a:
        assert torch.equal(state_a[key], state_b[key]), key
    ckpt_a = load_checkpoint(tmp_path / "straight" / "last.pth")
    ckpt_b = load_checkpoint(tmp_path / "interrupted" / "last.pth")
    momentum_a = [s["momentum_buffer"] for s in ckpt_a["optimizer"]["state"].values()]
    momentum_b = [s["momentum_buffer"] for s in ckpt_b["optimizer"]["state"].values()]
    assert all(torch.equal(a, b) for a, b in zip(momentum_a, momentum_b))


def test_resume_auto_names_last_pth_only_when_it_exists(tmp_path):
    from deeplabv3plus.train import resume_checkpoint

    assert resume_checkpoint("auto", tmp_path) is None  # nothing to continue: a new run
    (tmp_path / "best.pth").write_bytes(b"weights")
    assert resume_checkpoint("auto", tmp_path) is None  # best.pth is not a run to continue
    (tmp_path / "last.pth").write_bytes(b"state")
    assert resume_checkpoint("auto", tmp_path) == str(tmp_path / "last.pth")
    assert resume_checkpoint("elsewhere/last.pth", tmp_path) == "elsewhere/last.pth"
    assert resume_checkpoint(None, tmp_path) is None and resume_checkpoint("", tmp_path) is None


def test_resume_in_a_new_process_with_validation_mid_run_gives_bitwise_the_same_weights(
    tmp_path, synthetic_voc
):
    """Validation runs once-per-process checks (the oneDNN packing probe of models/fuse.py); they
    must not draw from the global RNG, or a run resumed in a new process diverges after its first
    validation (dropout 0.5 makes any shift of the stream visible)."""
    from deeplabv3plus.models.fuse import _mkldnn_packing_works

    def run(out: Path, **kwargs) -> torch.nn.Module:
        _mkldnn_packing_works.cache_clear()  # each call as a fresh process would see it
        cfg = tiny_config(synthetic_voc, out, max_iters=5, val_interval=2)
        cfg.model.aspp_dropout = 0.5
        return train(cfg, **kwargs)[0]

    straight = run(tmp_path / "straight")
    run(tmp_path / "interrupted", stop_after=3)  # validated at 2, stopped at 3, next validation at 4
    resumed = run(tmp_path / "interrupted", resume=str(tmp_path / "interrupted" / "last.pth"))
    for (key, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), key


def test_data_order_and_augmentation_do_not_depend_on_the_number_of_workers(tmp_path, synthetic_voc, no_val):
    model_0, _ = train(tiny_config(synthetic_voc, tmp_path / "w0", max_iters=2))
    cfg = tiny_config(synthetic_voc, tmp_path / "w2", max_iters=2)
    cfg.data.workers = 2
    model_2, _ = train(cfg)
    for (key, a), b in zip(model_0.state_dict().items(), model_2.state_dict().values()):
        assert torch.equal(a, b), key


def test_checkpoints_are_never_half_written(tmp_path, monkeypatch):
    path = tmp_path / "last.pth"
    save_checkpoint({"model": {"w": torch.ones(3)}, "iteration": 1}, path)

    def crash(obj, f, *args, **kwargs):
        f.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint({"model": {"w": torch.zeros(3)}, "iteration": 2}, path)
    assert load_checkpoint(path)["iteration"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.pth"]


def test_cpu_runtime_defaults_to_fp32_and_channels_last(tmp_path):
    runtime = setup_runtime(config_from_dict({"train": {"device": "cpu"}}))
    assert runtime.amp_dtype is None and runtime.channels_last and runtime.world_size == 1
    off = setup_runtime(config_from_dict({"train": {"device": "cpu", "channels_last": "off"}}))
    assert not off.channels_last


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank: int, world_size: int, port: int, cfg_dict: dict, out: str) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        WORLD_SIZE=str(world_size),
        LOCAL_RANK=str(rank),
    )
    torch.set_num_threads(1)
    import deeplabv3plus.train as train_module

    train_module.evaluate = lambda *a, **k: {"mIoU": 0.5, "pixel_acc": 0.5, "table": "", "per_class_iou": {}}
    model, _ = train_module.train(config_from_dict(cfg_dict))
    torch.save({k: v for k, v in model.named_parameters()}, Path(out) / f"rank{rank}.pt")
    torch.distributed.destroy_process_group()


@pytest.mark.slow
def test_two_process_ddp_on_cpu_leaves_identical_weights_on_both_ranks(tmp_path, synthetic_voc):
    from deeplabv3plus.config import config_to_dict

    cfg = tiny_config(synthetic_voc, tmp_path / "run", max_iters=3)
    mp.spawn(_ddp_worker, args=(2, _free_port(), config_to_dict(cfg), str(tmp_path)), nprocs=2, join=True)
    rank0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    rank1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    assert rank0.keys() == rank1.keys()
    for key in rank0:
        assert torch.equal(rank0[key], rank1[key]), key
    initial = build_model("resnet18", num_classes=6, head_channels=16)
    moved = [k for k, p in initial.named_parameters() if not torch.equal(p, rank0[k])]
    assert moved, "training changed no weight"


def test_init_from_starts_a_new_stage_from_every_weight_of_a_checkpoint(tmp_path, synthetic_voc, no_val):
    first, _ = train(tiny_config(synthetic_voc, tmp_path / "os16", max_iters=2))
    stage2 = tiny_config(synthetic_voc, tmp_path / "os8", max_iters=2, freeze_bn=True)
    stage2.model.output_stride = 8
    stage2.train.init_from = str(tmp_path / "os16" / "last.pth")
    second, _ = train(stage2, stop_after=0)
    for (key, a), b in zip(first.state_dict().items(), second.state_dict().values()):
        assert torch.equal(a, b), key
    assert second.output_stride == 8


@pytest.mark.slow
def test_torchrun_runs_the_training_script_on_two_cpu_processes(tmp_path, synthetic_voc):
    import subprocess
    import sys

    from deeplabv3plus.config import save_config

    cfg = tiny_config(synthetic_voc, tmp_path / "run", max_iters=2)
    save_config(cfg, tmp_path / "config.yaml")
    repo = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         str(repo / "scripts" / "train.py"), "--config", str(tmp_path / "config.yaml")],
        cwd=tmp_path, capture_output=True, text=True, timeout=600,
        env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(repo)},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert load_checkpoint(tmp_path / "run" / "last.pth")["iteration"] == 2
    info = json.loads((tmp_path / "run" / "run_info.json").read_text())
    assert info["world_size"] == 2
    assert "mIoU" in done.stdout
    # 2 images per process and no SyncBatchNorm on CPU: the warning must reach the terminal, once.
    assert done.stderr.count("BatchNorm statistics are trained with 2 images per device") == 1


NO_CPU_SCALER = pytest.mark.skipif(
    not DEVICE_GRAD_SCALER,
    reason=f"torch {torch.__version__}: fp16 loss scaling on CPU needs torch.amp.GradScaler (torch>=2.3)",
)


@pytest.mark.parametrize(
    "amp,channels_last", [("bf16", "off"), pytest.param("fp16", "off", marks=NO_CPU_SCALER), ("off", "on")]
)
def test_mixed_precision_and_channels_last_training_steps_run_on_cpu(
    tmp_path, synthetic_voc, no_val, amp, channels_last
):
    cfg = tiny_config(synthetic_voc, tmp_path, max_iters=2, amp=amp, channels_last=channels_last)
    model, _ = train(cfg)
    assert all(torch.isfinite(p).all() for p in model.parameters())
    checkpoint = load_checkpoint(tmp_path / "last.pth")
    assert (checkpoint["scaler"] is not None) == (amp == "fp16")
    if channels_last == "on":
        weight = model.backbone.conv1.weight  # 7x7: the two layouts differ
        assert weight.is_contiguous(memory_format=torch.channels_last) and not weight.is_contiguous()


@pytest.mark.skipif(DEVICE_GRAD_SCALER, reason=f"torch {torch.__version__} scales fp16 losses on CPU")
def test_fp16_on_cpu_without_a_cpu_loss_scaler_is_a_config_error_naming_train_amp(tmp_path, synthetic_voc):
    cfg = tiny_config(synthetic_voc, tmp_path / "run", amp="fp16")
    with pytest.raises(ConfigError, match=r"train\.amp='fp16'.*torch>=2\.3"):
        train(cfg)
    assert not (tmp_path / "run" / "last.pth").exists()


@pytest.mark.slow
@pytest.mark.skipif(
    not CPU_COMPILED_TRAINING,
    reason=f"torch {torch.__version__}: inductor's CPU code for the compiled training step does not build (torch>=2.3)",
)
def test_compiled_training_matches_the_eager_loss_at_the_first_step(tmp_path, synthetic_voc, no_val):
    eager = tiny_config(synthetic_voc, tmp_path / "eager", max_iters=1, lr=0.0)
    compiled = tiny_config(synthetic_voc, tmp_path / "compiled", max_iters=1, lr=0.0, compile=True)
    eager.model.aspp_dropout = compiled.model.aspp_dropout = 0.0
    train(eager)
    train(compiled)
    loss = [
        json.loads(p.read_text().splitlines()[0])["loss"]
        for p in (tmp_path / "eager" / "metrics.jsonl", tmp_path / "compiled" / "metrics.jsonl")
    ]
    assert loss[1] == pytest.approx(loss[0], rel=1e-4)


def test_own_data_in_folders_trains_through_config_alone(tmp_path, synthetic_voc, no_val):
    """images/ + masks/ + split lists, 3 classes named by the user, void = 99: no code."""
    import numpy as np
    from PIL import Image

    root = tmp_path / "mine"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    rng = np.random.default_rng(0)
    for i in range(6):
        mask = rng.integers(0, 3, (40, 52)).astype(np.uint8)
        mask[:3] = 99
        Image.fromarray(mask).save(root / "masks" / f"im{i}.png")
        Image.fromarray((rng.random((40, 52, 3)) * 255).astype(np.uint8)).save(root / "images" / f"im{i}.jpg")
    (root / "train.txt").write_text("im0\nim1\nim2\nim3\n")
    (root / "val.txt").write_text("im4\nim5\n")
    cfg = tiny_config(synthetic_voc, tmp_path / "run", max_iters=2)
    overrides = {
        "model": {"num_classes": 3},
        "data": {"layout": "folders", "root": str(root), "num_classes": 3, "class_names": ["bg", "road", "car"],
                 "ignore_index": 99, "crop_size": 33},
    }  # fmt: skip
    cfg = config_from_dict(overrides, base=cfg)
    model, _ = train(cfg)
    assert model.classifier.out_channels == 3
    assert load_checkpoint(tmp_path / "run" / "last.pth")["config"]["data"]["class_names"] == [
        "bg",
        "road",
        "car",
    ]


def test_train_applies_the_poly_lr_of_every_group_at_every_iteration(
    tmp_path, synthetic_voc, no_val, monkeypatch
):
    """The LRs SGD actually steps with inside train(), read from its param groups at each step."""
    seen: list[list[float]] = []
    sgd_step = torch.optim.SGD.step

    def recording_step(self, *args, **kwargs):
        seen.append([g["lr"] for g in self.param_groups])
        return sgd_step(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.SGD, "step", recording_step)
    cfg = tiny_config(
        synthetic_voc, tmp_path, max_iters=3, lr=0.02, backbone_lr_mult=0.5, logits_bias_lr_mult=2.0
    )
    train(cfg)
    assert len(seen) == 3
    for it, lrs in enumerate(seen):
        base = 0.02 * (1 - it / 3) ** 0.9  # the paper's poly policy (section 4), power 0.9
        # groups (backbone?, decayed?, logits bias?) sorted: head BN, logits bias, head convs,
        # backbone BN, backbone convs
        assert lrs == pytest.approx([base, 2 * base, base, 0.5 * base, 0.5 * base], rel=1e-12, abs=0)


def _expected_groups(model: torch.nn.Module, lr: float, wd: float, depthwise_decay: bool) -> dict[str, tuple]:
    """(lr, weight decay) of each parameter by name, from the reference's rules written out by hand:
    kernels decayed (depthwise ones only if asked), BN and bias not; backbone LR x0.5 here; the
    logits bias LR x2 (utils/train_utils.py: biases' gradient x2)."""
    out = {}
    for name, p in model.named_parameters():
        decayed = p.ndim == 4 and (depthwise_decay or not name.endswith("conv_dw.weight"))
        scale = 0.5 if name.startswith("backbone.") else 1.0
        scale *= 2.0 if name == "classifier.bias" else 1.0
        out[name] = (lr * scale, wd if decayed else 0.0)
    return out


@pytest.mark.parametrize("depthwise_decay", [False, True])
def test_param_groups_hold_exactly_the_expected_tensors_with_their_decay_and_lr(depthwise_decay):
    cfg = config_from_dict(
        {"train": {"lr": 0.01, "weight_decay": 4e-5, "backbone_lr_mult": 0.5, "logits_bias_lr_mult": 2.0,
                   "depthwise_weight_decay": depthwise_decay}}
    )  # fmt: skip
    with torch.device("meta"):  # names and shapes only
        model = build_model("xception41", num_classes=3, head_channels=16, separable=True)
    expected = _expected_groups(model, 0.01, 4e-5, depthwise_decay)
    names = {id(p): n for n, p in model.named_parameters()}
    got = {}
    for group in build_optimizer(model, cfg).param_groups:
        for p in group["params"]:
            assert names[id(p)] not in got
            got[names[id(p)]] = (group["lr"], group["weight_decay"])
    assert got == expected
    depthwise = [n for n in expected if n.endswith("conv_dw.weight")]
    assert any(n.startswith("backbone.") for n in depthwise) and any(n.startswith("aspp.") for n in depthwise)
    assert any(n.startswith("decoder.") for n in depthwise)


# --- resume into a folder, the run folder's lock, divergence, stale temporary files ------------------


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _iterations(folder: Path) -> list[int]:
    lines = (folder / "metrics.jsonl").read_text().splitlines()
    return [r["iteration"] for r in map(json.loads, lines) if "loss" in r]


def test_resume_into_another_folder_leaves_the_source_run_byte_identical_and_honours_the_new_keys(
    tmp_path, synthetic_voc, no_val, capsys
):
    train(tiny_config(synthetic_voc, tmp_path / "a", max_iters=2))
    source = _files(tmp_path / "a")
    assert {"last.pth", "best.pth", "run_info.json", "metrics.jsonl"} <= set(source)

    longer = tiny_config(synthetic_voc, tmp_path / "b", max_iters=4)  # train.output_dir and max_iters changed
    train(longer, resume=str(tmp_path / "a" / "last.pth"))
    assert _files(tmp_path / "a") == source  # byte for byte: last.pth, best.pth, run_info.json, ...
    assert load_checkpoint(tmp_path / "b" / "last.pth")["iteration"] == 4  # the new max_iters
    assert load_checkpoint(tmp_path / "b" / "last.pth")["config"]["train"]["output_dir"] == str(
        tmp_path / "b"
    )
    assert _iterations(tmp_path / "b") == [3, 4]  # b starts at the checkpoint's iteration
    assert f"resumed from {tmp_path / 'a' / 'last.pth'} at iteration 2" in capsys.readouterr().out


def test_resume_changing_the_architecture_is_one_line_naming_the_key(tmp_path, synthetic_voc, no_val):
    from deeplabv3plus.cli import is_user_error

    train(tiny_config(synthetic_voc, tmp_path / "a", max_iters=2), stop_after=1)
    before = _files(tmp_path / "a")
    changed = tiny_config(synthetic_voc, tmp_path / "a", max_iters=2)
    changed.model.head_channels = 8
    with pytest.raises(ConfigError, match=r"model\.head_channels=8 .*differs from the run's 16") as e:
        train(changed, resume="auto")
    assert is_user_error(e.value) and "\n" not in str(e.value)
    assert _files(tmp_path / "a") == before


def test_resume_into_a_folder_holding_another_run_needs_overwrite_and_then_replaces_it(
    tmp_path, synthetic_voc, no_val
):
    from deeplabv3plus.train import RunExistsError

    train(tiny_config(synthetic_voc, tmp_path / "a", max_iters=2), stop_after=1)
    train(tiny_config(synthetic_voc, tmp_path / "b", max_iters=1))
    taken = _files(tmp_path / "b")
    cfg = tiny_config(synthetic_voc, tmp_path / "b", max_iters=2)
    with pytest.raises(RunExistsError, match=r"--resume .*a/last.pth: train.output_dir .*b' already holds"):
        train(cfg, resume=str(tmp_path / "a" / "last.pth"))
    assert _files(tmp_path / "b") == taken
    train(cfg, resume=str(tmp_path / "a" / "last.pth"), overwrite=True)
    assert _iterations(tmp_path / "b") == [2]  # the replaced run's lines are gone
    with pytest.raises(ConfigError, match="contradict"):  # it would replace the run it continues
        train(cfg, resume=str(tmp_path / "b" / "last.pth"), overwrite=True)


def test_a_second_run_into_a_folder_in_use_is_refused_with_the_holders_pid(tmp_path, synthetic_voc, no_val):
    from deeplabv3plus.cli import is_user_error
    from deeplabv3plus.train import RunFolderInUseError, RunFolderLock

    out = tmp_path / "run"
    cfg = tiny_config(synthetic_voc, out, max_iters=1)
    with RunFolderLock(out) as first:  # the lock a running train() holds, taken the same way
        first.acquire()
        with pytest.raises(
            RunFolderInUseError, match=f"'{out}' is in use by another run \\(pid {os.getpid()}\\)"
        ) as e:
            train(cfg)
        assert is_user_error(e.value)
        assert [p.name for p in out.iterdir()] == [".run.lock"]  # the second wrote nothing
    assert not out.exists()  # released: the lock file and the folder it created are gone
    train(cfg)
    assert (out / "last.pth").is_file() and not (out / ".run.lock").exists()


def test_a_folder_without_a_checkpoint_is_reused_without_overwrite_and_says_so(
    tmp_path, synthetic_voc, no_val, capsys
):
    out = tmp_path / "run"
    out.mkdir()
    (out / "config.yaml").write_text("train: {}\n")
    (out / "metrics.jsonl").write_text('{"iteration": 7, "loss": 2.0}\n')
    train(tiny_config(synthetic_voc, out, max_iters=1))
    printed = capsys.readouterr().out
    assert f"reusing {out}: it held no checkpoint" in printed and "config.yaml, metrics.jsonl" in printed
    assert _iterations(out) == [1]


def test_a_diverging_run_stops_with_one_line_and_never_writes_non_finite_weights(
    tmp_path, synthetic_voc, monkeypatch
):
    import deeplabv3plus.train as train_module

    scores = iter([0.1, 0.2, 0.3, 0.4])  # every validation a new best: a diverged one would write best.pth
    monkeypatch.setattr(
        train_module, "evaluate", lambda *a, **k: {"mIoU": next(scores), "pixel_acc": 0.5, "table": ""}
    )
    build = train_module.build_train_loss

    def nan_from_step_3(cfg, class_weights):
        loss_fn = build(cfg, class_weights)
        return lambda logits, labels, iteration: (
            loss_fn(logits, labels, iteration) * (float("nan") if iteration >= 2 else 1.0)
        )

    monkeypatch.setattr(train_module, "build_train_loss", nan_from_step_3)
    cfg = tiny_config(synthetic_voc, tmp_path, max_iters=6, ckpt_interval=2, val_interval=2, log_interval=10)
    with pytest.raises(FloatingPointError, match=r"iterations 3 and 4.*last.pth \(iteration 2\)") as e:
        train(cfg)
    assert "\n" not in str(e.value)
    last, best = load_checkpoint(tmp_path / "last.pth"), load_checkpoint(tmp_path / "best.pth")
    assert last["iteration"] == 2 and best["iteration"] == 2 and best["best_miou"] == 0.1
    assert all(torch.isfinite(t).all() for t in last["model"].values() if t.is_floating_point())


def test_stale_temporary_checkpoint_files_of_a_killed_write_are_removed_at_the_next_start(
    tmp_path, synthetic_voc, no_val, capsys
):
    train(tiny_config(synthetic_voc, tmp_path, max_iters=2), stop_after=1)
    stale = [tmp_path / ".last.pth.k2j4_x.tmp", tmp_path / ".best.pth.a8b9.tmp"]
    others = [tmp_path / ".notes.tmp", tmp_path / "keep" / ".last.pth.q1.tmp"]
    for path in stale + others:
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(b"half a checkpoint")
    train(tiny_config(synthetic_voc, tmp_path, max_iters=2), resume="auto")
    assert not any(p.exists() for p in stale) and all(p.exists() for p in others)
    assert f"removed 2 stale temporary checkpoint files of an interrupted write from {tmp_path}" in (
        capsys.readouterr().out
    )
