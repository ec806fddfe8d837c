"""Seeded expected-output regression: a change to the architecture or its init shows up here.

The expected logits live in ``tests/fixtures/regression/expected.pt``. After a deliberate change,
regenerate them with ``REGENERATE_EXPECTED=1 pytest tests/models/test_regression.py`` and say why in the
commit message.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from deeplabv3plus import build_model

EXPECTED = Path(__file__).parents[1] / "fixtures" / "regression" / "expected.pt"

CASES = {
    "resnet18_os16_decoder": dict(backbone="resnet18", head_channels=16, output_stride=16),
    "resnet50_beta_os8_nodecoder": dict(backbone="resnet50", resnet_variant="beta", head_channels=16,
                                        output_stride=8, decoder=False),
    "xception41_sc_os16": dict(backbone="xception41", head_channels=16, separable=True),
}  # fmt: skip


def _logits(kwargs: dict) -> torch.Tensor:
    torch.manual_seed(0)
    model = build_model(num_classes=3, **kwargs).eval()
    image = torch.randn(1, 3, 37, 45, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        return model(image)


@pytest.fixture(scope="module")
def expected() -> dict[str, torch.Tensor]:
    if os.environ.get("REGENERATE_EXPECTED"):
        EXPECTED.parent.mkdir(parents=True, exist_ok=True)
        torch.save({name: _logits(kwargs) for name, kwargs in CASES.items()}, EXPECTED)
    return torch.load(EXPECTED, weights_only=True)


@pytest.mark.parametrize("name", list(CASES))
def test_seeded_model_reproduces_its_recorded_logits(expected, name):
    out = _logits(CASES[name])
    assert out.shape == (1, 3, 37, 45)
    assert out.std() > 1e-3, "a degenerate output would make this test vacuous"
    torch.testing.assert_close(out, expected[name], rtol=1e-4, atol=1e-4)
