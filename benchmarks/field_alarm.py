"""The field workflow (docs/deployment.md) on real data: calibrate the alarm on the deployment's own frames.

    UDISTILL_CAMVID=/path/to/camvid python benchmarks/field_alarm.py --config configs/camvid-cpu.yaml

A CamVid run (members, student, calibration, evaluation done) is deployed on test sequence
Seq05VD, a sequence in no other split. In time order, its first half is the user's own
unlabelled frames: the alarm is calibrated there (split-conformal, ``--rate``, default 5 %;
CamVid's labelled frames are one second apart, so no stride is needed). The second half is
held out: false alarms are measured on it (with the one-sided 95 % binomial upper bound) and
detection on the shifts: test 0001TP (dusk, a sequence held out of training) and the second
half with synthetic light fog, fog and rain. The same for the ensemble's and the baseline's
scores, each the (method, image score) its side chose on validation in the run's evaluation
(``selection.<side>``), and, for comparison, the student's stored alarm (calibrated on the
config's validation frames by ``udistill calibrate --config``). Writes ``benchmarks/results/camvid-cpu/field-alarm.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "camvid-cpu"
SIDES = ("student", "ensemble", "baseline")


def main(argv: list[str]) -> int:
    from udistill.config import ExperimentConfig, load_config
    from udistill.data.from_config import dataset_for, parse_shifts
    from udistill.data.sets import Selection
    from udistill.device import resolve_device
    from udistill.evaluation.evaluate import SetAccumulator, evaluate_set, load_models
    from udistill.metrics import binomial_upper_bound, conformal_threshold

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default=str(ROOT / "configs" / "camvid-cpu.yaml"))
    ap.add_argument("--set", dest="overrides", action="append", default=[])
    ap.add_argument("--rate", type=float, default=0.05)
    args = ap.parse_args(argv)
    cfg = load_config(ExperimentConfig, args.config, args.overrides)
    results = json.loads((Path(cfg.out_dir) / "evaluation" / "results.json").read_text())
    selection = results["selection"]
    dev = resolve_device(cfg.device)
    models = load_models(cfg, dev)

    test = dataset_for(cfg.data, "test")  # Seq05VD (role_options), frames in name = time order
    order = sorted(range(len(test)), key=lambda i: test.samples[i].name)
    half = len(order) // 2
    first, second = order[:half], order[half:]
    sets = {"calibration (first half)": Selection(test, first, "first half"), "held-out (second half)": None}
    sets["held-out (second half)"] = Selection(test, second, "second half")
    shifts = {}
    for spec in parse_shifts(cfg.data):
        ds = dataset_for(cfg.data, "test", shift=spec)
        if spec.options or spec.split:  # another sequence (dusk 0001TP): all of it
            shifts[spec.name] = ds
        else:  # weather on the held-out half only
            shifts[spec.name] = Selection(ds, second, "second half")

    def scores(ds, desc):
        acc = SetAccumulator(
            ds.scheme.num_classes, models.baseline.num_classes, False, 16, 0, models.methods, models.predictors
        )
        return evaluate_set(models, ds, dev, acc, cfg.evaluate.batch_size, None, desc, True).scores

    cal = scores(sets["calibration (first half)"], "calibration")
    held = scores(sets["held-out (second half)"], "held-out")
    shifted = {name: scores(ds, name) for name, ds in shifts.items()}

    def operating(method, score, threshold):
        flags = np.asarray(held[method][score]) > threshold
        return {
            "threshold": threshold,
            "false_alarm_rate": float(flags.mean()),
            "false_alarms": int(flags.sum()),
            "held_out_frames": int(flags.size),
            "false_alarm_rate_upper_95": binomial_upper_bound(int(flags.sum()), int(flags.size)),
            "detection_rate": {n: float(np.mean(np.asarray(s[method][score]) > threshold)) for n, s in shifted.items()},
        }

    record = {
        "data": {
            "calibration": f"CamVid test Seq05VD, first {len(first)} frames in time order (unlabelled use)",
            "held_out": f"Seq05VD, the other {len(second)} frames",
            "shifts": {n: len(ds) for n, ds in shifts.items()},
        },
        "target_false_alarm_rate": args.rate,
        "threshold_method": "conformal",
        "field": {},
    }
    for side in SIDES:
        sel = selection[side]
        t = conformal_threshold(cal[sel["method"]][sel["score"]], args.rate)
        record["field"][side] = {
            "method": sel["method"],
            "score": sel["score"],
            **operating(sel["method"], sel["score"], t),
        }
    alarm = models.student_meta.get("ood") or {}
    if alarm:
        sc = alarm["score"]
        record["val_calibrated_student"] = {
            "method": "student_sigma",
            "score": sc,
            "calibration_set": alarm.get("calibration_set"),
            **operating("student_sigma", sc, alarm["thresholds"][sc]),
        }
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "field-alarm.json").write_text(json.dumps(record, indent=2) + "\n")
    (OUT / "field-alarm.md").write_text(markdown(record) + "\n")
    print(markdown(record))
    return 0


def markdown(r: dict) -> str:
    shifts = list(r["data"]["shifts"])
    lines = [
        f"Alarm calibrated on {r['data']['calibration']} at {r['target_false_alarm_rate']:.0%} (split-conformal); "
        f"measured on {r['data']['held_out']} and the shifts.",
        "",
        "| score (chosen on validation) | false alarms (held-out) | 95 % upper bound | "
        + " | ".join(f"detects {s}" for s in shifts)
        + " |",
        "|---" * (3 + len(shifts)) + "|",
    ]
    rows = [(f"{side}: {v['method']} / {v['score']}", v) for side, v in r["field"].items()]
    if "val_calibrated_student" in r:
        v = r["val_calibrated_student"]
        rows.append(
            (f"student, threshold calibrated on the validation frames instead: {v['method']} / {v['score']}", v)
        )
    for label, v in rows:
        lines.append(
            f"| {label} | {v['false_alarm_rate']:.1%} ({v['false_alarms']}/{v['held_out_frames']}) | "
            f"{v['false_alarm_rate_upper_95']:.1%} | "
            + " | ".join(f"{v['detection_rate'][s]:.0%}" for s in shifts)
            + " |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
