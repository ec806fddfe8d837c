"""The TF checkpoint writer against the checkpoint real TensorFlow wrote (tests/fixtures/tf), and crc32c."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest

from deeplabv3plus.weights import tf_bundle
from deeplabv3plus.weights.tf_bundle import TFCheckpoint, crc32c
from deeplabv3plus.weights.tf_writer import write_tf_checkpoint

FIXTURE = Path(__file__).parents[1] / "fixtures" / "tf" / "model.ckpt"


def _fixture_tensors() -> tuple[dict[str, np.ndarray], dict[str, str]]:
    ckpt = TFCheckpoint(FIXTURE)
    special = {n: ckpt.dtype(n) for n in ckpt.keys() if ckpt.dtype(n) in ("bfloat16", "string")}
    return {n: ckpt[n] for n in ckpt.keys()}, special


def test_rewriting_the_tensorflow_fixture_gives_byte_identical_files(tmp_path):
    tensors, dtypes = _fixture_tensors()
    index, data = write_tf_checkpoint(tmp_path / "model.ckpt", tensors, dtypes=dtypes)
    assert index.read_bytes() == Path(f"{FIXTURE}.index").read_bytes()
    assert data.read_bytes() == Path(f"{FIXTURE}.data-00000-of-00001").read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "model.ckpt.data-00000-of-00001",
        "model.ckpt.index",
    ]


def test_written_checkpoint_reads_back_with_every_dtype_shape_and_crc(tmp_path):
    tensors, dtypes = _fixture_tensors()
    rng = np.random.default_rng(0)
    tensors["new/conv/weights"] = rng.standard_normal((3, 3, 5, 7)).astype(np.float32)
    tensors["new/uint8"] = rng.integers(0, 255, (4, 3), dtype=np.uint8)
    write_tf_checkpoint(tmp_path / "model.ckpt", tensors, dtypes=dtypes)
    back = TFCheckpoint(tmp_path / "model.ckpt", verify=True)
    assert back.keys() == sorted(tensors)
    for name, value in tensors.items():
        got = back[name]
        assert got.shape == np.shape(value) and got.dtype == np.asarray(value).dtype, name
        np.testing.assert_array_equal(got, value, err_msg=name)
    assert back.dtype("dtypes/bfloat16") == "bfloat16" and back.dtype("new/uint8") == "uint8"


def test_a_table_of_several_blocks_with_separator_index_keys_reads_back(tmp_path):
    """3,000 long names exceed one 256 KiB data block; each index key separates two blocks."""
    scope = "v{:05d}/xception_65/middle_flow/block1/unit_1/xception_module/separable_conv1_pointwise/BatchNorm/gamma"
    tensors = {scope.format(i * 7): np.full((2,), i, np.float32) for i in range(3000)}
    index, _ = write_tf_checkpoint(tmp_path / "big.ckpt", tensors)
    raw = index.read_bytes()
    _, _, pos = tf_bundle._block_handle(raw[-48:])
    offset, size, _ = tf_bundle._block_handle(raw[-48:], pos)
    blocks = []
    for separator, handle in tf_bundle._block_entries(raw[offset : offset + size], index):
        block_offset, block_size, _ = tf_bundle._block_handle(handle)
        keys = [k for k, _ in tf_bundle._block_entries(raw[block_offset : block_offset + block_size], index)]
        blocks.append((separator, keys))
    assert len(blocks) >= 2
    for (separator, keys), (_, next_keys) in zip(blocks, blocks[1:]):
        assert keys[-1] <= separator < next_keys[0]
    assert blocks[-1][0] == b"w"  # the short successor of the last key
    back = TFCheckpoint(tmp_path / "big.ckpt", verify=True)
    assert back.keys() == sorted(tensors)
    np.testing.assert_array_equal(back[scope.format(2999 * 7)], [2999, 2999])


def test_unsupported_input_is_refused_with_the_name(tmp_path):
    with pytest.raises(ValueError, match="odd: dtype 'bfloat16' given for a int32"):
        write_tf_checkpoint(tmp_path / "m.ckpt", {"odd": np.zeros(2, np.int32)}, dtypes={"odd": "bfloat16"})
    with pytest.raises(ValueError, match="datetime64"):
        write_tf_checkpoint(tmp_path / "m.ckpt", {"when": np.zeros(2, "datetime64[s]")})
    with pytest.raises(ValueError, match="not among the tensors"):
        write_tf_checkpoint(tmp_path / "m.ckpt", {"a": np.zeros(1)}, dtypes={"b": "string"})
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("size", [0, 9, 65536, 65537, 300_001])
def test_numpy_crc32c_equals_the_bytewise_algorithm(size):
    data = np.random.default_rng(size).integers(0, 256, size, dtype=np.uint8).tobytes()
    assert crc32c(data) == tf_bundle._crc_update(0xFFFFFFFF, data) ^ 0xFFFFFFFF


def test_crc32c_check_value_and_block_trailer_of_the_fixture():
    assert crc32c(b"123456789") == 0xE3069283
    raw = Path(f"{FIXTURE}.index").read_bytes()
    meta_offset, meta_size, _ = tf_bundle._block_handle(raw[-48:])
    block = raw[meta_offset : meta_offset + meta_size + 1]  # contents + compression byte
    stored = struct.unpack_from("<I", raw, meta_offset + meta_size + 1)[0]
    assert tf_bundle.masked_crc32c(block) == stored
