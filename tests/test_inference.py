"""Multi-scale + flip inference on stand-in models whose outputs are known analytically."""

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from deeplabv3plus.inference import PAPER_SCALES, predict_probs, scaled_size, segment, use_output_stride


class ConstantModel(nn.Module):
    """The same logits at every pixel, whatever the input: flip- and scale-invariant."""

    def __init__(self, logits):
        super().__init__()
        self.logits = nn.Parameter(torch.tensor(logits))
        self.output_stride = 16

    def forward(self, x):
        n, _, h, w = x.shape
        return self.logits[None, :, None, None].expand(n, -1, h, w)


class XCoordinateModel(nn.Module):
    """Logits (a * u, 0) where u runs 0 -> 1 left to right across the input (align_corners grid).

    Not flip-invariant: the flipped view gives a * (1 - u) once flipped back. Linear in u, so the
    align_corners=True resize back to the input size keeps it exact at every scale.
    """

    def __init__(self, a=3.0):
        super().__init__()
        self.a = a

    def forward(self, x):
        n, _, h, w = x.shape
        u = torch.linspace(0, 1, w, dtype=x.dtype, device=x.device)
        first = (self.a * u).expand(n, 1, h, w)
        return torch.cat([first, torch.zeros_like(first)], dim=1)


class StridedModel(nn.Module):
    """Image-dependent: a strided conv then bilinear upsampling back to the input size."""

    def __init__(self, num_classes=4):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, num_classes, 3, stride=4, padding=1)
        self.output_stride = 16
        self.batch_sizes = []
        self.input_sizes = []

    def forward(self, x):
        self.batch_sizes.append(x.shape[0])
        self.input_sizes.append(tuple(x.shape[-2:]))
        return F.interpolate(self.conv(x), size=x.shape[-2:], mode="bilinear", align_corners=True)


def _naive_probs(model, image, scales, flip):
    """The reference's order: one view at a time, flipped views flipped back, probs averaged."""
    n, _, h, w = image.shape
    outs = []
    with torch.no_grad():
        for i in range(n):
            x0 = image[i : i + 1]
            views = []
            for s in scales:
                x = F.interpolate(x0, size=scaled_size(h, w, s), mode="bilinear", align_corners=True)
                for f in [False, True] if flip else [False]:
                    logits = model(x.flip(-1) if f else x)
                    logits = logits.flip(-1) if f else logits
                    logits = F.interpolate(logits, size=(h, w), mode="bilinear", align_corners=True)
                    views.append(logits.softmax(1))
            outs.append(torch.stack(views).mean(0))
    return torch.cat(outs)


def test_scaled_size_follows_the_reference_rule():
    assert scaled_size(513, 513, 0.5) == (257, 257)
    assert scaled_size(513, 513, 1.75) == (897, 897)
    assert scaled_size(500, 375, 0.75) == (375, 281)  # int(374.25 + 1), int(280.5 + 1)
    assert scaled_size(37, 50, 1.0) == (37, 50)


def test_constant_model_gives_exactly_its_probabilities_at_any_scale_and_flip():
    model = ConstantModel([0.5, -1.0, 2.0])
    image = torch.randn(2, 3, 17, 23)
    probs = predict_probs(model, image, scales=PAPER_SCALES, flip=True)
    expected = torch.tensor([0.5, -1.0, 2.0]).softmax(0)[None, :, None, None].expand(2, 3, 17, 23)
    torch.testing.assert_close(probs, expected, rtol=0, atol=1e-6)


def test_flip_averages_a_non_flip_invariant_model_with_its_mirror():
    a = 3.0
    image = torch.randn(1, 3, 9, 21)
    u = torch.linspace(0, 1, 21)
    p0 = (torch.sigmoid(a * u) + torch.sigmoid(a * (1 - u))) / 2  # class 0: softmax(a*u, 0)
    for scales in [(1.0,), PAPER_SCALES]:
        probs = predict_probs(XCoordinateModel(a), image, scales=scales, flip=True)
        torch.testing.assert_close(probs[0, 0], p0.expand(9, 21), rtol=0, atol=1e-5)
        torch.testing.assert_close(probs.sum(1), torch.ones(1, 9, 21), rtol=0, atol=1e-6)
    no_flip = predict_probs(XCoordinateModel(a), image, flip=False)
    torch.testing.assert_close(no_flip[0, 0], torch.sigmoid(a * u).expand(9, 21), rtol=0, atol=1e-6)


@pytest.mark.parametrize("max_batch", [None, 1, 3])
def test_batched_views_match_the_sequential_reference(max_batch):
    model = StridedModel().eval()
    image = torch.randn(2, 3, 19, 26)
    scales = (0.5, 1.0, 1.25)
    probs = predict_probs(model, image, scales=scales, flip=True, max_batch=max_batch)
    torch.testing.assert_close(probs, _naive_probs(model, image, scales, True), rtol=0, atol=1e-5)


def test_one_pass_per_scale_holds_the_images_and_their_flips():
    model = StridedModel().eval()
    predict_probs(model, torch.randn(2, 3, 33, 21), scales=(0.5, 1.0, 1.5), flip=True)
    assert model.batch_sizes == [4, 4, 4]
    assert model.input_sizes == [(17, 11), (33, 21), (49, 31)]
    model.batch_sizes.clear()
    predict_probs(model, torch.randn(2, 3, 33, 21), scales=(1.0,), flip=True, max_batch=3)
    assert model.batch_sizes == [3, 1]


def test_segment_is_the_argmax_of_the_averaged_probabilities():
    model = StridedModel().eval()
    image = torch.randn(1, 3, 15, 15)
    labels = segment(model, image, scales=(0.75, 1.0), flip=True)
    assert labels.shape == (1, 15, 15) and labels.dtype == torch.int64
    assert torch.equal(labels, _naive_probs(model, image, (0.75, 1.0), True).argmax(1))


def test_output_stride_is_set_for_the_call_and_restored():
    seen = []

    class Recorder(ConstantModel):
        def forward(self, x):
            seen.append(self.output_stride)
            return super().forward(x)

    model = Recorder([0.0, 1.0])
    predict_probs(model, torch.randn(1, 3, 8, 8), output_stride=8)
    assert seen == [8] and model.output_stride == 16
    with pytest.raises(RuntimeError):
        with use_output_stride(model, 32):
            assert model.output_stride == 32
            raise RuntimeError
    assert model.output_stride == 16


# evaluate(): the loop the training script's validation and scripts/eval.py call.


def _split(seed=0, sizes=((13, 17), (13, 17), (9, 11)), num_classes=4):
    g = torch.Generator().manual_seed(seed)
    samples = []
    for h, w in sizes:
        label = torch.randint(0, num_classes, (h, w), generator=g)
        label[torch.rand(h, w, generator=g) < 0.2] = 255
        samples.append((torch.randn(3, h, w, generator=g), label))
    return samples


def test_evaluate_scores_the_whole_split_with_one_matrix():
    from deeplabv3plus.config import EvalConfig
    from deeplabv3plus.evaluate import evaluate
    from deeplabv3plus.metrics import ConfusionMatrix

    model = StridedModel().train()
    samples = _split()
    # Variable sizes as the eval collate gives them: (list of images, list of labels).
    loader = [([s[0] for s in samples[:2]], [s[1] for s in samples[:2]]), ([samples[2][0]], [samples[2][1]])]
    results = evaluate(
        model,
        loader,
        EvalConfig(scales=[0.75, 1.0], flip=True),
        num_classes=4,
        class_names="abcd",
        progress=False,
    )
    expected = ConfusionMatrix(4)
    for image, label in samples:
        expected.update(segment(model.eval(), image[None], scales=(0.75, 1.0), flip=True)[0], label)
    assert results["mIoU"] == pytest.approx(expected.compute()["miou"], abs=1e-12)
    assert results["per_class_iou"] == expected.to_dict("abcd")["per_class_iou"]
    assert results["num_images"] == 3 and "mIoU" in results["table"]


def test_evaluate_restores_training_mode_and_reports_the_trimap(tmp_path):
    from deeplabv3plus.config import EvalConfig
    from deeplabv3plus.evaluate import EvalOptions, evaluate

    model = StridedModel().train()
    # Batched tensors ((1, 3, H, W), (1, H, W)), as the default collate with batch size 1.
    loader = [(image[None], label[None]) for image, label in _split(1)]
    results = evaluate(
        model,
        loader,
        EvalConfig(trimap=True, trimap_widths=[0, 1, 3]),
        EvalOptions(trimap_dir=tmp_path),
        num_classes=4,
        progress=False,
    )
    assert model.training
    assert set(results["trimap"]) == {0, 1, 3} and results["trimap"][0] is None
    assert 0 <= results["trimap"][3] <= 1
    assert (tmp_path / "trimap.csv").is_file()


def test_evaluate_pad_to_pads_with_the_mean_pixel_and_scores_the_original_pixels_only():
    from deeplabv3plus.builders import build_model
    from deeplabv3plus.config import EvalConfig
    from deeplabv3plus.evaluate import evaluate

    torch.manual_seed(0)
    model = build_model("resnet18", num_classes=3, head_channels=8).eval()
    image, label = torch.randn(1, 3, 41, 53), torch.randint(0, 3, (1, 41, 53))
    label[:, :4] = 255
    plain = evaluate(model, [(image, label)], num_classes=3, progress=False)
    padded = evaluate(model, [(image, label)], EvalConfig(pad_to=65), num_classes=3, progress=False)
    assert padded["num_pixels"] == plain["num_pixels"] == int((label != 255).sum())
    # the image-pooling branch (and the receptive field) now sees the padded window
    assert padded["per_class_iou"] != plain["per_class_iou"] or padded["pixel_acc"] != plain["pixel_acc"]
    same = evaluate(model, [(image, label)], EvalConfig(pad_to=41), num_classes=3, progress=False)
    assert same == plain


# Sliding-window inference.


class LocalConvModel(nn.Module):
    """Two 3x3 convs, stride 1, no pooling: each logit sees a 5x5 neighbourhood (radius 2)."""

    def __init__(self, num_classes=3):
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, num_classes, 3, padding=1)
        )
        self.output_stride = 16
        self.input_sizes = []

    def forward(self, x):
        self.input_sizes.append(tuple(x.shape[-2:]))
        return self.net(x)


def test_window_starts_step_by_stride_and_align_the_last_window_to_the_edge():
    from deeplabv3plus.inference import window_starts

    assert window_starts(10, 4, 3) == [0, 3, 6]
    assert window_starts(11, 4, 3) == [0, 3, 6, 7]
    assert window_starts(4, 4, 2) == [0] and window_starts(3, 4, 2) == [0]


def test_slide_with_one_window_covering_the_image_equals_whole():
    model = StridedModel().eval()
    image = torch.randn(2, 3, 21, 30)
    whole = predict_probs(model, image, scales=(0.75, 1.0), flip=True)
    slide = predict_probs(model, image, scales=(0.75, 1.0), flip=True, mode="slide", crop_size=(21, 30))
    torch.testing.assert_close(slide, whole, rtol=0, atol=1e-6)


def test_slide_on_a_model_whose_receptive_field_fits_in_the_overlap_equals_whole():
    model = LocalConvModel().eval()
    image = torch.randn(1, 3, 37, 50)  # odd sizes: windows at 0, 6, 12, 18, 21 and 0, 6, ..., 30, 34
    whole = predict_probs(model, image, flip=True)
    model.input_sizes.clear()
    # overlap 16 - 6 = 10: each trusted pixel is >= 5 px from an inner window edge (receptive radius 2)
    slide = predict_probs(model, image, flip=True, mode="slide", crop_size=16, stride=6)
    assert set(model.input_sizes) == {(16, 16)}  # every window full-size
    torch.testing.assert_close(slide, whole, rtol=0, atol=1e-5)


def test_slide_windows_fit_at_every_scale_and_image_size():
    model = LocalConvModel().eval()
    for h, w in [(9, 13), (16, 16), (31, 17), (40, 7)]:
        image = torch.randn(1, 3, h, w)
        model.input_sizes.clear()
        probs = predict_probs(
            model, image, scales=(0.5, 1.0, 1.25), mode="slide", crop_size=(12, 14), stride=5
        )
        assert probs.shape == (1, 3, h, w)
        # full windows, or the whole side where the scaled image is within the crop
        for scale in (0.5, 1.0, 1.25):
            sh, sw = scaled_size(h, w, scale)
            assert (min(12, sh), min(14, sw)) in model.input_sizes
        assert all(ih <= 12 and iw <= 14 for ih, iw in model.input_sizes)
        torch.testing.assert_close(probs.sum(1), torch.ones(1, h, w))


def test_slide_composes_with_pad_to_like_whole():
    from deeplabv3plus.config import EvalConfig
    from deeplabv3plus.evaluate import evaluate

    model = StridedModel().eval()
    image, label = torch.randn(1, 3, 13, 17), torch.randint(0, 4, (1, 13, 17))
    whole = evaluate(model, [(image, label)], EvalConfig(pad_to=25), num_classes=4, progress=False)
    slide = evaluate(
        model,
        [(image, label)],
        EvalConfig(pad_to=25, mode="slide", crop_size=25),
        num_classes=4,
        progress=False,
    )
    assert slide == whole


def test_slide_rejects_a_missing_window_and_a_stride_beyond_it():
    model = LocalConvModel()
    image = torch.randn(1, 3, 8, 8)
    with pytest.raises(ValueError, match="needs crop_size"):
        predict_probs(model, image, mode="slide")
    with pytest.raises(ValueError, match="larger than crop_size"):
        predict_probs(model, image, mode="slide", crop_size=4, stride=5)
    with pytest.raises(ValueError, match="mode"):
        predict_probs(model, image, mode="tiles")


def test_evaluate_pad_to_takes_height_and_width_as_the_reference_eval_crop():
    from deeplabv3plus.config import EvalConfig
    from deeplabv3plus.evaluate import evaluate

    model = StridedModel().eval()
    image, label = torch.randn(1, 3, 12, 20), torch.randint(0, 4, (1, 12, 20))
    pair = evaluate(model, [(image, label)], EvalConfig(pad_to=[13, 21]), num_classes=4, progress=False)
    by_hand = segment(model, F.pad(image, (0, 1, 0, 1)))[..., :12, :20]
    from deeplabv3plus.metrics import ConfusionMatrix

    expected = ConfusionMatrix(4)
    expected.update(by_hand, label)
    assert pair["per_class_iou"] == expected.to_dict()["per_class_iou"]


@pytest.mark.parametrize(
    "size, padded",
    [
        ((12, 30), (20, 30)),  # only the height is short: padded at the bottom
        ((30, 12), (30, 20)),  # only the width is short: padded on the right
        ((12, 15), (20, 20)),
        ((25, 30), (25, 30)),  # both at least pad_to: untouched
    ],
)
def test_pad_to_pads_each_short_side_even_when_the_other_is_long_enough(size, padded):
    from deeplabv3plus.config import EvalConfig
    from deeplabv3plus.inference import segment_eval

    model = StridedModel().eval()
    image = torch.randn(1, 3, *size)
    out = segment_eval(model, image, EvalConfig(pad_to=20))
    assert model.input_sizes == [padded]
    assert out.shape == (1, *size)
    h, w = size
    by_hand = segment(model, F.pad(image, (0, padded[1] - w, 0, padded[0] - h)))[..., :h, :w]
    assert torch.equal(out, by_hand)
