"""How far a rerun of one CamVid member lands from the committed training curve.

    UDISTILL_CAMVID=/path/to/camvid OMP_NUM_THREADS=1 \\
        udistill train-teacher --config configs/camvid-cpu.yaml --member 0 --set out_dir=runs/camvid-repro
    python benchmarks/repro_member.py runs/camvid-repro/members/member-0/metrics.csv

Compares the rerun's ``metrics.csv`` with ``benchmarks/results/camvid-cpu/training/previous-member-0.csv``
(the committed run: trained in several interrupted, resumed runs with the code of its day,
``train.deterministic`` off) epoch by epoch and writes
``benchmarks/results/camvid-cpu/repro-member0.json``: epoch-1 and final loss and validation
mIoU of both, the largest per-epoch differences, the thread count and the commit.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COMMITTED = ROOT / "benchmarks" / "results" / "camvid-cpu" / "training" / "previous-member-0.csv"
OUT = ROOT / "benchmarks" / "results" / "camvid-cpu" / "repro-member0.json"


def read_curve(path: Path) -> list[dict]:
    with open(path) as fh:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(fh)]


def main(argv: list[str]) -> int:
    rerun_path = Path(argv[0])
    old, new = read_curve(COMMITTED), read_curve(rerun_path)
    n = min(len(old), len(new))
    if n == 0:
        print("no epoch to compare", file=sys.stderr)
        return 1
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout
    record = {
        "epochs_compared": n,
        "committed": {
            "epoch1_loss": old[0]["loss"],
            "final_loss": old[n - 1]["loss"],
            "final_val_miou": old[n - 1]["val_miou"],
        },
        "rerun": {
            "epoch1_loss": new[0]["loss"],
            "final_loss": new[n - 1]["loss"],
            "final_val_miou": new[n - 1]["val_miou"],
        },
        "max_abs_loss_difference": max(abs(a["loss"] - b["loss"]) for a, b in zip(old[:n], new[:n])),
        "max_abs_val_miou_difference": max(abs(a["val_miou"] - b["val_miou"]) for a, b in zip(old[:n], new[:n])),
        "rerun_threads": int(os.environ.get("OMP_NUM_THREADS", "0") or 0) or None,
        "rerun_deterministic": True,
        "commit": commit.strip() or None,
        "rerun_curve": str(rerun_path),
    }
    OUT.write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps(record, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
