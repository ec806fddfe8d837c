"""The command line: numbers as people write them, what commands announce, pre-emption, the wheel."""

from __future__ import annotations

import json
import os
import re
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

import deeplabv3plus
from deeplabv3plus import cli
from deeplabv3plus.checkpoint import load_checkpoint
from deeplabv3plus.config import config_from_dict, load_config, parse_override, save_config, shipped_configs
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
        "paper-ablation",
        "configs",
        "check-data",
    ):
        assert f"  {name} " in out
    with pytest.raises(SystemExit):
        cli.main(["benchmark", "--help"])
    assert "resnet18, resnet34, resnet50, resnet101" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        cli.main(["eval", "--help"])
    text = capsys.readouterr().out
    assert ".pth" in text and ".pt)" not in text


HELP_WITHOUT_TORCH = """
import sys
from deeplabv3plus import cli
for argv in [["--help"], *([name, "--help"] for name in cli.COMMANDS)]:
    try:
        cli.main(argv)
    except SystemExit as e:
        assert e.code == 0, (argv, e.code)
print(sorted(m for m in sys.modules if m == "torch" or m.startswith("torch.")))
"""


def test_help_of_every_command_imports_no_torch():
    """``--help`` answers at once: building the parsers imports neither torch nor the jobs."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-c", HELP_WITHOUT_TORCH], capture_output=True, text=True, env=env, cwd=REPO
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_the_installed_command_form_of_help_imports_no_torch():
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "deeplabv3plus", "train", "--help"],
        capture_output=True, text=True, env=env, cwd=REPO,
    )  # fmt: skip
    assert done.returncode == 0 and "--config" in done.stdout, done.stderr
    imported = [line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines() if "|" in line]
    assert "deeplabv3plus.cli" in imported and "torch" not in imported


def test_the_package_root_loads_its_public_names_on_first_use():
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    code = "import sys, deeplabv3plus; print('torch' in sys.modules, deeplabv3plus.__version__)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=REPO)
    assert done.stdout.split() == ["False", deeplabv3plus.__version__], done.stderr
    from deeplabv3plus import deeplabv3plus_resnet101  # noqa: F401  (the import form keeps working)
    from deeplabv3plus.builders import build_model

    assert deeplabv3plus.build_model is build_model
    assert set(deeplabv3plus.__all__) <= set(dir(deeplabv3plus))
    assert all(callable(getattr(deeplabv3plus, name)) for name in deeplabv3plus.__all__)
    with pytest.raises(AttributeError, match="has no attribute 'deeplabv3plus_resnet7'"):
        _ = deeplabv3plus.deeplabv3plus_resnet7


def test_the_parsers_offer_the_catalogues_names_and_the_generators_defaults():
    from deeplabv3plus import catalog
    from deeplabv3plus.data import synthetic

    actions = {name: {a.dest: a for a in cli.build_parser(name)._actions} for name in cli.COMMANDS}
    assert list(actions["convert"]["kind"].choices) == list(catalog.TF_NAME_MAPS)
    assert list(actions["predict"]["format"].choices) == list(catalog.PREDICT_FORMATS)
    assert list(actions["benchmark"]["peers"].choices) == [*catalog.BENCHMARK_PEERS, "none"]
    made = actions["make-synthetic"]
    assert (
        list(made["kind"].choices) == list(synthetic.SYNTHETIC_KINDS)
        and made["kind"].default == synthetic.SYNTHETIC_KIND
    )
    assert (made["num_train"].default, made["num_val"].default, made["size"].default, made["num_classes"].default) == (
        synthetic.SYNTHETIC_NUM_TRAIN, synthetic.SYNTHETIC_NUM_VAL, synthetic.SYNTHETIC_SIZE,
        synthetic.SYNTHETIC_NUM_CLASSES,
    )  # fmt: skip


def test_configs_lists_every_shipped_config_with_what_it_is_and_prints_one(capsys):
    assert cli.main(["configs"]) == 0
    out = capsys.readouterr().out
    assert "quickstart                  Quickstart: a few minutes on a laptop CPU, no downloads." in out
    assert "voc_resnet101_os16          DeepLabv3+ ResNet-101 with torchvision's standard ResNet" in out
    assert sum(line.split(" ", 1)[0] in shipped_configs() for line in out.splitlines()) == len(
        shipped_configs()
    )
    for name in ("voc_xception65_os16", "voc_xception65_os16.yaml"):
        assert cli.main(["configs", name]) == 0
        assert capsys.readouterr().out == (REPO / "configs" / "voc_xception65_os16.yaml").read_text()


def test_paper_ablation_is_a_command_with_the_scripts_flags():
    args = cli.parse_command_args("paper-ablation", [])
    assert (args.config, args.output, args.controls, args.no_eval_rows) == (
        "quickstart", "runs/paper_ablation", False, False,
    )  # fmt: skip
    args = cli.parse_command_args(
        "paper-ablation", ["--controls", "--no-eval-rows", "--output", "o", "train.max_iters=3"]
    )
    assert (args.output, args.controls, args.no_eval_rows, args.overrides) == (
        "o",
        True,
        True,
        ["train.max_iters=3"],
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "paper_ablation.py"), "--bogus"],
        capture_output=True, text=True, env=env, cwd=REPO,
    )  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.startswith("paper_ablation.py: error: unrecognized arguments: --bogus")


def test_pyproject_lists_every_package_folder_and_maps_the_configs():
    text = (REPO / "pyproject.toml").read_text()
    listed = re.search(r"^packages = \[(.*)\]$", text, re.M).group(1)
    packages = {name.strip().strip('"') for name in listed.split(",")}
    folders = {
        ".".join(p.parent.relative_to(REPO).parts) for p in (REPO / "deeplabv3plus").rglob("__init__.py")
    }
    assert packages == folders | {"deeplabv3plus.configs"}
    assert 'package-dir = { "deeplabv3plus.configs" = "configs" }' in text


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


def test_check_data_prints_the_summary_writes_its_reports_and_says_where(
    tmp_path, synthetic_voc, capsys, monkeypatch
):
    (tmp_path / "c.yaml").write_text(
        f"model: {{num_classes: 6}}\ndata: {{layout: synthetic, root: {synthetic_voc}, num_classes: 6}}\n"
    )
    monkeypatch.chdir(tmp_path)  # --output is relative to where the command runs
    assert cli.main(["check-data", "--config", "c.yaml", "--output", "checks", "--workers", "2"]) == 0
    out = capsys.readouterr().out
    assert "# Data check: OK: training would run" in out and "| train | 6 |" in out and "| val | 3 |" in out
    assert f"wrote {Path('checks') / 'check_data.json'}, {Path('checks') / 'check_data.md'}" in out
    report = json.loads((tmp_path / "checks" / "check_data.json").read_text())
    assert report["ok"] is True and report["splits"]["train"]["num_images"] == 6
    assert (tmp_path / "checks" / "check_data.md").read_text().startswith("# Data check: OK")


def _tiny(root: Path, out: Path, max_iters: int) -> dict:
    return {
        "model": {"backbone": "resnet18", "num_classes": 6, "head_channels": 16, "aspp_dropout": 0.5},
        "data": {"layout": "synthetic", "root": str(root), "num_classes": 6, "crop_size": 49, "workers": 0},
        "train": {"max_iters": max_iters, "batch_size": 2, "lr": 0.01, "allow_scratch_backbone": True,
                  "device": "cpu", "log_interval": 1, "val_interval": 0, "ckpt_interval": 1000, "seed": 5,
                  "output_dir": str(out)},
    }  # fmt: skip


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


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _iterations(metrics: Path, key: str = "loss") -> list[int]:
    return [r["iteration"] for r in map(json.loads, metrics.read_text().splitlines()) if key in r]


def test_a_second_run_into_the_same_folder_is_refused_and_overwrite_replaces_the_run_whole(
    tmp_path, synthetic_voc, no_val, capsys
):
    """The issue's sequence: a run, then the same command with fewer iterations into its folder."""
    run = tmp_path / "run"
    save_config(config_from_dict(_tiny(synthetic_voc, run, 3)), tmp_path / "c.yaml")
    assert cli.main(["train", "--config", str(tmp_path / "c.yaml")]) == 0
    first = _files(run)
    assert {"last.pth", "best.pth", "config.yaml", "run_info.json", "metrics.jsonl"} <= set(first)
    capsys.readouterr()

    assert cli.main(["train", "--config", str(tmp_path / "c.yaml"), "train.max_iters=1"]) == 2
    err = capsys.readouterr().err
    assert f"train.output_dir '{run}' already holds a run" in err and "--overwrite" in err
    assert _files(run) == first  # byte for byte

    assert cli.main(["train", "--config", str(tmp_path / "c.yaml"), "train.max_iters=1", "--overwrite"]) == 0
    assert f"removed the previous run's files from {run}" in capsys.readouterr().out
    assert _iterations(run / "metrics.jsonl") == [1]  # the new run's lines only
    assert _iterations(run / "metrics.jsonl", "val_mIoU") == [1]
    assert load_checkpoint(run / "last.pth")["iteration"] == 1
    assert load_config(run / "config.yaml").train.max_iters == 1


def test_resume_auto_starts_afresh_then_resumes_from_last_pth_and_says_so(
    tmp_path, synthetic_voc, no_val, capsys
):
    run = tmp_path / "run"
    run.mkdir()
    # What an attempt killed before its first checkpoint leaves: replaced by the fresh start.
    (run / "metrics.jsonl").write_text('{"iteration": 7, "loss": 2.0}\n')
    save_config(config_from_dict(_tiny(synthetic_voc, run, 4)), tmp_path / "c.yaml")
    train_cmd = ["train", "--config", str(tmp_path / "c.yaml"), "--resume", "auto"]
    assert cli.main([*train_cmd, "--stop-after", "2"]) == 0
    assert "resumed from" not in capsys.readouterr().out
    assert _iterations(run / "metrics.jsonl") == [1, 2]
    # The session went on logging past its checkpoint before it was killed (the last line cut short).
    with open(run / "metrics.jsonl", "a") as f:
        f.write('{"iteration": 3, "loss": 9.0}\n{"iteration": 4, "lo')

    assert cli.main(train_cmd) == 0
    assert f"resumed from {run / 'last.pth'} at iteration 2" in capsys.readouterr().out
    assert _iterations(run / "metrics.jsonl") == [1, 2, 3, 4]
    assert 9.0 not in [
        r.get("loss") for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines())
    ]


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
def test_the_wheel_installs_a_working_deeplabv3plus_command_that_trains_the_quickstart_by_name(tmp_path):
    """pip wheel -> entry_points.txt names the command, the configs are inside -> pip install into a
    fresh venv -> it runs, and trains the shipped quickstart from a folder outside the checkout."""
    src = tmp_path / "src"  # build from a copy: an in-tree build would leave build/ in the checkout
    src.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(REPO / name, src / name)
    for folder in ("deeplabv3plus", "configs"):
        shutil.copytree(REPO / folder, src / folder, ignore=shutil.ignore_patterns("__pycache__"))
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
    assert {f"deeplabv3plus/configs/{p.name}" for p in (REPO / "configs").glob("*.yaml")} <= set(z.namelist())

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

    # The quickstart by name, from a folder outside the checkout: data/ and runs/ land there.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    done = subprocess.run([str(command), "configs"], capture_output=True, text=True, env=env, cwd=elsewhere)
    assert done.returncode == 0 and "\nquickstart " in done.stdout, done.stderr
    tiny = ["train.max_iters=2", "train.batch_size=2", "data.synthetic.size=6", "data.crop_size=33",
            "data.workers=0", "model.head_channels=16", "train.ckpt_interval=1000"]  # fmt: skip
    done = subprocess.run(
        [str(command), "train", "--config", "quickstart", *tiny],
        capture_output=True, text=True, env={**env, "OMP_NUM_THREADS": "2"}, cwd=elsewhere,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    shipped = next(venv.glob("lib/python*/site-packages/deeplabv3plus/configs/quickstart.yaml"))
    assert f"--config quickstart: the shipped config {shipped}" in done.stdout
    assert f"generated a synthetic dataset in {elsewhere / 'data' / 'synthetic'} " in done.stdout
    assert f"writing the run to {elsewhere / 'runs' / 'quickstart'} " in done.stdout
    assert load_checkpoint(elsewhere / "runs" / "quickstart" / "last.pth")["iteration"] == 2


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
