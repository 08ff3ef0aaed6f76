"""The per-set collection of metric accumulators (:class:`SetAccumulator`) against numbers
recorded before the accumulators were refactored (issue #21, item 5): the same seeded
inputs give the same results.json sections to 1e-9, and accumulators fed disjoint parts of
a set and merged give the numbers of one accumulator fed the whole set.

The recorded numbers (``data/set_accumulator_golden.json.gz``) come from synthetic
probabilities and score maps (no model, so no convolution rounding that depends on the
CPU). ``python tests/core/test_set_accumulator.py --write`` records them again; only do
that for a deliberate change of the numbers."""

from __future__ import annotations

import gzip
import json
import math
import pickle
import sys
from pathlib import Path

import numpy as np
import torch

from udistill.evaluation.evaluate import (
    SetAccumulator,
    _nan_to_none,
    in_distribution_results,
    shift_results,
    validation_selection,
)
from udistill.evaluation.methods import PREDICTORS, methods_for

GOLDEN = Path(__file__).parent / "data" / "set_accumulator_golden.json.gz"
C, H, W, N = 5, 8, 12, 2
METHODS = methods_for(PREDICTORS)
ALARMS = {"student": {"score": "mean", "thresholds": {"mean": 0.3}, "false_alarm_rate": 0.05}}


def _batches(seed: int, n_batches: int = 3):
    """Seeded synthetic batches: (batch, probs, maps, model_preds, halves, indices)."""
    g = torch.Generator().manual_seed(seed)
    for b in range(n_batches):
        indices = list(range(b * N, (b + 1) * N))
        label = torch.randint(0, C, (N, H, W), generator=g)
        label[torch.rand(N, H, W, generator=g) < 0.1] = 255
        batch = {"image": torch.rand(N, 3, H, W, generator=g), "label": label, "name": [f"img{i}" for i in indices]}
        probs = {p: torch.softmax(2 * torch.randn(N, C, H, W, generator=g), 1) for p in PREDICTORS}
        maps = {}
        for k, m in enumerate(METHODS):
            u = torch.rand(N, H, W, generator=g, dtype=torch.float64)
            if k % 3 == 0:
                u = u**8  # scores down to the log floor (and below)
            elif k % 3 == 1:
                u = torch.round(u * 20) / 20  # ties
            maps[m.key] = u.float()
        halves = (torch.rand(N, H, W, generator=g), torch.rand(N, H, W, generator=g))
        model_preds = {p: v.argmax(1) for p, v in probs.items()}
        yield batch, probs, maps, model_preds, halves, indices


def _accumulator(pixel: bool) -> SetAccumulator:
    return SetAccumulator(C, C, pixel, 512, 3, METHODS, PREDICTORS)


def _fed(seed: int, pixel: bool, parts: int = 1) -> SetAccumulator:
    """One accumulator fed every batch (``parts=1``) or ``parts`` fed every parts-th batch and
    merged, each part pickled as ranks send theirs to rank 0."""
    accs = [_accumulator(pixel) for _ in range(parts)]
    for b, (batch, probs, maps, preds, halves, idx) in enumerate(_batches(seed)):
        accs[b % parts].update(batch, probs, maps, preds, halves, indices=idx)
    if parts > 1:
        accs = [pickle.loads(pickle.dumps(a.portable())) for a in accs]
    for other in accs[1:]:
        accs[0].merge(other)
    return accs[0]


def _results(parts: int = 1) -> dict:
    acc_in, acc_shift = _fed(0, True, parts), _fed(1, False, parts)
    acc_val, acc_val_shift = _fed(2, True, parts), _fed(3, False, parts)
    descriptions = {"val": {"set": "val", "images": 6}, "rain": {"set": "rain", "images": 6}}
    out = {
        "in_distribution": in_distribution_results(acc_in),
        "shift": shift_results(acc_in, acc_shift, METHODS, ALARMS),
        "selection": validation_selection(acc_val, {"rain": acc_val_shift}, METHODS, descriptions),
        "names": list(acc_in.names),
        "scores": acc_in.scores,
    }
    return json.loads(json.dumps(_nan_to_none(out)))


def _assert_close(a, b, path="", tol=1e-9):
    if isinstance(b, dict):
        assert isinstance(a, dict) and set(a) == set(b), f"{path}: keys {sorted(set(a) ^ set(b))}"
        for k in b:
            _assert_close(a[k], b[k], f"{path}.{k}", tol)
    elif isinstance(b, list):
        assert isinstance(a, list) and len(a) == len(b), f"{path}: length"
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_close(x, y, f"{path}[{i}]", tol)
    elif isinstance(b, float) and isinstance(a, float):
        assert math.isclose(a, b, rel_tol=tol, abs_tol=tol), f"{path}: {a} != {b}"
    else:
        assert a == b and type(a) is type(b), f"{path}: {a!r} != {b!r}"


def test_results_equal_the_numbers_recorded_before_the_refactor():
    golden = json.loads(gzip.decompress(GOLDEN.read_bytes()))
    _assert_close(_results(), golden)


def test_merged_parts_equal_one_accumulator_over_the_whole_set():
    one, merged = _results(1), _results(3)
    _assert_close(merged, one)
    a, b = _fed(0, True, 1), _fed(0, True, 2)
    assert [e["title"] for e in b.examples] == [e["title"] for e in a.examples] == ["img0", "img1", "img2"]
    for x, y in zip(a.examples, b.examples):
        for k in ("image", "label", "pred", "uncertainty"):
            np.testing.assert_array_equal(x[k], y[k])


if __name__ == "__main__" and "--write" in sys.argv:
    GOLDEN.parent.mkdir(exist_ok=True)
    GOLDEN.write_bytes(gzip.compress(json.dumps(_results(), sort_keys=True).encode(), mtime=0))
    print(f"wrote {GOLDEN}")
