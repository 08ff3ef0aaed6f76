"""Agreement between two per-pixel quantities (e.g. student σ vs teacher σ), streamed.

* Pearson: exact over all pixels, from running float64 moments merged batch by batch with
  Chan's parallel formulas (no catastrophic cancellation of naive sums).
* Spearman: on a bounded uniform random sample (reservoir via random keys: every pixel gets
  a uniform key and the ``max_samples`` smallest keys are kept), deterministic for a given
  seed and update sequence. When fewer pixels than ``max_samples`` were seen it is exact.
  With ``update(..., item=i)`` the keys of a pixel depend only on (seed, i) and its place in
  item i: meters fed disjoint items on several ranks and merged keep exactly the sample of
  one meter fed every item, in any order (the sample is kept sorted by key when read).
* Per class (``cls``, e.g. the predicted or true class id per pixel): the same two numbers
  per class, with a reservoir of ``per_class_samples`` per class.

Memory is bounded: O(max_samples + n_classes * per_class_samples).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..data.labels import IGNORE_INDEX
from .accumulator import Accumulator


def _np(x: Any, dtype=np.float64) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x).astype(dtype, copy=False).ravel()


class _Moments:
    """Vector of independent running (n, mean_x, mean_y, M2x, M2y, Cxy) accumulators."""

    def __init__(self, size: int = 0):
        self.a = np.zeros((6, size), np.float64)

    def grow(self, size: int) -> None:
        if size > self.a.shape[1]:
            self.a = np.concatenate([self.a, np.zeros((6, size - self.a.shape[1]))], axis=1)

    def add(self, b: np.ndarray) -> None:
        """Merge another (6, size) moment block (Chan et al.)."""
        self.grow(b.shape[1])
        a = self.a[:, : b.shape[1]]
        na, nb = a[0], b[0]
        n = na + nb
        with np.errstate(invalid="ignore", divide="ignore"):
            f = np.where(n > 0, nb / np.where(n > 0, n, 1), 0.0)
        dx = b[1] - a[1]
        dy = b[2] - a[2]
        cross = na * f  # na * nb / n
        a[3] += b[3] + dx * dx * cross
        a[4] += b[4] + dy * dy * cross
        a[5] += b[5] + dx * dy * cross
        a[1] += dx * f
        a[2] += dy * f
        a[0] = n

    @staticmethod
    def of_batch(x: np.ndarray, y: np.ndarray, group: np.ndarray | None, size: int) -> np.ndarray:
        if group is None:
            n = float(x.size)
            if n == 0:
                return np.zeros((6, 1))
            mx, my = x.mean(), y.mean()
            dx, dy = x - mx, y - my
            return np.array([[n], [mx], [my], [dx @ dx], [dy @ dy], [dx @ dy]])
        n = np.bincount(group, minlength=size).astype(np.float64)
        safe = np.maximum(n, 1)
        mx = np.bincount(group, weights=x, minlength=size) / safe
        my = np.bincount(group, weights=y, minlength=size) / safe
        dx = x - mx[group]
        dy = y - my[group]
        return np.stack(
            [
                n,
                mx,
                my,
                np.bincount(group, weights=dx * dx, minlength=size),
                np.bincount(group, weights=dy * dy, minlength=size),
                np.bincount(group, weights=dx * dy, minlength=size),
            ]
        )

    def pearson(self, i: int = 0) -> float:
        n, _, _, sxx, syy, sxy = self.a[:, i]
        if n < 2 or sxx <= 0 or syy <= 0:
            return math.nan
        return float(np.clip(sxy / math.sqrt(sxx * syy), -1.0, 1.0))


class _Reservoir:
    def __init__(self, capacity: int):
        self.capacity = int(capacity)
        self.keys = np.empty(0, np.float64)
        self.x = np.empty(0, np.float64)
        self.y = np.empty(0, np.float64)

    @property
    def threshold(self) -> float:
        """Keys at or above this cannot enter (inf while not full)."""
        return float(self.keys.max()) if self.keys.size >= self.capacity and self.capacity > 0 else math.inf

    def offer(self, keys: np.ndarray, x: np.ndarray, y: np.ndarray) -> None:
        if self.capacity <= 0 or keys.size == 0:
            return
        k = np.concatenate([self.keys, keys])
        xx = np.concatenate([self.x, x])
        yy = np.concatenate([self.y, y])
        if k.size > self.capacity:
            keep = np.argpartition(k, self.capacity - 1)[: self.capacity]
            k, xx, yy = k[keep], xx[keep], yy[keep]
        self.keys, self.x, self.y = k, xx, yy

    def canonical(self) -> tuple[np.ndarray, np.ndarray]:
        """(x, y) ordered by key: the same arrays whatever order the sample was offered in."""
        order = np.argsort(self.keys, kind="stable")
        self.keys, self.x, self.y = self.keys[order], self.x[order], self.y[order]
        return self.x, self.y

    def spearman(self) -> float:
        self.canonical()
        if self.x.size < 2 or np.all(self.x == self.x[0]) or np.all(self.y == self.y[0]):
            return math.nan
        from scipy.stats import spearmanr

        return float(spearmanr(self.x, self.y).statistic)


class CorrelationMeter(Accumulator):
    """Streamed Pearson + reservoir Spearman of ``x`` vs ``y``, globally and per class.

    ``update(x, y, cls=None, valid=None)``: same-shaped tensors/arrays (any device; copied to
    CPU); ``cls`` integer class id per pixel (ids < 0 or == ``ignore_index`` are left out of
    the per-class numbers only); ``valid`` bool mask drops pixels from everything.
    Non-finite x or y raise ``ValueError``.

    When merging meters from several ranks, either pass ``item`` (a global id of the image,
    e.g. its index: the merged result then equals a one-process run's) or give each meter a
    different ``seed`` (e.g. seed + rank) so their reservoir keys are independent.
    """

    def __init__(
        self,
        max_samples: int = 200_000,
        per_class_samples: int = 20_000,
        seed: int = 0,
        ignore_index: int = IGNORE_INDEX,
    ):
        self.max_samples = int(max_samples)
        self.per_class_samples = int(per_class_samples)
        self.seed = int(seed)
        self.ignore_index = int(ignore_index)
        self.reset()

    def reset(self) -> None:
        self._rng = np.random.default_rng(self.seed)
        self._global = _Moments(1)
        self._cls = _Moments(0)
        self._res = _Reservoir(self.max_samples)
        self._cls_res: dict[int, _Reservoir] = {}

    @property
    def state_nbytes(self) -> int:
        n = self._global.a.nbytes + self._cls.a.nbytes
        for r in [self._res, *self._cls_res.values()]:
            n += r.keys.nbytes + r.x.nbytes + r.y.nbytes
        return int(n)

    def update(self, x: Any, y: Any, cls: Any = None, valid: Any = None, item: int | None = None) -> None:
        xa, ya = _np(x), _np(y)
        if xa.shape != ya.shape:
            raise ValueError(f"x has {xa.size} values, y {ya.size}")
        ca = None if cls is None else _np(cls, np.int64)
        if ca is not None and ca.shape != xa.shape:
            raise ValueError("cls must have the same shape as x")
        if valid is not None:
            v = _np(valid, bool)
            if v.shape != xa.shape:
                raise ValueError("valid must have the same shape as x")
            xa, ya = xa[v], ya[v]
            ca = None if ca is None else ca[v]
        if xa.size == 0:
            return
        if not (np.isfinite(xa).all() and np.isfinite(ya).all()):
            raise ValueError("x and y must be finite")

        self._global.add(_Moments.of_batch(xa, ya, None, 1))
        keys = (
            self._rng.random(xa.size) if item is None else np.random.default_rng((self.seed, int(item))).random(xa.size)
        )
        thr = self._res.threshold
        m = keys < thr
        self._res.offer(keys[m], xa[m], ya[m])

        if ca is None:
            return
        ok = (ca >= 0) & (ca != self.ignore_index)
        if not ok.all():
            xa, ya, ca, keys = xa[ok], ya[ok], ca[ok], keys[ok]
        if ca.size == 0:
            return
        size = int(ca.max()) + 1
        self._cls.add(_Moments.of_batch(xa, ya, ca, size))
        thr_cls = np.full(size, np.inf)
        for c, r in self._cls_res.items():
            if c < size:
                thr_cls[c] = r.threshold
        m = keys < thr_cls[ca]
        if not m.any():
            return
        order = np.argsort(ca[m], kind="stable")
        cm, km, xm, ym = ca[m][order], keys[m][order], xa[m][order], ya[m][order]
        bounds = np.flatnonzero(np.diff(cm)) + 1
        for lo, hi in zip(np.r_[0, bounds], np.r_[bounds, cm.size]):
            c = int(cm[lo])
            r = self._cls_res.setdefault(c, _Reservoir(self.per_class_samples))
            r.offer(km[lo:hi], xm[lo:hi], ym[lo:hi])

    def merge(self, other: CorrelationMeter) -> CorrelationMeter:
        self._global.add(other._global.a)
        if other._cls.a.shape[1]:
            self._cls.add(other._cls.a)
        self._res.offer(other._res.keys, other._res.x, other._res.y)
        for c, r in other._cls_res.items():
            mine = self._cls_res.setdefault(c, _Reservoir(self.per_class_samples))
            mine.offer(r.keys, r.x, r.y)
        return self

    def ratio_by_decile(self, deciles: int = 10) -> list[dict]:
        """Scale of ``x`` against ``y`` where ``y`` is small and where it is large: the pixels
        (of the uniform sample) are split into deciles of ``y``; per decile the median of
        ``x / y``, with the decile's ``y`` range. (x = student U, y = teacher U in evaluation:
        a ratio of 1 means the right scale.)"""
        x, y = self._res.canonical()
        if y.size < deciles:
            return []
        edges = np.quantile(y, np.linspace(0, 1, deciles + 1))
        order = np.argsort(y, kind="stable")
        out = []
        for i, idx in enumerate(np.array_split(order, deciles)):
            ratio = x[idx] / np.maximum(y[idx], 1e-12)
            out.append(
                {
                    "decile": i + 1,
                    "y_low": float(edges[i]),
                    "y_high": float(edges[i + 1]),
                    "median_ratio": float(np.median(ratio)),
                    "median_x": float(np.median(x[idx])),
                    "median_y": float(np.median(y[idx])),
                    "n": int(idx.size),
                }
            )
        return out

    def binned_means(self, bins: int = 24) -> dict:
        """Mean ``x`` per log-spaced bin of ``y`` (from the sample), for the x-vs-y figure:
        ``{y_edges, mean_x, mean_y, count}``."""
        x, y = self._res.canonical()
        pos = y[y > 0]
        if pos.size < 2 or pos.min() == pos.max():
            return {"y_edges": [], "mean_x": [], "mean_y": [], "count": []}
        edges = np.geomspace(max(pos.min(), 1e-8), pos.max(), bins + 1)
        b = np.clip(np.searchsorted(edges, y, side="right") - 1, 0, bins - 1)
        cnt = np.bincount(b, minlength=bins).astype(np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            mx = np.bincount(b, weights=x, minlength=bins) / cnt
            my = np.bincount(b, weights=y, minlength=bins) / cnt
        f = lambda a: [None if not np.isfinite(v) else float(v) for v in a]  # noqa: E731
        return {"y_edges": f(edges), "mean_x": f(mx), "mean_y": f(my), "count": [int(c) for c in cnt]}

    def compute(self) -> dict:
        """``{pearson, spearman, n, n_sampled, per_class: {id: {pearson, spearman, n}}}``;
        nan where undefined (fewer than 2 pixels or a constant input)."""
        per_class = {}
        for c in range(self._cls.a.shape[1]):
            n = int(self._cls.a[0, c])
            if n == 0:
                continue
            r = self._cls_res.get(c)
            per_class[c] = {
                "pearson": self._cls.pearson(c),
                "spearman": r.spearman() if r is not None else math.nan,
                "n": n,
            }
        return {
            "pearson": self._global.pearson(0),
            "spearman": self._res.spearman(),
            "n": int(self._global.a[0, 0]),
            "n_sampled": int(self._res.x.size),
            "per_class": per_class,
        }
