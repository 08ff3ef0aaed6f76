"""The demo's verdicts with their spread: the student distilled with several seeds, members fixed.

    python benchmarks/student_seeds.py runs/demo --seeds 0 1 2

For each seed other than the run's own, the student is distilled again (``distill.seed``) in a
sibling folder ``<run>-student-seed<S>`` whose ``members`` link to the run's, calibrated and
evaluated with the same harness (scores chosen on validation, as always). Writes
``benchmarks/results/demo-seeds.json`` (per seed and mean ± std of the selected image AUROC
per shift, pixel-error AUROC and mIoU, for the student, the ensemble and the baseline) and a
verdict per shift: "above"/"below" only where the mean student − ensemble (or − baseline)
difference exceeds twice its standard deviation over seeds, else "no difference measured".
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

from linked_run import linked_run

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "demo-seeds.json"
#: Every side compared with the student (those absent from a run are skipped): the ensemble, the
#: baseline and the cheaper single-pass methods, which do not depend on the student's seed.
SIDES = ("student", "ensemble", "baseline", "mc_dropout", "temperature_scaled", "feature_density", "multi_head")
#: Run-level stages the student's seed does not change: linked into each seed's folder.
SHARED = ("members", "temperature.json", "feature-density", "multi-head")
PREDICTOR = {"ensemble": "teacher"}


def evaluate_seed(run: Path, seed: int) -> dict:
    from udistill.config import ExperimentConfig, load_config
    from udistill.deploy.alarm_calibration import run_calibration
    from udistill.evaluation.evaluate import run_evaluation
    from udistill.pipeline.distill import run_distill

    out = run.parent / f"{run.name}-student-seed{seed}"
    linked_run(out, run, SHARED)
    sets = [f"out_dir={out}", f"distill.seed={seed}", "distill.control=false", "distill.light_student=false"]
    cfg = load_config(ExperimentConfig, run / "config.yaml", sets)
    done = out / "evaluation" / "results.json"
    student = out / "student" / "model.safetensors"
    if done.exists() and student.exists() and done.stat().st_mtime > student.stat().st_mtime:
        return json.loads(done.read_text())  # resumable: this seed was evaluated after its student was built
    run_distill(cfg)
    run_calibration(cfg)
    return json.loads((run_evaluation(cfg, progress=False) / "results.json").read_text())


def summary(results: dict) -> dict:
    """The numbers a verdict rests on, from one results.json (sides the run has)."""
    sides = [side for side in SIDES if side in results.get("selection", {})]
    shifts = {
        name: {side: (s.get("selected", {}).get(side) or {}).get("auroc") for side in sides}
        for name, s in results["shifts"].items()
    }
    px = results.get("pixel_student_errors_selected", {})
    pixel = {side: (px.get(side) or {}).get("auroc") for side in sides}
    eaurc = {side: (px.get(side) or {}).get("eaurc") for side in sides}
    preds = results.get("predictors", {})
    miou = {side: results["miou"].get(PREDICTOR.get(side, side)) for side in sides}
    ece = {side: (preds.get(PREDICTOR.get(side, side)) or {}).get("ece") for side in sides}
    chosen = {side: f"{v.get('method')} / {v.get('score')}" for side, v in results.get("selection", {}).items()}
    return {
        "ood_auroc": shifts,
        "pixel_auroc": pixel,
        "pixel_eaurc": eaurc,
        "miou": miou,
        "ece": ece,
        "chosen": chosen,
    }


def mean_std(values: list[float]) -> dict:
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0}


def verdict(student: list[float], other: list[float], name: str) -> str:
    d = [a - b for a, b in zip(student, other)]
    m, s = statistics.fmean(d), statistics.stdev(d) if len(d) > 1 else 0.0
    if abs(m) > 2 * s and abs(m) >= 0.005:
        return f"{'above' if m > 0 else 'below'} the {name} by {abs(m):.3f} ± {s:.3f}"
    return f"no difference measured against the {name} ({m:+.3f} ± {s:.3f})"


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path, help="a finished demo run (members, student, evaluation)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = ap.parse_args(argv)
    run = args.run.resolve()
    own_seed = json.loads((run / "evaluation" / "results.json").read_text())["config"]
    own_seed = own_seed["distill"].get("seed") or own_seed["train"]["seed"]
    per_seed = {}
    for seed in args.seeds:
        if seed == own_seed:
            res = json.loads((run / "evaluation" / "results.json").read_text())
        else:
            res = evaluate_seed(run, seed)
        per_seed[str(seed)] = summary(res)
        print(f"seed {seed}: {json.dumps(per_seed[str(seed)]['ood_auroc'])}", flush=True)
    seeds = list(per_seed.values())
    shifts = list(seeds[0]["ood_auroc"])
    sides = list(seeds[0]["pixel_auroc"])

    def ms(key, side, shift=None):
        vals = [(s[key][shift] if shift else s[key])[side] for s in seeds]
        return None if any(v is None for v in vals) else mean_std(vals)

    agg = {
        "ood_auroc": {n: {side: ms("ood_auroc", side, n) for side in sides} for n in shifts},
        **{key: {side: ms(key, side) for side in sides} for key in ("pixel_auroc", "pixel_eaurc", "miou", "ece")},
    }
    label = {
        "temperature_scaled": "temperature-scaled baseline",
        "feature_density": "feature density",
        "mc_dropout": "MC dropout",
        "multi_head": "multi-head ensemble",
    }
    verdicts = {
        n: {
            f"vs_{side}": verdict(
                [s["ood_auroc"][n]["student"] for s in seeds],
                [s["ood_auroc"][n][side] for s in seeds],
                label.get(side, side.replace("_", " ")),
            )
            for side in sides
            if side != "student" and all(s["ood_auroc"][n][side] is not None for s in seeds)
        }
        for n in shifts
    }
    record = {
        "run": str(args.run),
        "seeds": args.seeds,
        "members": "fixed (the run's own); the student is distilled, calibrated and evaluated per seed",
        "per_seed": per_seed,
        "mean_std": agg,
        "verdicts": verdicts,
    }
    OUT.write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps(verdicts, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
