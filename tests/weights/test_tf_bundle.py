"""The TF checkpoint reader against a checkpoint written by real TensorFlow (tests/fixtures/tf).

The fixture was saved once by ``tests/fixtures/tf/make_fixture.py`` with the TF1 Saver; these
tests need neither TensorFlow nor protobuf.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from deeplabv3plus.weights.tf_bundle import TFCheckpoint, TFCheckpointError, crc32c, masked_crc32c

FIXTURE = Path(__file__).parents[1] / "fixtures" / "tf"
PREFIX = FIXTURE / "model.ckpt"


@pytest.fixture(scope="module")
def expected() -> dict[str, np.ndarray]:
    with np.load(FIXTURE / "expected.npz") as npz:
        return {name.replace("|", "/"): npz[name] for name in npz.files}


@pytest.fixture
def ckpt_copy(tmp_path: Path) -> Path:
    """A writable copy of the fixture checkpoint; returns its prefix."""
    for f in FIXTURE.glob("model.ckpt.*"):
        shutil.copy(f, tmp_path / f.name)
    return tmp_path / "model.ckpt"


def test_every_value_matches_what_tensorflow_saved(expected):
    ckpt = TFCheckpoint(PREFIX)
    for name, value in expected.items():
        got = ckpt[name]
        assert got.shape == value.shape, name
        assert got.dtype == value.dtype, name  # bfloat16 is returned as float32, exactly
        np.testing.assert_array_equal(got, value, err_msg=name)


def test_keys_are_sorted_variable_names_without_the_header(expected):
    ckpt = TFCheckpoint(PREFIX)
    assert set(ckpt.keys()) == set(expected) | {"dtypes/string"}  # strings are not in the npz
    assert ckpt.keys() == sorted(ckpt.keys())
    assert "" not in ckpt and "global_step" in ckpt and len(ckpt) == len(expected) + 1


def test_shapes_and_dtypes_as_tensorflow_reports_them():
    ckpt = TFCheckpoint(PREFIX)
    name = "xception_65/entry_flow/block1/unit_1/xception_module/separable_conv1_depthwise/depthwise_weights"
    assert ckpt.shape(name) == (3, 3, 4, 1)
    assert ckpt.shape("xception_65/entry_flow/conv1_1/weights") == (3, 3, 3, 4)  # HWIO
    assert ckpt.shape("global_step") == () and ckpt.dtype("global_step") == "int64"
    assert ckpt.dtype("dtypes/bfloat16") == "bfloat16"
    assert ckpt.dtype("dtypes/float16") == "float16"
    listed = dict((n, (d, s)) for n, d, s in ckpt.list_variables())
    assert listed["logits/semantic/biases"] == ("float32", (3,))
    assert int(ckpt["global_step"]) == 30000


def test_string_tensors_read_as_bytes():
    ckpt = TFCheckpoint(PREFIX)
    assert ckpt.dtype("dtypes/string") == "string"
    assert list(ckpt["dtypes/string"]) == [b"deeplab", b"", b"v3+"]


def test_returned_arrays_are_private_copies():
    ckpt = TFCheckpoint(PREFIX)
    a = ckpt["logits/semantic/biases"]
    a[:] = 0
    assert ckpt["logits/semantic/biases"].any()


def test_index_suffix_is_accepted():
    assert TFCheckpoint(str(PREFIX) + ".index").keys() == TFCheckpoint(PREFIX).keys()


def test_unknown_name_is_a_key_error_naming_it():
    with pytest.raises(KeyError, match="no/such/var"):
        TFCheckpoint(PREFIX)["no/such/var"]


def test_crc32c_check_values():
    assert crc32c(b"123456789") == 0xE3069283  # the standard CRC-32C check value
    assert masked_crc32c(b"") == 0xA282EAD8


def test_verify_accepts_the_fixture_and_catches_a_flipped_byte(ckpt_copy, expected):
    ckpt = TFCheckpoint(ckpt_copy, verify=True)
    for name in expected:
        ckpt[name]
    entry = ckpt.entry("logits/semantic/weights")
    data = Path(str(ckpt_copy) + ".data-00000-of-00001")
    raw = bytearray(data.read_bytes())
    raw[entry.offset] ^= 0xFF
    data.write_bytes(bytes(raw))
    with pytest.raises(TFCheckpointError, match="crc32c mismatch.*logits/semantic/weights"):
        TFCheckpoint(ckpt_copy, verify=True)["logits/semantic/weights"]
    TFCheckpoint(ckpt_copy)["logits/semantic/weights"]  # unverified reads do not check


def test_missing_index_names_the_file(tmp_path):
    with pytest.raises(TFCheckpointError, match=r"nothing\.ckpt\.index: checkpoint index file not found"):
        TFCheckpoint(tmp_path / "nothing.ckpt")


def test_missing_data_shard_names_the_file(ckpt_copy):
    Path(str(ckpt_copy) + ".data-00000-of-00001").unlink()
    with pytest.raises(TFCheckpointError, match=r"data-00000-of-00001: checkpoint data file not found"):
        TFCheckpoint(ckpt_copy)


def test_bad_magic_names_the_file(ckpt_copy):
    index = Path(str(ckpt_copy) + ".index")
    index.write_bytes(index.read_bytes()[:-1] + b"\x00")
    with pytest.raises(TFCheckpointError, match=r"model\.ckpt\.index: bad magic number"):
        TFCheckpoint(ckpt_copy)


def test_truncated_index_is_an_error(ckpt_copy):
    index = Path(str(ckpt_copy) + ".index")
    index.write_bytes(index.read_bytes()[:20])
    with pytest.raises(TFCheckpointError, match="too short"):
        TFCheckpoint(ckpt_copy)


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        b = buf[pos]
        value |= (b & 0x7F) << shift
        pos, shift = pos + 1, shift + 7
        if not b & 0x80:
            return value, pos


def test_compressed_table_blocks_are_refused_clearly(ckpt_copy):
    index = Path(str(ckpt_copy) + ".index")
    raw = bytearray(index.read_bytes())
    # The footer's second BlockHandle points at the index block; mark that block snappy-compressed.
    footer = bytes(raw[-48:])
    _, pos = _varint(footer, 0)  # metaindex offset
    _, pos = _varint(footer, pos)  # metaindex size
    offset, pos = _varint(footer, pos)
    size, _ = _varint(footer, pos)
    raw[offset + size] = 1
    index.write_bytes(bytes(raw))
    with pytest.raises(TFCheckpointError, match="snappy-compressed"):
        TFCheckpoint(ckpt_copy)


def test_big_endian_header_is_honoured(ckpt_copy, expected):
    """Byte order comes from the header; a little-endian file read as big-endian must differ."""
    ckpt = TFCheckpoint(ckpt_copy)
    ckpt.big_endian = True
    swapped = ckpt["dtypes/int32"]
    np.testing.assert_array_equal(swapped, expected["dtypes/int32"].byteswap())
