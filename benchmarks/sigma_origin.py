"""Where the student's out-of-distribution σ comes from (issue: a student that earns its place).

Distils the demo's student from several starting points of the σ head (the paper's fresh
head, σ ≈ 0.5; bias init at the teacher's mean Σ), with and without the rest of the recipe
the ablation chose on validation (auxiliary images among it), and
watches, before training and after every epoch, on *validation* images only:

- the image-mean-of-U AUROC of every shift (the demo's shifts applied to the val split)
  against the clean val images;
- the mean U on clean val images beside the teacher's (the scale);
- the fade probe (:mod:`udistill.metrics.fade`): U on val images faded to blank, beside
  the teacher's Σ, and the verdict ``teacher`` / ``initialisation``.

    python benchmarks/sigma_origin.py --members-from runs/demo --out runs/sigma-origin \\
        --json benchmarks/results/sigma-origin-synthetic.json

Resumable per variant (a finished variant's record is read back).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from distill_ablation import PAPER  # the paper's recipe, stated in full
from linked_run import linked_run

ABLATION = Path(__file__).resolve().parent / "results" / "distill-ablation-synthetic.json"
BIAS = "distill.sigma_init=teacher-mean"


def variants() -> dict[str, list[str]]:
    """The paper's fresh head and bias init, each without and with the rest of the recipe
    the ablation chose on validation (its auxiliary data, ratio, weights)."""
    chosen = json.loads(ABLATION.read_text())["choice"]["overrides"] if ABLATION.exists() else []
    rest = [o for o in chosen if o not in PAPER and not o.startswith("distill.sigma_init=")]
    out = {"fresh": PAPER, "bias": [*PAPER, BIAS]}
    if rest:
        out["fresh+chosen"] = [*PAPER, *rest]
        out["bias+chosen"] = [*PAPER, BIAS, *rest]
    return out


FADE_IMAGES = 16


def _stack(ds, n=None):
    import torch

    n = len(ds) if n is None else min(n, len(ds))
    return torch.stack([ds[i]["image"] for i in range(n)])


def probe_sets(cfg):
    """Clean val images and each shift of the val split (validation images only)."""
    from udistill.data.from_config import dataset_for, parse_shifts

    clean = _stack(dataset_for(cfg.data, "val"))
    shifted = {spec.name: _stack(dataset_for(cfg.data, "val", shift=spec)) for spec in parse_shifts(cfg.data)}
    return clean, shifted


def run_variant(name: str, seed: int, members_from: Path, out: Path, extra=()) -> dict:
    import torch

    from udistill.config import ExperimentConfig, load_config
    from udistill.core.ensemble import Ensemble
    from udistill.metrics import ood_metrics
    from udistill.metrics.fade import FADE_LEVELS, fade_response, fade_verdict
    from udistill.pipeline.demo import preset_path
    from udistill.pipeline.distill import run_distill

    run = out / f"{name}-s{seed}"
    record = run / "sigma-origin.json"
    if record.exists():
        return json.loads(record.read_text())
    linked_run(run, members_from)
    overrides = [
        f"out_dir={run}",
        f"train.seed={seed}",
        "distill.control=false",
        "train.progress=false",
        "single_pass.enabled=false",
    ]
    cfg = load_config(ExperimentConfig, preset_path("synthetic"), [*overrides, *variants()[name], *extra])
    clean, shifted = probe_sets(cfg)
    faded = clean[:FADE_IMAGES]
    teacher = Ensemble.from_run(cfg.out_dir, members=cfg.teacher.members)
    with torch.no_grad():
        teacher_fade = fade_response(lambda x: teacher(x).std.mean(1), faded)
        teacher_clean_u = float(teacher(clean).std.mean())
    epochs: list[dict] = []

    def probe(student, epoch: int) -> None:
        was_training = student.training
        student.eval()
        with torch.no_grad():

            def u(x):
                return torch.cat([student(x[i : i + 25]).sigma.mean(1) for i in range(0, len(x), 25)])

            ind = u(clean).mean((1, 2)).tolist()
            row = {
                "epoch": epoch,
                "mean_u_clean": float(sum(ind) / len(ind)),
                "auroc": {s: ood_metrics(ind, u(x).mean((1, 2)).tolist())["auroc"] for s, x in shifted.items()},
                "fade": fade_response(lambda x: student(x).sigma.mean(1), faded),
            }
        epochs.append(row)
        print(
            f"[{name} s{seed}] epoch {epoch}: " + " ".join(f"{k} {v:.3f}" for k, v in row["auroc"].items()), flush=True
        )
        student.train(was_training)

    run_distill(cfg, on_epoch=probe)
    if not epochs:
        raise SystemExit(f"{run}: the student was already trained; delete it to watch it train")
    result = {
        "variant": name,
        "seed": seed,
        "overrides": variants()[name],
        "teacher": {"mean_u_clean": teacher_clean_u, "fade": teacher_fade},
        "fade_levels": list(FADE_LEVELS),
        "epochs": epochs,
        "verdict": fade_verdict(epochs[-1]["fade"], teacher_fade, epochs[0]["fade"]),
    }
    from udistill.io import atomic_write_json

    atomic_write_json(record, result)
    return result


def format_table(results: list[dict]) -> str:
    shifts = list(results[0]["epochs"][0]["auroc"])
    head = ["variant", "epoch", *shifts, "mean U clean (teacher)", "U blank (teacher)", "fade verdict"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in results:
        for e in r["epochs"]:
            if e["epoch"] not in (0, 1, 2, 4, len(r["epochs"]) - 1):
                continue
            last = e is r["epochs"][-1]
            cells = [f"{r['variant']} s{r['seed']}", str(e["epoch"])]
            cells += [f"{e['auroc'][s]:.3f}" for s in shifts]
            cells.append(f"{e['mean_u_clean']:.4f} ({r['teacher']['mean_u_clean']:.4f})")
            cells.append(f"{e['fade'][-1]:.4f} ({r['teacher']['fade'][-1]:.4f})")
            cells.append(r["verdict"]["verdict"] if last else "")
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--members-from", default="runs/demo")
    ap.add_argument("--out", default="runs/sigma-origin")
    ap.add_argument("--variants", default=None, help="default: all of variants()")
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--json", default=None)
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = ap.parse_args(argv)
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
    results = [
        run_variant(name, int(seed), Path(args.members_from), Path(args.out), args.overrides)
        for seed in args.seeds.split(",")
        for name in (args.variants.split(",") if args.variants else variants())
    ]
    table = format_table(results)
    print(table)
    if args.json:
        from udistill.io import atomic_write_json, atomic_write_text

        atomic_write_json(
            args.json,
            {
                "results": results,
                "split": "val",
                "command": " ".join([Path(sys.argv[0]).name, *(argv or sys.argv[1:])]),
            },
        )
        atomic_write_text(str(Path(args.json).with_suffix(".md")), table + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
