"""The sections of results.json, assembled from the accumulators of each data set
(:class:`~udistill.evaluation.accumulate.SetAccumulator`): mIoU, per-predictor calibration,
pixel-error metrics per method (against its own predictor's errors and against the
student's), σ agreement with the teacher, image-level OOD per shift, the stored alarms'
operating points and the choice of scores on validation."""

from __future__ import annotations

import math

import numpy as np

from ..metrics import IMAGE_SCORES, binomial_upper_bound, ood_metrics
from .accumulate import SetAccumulator
from .methods import PRIMARY
from .selection import select_on_validation

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


def _nan_to_none(x):
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: _nan_to_none(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_nan_to_none(v) for v in x]
    return x


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
        who: acc_in.metrics["predictor", who, "uncertainty"].compute() for who in acc_in.unc_who
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
