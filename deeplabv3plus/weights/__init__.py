"""Pretrained weights: the reference model zoo, ImageNet backbones and the TF checkpoint tools.

Bottom-up (each module imports only those above it in this list):

* :mod:`.zoo`: the catalogue: every reference checkpoint as a :class:`PretrainedWeights` entry (the
  :class:`DeepLabV3PlusXception65Weights` and :class:`TFBackboneWeights` enums), by name, for the
  builders' ``weights=`` and ``pretrained_backbone="tf:<name>"``; :class:`PretrainedWeightsError`.
* :mod:`.tf_bundle`: :class:`TFCheckpoint`, a TensorFlow checkpoint reader in pure Python + numpy;
  :mod:`.tf_writer`: :func:`write_tf_checkpoint`, its inverse.
* :mod:`.tf_names`: the generated map from reference TF variable names to our state_dict keys.
* :mod:`.tf_convert`: :func:`convert` a reference checkpoint into our state_dict, and back
  (:func:`to_tf_variables`); ``deeplabv3plus convert`` is the command-line front end.
* :mod:`.download`: download, convert and cache a zoo entry once (torch.hub's cache).
* :mod:`.imagenet`: torchvision / timm / reference / local-file backbone weights.

A model with its weights loaded is built one layer up, in :mod:`deeplabv3plus.builders` and
:mod:`deeplabv3plus.loading` (``load_weights_model``).
"""

from .imagenet import load_pretrained_backbone, read_state_dict
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
    PretrainedWeightsError,
    TFBackboneWeights,
    get_weights,
    list_weights,
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
    "name_map",
    "read_state_dict",
    "to_tf_variables",
    "write_tf_checkpoint",
]
