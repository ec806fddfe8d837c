"""A multi-node rendezvous, exercised on one machine: two torchrun "nodes" of one CPU process each.

Each node is its own ``torchrun --nnodes=2 --nproc_per_node=1 --rdzv_backend=c10d`` meeting at one
``127.0.0.1:<free port>`` endpoint, as on two machines (the first to bind the port hosts the
rendezvous store, the other joins it). What this does not show: two real machines (a network
between them, a hostname each) and NCCL; see docs/training.md.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import torch
from test_train import _free_port, tiny_config  # the same CPU-sized run and free port as the training tests

from deeplabv3plus.checkpoint import load_checkpoint
from deeplabv3plus.config import save_config

REPO = Path(__file__).resolve().parents[2]

# ``python -m deeplabv3plus`` (its ``cli.main``, unchanged) with ``train`` wrapped to save, in the
# node's working folder, each rank's trained parameters and its place in the job (torchrun's env).
NODE_ENTRY = """
import json, os, sys
import torch
import deeplabv3plus.train as train_module
from deeplabv3plus.cli import main

train = train_module.train

def train_and_record(*args, **kwargs):
    model, results = train(*args, **kwargs)
    rank = os.environ["RANK"]
    torch.save({k: p.detach() for k, p in model.named_parameters()}, f"rank{rank}.pt")
    place = {k: int(os.environ[k]) for k in ("RANK", "GROUP_RANK", "LOCAL_RANK", "WORLD_SIZE")}
    with open(f"rank{rank}.json", "w") as f:
        json.dump(place, f)
    return model, results

train_module.train = train_and_record  # cli.run_train imports it when it runs
sys.exit(main())
"""


def _node_command(port: int, rdzv_id: str, entry: Path, config: Path) -> list[str]:
    return [
        sys.executable, "-m", "torch.distributed.run", "--nnodes=2", "--nproc_per_node=1",
        "--rdzv_backend=c10d", f"--rdzv_endpoint=127.0.0.1:{port}", f"--rdzv_id={rdzv_id}",
        str(entry), "train", "--config", str(config),
    ]  # fmt: skip


@pytest.mark.slow
def test_two_nodes_meet_at_a_c10d_rendezvous_and_end_with_identical_weights(tmp_path, synthetic_voc):
    cfg = tiny_config(synthetic_voc, tmp_path / "run", max_iters=2)
    save_config(cfg, tmp_path / "config.yaml")
    entry = tmp_path / "node_entry.py"
    entry.write_text(NODE_ENTRY)
    command = _node_command(_free_port(), f"test-{uuid.uuid4().hex[:12]}", entry, tmp_path / "config.yaml")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    nodes = []
    for name in ("node_a", "node_b"):  # each node in its own folder: it writes its ranks' files there
        (tmp_path / name).mkdir()
        log = open(tmp_path / f"{name}.log", "w")
        # Its own session: on a timeout the node's torchrun and worker are killed together.
        node = subprocess.Popen(
            command, cwd=tmp_path / name, stdout=log, stderr=log, env=env, start_new_session=True
        )
        nodes.append((name, log, node))
    try:
        codes = {name: node.wait(timeout=120) for name, _, node in nodes}
    finally:
        for _, log, node in nodes:
            if node.poll() is None:
                os.killpg(node.pid, signal.SIGKILL)
                node.wait()
            log.close()
    logs = {name: (tmp_path / f"{name}.log").read_text()[-3000:] for name, _, _ in nodes}
    assert codes == {"node_a": 0, "node_b": 0}, logs

    # One rank on each node: node ranks 0 and 1, global ranks 0 and 1, each its node's local rank 0.
    places = {}
    for name, _, _ in nodes:
        (record,) = (tmp_path / name).glob("rank*.json")
        places[name] = json.loads(record.read_text())
    assert sorted(p["GROUP_RANK"] for p in places.values()) == [0, 1], places
    assert sorted(p["RANK"] for p in places.values()) == [0, 1], places
    assert all(p["LOCAL_RANK"] == 0 and p["WORLD_SIZE"] == 2 for p in places.values()), places

    # Both nodes hold the same weights, and they are those of the checkpoint rank 0 wrote.
    weights = {
        p["RANK"]: torch.load(tmp_path / name / f"rank{p['RANK']}.pt", weights_only=True)
        for name, p in places.items()
    }
    assert weights[0].keys() == weights[1].keys()
    for key in weights[0]:
        assert torch.equal(weights[0][key], weights[1][key]), key
    saved = load_checkpoint(tmp_path / "run" / "last.pth")
    assert saved["iteration"] == 2
    for key in weights[0]:
        assert torch.equal(saved["model"][key], weights[0][key]), key
    assert json.loads((tmp_path / "run" / "run_info.json").read_text())["world_size"] == 2
