"""convert: a TF checkpoint in, a checked PyTorch checkpoint out (:mod:`deeplabv3plus.convert`)."""

import numpy as np
import pytest
import torch

from deeplabv3plus.convert import check_converted, convert_tf_checkpoint
from deeplabv3plus.weights.tf_convert import target_module, to_tf_variables
from deeplabv3plus.weights.tf_writer import write_tf_checkpoint

KIND = "resnet50_beta_imagenet"  # the smallest target: a ResNet-50 beta backbone


@pytest.fixture(scope="module")
def backbone_state():
    torch.manual_seed(0)
    return target_module(KIND).state_dict()


def _converted(state):
    """The state_dict as :func:`convert` hands it over (no BN step counters)."""
    return {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}


def test_check_converted_accepts_a_state_that_fits_and_names_what_does_not(backbone_state):
    state = _converted(backbone_state)
    assert check_converted(state, KIND) == 0  # a backbone kind has no logits
    missing = {k: v for k, v in state.items() if k != "conv1.0.conv.weight"}
    with pytest.raises(RuntimeError, match="conv1.0.conv.weight"):
        check_converted(missing, KIND)
    reshaped = {**state, "conv1.0.conv.weight": state["conv1.0.conv.weight"][:, :1]}
    with pytest.raises(RuntimeError, match="size mismatch"):
        check_converted(reshaped, KIND)


def test_check_converted_refuses_a_class_count_other_than_the_logits(backbone_state):
    # Refused before any model is built: the logits' class count is read off the bias.
    with pytest.raises(ValueError, match="--num-classes 19 but the checkpoint's logits have 21 classes"):
        check_converted({"classifier.bias": torch.zeros(21)}, "xception65_deeplab", num_classes=19)


def test_convert_tf_checkpoint_writes_the_backbone_it_read(backbone_state, tmp_path, capsys):
    tf = to_tf_variables(_converted(backbone_state), KIND)
    write_tf_checkpoint(tmp_path / "tf" / "model.ckpt", tf)
    out = convert_tf_checkpoint(tmp_path / "tf" / "model.ckpt", KIND, tmp_path / "r50.pth")
    assert out == tmp_path / "r50.pth"
    saved = torch.load(out, weights_only=True)
    assert saved.keys() == _converted(backbone_state).keys()
    for key, value in saved.items():
        assert torch.equal(value, backbone_state[key]), key
    assert f"-> wrote {out}" in capsys.readouterr().out


def test_convert_tf_checkpoint_writes_nothing_when_the_check_fails(backbone_state, tmp_path):
    tf = to_tf_variables(_converted(backbone_state), KIND)
    name = next(n for n in tf if n.endswith("weights"))
    tf[name] = np.zeros((1, 1, 1, 1), np.float32)  # a tensor of the wrong shape
    write_tf_checkpoint(tmp_path / "tf" / "model.ckpt", tf)
    with pytest.raises(RuntimeError, match="size mismatch"):
        convert_tf_checkpoint(tmp_path / "tf" / "model.ckpt", KIND, tmp_path / "r50.pth")
    assert not (tmp_path / "r50.pth").exists()
