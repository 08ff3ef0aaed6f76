"""Evaluation: the paper's tables and figures with honest baselines, in bounded memory.

One pass over each data set runs every method on every batch and feeds streamed
accumulators (confusion matrices, 4096-bin score histograms, a 2-D sigma histogram, a
correlation meter); only per-image scores (a few floats per image) and a handful of
example images are kept. Methods and the prediction each one's uncertainty is judged
against (wrong pixel = positive):

=================  =============================================  ==================
key                uncertainty map                                prediction
=================  =============================================  ==================
baseline_msp       1 - max softmax                                baseline
baseline_entropy   entropy / log C                                baseline
mc_dropout         mean over classes of the std of T dropout runs mean of the T runs
ensemble_std       mean over classes of Sigma (teacher U)         ensemble mean
ensemble_mi        mutual information / log C                     ensemble mean
student_sigma      U = mean over classes of sigma (the paper's)   student
student_msp        1 - max softmax of the student                 student
=================  =============================================  ==================
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from .config import ExperimentConfig, save_config, to_dict
from .data.from_config import ShiftSpec, dataset_for, parse_shifts
from .data.labels import IGNORE_INDEX, SCHEMES, map_probabilities
from .distill import student_dir
from .ensemble import Ensemble, RunningMoments, _entropy, member_dir
from .errors import CheckpointError
from .io import atomic_write_json
from .metrics import (
    IMAGE_SCORES,
    BinnedPixelMetrics,
    ConfusionMatrix,
    CorrelationMeter,
    SigmaHistogram2D,
    image_scores,
    ood_metrics,
    threshold_at_false_alarm,
)
from .models.build import SegmentationModel, enable_dropout
from .models.checkpoint import load_model, save_model
from .train.loop import MODEL_FILE, resolve_device

METHODS = ("baseline_msp", "baseline_entropy", "mc_dropout", "ensemble_std", "ensemble_mi", "student_sigma", "student_msp")
PREDICTOR = {
    "baseline_msp": "baseline", "baseline_entropy": "baseline", "mc_dropout": "mc_dropout",
    "ensemble_std": "teacher", "ensemble_mi": "teacher", "student_sigma": "student", "student_msp": "student",
}
MODELS = ("baseline", "teacher", "student", "mc_dropout")
LIGHT_METHODS = ("student_light_sigma", "student_light_msp")
PREDICTOR.update({"student_light_sigma": "student_light", "student_light_msp": "student_light"})


@dataclass
class Bundle:
    """Everything evaluated: the baseline (member 0), the ensemble, the student."""

    baseline: SegmentationModel
    ensemble: Ensemble
    student: SegmentationModel
    scheme: str
    classes: list[str]
    mc_samples: int = 10
    student_meta: dict = field(default_factory=dict)
    student_path: Path | None = None
    student_light: SegmentationModel | None = None

    @property
    def methods(self) -> tuple[str, ...]:
        return METHODS + (LIGHT_METHODS if self.student_light is not None else ())

    @property
    def models(self) -> tuple[str, ...]:
        return MODELS + (("student_light",) if self.student_light is not None else ())


def load_bundle(cfg: ExperimentConfig, device) -> Bundle:
    run = Path(cfg.out_dir)
    baseline_path = member_dir(run, 0) / MODEL_FILE
    spath = student_dir(cfg) / MODEL_FILE
    for p, what in ((baseline_path, "baseline (member 0)"), (spath, "student")):
        if not p.exists():
            raise CheckpointError(f"{p}: {what} not found; run the earlier stages first (udistill experiment)")
    # checkpoints must fit the config and each other (member 0 of another run/architecture is refused)
    student, smeta = load_model(spath, expect=cfg.model, map_location=device)
    baseline, bmeta = load_model(baseline_path, expect=cfg.model, num_classes=student.num_classes, heads="prediction", map_location=device)
    ensemble = Ensemble.from_run(run, temperature=cfg.distill.temperature, members=cfg.teacher.members).to(device)
    light = None
    lpath = student_dir(cfg, "light") / MODEL_FILE
    if cfg.model.uncertainty_head == "paper" and lpath.exists():
        light, _ = load_model(lpath, expect=cfg.model, num_classes=student.num_classes, heads="prediction+uncertainty-light", map_location=device)
    return Bundle(baseline, ensemble, student, bmeta.get("label_scheme", "camvid11"), list(bmeta.get("classes", [])),
                  cfg.evaluate.mc_samples, smeta, spath, light)


@torch.no_grad()
def run_methods(b: Bundle, images: torch.Tensor, data_scheme: str | None = None) -> tuple[dict, dict, dict]:
    """All methods on one batch. Returns (probabilities per model in the data's label space,
    uncertainty maps per method (N, H, W) in [0, 1], teacher and student predictions in the
    model's own classes (for per-class uncertainty))."""
    c = b.baseline.num_classes
    log_c = math.log(c)
    pb = torch.softmax(b.baseline(images).logits.float(), 1)
    ens = b.ensemble(images)
    so = b.student(images)
    ps = torch.softmax(so.logits.float(), 1)
    mc_model = b.baseline
    was_training = mc_model.training
    enable_dropout(mc_model)
    mom = RunningMoments()
    for _ in range(b.mc_samples):
        mom.update(torch.softmax(mc_model(images).logits.float(), 1))
    mc_model.train(was_training)
    mc_model.eval()
    mc = mom.result()
    maps = {
        "baseline_msp": 1 - pb.max(1).values,
        "baseline_entropy": _entropy(pb) / log_c,
        "mc_dropout": mc.std.mean(1),
        "ensemble_std": ens.std.mean(1),
        "ensemble_mi": ens.mutual_info / log_c,
        "student_sigma": so.sigma.float().mean(1),
        "student_msp": 1 - ps.max(1).values,
    }
    probs = {"baseline": pb, "teacher": ens.mean, "student": ps, "mc_dropout": mc.mean}
    if b.student_light is not None:
        lo = b.student_light(images)
        pl = torch.softmax(lo.logits.float(), 1)
        probs["student_light"] = pl
        maps["student_light_sigma"] = lo.sigma.float().mean(1)
        maps["student_light_msp"] = 1 - pl.max(1).values
    model_preds = {"teacher": ens.mean.argmax(1), "student": ps.argmax(1)}
    if data_scheme and data_scheme != b.scheme:
        probs = {k: map_probabilities(v, b.scheme, data_scheme) for k, v in probs.items()}
    return probs, maps, model_preds


class SetAccumulator:
    """Streams one data set: confusion matrices, per-image scores, and (in-distribution only)
    the pixel metrics, Fig 3 histogram, agreement and per-class uncertainty."""

    def __init__(self, num_classes: int, model_classes: int, pixel: bool, bins: int, examples: int,
                 methods: tuple[str, ...] = METHODS, models: tuple[str, ...] = MODELS):
        self.methods, self.models = methods, models
        self.cm = {m: ConfusionMatrix(num_classes) for m in models}
        self.scores = {m: {s: [] for s in IMAGE_SCORES} for m in methods}
        self.names: list[str] = []
        self.pixel = {m: BinnedPixelMetrics(bins=bins) for m in methods} if pixel else None
        self.sigma2d = SigmaHistogram2D(high=0.25) if pixel else None
        self.agree = CorrelationMeter() if pixel else None
        self.unc_sum = {k: torch.zeros(model_classes, dtype=torch.float64) for k in ("teacher", "student")}
        self.unc_cnt = {k: torch.zeros(model_classes, dtype=torch.float64) for k in ("teacher", "student")}
        self.examples: list[dict] = []
        self.max_examples = examples

    def update(self, batch: dict, probs: dict, maps: dict, model_preds: dict) -> None:
        target = batch["label"]
        preds = {m: p.argmax(1).cpu() for m, p in probs.items()}
        for m in self.models:
            self.cm[m].update(preds[m], target)
        maps_cpu = {k: v.float().cpu() for k, v in maps.items()}
        for i in range(target.shape[0]):
            self.names.append(batch["name"][i])
            for m in self.methods:
                for s, v in image_scores(maps_cpu[m][i]).items():
                    self.scores[m][s].append(v)
        valid = target != IGNORE_INDEX
        if self.pixel is not None:
            for m in self.methods:
                p = probs[PREDICTOR[m]].cpu()
                wrong = preds[PREDICTOR[m]] != target
                self.pixel[m].update(maps_cpu[m], wrong, confidence=p.max(1).values, probs=p, target=target)
            wrong_s = preds["student"] != target
            self.sigma2d.update(maps_cpu["ensemble_std"], maps_cpu["student_sigma"], wrong_s, valid=valid)
            self.agree.update(maps_cpu["student_sigma"], maps_cpu["ensemble_std"], cls=target, valid=valid)
        for who, key in (("teacher", "ensemble_std"), ("student", "student_sigma")):
            pred = model_preds[who].cpu().flatten()
            u = maps_cpu[key].double().flatten()
            self.unc_sum[who] += torch.bincount(pred, weights=u, minlength=self.unc_sum[who].numel())
            self.unc_cnt[who] += torch.bincount(pred, minlength=self.unc_cnt[who].numel()).double()
        for i in range(target.shape[0]):
            if len(self.examples) >= self.max_examples:
                break
            self.examples.append({
                "image": batch["image"][i].permute(1, 2, 0).numpy(),
                "label": target[i].numpy(),
                "pred": preds["student"][i].numpy(),
                "uncertainty": maps_cpu["student_sigma"][i].numpy(),
                "title": batch["name"][i],
            })


def evaluate_set(b: Bundle, dataset, device, acc: SetAccumulator, batch_size: int, max_images: int | None, desc: str, progress: bool = True) -> SetAccumulator:
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=0)
    data_scheme = dataset.scheme.name if hasattr(dataset, "scheme") else None
    seen = 0
    it = loader
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(loader, desc=f"evaluate {desc}", leave=False, dynamic_ncols=True)
    for batch in it:
        if max_images is not None and seen >= max_images:
            break
        images = batch["image"].to(device)
        probs, maps, model_preds = run_methods(b, images, data_scheme)
        acc.update(batch, {k: v.cpu() for k, v in probs.items()}, maps, model_preds)
        seen += images.shape[0]
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
def measure_latency(b: Bundle, size: tuple[int, int], device, repeats: int = 10) -> dict:
    """Median batch-1 latency (ms) of baseline, student and ensemble at ``size`` (eager)."""
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

    lat = {"baseline": timed(b.baseline), "student": timed(b.student), "ensemble": timed(b.ensemble)}
    if b.student_light is not None:
        lat["student_light"] = timed(b.student_light)
        lat["student_light_over_baseline"] = lat["student_light"] / lat["baseline"]
    lat["student_over_baseline"] = lat["student"] / lat["baseline"]
    lat["ensemble_over_student"] = lat["ensemble"] / lat["student"]
    lat["size"] = list(size)
    return lat


def summarise(acc: SetAccumulator) -> dict:
    res = {m: acc.cm[m].compute() for m in acc.models}
    return {
        "miou": {m: res[m]["miou"] for m in acc.models},
        "per_class_iou": {m: res[m]["per_class_iou"] for m in acc.models},
        "pixel_accuracy": {m: res[m]["pixel_accuracy"] for m in acc.models},
    }


def run_evaluation(cfg: ExperimentConfig, device: str | None = None, progress: bool = True) -> Path:
    """Evaluate the run in ``cfg.out_dir``; writes ``evaluation/`` with results.json and the report."""
    from .report.pipeline import write_figures_and_report

    dev = resolve_device(device or cfg.device)
    out = Path(cfg.out_dir) / "evaluation"
    b = load_bundle(cfg, dev)  # first: a bad checkpoint leaves no evaluation/ folder behind
    out.mkdir(parents=True, exist_ok=True)
    save_config(cfg, out / "config.yaml")
    ec = cfg.evaluate
    test_set = dataset_for(cfg.data, "test")
    n_model = b.baseline.num_classes
    n_data = test_set.scheme.num_classes
    acc_in = evaluate_set(b, test_set, dev, SetAccumulator(n_data, n_model, True, ec.bins, ec.examples, b.methods, b.models), ec.batch_size, ec.max_images, "test", progress)
    results: dict = {"classes": list(test_set.scheme.classes), "label_scheme": test_set.scheme.name, "model_label_scheme": b.scheme}
    results.update(summarise(acc_in))
    results["per_class_uncertainty"] = {
        who: (acc_in.unc_sum[who] / acc_in.unc_cnt[who].clamp_min(1)).where(acc_in.unc_cnt[who] > 0, torch.tensor(float("nan"), dtype=torch.float64)).tolist()
        for who in ("teacher", "student")
    }
    results["mean_uncertainty"] = {
        "teacher": float(np.mean(acc_in.scores["ensemble_std"]["mean"])),
        "student": float(np.mean(acc_in.scores["student_sigma"]["mean"])),
    }
    pixel = {m: acc_in.pixel[m].compute() for m in b.methods}
    results["pixel"] = {m: {k: pixel[m][k] for k in ("auroc", "aupr", "fpr95", "ece", "brier", "aurc")} for m in b.methods}
    results["curves"] = {m: {k: pixel[m][k] for k in ("risk_coverage", "roc", "histogram", "reliability")} for m in b.methods}
    agree = acc_in.agree.compute()
    results["agreement"] = agree
    results["sigma_hist2d"] = acc_in.sigma2d.compute()
    image_scores_by_set = {"in-distribution": acc_in.scores}
    examples = {"in-distribution": acc_in.examples}
    results["shifts"] = {}
    for spec in parse_shifts(cfg.data):
        ds = dataset_for(cfg.data, "test", shift=spec)
        acc = evaluate_set(b, ds, dev, SetAccumulator(ds.scheme.num_classes, n_model, False, ec.bins, ec.examples, b.methods, b.models), ec.batch_size, ec.max_images, spec.name, progress)
        s = summarise(acc)
        ood = {m: {sc: ood_metrics(acc_in.scores[m][sc], acc.scores[m][sc]) for sc in IMAGE_SCORES} for m in b.methods}
        results["shifts"][spec.name] = {
            "miou": s["miou"],
            "per_class_iou": s["per_class_iou"],
            "images": len(acc.names),
            "ood": {m: {sc: {"auroc": v["auroc"], "fpr95": v["fpr95"]} for sc, v in d.items()} for m, d in ood.items()},
            "roc": {sc: ood["student_sigma"][sc]["roc"] for sc in IMAGE_SCORES},
        }
        image_scores_by_set[spec.name] = acc.scores
        examples[spec.name] = acc.examples
    results["image_scores"] = {name: {m: sc for m, sc in d.items() if m in ("student_sigma", "ensemble_std", "baseline_msp")} for name, d in image_scores_by_set.items()}
    results["ood_threshold"] = calibrate_threshold(cfg, b, dev, progress)
    results["latency_ms"] = measure_latency(b, tuple(test_set[0]["image"].shape[-2:]), dev)
    results["config"] = to_dict(cfg)
    results = _nan_to_none(results)
    atomic_write_json(out / "results.json", results)
    write_figures_and_report(results, examples, out, SCHEMES[test_set.scheme.name].colors)
    return out


def calibrate_threshold(cfg: ExperimentConfig, b: Bundle, device, progress: bool = True) -> dict:
    """Image-score thresholds at the configured false-alarm rate on in-distribution validation
    images; stored in the student checkpoint's metadata for ``udistill predict``."""
    ec = cfg.evaluate
    val_set = dataset_for(cfg.data, "val")
    scores = {s: [] for s in IMAGE_SCORES}
    loader = DataLoader(val_set, batch_size=ec.batch_size, shuffle=False)
    with torch.no_grad():
        for batch in loader:
            u = b.student(batch["image"].to(device)).sigma.float().mean(1).cpu()
            for i in range(u.shape[0]):
                for s, v in image_scores(u[i]).items():
                    scores[s].append(v)
    thresholds = {s: threshold_at_false_alarm(v, ec.false_alarm_rate) for s, v in scores.items()}
    calib = {"score": "median_plus_min_over_max", "false_alarm_rate": ec.false_alarm_rate, "thresholds": thresholds, "images": len(scores["min"])}
    if b.student_path is not None:
        meta = dict(b.student_meta)
        meta["ood"] = calib
        keep = {k: v for k, v in meta.items() if k not in ("format", "model", "heads", "num_classes", "normalisation")}
        save_model(b.student, b.student_path, **keep)
    return calib
