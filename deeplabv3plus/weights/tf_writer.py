"""Write TensorFlow checkpoints (tensor bundles) without TensorFlow: the inverse of :mod:`.tf_bundle`.

``write_tf_checkpoint(prefix, tensors)`` writes ``PREFIX.index`` and ``PREFIX.data-00000-of-00001``
as TensorFlow's ``BundleWriter`` does (tensorflow/core/util/tensor_bundle): the tensor bytes of every
variable in name order in one data shard, and an uncompressed LevelDB SSTable index whose empty key
holds the ``BundleHeaderProto`` and whose other keys hold one ``BundleEntryProto`` each, with the
masked crc32c of the tensor's bytes. The table follows ``table_builder.cc``: data blocks of up to
256 KiB with a restart point every 16 keys, an empty metaindex block, an index block with a restart
at every key and shortened separator keys, and the 48-byte footer. For a checkpoint that TF wrote
with one shard (``tests/fixtures/tf``) the output is byte-identical.

The protobuf messages are encoded by hand (proto3: fields at their default value are omitted).

Example::

    write_tf_checkpoint("out/model.ckpt", {"conv/weights": np.zeros((3, 3, 3, 8), np.float32)})
    TFCheckpoint("out/model.ckpt")["conv/weights"]  # reads it back
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from pathlib import Path
from typing import Optional, Union

import numpy as np

from ..checkpoint import write_atomically
from .tf_bundle import _DTYPES, _TABLE_MAGIC, masked_crc32c

__all__ = ["write_tf_checkpoint"]

_BLOCK_SIZE = 256 * 1024  # TF's table::Options::block_size
_RESTART_INTERVAL = 16  # table::Options::block_restart_interval
_DTYPE_CODES = {name: code for code, (name, _) in _DTYPES.items()}
_NUMPY_TO_TF = {np.dtype(code).str.lstrip("<>|="): name for _, (name, code) in _DTYPES.items() if code}


def _varint(value: int) -> bytes:
    if value < 0:
        value += 1 << 64  # int64 fields: two's complement, 10 bytes
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _field_varint(field: int, value: int) -> bytes:
    return _varint(field << 3) + _varint(value) if value else b""


def _field_bytes(field: int, value: bytes) -> bytes:
    return _varint(field << 3 | 2) + _varint(len(value)) + value


def _entry_proto(dtype_code: int, shape: tuple[int, ...], offset: int, size: int, crc: int) -> bytes:
    # TensorShapeProto: repeated Dim dim = 2 { int64 size = 1 }; the shape is always present (even
    # empty, for scalars), as TF sets it with mutable_shape().
    shape_proto = b"".join(_field_bytes(2, _field_varint(1, d)) for d in shape)
    return (
        _field_varint(1, dtype_code)  # DataType dtype
        + _field_bytes(2, shape_proto)  # TensorShapeProto shape
        + _field_varint(4, offset)  # int64 offset (shard_id = 3 is 0: omitted)
        + _field_varint(5, size)  # int64 size
        + _varint(6 << 3 | 5)
        + struct.pack("<I", crc)  # fixed32 crc32c
    )


# BundleHeaderProto: num_shards = 1, endianness LITTLE (0, omitted), version { producer = 1 }.
_HEADER = _field_varint(1, 1) + _field_bytes(3, _field_varint(1, 1))


def _tensor_bytes(name: str, value: np.ndarray, dtype: Optional[str]) -> tuple[int, bytes, int]:
    """(TF dtype code, little-endian bytes, masked crc32c for the entry) of one tensor."""
    if dtype == "bfloat16":
        if value.dtype.kind != "f":
            raise ValueError(f"{name}: dtype 'bfloat16' given for a {value.dtype} array (expected floats)")
        bits = np.ascontiguousarray(value, dtype="<f4").view("<u4").astype(np.uint64)
        # Round to nearest even, as TF's float -> bfloat16 conversion (bfloat16 = top half of a float32).
        rounded = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16
        raw = rounded.astype("<u2").tobytes()
        return _DTYPE_CODES["bfloat16"], raw, masked_crc32c(raw)
    if dtype == "string" or value.dtype == object or value.dtype.kind in "SU":
        items = [v.encode() if isinstance(v, str) else bytes(v) for v in value.reshape(-1)]
        # tensor_bundle.cc WriteStringTensor: [varint64 length of each][masked crc32c of the lengths
        # as uint32 (uint64 past 4 GiB)][the bytes]; the entry's crc32c covers those uint32 lengths
        # (not the varints), the length checksum and the bytes.
        sizes = b"".join(struct.pack("<I" if len(v) <= 0xFFFFFFFF else "<Q", len(v)) for v in items)
        checksum = struct.pack("<I", masked_crc32c(sizes))
        raw = b"".join(_varint(len(v)) for v in items) + checksum + b"".join(items)
        return _DTYPE_CODES["string"], raw, masked_crc32c(sizes + checksum + b"".join(items))
    tf_name = _NUMPY_TO_TF.get(value.dtype.str.lstrip("<>|="))
    if tf_name is None:
        raise ValueError(f"{name}: numpy dtype {value.dtype} has no TensorFlow checkpoint dtype")
    if dtype is not None and dtype != tf_name:
        raise ValueError(
            f"{name}: dtype {dtype!r} given for a {value.dtype} array (expected bfloat16 or string)"
        )
    raw = np.ascontiguousarray(value, dtype=value.dtype.newbyteorder("<")).tobytes()
    return _DTYPE_CODES[tf_name], raw, masked_crc32c(raw)


class _BlockBuilder:
    """A LevelDB block: prefix-compressed keys, a restart point every ``interval`` keys."""

    def __init__(self, interval: int) -> None:
        self.interval = interval
        self.buffer = bytearray()
        self.restarts = [0]
        self.count = 0
        self.last_key = b""

    def add(self, key: bytes, value: bytes) -> None:
        shared = 0
        if self.count < self.interval:
            limit = min(len(key), len(self.last_key))
            while shared < limit and key[shared] == self.last_key[shared]:
                shared += 1
        else:
            self.restarts.append(len(self.buffer))
            self.count = 0
        self.buffer += _varint(shared) + _varint(len(key) - shared) + _varint(len(value))
        self.buffer += key[shared:] + value
        self.last_key = key
        self.count += 1

    def size_estimate(self) -> int:
        return len(self.buffer) + 4 * len(self.restarts) + 4

    def finish(self) -> bytes:
        return (
            bytes(self.buffer)
            + b"".join(struct.pack("<I", r) for r in self.restarts)
            + struct.pack("<I", len(self.restarts))
        )

    def empty(self) -> bool:
        return not self.buffer


def _shortest_separator(start: bytes, limit: bytes) -> bytes:
    """LevelDB's BytewiseComparator::FindShortestSeparator: a short key in [start, limit)."""
    n = min(len(start), len(limit))
    i = 0
    while i < n and start[i] == limit[i]:
        i += 1
    if i < n and start[i] < 0xFF and start[i] + 1 < limit[i]:
        return start[:i] + bytes([start[i] + 1])
    return start


def _short_successor(key: bytes) -> bytes:
    """LevelDB's BytewiseComparator::FindShortSuccessor: a short key >= ``key``."""
    for i, b in enumerate(key):
        if b != 0xFF:
            return key[:i] + bytes([b + 1])
    return key


def _block_handle(offset: int, size: int) -> bytes:
    return _varint(offset) + _varint(size)


def _sstable(items: list[tuple[bytes, bytes]]) -> bytes:
    """An uncompressed SSTable of sorted (key, value) pairs, as TF's table::TableBuilder writes it."""
    out = bytearray()
    index = _BlockBuilder(1)

    def write_block(block: _BlockBuilder) -> tuple[int, int]:
        contents = block.finish()
        offset = len(out)
        out.extend(contents + b"\x00" + struct.pack("<I", masked_crc32c(contents + b"\x00")))
        return offset, len(contents)

    data = _BlockBuilder(_RESTART_INTERVAL)
    pending: Optional[tuple[bytes, tuple[int, int]]] = None
    for key, value in items:
        if pending is not None:
            index.add(_shortest_separator(pending[0], key), _block_handle(*pending[1]))
            pending = None
        data.add(key, value)
        if data.size_estimate() >= _BLOCK_SIZE:
            pending = (data.last_key, write_block(data))
            data = _BlockBuilder(_RESTART_INTERVAL)
    if not data.empty():
        pending = (data.last_key, write_block(data))
    meta_handle = write_block(_BlockBuilder(_RESTART_INTERVAL))
    if pending is not None:
        index.add(_short_successor(pending[0]), _block_handle(*pending[1]))
    index_handle = write_block(index)
    footer = _block_handle(*meta_handle) + _block_handle(*index_handle)
    out.extend(footer.ljust(40, b"\x00") + struct.pack("<Q", _TABLE_MAGIC))
    return bytes(out)


def write_tf_checkpoint(
    prefix: Union[str, Path],
    tensors: Mapping[str, np.ndarray],
    *,
    dtypes: Optional[Mapping[str, str]] = None,
) -> tuple[Path, Path]:
    """Write ``tensors`` as a TF V2 checkpoint ``PREFIX.index`` + ``PREFIX.data-00000-of-00001``.

    Args:
        prefix: the checkpoint prefix, e.g. ``"dir/model.ckpt"`` (the folder is created).
        tensors: variable name -> array, any shape (scalars too), in TF's layout (convs HWIO).
            numpy dtypes map to TF's (float32, float16, float64, int8..int64, uint8..uint64, bool,
            complex); an object array of ``bytes``/``str`` is a string tensor.
        dtypes: per-name TF dtype where numpy has none: ``"bfloat16"`` (a float32 array, rounded to
            nearest even) or ``"string"``.

    Returns:
        The (index, data) paths. Each file is written through a temporary file and a rename, the
        data shard first, so a reader never sees an index without its data.
    """
    dtypes = dict(dtypes or {})
    unknown = sorted(set(dtypes) - set(tensors))
    if unknown:
        raise ValueError(f"dtypes names {unknown[:3]} that are not among the tensors")
    if "" in tensors:
        raise ValueError("the empty variable name is reserved for the bundle header")
    prefix = Path(prefix)
    prefix.parent.mkdir(parents=True, exist_ok=True)
    chunks: list[bytes] = []
    items: list[tuple[bytes, bytes]] = [(b"", _HEADER)]
    offset = 0
    for name in sorted(tensors, key=lambda n: n.encode("utf-8")):
        code, raw, crc = _tensor_bytes(name, np.asarray(tensors[name]), dtypes.get(name))
        shape = tuple(int(d) for d in np.shape(tensors[name]))
        items.append((name.encode("utf-8"), _entry_proto(code, shape, offset, len(raw), crc)))
        chunks.append(raw)
        offset += len(raw)
    data_path = Path(f"{prefix}.data-00000-of-00001")
    index_path = Path(f"{prefix}.index")
    write_atomically(data_path, lambda f: f.writelines(chunks))
    index = _sstable(items)
    write_atomically(index_path, lambda f: f.write(index))
    return index_path, data_path
