"""Portable weights: a folder with ``model.safetensors``, ``config.json`` and a ``README.md`` model card.

The folder is what a trained model leaves the lab as (the Hugging Face Hub's layout, readable without
this library's pickles): ``model.safetensors`` holds the state_dict (safetensors: a JSON header and raw
tensor bytes, nothing is ever unpickled), ``config.json`` everything needed to rebuild and use the model
(the architecture as the config's ``model`` section, classes and their names, the palette, mean/std,
the output stride and evaluation settings, the library version and commit), ``README.md`` the card
that says how it was trained and evaluated.

This module reads and writes such a folder and finds one on the Hub; building the model from it is
the builders' (``weights="path/to/folder"`` or ``weights="hf:owner/name"``), and composing the card
from a run is :mod:`deeplabv3plus.pretrained`'s. The file format needs the extra ``portable``
(safetensors), the Hub the extra ``hub`` (huggingface_hub); both are imported only when used.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Optional, Union

import torch

from ..checkpoint import write_atomically
from ..config import ConfigError, config_from_dict, validate_model_config
from .zoo import PretrainedWeightsError

__all__ = [
    "CARD_FILE",
    "CONFIG_FILE",
    "FORMAT",
    "HUB_PREFIX",
    "WEIGHTS_FILE",
    "is_portable_source",
    "push_folder_to_hub",
    "read_portable",
    "resolve_portable",
    "write_portable",
]

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
CARD_FILE = "README.md"
FORMAT = "deeplabv3plus-portable"
"""``config.json``'s ``format``: a folder written by :func:`write_portable`."""
FORMAT_VERSION = 1
HUB_PREFIX = "hf:"
"""``weights="hf:owner/name"`` (optionally ``@revision``) is a Hub repository."""


def _safetensors_torch():
    try:
        import safetensors.torch  # an optional extra: only portable weights need it
    except ImportError:
        raise ImportError(
            'portable weights need safetensors: pip install "deeplabv3plus[portable]"'
        ) from None
    return safetensors.torch


def _hub():
    try:
        import huggingface_hub  # an optional extra: only the Hub needs it
    except ImportError:
        raise ImportError(
            'the Hugging Face Hub needs huggingface_hub: pip install "deeplabv3plus[hub]"'
        ) from None
    return huggingface_hub


def is_portable_source(weights: Any) -> bool:
    """Whether a ``weights=`` value means portable weights: ``"hf:owner/name"`` or a folder path.

    Zoo names (``"xception65_coco_voc_trainaug"``) have no path separator; anything with one, a
    leading ``~`` or ``.``, or that names an existing folder is taken as a path.
    """
    if isinstance(weights, os.PathLike):
        return True
    if not isinstance(weights, str):
        return False
    return (
        weights.startswith(HUB_PREFIX)
        or "/" in weights
        or os.sep in weights
        or weights.startswith(("~", "."))
        or Path(weights).is_dir()
    )


def resolve_portable(source: Union[str, os.PathLike]) -> Path:
    """The local folder of a portable source: the path itself (``~`` expanded, relative to the current
    directory), or the Hub snapshot of ``hf:owner/name[@revision]`` (downloaded, or taken from the
    Hub cache; ``HF_HUB_OFFLINE=1`` reads the cache only).

    Raises:
        PretrainedWeightsError: a folder that does not exist, or a repository the Hub (or its
            cache, offline) does not have.
        ImportError: ``hf:`` without huggingface_hub (the message names the extra).
    """
    text = os.fspath(source)
    if not text.startswith(HUB_PREFIX):
        folder = Path(text).expanduser()
        if not folder.is_dir():
            raise PretrainedWeightsError(
                f"weights '{text}': no such folder (expected a folder holding {WEIGHTS_FILE} and {CONFIG_FILE}, "
                "or hf:owner/name)"
            )
        return folder
    repo_id, _, revision = text[len(HUB_PREFIX) :].partition("@")
    if repo_id.count("/") != 1 or not all(repo_id.split("/")):
        raise PretrainedWeightsError(f"weights '{text}': expected hf:owner/name[@revision]")
    hub = _hub()
    try:
        return Path(
            hub.snapshot_download(
                repo_id, revision=revision or None, allow_patterns=[WEIGHTS_FILE, CONFIG_FILE, CARD_FILE]
            )
        )
    except Exception as e:  # offline without a cached snapshot, no such repo, network errors
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise PretrainedWeightsError(
            f"weights '{text}': cannot get it from the Hub ({type(e).__name__}: {first})"
        ) from None


def write_portable(
    folder: Union[str, os.PathLike],
    state_dict: Mapping[str, torch.Tensor],
    config: Mapping[str, Any],
    card: str,
) -> list[Path]:
    """Write ``model.safetensors``, ``config.json`` and ``README.md`` into ``folder`` (created), each
    atomically (never half-written).

    Args:
        folder: Where the three files go.
        state_dict: The model's tensors (a plain eval-mode model's ``state_dict()``, not a prepared
            copy: the folder must load into a freshly built model). Stored contiguous, on CPU.
        config: JSON-ready dict; ``format``, ``format_version`` are added.
        card: The model card (Markdown).

    Returns:
        The three paths written.
    """
    st = _safetensors_torch()
    folder = Path(folder).expanduser()
    # safetensors refuses tensors sharing memory and stores no strides: give it contiguous copies.
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in state_dict.items()}
    payload = st.save(tensors, metadata={"format": "pt"})
    config = {"format": FORMAT, "format_version": FORMAT_VERSION, **config}
    text = json.dumps(config, indent=2) + "\n"
    paths = [
        write_atomically(folder / WEIGHTS_FILE, lambda f: f.write(payload)),
        write_atomically(folder / CONFIG_FILE, lambda f: f.write(text.encode())),
        write_atomically(folder / CARD_FILE, lambda f: f.write(card.encode())),
    ]
    return paths


def read_portable_config(folder: Union[str, os.PathLike]) -> dict[str, Any]:
    """``config.json`` of a portable folder, checked to be one.

    Raises:
        PretrainedWeightsError: missing, not JSON, not written by :func:`write_portable`, or a
            ``model`` section the config's checks refuse (an unknown key, ``head_channels=1e9``):
            one line naming the file and the key.
    """
    path = Path(folder) / CONFIG_FILE
    if not path.is_file():
        raise PretrainedWeightsError(f"portable weights '{folder}': {CONFIG_FILE} is missing")
    try:
        config = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as e:
        raise PretrainedWeightsError(f"portable weights '{path}': not valid JSON ({e})") from None
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise PretrainedWeightsError(
            f"portable weights '{path}': not a {FORMAT} config (its 'format' is "
            f"{config.get('format') if isinstance(config, dict) else None!r})"
        )
    if config.get("format_version", 0) > FORMAT_VERSION:
        raise PretrainedWeightsError(
            f"portable weights '{path}': format_version {config['format_version']} is newer than this "
            f"library reads ({FORMAT_VERSION}); upgrade deeplabv3plus"
        )
    if not isinstance(config.get("model"), dict):
        raise PretrainedWeightsError(f"portable weights '{path}': no 'model' section")
    try:  # the config's own checks, before anything is built (head_channels=1e9 would try to allocate)
        validate_model_config(config_from_dict({"model": config["model"]}).model)
    except ConfigError as e:
        raise PretrainedWeightsError(f"portable weights '{path}': {e}") from None
    return config


def read_portable(folder: Union[str, os.PathLike]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """``(state_dict, config)`` of a portable folder; the weights are read by safetensors (no pickle).

    Raises:
        PretrainedWeightsError: a missing or corrupt file (one line naming it).
    """
    folder = Path(folder)
    config = read_portable_config(folder)
    path = folder / WEIGHTS_FILE
    if not path.is_file():
        raise PretrainedWeightsError(f"portable weights '{folder}': {WEIGHTS_FILE} is missing")
    st = _safetensors_torch()
    try:
        state = st.load_file(str(path), device="cpu")
    except Exception as e:  # safetensors' SafetensorError, or OSError on a truncated header
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise PretrainedWeightsError(f"portable weights '{path}': corrupt or truncated ({first})") from None
    return state, config


def push_folder_to_hub(
    folder: Union[str, os.PathLike],
    repo_id: str,
    *,
    private: bool = False,
    token: Optional[str] = None,
    commit_message: str = "Upload DeepLabv3+ weights",
) -> str:
    """Upload a portable folder to the Hub repository ``repo_id`` (created if needed); returns its URL.

    Needs the extra ``hub`` and a token (``huggingface-cli login`` or ``token=``).
    """
    folder = Path(folder).expanduser()
    read_portable_config(folder)  # refuse to publish something that is not a portable folder
    hub = _hub()
    api = hub.HfApi(token=token)
    url = api.create_repo(repo_id, private=private, exist_ok=True)
    api.upload_folder(folder_path=str(folder), repo_id=repo_id, commit_message=commit_message)
    return str(url)
