"""ImageNet-pretrained backbones: torchvision ResNets, timm's aligned Xceptions, local files.

Our ``standard`` ResNet has torchvision's keys and our Xception has timm's keys, so the name
map is the identity once the classifier (``fc.*`` / ``head.*``) is dropped; every other
tensor must load, and a missing or unexpected key is an error.

A source is one of:

* a path to a state_dict file (``.pth``/``.pt``; ``.safetensors`` when safetensors is installed),
  e.g. the output of ``scripts/convert_tf_checkpoint.py`` for the reference checkpoints;
* ``"torchvision:IMAGENET1K_V1"`` / ``"torchvision:IMAGENET1K_V2"`` (any standard ResNet), downloaded
  and cached by torchvision itself;
* ``"timm:xception65.tf_in1k"`` (any timm aligned Xception tag), through timm (extra ``timm``);
* ``"tf:xception_65"``, ``"tf:resnet_v1_101_beta"`` (and ``tf:xception_41``, ``tf:xception_71``,
  ``tf:resnet_v1_50_beta``): the reference ImageNet checkpoints, downloaded from the model zoo,
  converted and cached on first use (:mod:`.zoo`, :mod:`.download`). The ResNets are the ``beta``
  variant and, like the Xceptions, expect inputs in [-1, 1] (``data.mean = data.std = 0.5``).
"""

from __future__ import annotations

import os
import socket
import urllib.parse
from pathlib import Path
from typing import Any, Optional, Union

import torch
from torch import nn

from ..checkpoint import CheckpointError, read_torch_file, state_dict_mismatch
from .download import load_state_dict
from .zoo import PretrainedWeightsError, get_weights, list_weights

__all__ = ["PretrainedWeightsError", "load_pretrained_backbone", "read_state_dict", "resolve_source"]

CLASSIFIER_PREFIXES = ("fc.", "head.", "backbone.fc.", "backbone.head.")


def read_state_dict(path: Union[str, Path]) -> dict[str, torch.Tensor]:
    """Tensors of a state_dict file; a checkpoint dict with a "model"/"state_dict" entry is unwrapped."""
    path = Path(path)
    if not path.is_file():
        raise PretrainedWeightsError(f"pretrained weights file '{path}' does not exist")
    if path.suffix == ".safetensors":
        try:
            from safetensors.torch import load_file
        except ImportError:
            raise PretrainedWeightsError(
                f"reading '{path}' needs safetensors: pip install \"deeplabv3plus[timm]\""
            ) from None
        return load_file(str(path))
    try:  # CRC-checked, weights_only: a damaged, foreign or unsafe file is refused in one line
        state = read_torch_file(path, "pretrained weights file")
    except CheckpointError as e:
        raise PretrainedWeightsError(str(e)) from None
    for key in ("model", "state_dict"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict):
        raise PretrainedWeightsError(f"'{path}' holds a {type(state).__name__}, expected a state_dict")
    return state


def _torchvision_state_dict(backbone: nn.Module, tag: str) -> dict[str, torch.Tensor]:
    from torchvision.models import (
        ResNet18_Weights,
        ResNet34_Weights,
        ResNet50_Weights,
        ResNet101_Weights,
        ResNet152_Weights,
    )

    enums = {18: ResNet18_Weights, 34: ResNet34_Weights, 50: ResNet50_Weights, 101: ResNet101_Weights,
             152: ResNet152_Weights}  # fmt: skip
    depth = getattr(backbone, "depth", None)
    if getattr(backbone, "variant", None) is None or depth not in enums:
        raise PretrainedWeightsError(
            f"torchvision ImageNet weights are read into the 'standard' ResNets only, not {type(backbone).__name__}"
        )
    if backbone.variant != "standard":
        raise PretrainedWeightsError(
            "torchvision ImageNet weights fit the 'standard' ResNets only (set model.resnet_variant=standard)"
        )
    try:
        weights = enums[depth][tag]
    except KeyError:
        valid = ", ".join(w.name for w in enums[depth])
        raise PretrainedWeightsError(
            f"unknown torchvision weights {tag!r}; expected one of {valid}"
        ) from None
    try:
        return weights.get_state_dict(progress=True, check_hash=True)
    except Exception as e:
        cache = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(weights.url)
        raise PretrainedWeightsError(
            f"cannot download {weights.url} ({e.__class__.__name__}); offline, put that file at '{cache}' "
            "or pass its path as the pretrained source"
        ) from None


def _timm_state_dict(tag: str) -> dict[str, torch.Tensor]:
    try:
        import timm
    except ImportError:
        raise PretrainedWeightsError(
            f"the pretrained source 'timm:{tag}' needs timm: pip install \"deeplabv3plus[timm]\""
        ) from None
    unreachable = _hf_hub_unreachable(timm, tag)
    if unreachable:
        raise PretrainedWeightsError(
            f"timm cannot download {tag!r}: {unreachable}, and the weights are not in the Hugging Face cache. "
            'Offline, on a machine with internet run: python -c "import timm, torch; '
            f"torch.save(timm.create_model('{tag}', pretrained=True).state_dict(), '{tag}.pth')\" and pass "
            f"that file as the pretrained source (model.pretrained_backbone={tag}.pth), or copy that machine's "
            f"cache folder models--timm--{tag} into {_hf_cache_dir()}"
        )
    try:
        return timm.create_model(tag, pretrained=True).state_dict()
    except Exception as e:
        raise PretrainedWeightsError(
            f"timm could not load {tag!r} ({e.__class__.__name__}: {str(e).splitlines()[0] if str(e) else ''}); "
            f"offline, save timm.create_model('{tag}', pretrained=True).state_dict() elsewhere with "
            "torch.save and pass that file's path as the pretrained source"
        ) from None


def _tf_state_dict(tag: str) -> dict[str, torch.Tensor]:
    entry = get_weights(tag)
    if not entry.is_backbone:
        raise PretrainedWeightsError(
            f"'tf:{tag}' is a trained segmentation model: pass weights='{tag}' to the builder; "
            f"ImageNet backbones: {', '.join('tf:' + n for n in list_weights(backbones=True))}"
        )
    return load_state_dict(entry)


def _hf_cache_dir() -> str:
    try:
        from huggingface_hub import constants

        return str(constants.HF_HUB_CACHE)
    except Exception:
        return "~/.cache/huggingface/hub"


def _hf_hub_unreachable(timm: Any, tag: str, timeout: float = 5.0) -> Optional[str]:
    """Why timm's download of ``tag`` would fail, decided in seconds; None if cached or reachable.

    Offline, huggingface_hub retries each candidate file for ~25 s before giving up; a cached file or
    ``HF_HUB_OFFLINE=1`` needs no network, otherwise one TCP connection to the hub tells.
    """
    try:
        from huggingface_hub import constants, try_to_load_from_cache

        pretrained = timm.models.get_pretrained_cfg(tag)
        repo = getattr(pretrained, "hf_hub_id", None)
        if not repo:
            return None  # not a Hugging Face source: let timm try
        for name in ("model.safetensors", "pytorch_model.bin"):
            if isinstance(try_to_load_from_cache(repo, name), str):
                return None
        if constants.HF_HUB_OFFLINE:
            return None  # timm fails fast by itself
        host = urllib.parse.urlparse(constants.ENDPOINT).hostname or "huggingface.co"
    except Exception:
        return None  # cannot tell: let timm try
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
    except OSError as e:
        return f"{host} is unreachable ({e.strerror or type(e).__name__})"
    return None


def resolve_source(backbone: nn.Module, source: str) -> dict[str, torch.Tensor]:
    """The state_dict a source names (see the module docstring)."""
    kind, _, tag = source.partition(":")
    if kind == "torchvision" and tag:
        return _torchvision_state_dict(backbone, tag)
    if kind == "timm" and tag:
        return _timm_state_dict(tag)
    if kind == "tf" and tag:
        return _tf_state_dict(tag)
    return read_state_dict(source)


def load_pretrained_backbone(backbone: nn.Module, source: str) -> None:
    """Load ImageNet weights into ``backbone`` (in place), strictly but for the classifier.

    Raises:
        PretrainedWeightsError: the source cannot be had, or a key is missing or unexpected.
    """
    state = resolve_source(backbone, source)
    state = {
        k.removeprefix("backbone."): v for k, v in state.items() if not k.startswith(CLASSIFIER_PREFIXES)
    }
    mismatch = state_dict_mismatch(backbone.state_dict(), state)
    if mismatch is not None:
        raise PretrainedWeightsError(
            f"pretrained source '{source}' does not fit {type(backbone).__name__}: {mismatch}"
        )
    # BN's num_batches_tracked is a training counter, not a weight: converted TF checkpoints have
    # none (tf_convert.convert), and nothing at inference reads it. Keep ours where it is absent.
    own = backbone.state_dict()
    state.update({k: v for k, v in own.items() if k.endswith(".num_batches_tracked") and k not in state})
    backbone.load_state_dict(state, strict=True)
