"""A ready model and its config, from a training checkpoint or a reference zoo name.

What ``deeplabv3plus eval``, ``predict``, ``export`` and ``hubconf.py`` load models with:

* :func:`load_model_from_checkpoint`: a ``.pth`` the training loop wrote (or a bare state_dict with
  its training config);
* :func:`load_weights_model`: an entry of the reference model zoo, with the config it was published
  with (:meth:`~deeplabv3plus.weights.zoo.PretrainedWeights.config`), or portable weights (a folder
  of ``model.safetensors`` + ``config.json``, or ``hf:owner/name``) with the config stored there;
* :func:`from_pretrained`: the model of portable weights, as the Hugging Face libraries spell it.

Both layer a YAML file and dotted overrides on top of the stored config, and return the model in
eval mode, prepared for inference (:func:`~deeplabv3plus.models.prepare_for_inference`) by default.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Optional, Union

import torch
from torch import nn

from .builders import build_model
from .checkpoint import CheckpointError, check_state_dict_fits, read_torch_file
from .config import Config, ConfigError, config_from_dict, layer_config, validate_config
from .models import prepare_for_inference
from .weights.portable import is_portable_source, read_portable_config, resolve_portable
from .weights.zoo import PretrainedWeightsError, WeightsLike, get_weights

__all__ = ["from_pretrained", "load_model_from_checkpoint", "load_weights_model", "portable_config"]


def load_model_from_checkpoint(
    checkpoint: Union[str, Path],
    config: Optional[Union[str, Path]] = None,
    overrides: Optional[Sequence[str]] = None,
    device: Union[str, torch.device] = "cpu",
    prepare: bool = True,
    precision: Optional[str] = None,
) -> tuple[nn.Module, Config]:
    """Build the model a training checkpoint describes and load its weights.

    The config is layered: the checkpoint's own config, then the values of the ``config`` file on
    top (only the keys it sets), then the dotted ``overrides``. For a bare state_dict (no stored
    config) the ``config`` file is the whole config.

    Args:
        checkpoint: A ``.pth`` file holding ``{"model": state_dict, "config": nested dict}`` as
            the training loop writes, or a bare state_dict (then ``config`` is required).
        config: A YAML config whose values go on top of the checkpoint's.
        overrides: Dotted ``a.b=c`` overrides applied last.
        device: Where the model goes.
        prepare: Return :func:`~deeplabv3plus.models.fuse.prepare_for_inference`'s copy (BN
            folded, channels_last, frozen: for inference only); False returns the trainable model.
        precision: The prepared copy's precision, "fp32" or "bf16" (None: ``eval.precision`` of
            the layered config); set into the returned config's ``eval.precision``.

    Returns:
        ``(model, cfg)``: the model in eval mode on ``device`` (prepared for inference unless
        ``prepare=False``) and its :class:`Config`.

    Raises:
        CheckpointError: unreadable, foreign or unsafe file, or weights that do not fit the model.
        ConfigError: a bad config file, stored config or override.
    """
    state = read_torch_file(checkpoint)
    if not isinstance(state, dict):
        raise CheckpointError(f"checkpoint '{checkpoint}' holds a {type(state).__name__}, not a state_dict")
    has_wrapper = "model" in state and isinstance(state["model"], dict)
    stored = state.get("config") if has_wrapper else None
    if isinstance(stored, dict):
        try:
            base = config_from_dict(stored)
        except ConfigError as e:
            raise ConfigError(f"checkpoint '{checkpoint}', stored config: {e}") from None
    elif config is not None:
        base = Config()  # a bare state_dict: the file is the whole config
    else:
        raise ConfigError(
            f"checkpoint '{checkpoint}' holds no config: pass the training config with --config"
        )
    cfg = layer_config(base, config, overrides)
    model_kwargs = dataclasses.asdict(cfg.model)
    model_kwargs["pretrained_backbone"] = None  # the checkpoint holds every weight
    model = build_model(**model_kwargs)
    weights = state["model"] if has_wrapper else state
    # Checkpoints of a DDP or torch.compile'd model carry prefixes.
    for prefix in ("module.", "_orig_mod."):
        if weights and all(k.startswith(prefix) for k in weights):
            weights = {k[len(prefix) :]: v for k, v in weights.items()}
    if not all(isinstance(v, torch.Tensor) for v in weights.values()):
        raise CheckpointError(
            f"checkpoint '{checkpoint}' is not a state_dict (its values are not all tensors)"
        )
    m = cfg.model
    check_state_dict_fits(
        model,
        weights,
        checkpoint,
        f"{m.backbone}, {m.num_classes} classes, decoder {m.decoder}, SC {m.separable}",
    )
    model.load_state_dict(weights)
    model = model.to(device).eval()
    return _prepared(model, cfg, prepare, precision)


def _prepared(
    model: nn.Module, cfg: Config, prepare: bool, precision: Optional[str]
) -> tuple[nn.Module, Config]:
    """``(model, cfg)``, the model prepared for inference at ``precision`` (None: ``cfg.eval.precision``)."""
    if precision is not None:
        cfg.eval = config_from_dict({"eval": {"precision": precision}}, base=cfg).eval
        validate_config(cfg)
    if prepare:
        # BN folded, channels_last, packed oneDNN weights: the fastest exact path (docs/benchmarks.md);
        # bf16 rounds the folded weights once, here.
        model = prepare_for_inference(model, precision=cfg.eval.precision)
    return model, cfg


def load_weights_model(
    weights: WeightsLike,
    overrides: Optional[Sequence[str]] = None,
    device: Union[str, torch.device] = "cpu",
    config: Optional[Union[str, Path]] = None,
    prepare: bool = True,
    precision: Optional[str] = None,
) -> tuple[nn.Module, Config]:
    """The model of an entry and the config it was published with (as ``load_model_from_checkpoint``).

    Args:
        weights: an entry name (``"xception65_coco_voc_trainaug"``), member or entry; or portable
            weights, a folder path or ``"hf:owner/name"`` (then the config is its ``config.json``'s).
        overrides: dotted ``a.b=c`` config overrides applied last (e.g. ``data.root=/data/voc``,
            ``eval.output_stride=8``).
        device: where the model goes.
        config: a YAML file whose values go on top of :meth:`PretrainedWeights.config` (only the
            keys it sets), before the overrides.
        prepare: Return :func:`~deeplabv3plus.models.fuse.prepare_for_inference`'s copy (BN folded,
            channels_last, frozen: for inference only); False returns the plain eval-mode model.
        precision: as :func:`load_model_from_checkpoint`.

    Returns:
        ``(model, cfg)``: the model in eval mode on ``device`` (prepared for inference unless
        ``prepare=False``) and its :class:`~deeplabv3plus.config.Config`.
    """
    if is_portable_source(weights):
        folder = resolve_portable(weights)
        cfg = layer_config(portable_config(folder), config, overrides)
        source = folder
    else:
        entry = get_weights(weights)
        cfg = layer_config(entry.config(), config, overrides)
        source = entry
    kwargs = dataclasses.asdict(cfg.model)
    kwargs["pretrained_backbone"] = None  # the weights hold the backbone too
    model = build_model(**kwargs, weights=source).to(device).eval()
    return _prepared(model, cfg, prepare, precision)


def portable_config(folder: Union[str, Path]) -> Config:
    """The :class:`Config` stored in a portable folder's ``config.json`` (model, data, eval sections).

    ``data.root`` is not stored (it was the training machine's): set it to evaluate.

    Raises:
        PretrainedWeightsError: a missing or foreign ``config.json``, or sections this version's
            config schema rejects (named in one line).
    """
    stored = read_portable_config(folder)
    try:
        return config_from_dict({k: stored[k] for k in ("model", "data", "eval") if k in stored})
    except ConfigError as e:
        raise PretrainedWeightsError(f"portable weights '{folder}', config.json: {e}") from None


def from_pretrained(
    path_or_repo_id: Union[str, Path],
    *,
    device: Union[str, torch.device] = "cpu",
    prepare: bool = False,
    precision: Optional[str] = None,
) -> nn.Module:
    """The model of portable weights: a folder by path, or a Hub repository (``"owner/name"`` or
    ``"hf:owner/name"``; needs the extra ``hub``, and reads the Hub cache only with ``HF_HUB_OFFLINE=1``).

    Equivalent to ``build_model(weights=path_or_repo_id)``; nothing is unpickled (the weights are
    safetensors). Returns the model in eval mode on ``device``; ``prepare=True`` returns
    :func:`~deeplabv3plus.models.fuse.prepare_for_inference`'s copy at ``precision`` (default: the
    stored ``eval.precision``). :func:`load_weights_model` returns the stored config with it.
    """
    text = str(path_or_repo_id)
    local = text.startswith("hf:") or Path(text).expanduser().exists()
    if not local and text.count("/") == 1 and not text.startswith((".", "/", "~")):
        try:  # "owner/name" that is not a local folder: a Hub repository
            model, _ = load_weights_model("hf:" + text, device=device, prepare=prepare, precision=precision)
        except PretrainedWeightsError as e:
            raise PretrainedWeightsError(f"{e} (and there is no local folder '{text}')") from None
        return model
    if not is_portable_source(text):
        raise PretrainedWeightsError(
            f"from_pretrained: no folder '{text}' (expected a folder path or owner/name)"
        )
    model, _ = load_weights_model(text, device=device, prepare=prepare, precision=precision)
    return model
