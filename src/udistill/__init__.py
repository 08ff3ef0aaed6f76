"""udistill: uncertainty distillation for semantic segmentation.

A deep ensemble (the teacher) is distilled into one two-headed student that predicts,
in a single forward pass, the class probabilities and the ensemble's per-class standard
deviation (Holder & Shafique, "Efficient Uncertainty Estimation in Semantic Segmentation
via Distillation").
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
