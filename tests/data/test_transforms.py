"""The joint training transform moves image and label together and is fixed by the seed."""

from __future__ import annotations

import pytest
import torch

from deeplabv3plus.config import DataConfig
from deeplabv3plus.data.transforms import RandomScale, eval_transform, train_transform

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
