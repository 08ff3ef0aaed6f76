"""Feature density in the manner of Deep Deterministic Uncertainty (Mukhoti et al., 2023):
class-conditional Gaussians on the baseline's decoder features (the map that enters its
segmentation head), fitted on the training images, and a per-pixel score from them.

Fit (:class:`DensityAccumulator`): labels are nearest-downsampled to the feature map (ignore
pixels dropped); per class the count, mean and sum of squared deviations (D x D) are
streamed in float64 with Chan's pairwise update, so memory holds C x D x D numbers whatever
the data set's size, and the result equals a direct fit (``np.mean`` / ``np.cov``).

Covariance (``single_pass.density_covariance``): ``shared`` = the pooled within-class
covariance Σ = Σ_c (n_c − 1) S_c / (N − K) (DDU's LDA form; K classes present), or
``per-class`` = each class's own S_c (classes with fewer than 2 pixels are left out).
Jitter: ``jitter`` × the mean variance (trace / D) is added to the diagonal, and multiplied
by 10 until the Cholesky factorisation succeeds (at most 8 times); the value used is stored.

Score (``single_pass.density_score``), higher = less familiar:

- ``log_density``: −log Σ_c π_c N(x; μ_c, Σ_c), with π_c the class's share of the training
  pixels (the Gaussian mixture density DDU thresholds);
- ``mahalanobis``: min_c (x − μ_c)ᵀ Σ_c⁻¹ (x − μ_c), the squared distance to the closest
  class mean (Lee et al., 2018).

The score is upsampled to the image like the head's logits, then mapped to [0, 1] by
sigmoid((s − q99) / ((q99 − q50) / 4)), q50 and q99 being its median and 99th percentile on
a seeded sample of the training pixels' features stored at fit time: monotone (AUROCs and
rankings are those of s), about 0.02 at the training median and 0.5 at its 99th
percentile, and log-linear below (where the evaluation's log-spaced bins resolve it).
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader

from ..core.pixel_scores import PredictorOutput
from ..data.labels import IGNORE_INDEX
from ..errors import CheckpointError
from ..models.checkpoint import load_tensors, save_tensors
from .common import OutSize, labels_to_features, to_image, trunk

COVARIANCES = ("shared", "per-class")
SCORES = ("log_density", "mahalanobis")
FORMAT = "udistill-feature-density/1"


class DensityAccumulator:
    """Per-class count, mean and sum of squared deviations of feature vectors, float64,
    streamed; plus a seeded bottom-k sample of ``reservoir`` feature vectors (for placing the
    score's [0, 1] map)."""

    def __init__(self, num_classes: int, dim: int, reservoir: int = 20000, seed: int = 0):
        self.num_classes, self.dim = int(num_classes), int(dim)
        self.count = torch.zeros(num_classes, dtype=torch.float64)
        self.mean = torch.zeros(num_classes, dim, dtype=torch.float64)
        self.m2 = torch.zeros(num_classes, dim, dim, dtype=torch.float64)
        self.reservoir = int(reservoir)
        self.sample = torch.zeros(0, dim)
        self.keys = torch.zeros(0)
        self.gen = torch.Generator().manual_seed(int(seed))
        self.images = 0

    def update(self, feats: torch.Tensor, labels: torch.Tensor) -> None:
        """Shape: feats (N, D, h, w); labels (N, h, w) in the model's classes, IGNORE_INDEX skipped."""
        x = feats.detach().permute(0, 2, 3, 1).reshape(-1, self.dim).cpu()
        y = labels.reshape(-1).cpu().long()
        keep = (y != IGNORE_INDEX) & (y >= 0) & (y < self.num_classes)
        x, y = x[keep], y[keep]
        self.images += feats.shape[0]
        xd = x.double()
        for c in torch.unique(y).tolist():
            xc = xd[y == c]
            n_b = float(xc.shape[0])
            mean_b = xc.mean(0)
            d = xc - mean_b
            m2_b = d.T @ d
            n_a = float(self.count[c])
            n = n_a + n_b
            delta = mean_b - self.mean[c]
            self.mean[c] += delta * (n_b / n)
            self.m2[c] += m2_b + torch.outer(delta, delta) * (n_a * n_b / n)
            self.count[c] = n
        if self.reservoir > 0 and x.shape[0]:
            keys = torch.rand(x.shape[0], generator=self.gen)
            allk = torch.cat([self.keys, keys])
            allx = torch.cat([self.sample, x.float()])
            order = torch.argsort(allk)[: self.reservoir]
            self.keys, self.sample = allk[order], allx[order]

    def present(self, minimum: int = 1) -> torch.Tensor:
        """Indices of the classes with at least ``minimum`` pixels."""
        return (self.count >= minimum).nonzero().squeeze(1)

    def covariance(self, kind: str = "shared") -> torch.Tensor:
        """The unjittered covariance: (1, D, D) pooled, or (K, D, D) per class present (≥ 2 pixels)."""
        if kind == "shared":
            k = self.present(1)
            dof = float(self.count[k].sum()) - len(k)
            if dof <= 0:
                raise ValueError("too few labelled feature pixels for a covariance")
            return (self.m2[k].sum(0) / dof)[None]
        if kind == "per-class":
            k = self.present(2)
            return self.m2[k] / (self.count[k] - 1)[:, None, None]
        raise ValueError(f"unknown covariance '{kind}' (known: {', '.join(COVARIANCES)})")


def _factor(cov: torch.Tensor, jitter: float) -> tuple[torch.Tensor, torch.Tensor, float]:
    """(L⁻¹, log det, relative jitter used) of cov + jitter · mean variance · I (float64)."""
    d = cov.shape[-1]
    scale = float(torch.diagonal(cov).mean()) or 1.0
    eye = torch.eye(d, dtype=cov.dtype)
    j = float(jitter)
    for _ in range(9):
        chol, info = torch.linalg.cholesky_ex(cov + j * scale * eye)
        if int(info) == 0:
            inv = torch.linalg.solve_triangular(chol, eye, upper=False)
            return inv, 2 * torch.log(torch.diagonal(chol)).sum(), j
        j = max(j * 10, 1e-12)
    raise ValueError("the feature covariance is not positive definite even with jitter")


class GaussianDensity(nn.Module):
    """Fitted class-conditional Gaussians and the score map (see the module docstring).

    Buffers: ``means`` (K, D), ``log_prior`` (K,), ``classes`` (K,), ``whiten`` (1 or K, D, D)
    = L⁻¹ of each covariance, ``logdet`` (1 or K,), ``center``, ``scale`` (the [0, 1] map)."""

    def __init__(
        self,
        means: torch.Tensor,
        log_prior: torch.Tensor,
        classes: torch.Tensor,
        whiten: torch.Tensor,
        logdet: torch.Tensor,
        score: str = "log_density",
        center: float = 0.0,
        scale: float = 1.0,
    ):
        super().__init__()
        if score not in SCORES:
            raise ValueError(f"unknown density score '{score}' (known: {', '.join(SCORES)})")
        self.score = score
        self.register_buffer("means", means.float().contiguous())
        self.register_buffer("log_prior", log_prior.float().contiguous())
        self.register_buffer("classes", classes.long())
        self.register_buffer("whiten", whiten.float().contiguous())
        self.register_buffer("logdet", logdet.float().reshape(-1))
        self.register_buffer("center", torch.tensor(float(center)))
        self.register_buffer("scale", torch.tensor(float(scale)))

    @property
    def dim(self) -> int:
        return int(self.means.shape[1])

    def squared_distances(self, feats: torch.Tensor) -> torch.Tensor:
        """Mahalanobis distance² to every class mean. Shape: (N, D, h, w) -> (N, K, h, w)."""
        x = feats.float()
        if self.whiten.shape[0] == 1:  # shared: whiten once, then one 1x1 "conv" to K channels
            w = self.whiten[0]
            z = torch.einsum("ed,ndhw->nehw", w, x)
            m = self.means @ w.T
            cross = torch.einsum("kd,ndhw->nkhw", m, z)
            d2 = (z * z).sum(1, keepdim=True) - 2 * cross + (m * m).sum(1)[None, :, None, None]
            return d2.clamp_min(0)
        out = []
        for k in range(self.means.shape[0]):
            z = torch.einsum("ed,ndhw->nehw", self.whiten[k], x - self.means[k][None, :, None, None])
            out.append((z * z).sum(1))
        return torch.stack(out, 1)

    def raw_score(self, feats: torch.Tensor) -> torch.Tensor:
        """The unmapped score s (higher = less familiar). Shape: (N, D, h, w) -> (N, h, w)."""
        d2 = self.squared_distances(feats)
        if self.score == "mahalanobis":
            return d2.min(1).values
        log_n = -0.5 * d2 - 0.5 * self.logdet[None, :, None, None] - 0.5 * self.dim * math.log(2 * math.pi)
        return -torch.logsumexp(log_n + self.log_prior[None, :, None, None], 1)

    def to_unit(self, s: torch.Tensor) -> torch.Tensor:
        """The monotone [0, 1] map of the score. Shape: any -> same."""
        return torch.sigmoid((s - self.center) / self.scale)

    def forward(self, feats: torch.Tensor, out_size: OutSize) -> torch.Tensor:
        """Shape: feats (N, D, h, w) -> map (N, H, W) in [0, 1]."""
        s = to_image(self.raw_score(feats)[:, None], out_size)[:, 0]
        return self.to_unit(s)

    def place(self, sample: torch.Tensor) -> dict:
        """Set the [0, 1] map from training features (see the module docstring).

        Shape: sample (P, D)."""
        if sample.shape[0] == 0:
            return {"q50": None, "q99": None}
        s = torch.cat([self.raw_score(c.T[None, :, :, None])[0, :, 0] for c in sample.split(4096)]).double()
        q50, q99 = (float(torch.quantile(s, q)) for q in (0.5, 0.99))
        self.center.fill_(q99)
        self.scale.fill_(max((q99 - q50) / 4, 1e-6 * max(1.0, abs(q99))))
        return {"q50": q50, "q99": q99}


def fit_density(
    acc: DensityAccumulator, covariance: str = "shared", jitter: float = 1e-4, score: str = "log_density"
) -> tuple[GaussianDensity, dict]:
    """The fitted density and what the fit used (jitter, classes, pixels, score placement)."""
    covs = acc.covariance(covariance)
    k = acc.present(1) if covariance == "shared" else acc.present(2)
    factors = [_factor(c, jitter) for c in covs]
    whiten = torch.stack([f[0] for f in factors])
    logdet = torch.stack([f[1] for f in factors])
    prior = acc.count[k] / acc.count[k].sum()
    density = GaussianDensity(acc.mean[k], torch.log(prior), k, whiten, logdet, score)
    placed = density.place(acc.sample)
    info = {
        "covariance": covariance,
        "score": score,
        "jitter": float(jitter),
        "jitter_used": max(f[2] for f in factors),
        "classes": k.tolist(),
        "pixels": int(acc.count.sum()),
        "images": acc.images,
        "dim": acc.dim,
        "placement": {**placed, "sample": int(acc.sample.shape[0])},
    }
    return density, info


@torch.no_grad()
def accumulate_features(
    model: nn.Module,
    dataset,
    device,
    num_classes: int,
    batch_size: int = 8,
    reservoir: int = 20000,
    seed: int = 0,
    num_workers: int = 0,
) -> DensityAccumulator:
    """One streaming pass of ``model``'s decoder features over ``dataset`` (its labels
    downsampled to the feature map)."""
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers)
    acc = None
    for batch in loader:
        feats, size = trunk(model, batch["image"].to(device))
        if acc is None:
            acc = DensityAccumulator(num_classes, feats.shape[1], reservoir, seed)
        acc.update(feats.cpu(), labels_to_features(batch["label"], size, tuple(feats.shape[-2:])))
    if acc is None:
        raise ValueError("no training images to fit the feature density on")
    return acc


def save_density(path: str | Path, density: GaussianDensity, meta: dict) -> None:
    """Safetensors (never pickle) with the fit's record as JSON metadata."""
    save_tensors(path, dict(density.state_dict()), {"format": FORMAT, "score": density.score, **meta})


def load_density(path: str | Path) -> tuple[GaussianDensity, dict]:
    """A density written by :func:`save_density` (digest verified)."""
    t, meta = load_tensors(path, what="feature density")
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a udistill feature density ({meta.get('format')!r})")
    try:
        d = GaussianDensity(t["means"], t["log_prior"], t["classes"], t["whiten"], t["logdet"], meta["score"])
        d.load_state_dict(t)
    except (KeyError, RuntimeError, ValueError) as exc:
        raise CheckpointError(f"{path}: invalid feature density ({exc})") from None
    return d.eval(), meta


class FeatureDensityPredictor(nn.Module):
    """The baseline's softmax and the density map of its decoder features, in one pass.

    Call with images (N, 3, H, W) in [0, 1]; returns PredictorOutput, probs (N, C, H, W),
    density (N, H, W)."""

    def __init__(self, model: nn.Module, density: GaussianDensity):
        super().__init__()
        self.model, self.density = model, density

    def from_features(self, feats: torch.Tensor, out_size: OutSize, probs: torch.Tensor) -> PredictorOutput:
        return PredictorOutput(probs, density=self.density(feats, out_size))

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> PredictorOutput:
        feats, size = trunk(self.model, images)
        probs = torch.softmax(self.model.heads_forward(feats, size).logits.float(), 1)
        return self.from_features(feats, size, probs)
