"""Ablation of the distillation recipe on validation data (issue: faithful distillation).

Reuses the members of a finished run (the demo's by default), distils one student per
(variant, seed) into its own run folder (members linked, not copied), evaluates it on the
*validation* split and the validation shifts (the recipe is chosen here; test numbers are
reported once, by the demo / experiment), and prints and writes one table:

    python benchmarks/distill_ablation.py --members-from runs/demo --out runs/ablation \
        --json benchmarks/results/distill-ablation-synthetic.json

Per variant: Pearson / Spearman of student U vs teacher U (overall and mean per class),
the scale ratio per decile of teacher U (min, max of the medians), student mIoU, E-AURC and
AUROC of student σ against the student's errors (and of the student's best score), OOD
AUROC per shift for each image score of student U (and the best of student vs ensemble),
and the cost of a distillation epoch relative to a baseline epoch. It also measures the
teacher's own noise ceiling: the Pearson of U from half of the members against U from the
other half. Resumable: finished variants are read back, not rerun.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

VARIANTS = {  # name -> distill overrides (on top of the demo config)
    "paper": ["distill.recipe=paper"],
    "bias-init": ["distill.recipe=paper", "distill.sigma_init=teacher-mean"],
    "log-mse": [
        "distill.recipe=paper",
        "distill.sigma_init=teacher-mean",
        "distill.sigma_loss=log-mse",
        "distill.beta=0.1",
    ],
    "sqrt-mse": ["distill.recipe=paper", "distill.sigma_init=teacher-mean", "distill.sigma_loss=sqrt-mse"],
    "views": ["distill.recipe=paper", "distill.views=perturb"],
    "views-online": ["distill.recipe=paper", "distill.views=perturb", "distill.targets=online"],
    "bias+views": ["distill.recipe=paper", "distill.sigma_init=teacher-mean", "distill.views=perturb"],
    "bias+views+sqrt": [
        "distill.recipe=paper",
        "distill.sigma_init=teacher-mean",
        "distill.views=perturb",
        "distill.sigma_loss=sqrt-mse",
    ],
    "bias+views+log": [
        "distill.recipe=paper",
        "distill.sigma_init=teacher-mean",
        "distill.views=perturb",
        "distill.sigma_loss=log-mse",
        "distill.beta=0.1",
    ],
}
SCORES = ("min", "mean", "median", "max", "median_plus_min_over_max")


def _epoch_seconds(csv_path: Path) -> float | None:
    import csv

    if not csv_path.exists():
        return None
    with open(csv_path) as fh:
        rows = list(csv.DictReader(fh))
    secs = [float(r["seconds"]) for r in rows if r.get("seconds")]
    return statistics.median(secs) if secs else None


def summarise(res: dict, run: Path, members_from: Path, heads: str = "student") -> dict:
    """The ablation's numbers from one evaluation's results.json."""
    key = "student_sigma" if heads == "student" else "student_light_sigma"
    ag = res["agreement"] if heads == "student" else res["agreement_light"]
    per_class = [v["pearson"] for v in (ag.get("per_class") or {}).values() if v.get("pearson") is not None]
    ratios = [d["median_ratio"] for d in ag.get("scale_ratio_by_decile") or []]
    vs = res["pixel_student_errors"]
    student_keys = [
        k for k in vs if k.startswith(heads + "_") and (heads != "student" or not k.startswith("student_light"))
    ]
    best_student = max(student_keys, key=lambda k: vs[k]["auroc"] or 0)
    ood = {}
    for shift, s in res["shifts"].items():
        ens_best = max((v["auroc"] or 0) for m, d in s["ood"].items() if m.startswith("ensemble_") for v in d.values())
        stu_best = max((v["auroc"] or 0) for m, d in s["ood"].items() if m in student_keys for v in d.values())
        ood[shift] = {
            "student_u": {sc: s["ood"][key][sc]["auroc"] for sc in SCORES},
            "student_best": stu_best,
            "ensemble_best": ens_best,
        }
    base_epoch = _epoch_seconds(members_from / "members" / "member-0" / "metrics.csv")
    stu_dir = run / ("student" if heads == "student" else "student-light")
    stu_epoch = _epoch_seconds(stu_dir / "metrics.csv")
    return {
        "pearson": ag["pearson"],
        "spearman": ag["spearman"],
        "per_class_pearson_mean": statistics.fmean(per_class) if per_class else None,
        "scale_ratio_by_decile": ratios,
        "miou": res["miou"]["student" if heads == "student" else "student_light"],
        "teacher_miou": res["miou"]["teacher"],
        "mean_u": res["mean_uncertainty"],
        "pixel_vs_student_errors": {
            "sigma_eaurc": vs[key]["eaurc"],
            "sigma_auroc": vs[key]["auroc"],
            "best_student_score": best_student,
            "best_student_auroc": vs[best_student]["auroc"],
            "best_student_eaurc": vs[best_student]["eaurc"],
            "ensemble_entropy_auroc": vs["ensemble_entropy"]["auroc"],
            "baseline_msp_eaurc": vs["baseline_msp"]["eaurc"],
        },
        "ood": ood,
        "epoch_cost_vs_baseline": (stu_epoch / base_epoch) if (stu_epoch and base_epoch) else None,
    }


def teacher_noise_ceiling(cfg, device="cpu") -> dict:
    """Pearson of U from members {0..F/2-1} against U from the rest, on the val images: how
    far any student can follow a teacher whose own Σ is that noisy."""
    import numpy as np
    import torch
    from torch.utils.data import DataLoader

    from udistill.data.from_config import dataset_for
    from udistill.ensemble import Ensemble, member_paths

    paths = member_paths(cfg.out_dir)[: cfg.teacher.members]
    half = len(paths) // 2
    a, b = Ensemble.from_paths(paths[:half]), Ensemble.from_paths(paths[half:])
    ua, ub = [], []
    with torch.no_grad():
        for batch in DataLoader(dataset_for(cfg.data, "test"), batch_size=8):
            ua.append(a(batch["image"]).std.mean(1).flatten().numpy())
            ub.append(b(batch["image"]).std.mean(1).flatten().numpy())
    ua, ub = np.concatenate(ua), np.concatenate(ub)
    return {"members": [half, len(paths) - half], "pearson_half_vs_half": float(np.corrcoef(ua, ub)[0, 1])}


def run_variant(name: str, seed: int, members_from: Path, out: Path, light: bool, extra: list[str] = ()) -> Path:
    from udistill.config import ExperimentConfig, load_config
    from udistill.demo import preset_path
    from udistill.distill import run_distill
    from udistill.evaluate import run_evaluation

    run = out / f"{name}-s{seed}"
    res = run / "evaluation" / "results.json"
    if res.exists():
        return res
    run.mkdir(parents=True, exist_ok=True)
    link = run / "members"
    if not link.exists():
        link.symlink_to((members_from / "members").resolve(), target_is_directory=True)
    overrides = [
        f"out_dir={run}",
        f"train.seed={seed}",
        "data.test_split=val",
        "distill.control=false",
        f"distill.light_student={'true' if light else 'false'}",
        "train.progress=false",
        *VARIANTS[name],
        *extra,
    ]
    cfg = load_config(ExperimentConfig, preset_path("synthetic"), overrides)
    t0 = time.time()
    run_distill(cfg)
    if light:
        run_distill(cfg, heads="light")
    print(f"[{name} s{seed}] distilled in {time.time() - t0:.0f} s", flush=True)
    run_evaluation(cfg, progress=False)
    return res


def format_table(rows: dict) -> str:
    shifts = sorted({s for r in rows.values() for s in r["ood"]})
    head = ["variant", "Pearson", "Spearman", "per-class", "scale min–max", "mIoU", "σ E-AURC", "σ AUROC", "best AUROC"]
    head += [f"{s} U-best/ens" for s in shifts] + ["epoch cost"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]

    def f(v, d=3):
        return "–" if v is None else f"{v:.{d}f}"

    for name, r in rows.items():
        p = r["pixel_vs_student_errors"]
        sr = r["scale_ratio_by_decile"]
        cells = [
            name,
            f(r["pearson"]),
            f(r["spearman"]),
            f(r["per_class_pearson_mean"]),
            f"{min(sr):.2f}–{max(sr):.2f}" if sr else "–",
            f(r["miou"]),
            f(p["sigma_eaurc"], 4),
            f(p["sigma_auroc"]),
            f"{f(p['best_student_auroc'])} ({p['best_student_score']})",
        ]
        cells += [f"{f(max(r['ood'][s]['student_u'].values()))}/{f(r['ood'][s]['ensemble_best'])}" for s in shifts]
        cells.append(f(r["epoch_cost_vs_baseline"], 2))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--members-from", default="runs/demo", help="a finished run whose members/ are reused")
    ap.add_argument("--out", default="runs/ablation")
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--light", default="bias+views", help="variants that also distil the light head (comma list)")
    ap.add_argument("--json", default=None)
    ap.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra config override for every variant (e.g. a smoke test with fewer epochs)",
    )
    args = ap.parse_args(argv)
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
    members_from, out = Path(args.members_from), Path(args.out)
    rows: dict = {}
    light = set(args.light.split(",")) if args.light else set()
    for name in args.variants.split(","):
        for seed in (int(s) for s in args.seeds.split(",")):
            res_path = run_variant(name, seed, members_from, out, name in light, args.overrides)
            res = json.loads(res_path.read_text())
            rows[f"{name} s{seed}"] = summarise(res, res_path.parents[1], members_from)
            if name in light:
                rows[f"{name} s{seed} light"] = summarise(res, res_path.parents[1], members_from, heads="student_light")
            print(format_table({f"{name} s{seed}": rows[f"{name} s{seed}"]}).splitlines()[-1], flush=True)
    from udistill.config import ExperimentConfig, load_config
    from udistill.demo import preset_path

    cfg = load_config(
        ExperimentConfig, preset_path("synthetic"), [f"out_dir={members_from}", "data.test_split=val", *args.overrides]
    )
    ceiling = teacher_noise_ceiling(cfg)
    table = format_table(rows)
    print(table)
    print(
        f"teacher noise ceiling (val): Pearson of U from members {ceiling['members'][0]} vs {ceiling['members'][1]}: "
        f"{ceiling['pearson_half_vs_half']:.3f}"
    )
    if args.json:
        from udistill.io import atomic_write_json, atomic_write_text

        atomic_write_json(
            args.json,
            {
                "rows": rows,
                "teacher_noise_ceiling": ceiling,
                "split": "val",
                "command": " ".join([Path(sys.argv[0]).name, *(argv or sys.argv[1:])]),
            },
        )
        atomic_write_text(str(Path(args.json).with_suffix(".md")), table + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
