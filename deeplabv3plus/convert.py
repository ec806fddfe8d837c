"""Convert a reference TensorFlow DeepLab checkpoint into a PyTorch checkpoint: ``deeplabv3plus convert``.

:func:`convert_tf_checkpoint` reads the TF checkpoint (:class:`~deeplabv3plus.weights.tf_bundle.TFCheckpoint`,
no TensorFlow needed), converts it (:func:`~deeplabv3plus.weights.tf_convert.convert`), checks the
result with :func:`check_converted` (every tensor loaded, strict, into a freshly built module of
ours) and only then writes it: ``xception65_deeplab`` as a full checkpoint ``{"model", "config",
"source"}`` that ``eval`` loads, the ``*_imagenet`` kinds as a bare backbone state_dict for
``model.pretrained_backbone=PATH``. docs/pretrained.md.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Optional, Union

import torch

from deeplabv3plus.checkpoint import save_checkpoint
from deeplabv3plus.weights import tf_bundle  # the module, not the class: tests replace the reader
from deeplabv3plus.weights.tf_convert import convert, deeplab_checkpoint, target_module, zoo_source


def check_converted(state: Mapping[str, torch.Tensor], kind: str, num_classes: Optional[int] = None) -> int:
    """Check a converted state_dict by loading it, strict, into a freshly built module of ``kind``.

    Args:
        state: The converted tensors (:func:`~deeplabv3plus.weights.tf_convert.convert`'s).
        kind: The checkpoint kind (``deeplabv3plus.weights.tf_names.KINDS``).
        num_classes: ``xception65_deeplab``: the class count the logits must have (None: as stored).

    Returns:
        The class count of the logits for ``xception65_deeplab``; 0 for the backbone kinds.

    Raises:
        ValueError: ``num_classes`` differs from the logits' class count, or an unknown ``kind``.
        RuntimeError: a tensor is missing, left over or of another shape than our module's.
    """
    classes = 0
    if kind == "xception65_deeplab":
        classes = int(state["classifier.bias"].shape[0])
        if num_classes is not None and num_classes != classes:
            raise ValueError(
                f"--num-classes {num_classes} but the checkpoint's logits have {classes} classes"
            )
    # Loading into our model checks every shape (and that nothing is missing or left over).
    target_module(kind, classes).load_state_dict(state, strict=True)
    return classes


def convert_tf_checkpoint(
    checkpoint: Union[str, Path],
    kind: str,
    output: Union[str, Path],
    *,
    num_classes: Optional[int] = None,
    verify_crc: bool = False,
) -> Path:
    """Convert the TF checkpoint ``checkpoint`` of ``kind``, check it and write it to ``output``; print a line.

    Args:
        checkpoint: The TF checkpoint prefix, e.g. ``DIR/model.ckpt``.
        kind: What it holds (``deeplabv3plus.weights.tf_names.KINDS``): ``xception65_deeplab`` (the
            model zoo's full model) or a ``*_imagenet`` backbone.
        output: The ``.pth`` file to write (written atomically, only once the check passed).
        num_classes: ``xception65_deeplab``: the class count the logits must have (None: as stored).
        verify_crc: Check every tensor's crc32c while reading (slow).

    Returns:
        ``output``, as a Path.

    Raises:
        TFCheckpointError: a missing, truncated or corrupt TF checkpoint (a ValueError).
        ValueError, RuntimeError: the conversion does not fit (:func:`check_converted`).
    """
    state = convert(tf_bundle.TFCheckpoint(str(checkpoint), verify=verify_crc), kind)
    classes = check_converted(state, kind, num_classes)
    if kind == "xception65_deeplab":
        source = dict(zoo_source(), checkpoint=str(Path(checkpoint).resolve()), kind=kind)
        obj: object = deeplab_checkpoint(state, num_classes=classes, source=source)
    else:
        obj = state
    output = Path(output)
    save_checkpoint(obj, output)
    print(f"converted {len(state)} tensors from {checkpoint} ({kind}) -> wrote {output}")
    return output
