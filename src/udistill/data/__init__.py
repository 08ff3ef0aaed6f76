"""The data layer: dataset registry, label schemes, transforms."""

from .labels import CAMVID11, CITYSCAPES19, IGNORE_INDEX, SCHEMES, LabelScheme, map_labels, map_probabilities
from .registry import available_datasets, build_dataset, register_dataset

__all__ = [
    "CAMVID11",
    "CITYSCAPES19",
    "IGNORE_INDEX",
    "SCHEMES",
    "LabelScheme",
    "map_labels",
    "map_probabilities",
    "available_datasets",
    "build_dataset",
    "register_dataset",
]
