"""The metric accumulators' shared shape (update / compute / merge / reset, additive state as
one tensor that ranks can sum): each against the plain computation of the same numbers
(numpy, scikit-learn, :func:`image_scores`) with known answers, and parts merged (or their
state tensors summed, as ``all_reduce`` does) against one accumulator over the union."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.metrics import average_precision_score, confusion_matrix, roc_auc_score

from udistill.metrics import (
    Accumulator,
    BinnedPixelMetrics,
    BinnedState,
    ClassMeans,
    ConfusionMatrix,
    CorrelationMeter,
    ImageScores,
    PerImage,
    PredictorCalibration,
    SigmaHistogram2D,
    image_scores,
)

C, N, H, W, BATCHES = 4, 2, 6, 8, 6


def _batches():
    """Seeded batches: (indices, probs (N, C, H, W), target (N, H, W) with ignore pixels, score (N, H, W))."""
    g = torch.Generator().manual_seed(0)
    for b in range(BATCHES):
        probs = torch.softmax(2 * torch.randn(N, C, H, W, generator=g), 1)
        target = torch.randint(0, C, (N, H, W), generator=g)
        target[torch.rand(N, H, W, generator=g) < 0.1] = 255
        score = torch.rand(N, H, W, generator=g, dtype=torch.float64) ** 4
        yield list(range(b * N, (b + 1) * N)), probs, target, score.float()


def additive() -> dict:
    """The accumulators whose state adds up (what all_reduce sums)."""
    return {
        "confusion": lambda: ConfusionMatrix(C),
        "calibration": lambda: PredictorCalibration(),
        "pixel": lambda: BinnedPixelMetrics(bins=256, spacing="log", floor=1e-6),
        "sigma2d": lambda: SigmaHistogram2D(bins=16, high=1.0),
        "class_means": lambda: ClassMeans(C),
    }


def feed(name: str, acc, part: int = 0, parts: int = 1) -> None:
    """Feed ``acc`` the batches ``part``, ``part + parts``, ... (all of them by default)."""
    for b, (idx, probs, target, score) in enumerate(_batches()):
        if b % parts != part:
            continue
        pred = probs.argmax(1)
        wrong = pred != target
        if name == "confusion":
            acc.update(pred, target)
        elif name == "calibration":
            acc.update(probs, target)
        elif name == "pixel":
            acc.update(score, wrong, confidence=probs.max(1).values, probs=probs, target=target)
        elif name == "sigma2d":
            acc.update(score, probs[:, 0], wrong, valid=target != 255)
        elif name == "class_means":
            acc.update(pred, score)
        elif name == "image":
            acc.update(score, idx)
        elif name == "names":
            acc.update(idx, [f"img{i}" for i in idx])
        else:
            raise KeyError(name)


PER_IMAGE = {"image": ImageScores, "names": PerImage, "names_limited": lambda: PerImage(limit=5)}


def _all_pixels():
    parts = list(zip(*_batches()))
    probs, target, score = (torch.cat(p) for p in parts[1:])
    keep = target != 255
    return probs, target, score, keep


def test_every_accumulator_has_the_torchmetrics_shape():
    makers = [*additive().values(), *PER_IMAGE.values(), CorrelationMeter]
    for make in makers:
        acc = make()
        assert isinstance(acc, Accumulator)
        for method in ("update", "compute", "merge", "reset", "portable", "all_reduce"):
            assert callable(getattr(acc, method))
    for make in additive().values():
        acc = make()
        assert isinstance(acc.state_tensor(), torch.Tensor)
        if isinstance(acc, BinnedState):
            assert acc.state_nbytes == acc.state_tensor().numel() * 8


@pytest.mark.parametrize("name", sorted(additive()))
def test_merged_parts_and_summed_state_equal_one_accumulator(name):
    make = additive()[name]
    one = make()
    feed(name, one)
    parts = [make() for _ in range(3)]
    for k, acc in enumerate(parts):
        feed(name, acc, k, 3)
    summed = make()  # what all_reduce does: the state tensors added, then loaded
    summed.load_state_tensor(sum(p.state_tensor() for p in parts))
    merged = parts[2].merge(parts[0]).merge(parts[1])  # any order
    _close(merged.compute(), one.compute())
    _close(summed.compute(), one.compute())
    with pytest.raises(ValueError):
        summed.load_state_tensor(torch.zeros(3))


@pytest.mark.parametrize("name", sorted(PER_IMAGE))
def test_per_image_parts_merge_back_into_image_order(name):
    make = PER_IMAGE[name]
    fed = "names" if name.startswith("names") else name
    one = make()
    feed(fed, one)
    parts = [make() for _ in range(2)]
    for k, acc in enumerate(parts):
        feed(fed, acc, k, 2)
    merged = parts[1].merge(parts[0])
    assert merged.compute() == one.compute()
    if name == "names_limited":
        assert one.compute() == [f"img{i}" for i in range(5)]


def test_additive_state_refuses_another_configuration():
    with pytest.raises(ValueError, match="cannot merge"):
        BinnedPixelMetrics(bins=256).merge(BinnedPixelMetrics(bins=128))
    with pytest.raises(ValueError, match="cannot merge"):
        PredictorCalibration(ece_bins=15).merge(PredictorCalibration(ece_bins=10))
    with pytest.raises(ValueError, match="cannot merge"):
        ClassMeans(3).merge(ClassMeans(4))


def test_all_reduce_in_one_process_changes_nothing():
    for name, make in additive().items():
        acc = make()
        feed(name, acc)
        before = acc.compute()
        _close(acc.all_reduce().compute(), before)


# ------------------------------------------------------------------ known answers


def test_confusion_matrix_equals_sklearn():
    probs, target, _, keep = _all_pixels()
    acc = ConfusionMatrix(C)
    feed("confusion", acc)
    m = confusion_matrix(target[keep].numpy(), probs.argmax(1)[keep].numpy(), labels=range(C))
    np.testing.assert_array_equal(acc.matrix.numpy(), m)
    iou = np.diag(m) / (m.sum(0) + m.sum(1) - np.diag(m))
    assert acc.compute()["miou"] == pytest.approx(iou.mean(), abs=1e-12)


def test_calibration_equals_the_plain_formulas():
    probs, target, _, keep = _all_pixels()
    acc = PredictorCalibration()
    feed("calibration", acc)
    p = probs.movedim(1, -1)[keep].double().numpy()
    t = target[keep].numpy()
    conf, pred = p.max(1), p.argmax(1)
    correct = pred == t
    b = np.clip(np.ceil(conf * 15) - 1, 0, 14).astype(int)
    ece = sum(abs(correct[b == k].sum() - conf[b == k].sum()) for k in range(15)) / t.size
    onehot = np.eye(C)[t]
    r = acc.compute()
    assert r["ece"] == pytest.approx(ece, abs=1e-9)
    assert r["error_rate"] == pytest.approx(1 - correct.mean(), abs=1e-12)
    assert r["brier"] == pytest.approx(((p - onehot) ** 2).sum(1).mean(), abs=1e-6)
    assert r["nll"] == pytest.approx(-np.log(p[np.arange(t.size), t]).mean(), abs=1e-6)


def test_log_binned_pixel_metrics_equal_sklearn_when_every_score_has_its_own_bin():
    """Scores on a log grid (one per bin, down to 1e-5: the small uncertainties of confident
    models) with ties within each score: AUROC / AUPR equal scikit-learn's to 1e-12."""
    rng = np.random.default_rng(0)
    levels = np.geomspace(1e-5, 0.9, 60) * 1.0005  # away from the bin edges
    s = rng.choice(levels, 5000)
    wrong = rng.random(s.size) < 0.05 + 0.5 * np.sqrt(s)
    acc = BinnedPixelMetrics(bins=4096, spacing="log", floor=1e-6)
    acc.update(s, wrong)
    r = acc.compute()
    assert r["auroc"] == pytest.approx(roc_auc_score(wrong, s), abs=1e-12)
    assert r["aupr"] == pytest.approx(average_precision_score(wrong, s), abs=1e-12)
    assert r["error_rate"] == pytest.approx(wrong.mean(), abs=1e-15)
    # E-AURC: AURC (ties in random order) minus the AURC of a perfect ranking
    order = np.argsort(s, kind="stable")
    ss, w = s[order], wrong[order].astype(float)
    cum, n = np.cumsum(w), s.size
    expected, start = cum.copy(), 0
    for end in np.r_[np.flatnonzero(np.diff(ss)) + 1, n]:
        prev = cum[start - 1] if start else 0.0
        expected[start:end] = prev + (cum[end - 1] - prev) * np.arange(1, end - start + 1) / (end - start)
        start = end
    aurc = np.mean(expected / np.arange(1, n + 1))
    optimum = np.mean(np.cumsum(np.sort(w)) / np.arange(1, n + 1))
    assert r["aurc"] == pytest.approx(aurc, abs=1e-9)
    assert r["eaurc"] == pytest.approx(aurc - optimum, abs=1e-9)


def test_class_means_and_image_scores_equal_the_plain_computation():
    probs, _, score, _ = _all_pixels()
    means = ClassMeans(C + 1)  # one class never predicted: nan
    feed("class_means", means)
    pred = probs.argmax(1).numpy().ravel()
    u = score.double().numpy().ravel()
    expect = [u[pred == c].mean() for c in range(C)]
    got = means.compute()
    np.testing.assert_allclose(got[:C], expect, rtol=1e-12)
    assert math.isnan(got[C])
    scores = ImageScores()
    feed("image", scores)
    for i in range(score.shape[0]):
        for k, v in image_scores(score[i]).items():
            assert scores.compute()[k][i] == v


@pytest.mark.slow  # two gloo processes
def test_all_reduce_across_two_processes_equals_merge(tmp_path):
    import torch.multiprocessing as mp

    sys.path.insert(0, str(Path(__file__).parent))
    import accumulator_worker

    mp.spawn(accumulator_worker.run, args=(2, str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True)
    for rank in (0, 1):
        got = torch.load(tmp_path / f"rank{rank}.pt", weights_only=False)
        for name, make in additive().items():
            one = make()
            feed(name, one)
            _close(got[name], one.compute())


def _close(a, b, path=""):
    if isinstance(b, dict):
        assert set(a) == set(b), path
        for k in b:
            _close(a[k], b[k], f"{path}.{k}")
    elif isinstance(b, (list, tuple)):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            _close(x, y, f"{path}[{i}]")
    elif isinstance(b, float):
        assert (math.isnan(a) and math.isnan(b)) or math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12), f"{path}: {a} {b}"
    else:
        assert a == b, f"{path}: {a} {b}"
