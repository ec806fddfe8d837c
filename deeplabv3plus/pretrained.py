"""``deeplabv3plus save-pretrained``: a trained model as portable weights with a model card.

:func:`save_pretrained` writes a folder of :mod:`deeplabv3plus.weights.portable` (``model.safetensors``,
``config.json``, ``README.md``) from a model and its config; :func:`save_pretrained_run` does it for a
training run's checkpoint (or a zoo entry), taking the card's figures from the run: an eval JSON
written by ``deeplabv3plus eval`` (the per-class table it measured), else the best periodic
validation the run recorded (mIoU only), else "not evaluated". Nothing in the card is made up: what
the run did not record is said to be unknown. :func:`push_to_hub` publishes the folder.

Loading it back: ``build_model(weights="DIR")``, ``from_pretrained("DIR")`` or ``"hf:owner/name"``
(:mod:`deeplabv3plus.loading`), ``deeplabv3plus eval --weights DIR``.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, Optional, Union

from torch import nn

from ._version import __version__, library_commit
from .builders import bn_momenta
from .catalog import BACKBONE_FAMILIES, LAYOUTS
from .checkpoint import CheckpointError, read_torch_file
from .config import Config, ModelConfig, config_to_dict, validate_config
from .data.datasets import dataset_class_names
from .loading import load_model_from_checkpoint, load_weights_model
from .loading import portable_config as stored_config
from .models.aspp import ASPP_RATES_AT_OS16
from .models.layers import unwrap_model
from .predict import dataset_palette
from .weights.portable import is_portable_source, push_folder_to_hub, resolve_portable, write_portable
from .weights.zoo import PretrainedWeights, get_weights

__all__ = [
    "CITATION",
    "model_card",
    "push_to_hub",
    "save_pretrained",
    "save_pretrained_run",
]

CITATION = """@inproceedings{deeplabv3plus2018,
  title     = {Encoder-Decoder with Atrous Separable Convolution for Semantic Image Segmentation},
  author    = {Liang-Chieh Chen and Yukun Zhu and George Papandreou and Florian Schroff and Hartwig Adam},
  booktitle = {ECCV},
  year      = {2018}
}"""


def portable_config(cfg: Config, commit: Optional[str]) -> dict[str, Any]:
    """``config.json``'s content: the model, data (without the machine's paths) and eval sections,
    and the classes, palette, mean/std and output stride spelled out for other tools."""
    sections = config_to_dict(cfg)
    data = {k: v for k, v in sections["data"].items() if k not in ("root", "workers")}
    names = dataset_class_names(cfg.data)
    palette = dataset_palette(cfg.data.layout, cfg.data.label_convention)[: cfg.data.num_classes]
    return {
        "library": "deeplabv3plus",
        "library_version": __version__,
        "commit": commit,
        "num_classes": cfg.model.num_classes,
        "class_names": list(names),
        "palette": palette.tolist(),
        "ignore_index": cfg.data.ignore_index,
        "mean": list(cfg.data.mean),
        "std": list(cfg.data.std),
        "input": "RGB float in [0, 1], normalised (x - mean) / std, shape (N, 3, H, W); any H, W",
        "output_stride": cfg.eval.output_stride or cfg.model.output_stride,
        "model": sections["model"],
        "data": data,
        "eval": sections["eval"],
    }


def _protocol(ev: dict[str, Any]) -> str:
    scales = ev.get("scales", [1.0])
    parts = [
        f"split '{ev.get('split')}'",
        f"output stride {ev.get('output_stride')}",
        "single scale" if list(scales) == [1.0] else f"scales {scales}",
        "left-right flip" if ev.get("flip") else "no flip",
        f"{ev.get('mode', 'whole')} images",
    ]
    pad = (ev.get("config") or {}).get("eval", {}).get("pad_to")
    if pad:
        parts.append(f"padded to {pad}")
    parts.append(f"precision {ev.get('precision', 'fp32')}")
    if ev.get("amp", "off") != "off":
        parts.append(f"autocast {ev['amp']}")
    return ", ".join(parts)


def _pct(value: Optional[float]) -> str:
    return "n/a" if value is None else f"{100 * value:.2f}"


def _card_header(
    cfg: Config,
    source: Optional[str],
    commit: Optional[str],
    entry: Optional[PretrainedWeights],
    layout: bool,
) -> list[str]:
    """Front matter, title (with the dataset layout when it is known), what the model is, how to load it."""
    m, d = cfg.model, cfg.data
    lines = ["---", "library_name: deeplabv3plus", "pipeline_tag: image-segmentation",
             "tags: [semantic-segmentation, deeplabv3plus]"]  # fmt: skip
    if entry is not None:
        lines.append("license: apache-2.0")
    origin = f"Exported from `{source}`" if source is not None else "Saved from Python"
    return lines + [
        "---",
        "",
        f"# DeepLabv3+ {m.backbone}, {d.num_classes} classes" + (f" ({d.layout})" if layout else ""),
        "",
        f"DeepLabv3+ (Chen et al., ECCV 2018) with a {m.backbone} backbone"
        + (f" ({m.resnet_variant} variant)" if m.backbone.startswith("resnet") else "")
        + f", output stride {m.output_stride}, decoder {'on' if m.decoder else 'off'}, atrous separable "
        f"convolutions (SC) {'on' if m.separable else 'off'}, ASPP/decoder width {m.head_channels}. "
        f"{origin} with deeplabv3plus {__version__} (commit {commit or 'unknown'}).",
        "",
        "## Use",
        "",
        "```python",
        "from deeplabv3plus import build_model",
        'model = build_model(weights="path/to/this/folder")  # or "hf:owner/name"; eval mode',
        "```",
        "",
        f"Input: RGB in [0, 1], normalised with mean {list(d.mean)} and std {list(d.std)}; any size. "
        f"Output: (N, {d.num_classes}, H, W) logits. `config.json` holds the architecture, classes, "
        "palette and evaluation settings.",
        "",
    ]


def _card_data(cfg: Config, entry: Optional[PretrainedWeights], unrecorded: Optional[str]) -> list[str]:
    """What it was trained on, and its classes."""
    d = cfg.data
    lines = ["## Data", ""]
    if unrecorded is not None:
        lines += [f"Not recorded: {unrecorded}.", ""]
    elif entry is not None:
        lines += [f"Trained on: {entry.trained_on}. Labels: {entry.label_convention}.", ""]
    else:
        synthetic = (
            f" ({d.synthetic.kind} synthetic set generated by this library)"
            if LAYOUTS[d.layout].generated
            else ""
        )
        lines += [
            f"Dataset layout `{d.layout}`{synthetic}; trained on split `{d.train_split}`, validated on "
            f"`{d.val_split}`; ignore index {d.ignore_index}.",
            "",
        ]
    names = dataset_class_names(cfg.data)
    return lines + ["Classes: " + ", ".join(f"{i} {n}" for i, n in enumerate(names)) + ".", ""]


def _card_recipe(
    cfg: Config,
    entry: Optional[PretrainedWeights],
    run_info: Optional[dict[str, Any]],
    iteration: Optional[int],
    unrecorded: Optional[str],
) -> list[str]:
    """How it was trained: the reference's (a zoo entry), the run's config and machine, or unknown."""
    m, d, t = cfg.model, cfg.data, cfg.train
    lines = ["## Training recipe", ""]
    if unrecorded is not None:
        return lines + [f"Not recorded: {unrecorded}.", ""]
    if entry is not None:
        note = f"The reference's (tensorflow/models research/deeplab), converted; {entry.notes or ''}"
        return lines + [note.rstrip(), ""]
    schedule = f"{t.max_iters} iterations"
    if iteration is not None and iteration < t.max_iters:
        schedule = f"a {t.max_iters}-iteration schedule stopped at iteration {iteration} (these weights)"
    amp = (run_info or {}).get("amp", t.amp)
    lines += [
        f"SGD (momentum {t.momentum}, weight decay {t.weight_decay:g}), poly LR (base {t.lr:g}, power "
        f"{t.lr_power}), {schedule} of batch {t.batch_size}, crop {d.crop_size}, random "
        f"scale {d.scales}, {'left-right flip' if d.hflip else 'no flip'}, cross-entropy ignoring "
        f"{d.ignore_index}; backbone init: {m.pretrained_backbone or 'from scratch (random)'}; "
        f"autocast {amp}.",
        "",
    ]
    if run_info:
        versions = run_info.get("versions", {})
        lines += [
            f"Run: commit {run_info.get('git_commit') or 'unknown'}, torch {versions.get('torch', '?')}, "
            f"device {run_info.get('device_name') or run_info.get('device', '?')}, world size "
            f"{run_info.get('world_size', '?')}, started {run_info.get('started', '?')}.",
            "",
        ]
    return lines


def _card_evaluation(
    cfg: Config,
    evaluation: Optional[dict[str, Any]],
    best_validation: Optional[dict[str, Any]],
    entry: Optional[PretrainedWeights],
) -> list[str]:
    """The measured table (an eval JSON), else the run's best validation, else "not evaluated"; and
    a zoo entry's reported figures, quoted as such."""
    lines = ["## Evaluation", ""]
    if evaluation is not None:
        lines += [
            f"Measured with `deeplabv3plus eval` ({_protocol(evaluation)}), over "
            f"{evaluation.get('num_images')} images: **mIoU {_pct(evaluation.get('mIoU'))}%**, pixel accuracy "
            f"{_pct(evaluation.get('pixel_acc'))}%.",
            "",
            "| class | IoU (%) |",
            "|---|---|",
            *[f"| {n} | {_pct(v)} |" for n, v in (evaluation.get("per_class_iou") or {}).items()],
            "",
        ]
    elif best_validation is not None:
        it, split, ev = best_validation.get("iteration"), cfg.data.val_split, cfg.eval
        protocol = _protocol({"split": split, "output_stride": ev.output_stride or cfg.model.output_stride,
                              "scales": ev.scales, "flip": ev.flip, "mode": ev.mode})  # fmt: skip
        lines += [
            f"Best periodic validation of the run: mIoU {_pct(best_validation['mIoU'])}% on `{split}`"
            + (f" at iteration {it}" if it is not None else "")
            + f" ({protocol}); the run recorded no per-class table (run `deeplabv3plus eval` and pass "
            "--eval-json for one).",
            "",
        ]
    else:
        lines += ["Not evaluated: the run recorded no validation and no eval JSON was given.", ""]
    if entry is not None and entry.results:
        lines += ["Reported by the reference (quoted, not measured here):", ""]
        for r in entry.results:
            lines.append(
                f"- {r.metric} {r.value:.2f}% on {r.split} (output stride {r.eval.output_stride}, scales "
                f"{list(r.eval.scales)}, flip {r.eval.flip}; {r.source})"
            )
        lines.append("")
    return lines


def model_card(
    cfg: Config,
    *,
    source: Optional[str],
    commit: Optional[str],
    evaluation: Optional[dict[str, Any]] = None,
    best_validation: Optional[dict[str, Any]] = None,
    entry: Optional[PretrainedWeights] = None,
    run_info: Optional[dict[str, Any]] = None,
    iteration: Optional[int] = None,
    unrecorded: Optional[str] = None,
) -> str:
    """The ``README.md`` model card (Hugging Face front matter + Markdown).

    Args:
        cfg: The model's config (its training recipe is ``cfg.train``).
        source: Where the weights came from (checkpoint path or zoo name), as recorded; None: saved
            from Python.
        commit: This library's commit (for reproducing the export).
        evaluation: An eval JSON payload (``deeplabv3plus eval``): its protocol and per-class table.
        best_validation: ``{"mIoU": fraction, "iteration": int or None}`` of the run's periodic
            validation, when no evaluation is given.
        entry: A reference zoo entry: its reported figures (quoted with their source, not measured).
        run_info: The run's ``run_info.json`` (training commit, versions, device, command).
        iteration: The iteration the checkpoint was written at (said when short of ``max_iters``).
        unrecorded: Why ``cfg``'s data and training sections do not describe how the weights were
            made (then the card says so instead of quoting them); None: they do.
    """
    lines = _card_header(cfg, source, commit, entry, layout=unrecorded is None)
    lines += _card_data(cfg, entry, unrecorded)
    lines += _card_recipe(cfg, entry, run_info, iteration, unrecorded)
    lines += _card_evaluation(cfg, evaluation, best_validation, entry)
    lines += ["## Citation", "", "```bibtex", CITATION, "```", ""]
    return "\n".join(lines)


_ARCHITECTURE = (
    "backbone", *dict.fromkeys(k for f in BACKBONE_FAMILIES.values() for k in f.options), "num_classes",
    "decoder", "separable", "aspp_rates", "low_level_channels", "head_channels", "align_corners",
)  # fmt: skip
"""The builder arguments that make the architecture (a ``cfg=`` must agree with the model on them):
the families' own options (``deeplabv3plus.catalog.BACKBONE_FAMILIES``) and the head's."""


def _bn_preset(args: dict[str, Any]) -> Union[str, float]:
    """``model.bn_momentum`` of the builder's two momenta: a preset's name, else the one number."""
    pair = (args["backbone_bn_momentum"], args["head_bn_momentum"])
    for preset in ("pytorch", "reference"):
        if bn_momenta(args["backbone"], preset) == pair:
            return preset
    if pair[0] != pair[1]:
        raise ValueError(
            f"save_pretrained: BN momenta {pair} (backbone, head) have no config form (model.bn_momentum "
            "is a preset or one number): pass cfg="
        )
    return pair[0]


def _recorded_config(model: nn.Module) -> Config:
    """The :class:`Config` of a builder-made model: its architecture from the builder's record
    (``model.build_args``), the data and eval sections of the weights it was built from (else the
    defaults)."""
    args = getattr(model, "build_args", None)
    if args is None:
        raise ValueError(
            f"save_pretrained: this {type(model).__name__} records no builder arguments (it was not made "
            "by a deeplabv3plus builder): pass cfg=, a Config whose model section describes it"
        )
    weights = args.get("weights")
    if weights is None:
        cfg = Config()
    elif is_portable_source(weights):
        cfg = stored_config(resolve_portable(weights))
    else:
        cfg = get_weights(weights).config()
    fields = {f.name for f in dataclasses.fields(ModelConfig)}
    cfg.model = ModelConfig(**{k: v for k, v in args.items() if k in fields}, bn_momentum=_bn_preset(args))
    cfg.model.output_stride = model.output_stride  # as it runs now (settable after building)
    cfg.data.num_classes = cfg.model.num_classes
    validate_config(cfg)
    return cfg


def _check_describes(cfg: Config, model: nn.Module) -> None:
    """A ``cfg=`` must describe the model's architecture where the model records it."""
    args = getattr(model, "build_args", None) or {}
    default = list(ASPP_RATES_AT_OS16)
    for key in (k for k in _ARCHITECTURE if k in args):
        given, built = getattr(cfg.model, key), args[key]
        if key == "aspp_rates":
            # None is the paper's rates; [] is ASPP without atrous branches (the mobile models').
            given, built = (default if v is None else list(v) for v in (given, built))
        if given != built:
            raise ValueError(
                f"save_pretrained: cfg.model.{key}={given!r} but the model was built with {key}={built!r}"
            )


def save_pretrained(
    model: nn.Module,
    output: Union[str, Path],
    *,
    cfg: Optional[Config] = None,
    source: Optional[str] = None,
    evaluation: Optional[dict[str, Any]] = None,
    best_validation: Optional[dict[str, Any]] = None,
    entry: Optional[PretrainedWeights] = None,
    run_info: Optional[dict[str, Any]] = None,
    iteration: Optional[int] = None,
) -> list[Path]:
    """Write ``model`` (a plain model, not its ``prepare_for_inference`` copy) as portable weights.

    ``save_pretrained(model, "exported/x")`` takes the architecture from the model (the arguments
    its builder recorded, ``model.build_args``), and the classes, mean/std and evaluation settings
    from the weights it was built from (``weights=``), else the config defaults; the card then says
    that the data and training recipe were not recorded. ``cfg=`` gives the whole config instead
    (needed for a model not made by a builder; it must agree with the model's record).

    Args:
        model: The model (DDP / torch.compile wrappers are unwrapped).
        output: The folder (created).
        cfg: The model's :class:`Config` (its model, data, eval and train sections).
        source: Where the weights came from (a checkpoint path, a zoo name), for the card.
        evaluation, best_validation, entry, run_info, iteration: the card's, see :func:`model_card`.

    Returns:
        The paths written: ``model.safetensors``, ``config.json``, ``README.md``.

    Raises:
        ValueError: a prepared copy (its folded state_dict would not load into a built model), no
            ``cfg`` for a model without a builder's record, a ``cfg`` of another architecture, or
            an ``evaluation`` measured on another architecture.
    """
    inner = unwrap_model(model)
    if getattr(inner, "prepared_for_inference", False):
        raise ValueError("save_pretrained: pass the model itself, not its prepare_for_inference copy")
    unrecorded = None
    if cfg is None:
        cfg = _recorded_config(inner)
        weights = inner.build_args.get("weights")
        unrecorded = "saved from Python without a training config" + (
            f", from a model built on weights '{weights}'" if weights is not None else ""
        )
    else:
        _check_describes(cfg, inner)
    if evaluation is not None:
        measured = (evaluation.get("config") or {}).get("model")
        if measured is not None and measured != dataclasses.asdict(cfg.model):
            raise ValueError(
                f"eval JSON measured another model ({measured.get('backbone')}, "
                f"{measured.get('num_classes')} classes) than this one ({cfg.model.backbone}, "
                f"{cfg.model.num_classes} classes)"
            )
    commit = library_commit()
    card = model_card(
        cfg, source=source, commit=commit, evaluation=evaluation, best_validation=best_validation,
        entry=entry, run_info=run_info, iteration=iteration, unrecorded=unrecorded,
    )  # fmt: skip
    return write_portable(output, inner.state_dict(), portable_config(cfg, commit), card)


def _read_json(path: Union[str, Path], what: str) -> dict[str, Any]:
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"{what} '{path}' does not exist")
    try:
        value = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as e:
        raise ValueError(f"{what} '{path}': not valid JSON ({e})") from None
    if not isinstance(value, dict):
        raise ValueError(f"{what} '{path}': expected a JSON object")
    return value


def _best_validation(checkpoint: Path, state: dict[str, Any]) -> Optional[dict[str, Any]]:
    """The run's best periodic validation: the checkpoint's ``best_miou``, its iteration from metrics.jsonl."""
    best = state.get("best_miou")
    if best is None:
        return None
    iteration = None
    log = checkpoint.parent / "metrics.jsonl"
    if log.is_file():
        for line in log.read_text().splitlines():
            try:
                row = json.loads(line)
            except ValueError:
                continue
            if row.get("val_mIoU") == best:
                iteration = row.get("iteration")
    return {"mIoU": float(best), "iteration": iteration}


def save_pretrained_run(
    output: Union[str, Path],
    *,
    checkpoint: Optional[Union[str, Path]] = None,
    weights: Optional[str] = None,
    eval_json: Optional[Union[str, Path]] = None,
    config: Optional[Union[str, Path]] = None,
) -> list[Path]:
    """Portable weights of a training checkpoint (``runs/x/best.pth``) or of a zoo entry, with the card
    filled from the run (its ``run_info.json``, best validation) and ``eval_json`` when given."""
    if (checkpoint is None) == (weights is None):
        raise ValueError("save_pretrained_run: pass exactly one of checkpoint= and weights=")
    evaluation = _read_json(eval_json, "eval JSON") if eval_json is not None else None
    if evaluation is not None and "per_class_iou" not in evaluation:
        raise ValueError(
            f"eval JSON '{eval_json}': no 'per_class_iou' (expected a deeplabv3plus eval result)"
        )
    if weights is not None:
        model, cfg = load_weights_model(weights, config=config, prepare=False)
        entry = None if is_portable_source(weights) else get_weights(weights)
        return save_pretrained(
            model, output, cfg=cfg, source=str(weights), evaluation=evaluation, entry=entry
        )
    checkpoint = Path(checkpoint).expanduser()
    model, cfg = load_model_from_checkpoint(checkpoint, config, prepare=False)
    state = read_torch_file(checkpoint)
    if not isinstance(state, dict):
        raise CheckpointError(f"checkpoint '{checkpoint}' is not a dict")
    info_path = checkpoint.parent / "run_info.json"
    run_info = _read_json(info_path, "run info") if info_path.is_file() else None
    return save_pretrained(
        model, output, cfg=cfg, source=str(checkpoint), evaluation=evaluation,
        best_validation=None if evaluation is not None else _best_validation(checkpoint, state),
        run_info=run_info, iteration=state.get("iteration"),
    )  # fmt: skip


def push_to_hub(
    folder: Union[str, Path], repo_id: str, *, private: bool = False, token: Optional[str] = None
) -> str:
    """Publish a ``save_pretrained`` folder to the Hub as ``repo_id`` (extra ``hub``); returns its URL."""
    return push_folder_to_hub(folder, repo_id, private=private, token=token)
