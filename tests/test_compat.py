"""The version shims (deeplabv3plus._compat): the same behaviour on the floor and on the latest torch."""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F
from torchvision import tv_tensors

from deeplabv3plus import _compat
from deeplabv3plus._compat import (
    DEVICE_GRAD_SCALER,
    ONNX_DYNAMO_EXPORT,
    grad_scaler,
    onnx_export,
    query_size,
    resize_mask_nearest_exact,
)


@pytest.mark.parametrize(
    "version,release", [("2.2.2", (2, 2)), ("2.14.1+cu130", (2, 14)), ("0.29.0a0+git1234", (0, 29))]
)
def test_release_reads_major_and_minor_from_local_and_prerelease_versions(version, release):
    assert _compat._release(version) == release


def test_release_of_an_unreadable_version_is_an_error_naming_it():
    with pytest.raises(ValueError, match="'unknown'"):
        _compat._release("unknown")


def test_query_size_gives_height_and_width_of_image_and_mask():
    image = tv_tensors.Image(torch.randint(0, 256, (3, 7, 11), dtype=torch.uint8))
    mask = tv_tensors.Mask(torch.randint(0, 4, (1, 7, 11), dtype=torch.uint8))
    assert query_size([image, mask]) == (7, 11)


@pytest.mark.parametrize("size", [[10, 17], [5, 6], [9, 15]])
def test_mask_resize_is_nearest_exact_on_every_torchvision(size):
    torch.manual_seed(0)
    mask = tv_tensors.Mask(torch.randint(0, 21, (1, 7, 11), dtype=torch.uint8))
    out = resize_mask_nearest_exact(mask, size)
    expected = F.interpolate(mask[None].float(), size=size, mode="nearest-exact")[0].to(torch.uint8)
    assert isinstance(out, tv_tensors.Mask) and out.dtype == torch.uint8
    assert torch.equal(out.as_subclass(torch.Tensor), expected)
    # At these factors nearest-exact and nearest differ: the test would catch a plain NEAREST resize.
    assert not torch.equal(expected, F.interpolate(mask[None].float(), size=size, mode="nearest")[0].byte())


def test_disabled_grad_scaler_is_a_silent_no_op_on_cpu():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        scaler = grad_scaler("cpu", enabled=False)
    assert not scaler.is_enabled()
    loss = torch.tensor(3.0)
    assert scaler.scale(loss) is loss


@pytest.mark.skipif(not DEVICE_GRAD_SCALER, reason="torch.amp.GradScaler (CPU loss scaling) needs torch>=2.3")
def test_enabled_grad_scaler_scales_cpu_losses():
    scaler = grad_scaler("cpu", enabled=True)
    assert scaler.is_enabled()
    assert scaler.scale(torch.tensor(3.0)).item() == 3.0 * scaler.get_scale()


@pytest.mark.skipif(DEVICE_GRAD_SCALER, reason=f"torch {torch.__version__} scales losses on CPU")
def test_fp16_on_cpu_without_a_cpu_scaler_is_a_one_line_error_naming_the_fix():
    with pytest.raises(ValueError, match=r"amp fp16 on device 'cpu'.*torch>=2\.3.*amp bf16") as info:
        grad_scaler("cpu", enabled=True)
    assert "\n" not in str(info.value)


@pytest.mark.skipif(ONNX_DYNAMO_EXPORT, reason=f"torch {torch.__version__} has the dynamo ONNX exporter")
def test_dynamo_onnx_export_on_an_older_torch_is_an_error_naming_torch_2_5(tmp_path):
    with pytest.raises(ValueError, match=r"torch >= 2\.5.*'torchscript'"):
        onnx_export(
            torch.nn.Conv2d(3, 2, 1), (torch.randn(1, 3, 4, 4),), str(tmp_path / "m.onnx"), dynamo=True
        )
    assert not (tmp_path / "m.onnx").exists()


def test_export_onnx_auto_uses_dynamo_exactly_where_torch_has_it(tmp_path):
    pytest.importorskip("onnx", reason='ONNX export needs the extra: pip install "deeplabv3plus[onnx]"')
    if ONNX_DYNAMO_EXPORT:
        pytest.importorskip("onnxscript", reason="the dynamo exporter needs onnxscript")
    from deeplabv3plus.export import export_onnx

    model = torch.nn.Sequential(torch.nn.Conv2d(3, 2, 3, padding=1), torch.nn.ReLU())
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # no "dynamo failed, falling back" on either torch
        used = export_onnx(model, tmp_path / "m.onnx", height=9, width=9, exporter="auto")
    assert used == ("dynamo" if ONNX_DYNAMO_EXPORT else "torchscript")
    assert (tmp_path / "m.onnx").stat().st_size > 0
