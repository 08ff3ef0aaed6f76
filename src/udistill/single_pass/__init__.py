"""Single-pass uncertainty methods beside the student, fitted on member 0 (the baseline):

- :mod:`.temperature`: one temperature fitted on the validation split by NLL;
- :mod:`.feature_density`: class-conditional Gaussians on the decoder features of the
  training images (Deep Deterministic Uncertainty, Mukhoti et al.);
- :mod:`.multi_head`: F heads on the frozen encoder/decoder, a last-layer ensemble.

:mod:`.stages` fits them as resumable pipeline stages (reused while their inputs are
unchanged); :mod:`udistill.evaluation.evaluate` runs them as predictors of :mod:`udistill.evaluation.methods`.
Why: "distil your ensemble" can only be weighed against what one forward pass already gives.
"""

from .feature_density import DensityAccumulator, FeatureDensityPredictor, GaussianDensity
from .multi_head import MultiHead, MultiHeadPredictor
from .temperature import TemperatureScaled, fit_temperature

__all__ = [
    "DensityAccumulator",
    "FeatureDensityPredictor",
    "GaussianDensity",
    "MultiHead",
    "MultiHeadPredictor",
    "TemperatureScaled",
    "fit_temperature",
]
