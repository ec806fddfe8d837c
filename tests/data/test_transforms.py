"""The joint training transform moves image and label together and is fixed by the seed."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from deeplabv3plus.config import DataConfig
from deeplabv3plus.data.transforms import RandomScale, eval_transform, resize_to_range_size, train_transform

# Label i is drawn in colour i; label 255 (void) in black. No blend of two colours is near a third.
COLOURS = torch.tensor([[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 255], [0, 0, 0]])
LABELS = torch.tensor([0, 1, 2, 3, 255])


def _block_pair(h: int = 37, w: int = 53, block: int = 8, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """An image of random 8x8 colour blocks and the label that colour encodes: (3,h,w) uint8, (h,w) uint8."""
    g = torch.Generator().manual_seed(seed)
    blocks = torch.randint(len(COLOURS), ((h + block - 1) // block, (w + block - 1) // block), generator=g)
    idx = blocks.repeat_interleave(block, 0).repeat_interleave(block, 1)[:h, :w]
    return COLOURS[idx].permute(2, 0, 1).to(torch.uint8), LABELS[idx].to(torch.uint8)


def _denormalise(image: torch.Tensor, cfg: DataConfig) -> torch.Tensor:
    mean, std = torch.tensor(cfg.mean)[:, None, None], torch.tensor(cfg.std)[:, None, None]
    return (image * std + mean) * 255


def test_transforms_keep_image_and_label_aligned() -> None:
    cfg = DataConfig(crop_size=41)  # larger than the image at scale 0.5/0.75: padding is exercised too
    transform = train_transform(cfg)
    image, label = _block_pair()
    checked = 0
    for seed in range(40):
        torch.manual_seed(seed)
        out_image, out_label = transform(image, label)
        assert out_image.shape == (3, 41, 41) and out_image.dtype == torch.float32
        assert out_label.shape == (41, 41) and out_label.dtype == torch.int64
        assert set(out_label.unique().tolist()) <= set(LABELS.tolist())  # nearest: no blended labels
        rgb = _denormalise(out_image, cfg).permute(1, 2, 0)  # (h, w, 3)
        dist = (rgb[:, :, None, :] - COLOURS.float()).abs().amax(-1)  # (h, w, colours)
        nearest, pure = dist.argmin(-1), dist.amin(-1) < 3  # pixels not blended across a block edge
        valid = out_label != 255
        # Where the image shows a pure colour, the label is the class that colour encodes.
        assert torch.equal(LABELS[nearest][pure & valid], out_label[pure & valid])
        assert (pure & valid).sum() > 0.6 * valid.sum()
        checked += int((pure & valid).sum())
    assert checked > 10_000


def test_padding_uses_mean_pixel_for_the_image_and_ignore_for_the_label() -> None:
    cfg = DataConfig(crop_size=64, scales=[1.0], hflip=False)
    image = torch.full((3, 20, 30), 7, dtype=torch.uint8)
    label = torch.ones(20, 30, dtype=torch.uint8)
    torch.manual_seed(0)
    out_image, out_label = train_transform(cfg)(image, label)
    pad = out_label == 255
    assert int((~pad).sum()) == 20 * 30 and torch.all(out_label[~pad] == 1)
    # The mean pixel, normalised, is ~0 (up to uint8 rounding of the mean).
    assert out_image[:, pad].abs().max() < 0.02


def test_seed_fixes_augmentation() -> None:
    cfg = DataConfig(crop_size=33)
    transform = train_transform(cfg)
    image, label = _block_pair()

    def run(seed: int) -> list[torch.Tensor]:
        torch.manual_seed(seed)
        return [t for _ in range(6) for t in transform(image, label)]

    a, b, c = run(0), run(0), run(1)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not all(torch.equal(x, y) for x, y in zip(a, c))


@pytest.mark.parametrize("scale", [0.5, 1.25, 2.0])
def test_random_scale_resizes_image_and_label_to_the_same_size(scale: float) -> None:
    from torchvision import tv_tensors

    image, label = _block_pair(h=20, w=30)
    out_image, out_label = RandomScale([scale])(tv_tensors.Image(image), tv_tensors.Mask(label[None]))
    expected = (round(20 * scale), round(30 * scale))
    assert tuple(out_image.shape[1:]) == expected == tuple(out_label.shape[1:])


def test_eval_transform_keeps_the_full_image_and_only_normalises() -> None:
    cfg = DataConfig()
    image, label = _block_pair()
    out_image, out_label = eval_transform(cfg)(image, label)
    assert out_image.shape == (3, 37, 53) and out_label.dtype == torch.int64
    assert torch.equal(out_label, label.long())
    torch.testing.assert_close(_denormalise(out_image, cfg), image.float(), atol=1e-3, rtol=0)


def test_small_images_are_padded_at_the_bottom_and_right_like_the_reference():
    cfg = DataConfig(crop_size=64, scales=[1.0], hflip=False, mean=[0.5, 0.5, 0.5], std=[0.5, 0.5, 0.5])
    transform = train_transform(cfg)
    image = torch.full((3, 40, 50), 200, dtype=torch.uint8)
    label = torch.ones(40, 50, dtype=torch.uint8)
    for seed in range(5):
        torch.manual_seed(seed)
        out_image, out_label = transform(image, label)
        assert torch.equal(out_label[:40, :50], torch.ones(40, 50, dtype=torch.int64))
        assert (out_label[40:] == 255).all() and (out_label[:, 50:] == 255).all()
        # the pad is the mean pixel: 128/255 normalised with mean 0.5 is ~0
        assert out_image[:, 40:].abs().max() < 0.01


# --- the reference's resize to range (ADE20K: data.min/max_resize_value 513, resize_factor 16) ----

# Worked by hand from core/preprocess_utils.py resize_to_range with min = max = 513, factor 16:
# max_size stays 513 (512 is a multiple of 16); scale the shorter side to 513, and if the longer
# side then exceeds 513 scale the longer side to 513 instead (floor each side); round each side up
# to 16k + 1.
RESIZE_BY_HAND = [
    # (H, W) -> (h, w)
    ((512, 683), (385, 513)),  # 683 > 513 -> 513/683: 512 * 0.7511 = 384.6 -> 384 -> 385 (16*24 + 1)
    ((375, 500), (385, 513)),  # 375 -> 513: 500 * 1.368 = 684 > 513 -> 513/500: 384.75 -> 384 -> 385; 513
    ((256, 256), (513, 513)),  # enlarged: 2x256 = 513 exactly at scale 513/256
    ((2000, 1500), (513, 385)),  # shrunk: 1500 * 513/2000 = 384.75 -> 384 -> 385
    ((300, 1200), (129, 513)),  # 300 * 513/1200 = 128.25 -> 128 -> 129 (16*8 + 1)
    ((513, 513), (513, 513)),
    ((100, 120), (433, 513)),  # 100 -> 513: 120 * 5.13 = 615.6 > 513 -> 513/120: 427.5 -> 427 -> 433
]


@pytest.mark.parametrize("size, expected", RESIZE_BY_HAND)
def test_resize_to_range_gives_the_reference_sizes(size, expected):
    assert resize_to_range_size(*size, min_size=513, max_size=513, factor=16) == expected


def test_resize_to_range_without_max_scales_the_shorter_side_and_factor_rounds_up():
    assert resize_to_range_size(200, 300, min_size=400) == (400, 600)
    assert resize_to_range_size(200, 300, min_size=400, factor=16) == (401, 609)
    # max_size is lowered to 16k + 1 first: 520 -> 513
    assert resize_to_range_size(100, 200, min_size=400, max_size=520, factor=16) == (257, 513)


def test_resize_to_range_runs_first_in_training_and_on_image_and_label_in_evaluation():
    cfg = DataConfig(min_resize_value=513, max_resize_value=513, resize_factor=16, crop_size=513, scales=[1.0],
                     hflip=False, mean=[0.5, 0.5, 0.5], std=[0.5, 0.5, 0.5])  # fmt: skip
    g = torch.Generator().manual_seed(0)
    image = torch.randint(0, 256, (3, 300, 1200), dtype=torch.uint8, generator=g)
    label = torch.randint(0, 5, (300, 1200), dtype=torch.uint8, generator=g)
    x, y = eval_transform(cfg)(image, label)
    assert x.shape == (3, 129, 513) and y.shape == (129, 513)
    # align_corners=True: the corner pixels are the original corner pixels, in image and label
    for (i, j), (oi, oj) in {(0, 0): (0, 0), (128, 512): (299, 1199), (0, 512): (0, 1199)}.items():
        assert y[i, j] == label[oi, oj]
        torch.testing.assert_close(x[:, i, j], image[:, oi, oj].float() / 127.5 - 1, rtol=0, atol=1e-6)
    # training: resized to 129 x 513, then padded to the 513 crop (label 255 below row 129)
    x, y = train_transform(cfg)(image, label)
    assert x.shape == (3, 513, 513) and int((y != 255).sum()) == 129 * 513


def test_resize_to_range_label_is_nearest_with_aligned_corners():
    # 3 columns -> 5: output i takes input round(i * 2 / 4) = 0, 1, 1, 2, 2 (half away from zero)
    cfg = DataConfig(min_resize_value=5, scales=[1.0])
    label = torch.tensor([[1, 2, 3]], dtype=torch.uint8).expand(3, 3).contiguous()
    _, y = eval_transform(cfg)(torch.zeros(3, 3, 3, dtype=torch.uint8), label)
    assert y.shape == (5, 5) and y[0].tolist() == [1, 2, 2, 3, 3]


# The reference computes resize_to_range in float32: min_size / orig_min_size, then floor(side *
# that). For some sizes the float32 product lands just below an integer, so the shorter side comes
# out one pixel short of min_size, e.g. 81 * float32(386 / 81) = 385.99997 -> 385. Worked by hand
# (float32 values printed by numpy): the shorter side is *not* min_size there, and the longer side
# is floored, not rounded.
SHORTER_SIDE_BY_HAND = [
    # (H, W, min_size, max_size, factor) -> (h, w)
    ((81, 82, 386, None, None), (385, 390)),  # 385.99997 -> 385; 82 * 4.765432 = 390.7654 -> 390
    ((82, 81, 386, None, None), (390, 385)),  # the same with the shorter side across
    ((95, 200, 385, None, None), (384, 810)),  # 384.99997 -> 384; 810.52625 -> 810
    ((157, 159, 370, None, None), (369, 374)),  # 369.99997 -> 369; 374.71335 -> 374
    # factor 16: 385 = 16 * 24 + 1 stays (exact arithmetic would give 386 -> 401); 390 -> 401
    ((81, 82, 386, None, 16), (385, 401)),
    ((83, 84, 402, 1000, 16), (401, 417)),  # 401.99997 -> 401 stays; 406.84335 -> 406 -> 417
]


def _reference_resize_to_range(h, w, min_size, max_size=None, factor=None):
    """core/preprocess_utils.py resize_to_range's size arithmetic, op by op, in float32 as TF."""
    f32 = np.float32
    if max_size is not None and factor is not None:
        max_size = f32(max_size) - f32((max_size - 1) % factor)
    orig_h, orig_w = f32(h), f32(w)
    large_scale_factor = f32(min_size) / np.minimum(orig_h, orig_w)
    large = np.array([np.floor(orig_h * large_scale_factor), np.floor(orig_w * large_scale_factor)]).astype(
        np.int32
    )
    new = large
    if max_size is not None:
        small_scale_factor = f32(max_size) / np.maximum(orig_h, orig_w)
        small = np.array(
            [np.floor(orig_h * small_scale_factor), np.floor(orig_w * small_scale_factor)]
        ).astype(np.int32)
        new = small if f32(large.max()) > f32(max_size) else large
    if factor is not None:
        new = new + (factor - (new - 1) % factor) % factor
    return int(new[0]), int(new[1])


@pytest.mark.parametrize("args, expected", SHORTER_SIDE_BY_HAND)
def test_resize_to_range_floors_the_shorter_side_in_float32_like_the_reference(args, expected):
    from deeplabv3plus.data.transforms import resize_to_range_for

    assert _reference_resize_to_range(*args) == expected  # the transcription agrees with the hand values
    assert resize_to_range_size(*args) == expected
    h, w, min_size, max_size, factor = args
    cfg = DataConfig(min_resize_value=min_size, max_resize_value=max_size, resize_factor=factor)
    image = torch.zeros(3, h, w, dtype=torch.uint8)
    assert tuple(resize_to_range_for(cfg)(image).shape[-2:]) == expected


def test_resize_to_range_matches_the_reference_arithmetic_on_a_grid_of_sizes():
    # ADE20K's 513/513/16 and settings without max or factor; sizes 60..140 x a few widths hit the
    # float32 floor cases above many times.
    settings = [(513, 513, 16), (386, None, None), (385, None, 16), (402, 600, 16), (300, 400, None)]
    for min_size, max_size, factor in settings:
        for h in range(60, 141):
            for w in (h + 1, 2 * h + 3, 97):
                got = resize_to_range_size(h, w, min_size, max_size, factor)
                assert got == _reference_resize_to_range(h, w, min_size, max_size, factor), (h, w, min_size)
