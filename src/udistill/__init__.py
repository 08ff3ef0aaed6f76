"""udistill: uncertainty distillation for semantic segmentation.

A deep ensemble (the teacher) is distilled into one two-headed student that predicts,
in a single forward pass, the class probabilities and the ensemble's per-class standard
deviation (Holder & Shafique, "Efficient Uncertainty Estimation in Semantic Segmentation
via Distillation").

    from udistill import Predictor
    p = Predictor.from_checkpoint("runs/demo/student/model.safetensors")("frame.png")

Bring your own ensemble (the public core, :mod:`udistill.core`: no config, no files)::

    from udistill import Ensemble, add_uncertainty_head, Distiller, Alarm
    teacher = Ensemble([model_a, model_b, model_c])
    student = add_uncertainty_head(my_model, head="paper")
    Distiller(student, teacher).fit(loader, epochs=5)
    alarm = Alarm.calibrate(calibration_images, 0.05, student=student.eval())
"""

__version__ = "0.1.0"

_CORE = (
    "Alarm",
    "DistillationLoss",
    "Distiller",
    "Ensemble",
    "EnsembleOutput",
    "SegOutput",
    "add_uncertainty_head",
    "distillation_loss",
    "frame_scores",
    "image_score",
    "pixel_uncertainty",
)

__all__ = ["__version__", "Predictor", "Prediction", *_CORE]


def __getattr__(name):  # lazy: `import udistill` stays cheap, torch loads on first use
    if name in ("Predictor", "Prediction"):
        from .deploy import predict

        return getattr(predict, name)
    if name in _CORE:
        from . import core

        return getattr(core, name)
    raise AttributeError(f"module 'udistill' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))
