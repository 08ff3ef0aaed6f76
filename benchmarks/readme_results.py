"""The result blocks of README.md and docs/*.md, generated from the committed result files
(never typed).

    python benchmarks/readme_results.py            # rewrite the blocks in README.md and docs/*.md
    python benchmarks/readme_results.py --check    # exit 1 when a page differs from the files

A block sits between ``<!-- results:NAME -->`` and ``<!-- /results:NAME -->`` in whichever page
(:func:`pages`: README.md, then docs/*.md) holds it; :data:`BLOCKS` maps each name to the
function that renders it from ``benchmarks/results/``. Each block lives in exactly one page; a
block named in no page, in two pages or a marker naming no block is an error. The test suite
runs the check, so a page that disagrees with its files fails CI.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
README = ROOT / "README.md"
DOCS = ROOT / "docs"


def _load(rel: str) -> dict:
    return json.loads((RESULTS / rel).read_text())


def _f(v, digits: int = 3) -> str:
    return "–" if v is None else f"{v:.{digits}f}"


def demo_time() -> str:
    t = _load("demo-time.json")
    stages = ", ".join(f"{k} {v:.0f} s" for k, v in t["stages_s"].items())
    load = t["load_average_1min"]
    m = t["machine"]
    return (
        f"`udistill demo` in a fresh run folder: **{t['total_s']:.0f} s** of wall time ({stages}) on "
        f"{m['cores']} cores ({m['cpu']}), 1-minute load average {load['before']} before and "
        f"{load['mean']} on average while it ran (max {load['max']}); commit {t['commit']}, "
        "`benchmarks/results/demo-time.json` (`python benchmarks/demo_time.py`)."
        + (
            f" A member epoch takes {t['member_epoch_s']['parallel_one_thread_jobs']:.2f} s in a one-thread job beside "
            f"another and {t['member_epoch_s']['one_job_all_cores']:.2f} s alone with all {m['cores']} cores: "
            "two jobs side by side finish two members in "
            f"{t['member_epoch_s']['parallel_one_thread_jobs'] / (2 * t['member_epoch_s']['one_job_all_cores']):.0%} "
            "of the time one after another takes."
            if t.get("member_epoch_s", {}).get("one_job_all_cores")
            else ""
        )
    )


def demo_headline() -> str:
    from udistill.evaluation.report.headline import headline_rows, headline_text

    r = _load("demo-synthetic/results.json")
    return "```\n" + headline_text(r.get("headline") or headline_rows(r)) + "\n```"


def _selected_table(r: dict, sides=("student", "ensemble", "baseline", "mc_dropout")) -> str:
    lines = ["| shift | " + " | ".join(sides) + " |", "|---" * (len(sides) + 1) + "|"]
    for name, s in (r.get("shifts") or {}).items():
        sel = s.get("selected") or {}
        cells = []
        for side in sides:
            e = sel.get(side)
            cells.append("–" if not e else f"{_f(e.get('auroc'))} ({e['method']} / {e['score']})")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def demo_selected() -> str:
    r = _load("demo-synthetic/results.json")
    if not r.get("selection"):
        return "(the committed demo results predate the validation selection)"
    sel = r["selection"]["student"]
    on = sel["chosen_on"]
    head = (
        f"The run above (student seed 0): image-level OOD AUROC on the test shifts of the score each side chose on "
        f"{on['validation']['set']} and its shifts ({', '.join(on['shifts'])}):\n\n"
    )
    return head + _selected_table(r) + "\n\n" + _verdict(r)


def _verdict(r: dict, spread: float = 0.02) -> str:
    """Where the student's chosen score stands against the ensemble's and the baseline's, per
    shift (one run: differences under ``spread`` are called "no difference measured")."""
    words = []
    for name, s in (r.get("shifts") or {}).items():
        sel = s.get("selected") or {}
        st, en, ba = (sel.get(k, {}).get("auroc") for k in ("student", "ensemble", "baseline"))
        if None in (st, en, ba):
            continue

        def cmp(a, b, other):
            if abs(a - b) < spread:
                return f"no difference measured against the {other}"
            return f"{'above' if a > b else 'below'} the {other} by {abs(a - b):.3f}"

        words.append(f"{name}: {cmp(st, en, 'ensemble')}, {cmp(st, ba, 'baseline')}")
    return (
        f"The student's chosen score, shift by shift (one seed, so no spread is measured: one draw; differences "
        f"under {spread} are called no difference): " + "; ".join(words) + "."
    )


def camvid_headline() -> str:
    from udistill.evaluation.report.headline import headline_rows, headline_text

    r = _load("camvid-cpu/results.json")
    return "```\n" + headline_text(headline_rows(r)) + "\n```"


def repro_member0() -> str:
    r = _load("camvid-cpu/repro-member0.json")
    c, n = r["committed"], r["rerun"]
    return (
        f"Measured (`benchmarks/repro_member.py`, `benchmarks/results/camvid-cpu/repro-member0.json`): CamVid "
        f"member 0 retrained with today's code (commit {r['commit']}, deterministic, {r['rerun_threads']} thread) "
        f"against the committed curve (interrupted and resumed several times, older code, deterministic off), "
        f"{r['epochs_compared']} epochs: epoch-1 loss {n['epoch1_loss']:.4f} vs {c['epoch1_loss']:.4f}, final loss "
        f"{n['final_loss']:.4f} vs {c['final_loss']:.4f}, final validation mIoU {n['final_val_miou']:.3f} vs "
        f"{c['final_val_miou']:.3f}; the largest per-epoch differences: loss {r['max_abs_loss_difference']:.3f}, "
        f"validation mIoU {r['max_abs_val_miou_difference']:.3f}. Two runs of different code and history agree "
        "to this spread, not to the bit: treat differences of this size between runs as noise."
    )


def demo_seeds() -> str:
    """Every side's validation-chosen test numbers, mean ± std over the student seeds, and
    the student's verdict against each side (a difference only where it exceeds 2 std)."""
    r = _load("demo-seeds.json")
    ms = r["mean_std"]
    sides = [side for side in ms["pixel_auroc"] if ms["pixel_auroc"][side] is not None]
    name = {
        "temperature_scaled": "temp. scaled",
        "feature_density": "feature density",
        "mc_dropout": "MC dropout",
        "multi_head": "multi-head",
    }

    def cell(v, digits=3):
        return "–" if v is None else f"{v['mean']:.{digits}f} ± {v['std']:.{digits}f}"

    lines = [
        f"Student distilled with seeds {', '.join(map(str, r['seeds']))}, members fixed "
        "(`benchmarks/student_seeds.py`, `benchmarks/results/demo-seeds.json`); test split, mean ± std over the "
        "student's seeds of each side's validation-chosen score (the other sides do not depend on the student's seed):",
        "",
        "| | " + " | ".join(name.get(s, s.replace("_", " ")) for s in sides) + " |",
        "|---|" + "---|" * len(sides),
    ]
    for shift, v in ms["ood_auroc"].items():
        lines.append(f"| OOD {shift}, AUROC ↑ | " + " | ".join(cell(v.get(side)) for side in sides) + " |")
    rows = (
        ("student's wrong pixels, AUROC ↑", "pixel_auroc", 3),
        ("student's wrong pixels, E-AURC ↓", "pixel_eaurc", 4),
        ("mIoU ↑", "miou", 3),
        ("ECE ↓", "ece", 3),
    )
    for label, key, digits in rows:
        lines.append(f"| {label} | " + " | ".join(cell(ms[key].get(side), digits) for side in sides) + " |")
    lines += ["", "The student against each side, shift by shift (above/below only beyond twice the spread):", ""]
    for shift, vd in r["verdicts"].items():
        lines.append(f"- {shift}: " + "; ".join(vd.values()))
    chosen = sorted({s["chosen"].get("student") for s in r["per_seed"].values()})
    lines += ["", f"The student's validation choice per seed: {', '.join(chosen)}."]
    return "\n".join(lines)


def camvid_field_alarm() -> str:
    return (RESULTS / "camvid-cpu" / "field-alarm.md").read_text().rstrip("\n")


def test_time() -> str:
    t = _load("test-time.json")
    fast, full = t["test-fast"], t["test"]

    def counts(c):
        return ", ".join(f"{v} {k}" for k, v in c["counts"].items())

    return (
        f"Measured (`python benchmarks/test_time.py`, `benchmarks/results/test-time.json`, commit {t['commit']}, "
        f"{t['machine']['cores']} cores, CamVid tests {'on' if t['camvid'] else 'off'}): `make test-fast` "
        f"**{fast['wall_s']:.0f} s** ({counts(fast)}; load {fast['load_before']} before), `make test` "
        f"**{full['wall_s']:.0f} s** ({counts(full)}; load {full['load_before']} before)."
    )


def benchmark_cost() -> str:
    r = _load("benchmark-cpu.json")
    sizes = list(r["by_size"])
    names = {
        "baseline": "baseline",
        "student": "student, paper heads",
        "student_light": "student, light head",
        "ensemble": f"ensemble (F={r['ensemble_members']})",
        "mc_dropout": f"MC dropout (T={r['mc_samples']})",
    }
    head = "| latency, ms | " + " | ".join(s.replace("x", "×") for s in sizes) + " |"
    lines = [
        f"Measured on {r['device']}, {r['threads']} thread, torch {r['torch_version']}, onnxruntime "
        f"{r['onnxruntime_version']} (median batch-1 latency, PyTorch eager / onnxruntime; – where a predictor has no "
        "ONNX graph: MC dropout samples its head in PyTorch):",
        "",
        head,
        "|---" * (len(sizes) + 1) + "|",
    ]
    for key, label in names.items():
        cells = [
            f"{_f(r['by_size'][s]['latency_ms'][key]['torch'], 1)} / {_f(r['by_size'][s]['latency_ms'][key]['onnxruntime'], 1)}"
            for s in sizes
        ]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines += ["", "| ratio (PyTorch / onnxruntime) | " + " | ".join(s.replace("x", "×") for s in sizes) + " |"]
    lines.append("|---" * (len(sizes) + 1) + "|")
    for key, label in (
        ("student_over_baseline", "student / baseline"),
        ("student_light_over_baseline", "light student / baseline"),
        ("ensemble_over_student", "ensemble / student"),
        ("mc_dropout_over_student", "MC dropout / student"),
    ):
        cells = [
            f"{_f(r['by_size'][s]['ratios'][key], 2)} / {_f(r['by_size'][s]['ratios_onnxruntime'][key], 2)}"
            for s in sizes
        ]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


PREDICTOR_NAMES = {
    "baseline": "baseline",
    "mc_dropout": "MC dropout",
    "teacher": "ensemble",
    "student": "student",
    "student_light": "light student",
    "control": "CE-only control",
}


def camvid_tables() -> str:
    """mIoU per set, each predictor's calibration, and the student's wrong pixels ranked by every score."""
    r = _load("camvid-cpu/results.json")
    preds = [p for p in PREDICTOR_NAMES if p in r["miou"]]
    lines = ["| mIoU | " + " | ".join(PREDICTOR_NAMES[p] for p in preds) + " |", "|---" * (len(preds) + 1) + "|"]
    lines.append("| in distribution (Seq05VD) | " + " | ".join(_f(r["miou"][p]) for p in preds) + " |")
    for name, sh in r["shifts"].items():
        lines.append(f"| {name} | " + " | ".join(_f(sh["miou"].get(p)) for p in preds) + " |")
    lines += ["", "| predictor (Seq05VD) | error rate | ECE ↓ | Brier ↓ | NLL ↓ |", "|---|---|---|---|---|"]
    for p in preds:
        v = r["predictors"][p]
        lines.append(
            f"| {PREDICTOR_NAMES[p]} | {_f(v.get('error_rate'))} | {_f(v.get('ece'))} | {_f(v.get('brier'))} | {_f(v.get('nll'))} |"
        )
    chosen = {v["method"]: side for side, v in (r.get("pixel_student_errors_selected") or {}).items()}
    lines += [
        "",
        "The student's wrong pixels (Seq05VD) ranked by every score (one error set: every row is comparable; "
        "*chosen*: the side's pixel method chosen on validation):",
        "",
        "| score | AUROC ↑ | AUPR ↑ | FPR95 ↓ | E-AURC ↓ |",
        "|---|---|---|---|---|",
    ]
    for m, v in r["pixel_student_errors"].items():
        tag = f" (*chosen*, {chosen[m]})" if m in chosen else ""
        lines.append(
            f"| {m}{tag} | {_f(v.get('auroc'))} | {_f(v.get('aupr'))} | {_f(v.get('fpr95'))} | {_f(v.get('eaurc'), 4)} |"
        )
    return "\n".join(lines)


def camvid_selected() -> str:
    r = _load("camvid-cpu/results.json")
    sel = r["selection"]
    rows = []
    for side in ("student", "ensemble", "baseline", "mc_dropout", "student_light", "control"):
        if side in sel:
            v = sel[side]
            rows.append(
                f"| {side} | {v['method']} / {v['score']} | {_f(v.get('mean_validation_auroc'))} | "
                f"{_f(v.get('margin'), 4)} | {'yes' if v.get('determined') else '**no**'} |"
            )
    on = sel["student"]["chosen_on"]
    return (
        f"Chosen on {on['validation']['set']} and its shifts ({', '.join(on['shifts'])}):\n\n"
        "| side | image score chosen | mean validation AUROC | margin over the runner-up | determined |\n"
        "|---|---|---|---|---|\n"
        + "\n".join(rows)
        + "\n\nWhat each choice gives on the test shifts:\n\n"
        + _selected_table(r, ("student", "ensemble", "baseline", "mc_dropout"))
        + "\n\n"
        + _verdict(r)
    )


def _versus(a, b, lower_is_better: bool = False) -> str:
    """'better'/'worse' only where the mean difference exceeds twice the larger std."""
    d = a[0] - b[0]
    spread = 2 * max(a[1] or 0.0, b[1] or 0.0)
    if abs(d) <= spread or abs(d) < 0.002:
        return "no difference measured"
    better = d < 0 if lower_is_better else d > 0
    return f"{'better' if better else 'worse'} by {abs(d):.3f}"


def claims() -> str:
    """The paper's claims against the committed CamVid results (one seed) and the demo's three
    student seeds; a verdict only where a difference exceeds the spread."""
    c = _load("camvid-cpu/results.json")
    d = _load("demo-seeds.json")
    ms = d["mean_std"]

    def pm(v):
        return f"{v['mean']:.3f} ± {v['std']:.3f}"

    m = c["miou"]
    between = m["baseline"] < m["student"] < m["teacher"]
    dm = ms["miou"]
    demo_between = dm["student"]["mean"] - 2 * dm["student"]["std"] > dm["baseline"]["mean"]
    out = [
        f"- **Student mIoU between baseline and teacher.** CamVid (one seed): baseline {m['baseline']:.3f}, "
        f"student {m['student']:.3f}, ensemble {m['teacher']:.3f}"
        + (f", CE-only control {m['control']:.3f}" if "control" in m else "")
        + f": {'in that order' if between else 'not in that order'} (one seed: no spread measured). Demo (3 student "
        f"seeds): student {pm(dm['student'])}, "
        f"baseline {pm(dm['baseline'])}, ensemble {pm(dm['ensemble'])}: "
        + ("holds." if demo_between else "no difference from the baseline measured.")
    ]
    ag = c["agreement"]
    out.append(
        f"- **Student U tracks ensemble U: partly.** CamVid Pearson {ag['pearson']:.3f}, Spearman "
        f"{ag['spearman']:.3f}; the ensemble's own noise caps it near {_f(ag.get('pearson_ceiling'))}."
    )
    ps = c["pixel_student_errors_selected"]
    dp = ms["pixel_auroc"]
    out.append(
        "- **The student flags its wrong pixels at least as well as softmax (scores chosen on validation).** "
        f"CamVid AUROC: student ({ps['student']['method']}) {ps['student']['auroc']:.3f}, baseline "
        f"({ps['baseline']['method']}) {ps['baseline']['auroc']:.3f}, ensemble ({ps['ensemble']['method']}) "
        f"{ps['ensemble']['auroc']:.3f}. Demo: student {pm(dp['student'])}, baseline {pm(dp['baseline'])}, "
        f"ensemble {pm(dp['ensemble'])}."
    )
    shifts = []
    for name, sh in c["shifts"].items():
        sel = sh.get("selected") or {}
        if "student" in sel and "ensemble" in sel:
            shifts.append(f"{name} {sel['student']['auroc']:.3f} / {sel['ensemble']['auroc']:.3f}")
    verdicts = "; ".join(f"{n}: {v['vs_ensemble']}" for n, v in d["verdicts"].items())
    out.append(
        "- **The student's uncertainty is as good as the ensemble's out of distribution.** CamVid, student / "
        f"ensemble image AUROC with each side's validation choice (one seed): {'; '.join(shifts)}. Demo, 3 seeds: "
        f"{verdicts}."
    )
    ab = _load("distill-ablation-synthetic.json")
    pick = ab["variants"][ab["choice"]["variant"]]
    ctrl = next(a for a in ab["variants"].values() if a["control_miou"][0] is not None)
    cm = (
        f"CamVid (one run): student {m['student']:.3f}, control {m['control']:.3f} mIoU; ECE student "
        f"{_f((c['predictors'].get('student') or {}).get('ece'))}, control "
        f"{_f((c['predictors'].get('control') or {}).get('ece'))}, baseline "
        f"{_f((c['predictors'].get('baseline') or {}).get('ece'))}. "
        if "control" in m
        else ""
    )
    out.append(
        "- **Distillation beats more training (the CE-only control).** "
        + cm
        + f"Demo validation ({pick['seeds']} seeds, the chosen recipe `{ab['choice']['variant']}`): student mIoU "
        f"{_ms(pick['miou'])} vs control {_ms(ctrl['control_miou'])} ({_versus(pick['miou'], ctrl['control_miou'])}); "
        f"ECE {_ms(pick['ece'])} vs control {_ms(ctrl['control_ece'])} "
        f"({_versus(pick['ece'], ctrl['control_ece'], lower_is_better=True)}) and baseline {_ms(ctrl['baseline_ece'])}."
    )
    chosen = [c["selection"]["student"]["score"]] + [
        v["chosen"]["student"].split(" / ")[1] for v in d["per_seed"].values()
    ]
    paper = sum(sc == "median_plus_min_over_max" for sc in chosen)
    out.append(
        f"- **(median+min)/max is the best image score.** Validation chose it for the student in {paper} of "
        f"{len(chosen)} runs (CamVid and the demo's seeds): {', '.join(chosen)}."
    )
    lat = c.get("latency_ms") or {}
    if lat.get("ensemble_over_student"):
        out.append(
            f"- **Cost.** Batch-1 latency during the CamVid evaluation: student {lat['student']:.1f} ms, ensemble "
            f"{lat['ensemble']:.1f} ms ({lat['ensemble_over_student']:.2f}×)."
        )
    return "\n".join(out)


def _ms(v, digits: int = 3) -> str:
    m, sd = v
    if m is None:
        return "–"
    return f"{m:.{digits}f} ± {sd:.{digits}f}" if sd else f"{m:.{digits}f}"


def distill_ablation() -> str:
    """The recipe ablation on validation (mean ± std over the student seeds) and its choice."""
    r = _load("distill-ablation-synthetic.json")
    agg = r["variants"]
    shifts = sorted({s for a in agg.values() for s in a["ood"]})
    head = ["variant", "mIoU", "ECE", "pixel E-AURC (ensemble)", *[f"{s} (ensemble)" for s in shifts], "mean OOD"]
    lines = [
        f"Validation split only (scores chosen on val, reported on a second block of 50 val scenes); "
        f"{len(r['seeds'])} student seeds ({', '.join(map(str, r['seeds']))}), members fixed; mean ± std "
        "(`benchmarks/distill_ablation.py`, `benchmarks/results/distill-ablation-synthetic.json`). "
        "Image AUROC of each side's validation-chosen score; E-AURC of the chosen pixel score on the student's errors:",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    for name, a in agg.items():
        cells = [
            name,
            _ms(a["miou"]),
            _ms(a["ece"]),
            f"{_ms(a['pixel_eaurc'], 4)} ({_ms(a['ensemble_pixel_eaurc'], 4)})",
        ]
        cells += [f"{_ms(a['ood'][s]['student'])} ({_ms(a['ood'][s]['ensemble'])})" for s in shifts]
        cells.append(_ms(a["mean_ood"]))
        lines.append("| " + " | ".join(cells) + " |")
    ctrl = next((a for a in agg.values() if a["control_miou"][0] is not None), None)
    lines.append("")
    if ctrl:
        lines.append(
            f"CE-only control (same seeds): mIoU {_ms(ctrl['control_miou'])}, ECE {_ms(ctrl['control_ece'])}; "
            f"baseline ECE {_ms(ctrl['baseline_ece'])}."
        )
    c = r["choice"]
    lines.append(
        f"Chosen on validation: **{c['variant']}** (`{' '.join(c['overrides'])}`); within one std of the best mean OOD: "
        f"{', '.join(c['within_spread_of_best'])}. Rule: {c['rule']}"
    )
    return "\n".join(lines)


def sigma_origin() -> str:
    """σ's OOD AUROC through training from each start, and the fade verdict."""
    r = _load("sigma-origin-synthetic.json")
    res = r["results"]
    shifts = list(res[0]["epochs"][0]["auroc"])
    head = [
        "σ head start, data",
        "epoch",
        *shifts,
        "mean U clean (teacher)",
        "U on blank frames (teacher)",
        "fade verdict",
    ]
    lines = [
        "Image-mean-of-U AUROC per shift on validation images (`benchmarks/sigma_origin.py`, "
        "`benchmarks/results/sigma-origin-synthetic.json`), before training (epoch 0) and after epochs:",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    for v in res:
        last = v["epochs"][-1]["epoch"]
        for e in v["epochs"]:
            if e["epoch"] not in (0, 1, 2, last):
                continue
            cells = [f"{v['variant']} (seed {v['seed']})", str(e["epoch"])]
            cells += [f"{e['auroc'][s]:.3f}" for s in shifts]
            cells.append(f"{e['mean_u_clean']:.4f} ({v['teacher']['mean_u_clean']:.4f})")
            cells.append(f"{e['fade'][-1]:.4f} ({v['teacher']['fade'][-1]:.4f})")
            cells.append(v["verdict"]["verdict"] if e["epoch"] == last else "")
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _single_pass(rel: str) -> str:
    from udistill.evaluation.report.tables import single_pass_table, to_markdown

    table = single_pass_table(_load(rel))
    body = to_markdown(table).split("\n", 2)[2]  # without the report's own heading
    return body.rstrip("\n")


def demo_single_pass() -> str:
    return _single_pass("demo-synthetic/results.json")


def camvid_single_pass() -> str:
    return _single_pass("camvid-cpu/results.json")


def single_pass_latency() -> str:
    """Latency of each single-pass method against the baseline, per shipped config."""
    r = _load("single-pass-latency-cpu.json")
    lines = [
        f"`benchmarks/single_pass_latency.py` on {r['device']}, {r['threads']} thread{'' if r['threads'] == 1 else 's'}, median of {r['repeats']} "
        "(ratio to the baseline; targets: feature density ≤ 1.2×, multi-head ≤ 1.5× at F = 4):",
        "",
        "| config | method | torch b1 | torch b8 | onnxruntime b1 | onnxruntime b8 |",
        "|---|---|---|---|---|---|",
    ]
    for name, c in r["configs"].items():
        for method, per in c["ratios"].items():
            if method == "baseline":
                continue
            cells = [_f((per.get(b) or {}).get(k), 2) + "×" for b in ("torch", "onnxruntime") for k in ("b1", "b8")]
            lines.append(f"| {name} ({c['size'][0]}×{c['size'][1]}) | {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def distill_epoch_cost() -> str:
    """Cost of a distillation epoch against a baseline epoch, with and without auxiliary images."""
    r = _load("distill-epoch-cost-cpu.json")
    lines = []
    for name, c in r.items():
        q = c["ratio_to_baseline"]
        sec = c["seconds"]
        lines.append(
            f"- {name} ({c['images']} synthetic images at {c['size'][0]}×{c['size'][1]} + {c['auxiliary_images']} "
            f"auxiliary, batch {c['batch']}, F = {c['members']}, {c['threads']} thread, median of {c['repeats']}): "
            f"a distillation epoch with cached targets costs {q['cached']:.2f}× a baseline epoch, with the auxiliary "
            f"images {q['cached_auxiliary']:.2f}× (the epoch holds {(c['images'] + c['auxiliary_images']) / c['images']:.2f}× "
            f"the images), online {q['online']:.2f}×; building the cache once {q['cache']:.2f}× "
            f"({sec['cache_auxiliary'] / sec['baseline']:.2f}× with the auxiliary images)."
        )
    return (
        "\n".join(lines) + "\n\n(`benchmarks/distill_epoch_cost.py`, `benchmarks/results/distill-epoch-cost-cpu.json`)"
    )


def setup_times() -> str:
    """The two set-up commands' measured times, for the README's first section."""
    d, t = _load("demo-time.json"), _load("test-time.json")
    return (
        f"Measured on {d['machine']['cores']} CPU cores ({d['machine']['cpu']}), the install not counted: "
        f"`make demo` **{d['total_s']:.0f} s**, `make test` **{t['test']['wall_s']:.0f} s** "
        f"(`make test-fast`, without the slow tier, {t['test-fast']['wall_s']:.0f} s); "
        "`benchmarks/results/demo-time.json`, `benchmarks/results/test-time.json`."
    )


def summary() -> str:
    """The README's one results table: student, ensemble and baseline on the demo (mean ± std
    over the student's seeds) and on CamVid (one seed), each side's scores chosen on validation."""
    d = _load("demo-seeds.json")["mean_std"]
    c = _load("camvid-cpu/results.json")
    demo_latency = _load("demo-synthetic/results.json").get("latency_ms") or {}
    sides = ("student", "ensemble", "baseline")
    predictor = {"student": "student", "ensemble": "teacher", "baseline": "baseline"}

    def ms(v, digits=3):
        if v is None:
            return "–"
        return f"{v['mean']:.{digits}f}" + (f" ± {v['std']:.{digits}f}" if v["std"] >= 0.0005 else "")

    def worst_demo(side):
        shift, v = min(((s, per[side]) for s, per in d["ood_auroc"].items()), key=lambda x: x[1]["mean"])
        return f"{ms(v)} ({shift})"

    def worst_camvid(side):
        found = [
            (s, sh["selected"][side]["auroc"]) for s, sh in c["shifts"].items() if side in (sh.get("selected") or {})
        ]
        if not found:
            return "–"
        shift, a = min(found, key=lambda x: x[1])
        return f"{a:.3f} ({shift})"

    def latency(lat, side):
        v = lat.get(side)
        return "–" if v is None else f"{v:.1f}"

    rows = [
        ("demo: mIoU ↑", [ms(d["miou"][s]) for s in sides]),
        ("demo: ECE ↓", [ms(d["ece"][s]) for s in sides]),
        ("demo: the student's wrong pixels, AUROC ↑", [ms(d["pixel_auroc"][s]) for s in sides]),
        (f"demo: OOD image AUROC ↑, worst of {len(d['ood_auroc'])} shifts", [worst_demo(s) for s in sides]),
        ("demo: latency, batch 1, ms ↓", [latency(demo_latency, s) for s in sides]),
        ("CamVid: mIoU ↑", [_f(c["miou"][predictor[s]]) for s in sides]),
        ("CamVid: ECE ↓", [_f(c["predictors"][predictor[s]].get("ece")) for s in sides]),
        (
            "CamVid: the student's wrong pixels, AUROC ↑",
            [_f(c["pixel_student_errors_selected"][s]["auroc"]) for s in sides],
        ),
        (f"CamVid: OOD image AUROC ↑, worst of {len(c['shifts'])} shifts", [worst_camvid(s) for s in sides]),
        ("CamVid: latency, batch 1, ms ↓", [latency(c.get("latency_ms") or {}, s) for s in sides]),
    ]
    seeds = _load("demo-seeds.json")["seeds"]
    undetermined = [s for s in sides if not (c.get("selection") or {}).get(s, {}).get("determined", True)]
    lines = ["| test split | " + " | ".join(sides) + " |", "|---|---:|---:|---:|"]
    lines += [f"| {label} | " + " | ".join(cells) + " |" for label, cells in rows]
    lines += [
        "",
        f"Demo: synthetic scenes, mean ± std over {len(seeds)} student seeds (members fixed; ± only where the "
        "seed moves the number; latency from the seed-0 run). CamVid: one run"
        + (
            f"; its validation data could not choose the alarm score of the {', '.join(undetermined)} "
            "(every candidate separates the validation shifts perfectly: *undetermined*, broken by a fixed rule)"
            if undetermined
            else ""
        )
        + ". Every score is the one each side chose on validation data. Files: `benchmarks/results/demo-seeds.json`, "
        "`benchmarks/results/demo-synthetic/results.json`, `benchmarks/results/camvid-cpu/results.json`.",
    ]
    return "\n".join(lines)


BLOCKS: dict[str, Callable[[], str]] = {
    "setup-times": setup_times,
    "summary": summary,
    "distill-ablation": distill_ablation,
    "demo-single-pass": demo_single_pass,
    "distill-epoch-cost": distill_epoch_cost,
    "single-pass-latency": single_pass_latency,
    "camvid-single-pass": camvid_single_pass,
    "sigma-origin": sigma_origin,
    "claims": claims,
    "camvid-tables": camvid_tables,
    "camvid-selected": camvid_selected,
    "benchmark-cost": benchmark_cost,
    "test-time": test_time,
    "camvid-field-alarm": camvid_field_alarm,
    "demo-seeds": demo_seeds,
    "repro-member0": repro_member0,
    "demo-time": demo_time,
    "demo-headline": demo_headline,
    "demo-selected": demo_selected,
    "camvid-headline": camvid_headline,
}


MARKER = re.compile(r"<!-- (/?)results:([A-Za-z0-9_-]+) -->")


def pages() -> list[Path]:
    """The pages that may hold blocks: README.md, then every docs/*.md in name order."""
    return [README, *sorted(DOCS.glob("*.md"))]


def render(text: str) -> str:
    """``text`` with every known block replaced by its rendering from the files."""
    for name, fn in BLOCKS.items():
        pattern = re.compile(rf"(<!-- results:{re.escape(name)} -->\n)(.*?)(<!-- /results:{re.escape(name)} -->)", re.S)
        if pattern.search(text):
            body = fn().rstrip("\n") + "\n"
            text = pattern.sub(lambda m, body=body: m.group(1) + body + m.group(3), text)
    return text


def placement(texts: dict[str, str]) -> tuple[dict[str, list[str]], list[str]]:
    """Where each block sits (name -> the pages holding its opening marker) and the problems:
    a block in no page or in several, a marker naming no block, an opening marker without its
    closing one (or the other way round)."""
    where: dict[str, list[str]] = {name: [] for name in BLOCKS}
    problems = []
    for page, text in texts.items():
        opened: dict[str, int] = {}
        closed: dict[str, int] = {}
        for m in MARKER.finditer(text):
            (closed if m.group(1) else opened)[m.group(2)] = (closed if m.group(1) else opened).get(m.group(2), 0) + 1
        for name in sorted(set(opened) | set(closed)):
            if name not in BLOCKS:
                problems.append(f"{page}: marker results:{name} names no block in BLOCKS")
            elif opened.get(name, 0) != 1 or closed.get(name, 0) != 1:
                problems.append(f"{page}: results:{name} needs exactly one opening and one closing marker")
            if name in BLOCKS and opened.get(name):
                where[name].append(page)
    for name, found in where.items():
        if not found:
            problems.append(f"block {name} is in no page (README.md, docs/*.md)")
        elif len(found) > 1:
            problems.append(f"block {name} is in several pages: {', '.join(found)}")
    return where, problems


def main(argv: list[str]) -> int:
    files = pages()
    texts = {str(f.relative_to(ROOT)): f.read_text() for f in files}
    _, problems = placement(texts)
    for problem in problems:
        print(problem, file=sys.stderr)
    changed = []
    for f in files:
        rel = str(f.relative_to(ROOT))
        new = render(texts[rel])
        if new != texts[rel]:
            changed.append(rel)
            if "--check" not in argv:
                f.write_text(new)
    if "--check" in argv:
        for rel in changed:
            print(f"{rel}'s result blocks differ from benchmarks/results/: run python benchmarks/readme_results.py")
        return 1 if changed or problems else 0
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
