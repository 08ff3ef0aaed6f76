"""The models evaluation compares, loaded from a run folder, and every predictor run on one
batch: baseline (member 0), MC dropout of it, the ensemble (T = 1, with U of each half of its
members for the noise ceiling), the student(s), the CE-only control and, with
``single_pass.enabled``, the single-pass predictors on member 0's one trunk pass. Also their
batch-1 latency (:func:`measure_latency`, timed by :mod:`udistill.models.latency`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import torch

from ..config import ExperimentConfig
from ..core.ensemble import Ensemble, RunningMoments
from ..core.pixel_scores import PredictorOutput
from ..errors import CheckpointError
from ..layout import RunLayout
from ..models.build import SegmentationModel
from ..models.checkpoint import load_model
from ..models.latency import device_sync, time_calls
from ..single_pass.stages import load_predictors
from .mc_dropout import MCDropout, mc_dropout_rate
from .methods import SINGLE_PASS, Method, methods_for


@dataclass
class EvaluatedModels:
    """Everything evaluated: baseline (member 0), MC dropout of it, the ensemble, the
    student(s) and, when trained, the CE-only control."""

    baseline: SegmentationModel
    ensemble: Ensemble
    student: SegmentationModel
    scheme: str
    classes: list[str]
    mc: MCDropout | None = None
    student_meta: dict = field(default_factory=dict)
    student_path: Path | None = None
    student_light: SegmentationModel | None = None
    light_meta: dict = field(default_factory=dict)
    control: SegmentationModel | None = None
    # temperature_scaled / feature_density / multi_head (udistill.single_pass) and their records
    single_pass: dict = field(default_factory=dict)
    single_pass_records: dict = field(default_factory=dict)

    @property
    def predictors(self) -> tuple[str, ...]:
        have = {
            "baseline": True,
            "mc_dropout": self.mc is not None,
            "teacher": True,
            "student": True,
            "student_light": self.student_light is not None,
            "control": self.control is not None,
            **{p: p in self.single_pass for p in SINGLE_PASS},
        }
        return tuple(p for p, ok in have.items() if ok)

    @property
    def methods(self) -> tuple[Method, ...]:
        return methods_for(self.predictors)

    @property
    def alarms(self) -> dict[str, dict]:
        """The stored OOD alarm of each student (``udistill calibrate``), if calibrated."""
        out = {"student": self.student_meta.get("ood")}
        if self.student_light is not None:
            out["student_light"] = self.light_meta.get("ood")
        return {k: v for k, v in out.items() if v}


def load_models(cfg: ExperimentConfig, device) -> EvaluatedModels:
    layout = RunLayout.of(cfg)
    run = layout.out_dir
    baseline_path = layout.member_model(0)
    spath = layout.model_in(layout.student(cfg.model.uncertainty_head))
    for p, what in ((baseline_path, "baseline (member 0)"), (spath, "student")):
        if not p.exists():
            raise CheckpointError(f"{p}: {what} not found; run the earlier stages first (udistill experiment)")
    # checkpoints must fit the config and each other (member 0 of another run/architecture is refused)
    student, smeta = load_model(spath, expect=cfg.model, map_location=device)
    n = student.num_classes
    baseline, bmeta = load_model(
        baseline_path, expect=cfg.model, num_classes=n, heads="prediction", map_location=device
    )
    ensemble = Ensemble.from_run(run, temperature=1.0, members=cfg.teacher.members).to(device)
    rate = mc_dropout_rate(cfg.model.dropout, cfg.evaluate.mc_dropout)
    mc = (
        MCDropout(baseline, rate, cfg.evaluate.mc_samples, cfg.evaluate.mc_seed)
        if cfg.evaluate.mc_samples >= 2 and rate > 0
        else None
    )
    light, lmeta = None, {}
    lpath = layout.model_in(layout.student_light)
    if cfg.model.uncertainty_head == "paper" and lpath.exists():
        light, lmeta = load_model(
            lpath, expect=cfg.model, num_classes=n, heads="prediction+uncertainty-light", map_location=device
        )
    control = None
    cpath = layout.model_in(layout.control)
    if cpath.exists():
        control, _ = load_model(cpath, expect=cfg.model, num_classes=n, heads="prediction", map_location=device)
    for m in (baseline, student, light, control):
        if m is not None:
            m.eval()
    single, records = {}, {}
    if cfg.single_pass.enabled:
        single, records = load_predictors(cfg, baseline, device)
    return EvaluatedModels(
        baseline,
        ensemble,
        student,
        bmeta.get("label_scheme", "camvid11"),
        list(bmeta.get("classes", [])),
        mc,
        smeta,
        spath,
        light,
        lmeta,
        control,
        single,
        records,
    )


@torch.no_grad()
def run_predictors(models: EvaluatedModels, images: torch.Tensor, batch_seed: int = 0) -> dict[str, PredictorOutput]:
    """Every predictor on one batch, in the model's label space.

    Shape: images (N, 3, H, W) -> PredictorOutput per predictor, probs (N, C, H, W)."""

    def single(model):
        out = model(images)
        return PredictorOutput(torch.softmax(out.logits.float(), 1), None if out.sigma is None else out.sigma.float())

    ens = teacher_with_halves(models.ensemble, images)
    if models.single_pass:  # member 0's trunk once, for the baseline and every single-pass predictor
        outs = {**single_pass_outputs(models, images), "teacher": ens, "student": single(models.student)}
    else:
        outs = {"baseline": single(models.baseline), "teacher": ens, "student": single(models.student)}
    if models.mc is not None:
        outs["mc_dropout"] = models.mc(images, seed=models.mc.seed * 1_000_003 + batch_seed)
    if models.student_light is not None:
        outs["student_light"] = single(models.student_light)
    if models.control is not None:
        outs["control"] = single(models.control)
    return outs


@torch.no_grad()
def single_pass_outputs(models: EvaluatedModels, images: torch.Tensor) -> dict[str, PredictorOutput]:
    """The baseline and the single-pass predictors from one pass of member 0's trunk (the
    same numbers as each predictor run on its own).

    Shape: images (N, 3, H, W) -> PredictorOutput per predictor."""
    base = models.baseline
    feats, size = base.padded_features(images)
    logits = base.heads_forward(base.dropout(feats), size).logits
    probs = torch.softmax(logits.float(), 1)
    outs = {"baseline": PredictorOutput(probs)}
    sp = models.single_pass
    if "temperature_scaled" in sp:
        outs["temperature_scaled"] = sp["temperature_scaled"].from_logits(logits)
    if "feature_density" in sp:
        outs["feature_density"] = sp["feature_density"].from_features(feats, size, probs)
    if "multi_head" in sp:
        outs["multi_head"] = sp["multi_head"].heads.predict(feats, size)
    return outs


class TeacherOutput(NamedTuple):
    """The ensemble's output plus U of each half of its members (for the noise ceiling).

    Shape: probs, spread (N, C, H, W); mutual_info, u_half_a, u_half_b (N, H, W)."""

    probs: torch.Tensor
    spread: torch.Tensor
    mutual_info: torch.Tensor
    u_half_a: torch.Tensor | None = None
    u_half_b: torch.Tensor | None = None


@torch.no_grad()
def teacher_with_halves(ensemble: Ensemble, images: torch.Tensor) -> TeacherOutput:
    """M, Σ, MI of all members, and U (mean Σ over classes) of the first and second half of
    the members, in one pass over the members. How well one half's U predicts the other's
    measures the noise of the F-member estimate, which caps any student's agreement."""
    whole, a, b = RunningMoments(), RunningMoments(), RunningMoments()
    half = len(ensemble) // 2
    for k, p in enumerate(ensemble.member_probs(images)):
        whole.update(p)
        if half:
            (a if k < half else b).update(p)
    r = whole.result()
    if not half:
        return TeacherOutput(r.mean, r.std, r.mutual_info)
    return TeacherOutput(r.mean, r.std, r.mutual_info, a.result().std.mean(1), b.result().std.mean(1))


def measure_latency(models: EvaluatedModels, size: tuple[int, int], device, repeats: int = 10) -> dict:
    """Median batch-1 latency (ms) of every predictor at ``size`` (eager PyTorch), timed by
    :func:`udistill.models.latency.time_calls` (one warm-up call each, then ``repeats`` rounds)."""
    x = torch.rand(1, 3, *size, device=device)
    runners = {"baseline": models.baseline, "student": models.student, "ensemble": models.ensemble}
    if models.mc is not None:
        runners["mc_dropout"] = models.mc
    if models.student_light is not None:
        runners["student_light"] = models.student_light
    runners.update(models.single_pass)  # each on its own: trunk, head(s), its score
    median = {k: v[0] * 1000 for k, v in time_calls(runners, lambda: x, 1, repeats, device_sync(x.device), ()).items()}
    lat = {k: median[k] for k in ("baseline", "student", "ensemble")}
    if models.mc is not None:
        lat["mc_dropout"] = median["mc_dropout"]
    if models.student_light is not None:
        lat["student_light"] = median["student_light"]
        lat["student_light_over_baseline"] = lat["student_light"] / lat["baseline"]
    for name in models.single_pass:
        lat[name] = median[name]
        lat[f"{name}_over_baseline"] = lat[name] / lat["baseline"]
    lat["student_over_baseline"] = lat["student"] / lat["baseline"]
    lat["ensemble_over_student"] = lat["ensemble"] / lat["student"]
    lat["size"] = list(size)
    return lat
