"""The public core: uncertainty distillation from plain PyTorch, with no config and no files.

- :class:`Ensemble` — any members (modules or functions returning logits) -> per pixel
  M, Σ, entropy H(M) and mutual information;
- :func:`add_uncertainty_head` — any segmentation model -> a student with ``.logits`` and ``.sigma``;
- :func:`distillation_loss` — T²·KL(M‖p) + α·CE + β·MSE(σ, Σ);
- :class:`Distiller` — ``step(batch)`` / ``fit(loader, epochs)`` with online or cached targets;
- :func:`pixel_uncertainty`, :func:`image_score`, :func:`frame_scores` — U and image scores;
- :class:`Alarm` — a split-conformal OOD alarm at a chosen false-alarm rate.

Seeds, devices, checkpoints and logging stay the caller's.
"""

from ..models.build import SegOutput
from .alarm import Alarm
from .distiller import Distiller, split_batch
from .ensemble import Ensemble, EnsembleOutput, member_logits
from .heads import UncertaintyStudent, add_uncertainty_head
from .losses import DistillationLoss, distillation_loss
from .scores import frame_scores, image_score, pixel_uncertainty

__all__ = [
    "Alarm",
    "DistillationLoss",
    "Distiller",
    "Ensemble",
    "EnsembleOutput",
    "SegOutput",
    "UncertaintyStudent",
    "add_uncertainty_head",
    "distillation_loss",
    "frame_scores",
    "image_score",
    "member_logits",
    "pixel_uncertainty",
    "split_batch",
]
