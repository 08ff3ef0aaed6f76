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

Where the parts live: :mod:`.models` (loading the evaluated models, running every predictor
on a batch, their latency), :mod:`.accumulate` (:class:`SetAccumulator`, the metric
accumulators of one data set), :mod:`.results` (the sections of results.json); this module
streams the data sets through them (:func:`evaluate_set`) and writes results.json and the
report (:func:`run_evaluation`). Its names stay importable from here.
"""

from __future__ import annotations

from pathlib import Path

from torch.utils.data import DataLoader

from ..config import ExperimentConfig, save_config, to_dict
from ..data.from_config import dataset_for, parse_shifts, parse_val_shifts
from ..data.labels import SCHEMES, map_probabilities
from ..data.sets import check_disjoint, describe_set, test_sets
from ..device import resolve_device
from ..io import atomic_write_json
from ..layout import RunLayout
from ..progress import progress as progress_bar
from ..sharding import gather_to_main, global_batches, is_main, my_batches, world
from .accumulate import SCORE_FLOOR, SetAccumulator
from .methods import method_maps, methods_for
from .models import (
    EvaluatedModels,
    TeacherOutput,
    load_models,
    measure_latency,
    run_predictors,
    single_pass_outputs,
    teacher_with_halves,
)
from .results import (
    PIXEL_KEYS,
    _nan_to_none,
    agreement_results,
    in_distribution_results,
    operating_points,
    pixel_results,
    predictor_table,
    shift_results,
    summarise,
    validation_selection,
)
from .selection import apply_image_choice, apply_pixel_choice

# the method keys of the always-present predictors (earlier releases exported this name)
METHODS = tuple(m.key for m in methods_for(("baseline", "mc_dropout", "teacher", "student")))

__all__ = [
    "METHODS",
    "PIXEL_KEYS",
    "SCORE_FLOOR",
    "EvaluatedModels",
    "SetAccumulator",
    "TeacherOutput",
    "agreement_results",
    "evaluate_set",
    "in_distribution_results",
    "load_models",
    "measure_latency",
    "operating_points",
    "pixel_results",
    "predictor_table",
    "run_evaluation",
    "run_predictors",
    "shift_results",
    "single_pass_outputs",
    "summarise",
    "teacher_with_halves",
    "validation_selection",
]


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


def run_evaluation(cfg: ExperimentConfig, device: str | None = None, progress: bool = True) -> Path:
    """Evaluate the run in ``cfg.out_dir``; writes ``evaluation/`` with results.json and the report."""
    from .report.headline import headline_rows
    from .report.pipeline import write_figures_and_report

    dev = resolve_device(device or cfg.device)
    out = RunLayout.of(cfg).evaluation
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
