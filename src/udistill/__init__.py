"""udistill: uncertainty distillation for semantic segmentation.

A deep ensemble (the teacher) is distilled into one two-headed student that predicts,
in a single forward pass, the class probabilities and the ensemble's per-class standard
deviation (Holder & Shafique, "Efficient Uncertainty Estimation in Semantic Segmentation
via Distillation").

    from udistill import Predictor
    p = Predictor.from_checkpoint("runs/demo/student/model.safetensors")("frame.png")
"""

__version__ = "0.1.0"

__all__ = ["__version__", "Predictor", "Prediction"]


def __getattr__(name):  # lazy: `import udistill` stays cheap, torch loads on first use
    if name in ("Predictor", "Prediction"):
        from . import predict

        return getattr(predict, name)
    raise AttributeError(f"module 'udistill' has no attribute {name!r}")
