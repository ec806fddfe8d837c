"""A pure-Python reader of TensorFlow checkpoints (the "tensor bundle" format).

A TF checkpoint ``PREFIX`` is two kinds of files:

* ``PREFIX.index``: a LevelDB-format SSTable (sorted string table). Its keys are variable names; the
  value under the empty key ``""`` is a ``BundleHeaderProto`` (number of data shards, endianness) and
  the value under every variable name a ``BundleEntryProto`` (dtype, shape, shard id, byte offset and
  size in that shard, masked crc32c of the bytes).
* ``PREFIX.data-SSSSS-of-NNNNN``: the raw tensor bytes, concatenated.

Everything is decoded here with the standard library and numpy: no tensorflow or protobuf at run
time. Formats: tensorflow/core/util/tensor_bundle (tensor_bundle.proto) and the LevelDB table format
that ``tensorflow/core/lib/io/table*.cc`` implements.

Example::

    ckpt = TFCheckpoint("deeplabv3_pascal_train_aug/model.ckpt")
    for name, dtype, shape in ckpt.list_variables():
        print(name, dtype, shape)
    w = ckpt["xception_65/entry_flow/conv1_1/weights"]  # np.ndarray, HWIO
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

import numpy as np

__all__ = ["TFCheckpoint", "TFCheckpointError", "BundleEntry", "crc32c", "masked_crc32c"]

# The last 8 bytes of every LevelDB/TF table file (little-endian fixed64).
_TABLE_MAGIC = 0xDB4775248B80FB57
# Footer = two BlockHandles padded to 2 * BlockHandle::kMaxEncodedLength (2 * 20) + 8 bytes of magic.
_FOOTER_SIZE = 48
# Every block is followed by a 1-byte compression type and a 4-byte masked crc32c.
_BLOCK_TRAILER_SIZE = 5
_COMPRESSION_NAMES = {0: "none", 1: "snappy", 2: "zlib", 3: "lz4"}

# tensorflow/core/framework/types.proto DataType -> (name, numpy dtype or None if special-cased).
_DTYPES: dict[int, tuple[str, Optional[str]]] = {
    1: ("float32", "f4"),
    2: ("float64", "f8"),
    3: ("int32", "i4"),
    4: ("uint8", "u1"),
    5: ("int16", "i2"),
    6: ("int8", "i1"),
    7: ("string", None),
    8: ("complex64", "c8"),
    9: ("int64", "i8"),
    10: ("bool", "?"),
    14: ("bfloat16", None),
    17: ("uint16", "u2"),
    18: ("complex128", "c16"),
    19: ("float16", "f2"),
    22: ("uint32", "u4"),
    23: ("uint64", "u8"),
}


class TFCheckpointError(ValueError):
    """A checkpoint file is missing, truncated, corrupt or uses a feature this reader lacks."""


# --------------------------------------------------------------------------------------------------
# crc32c (Castagnoli): the ``crc32c``/``google_crc32c`` packages when installed, else numpy (many
# lanes of the bytewise algorithm in lockstep, combined afterwards: 160 MB in about 1 s on a 2-core
# CPU), and pure Python for short inputs.


def _make_crc_table() -> list[int]:
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


_CRC_TABLE = _make_crc_table()
_CRC_TABLE_NP = np.array(_CRC_TABLE, dtype=np.uint32)
_NUMPY_CRC_MIN_BYTES = 1 << 16
_CRC_LANES = 1 << 15


def _crc_update(crc: int, data: Union[bytes, memoryview]) -> int:
    """The raw CRC register after ``data`` (no initial or final inversion)."""
    table = _CRC_TABLE
    for b in memoryview(data).cast("B"):
        crc = table[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc


def _crc_update_numpy(crc: int, data: np.ndarray) -> int:
    """``_crc_update`` over uint8 ``data`` by splitting it into ``lanes`` chunks run side by side.

    The register update is linear over GF(2): the register after chunk ``i`` is ``Z^L(r_{i-1}) ^ c_i``
    where ``c_i`` is the chunk's own CRC from a zero register and ``Z^L`` is the effect of ``L`` zero
    bytes. 32 extra lanes fed with zeros from the unit vectors give ``Z^L`` as a table.
    """
    lanes = min(_CRC_LANES, len(data) // 256)
    length = len(data) // lanes
    chunks = data[: lanes * length].reshape(lanes, length)
    reg = np.zeros(lanes + 32, dtype=np.uint32)
    reg[0] = crc
    reg[lanes:] = np.left_shift(np.uint32(1), np.arange(32, dtype=np.uint32))
    slab = np.zeros((256, lanes + 32), dtype=np.uint8)  # the zero columns feed the unit-vector lanes
    for start in range(0, length, 256):
        width = min(256, length - start)
        slab[:width, :lanes] = chunks[:, start : start + width].T
        for row in slab[:width]:
            reg = _CRC_TABLE_NP[(reg & 0xFF).astype(np.uint8) ^ row] ^ (reg >> 8)
    basis = reg[lanes:]
    values = np.arange(256)
    shift = []  # shift[p][v]: Z^L applied to byte v at byte position p of the register
    for p in range(4):
        t = np.zeros(256, dtype=np.uint32)
        for k in range(8):
            t[(values >> k) & 1 == 1] ^= basis[8 * p + k]
        shift.append(t.tolist())
    s0, s1, s2, s3 = shift
    out = int(reg[0])
    for c in reg[1:lanes].tolist():
        out = s0[out & 0xFF] ^ s1[(out >> 8) & 0xFF] ^ s2[(out >> 16) & 0xFF] ^ s3[out >> 24] ^ c
    return _crc_update(out, data[lanes * length :].tobytes())


def crc32c(data: bytes) -> int:
    """The crc32c checksum of ``data`` (uses the ``crc32c`` or ``google_crc32c`` package if present)."""
    fast = _fast_crc32c()
    if fast is not None:
        return fast(data)
    view = memoryview(data).cast("B")
    if len(view) >= _NUMPY_CRC_MIN_BYTES:
        return _crc_update_numpy(0xFFFFFFFF, np.frombuffer(view, dtype=np.uint8)) ^ 0xFFFFFFFF
    return _crc_update(0xFFFFFFFF, view) ^ 0xFFFFFFFF


def masked_crc32c(data: bytes) -> int:
    """The masked crc32c that LevelDB and TF store (masking keeps CRCs of CRCs well distributed)."""
    crc = crc32c(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def _fast_crc32c():
    try:
        import crc32c as _c  # type: ignore[import-not-found]

        return _c.crc32c
    except ImportError:
        pass
    try:
        import google_crc32c  # type: ignore[import-not-found]

        return lambda data: google_crc32c.value(bytes(data))
    except ImportError:
        return None


# --------------------------------------------------------------------------------------------------
# Varints and a minimal protobuf wire-format decoder.


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    """Decode a base-128 varint at ``pos``; returns (value, new position)."""
    result = 0
    shift = 0
    while True:
        if pos >= len(buf):
            raise TFCheckpointError("truncated varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise TFCheckpointError("varint longer than 10 bytes")


def _proto_fields(buf: bytes) -> Iterator[tuple[int, int, Union[int, bytes]]]:
    """Yield (field number, wire type, value) of a serialized protobuf message.

    Varints come back as ints, fixed32/fixed64 as unsigned ints, length-delimited fields as bytes.
    """
    pos = 0
    while pos < len(buf):
        tag, pos = _varint(buf, pos)
        field, wire = tag >> 3, tag & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 1:
            value = struct.unpack_from("<Q", buf, pos)[0]
            pos += 8
        elif wire == 2:
            length, pos = _varint(buf, pos)
            value = bytes(buf[pos : pos + length])
            pos += length
        elif wire == 5:
            value = struct.unpack_from("<I", buf, pos)[0]
            pos += 4
        else:
            raise TFCheckpointError(f"unsupported protobuf wire type {wire}")
        if pos > len(buf):
            raise TFCheckpointError("truncated protobuf message")
        yield field, wire, value


def _signed64(value: int) -> int:
    """Protobuf int32/int64 fields are two's-complement varints: -1 arrives as 2**64 - 1."""
    return value - (1 << 64) if value >= 1 << 63 else value


@dataclass(frozen=True)
class BundleEntry:
    """One variable's ``BundleEntryProto``: where its bytes are and what they mean."""

    dtype: str
    shape: tuple[int, ...]
    shard_id: int
    offset: int
    size: int
    crc32c: Optional[int]
    dtype_code: int
    has_slices: bool = False


def _parse_shape(buf: bytes) -> tuple[int, ...]:
    dims = []
    for field, _, value in _proto_fields(buf):
        if field == 2:  # TensorShapeProto.dim
            size = 0
            for f, _, v in _proto_fields(value):
                if f == 1:
                    size = _signed64(v)
            dims.append(size)
        elif field == 3 and value:  # unknown_rank
            raise TFCheckpointError("tensor of unknown rank in a checkpoint")
    return tuple(dims)


def _parse_entry(buf: bytes) -> BundleEntry:
    dtype_code, shape, shard_id, offset, size, crc, slices = 0, (), 0, 0, 0, None, False
    for field, _, value in _proto_fields(buf):
        if field == 1:
            dtype_code = value
        elif field == 2:
            shape = _parse_shape(value)
        elif field == 3:
            shard_id = value
        elif field == 4:
            offset = _signed64(value)
        elif field == 5:
            size = _signed64(value)
        elif field == 6:
            crc = value
        elif field == 7:
            slices = True
    name = _DTYPES.get(dtype_code, (f"dtype_{dtype_code}", None))[0]
    return BundleEntry(name, shape, shard_id, offset, size, crc, dtype_code, slices)


# --------------------------------------------------------------------------------------------------
# The SSTable.


def _read_block(data: bytes, offset: int, size: int, path: Path) -> bytes:
    end = offset + size + _BLOCK_TRAILER_SIZE
    if end > len(data):
        raise TFCheckpointError(
            f"{path}: block at offset {offset} runs past the end of the file (truncated?)"
        )
    compression = data[offset + size]
    if compression != 0:
        kind = _COMPRESSION_NAMES.get(compression, str(compression))
        raise TFCheckpointError(
            f"{path}: table block is {kind}-compressed; only uncompressed tables (TF's default) are supported"
        )
    return data[offset : offset + size]


def _block_entries(block: bytes, path: Path) -> Iterator[tuple[bytes, bytes]]:
    """Yield (key, value) pairs of one block, undoing the prefix compression of keys."""
    if len(block) < 4:
        raise TFCheckpointError(f"{path}: table block too short")
    num_restarts = struct.unpack_from("<I", block, len(block) - 4)[0]
    limit = len(block) - 4 - 4 * num_restarts
    if limit < 0:
        raise TFCheckpointError(f"{path}: bad restart count in a table block")
    pos = 0
    key = b""
    while pos < limit:
        shared, pos = _varint(block, pos)
        non_shared, pos = _varint(block, pos)
        value_len, pos = _varint(block, pos)
        if shared > len(key) or pos + non_shared + value_len > limit:
            raise TFCheckpointError(f"{path}: corrupt entry in a table block")
        key = key[:shared] + block[pos : pos + non_shared]
        pos += non_shared
        yield key, block[pos : pos + value_len]
        pos += value_len


def _block_handle(buf: bytes, pos: int = 0) -> tuple[int, int, int]:
    offset, pos = _varint(buf, pos)
    size, pos = _varint(buf, pos)
    return offset, size, pos


def _read_table(path: Path) -> dict[bytes, bytes]:
    """All key/value pairs of an SSTable file."""
    data = path.read_bytes()
    if len(data) < _FOOTER_SIZE:
        raise TFCheckpointError(f"{path}: too short to be a TF checkpoint index ({len(data)} bytes)")
    footer = data[-_FOOTER_SIZE:]
    magic = struct.unpack_from("<Q", footer, _FOOTER_SIZE - 8)[0]
    if magic != _TABLE_MAGIC:
        raise TFCheckpointError(f"{path}: bad magic number {magic:#x}, not a TF checkpoint index")
    _, _, pos = _block_handle(footer)  # metaindex: unused by TF bundles (no filter blocks)
    index_offset, index_size, _ = _block_handle(footer, pos)
    table = {}
    for _, handle in _block_entries(_read_block(data, index_offset, index_size, path), path):
        offset, size, _ = _block_handle(handle)
        for key, value in _block_entries(_read_block(data, offset, size, path), path):
            table[key] = value
    return table


# --------------------------------------------------------------------------------------------------


class TFCheckpoint:
    """Read-only access to a TensorFlow checkpoint (tensor bundle) without TensorFlow.

    Args:
        path_prefix: The checkpoint prefix, e.g. ``"model.ckpt"`` for ``model.ckpt.index`` plus
            ``model.ckpt.data-00000-of-00001``. A path ending in ``.index`` is accepted too.
        verify: Check every tensor's masked crc32c when it is read (vectorised with numpy; faster
            with the ``crc32c`` package).

    Raises:
        TFCheckpointError: The index or a data shard is missing, or the index is not a checkpoint.
    """

    def __init__(self, path_prefix: Union[str, Path], verify: bool = False) -> None:
        prefix = str(path_prefix)
        if prefix.endswith(".index"):
            prefix = prefix[: -len(".index")]
        self.prefix = prefix
        self.verify = verify
        index = Path(prefix + ".index")
        if not index.is_file():
            raise TFCheckpointError(f"{index}: checkpoint index file not found")
        table = _read_table(index)
        if b"" not in table:
            raise TFCheckpointError(f"{index}: no bundle header (empty key); not a tensor bundle index")
        self.num_shards, self.big_endian = 1, False
        for field, _, value in _proto_fields(table.pop(b"")):
            if field == 1:
                self.num_shards = value
            elif field == 2:
                self.big_endian = value == 1
        self._entries = {key.decode("utf-8"): _parse_entry(value) for key, value in table.items()}
        self._shards = [
            Path(f"{prefix}.data-{i:05d}-of-{self.num_shards:05d}") for i in range(self.num_shards)
        ]
        for shard in self._shards:
            if not shard.is_file():
                raise TFCheckpointError(f"{shard}: checkpoint data file not found")

    def keys(self) -> list[str]:
        """Variable names, sorted (the order TF stores them in)."""
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys())

    def entry(self, name: str) -> BundleEntry:
        """The raw ``BundleEntryProto`` fields of ``name``."""
        try:
            return self._entries[name]
        except KeyError:
            raise KeyError(f"{name!r} is not in checkpoint {self.prefix} ({len(self)} variables)") from None

    def shape(self, name: str) -> tuple[int, ...]:
        return self.entry(name).shape

    def dtype(self, name: str) -> str:
        """TF dtype name: 'float32', 'int64', 'bfloat16', 'string', ..."""
        return self.entry(name).dtype

    def list_variables(self) -> list[tuple[str, str, tuple[int, ...]]]:
        """(name, dtype, shape) of every variable, like ``tf.train.list_variables``."""
        return [(name, self._entries[name].dtype, self._entries[name].shape) for name in self.keys()]

    def _read_bytes(self, entry: BundleEntry, name: str) -> bytes:
        shard = self._shards[entry.shard_id]
        with open(shard, "rb") as f:
            f.seek(entry.offset)
            raw = f.read(entry.size)
        if len(raw) != entry.size:
            raise TFCheckpointError(f"{shard}: truncated, cannot read {entry.size} bytes of {name!r}")
        return raw

    def __getitem__(self, name: str) -> np.ndarray:
        """The tensor ``name`` as a numpy array of its checkpoint shape.

        bfloat16 tensors come back as float32 (exact: bfloat16 is the top half of a float32);
        string tensors as an object array of ``bytes``.
        """
        entry = self.entry(name)
        if entry.has_slices:
            raise TFCheckpointError(f"{name!r} is a partitioned (sliced) variable; not supported")
        raw = self._read_bytes(entry, name)
        if entry.dtype == "string":
            return self._decode_strings(raw, entry, name)
        if self.verify and entry.crc32c is not None and masked_crc32c(raw) != entry.crc32c:
            raise TFCheckpointError(f"{self._shards[entry.shard_id]}: crc32c mismatch for {name!r}")
        order = ">" if self.big_endian else "<"
        if entry.dtype == "bfloat16":
            half = np.frombuffer(raw, dtype=order + "u2").astype(np.uint32) << 16
            return half.view(np.float32).reshape(entry.shape)
        code = _DTYPES.get(entry.dtype_code, (None, None))[1]
        if code is None:
            raise TFCheckpointError(f"{name!r} has dtype {entry.dtype}, which this reader cannot decode")
        array = np.frombuffer(raw, dtype=order + code).reshape(entry.shape)
        # A private, writable, native-order copy: callers may convert it to torch or edit it in place.
        return array.astype(array.dtype.newbyteorder("="), copy=True)

    def _decode_strings(self, raw: bytes, entry: BundleEntry, name: str) -> np.ndarray:
        # Layout: varint64 length of every element, a 4-byte masked crc32c of the lengths, the bytes.
        count = int(np.prod(entry.shape, dtype=np.int64))
        pos, lengths = 0, []
        for _ in range(count):
            n, pos = _varint(raw, pos)
            lengths.append(n)
        pos += 4
        out = np.empty(count, dtype=object)
        for i, n in enumerate(lengths):
            out[i] = raw[pos : pos + n]
            pos += n
        if pos != len(raw):
            raise TFCheckpointError(f"{name!r}: string tensor bytes do not add up ({pos} != {len(raw)})")
        return out.reshape(entry.shape)

    def __repr__(self) -> str:
        return f"TFCheckpoint({self.prefix!r}, {len(self)} variables, {self.num_shards} shard(s))"
