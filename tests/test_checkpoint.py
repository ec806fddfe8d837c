"""Checkpoint files: atomic writes, the mode the umask gives, integrity on load, one-line errors on a
failed read or write, the one state_dict fit check."""

from __future__ import annotations

import errno
import io
import os
import pickle
import shutil
import stat
import zipfile
from collections import namedtuple
from pathlib import Path

import pytest
import torch
from PIL import Image
from torch import nn

import deeplabv3plus.checkpoint as checkpoint_module
from deeplabv3plus import cli
from deeplabv3plus.checkpoint import (
    CheckpointError,
    CheckpointWriteError,
    check_state_dict_fits,
    load_checkpoint,
    read_torch_file,
    save_checkpoint,
    state_dict_mismatch,
    stored_config,
)
from deeplabv3plus.weights.imagenet import PretrainedWeightsError, read_state_dict

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_a_checkpoint_gets_the_mode_the_umask_gives_like_any_new_file(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        path = save_checkpoint({"model": {"w": torch.randn(2)}}, tmp_path / "last.pth")
        (tmp_path / "config.yaml").write_text("x: 1\n")
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == mode
    assert stat.S_IMODE((tmp_path / "config.yaml").stat().st_mode) == mode  # the same as a plain open()


def test_a_failed_write_leaves_the_previous_checkpoint_and_no_temporary_file(tmp_path):
    path = save_checkpoint({"model": {"w": torch.ones(1)}}, tmp_path / "last.pth")

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("cannot pickle this")

    with pytest.raises(RuntimeError, match="cannot pickle"):
        save_checkpoint({"model": {}, "bad": Unpicklable()}, path)
    assert [p.name for p in tmp_path.iterdir()] == ["last.pth"]
    assert torch.equal(load_checkpoint(path)["model"]["w"], torch.ones(1))


def test_the_fit_check_names_shapes_missing_and_unexpected_keys():
    model = nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4))
    state = {k: torch.randn_like(v.float()) for k, v in model.state_dict().items()}
    assert state_dict_mismatch(model.state_dict(), state) is None
    del state["1.num_batches_tracked"]  # files converted from other frameworks lack it: fine
    assert state_dict_mismatch(model.state_dict(), state) is None
    state["0.weight"] = torch.randn(5, 3, 1, 1)
    del state["1.bias"]
    state["2.weight"] = torch.randn(1)
    assert state_dict_mismatch(model.state_dict(), state) == (
        "1 tensors of another shape, e.g. 0.weight: (5, 3, 1, 1) in the file, (4, 3, 1, 1) in the model; "
        "1 missing keys, e.g. 1.bias; 1 unexpected keys, e.g. 2.weight"
    )
    with pytest.raises(
        CheckpointError, match=r"checkpoint 'f.pth' does not fit the configured model \(tiny\): 1 tensors"
    ):
        check_state_dict_fits(model, state, "f.pth", "tiny")


# --- integrity on load ---------------------------------------------------------------------------


def _small_model_checkpoint(path: Path) -> Path:
    model = nn.Sequential(nn.Conv2d(16, 64, 3), nn.BatchNorm2d(64))  # 36 KiB of weights
    return save_checkpoint({"model": model.state_dict(), "iteration": 3}, path)


def _invert_4_kib_in_the_middle(path: Path) -> None:
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle - 2048 : middle + 2048] = bytes(b ^ 0xFF for b in data[middle - 2048 : middle + 2048])
    path.write_bytes(bytes(data))


def _one_line(e: pytest.ExceptionInfo) -> str:
    text = str(e.value)
    assert "\n" not in text.strip(), text
    return text


def test_a_checkpoint_with_4_kib_inverted_in_the_middle_is_refused_as_damaged(tmp_path):
    path = _small_model_checkpoint(tmp_path / "last.pth")
    _invert_4_kib_in_the_middle(path)
    with pytest.raises(CheckpointError, match=r"checkpoint '.*last\.pth' is damaged") as e:
        load_checkpoint(path)
    assert "CRC-32" in _one_line(e)


def test_the_stored_config_is_read_with_the_tensors_mapped_and_a_damaged_file_still_refused(tmp_path):
    model = nn.Sequential(nn.Conv2d(16, 64, 3), nn.BatchNorm2d(64))
    config = {"train": {"max_iters": 7}, "data": {"root": "somewhere"}}
    path = save_checkpoint({"model": model.state_dict(), "config": config}, tmp_path / "last.pth")
    assert stored_config(path) == config == load_checkpoint(path)["config"]
    _invert_4_kib_in_the_middle(path)
    with pytest.raises(CheckpointError, match=r"checkpoint '.*last\.pth' is damaged"):
        stored_config(path)
    without = save_checkpoint({"model": model.state_dict()}, tmp_path / "bare.pth")
    with pytest.raises(CheckpointError, match=r"bare\.pth' holds no config"):
        stored_config(without)


def test_a_damaged_pretrained_weights_file_is_refused_too(tmp_path):
    path = _small_model_checkpoint(tmp_path / "backbone.pth")
    assert set(read_state_dict(path)) == {"0.weight", "0.bias", "1.weight", "1.bias", "1.running_mean",
                                          "1.running_var", "1.num_batches_tracked"}  # fmt: skip
    _invert_4_kib_in_the_middle(path)
    with pytest.raises(PretrainedWeightsError, match=r"pretrained weights file '.*backbone\.pth' is damaged"):
        read_state_dict(path)


class _RunsCode:
    def __reduce__(self):
        return (os.system, ("true",))


def _torch_saved(obj, **kwargs) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer, **kwargs)
    return buffer.getvalue()


def _zip_without_data_pkl() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("notes/a.txt", "not weights")
    return buffer.getvalue()


@pytest.mark.parametrize(
    "content, expected",
    [
        (
            lambda: bytes(range(256)) * 20,
            "not a PyTorch file (neither the zip archive torch.save writes nor a pickle)",
        ),
        (lambda: b"these are not weights\n", "not a PyTorch file"),
        (lambda: pickle.dumps({"model": {"w": [1.0]}}), "not a PyTorch file (a plain pickle"),
        (_zip_without_data_pkl, "not a PyTorch file (a zip archive without the data.pkl"),
        (lambda: _torch_saved({"model": torch.randn(1000)})[:3000], "truncated or corrupt"),
        (lambda: _torch_saved({"model": _RunsCode()}), "refusing to load checkpoint"),
    ],
    ids=["random-bytes", "text", "plain-pickle", "foreign-zip", "truncated", "unsafe-pickle"],
)
def test_an_unreadable_file_is_refused_with_what_is_wrong_with_it(tmp_path, content, expected):
    path = tmp_path / "x.pth"
    path.write_bytes(content())
    with pytest.raises(CheckpointError) as e:
        read_torch_file(path)
    text = _one_line(e)
    assert f"'{path}'" in text and expected in text, text
    assert ("could run code" in text) == (expected == "refusing to load checkpoint"), (
        text
    )  # only for a pickle that would


def test_the_fixtures_and_files_of_earlier_formats_still_load(tmp_path):
    assert isinstance(
        read_torch_file(FIXTURES / "regression" / "expected.pt"), dict
    )  # committed by a release
    legacy = tmp_path / "legacy.pth"  # torch < 1.6's format: no CRC to check, read as it is
    legacy.write_bytes(_torch_saved({"model": {"w": torch.ones(2)}}, _use_new_zipfile_serialization=False))
    assert torch.equal(load_checkpoint(legacy)["model"]["w"], torch.ones(2))
    if hasattr(torch.serialization, "set_crc32_options"):  # torch >= 2.6 can write records without a CRC-32
        torch.serialization.set_crc32_options(False)
        try:
            content = _torch_saved({"model": {"w": torch.ones(2)}})
        finally:
            torch.serialization.set_crc32_options(True)
        (tmp_path / "no_crc.pth").write_bytes(content)
        assert torch.equal(load_checkpoint(tmp_path / "no_crc.pth")["model"]["w"], torch.ones(2))


# --- a failed write: a full disk -------------------------------------------------------------------

_Usage = namedtuple("_Usage", "total used free")


class _FillsTheDisk:
    """The file os.fdopen opens, whose writes fail with ENOSPC once ``room`` bytes are written."""

    def __init__(self, f, room: int):
        self.file, self.room = f, room

    def write(self, data) -> int:
        size = memoryview(data).nbytes
        if size > self.room:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.room -= size
        return self.file.write(data)

    def __getattr__(self, name):
        return getattr(self.file, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.file.close()


def test_a_full_disk_during_a_checkpoint_write_keeps_the_previous_one_and_says_so(tmp_path, monkeypatch):
    path = save_checkpoint({"model": {"w": torch.ones(1)}, "iteration": 2}, tmp_path / "last.pth")
    real_fdopen = os.fdopen
    monkeypatch.setattr(
        checkpoint_module.os, "fdopen", lambda fd, mode: _FillsTheDisk(real_fdopen(fd, mode), 2000)
    )
    monkeypatch.setattr(checkpoint_module.shutil, "disk_usage", lambda _: _Usage(2**30, 2**30 - 1000, 1000))

    with pytest.raises(CheckpointWriteError) as e:
        save_checkpoint({"model": {"w": torch.zeros(10_000)}, "iteration": 4}, path)
    text = _one_line(e)
    assert text.startswith(f"cannot write checkpoint '{path}': No space left on device (the disk is full: ")
    assert text.endswith(f"the previous '{path}' is intact"), text
    assert e.value.errno == errno.ENOSPC and isinstance(e.value, cli.user_errors())  # one line, exit code 2
    assert [p.name for p in tmp_path.iterdir()] == ["last.pth"]  # no temporary file left
    monkeypatch.undo()
    assert load_checkpoint(path)["iteration"] == 2


@pytest.mark.parametrize(
    "free, reason", [(10, "the disk is full: 10 bytes free"), (2**40, "the write failed")]
)
def test_torch_zip_writer_failure_is_a_one_line_write_error(tmp_path, monkeypatch, free, reason):
    def save_until_it_fails(obj, f, *args, **kwargs):
        f.write(b"partial")  # torch's zip writer hides the write's OSError behind this RuntimeError
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598")

    monkeypatch.setattr(checkpoint_module.torch, "save", save_until_it_fails)
    monkeypatch.setattr(shutil, "disk_usage", lambda _: _Usage(2**41, 2**41 - free, free))
    with pytest.raises(CheckpointWriteError) as e:
        save_checkpoint({"model": {}}, tmp_path / "best.pth")
    text = _one_line(e)
    assert text.startswith(f"cannot write checkpoint '{tmp_path / 'best.pth'}': ") and reason in text, text
    assert "unexpected pos 704 vs 598" in text or "disk is full" in text
    assert text.endswith("nothing was written") and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("command", [["eval"], ["predict", "x.png"], ["export", "--output", "m.onnx"]])
def test_the_commands_refuse_a_damaged_checkpoint_in_one_line_with_exit_code_2(tmp_path, capsys, command):
    path = _small_model_checkpoint(tmp_path / "last.pth")
    _invert_4_kib_in_the_middle(path)
    if command[0] == "predict":
        command = [*command, "--output", str(tmp_path / "out")]
        Image.new("RGB", (8, 8)).save(tmp_path / "x.png")
    command = [str(tmp_path / c) if c.endswith((".png", ".onnx")) else c for c in command]
    assert cli.main([command[0], "--checkpoint", str(path), *command[1:]]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and f"checkpoint '{path}' is damaged" in err, err
