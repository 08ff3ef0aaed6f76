"""The examples a user copies run as shipped (offline, in their time budget, nothing on disk)."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.mark.slow
def test_bring_your_own_ensemble_runs_and_flags_altered_frames(tmp_path):
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / "bring_your_own_ensemble.py")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    elapsed = time.perf_counter() - start
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    clean = re.findall(r"^clean .*alarm: (ON|off)$", out, re.M)
    shifted = re.findall(r"^altered .*alarm: (ON|off)$", out, re.M)
    assert len(clean) == 4 and len(shifted) == 4, out
    assert clean.count("ON") <= 1, out  # a 5% false-alarm rate: clean frames pass
    assert shifted.count("ON") >= 3, out  # heavily altered frames are flagged
    loss = re.search(r"distillation loss ([\d.]+) -> ([\d.]+)", out)
    assert loss and float(loss[2]) < float(loss[1]), out
    assert list(tmp_path.iterdir()) == []  # nothing written
    assert elapsed < 120, f"the example took {elapsed:.0f} s (budget: 2 minutes on 2 cores)"
