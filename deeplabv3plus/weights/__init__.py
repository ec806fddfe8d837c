"""Pretrained weights: ImageNet backbones and the reference TensorFlow checkpoints.

* :mod:`.zoo`: the reference model zoo by name (:class:`PretrainedWeights` entries, the
  :class:`DeepLabV3PlusXception65Weights` and :class:`TFBackboneWeights` enums), for the builders'
  ``weights=`` and ``pretrained_backbone="tf:<name>"``; :func:`load_weights_model` for the scripts.
* :mod:`.download`: download, convert and cache a zoo entry once (torch.hub's cache).
* :mod:`.imagenet`: torchvision / timm / reference / local-file backbone weights.
* :mod:`.tf_bundle`: :class:`TFCheckpoint`, a TensorFlow checkpoint reader in pure Python + numpy;
  :mod:`.tf_writer`: :func:`write_tf_checkpoint`, its inverse.
* :mod:`.tf_names`: the generated map from reference TF variable names to our state_dict keys.
* :mod:`.tf_convert`: :func:`convert` a reference checkpoint into our state_dict, and back
  (:func:`to_tf_variables`); ``scripts/convert_tf_checkpoint.py`` is the command-line front end.
"""

from .imagenet import PretrainedWeightsError, load_pretrained_backbone, read_state_dict
from .tf_bundle import TFCheckpoint, TFCheckpointError
from .tf_convert import (
    IncompleteConversionError,
    check_complete,
    convert,
    deeplab_checkpoint,
    to_tf_variables,
)
from .tf_names import KINDS, TFParam, name_map
from .tf_writer import write_tf_checkpoint
from .zoo import (
    DeepLabV3PlusXception65Weights,
    PretrainedWeights,
    TFBackboneWeights,
    get_weights,
    list_weights,
    load_weights_model,
)

__all__ = [
    "KINDS",
    "DeepLabV3PlusXception65Weights",
    "IncompleteConversionError",
    "PretrainedWeights",
    "PretrainedWeightsError",
    "TFBackboneWeights",
    "TFCheckpoint",
    "TFCheckpointError",
    "TFParam",
    "check_complete",
    "convert",
    "deeplab_checkpoint",
    "get_weights",
    "list_weights",
    "load_pretrained_backbone",
    "load_weights_model",
    "name_map",
    "read_state_dict",
    "to_tf_variables",
    "write_tf_checkpoint",
]
