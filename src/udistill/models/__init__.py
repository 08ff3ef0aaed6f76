"""Models: DeepLabV3+ (segmentation_models_pytorch) with the paper's heads, and checkpoints."""

from .build import HEADS, SegmentationModel, SegOutput, build_model, enable_dropout, student_heads, to_student
from .checkpoint import load_model, load_state, read_metadata, save_model, save_state

__all__ = [
    "HEADS",
    "SegmentationModel",
    "SegOutput",
    "build_model",
    "enable_dropout",
    "student_heads",
    "to_student",
    "load_model",
    "load_state",
    "read_metadata",
    "save_model",
    "save_state",
]
