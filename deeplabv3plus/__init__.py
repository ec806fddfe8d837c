"""DeepLabv3+ semantic segmentation (Chen et al., ECCV 2018) in PyTorch."""

__version__ = "0.1.0"
