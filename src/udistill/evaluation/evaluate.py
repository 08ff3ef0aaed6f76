"""Evaluation: every predictor and every uncertainty method of :mod:`udistill.evaluation.methods` on
the same images, at the same resolution, in one pass per data set, in bounded memory.

What is compared with what (the rules the tables follow):

- **per predictor** (baseline, MC dropout, ensemble, student(s), CE-only control): mIoU,
  error rate and the calibration of its probabilities (ECE, adaptive ECE, Brier, NLL);
- **per method, against its own predictor's errors** (``pixel``): AUROC, AUPR, AUPR / error
  rate, FPR95, AURC and E-AURC. Different predictors make different errors, so only rows of
  one predictor are directly comparable (AUPR's chance level is the error rate); E-AURC is
  the number meant for comparing across predictors;
- **per method, against the student's errors** (``pixel_student_errors``): every score ranks
  the *same* wrong pixels (those of the deployed student), so every row is comparable;
- **image level**: per shift, per method and image score, OOD AUROC / FPR95 of the shifted
  images against the in-distribution test images, and the operating point of each student's
  stored alarm (``udistill calibrate``; evaluation never writes checkpoints).

With ``single_pass.enabled`` the single-pass predictors (temperature-scaled baseline, feature
density, multi-head ensemble; :mod:`udistill.single_pass`, fitted by ``udistill experiment``)
are evaluated beside the others, on member 0's one trunk pass per batch, and their fits are
recorded under ``single_pass``.

The evaluated teacher uses T = 1 (``distill.temperature`` only shapes the distillation
targets). Pixel scores are binned log-spaced (:class:`~udistill.metrics.BinnedPixelMetrics`),
where the small uncertainties of confident models live.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from torch.utils.data import DataLoader

from ..config import ExperimentConfig, save_config, to_dict
from ..core.ensemble import Ensemble, RunningMoments
from ..core.pixel_scores import PredictorOutput
from ..data.from_config import dataset_for, parse_shifts, parse_val_shifts
from ..data.labels import IGNORE_INDEX, SCHEMES, map_probabilities
from ..data.sets import check_disjoint, describe_set, test_sets
from ..device import resolve_device
from ..errors import CheckpointError
from ..io import atomic_write_json
from ..layout import MODEL_FILE, control_dir, member_dir, student_dir
from ..metrics import (
    IMAGE_SCORES,
    BinnedPixelMetrics,
    ConfusionMatrix,
    CorrelationMeter,
    SigmaHistogram2D,
    binomial_upper_bound,
    image_scores,
    ood_metrics,
)
from ..metrics.calibration import PredictorCalibration
from ..models.build import SegmentationModel
from ..models.checkpoint import load_model
from ..progress import progress as progress_bar
from ..sharding import gather_to_main, global_batches, is_main, my_batches, world
from ..single_pass.stages import load_predictors
from .mc_dropout import MCDropout, mc_dropout_rate
from .methods import PRIMARY, SINGLE_PASS, Method, method_maps, methods_for
from .selection import apply_image_choice, apply_pixel_choice, select_on_validation

# the method keys of the always-present predictors (earlier releases exported this name)
METHODS = tuple(m.key for m in methods_for(("baseline", "mc_dropout", "teacher", "student")))
PIXEL_KEYS = (
    "predictor",
    "auroc",
    "aupr",
    "aupr_over_error_rate",
    "fpr95",
    "aurc",
    "eaurc",
    "error_rate",
    "clamped",
    "below_floor",
)
SCORE_FLOOR = 1e-6  # log binning resolves scores down to this (see metrics/pixel.py)


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
    run = Path(cfg.out_dir)
    baseline_path = member_dir(run, 0) / MODEL_FILE
    spath = student_dir(cfg) / MODEL_FILE
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
    lpath = student_dir(cfg, "light") / MODEL_FILE
    if cfg.model.uncertainty_head == "paper" and lpath.exists():
        light, lmeta = load_model(
            lpath, expect=cfg.model, num_classes=n, heads="prediction+uncertainty-light", map_location=device
        )
    control = None
    cpath = control_dir(cfg) / MODEL_FILE
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


class SetAccumulator:
    """Streams one data set: confusion matrices and calibration per predictor, image scores
    per method, and (in distribution only) the pixel metrics, Fig 3 histogram, agreement and
    per-class uncertainty.

    Under ``torchrun`` each rank streams its share of the images and :meth:`merge` adds the
    accumulators up on rank 0 (histograms and sums add; per-image lists are put back in
    image order; the agreement samples are keyed by image index), giving the numbers of a
    one-process run."""

    def __init__(
        self,
        num_classes: int,
        model_classes: int,
        pixel: bool,
        bins: int,
        examples: int,
        methods: tuple[Method, ...],
        predictors: tuple[str, ...],
    ):
        self.methods, self.predictors = methods, predictors
        self.cm = {p: ConfusionMatrix(num_classes) for p in predictors}
        self.calib = {p: PredictorCalibration() for p in predictors}
        self.scores = {m.key: {s: [] for s in IMAGE_SCORES} for m in methods}
        self.names: list[str] = []

        def binned():
            return BinnedPixelMetrics(bins=bins, spacing="log", floor=SCORE_FLOOR)

        self.pixel = {m.key: binned() for m in methods} if pixel else None
        self.pixel_student = {m.key: binned() for m in methods} if pixel else None
        self.sigma2d = SigmaHistogram2D(high=0.25) if pixel else None
        self.agree = CorrelationMeter() if pixel else None
        self.ceiling = (
            CorrelationMeter(per_class_samples=0) if pixel else None
        )  # U of half the members vs the other half
        self.agree_light = CorrelationMeter() if pixel and "student_light" in predictors else None
        self.unc_who = tuple(p for p in ("teacher", "student", "student_light") if p in predictors)
        self.unc_sum = {k: torch.zeros(model_classes, dtype=torch.float64) for k in self.unc_who}
        self.unc_cnt = {k: torch.zeros(model_classes, dtype=torch.float64) for k in self.unc_who}
        self.examples: list[dict] = []
        self.max_examples = examples
        self.index: list[int] = []  # the data set index of each image in names/scores
        self._example_index: list[int] = []

    def update(self, batch: dict, probs: dict, maps: dict, model_preds: dict, halves=None, indices=None) -> None:
        """probs: per predictor in the data's label space (N, C', H, W); maps: per method (N, H, W);
        model_preds: per predictor, argmax in the model's own classes (N, H, W); halves: U of
        each half of the ensemble's members (N, H, W) or None; indices: the data set index of
        each image (default: the next ones in order)."""
        target = batch["label"]
        if indices is None:
            indices = range(len(self.index), len(self.index) + target.shape[0])
        indices = [int(i) for i in indices]
        self.index += indices
        preds = {p: probs[p].argmax(1) for p in self.predictors}
        for p in self.predictors:
            self.cm[p].update(preds[p], target)
            self.calib[p].update(probs[p], target)
        maps = {k: v.float().cpu() for k, v in maps.items()}
        for i in range(target.shape[0]):
            self.names.append(batch["name"][i])
            for m in self.methods:
                for s, v in image_scores(maps[m.key][i]).items():
                    self.scores[m.key][s].append(v)
        valid = target != IGNORE_INDEX
        if self.pixel is not None:
            wrong_student = preds["student"] != target
            for m in self.methods:
                self.pixel[m.key].update(maps[m.key], preds[m.predictor] != target, target=target)
                self.pixel_student[m.key].update(maps[m.key], wrong_student, target=target)
            self.sigma2d.update(maps["ensemble_std"], maps["student_sigma"], wrong_student, valid=valid)
            for i, idx in enumerate(indices):  # sample keys from the image index: rank-independent
                self.agree.update(
                    maps["student_sigma"][i], maps["ensemble_std"][i], cls=target[i], valid=valid[i], item=idx
                )
                if halves is not None:
                    self.ceiling.update(
                        halves[0][i].float().cpu(), halves[1][i].float().cpu(), valid=valid[i], item=idx
                    )
                if self.agree_light is not None:
                    self.agree_light.update(
                        maps["student_light_sigma"][i], maps["ensemble_std"][i], cls=target[i], valid=valid[i], item=idx
                    )
        for who in self.unc_who:
            pred = model_preds[who].cpu().flatten()
            u = maps[PRIMARY[who]].double().flatten()
            self.unc_sum[who] += torch.bincount(pred, weights=u, minlength=self.unc_sum[who].numel())
            self.unc_cnt[who] += torch.bincount(pred, minlength=self.unc_cnt[who].numel()).double()
        for i in range(target.shape[0]):
            if len(self.examples) >= self.max_examples:
                break
            self.examples.append(
                {
                    "image": batch["image"][i].permute(1, 2, 0).numpy(),
                    "label": target[i].numpy(),
                    "pred": preds["student"][i].numpy(),
                    "uncertainty": maps["student_sigma"][i].numpy(),
                    "title": batch["name"][i],
                }
            )
            self._example_index.append(indices[i])

    def merge(self, other: SetAccumulator) -> SetAccumulator:
        """Add another rank's accumulator (same sets of methods and predictors); returns self,
        its per-image lists and examples in image order."""
        for p in self.predictors:
            self.cm[p].merge(other.cm[p])
            self.calib[p].merge(other.calib[p])
        if self.pixel is not None:
            for m in self.methods:
                self.pixel[m.key].merge(other.pixel[m.key])
                self.pixel_student[m.key].merge(other.pixel_student[m.key])
            self.sigma2d.merge(other.sigma2d)
            self.agree.merge(other.agree)
            self.ceiling.merge(other.ceiling)
            if self.agree_light is not None:
                self.agree_light.merge(other.agree_light)
        for who in self.unc_who:
            self.unc_sum[who] += other.unc_sum[who]
            self.unc_cnt[who] += other.unc_cnt[who]
        self.index += other.index
        self.names += other.names
        for m in self.scores:
            for sc in self.scores[m]:
                self.scores[m][sc] += other.scores[m][sc]
        self.examples += other.examples
        self._example_index += other._example_index
        order = sorted(range(len(self.index)), key=self.index.__getitem__)
        self.index = [self.index[i] for i in order]
        self.names = [self.names[i] for i in order]
        self.scores = {m: {sc: [v[i] for i in order] for sc, v in d.items()} for m, d in self.scores.items()}
        ex = sorted(range(len(self.examples)), key=self._example_index.__getitem__)[: self.max_examples]
        self.examples = [self.examples[i] for i in ex]
        self._example_index = [self._example_index[i] for i in ex]
        return self

    def portable(self) -> SetAccumulator:
        """Device tensors moved to the CPU, so that the accumulator can be sent to rank 0."""
        for cm in self.cm.values():
            cm.matrix = cm.matrix.cpu()
        return self


def evaluate_set(
    models: EvaluatedModels,
    dataset,
    device,
    acc: SetAccumulator,
    batch_size: int,
    max_images: int | None,
    desc: str,
    progress: bool = True,
    num_workers: int = 0,
) -> SetAccumulator:
    """One pass over ``dataset`` (its first ``max_images``, in whole batches) into ``acc``.

    Under ``torchrun`` every rank takes every ``world``-th batch (:mod:`udistill.sharding`;
    MC dropout is seeded by the global batch number) and rank 0 gets the merged accumulator;
    the other ranks get their own share back and must not report it."""
    batches = my_batches(global_batches(range(len(dataset)), batch_size, max_images))
    loader = DataLoader(dataset, batch_sampler=[idx for _, idx in batches], num_workers=num_workers)
    data_scheme = dataset.scheme.name if hasattr(dataset, "scheme") else None

    it = progress_bar(loader, f"evaluate {desc}", len(batches), enabled=progress and is_main())
    for (b, idx), batch in zip(batches, it):
        images = batch["image"].to(device)
        outs = run_predictors(models, images, batch_seed=b)
        maps = method_maps(outs, models.methods)
        probs = {p: o.probs for p, o in outs.items()}
        model_preds = {p: o.probs.argmax(1) for p, o in outs.items()}
        if data_scheme and data_scheme != models.scheme:
            probs = {k: map_probabilities(v, models.scheme, data_scheme) for k, v in probs.items()}
        t = outs["teacher"]
        halves = (t.u_half_a, t.u_half_b) if t.u_half_a is not None else None
        acc.update(batch, {k: v.cpu() for k, v in probs.items()}, maps, model_preds, halves, indices=idx)
    if world()[1] > 1:
        parts = gather_to_main(acc.portable())
        if parts is not None:
            for other in parts[1:]:
                acc.merge(other)
    return acc


def _nan_to_none(x):
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: _nan_to_none(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_nan_to_none(v) for v in x]
    return x


@torch.no_grad()
def measure_latency(models: EvaluatedModels, size: tuple[int, int], device, repeats: int = 10) -> dict:
    """Median batch-1 latency (ms) of every predictor at ``size`` (eager PyTorch)."""
    x = torch.rand(1, 3, *size, device=device)

    def timed(fn):
        fn(x)
        times = []
        for _ in range(repeats):
            if device.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            fn(x)
            if device.type == "cuda":
                torch.cuda.synchronize()
            times.append((time.perf_counter() - t0) * 1000)
        return float(np.median(times))

    lat = {"baseline": timed(models.baseline), "student": timed(models.student), "ensemble": timed(models.ensemble)}
    if models.mc is not None:
        lat["mc_dropout"] = timed(models.mc)
    if models.student_light is not None:
        lat["student_light"] = timed(models.student_light)
        lat["student_light_over_baseline"] = lat["student_light"] / lat["baseline"]
    for name, predictor in models.single_pass.items():  # each on its own: trunk, head(s), its score
        lat[name] = timed(predictor)
        lat[f"{name}_over_baseline"] = lat[name] / lat["baseline"]
    lat["student_over_baseline"] = lat["student"] / lat["baseline"]
    lat["ensemble_over_student"] = lat["ensemble"] / lat["student"]
    lat["size"] = list(size)
    return lat


def summarise(acc: SetAccumulator) -> dict:
    res = {p: acc.cm[p].compute() for p in acc.predictors}
    return {
        "miou": {p: res[p]["miou"] for p in acc.predictors},
        "per_class_iou": {p: res[p]["per_class_iou"] for p in acc.predictors},
        "pixel_accuracy": {p: res[p]["pixel_accuracy"] for p in acc.predictors},
    }


def predictor_table(acc: SetAccumulator) -> dict:
    """Per predictor: mIoU, error rate and the calibration of its probabilities."""
    out = {}
    for p in acc.predictors:
        c = acc.calib[p].compute()
        out[p] = {
            "miou": acc.cm[p].compute()["miou"],
            **{k: c[k] for k in ("error_rate", "ece", "ece_adaptive", "brier", "nll")},
        }
    return out


def pixel_results(acc: SetAccumulator, predictors: dict) -> tuple[dict, dict, dict]:
    """(pixel, pixel_student_errors, curves) from an in-distribution accumulator."""
    pixel, vs_student, curves = {}, {}, {}
    for m in acc.methods:
        own = acc.pixel[m.key].compute()
        stu = acc.pixel_student[m.key].compute()
        pred = predictors[m.predictor]
        own["predictor"] = stu["predictor"] = m.predictor
        # ECE and Brier belong to the predictor; kept under every method for older readers
        pixel[m.key] = {**{k: own[k] for k in PIXEL_KEYS}, "ece": pred["ece"], "brier": pred["brier"]}
        vs_student[m.key] = {k: stu[k] for k in PIXEL_KEYS}
        curves[m.key] = {
            "risk_coverage": own["risk_coverage"],
            "roc": own["roc"],
            "histogram": own["histogram"],
            "reliability": acc.calib[m.predictor].compute()["reliability"],
        }
    return pixel, vs_student, curves


def operating_points(alarms: dict, in_scores: dict, shifted: dict) -> dict:
    """False-alarm rate on the in-distribution test images (with its one-sided 95 % binomial
    upper bound) and detection rate on the shifted ones at each student's stored threshold
    (flag when score > threshold)."""
    out = {}
    for who, alarm in alarms.items():
        key = PRIMARY[who]
        sc, thr = alarm["score"], alarm["thresholds"][alarm["score"]]
        flags = np.asarray(in_scores[key][sc]) > thr
        out[who] = {
            "score": sc,
            "threshold": thr,
            "threshold_method": alarm.get("method", "empirical quantile"),
            "calibration_false_alarm_rate": alarm["false_alarm_rate"],
            "false_alarm_rate": float(np.mean(flags)),
            "false_alarms": int(flags.sum()),
            "in_distribution_images": int(flags.size),
            "false_alarm_rate_upper_95": binomial_upper_bound(int(flags.sum()), int(flags.size)),
            "detection_rate": float(np.mean(np.asarray(shifted[key][sc]) > thr)),
        }
    return out


def agreement_results(acc: SetAccumulator) -> dict:
    """Student U against teacher U: Pearson / Spearman (overall, per class), the scale per
    decile, binned means, and the teacher's own noise ceiling: ``teacher_half_pearson`` (U of
    half the members against U of the other half) and ``pearson_ceiling`` = sqrt(2r / (1 + r))
    (Spearman-Brown: the correlation a perfect predictor of the infinite-ensemble U would
    reach with this F-member U)."""
    agree = acc.agree.compute()
    agree["scale_ratio_by_decile"] = acc.agree.ratio_by_decile()
    agree["binned_means"] = acc.agree.binned_means()
    r = acc.ceiling.compute()["pearson"] if acc.ceiling is not None else math.nan
    agree["teacher_half_pearson"] = r
    agree["pearson_ceiling"] = math.sqrt(2 * r / (1 + r)) if r == r and r > 0 else math.nan
    return agree


def in_distribution_results(acc_in: SetAccumulator) -> dict:
    """Everything measured on the in-distribution test set: mIoU, per-predictor calibration,
    pixel-error metrics, σ agreement with the teacher, the per-class mean uncertainty."""
    results = summarise(acc_in)
    results["predictors"] = predictor_table(acc_in)
    results["per_class_uncertainty"] = {
        who: (acc_in.unc_sum[who] / acc_in.unc_cnt[who].clamp_min(1))
        .where(acc_in.unc_cnt[who] > 0, torch.tensor(float("nan"), dtype=torch.float64))
        .tolist()
        for who in acc_in.unc_who
    }
    results["mean_uncertainty"] = {who: float(np.mean(acc_in.scores[PRIMARY[who]]["mean"])) for who in acc_in.unc_who}
    results["pixel"], results["pixel_student_errors"], results["curves"] = pixel_results(acc_in, results["predictors"])
    results["agreement"] = agreement_results(acc_in)
    if acc_in.agree_light is not None:  # the light student's U against the ensemble's
        results["agreement_light"] = {
            **acc_in.agree_light.compute(),
            "scale_ratio_by_decile": acc_in.agree_light.ratio_by_decile(),
        }
    results["sigma_hist2d"] = acc_in.sigma2d.compute()
    return results


def shift_results(acc_in: SetAccumulator, acc: SetAccumulator, methods, alarms: dict) -> dict:
    """One shift against the in-distribution test set: mIoU, image-level OOD AUROC/FPR95 of
    every (method, image score), and the stored alarms' operating points."""
    s = summarise(acc)
    ood = {
        m.key: {sc: ood_metrics(acc_in.scores[m.key][sc], acc.scores[m.key][sc]) for sc in IMAGE_SCORES}
        for m in methods
    }
    entry = {
        "miou": s["miou"],
        "per_class_iou": s["per_class_iou"],
        "images": len(acc.names),
        "predictors": predictor_table(acc),
        "ood": {
            m: {sc: {"auroc": v["auroc"], "fpr95": v["fpr95"], "aupr": v["aupr"]} for sc, v in d.items()}
            for m, d in ood.items()
        },
        "roc": {sc: ood["student_sigma"][sc]["roc"] for sc in IMAGE_SCORES},
    }
    ops = operating_points(alarms, acc_in.scores, acc.scores)
    if ops:
        entry["operating_points"] = ops
        entry["operating_point"] = ops.get("student") or next(iter(ops.values()))
    return entry


def validation_selection(acc_val: SetAccumulator, val_shifted: dict, methods, descriptions: dict) -> dict:
    """``selection.<side>`` chosen on the validation split and its shifts (never on test)."""
    val_pixel = {m.key: acc_val.pixel[m.key].compute() for m in methods} if acc_val.pixel else {}
    chosen_on = {"validation": descriptions["val"], "shifts": {n: descriptions[n] for n in val_shifted}}
    return select_on_validation(
        methods, acc_val.scores, {n: a.scores for n, a in val_shifted.items()}, val_pixel, chosen_on
    )


def run_evaluation(cfg: ExperimentConfig, device: str | None = None, progress: bool = True) -> Path:
    """Evaluate the run in ``cfg.out_dir``; writes ``evaluation/`` with results.json and the report."""
    from .report.headline import headline_rows
    from .report.pipeline import write_figures_and_report

    dev = resolve_device(device or cfg.device)
    out = Path(cfg.out_dir) / "evaluation"
    models = load_models(cfg, dev)  # first: a bad checkpoint leaves no evaluation/ folder behind
    if is_main():  # under torchrun every rank evaluates its share, rank 0 writes
        out.mkdir(parents=True, exist_ok=True)
        save_config(cfg, out / "config.yaml")
    ec = cfg.evaluate
    sets = test_sets(cfg)
    test_set = sets["in-distribution"]
    n_model = models.baseline.num_classes
    methods, predictors = models.methods, models.predictors

    def accumulate(ds, pixel: bool, desc: str) -> SetAccumulator:
        acc = SetAccumulator(ds.scheme.num_classes, n_model, pixel, ec.bins, ec.examples, methods, predictors)
        return evaluate_set(models, ds, dev, acc, ec.batch_size, ec.max_images, desc, progress, cfg.data.num_workers)

    val_specs = parse_val_shifts(cfg.data)
    val_sets = {"val": dataset_for(cfg.data, "val")}
    val_sets.update({spec.name: dataset_for(cfg.data, "val", shift=spec) for spec in val_specs})
    for name, ds in val_sets.items():  # a choice made on a test image would be a choice made on test
        check_disjoint(ds, sets, what=f"the validation set '{name}'")
    acc_in = accumulate(test_set, True, "test")
    shifted = {spec.name: accumulate(sets[spec.name], False, spec.name) for spec in parse_shifts(cfg.data)}
    acc_val = accumulate(val_sets["val"], True, "val")
    val_shifted = {spec.name: accumulate(val_sets[spec.name], False, f"val {spec.name}") for spec in val_specs}
    if not is_main():
        return out
    results: dict = {
        "classes": list(test_set.scheme.classes),
        "label_scheme": test_set.scheme.name,
        "model_label_scheme": models.scheme,
        "images": len(acc_in.names),
        "methods": {m.key: {"predictor": m.predictor, "score": m.score, "label": m.label} for m in methods},
    }
    results.update(in_distribution_results(acc_in))
    descriptions = {n: {"set": describe_set(ds), "images": len(ds)} for n, ds in val_sets.items()}
    results["selection"] = selection = validation_selection(acc_val, val_shifted, methods, descriptions)
    results["pixel_selected"] = apply_pixel_choice(results["pixel"], selection)
    results["pixel_student_errors_selected"] = apply_pixel_choice(results["pixel_student_errors"], selection)
    image_scores_by_set = {"in-distribution": acc_in.scores}
    examples = {"in-distribution": acc_in.examples}
    alarms = models.alarms
    if alarms:
        results["alarm"] = {
            who: {
                k: a.get(k)
                for k in ("score", "false_alarm_rate", "thresholds", "images", "calibration_set", "selection")
            }
            for who, a in alarms.items()
        }
        results["alarm_calibration_set"] = next(iter(alarms.values())).get("calibration_set")
    results["shifts"] = {}
    for spec in parse_shifts(cfg.data):
        acc = shifted[spec.name]
        results["shifts"][spec.name] = entry = shift_results(acc_in, acc, methods, alarms)
        entry["selected"] = apply_image_choice(entry["ood"], selection)
        image_scores_by_set[spec.name] = acc.scores
        examples[spec.name] = acc.examples
    keep = ("student_sigma", "ensemble_std", "baseline_msp", "student_light_sigma")
    results["image_scores"] = {
        name: {m: sc for m, sc in d.items() if m in keep} for name, d in image_scores_by_set.items()
    }
    results["ood_threshold"] = alarms.get("student")  # the stored alarm (read, never written here)
    if models.single_pass_records:
        results["single_pass"] = models.single_pass_records
    results["latency_ms"] = measure_latency(models, tuple(test_set[0]["image"].shape[-2:]), dev)
    results["headline"] = headline_rows(results)
    results["config"] = to_dict(cfg)
    results = _nan_to_none(results)
    atomic_write_json(out / "results.json", results)
    write_figures_and_report(results, examples, out, SCHEMES[test_set.scheme.name].colors)
    return out
