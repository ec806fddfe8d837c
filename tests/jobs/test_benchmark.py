"""benchmark: the harness runs end to end on a tiny input and reports well-formed numbers.

Only the structure is checked (keys, positive finite numbers, MACs consistent between modes): timings
depend on the machine and are never asserted.
"""

import dataclasses
import json
import math

import pytest
import torch

from deeplabv3plus.benchmark import (
    BenchOptions,
    Candidate,
    benchmark_data,
    count_step_macs,
    default_candidates,
    format_results,
    peak_tflops_for,
    run_benchmark,
)
from deeplabv3plus.builders import build_model
from deeplabv3plus.config import DataConfig, ModelConfig
from deeplabv3plus.macs import count_macs

ROW_KEYS = {
    "name", "description", "config", "channels_last", "mode", "macs_g", "params_m", "latency_ms",
    "latency_all_ms", "latency_min_ms", "images_per_s", "gmacs_per_s", "peak_mem_mb", "flops_fraction",
    "ratio_vs_ours", "paired_ratio_vs_ours", "compare_to",
}  # fmt: skip

# ResNet-50 at 33x33, batch 2 (the training step's BatchNorm needs more than one value per channel).
TINY = dict(backbone="resnet50", num_classes=5)


def _opts(**kwargs) -> BenchOptions:
    base = dict(batch=2, height=33, width=33, num_classes=5, warmup=0, repeats=1, threads=1)
    return BenchOptions(**{**base, **kwargs})


def test_run_benchmark_end_to_end(tmp_path):
    candidates, notes = default_candidates(
        ModelConfig(**TINY), peers=(), both_memory_formats=True, eager=True
    )
    report = run_benchmark(candidates, _opts(), notes)

    assert set(report) == {"meta", "results", "notes", "comparisons", "probe_fractions"}
    assert report["probe_fractions"] == []  # no probe rows asked for
    assert {"date", "device", "device_name", "torch", "threads", "peak_tflops", "options"} <= set(
        report["meta"]
    )
    assert report["meta"]["threads"] == 1
    load = report["meta"]["load_avg_start"]
    assert load is None or (len(load) == 3 and all(v >= 0 for v in load))
    rows = report["results"]
    # The eager twin is inference only: training is the same model either way.
    assert [(r["mode"], r["name"]) for r in rows] == [
        ("infer", "ours"), ("infer", "ours-nhwc"), ("infer", "ours-eager"), ("train", "ours"), ("train", "ours-nhwc"),
    ]  # fmt: skip
    for r in rows:
        assert set(r) == ROW_KEYS
        for key in (
            "macs_g",
            "params_m",
            "latency_ms",
            "latency_min_ms",
            "images_per_s",
            "gmacs_per_s",
            "ratio_vs_ours",
            "paired_ratio_vs_ours",
        ):
            assert r[key] > 0 and math.isfinite(r[key]), (r["name"], key)
        assert len(r["latency_all_ms"]) == 1
        assert r["peak_mem_mb"] is None or r["peak_mem_mb"] >= 0
        assert r["flops_fraction"] is None  # CPU without --peak-tflops: no peak known
    assert [r["channels_last"] for r in rows] == [False, True, False, False, True]
    assert rows[0]["ratio_vs_ours"] == rows[0]["paired_ratio_vs_ours"] == 1.0
    # A training step is counted as 3 forwards; params are the trainable model's (not the folded copy's).
    assert rows[3]["macs_g"] == pytest.approx(3 * rows[0]["macs_g"])
    assert rows[0]["params_m"] == rows[2]["params_m"] == rows[3]["params_m"]
    assert "inference: prepared" in rows[0]["description"] and "eager" in rows[2]["description"]

    table = format_results(report)
    assert "ours-nhwc" in table and "GMACs" in table and "load average" in table
    path = tmp_path / "report.json"
    path.write_text(json.dumps(report))
    assert json.loads(path.read_text())["results"][0]["name"] == "ours"


def test_step_macs_match_count_macs():
    cfg = dict(TINY, output_stride=8, decoder=False)
    opts = _opts(batch=1, height=33, width=33)
    with torch.device("meta"):
        expected = count_macs(build_model(**cfg).eval(), 33, 33)
    assert count_step_macs(lambda: build_model(**cfg), opts, train=False) == expected


def test_peak_fraction_with_given_peak_and_batch_one_skips_training():
    cand = Candidate("ours", lambda: build_model(**TINY), "tiny")
    report = run_benchmark([cand], _opts(batch=1, peak_tflops=1.0, memory=False))
    (row,) = report["results"]
    assert row["mode"] == "infer" and row["peak_mem_mb"] is None
    assert 0 < row["flops_fraction"] < 1  # a CPU core does not reach 1 TFLOP/s
    assert any("train skipped" in n for n in report["notes"])


def test_unusable_peer_is_skipped_with_a_note():
    def refuses() -> torch.nn.Module:
        raise RuntimeError("Wrong input shape height=65, width=65.")

    cands = [Candidate("ours", lambda: build_model(**TINY), "tiny"), Candidate("peer", refuses, "x")]
    report = run_benchmark(cands, _opts(height=65, width=65, modes=("infer",), memory=False))
    assert [r["name"] for r in report["results"]] == ["ours"]
    assert any(n.startswith("peer skipped") for n in report["notes"])


def test_peak_table_unknown_on_cpu():
    assert peak_tflops_for(torch.device("cpu"), "bf16") is None


def test_data_pipeline_images_per_s(synthetic_voc):
    cfg = DataConfig(root=str(synthetic_voc), num_classes=6, crop_size=65)
    result = benchmark_data(cfg, num_images=4)
    assert result["images_per_s"] > 0 and result["ms_per_image"] > 0
    assert result["num_images"] == 4 and result["crop_size"] == 65


def test_ours_is_timed_through_prepare_for_inference_and_compared_per_mac(monkeypatch):
    import deeplabv3plus.benchmark as bench

    prepared = []

    def spy(model):
        prepared.append(model)
        return bench.prepare_for_inference(model)

    ours = bench.ours_candidate("ours", ModelConfig(**TINY))
    ours.prepare, ours.compare_to = spy, ("peer",)
    # A stand-in peer: ours at OS 8 (more Multiply-Adds), timed as it is.
    peer = Candidate("peer", lambda: build_model(**TINY, output_stride=8), "peer")
    report = run_benchmark([ours, peer], _opts(modes=("infer",), memory=False, repeats=2))
    assert len(prepared) == 1 and prepared[0].training  # the built, trainable model was prepared
    (c,) = report["comparisons"]
    assert (c["mode"], c["name"], c["peer"]) == ("infer", "ours", "peer")
    rows = {r["name"]: r for r in report["results"]}
    assert (
        c["macs_ratio"] == pytest.approx(rows["ours"]["macs_g"] / rows["peer"]["macs_g"])
        and c["macs_ratio"] < 1
    )
    assert c["per_mac_ratio"] == pytest.approx(c["time_ratio"] / c["macs_ratio"])
    assert "time per Multiply-Add" in format_results(report)


def test_default_candidates_pair_ours_with_each_peer(monkeypatch):
    import deeplabv3plus.benchmark

    # Only the pairing is checked: no model is built, so smp (an optional extra) need not be installed.
    monkeypatch.setattr(deeplabv3plus.benchmark, "smp_available", lambda: True)
    cfg = ModelConfig(backbone="resnet101", separable=True)
    cands, _ = default_candidates(cfg, peers=("smp", "torchvision"), eager=True)
    by_name = {c.name: c for c in cands}
    # ours is already the SC configuration: it (and its eager twin) is what smp is compared with.
    assert "ours-sc" not in by_name
    assert by_name["ours"].compare_to == ("smp",) and by_name["ours-eager"].compare_to == ("smp",)
    assert by_name["ours-v3-os8"].compare_to == ("torchvision",)
    assert (
        by_name["ours-v3-os8"].config["output_stride"] == 8 and not by_name["ours-v3-os8"].config["decoder"]
    )
    cands, _ = default_candidates(dataclasses.replace(cfg, separable=False), peers=("smp",))
    assert [c.name for c in cands][:2] == ["ours", "ours-sc"] and cands[1].compare_to == ("smp",)
    # Both memory formats: every peer-matching row gets a channels_last twin compared with the same peer.
    cands, _ = default_candidates(
        dataclasses.replace(cfg, separable=False), peers=("smp", "torchvision"), both_memory_formats=True
    )
    twins = {c.name: c for c in cands if c.name.endswith("-nhwc")}
    assert set(twins) == {"ours-nhwc", "ours-sc-nhwc", "ours-v3-os8-nhwc"}
    assert all(c.channels_last for c in twins.values())
    assert twins["ours-sc-nhwc"].compare_to == ("smp",)
    assert twins["ours-v3-os8-nhwc"].compare_to == ("torchvision",)


def test_onnx_row_runs_the_export_under_onnxruntime():
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    from deeplabv3plus.benchmark import onnx_candidate

    cfg = ModelConfig(backbone="resnet18", num_classes=5, head_channels=16)
    cand = onnx_candidate("ours-onnx", cfg, 33, 33, threads=1)
    report = run_benchmark([cand], _opts(batch=1, modes=("infer", "train"), memory=False))
    (row,) = report["results"]  # inference only
    assert row["mode"] == "infer" and row["latency_ms"] > 0 and "onnxruntime" in row["description"]
    with torch.device("meta"):
        expected = count_macs(build_model(**dataclasses.asdict(cfg)).eval(), 33, 33)
    assert row["macs_g"] == pytest.approx(expected / 1e9)  # counted on the PyTorch source


def test_training_loader_images_per_s(synthetic_voc):
    from deeplabv3plus.benchmark import benchmark_loader

    cfg = DataConfig(root=str(synthetic_voc), num_classes=6, crop_size=33)
    result = benchmark_loader(cfg, batch_size=2, num_batches=2, workers=0)
    assert result["num_images"] == 4 and result["workers"] == 0 and result["images_per_s"] > 0


def test_markdown_and_gpu_summary_state_each_target(tmp_path):
    import importlib.util
    from pathlib import Path

    from deeplabv3plus.benchmark import format_markdown

    cand = Candidate("ours", lambda: build_model("resnet18", num_classes=5, head_channels=8), "tiny")
    report = run_benchmark([cand], _opts(memory=False, peak_tflops=1.0))
    table = format_markdown(report)
    assert "| infer | ours |" in table and "| train | ours |" in table and "load average" in table

    path = Path(__file__).resolve().parents[2] / "scripts" / "gpu_checks.py"
    spec = importlib.util.spec_from_file_location("gpu_checks", path)
    gpu = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gpu)
    fast = json.loads(json.dumps(report))
    for row in fast["results"]:
        row["images_per_s"] *= 2
    fast["loader"] = {"images_per_s": 3 * fast["results"][1]["images_per_s"], "workers": 4, "num_images": 160}
    fast["loader"].update(layout="synthetic", crop_size=513, batch_size=16)
    for name, r in (("ours_513_fp32", report), ("ours_513_bf16_cl", fast), ("peers_512_bf16_cl", fast)):
        (tmp_path / f"{name}.json").write_text(json.dumps(r))
    text = gpu.write_summary(tmp_path, [{"name": "ours_513_fp32", "rc": 0, "seconds": 1.0}]).read_text()
    assert "**2.00x** (target >= 1.5x)" in text
    assert "**3.00x** (target >= 2x)" in text
    assert "inference % of peak, ours_513_bf16_cl_compile: not measured" in text
    assert "## ours_513_bf16_cl" in text and "| infer | ours |" in text
    assert "prepared bf16 inference vs prepared fp32: not measured" in text


def test_gpu_summary_states_the_bf16_inference_ratio_and_share_of_peak(tmp_path):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "scripts" / "gpu_checks.py"
    spec = importlib.util.spec_from_file_location("gpu_checks", path)
    gpu = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gpu)
    assert "--precisions" in gpu.RUNS["ours_513_precisions"]
    rows = [
        {"mode": "infer", "name": "ours", "paired_ratio_vs_ours": 1.0, "gmacs_per_s": 100_000.0},
        {"mode": "infer", "name": "ours-bf16", "paired_ratio_vs_ours": 0.5, "gmacs_per_s": 247_350.0},
        {"mode": "infer", "name": "ours-autocast-bf16", "paired_ratio_vs_ours": 0.8, "gmacs_per_s": 1.0},
    ]
    report = {"meta": {"device_name": "NVIDIA H200"}, "results": rows}
    lines = gpu.precision_targets(report)
    # 247,350 GMAC/s = 494.7 TFLOP/s, half of the H200's 989.4 dense bf16 TFLOP/s.
    assert "**0.500x** the time (50.0% of the bf16 dense peak)" in lines[0]
    assert "autocast bf16 / prepared fp32: 0.800x" in lines[1]


def test_precision_rows_time_bf16_against_the_prepared_fp32_row():
    cfg = ModelConfig(backbone="resnet18", num_classes=5, head_channels=16)
    candidates, _ = default_candidates(cfg, peers=(), precisions=("bf16",))
    assert [c.name for c in candidates] == ["ours", "ours-bf16", "ours-autocast-bf16"]
    report = run_benchmark(candidates, _opts(batch=1, modes=("infer",), memory=False))
    rows = {r["name"]: r for r in report["results"]}
    assert set(rows) == {"ours", "ours-bf16", "ours-autocast-bf16"}
    for row in rows.values():
        assert row["latency_ms"] > 0 and math.isfinite(row["paired_ratio_vs_ours"])
        assert row["macs_g"] == rows["ours"]["macs_g"]  # the same model: only the precision differs
    assert "bf16 weights" in rows["ours-bf16"]["description"]
    assert "autocast" in rows["ours-autocast-bf16"]["description"]


def test_int8_precisions_add_one_row_per_toolchain_or_say_why_not(monkeypatch):
    import importlib.util

    from deeplabv3plus.benchmark import precision_candidates

    cfg = ModelConfig(backbone="resnet18", num_classes=5, head_channels=16)
    found = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "torchao" else found(name, *a)
    )
    candidates, notes = precision_candidates(cfg, ("int8-pt2e",), (65, 65))
    assert candidates == [] and notes == [
        "ours-int8-pt2e skipped: torchao is not installed (pip install '.[pt2e]')"
    ]
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: object())
    candidates, _ = precision_candidates(cfg, ("int8", "int8-pt2e"), (65, 65))
    assert [c.name for c in candidates] == ["ours-int8", "ours-int8-pt2e"]
    assert "PT2E" in candidates[1].description and candidates[1].modes == ("infer",)


def test_peak_probe_is_wide_1x1_convs_and_each_precision_row_gets_its_share_of_its_probe():
    from deeplabv3plus.benchmark import ConvPeakProbe, format_markdown

    probe = ConvPeakProbe()
    wide = ConvPeakProbe.DEPTH * ConvPeakProbe.WIDTH**2 * (64 // ConvPeakProbe.POOL) ** 2
    assert wide / count_macs(probe, 64, 64) > 0.99  # the GEMMs are all that is timed

    cfg = ModelConfig(backbone="resnet18", num_classes=5, head_channels=16)
    candidates, _ = default_candidates(cfg, peers=(), precisions=("bf16",), probe=True)
    assert [c.name for c in candidates][-2:] == ["probe", "probe-bf16"]
    report = run_benchmark(candidates, _opts(batch=1, modes=("infer",), memory=False))
    rows = {r["name"]: r for r in report["results"]}
    shares = {f["name"]: f for f in report["probe_fractions"]}
    assert set(shares) == {"ours", "ours-bf16"}  # autocast runs no toolchain of its own to probe
    for name, probe_name in (("ours", "probe"), ("ours-bf16", "probe-bf16")):
        assert shares[name]["probe"] == probe_name
        assert shares[name]["fraction"] == pytest.approx(
            rows[name]["gmacs_per_s"] / rows[probe_name]["gmacs_per_s"]
        )
    assert "| infer | ours-bf16 |" in format_markdown(report).split("% of the probe |")[1]


def test_training_split_generates_a_synthetic_set_into_a_temporary_folder_removed_on_exit(monkeypatch):
    import os

    import deeplabv3plus.benchmark as bench

    seen = []

    def fake_build(cfg, split, train):
        seen.append((cfg.root, split, train, os.path.isdir(os.path.dirname(cfg.root))))
        return ["a sample"]

    monkeypatch.setattr(bench, "build_dataset", fake_build)
    cfg = DataConfig(layout="synthetic", root="")
    with bench.training_split(cfg, "val") as (dataset, skipped):
        assert dataset == ["a sample"] and skipped == ""
    ((root, split, train, existed),) = seen
    assert root.endswith("synthetic") and existed and not os.path.exists(os.path.dirname(root))
    assert (split, train) == ("val", True) and cfg.root == ""  # the caller's config is left as it is


def test_training_split_reads_an_existing_root_and_says_why_a_dataset_cannot_be_built(
    synthetic_voc, tmp_path
):
    from deeplabv3plus.benchmark import training_split

    cfg = DataConfig(root=str(synthetic_voc), num_classes=6, crop_size=33)
    with training_split(cfg) as (dataset, skipped):
        assert len(dataset) == 6 and skipped == ""  # the train split of the fixture
    missing = DataConfig(layout="voc", root=str(tmp_path / "nowhere"))
    with training_split(missing) as (dataset, skipped):
        assert dataset is None and skipped.startswith(
            f"cannot build the voc dataset at '{tmp_path / 'nowhere'}'"
        )
    assert benchmark_data(missing)["skipped"] == skipped


def test_benchmark_report_times_the_lineup_and_the_data_pipeline(synthetic_voc):
    from deeplabv3plus.benchmark import Lineup, benchmark_report

    model_cfg = ModelConfig(backbone="resnet18", num_classes=5, head_channels=8)
    data_cfg = DataConfig(root=str(synthetic_voc), num_classes=6, crop_size=33, workers=0)
    opts = _opts(modes=("infer",), memory=False)
    report = benchmark_report(
        model_cfg,
        opts,
        Lineup(peers=(), eager=True),
        data_cfg,
        data_images=2,
        loader_batches=1,
        command="x y",
    )
    assert [r["name"] for r in report["results"]] == ["ours", "ours-eager"]
    assert report["meta"]["command"] == "x y"
    assert (
        report["data"]["num_images"] == 2 and report["loader"]["num_images"] == 2
    )  # one batch of opts.batch
    bare = benchmark_report(model_cfg, opts, Lineup(peers=()))
    assert [r["name"] for r in bare["results"]] == ["ours"]
    assert "data" not in bare and "loader" not in bare and "command" not in bare["meta"]


def test_write_report_writes_the_formats_asked_for_and_returns_their_paths(tmp_path):
    from deeplabv3plus.benchmark import format_markdown, write_report

    cand = Candidate("ours", lambda: build_model("resnet18", num_classes=5, head_channels=8), "tiny")
    report = run_benchmark([cand], _opts(batch=1, modes=("infer",), memory=False))
    paths = write_report(report, tmp_path / "r.json", tmp_path / "r.md")
    assert paths == [str(tmp_path / "r.json"), str(tmp_path / "r.md")]
    assert json.loads((tmp_path / "r.json").read_text()) == json.loads(json.dumps(report))
    assert (tmp_path / "r.md").read_text() == format_markdown(report) + "\n"
    assert write_report(report, None, tmp_path / "only.md") == [str(tmp_path / "only.md")]
    assert not (tmp_path / "None").exists() and write_report(report) == []


def test_benchmark_command_prints_the_table_and_writes_json_and_markdown(tmp_path, capsys, monkeypatch):
    from deeplabv3plus import cli

    monkeypatch.setattr("sys.argv", ["deeplabv3plus", "benchmark"])
    argv = ["benchmark", "--device", "cpu", "--backbone", "resnet18", "--num-classes", "5", "--size", "33",
            "--batch", "1", "--modes", "infer", "--repeats", "1", "--warmup", "0", "--peers", "none",
            "--no-memory", "--threads", "1", "--json", str(tmp_path / "b.json"), "--markdown", str(tmp_path / "b.md")]  # fmt: skip
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert "ours" in out and out.endswith(f"wrote {tmp_path / 'b.json'}\nwrote {tmp_path / 'b.md'}\n")
    report = json.loads((tmp_path / "b.json").read_text())
    assert [r["name"] for r in report["results"]] == ["ours"] and report["meta"]["command"].endswith(
        "benchmark"
    )
    assert report["meta"]["options"]["height"] == 33 and report["meta"]["options"]["threads"] == 1
    assert "| infer | ours |" in (tmp_path / "b.md").read_text()


def test_training_split_really_generates_the_synthetic_set_it_times():
    from deeplabv3plus.benchmark import training_split
    from deeplabv3plus.catalog import SyntheticOptions

    cfg = DataConfig(
        layout="synthetic", root="", num_classes=3, crop_size=17, synthetic=SyntheticOptions(size=5)
    )
    with training_split(cfg, None) as (dataset, skipped):
        assert skipped == "" and len(dataset) == 4  # 80% of the 5 generated images
    assert cfg.root == "" and not cfg.synthetic.generate  # the caller's config is untouched
