"""Convert a reference TF checkpoint into our PyTorch state_dict (and a full-model checkpoint)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol, Union

import numpy as np
import torch

from ..config import Config, config_to_dict
from ..models import DeepLabV3Plus, ResNet, Xception
from .tf_names import IMAGENET_KINDS, KINDS, TFParam, is_ignored, name_map
from .zoo import DeepLabV3PlusXception65Weights, PretrainedWeights

__all__ = [
    "IncompleteConversionError",
    "check_complete",
    "convert",
    "deeplab_checkpoint",
    "from_torch_layout",
    "target_module",
    "zoo_source",
    "to_tf_variables",
    "to_torch_layout",
]


class IncompleteConversionError(ValueError):
    """The checkpoint and the name map disagree: unmapped TF variables or missing ones."""


class _Checkpoint(Protocol):
    def keys(self) -> Any: ...

    def __getitem__(self, name: str) -> np.ndarray: ...


def to_torch_layout(array: np.ndarray, layout: str) -> np.ndarray:
    """Rearrange a TF tensor for PyTorch.

    ``"conv"``: (H, W, in, out) -> (out, in, H, W). ``"depthwise"``: (H, W, C, M) -> (C * M, 1, H, W),
    channel-major as PyTorch groups order a depth multiplier M. ``"vector"``: unchanged.
    """
    if layout == "vector":
        return array
    if array.ndim != 4:
        raise ValueError(f"expected a 4-d {layout} kernel, got shape {array.shape}")
    if layout == "conv":
        return array.transpose(3, 2, 0, 1)
    if layout == "depthwise":
        h, w, c, m = array.shape
        return array.transpose(2, 3, 0, 1).reshape(c * m, 1, h, w)
    raise ValueError(f"unknown layout {layout!r}")


def from_torch_layout(array: np.ndarray, layout: str) -> np.ndarray:
    """The inverse of :func:`to_torch_layout`: (out, in, H, W) -> HWIO, (C, 1, H, W) -> (H, W, C, 1)."""
    if layout == "vector":
        return array
    if array.ndim != 4:
        raise ValueError(f"expected a 4-d {layout} kernel, got shape {array.shape}")
    if layout == "conv":
        return array.transpose(2, 3, 1, 0)
    if layout == "depthwise":
        return array.transpose(2, 3, 0, 1)
    raise ValueError(f"unknown layout {layout!r}")


def check_complete(tf_names: Union[Mapping, Any], kind: str) -> tuple[list[str], list[str]]:
    """Compare the variables of a checkpoint with the map of ``kind``.

    Returns:
        (unmapped, missing): TF variables that are model weights but map nowhere, and TF names the
        map needs that the checkpoint lacks. Both empty means a complete conversion.
    """
    names = set(tf_names)
    wanted = {p.tf_name for p in name_map(kind)}
    unmapped = sorted(n for n in names - wanted if not is_ignored(n, kind))
    missing = sorted(wanted - names)
    return unmapped, missing


def convert(ckpt: _Checkpoint, kind: str) -> dict[str, torch.Tensor]:
    """Our state_dict from a reference checkpoint.

    Args:
        ckpt: a :class:`~deeplabv3plus.weights.TFCheckpoint` or any mapping of TF names to arrays.
        kind: one of :data:`~deeplabv3plus.weights.tf_names.KINDS`.

    Returns:
        Float32 tensors under our keys: the backbone's own keys for ``*_imagenet`` kinds, the full
        ``DeepLabV3Plus`` keys for ``xception65_deeplab``. BN ``num_batches_tracked`` is not
        produced (``load_state_dict`` fills it in for a plain dict).

    Raises:
        IncompleteConversionError: a weight in the checkpoint has no place in our model, or one of
            ours is not in the checkpoint (wrong ``kind``?). The message lists the first names.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown checkpoint kind {kind!r}; expected one of {', '.join(KINDS)}")
    unmapped, missing = check_complete(list(ckpt.keys()), kind)
    if unmapped or missing:
        parts = []
        if missing:
            parts.append(f"{len(missing)} variable(s) missing, e.g. {missing[:3]}")
        if unmapped:
            parts.append(f"{len(unmapped)} unmapped variable(s), e.g. {unmapped[:3]}")
        raise IncompleteConversionError(f"checkpoint does not match kind {kind!r}: " + "; ".join(parts))
    state: dict[str, torch.Tensor] = {}
    for p in name_map(kind):
        state[p.key] = _tensor(ckpt[p.tf_name], p)
    return state


def to_tf_variables(state_dict: Mapping[str, torch.Tensor], kind: str) -> dict[str, np.ndarray]:
    """Our state_dict under the reference TF variable names and layouts: the inverse of :func:`convert`.

    With :func:`~deeplabv3plus.weights.tf_writer.write_tf_checkpoint` this writes a checkpoint that
    the reference code (and :func:`convert`) reads. ``num_batches_tracked`` has no TF counterpart.

    Raises:
        KeyError: ``state_dict`` lacks a key the map of ``kind`` needs.
    """
    out = {}
    for p in name_map(kind):
        if p.key not in state_dict:
            raise KeyError(f"state_dict has no {p.key!r}, needed for {p.tf_name!r} (kind {kind!r})")
        array = state_dict[p.key].detach().cpu().float().numpy()
        out[p.tf_name] = np.ascontiguousarray(from_torch_layout(array, p.layout))
    return out


def target_module(kind: str, num_classes: int = 21) -> torch.nn.Module:
    """A freshly built module of ours that the conversion of ``kind`` must fit exactly (strict load).

    ``*_imagenet`` kinds: the backbone alone (:class:`Xception` / beta :class:`ResNet` at OS 16);
    ``xception65_deeplab``: the reference DeepLabv3+ (Xception-65, SC, decoder) with ``num_classes``.
    """
    if kind == "xception65_deeplab":
        return DeepLabV3Plus(Xception(65, output_stride=16), num_classes, decoder=True, separable=True)
    if kind not in IMAGENET_KINDS:
        raise ValueError(f"unknown checkpoint kind {kind!r}; expected one of {', '.join(KINDS)}")
    family, depth = IMAGENET_KINDS[kind]
    return Xception(depth) if family == "xception" else ResNet(depth, variant="beta")


def _tensor(array: np.ndarray, param: TFParam) -> torch.Tensor:
    array = np.asarray(array)
    if array.dtype.kind != "f":
        raise ValueError(f"{param.tf_name}: expected a float tensor, got {array.dtype}")
    out = to_torch_layout(array.astype(np.float32), param.layout)
    return torch.from_numpy(np.ascontiguousarray(out))


def deeplab_checkpoint(
    state_dict: dict[str, torch.Tensor], *, num_classes: int, source: dict[str, Any]
) -> dict[str, Any]:
    """A full-model checkpoint ``{"model", "config", "source"}`` that the eval script loads.

    The config reproduces the reference model: Xception-65, separable ASPP and decoder, output
    stride 16, align_corners, its preprocessing x / 127.5 - 1, which is (x / 255 - 0.5) / 0.5, and
    its evaluation on images padded to 513x513 (``eval.pad_to``).
    """
    cfg = Config()
    cfg.model.backbone = "xception65"
    cfg.model.separable = True
    cfg.model.decoder = True
    cfg.model.output_stride = 16
    cfg.model.align_corners = True
    cfg.model.num_classes = num_classes
    cfg.model.pretrained_backbone = None
    cfg.data.num_classes = num_classes
    cfg.data.mean = [0.5, 0.5, 0.5]
    cfg.data.std = [0.5, 0.5, 0.5]
    cfg.eval.pad_to = 513  # the reference scored its checkpoints on images padded to 513x513
    return {"model": state_dict, "config": config_to_dict(cfg), "source": source}


def zoo_source(
    entry: PretrainedWeights = DeepLabV3PlusXception65Weights.XCEPTION65_COCO_VOC_TRAINAUG.value,
) -> dict[str, Any]:
    """Provenance of a converted zoo checkpoint, from its catalogue entry (name, URL, training
    sequence and the reported figures, keyed like ``val_mIoU_os16`` / ``val_mIoU_os8_ms_flip``)."""
    reported = {}
    for r in entry.results:
        setting = (
            f"os{r.eval.output_stride}"
            + ("_ms" if len(r.eval.scales) > 1 else "")
            + ("_flip" if r.eval.flip else "")
        )
        reported[f"{r.split}_{r.metric.replace(' ', '_')}_{setting}"] = r.value
    return {"name": entry.name, "url": entry.url, "trained_on": entry.trained_on, "reported": reported}
