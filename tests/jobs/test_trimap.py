"""Trimap boundary accuracy: bands of known width around hand-made void pixels."""

import math

import torch

from deeplabv3plus.metrics import TrimapMeter, save_trimap_csv, trimap_mask, void_distance

VOID = 255


def _label_with_void_column():
    """9x12 label: class 1 left, class 2 right, a void column at x = 5 between them."""
    label = torch.ones(9, 12, dtype=torch.long)
    label[:, 6:] = 2
    label[:, 5] = VOID
    return label


def test_void_distance_is_the_chessboard_distance():
    label = torch.zeros(7, 7, dtype=torch.long)
    label[3, 3] = VOID
    d = void_distance(label, max_distance=10)
    ys, xs = torch.meshgrid(torch.arange(7), torch.arange(7), indexing="ij")
    expected = torch.maximum((ys - 3).abs(), (xs - 3).abs())
    assert torch.equal(d, expected)


def test_void_distance_saturates_and_ignores_the_border():
    label = torch.zeros(5, 9, dtype=torch.long)
    label[:, 0] = VOID
    d = void_distance(label, max_distance=3)
    assert torch.equal(d[0], torch.tensor([0, 1, 2, 3, 4, 4, 4, 4, 4]))
    assert torch.equal(void_distance(torch.zeros(4, 4, dtype=torch.long), 2), torch.full((4, 4), 3))


def test_band_of_width_w_is_the_w_columns_either_side_of_a_void_column():
    label = _label_with_void_column()
    for w in (1, 2, 3):
        expected = torch.zeros(9, 12, dtype=torch.bool)
        expected[:, max(0, 5 - w) : 5] = True
        expected[:, 6 : 6 + w] = True
        assert torch.equal(trimap_mask(label, w), expected), w


def test_width_zero_selects_no_pixel():
    assert not trimap_mask(_label_with_void_column(), 0).any()


def test_batched_labels_get_independent_bands():
    a = _label_with_void_column()
    b = torch.zeros(9, 12, dtype=torch.long)
    masks = trimap_mask(torch.stack([a, b]), 2)
    assert torch.equal(masks[0], trimap_mask(a, 2))
    assert not masks[1].any()


def test_meter_scores_only_the_band():
    label = _label_with_void_column()
    # Right everywhere except column 8 (3 px right of the void), predicted as class 1.
    pred = label.clone()
    pred[:, 5] = 1
    pred[:, 8] = 1
    meter = TrimapMeter(num_classes=3, widths=[0, 2, 3, 4])
    meter.update(pred, label)
    r = meter.compute()
    assert math.isnan(r[0])  # empty band: undefined, not 0
    assert r[2] == 1.0  # columns 3,4 | 6,7: all correct; class 0 absent
    # Width 3 scores columns 2..4 (class 1, 27 px) and 6..8 (class 2, 27 px); column 8 is
    # predicted as class 1: IoU1 = 27 / (27 + 9), IoU2 = 18 / 27.
    iou1 = 27 / (27 + 9)
    iou2 = 18 / 27
    assert abs(r[3] - (iou1 + iou2) / 2) < 1e-12
    assert meter.meters[4].compute()["num_pixels"] == 9 * 8


def test_results_table_and_csv(tmp_path, capsys):
    meter = TrimapMeter(num_classes=3, widths=range(0, 5, 2))
    label = _label_with_void_column()
    meter.update(label.clamp(max=2), label)
    table = meter.format_table()
    assert "n/a" in table.splitlines()[1] and "100.00" in table.splitlines()[2]
    paths = meter.save(tmp_path)
    rows = (tmp_path / "trimap.csv").read_text().splitlines()
    assert rows == ["width_px,miou", "0,", "2,1.000000", "4,1.000000"]
    assert paths[0] == tmp_path / "trimap.csv"
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        assert "deeplabv3plus[plot]" in capsys.readouterr().out
    else:
        assert (tmp_path / "trimap.png").is_file()
    save_trimap_csv({1: None}, tmp_path / "none.csv")
    assert (tmp_path / "none.csv").read_text().splitlines()[1] == "1,"


# Labels without a void band (Cityscapes, ADE20K): bands around every change of label value.


def test_boundary_distance_is_the_chessboard_distance_to_another_label():
    from deeplabv3plus.metrics import boundary_distance

    label = torch.zeros(7, 9, dtype=torch.long)
    label[:, 5:] = 3  # a class boundary between columns 4 and 5
    label[0, 0] = 255  # void counts as another label
    label[6, 8] = 1
    # brute force: min over the pixels q of another label of max(|dy|, |dx|)
    ys, xs = torch.meshgrid(torch.arange(7), torch.arange(9), indexing="ij")
    cheb = torch.maximum(
        (ys.reshape(-1, 1) - ys.reshape(1, -1)).abs(), (xs.reshape(-1, 1) - xs.reshape(1, -1)).abs()
    )
    other = label.reshape(-1, 1) != label.reshape(1, -1)
    expected = torch.where(other, cheb, 99).min(1).values.reshape(7, 9)
    assert torch.equal(boundary_distance(label, max_distance=10), expected)
    assert torch.equal(boundary_distance(label, 2), expected.clamp(max=3))
    assert torch.equal(boundary_distance(torch.full((4, 4), 7), 2), torch.full((4, 4), 3))  # no border band


def test_boundary_band_meter_scores_pixels_near_class_boundaries_but_never_void():
    label = torch.ones(6, 10, dtype=torch.long)
    label[:, 5:] = 2
    label[:, 9] = 255
    pred = label.clamp(max=2)
    pred[:, 2] = 2  # wrong 3 columns from the boundary
    meter = TrimapMeter(num_classes=3, widths=[0, 1, 3], band="boundary")
    meter.update(pred, label)
    assert math.isnan(meter.compute()[0])
    assert meter.compute()[1] == 1.0
    # width 1: columns 4, 5 (the class boundary) and 8 (next to void): 18 pixels
    assert meter.meters[1].compute()["num_pixels"] == 18
    # width 3: columns 2..7 and 6..8 -> 2..8 (void column 9 never scored)
    assert meter.meters[3].compute()["num_pixels"] == 6 * 7
    assert meter.compute()[3] < 1.0
    void_meter = TrimapMeter(num_classes=3, widths=[1], band="void")
    void_meter.update(pred, label)
    assert void_meter.meters[1].compute()["num_pixels"] == 6  # only column 8
