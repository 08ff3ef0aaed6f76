"""The one registry of uncertainty methods: which predictor's output a method reads and how
it turns that output into a per-pixel uncertainty score in [0, 1].

Evaluation, the report, the benchmark and ``predict`` all take their method and predictor
names from here, so no list of names exists twice.

A *predictor* is a model that produces class probabilities (and possibly a spread map):

===============  ==========================================================================
predictor        output
===============  ==========================================================================
baseline         member 0, softmax
mc_dropout       member 0 with dropout before the head, T seeded samples: mean, std, MI
teacher          the ensemble (T = 1): mean M, population std Σ, mutual information
student          the distilled student (paper heads): softmax and σ
student_light    the light-head student: softmax and σ
control          member 0 fine-tuned on labels alone for the student's epochs (no teacher)
temperature_     member 0's softmax at one temperature fitted on the validation split (NLL)
scaled
feature_density  member 0's softmax and a density of its decoder features (class-conditional
                 Gaussians fitted on the training images, DDU)
multi_head       F heads on member 0's frozen encoder/decoder: mean, std, MI
===============  ==========================================================================

The last three are the single-pass methods (:mod:`udistill.single_pass`), evaluated when
``single_pass.enabled`` is set.

A *method* is (predictor, score). Scores (:mod:`udistill.core.pixel_scores`): ``msp`` = 1 - max p; ``entropy`` = H(p) / log C;
``u`` = mean over classes of the spread map (Σ, the MC std, the multi-head std or the
student's σ: the paper's pixel uncertainty U, eq. 8); ``mi`` = mutual information / log C;
``density`` = the feature-density map (a monotone [0, 1] map of the features' negative log
density, :mod:`udistill.single_pass.feature_density`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..core.pixel_scores import PredictorOutput, score_map

PREDICTORS = (
    "baseline",
    "mc_dropout",
    "teacher",
    "student",
    "student_light",
    "control",
    "temperature_scaled",
    "feature_density",
    "multi_head",
)
SINGLE_PASS = ("temperature_scaled", "feature_density", "multi_head")


@dataclass(frozen=True)
class Method:
    """One uncertainty method: ``key`` (the results.json name), the predictor it reads, its
    score, a label for tables and figures."""

    key: str
    predictor: str
    score: str
    label: str


METHODS: tuple[Method, ...] = (
    Method("baseline_msp", "baseline", "msp", "baseline 1 − max softmax"),
    Method("baseline_entropy", "baseline", "entropy", "baseline entropy"),
    Method("mc_dropout", "mc_dropout", "u", "MC dropout U (mean std)"),
    Method("mc_dropout_entropy", "mc_dropout", "entropy", "MC dropout entropy"),
    Method("ensemble_std", "teacher", "u", "ensemble U (mean Σ)"),
    Method("ensemble_mi", "teacher", "mi", "ensemble mutual information"),
    Method("ensemble_entropy", "teacher", "entropy", "ensemble entropy H(M)"),
    Method("ensemble_msp", "teacher", "msp", "ensemble 1 − max M"),
    Method("student_sigma", "student", "u", "student U (mean σ, the paper's)"),
    Method("student_msp", "student", "msp", "student 1 − max softmax"),
    Method("student_entropy", "student", "entropy", "student entropy"),
    Method("student_light_sigma", "student_light", "u", "light student U"),
    Method("student_light_msp", "student_light", "msp", "light student 1 − max softmax"),
    Method("student_light_entropy", "student_light", "entropy", "light student entropy"),
    Method("control_msp", "control", "msp", "CE-only control 1 − max softmax"),
    Method("control_entropy", "control", "entropy", "CE-only control entropy"),
    Method("temperature_scaled_msp", "temperature_scaled", "msp", "temperature-scaled 1 − max softmax"),
    Method("temperature_scaled_entropy", "temperature_scaled", "entropy", "temperature-scaled entropy"),
    Method("feature_density", "feature_density", "density", "feature density (−log p of the features)"),
    Method("multi_head_u", "multi_head", "u", "multi-head U (mean std)"),
    Method("multi_head_mi", "multi_head", "mi", "multi-head mutual information"),
    Method("multi_head_entropy", "multi_head", "entropy", "multi-head entropy"),
    Method("multi_head_msp", "multi_head", "msp", "multi-head 1 − max mean softmax"),
)
BY_KEY = {m.key: m for m in METHODS}
# The method whose map is "the" uncertainty of a predictor (figures, per-class tables, alarm).
PRIMARY = {
    "teacher": "ensemble_std",
    "student": "student_sigma",
    "student_light": "student_light_sigma",
    "baseline": "baseline_msp",
    "mc_dropout": "mc_dropout",
    "control": "control_msp",
    "temperature_scaled": "temperature_scaled_msp",
    "feature_density": "feature_density",
    "multi_head": "multi_head_u",
}


def methods_for(predictors) -> tuple[Method, ...]:
    """The methods whose predictor is among ``predictors`` (registry order)."""
    have = set(predictors)
    return tuple(m for m in METHODS if m.predictor in have)


def method_maps(outputs: dict[str, PredictorOutput], methods=METHODS) -> dict[str, torch.Tensor]:
    """Score maps of every method whose predictor is in ``outputs``. Shape: each (N, H, W)."""
    return {m.key: score_map(m.score, outputs[m.predictor]) for m in methods if m.predictor in outputs}
