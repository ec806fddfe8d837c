"""Images read as a person expects: 16-bit PNGs scaled to 8 bits, and a size limit checked before decoding."""

from __future__ import annotations

import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile

from deeplabv3plus.catalog import FoldersOptions
from deeplabv3plus.config import DataConfig
from deeplabv3plus.data.datasets import DatasetError, DataSplits, read_image, read_label
from deeplabv3plus.data.images import ImageTooLargeError, read_rgb, to_rgb8

# 16-bit values and their high bytes (value >> 8): 255 -> 0, 256 -> 1, 11308 -> 44, 51914 -> 202.
VALUES_16 = np.array([[0, 255, 256], [11308, 51914, 65535]], dtype=np.uint16)
HIGH_BYTES = np.array([[0, 0, 1], [44, 202, 255]], dtype=np.uint8)


def write_png16(path: Path, values: np.ndarray) -> Path:
    """A 16-bit PNG, grey (H, W) or RGB (H, W, 3), written byte by byte (PIL writes no 16-bit RGB)."""
    height, width = values.shape[:2]
    colour_type = 0 if values.ndim == 2 else 2
    rows = b"".join(b"\x00" + values[y].astype(">u2").tobytes() for y in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 16, colour_type, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )
    return path


def test_a_16_bit_grey_png_reads_as_its_high_byte_in_every_channel(tmp_path):
    path = write_png16(tmp_path / "grey16.png", VALUES_16)
    assert Image.open(path).mode == "I;16"
    expected = np.repeat(HIGH_BYTES[:, :, None], 3, axis=2)
    assert np.array_equal(read_rgb(path), expected)
    assert np.array_equal(read_image(path).permute(1, 2, 0).numpy(), expected)  # the datasets' reader


def test_a_16_bit_rgb_png_reads_as_its_high_bytes(tmp_path):
    values = np.stack([VALUES_16, VALUES_16[::-1], np.full_like(VALUES_16, 4660)], axis=2)  # 4660 = 0x1234
    path = write_png16(tmp_path / "rgb16.png", values)
    expected = np.stack([HIGH_BYTES, HIGH_BYTES[::-1], np.full_like(HIGH_BYTES, 0x12)], axis=2)
    assert np.array_equal(read_rgb(path), expected)
    assert np.array_equal(read_image(path).permute(1, 2, 0).numpy(), expected)


def test_32_bit_images_are_read_as_16_bit_values_and_refused_beyond(tmp_path):
    assert np.array_equal(to_rgb8(Image.fromarray(VALUES_16.astype(np.int32)), "i.tif")[:, :, 1], HIGH_BYTES)
    with pytest.raises(DatasetError, match=r"image 'i\.tif' holds 32-bit values 0\.\.70000 \(mode I\)"):
        to_rgb8(Image.fromarray(np.array([[0, 70000]], dtype=np.int32)), "i.tif")
    with pytest.raises(DatasetError, match=r"image 'f\.tif' is a 32-bit float image \(mode F\)"):
        to_rgb8(Image.fromarray(np.zeros((2, 2), dtype=np.float32)), "f.tif")


def test_a_16_bit_label_png_is_still_refused_beyond_255_not_rescaled(tmp_path):
    path = write_png16(tmp_path / "label16.png", VALUES_16)
    with pytest.raises(DatasetError, match=r"label '.*label16\.png' has values outside 0\.\.255"):
        read_label(path)
    small = write_png16(tmp_path / "small16.png", np.array([[0, 1], [2, 255]], dtype=np.uint16))
    assert read_label(small).tolist() == [[0, 1], [2, 255]]


@pytest.fixture
def decodes(monkeypatch):
    """The images PIL decodes during the test (ImageFile.load is every file format's decoder)."""
    decoded = []
    original = ImageFile.ImageFile.load

    def load(self):
        decoded.append(self.size)
        return original(self)

    monkeypatch.setattr(ImageFile.ImageFile, "load", load)
    return decoded


def test_an_image_over_the_limit_is_refused_from_its_header_before_decoding(tmp_path, decodes):
    path = tmp_path / "big.png"
    Image.new("RGB", (16, 12)).save(path)
    for read in (read_rgb, read_image):  # predict's and the datasets' reader
        with pytest.raises(ImageTooLargeError) as info:
            read(path, 191)
        message = str(info.value)
        assert message.startswith(
            f"image '{path}' is 16x12 (0.0 megapixels), over the limit of 0.0 megapixels"
        )
        assert "data.max_image_pixels = 191" in message and "\n" not in message
    assert decodes == []
    assert read_rgb(path, 192).shape == (12, 16, 3) and decodes  # at the limit: read (the patch sees it)


@pytest.mark.parametrize("limit", [0, -1, 2.5, True])
def test_the_limit_must_be_a_positive_integer(tmp_path, limit):
    with pytest.raises(ValueError, match=r"data\.max_image_pixels: expected a positive number of pixels"):
        read_rgb(tmp_path / "unread.png", limit)


def test_pils_decompression_bomb_error_and_warning_become_the_same_one_line(tmp_path, monkeypatch, decodes):
    path = tmp_path / "bomb.png"
    Image.new("RGB", (10, 10)).save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 5)  # PIL: a warning over 5 pixels, an error over 10
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a warning PIL let through would fail here
        with pytest.raises(
            ImageTooLargeError, match=r"image '.*bomb\.png' is 0\.0 megapixels, over .* = 20,"
        ):
            read_rgb(path, 20)  # PIL's limit raised to 20: 100 pixels is over 2 x 20, PIL's error
        with pytest.raises(ImageTooLargeError, match=r"image '.*bomb\.png' is 10x10 .* = 60,"):
            read_rgb(path, 60)  # over 60, under 2 x 60: PIL's warning, then the header check
        assert decodes == []
        assert read_rgb(path, 100).shape == (10, 10, 3)  # the setting decides, not PIL's own limit
    assert Image.MAX_IMAGE_PIXELS == 5  # PIL's limit is put back


def test_a_dataset_reads_images_through_the_limit_of_its_config(tmp_path, decodes):
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    write_png16(tmp_path / "images" / "a.png", VALUES_16)
    Image.fromarray(np.zeros((2, 3), dtype=np.uint8), mode="L").save(tmp_path / "masks" / "a.png")
    (tmp_path / "train.txt").write_text("a\n")
    cfg = DataConfig(
        layout="folders", root=str(tmp_path), num_classes=3, folders=FoldersOptions(image_ext=".png")
    )
    image, _ = DataSplits(cfg).dataset("train", train=False).load(0)
    assert np.array_equal(image[0].numpy(), HIGH_BYTES)
    cfg.max_image_pixels = 5
    with pytest.raises(ImageTooLargeError, match=r"images/a\.png' is 3x2 .*data\.max_image_pixels = 5"):
        DataSplits(cfg).check(["train"])
    with pytest.raises(ImageTooLargeError, match=r"images/a\.png' is 3x2"):
        DataSplits(cfg).dataset("train", train=False)[0]
