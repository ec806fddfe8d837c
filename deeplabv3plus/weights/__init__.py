"""Pretrained weights: ImageNet backbones and the reference TensorFlow checkpoints.

* :mod:`.imagenet`: torchvision / timm / local-file backbone weights.
* :mod:`.tf_bundle`: :class:`TFCheckpoint`, a TensorFlow checkpoint reader in pure Python + numpy.
* :mod:`.tf_names`: the generated map from reference TF variable names to our state_dict keys.
* :mod:`.tf_convert`: :func:`convert` a reference checkpoint into our state_dict
  (``scripts/convert_tf_checkpoint.py`` is the command-line front end; docs/pretrained.md).
"""

from .imagenet import PretrainedWeightsError, load_pretrained_backbone, read_state_dict
from .tf_bundle import TFCheckpoint, TFCheckpointError
from .tf_convert import IncompleteConversionError, check_complete, convert, deeplab_checkpoint
from .tf_names import KINDS, TFParam, name_map

__all__ = [
    "KINDS",
    "IncompleteConversionError",
    "PretrainedWeightsError",
    "TFCheckpoint",
    "TFCheckpointError",
    "TFParam",
    "check_complete",
    "convert",
    "deeplab_checkpoint",
    "load_pretrained_backbone",
    "name_map",
    "read_state_dict",
]
