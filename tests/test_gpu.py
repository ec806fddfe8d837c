"""CUDA paths (skipped without a GPU; CI has none): AMP, channels_last and a training run."""

from __future__ import annotations

import pytest
import torch

from deeplabv3plus import build_model

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_autocast_channels_last_logits_match_fp32(dtype):
    torch.manual_seed(0)
    model = build_model("resnet50", num_classes=5).cuda().eval()
    x = torch.randn(2, 3, 129, 129, device="cuda")
    with torch.inference_mode():
        expected = model(x).float().softmax(1)
        model = model.to(memory_format=torch.channels_last)
        with torch.autocast("cuda", dtype=dtype):
            out = model(x.contiguous(memory_format=torch.channels_last)).float().softmax(1)
    torch.testing.assert_close(out, expected, rtol=0, atol=0.05)


def test_cuda_training_run_with_the_auto_settings(tmp_path, synthetic_voc):
    from deeplabv3plus.config import config_from_dict
    from deeplabv3plus.train import setup_runtime, train

    cfg = config_from_dict(
        {
            "model": {"backbone": "resnet18", "num_classes": 6, "head_channels": 16},
            "data": {"layout": "synthetic", "root": str(synthetic_voc), "num_classes": 6, "crop_size": 65,
                     "workers": 0},
            "train": {"max_iters": 3, "batch_size": 4, "allow_scratch_backbone": True, "device": "cuda",
                      "val_interval": 0, "output_dir": str(tmp_path)},
        }
    )  # fmt: skip
    runtime = setup_runtime(cfg)
    assert runtime.amp_dtype in (torch.bfloat16, torch.float16) and runtime.channels_last
    model, results = train(cfg)
    assert next(model.parameters()).is_cuda
    assert results["mIoU"] is not None
