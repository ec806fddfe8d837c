"""The command line: numbers as people write them, what commands announce, pre-emption, the wheel."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import time
import zipfile
from pathlib import Path

import pytest
import torch

from deeplabv3plus import cli
from deeplabv3plus.checkpoint import load_checkpoint
from deeplabv3plus.config import config_from_dict, load_config, parse_override, save_config
from deeplabv3plus.train import train

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.filterwarnings("ignore:BatchNorm statistics are trained:UserWarning")


def test_exponent_numbers_are_floats_in_files_and_overrides(tmp_path):
    (tmp_path / "c.yaml").write_text(
        "train:\n  lr: 1e-3\n  weight_decay: 4E-5\n  max_iters: 3e4\ndata:\n  scales: [5e-1, 1]\n"
    )
    cfg = load_config(tmp_path / "c.yaml", ["train.momentum=9e-1", "train.lr_power=.9e0"])
    assert cfg.train.lr == 0.001 and cfg.train.weight_decay == 4e-5 and cfg.data.scales == [0.5, 1.0]
    assert cfg.train.max_iters == 30000 and isinstance(cfg.train.max_iters, int)  # a whole float fits an int
    assert cfg.train.momentum == 0.9 and cfg.train.lr_power == 0.9
    assert parse_override("train.output_dir=runs/1e3") == {
        "train": {"output_dir": "runs/1e3"}
    }  # not a number


def test_eval_settings_and_the_commands_are_listed_in_the_help(capsys):
    assert cli.main(["--help"]) == 0
    out = capsys.readouterr().out
    for name in (
        "train",
        "eval",
        "predict",
        "export",
        "convert",
        "macs",
        "benchmark",
        "save-pretrained",
        "prepare-voc",
        "make-synthetic",
    ):
        assert f"  {name} " in out
    with pytest.raises(SystemExit):
        cli.main(["benchmark", "--help"])
    assert "resnet18, resnet34, resnet50, resnet101" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        cli.main(["eval", "--help"])
    text = capsys.readouterr().out
    assert ".pth" in text and ".pt)" not in text


def test_make_synthetic_says_what_it_wrote(tmp_path, capsys):
    assert (
        cli.main(
            ["make-synthetic", str(tmp_path / "syn"), "--num-train", "2", "--num-val", "1", "--size", "16"]
        )
        == 0
    )
    assert (
        f"wrote 2 train / 1 val images (6 classes, kind 'texture') to {tmp_path / 'syn'}"
        in capsys.readouterr().out
    )


def _tiny(root: Path, out: Path, max_iters: int) -> dict:
    return {
        "model": {"backbone": "resnet18", "num_classes": 6, "head_channels": 16, "aspp_dropout": 0.5},
        "data": {"layout": "synthetic", "root": str(root), "num_classes": 6, "crop_size": 49, "workers": 0},
        "train": {"max_iters": max_iters, "batch_size": 2, "lr": 0.01, "allow_scratch_backbone": True,
                  "device": "cpu", "log_interval": 1, "val_interval": 0, "ckpt_interval": 1000, "seed": 5,
                  "output_dir": str(out)},
    }  # fmt: skip


@pytest.fixture
def no_val(monkeypatch):
    import deeplabv3plus.train as train_module

    monkeypatch.setattr(
        train_module,
        "evaluate",
        lambda *a, **k: {"mIoU": 0.5, "pixel_acc": 0.5, "table": "", "per_class_iou": {}},
    )


def test_sigterm_writes_last_pth_at_the_current_iteration_and_the_resumed_run_is_bitwise_the_same(
    tmp_path, synthetic_voc, no_val
):
    """A real SIGTERM to a real ``python scripts/train.py``, then --resume, against a straight run."""
    n = 8
    straight, _ = train(config_from_dict(_tiny(synthetic_voc, tmp_path / "straight", n)))

    cfg = config_from_dict(_tiny(synthetic_voc, tmp_path / "interrupted", n))
    save_config(cfg, tmp_path / "interrupted.yaml")
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": str(torch.get_num_threads())}
    proc = subprocess.Popen(
        [sys.executable, str(REPO / "scripts" / "train.py"), "--config", str(tmp_path / "interrupted.yaml")],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    metrics = tmp_path / "interrupted" / "metrics.jsonl"
    deadline = time.time() + 180
    while (
        not (metrics.is_file() and metrics.read_text().strip())
        and proc.poll() is None
        and time.time() < deadline
    ):
        time.sleep(0.01)
    proc.send_signal(signal.SIGTERM)  # after the first logged step
    _, err = proc.communicate(timeout=180)
    assert proc.returncode == 128 + signal.SIGTERM, err
    last = tmp_path / "interrupted" / "last.pth"
    stopped_at = load_checkpoint(last)["iteration"]
    assert 1 <= stopped_at < n
    assert f"train.py: stopped by SIGTERM at iteration {stopped_at}; wrote {last}" in err
    assert f"--resume {last}" in err and "Traceback" not in err

    resumed, _ = train(cfg, resume=str(last))
    for (key, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), key


def test_best_pth_holds_weights_and_config_only_by_default(tmp_path, synthetic_voc, monkeypatch):
    import deeplabv3plus.train as train_module

    monkeypatch.setattr(
        train_module,
        "evaluate",
        lambda *a, **k: {"mIoU": 0.5, "pixel_acc": 0.5, "table": "", "per_class_iou": {}},
    )
    train(config_from_dict(_tiny(synthetic_voc, tmp_path / "run", 1)))
    best, last = (
        load_checkpoint(tmp_path / "run" / "best.pth"),
        load_checkpoint(tmp_path / "run" / "last.pth"),
    )
    assert set(best) == {"model", "config", "iteration", "best_miou"}
    assert {"optimizer", "scheduler", "rng"} <= set(last)
    assert (tmp_path / "run" / "best.pth").stat().st_size < 0.75 * (
        tmp_path / "run" / "last.pth"
    ).stat().st_size


@pytest.mark.slow
def test_the_wheel_installs_a_working_deeplabv3plus_command(tmp_path):
    """pip wheel -> entry_points.txt names the command -> pip install into a fresh venv -> it runs."""
    src = tmp_path / "src"  # build from a copy: an in-tree build would leave build/ in the checkout
    src.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(REPO / name, src / name)
    shutil.copytree(
        REPO / "deeplabv3plus", src / "deeplabv3plus", ignore=shutil.ignore_patterns("__pycache__")
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run(
        [*pip, "wheel", str(src), "--no-deps", "--no-build-isolation", "-w", str(tmp_path / "dist")],
        check=True, capture_output=True, env=env, cwd=tmp_path,
    )  # fmt: skip
    (wheel,) = (tmp_path / "dist").glob("deeplabv3plus-*.whl")
    with zipfile.ZipFile(wheel) as z:
        entry_points = next(z.read(n).decode() for n in z.namelist() if n.endswith("entry_points.txt"))
    assert "[console_scripts]" in entry_points and "deeplabv3plus = deeplabv3plus.cli:main" in entry_points

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    # The new venv sees this environment's packages (torch, pip, ...) through a .pth file: unlike
    # --system-site-packages, that also works when this environment is itself a venv (CI's floor).
    parent = sorted({sysconfig.get_paths()[key] for key in ("purelib", "platlib")})
    (next(venv.glob("lib/python*/site-packages")) / "_parent_env.pth").write_text("\n".join(parent) + "\n")
    python = venv / "bin" / "python"
    subprocess.run(
        [str(python), "-m", "pip", "--disable-pip-version-check", "-q", "install", "--no-deps", str(wheel)],
        check=True, capture_output=True, env=env, cwd=tmp_path,
    )  # fmt: skip
    assert list(
        venv.glob("lib/python*/site-packages/deeplabv3plus/cli.py")
    )  # the wheel's copy, not a checkout
    command = venv / "bin" / "deeplabv3plus"
    done = subprocess.run([str(command), "--help"], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert done.returncode == 0 and "make-synthetic" in done.stdout, done.stderr
    done = subprocess.run(
        [str(command), "eval", "--checkpoint", "missing.pth"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    assert done.returncode == 2
    assert done.stderr == "deeplabv3plus eval: error: checkpoint 'missing.pth' does not exist\n"


def test_the_own_data_example_config_trains_on_a_folder_dataset(tmp_path, no_val):
    from test_errors import make_folder_dataset

    root = make_folder_dataset(tmp_path / "mydata")
    overrides = [f"data.root={root}", "model.pretrained_backbone=null", "train.allow_scratch_backbone=true",
                 "data.crop_size=33", "data.workers=0", "train.max_iters=1", "train.batch_size=2",
                 "train.device=cpu", "model.head_channels=16", f"train.output_dir={tmp_path / 'run'}"]  # fmt: skip
    model, _ = train(load_config(REPO / "configs" / "own_data_example.yaml", overrides))
    assert model.classifier.out_channels == 3
    assert load_checkpoint(tmp_path / "run" / "last.pth")["config"]["data"]["class_names"] == [
        "background",
        "road",
        "car",
    ]


def _ddp_stop_worker(rank: int, port: int, cfg_dict: dict, out: str) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE="2", LOCAL_RANK=str(rank)
    )
    torch.set_num_threads(1)
    import deeplabv3plus.train as train_module

    agree, calls = train_module.agreed_signal, []

    def signal_rank1_at_its_third_step(local, runtime, group):
        calls.append(local)
        if rank == 1 and len(calls) == 3:
            os.kill(os.getpid(), signal.SIGTERM)  # only this rank is signalled
        return agree(local, runtime, group)

    train_module.agreed_signal = signal_rank1_at_its_third_step
    build, times = train_module.build_model, []

    def timed_build(**kwargs):
        times.append(time.time())
        model = build(**kwargs)
        times.append(time.time())
        return model

    train_module.build_model = timed_build
    try:
        train_module.train(config_from_dict(cfg_dict))
        outcome = "finished"
    except train_module.TrainingInterrupted as e:
        outcome = f"{signal.Signals(e.signum).name} {e.iteration}"
    Path(out, f"rank{rank}.txt").write_text(outcome)
    Path(out, f"build{rank}.txt").write_text(" ".join(map(str, times)))
    torch.distributed.destroy_process_group()


@pytest.mark.slow
def test_a_signal_to_one_rank_stops_every_rank_at_the_same_iteration_and_rank_0_fetches_first(
    tmp_path, synthetic_voc
):
    import socket

    import torch.multiprocessing as mp
    import torchvision

    from deeplabv3plus.config import config_to_dict

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = config_from_dict(_tiny(synthetic_voc, tmp_path / "run", 8))
    cfg.train.batch_size = 4
    torch.save(torchvision.models.resnet18().state_dict(), tmp_path / "imagenet.pth")
    cfg.model.pretrained_backbone = str(tmp_path / "imagenet.pth")  # fetched by rank 0 first
    mp.spawn(_ddp_stop_worker, args=(port, config_to_dict(cfg), str(tmp_path)), nprocs=2, join=True)
    outcomes = {(tmp_path / f"rank{r}.txt").read_text() for r in (0, 1)}
    stopped_at = load_checkpoint(tmp_path / "run" / "last.pth")["iteration"]
    assert outcomes == {f"SIGTERM {stopped_at}"} and 3 <= stopped_at < 8
    (start0, end0), (start1, end1) = (
        map(float, (tmp_path / f"build{r}.txt").read_text().split()) for r in (0, 1)
    )
    assert end0 <= start1  # the other ranks build (and read the weights) once rank 0 has them
