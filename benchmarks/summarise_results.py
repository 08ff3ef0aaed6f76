"""Print the headline numbers of an evaluation's results.json as Markdown tables.

python benchmarks/summarise_results.py runs/camvid-cpu/evaluation/results.json
"""

from __future__ import annotations

import json
import sys

SCORES = ("min", "mean", "median", "max", "median_plus_min_over_max")


def f(x, d=3):
    return "–" if x is None else f"{x:.{d}f}"


def main(path: str) -> None:
    with open(path) as fh:
        r = json.load(fh)
    models = [m for m in ("baseline", "teacher", "student", "student_light", "mc_dropout") if m in r["miou"]]
    print("| data set | " + " | ".join(models) + " |")
    print("|---" * (len(models) + 1) + "|")
    print("| in-distribution | " + " | ".join(f(r["miou"][m]) for m in models) + " |")
    for name, s in r.get("shifts", {}).items():
        print(f"| {name} | " + " | ".join(f(s["miou"].get(m)) for m in models) + " |")
    print()
    print("| method | AUROC | AUPR | FPR95 | ECE | Brier | AURC |")
    print("|---|---|---|---|---|---|---|")
    for m, v in r["pixel"].items():
        print(f"| {m} | " + " | ".join(f(v[k]) for k in ("auroc", "aupr", "fpr95", "ece", "brier", "aurc")) + " |")
    a = r["agreement"]
    print(f"\nstudent U vs teacher U per pixel: Pearson {f(a['pearson'])}, Spearman {f(a['spearman'])}")
    mu = r.get("mean_uncertainty", {})
    print(f"mean U: teacher {f(mu.get('teacher'), 4)}, student {f(mu.get('student'), 4)}")
    print("\nimage OOD AUROC, student U (scores: " + ", ".join(SCORES) + ")")
    print("| shift | " + " | ".join(SCORES) + " | best other method (score) |")
    print("|---" * (len(SCORES) + 2) + "|")
    for name, s in r.get("shifts", {}).items():
        st = s["ood"]["student_sigma"]
        best = max(
            ((m, sc, v[sc]["auroc"]) for m, v in s["ood"].items() if m != "student_sigma" for sc in SCORES),
            key=lambda t: -1 if t[2] is None else t[2],
        )
        print(
            f"| {name} | "
            + " | ".join(f(st[sc]["auroc"]) for sc in SCORES)
            + f" | {best[0]} ({best[1]}) {f(best[2])} |"
        )
    lat = r.get("latency_ms")
    if lat:
        print(
            "\nlatency (batch 1, "
            + "x".join(map(str, lat["size"]))
            + "): "
            + ", ".join(f"{k} {v:.1f} ms" for k, v in lat.items() if isinstance(v, float) and "_over_" not in k)
            + "; "
            + ", ".join(f"{k} {v:.2f}" for k, v in lat.items() if "_over_" in k)
        )


if __name__ == "__main__":
    main(sys.argv[1])
