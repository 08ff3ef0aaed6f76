"""Ablation of the distillation recipe on validation data (issue: faithful distillation).

Reuses the members of a finished run (the demo's by default), distils one student per
(variant, seed) into its own run folder (members linked, not copied), evaluates it on the
*validation* split and the validation shifts (the recipe is chosen here; test numbers are
reported once, by the demo / experiment), and prints and writes one table:

    python benchmarks/distill_ablation.py --members-from runs/demo --out runs/ablation \
        --json benchmarks/results/distill-ablation-synthetic.json

Per variant, mean ± std over the seeds (3 by default; the members are fixed): the student
score chosen on the validation shifts and its AUROC per shift (beside the ensemble's chosen
score), the pixel score chosen on the validation split and its E-AURC on the student's own
errors (beside the ensemble's), mIoU and ECE (beside the CE-only control's, trained in the
``paper`` variant's runs), Pearson of student U with teacher U, and the cost of a
distillation epoch relative to a baseline epoch. The default recipe is then chosen by
:func:`choose` (on validation only). Resumable: finished variants are read back, not rerun.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

from linked_run import linked_run

#: The auxiliary sources of the synthetic demo: two renderer styles no shift uses and two
#: corruption families no shift uses (udistill.data.auxiliary).
AUX = "distill.auxiliary=[synthetic:harbour,synthetic:suburb,corrupt:pixelate,corrupt:channel-swap]"
#: Every renderer style and corruption family that may be auxiliary (still no evaluation shift).
AUX_WIDE = (
    "distill.auxiliary=[synthetic:harbour,synthetic:suburb,corrupt:pixelate,corrupt:channel-swap,"
    "corrupt:motion-blur,corrupt:posterize]"
)
#: The paper's recipe, stated in full (the shipped preset carries the chosen recipe's keys;
#: every variant starts from this, so the table means the same whatever the preset says).
PAPER = [
    "distill.recipe=paper",
    "distill.auxiliary=[]",
    "distill.auxiliary_ratio=0.25",
    "distill.alpha=0.1",
    "distill.temperature=1.0",
]
VARIANTS = {  # name -> distill overrides (on top of the demo config)
    "paper": PAPER,
    "aux": [*PAPER, AUX],
    "aux-bias": [*PAPER, AUX, "distill.sigma_init=teacher-mean"],
    "aux-half": [*PAPER, AUX, "distill.auxiliary_ratio=0.5"],
    "aux-T2": [*PAPER, AUX, "distill.temperature=2"],
    "aux-ce": [*PAPER, AUX, "distill.alpha=0.5"],
    "aux-wide": [*PAPER, AUX_WIDE],
    "aux-half-T2": [*PAPER, AUX, "distill.auxiliary_ratio=0.5", "distill.temperature=2"],
    "aux-half-ce": [*PAPER, AUX, "distill.auxiliary_ratio=0.5", "distill.alpha=0.5"],
    "aux-half-ce1": [*PAPER, AUX, "distill.auxiliary_ratio=0.5", "distill.alpha=1.0"],
    "aux-half-ce2": [*PAPER, AUX, "distill.auxiliary_ratio=0.5", "distill.alpha=2.0"],
    "aux-half-ce4": [*PAPER, AUX, "distill.auxiliary_ratio=0.5", "distill.alpha=4.0"],
    "aux-half-ce-T2": [
        *PAPER,
        AUX,
        "distill.auxiliary_ratio=0.5",
        "distill.alpha=0.5",
        "distill.temperature=2",
    ],
    # earlier variants (issue #16's ablation), kept runnable
    "bias-init": [*PAPER, "distill.sigma_init=teacher-mean"],
    "log-mse": [
        *PAPER,
        "distill.sigma_init=teacher-mean",
        "distill.sigma_loss=log-mse",
        "distill.beta=0.1",
    ],
    "sqrt-mse": [*PAPER, "distill.sigma_init=teacher-mean", "distill.sigma_loss=sqrt-mse"],
    "views": [*PAPER, "distill.views=perturb"],
    "views-online": [*PAPER, "distill.views=perturb", "distill.targets=online"],
    "bias+views": [*PAPER, "distill.sigma_init=teacher-mean", "distill.views=perturb"],
}
DEFAULT_VARIANTS = "paper,aux,aux-bias,aux-half,aux-T2,aux-ce,aux-wide,aux-half-T2,aux-half-ce,aux-half-ce1,aux-half-ce2,aux-half-ce4,aux-half-ce-T2"
#: The ablation never touches the test split: its "test" role is a second block of 50
#: validation scenes (50..99), disjoint from the 50 the evaluation selects scores on.
VALIDATION_ONLY = ["data.test_split=val", "data.role_options={test: {first: 50, length: 50}}"]
#: The variant whose run also trains the CE-only control (the control does not depend on the recipe).
CONTROL_VARIANT = "paper"


def _epoch_seconds(csv_path: Path) -> float | None:
    import csv

    if not csv_path.exists():
        return None
    with open(csv_path) as fh:
        rows = list(csv.DictReader(fh))
    secs = [float(r["seconds"]) for r in rows if r.get("seconds")]
    return statistics.median(secs) if secs else None


def summarise(res: dict, run: Path, members_from: Path, heads: str = "student") -> dict:
    """The ablation's numbers from one evaluation's results.json (computed on the val split:
    the recipe is chosen there). Every score is the one chosen on the validation shifts (or,
    for pixels, on the validation split) by the evaluation's own selection rule."""
    side = heads
    key = "student_sigma" if heads == "student" else "student_light_sigma"
    ag = res["agreement"] if heads == "student" else res["agreement_light"]
    ratios = [d["median_ratio"] for d in ag.get("scale_ratio_by_decile") or []]
    px = res["pixel_student_errors_selected"]
    pixel = res["pixel"]
    msp = "student_msp" if heads == "student" else "student_light_msp"
    ood = {}
    for shift, s in res["shifts"].items():
        sel = s["selected"]
        ood[shift] = {
            "student": sel[side]["auroc"],
            "student_score": f"{sel[side]['method']} / {sel[side]['score']}",
            "student_sigma_mean": s["ood"][key]["mean"]["auroc"],
            "ensemble": sel["ensemble"]["auroc"],
            "baseline": sel["baseline"]["auroc"],
        }
    base_epoch = _epoch_seconds(members_from / "members" / "member-0" / "metrics.csv")
    stu_epoch = _epoch_seconds(run / ("student" if heads == "student" else "student-light") / "metrics.csv")
    selection = res["selection"][side]
    return {
        "pearson": ag["pearson"],
        "spearman": ag["spearman"],
        "scale_ratio_by_decile": ratios,
        "miou": res["miou"][side],
        "control_miou": res["miou"].get("control"),
        "teacher_miou": res["miou"]["teacher"],
        "ece": pixel[msp]["ece"],
        "baseline_ece": pixel["baseline_msp"]["ece"],
        "control_ece": pixel["control_msp"]["ece"] if "control_msp" in pixel else None,
        "selected_image_score": f"{selection['method']} / {selection['score']}",
        "selected_pixel_score": px[side]["method"],
        "pixel_eaurc": px[side]["eaurc"],
        "ensemble_pixel_eaurc": px["ensemble"]["eaurc"],
        "ood": ood,
        "epoch_cost_vs_baseline": (stu_epoch / base_epoch) if (stu_epoch and base_epoch) else None,
    }


def run_variant(name: str, seed: int, members_from: Path, out: Path, light: bool, extra: list[str] = ()) -> Path:
    from udistill.config import ExperimentConfig, load_config
    from udistill.evaluation.evaluate import run_evaluation
    from udistill.pipeline.demo import preset_path
    from udistill.pipeline.distill import run_control, run_distill

    run = out / f"{name}-s{seed}"
    res = run / "evaluation" / "results.json"
    if res.exists():
        return res
    linked_run(run, members_from)
    overrides = [
        f"out_dir={run}",
        f"train.seed={seed}",
        *VALIDATION_ONLY,
        f"distill.control={'true' if name == CONTROL_VARIANT else 'false'}",
        f"distill.light_student={'true' if light else 'false'}",
        "train.progress=false",
        "single_pass.enabled=false",  # the recipe is the question here (the single-pass methods: the demo)
        *VARIANTS[name],
        *extra,
    ]
    cfg = load_config(ExperimentConfig, preset_path("synthetic"), overrides)
    t0 = time.time()
    run_distill(cfg)
    if light:
        run_distill(cfg, heads="light")
    if name == CONTROL_VARIANT:
        run_control(cfg)
    print(f"[{name} s{seed}] distilled in {time.time() - t0:.0f} s", flush=True)
    run_evaluation(cfg, progress=False)
    return res


def _stats(values: list) -> tuple[float | None, float | None]:
    vals = [v for v in values if v is not None]
    if not vals:
        return None, None
    return statistics.fmean(vals), (statistics.stdev(vals) if len(vals) > 1 else 0.0)


def aggregate(rows: dict) -> dict:
    """Per variant (and head): mean and std over seeds of every number the choice uses.
    The control's mIoU/ECE come from the control variant's runs (one control per seed)."""
    groups: dict[str, list[dict]] = {}
    for label, r in rows.items():
        name, _, rest = label.partition(" s")
        head = " light" if rest.endswith(" light") else ""
        groups.setdefault(name + head, []).append(r)
    control = [r for label, r in rows.items() if label.startswith(CONTROL_VARIANT + " s") and r.get("control_miou")]
    out = {}
    for name, rs in groups.items():
        shifts = sorted({s for r in rs for s in r["ood"]})
        agg = {
            "seeds": len(rs),
            "miou": _stats([r["miou"] for r in rs]),
            "ece": _stats([r["ece"] for r in rs]),
            "pixel_eaurc": _stats([r["pixel_eaurc"] for r in rs]),
            "ensemble_pixel_eaurc": _stats([r["ensemble_pixel_eaurc"] for r in rs]),
            "pearson": _stats([r["pearson"] for r in rs]),
            "epoch_cost_vs_baseline": _stats([r["epoch_cost_vs_baseline"] for r in rs]),
            "ood": {
                s: {k: _stats([r["ood"][s][k] for r in rs]) for k in ("student", "ensemble", "baseline")}
                for s in shifts
            },
            "mean_ood": _stats([statistics.fmean(r["ood"][s]["student"] for s in shifts) for r in rs]),
            "control_miou": _stats([r["control_miou"] for r in control]),
            "control_ece": _stats([r["control_ece"] for r in control]),
            "baseline_ece": _stats([r["baseline_ece"] for r in rs]),
            "selected_image_scores": sorted({r["selected_image_score"] for r in rs}),
        }
        out[name] = agg
    return out


def choose(agg: dict) -> dict:
    """The default recipe, chosen on validation: among the variants whose mean mIoU is not
    below the control's by more than the spread, the highest mean validation OOD AUROC of the
    selected score (mean over shifts and seeds); ties within one std of the best are broken by
    the lower pixel E-AURC. Light-head rows are not candidates."""
    cands = {n: a for n, a in agg.items() if not n.endswith(" light") and a["mean_ood"][0] is not None}
    ctrl = next((a["control_miou"] for a in agg.values() if a["control_miou"][0] is not None), (None, None))
    ok = {}
    for n, a in cands.items():
        if ctrl[0] is None or a["miou"][0] >= ctrl[0] - max(ctrl[1] or 0, a["miou"][1] or 0):
            ok[n] = a
    pool = ok or cands
    best = max(pool, key=lambda n: pool[n]["mean_ood"][0])
    spread = pool[best]["mean_ood"][1] or 0.0
    near = [n for n in pool if pool[n]["mean_ood"][0] >= pool[best]["mean_ood"][0] - spread]
    chosen = min(near, key=lambda n: pool[n]["pixel_eaurc"][0])
    return {
        "variant": chosen,
        "overrides": VARIANTS[chosen],
        "within_spread_of_best": sorted(near),
        "miou_not_below_control": sorted(ok),
        "rule": choose.__doc__.split("\n\n")[0].replace("\n", " "),
    }


def format_table(agg: dict) -> str:
    shifts = sorted({s for a in agg.values() for s in a["ood"]})
    head = ["variant", "seeds", "mIoU", "ECE", "pixel E-AURC (ens.)", "Pearson"]
    head += [f"{s} (ens.)" for s in shifts] + ["mean OOD", "epoch cost"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]

    def f(ms, d=3):
        m, sd = ms
        if m is None:
            return "–"
        return f"{m:.{d}f} ± {sd:.{d}f}" if sd else f"{m:.{d}f}"

    for name, a in agg.items():
        cells = [
            name,
            str(a["seeds"]),
            f(a["miou"]),
            f(a["ece"]),
            f"{f(a['pixel_eaurc'], 4)} ({f(a['ensemble_pixel_eaurc'], 4)})",
            f(a["pearson"]),
        ]
        cells += [f"{f(a['ood'][s]['student'])} ({f(a['ood'][s]['ensemble'])})" for s in shifts]
        cells += [f(a["mean_ood"]), f(a["epoch_cost_vs_baseline"], 2)]
        lines.append("| " + " | ".join(cells) + " |")
    ctrl = next((a for a in agg.values() if a["control_miou"][0] is not None), None)
    if ctrl:
        lines.append("")
        lines.append(
            f"CE-only control: mIoU {f(ctrl['control_miou'])}, ECE {f(ctrl['control_ece'])}; "
            f"baseline ECE {f(ctrl['baseline_ece'])}"
        )
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--members-from", default="runs/demo", help="a finished run whose members/ are reused")
    ap.add_argument("--out", default="runs/ablation")
    ap.add_argument("--variants", default=DEFAULT_VARIANTS)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--light", default="aux", help="variants that also distil the light head (comma list)")
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
    seeds = [int(s) for s in args.seeds.split(",")]
    for seed in seeds:  # seeds outermost: a partial run already has every variant at seed 0
        for name in args.variants.split(","):
            res_path = run_variant(name, seed, members_from, out, name in light, args.overrides)
            res = json.loads(res_path.read_text())
            rows[f"{name} s{seed}"] = summarise(res, res_path.parents[1], members_from)
            if name in light:
                rows[f"{name} s{seed} light"] = summarise(res, res_path.parents[1], members_from, heads="student_light")
            r = rows[f"{name} s{seed}"]
            print(
                f"[{name} s{seed}] mIoU {r['miou']:.3f}  ECE {r['ece']:.3f}  pixel E-AURC {r['pixel_eaurc']:.4f}  OOD "
                + " ".join(f"{k} {v['student']:.3f}/{v['ensemble']:.3f}" for k, v in r["ood"].items()),
                flush=True,
            )
    agg = aggregate(rows)
    choice = choose(agg)
    table = format_table(agg)
    print(table)
    print(f"chosen on validation: {choice['variant']} ({'; '.join(choice['overrides'])})")
    if args.json:
        from udistill.io import atomic_write_json, atomic_write_text

        atomic_write_json(
            args.json,
            {
                "rows": rows,
                "variants": agg,
                "choice": choice,
                "seeds": seeds,
                "split": "val",
                "command": " ".join([Path(sys.argv[0]).name, *(argv or sys.argv[1:])]),
            },
        )
        atomic_write_text(
            str(Path(args.json).with_suffix(".md")),
            table + f"\n\nChosen on validation: **{choice['variant']}** — {choice['rule']}\n",
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
