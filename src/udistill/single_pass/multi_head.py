"""A multi-head (last-layer) ensemble: F prediction heads on member 0's encoder/decoder,
which stays frozen; one trunk pass, then F heads, reduced like the deep ensemble (mean,
population std, mutual information; :class:`~udistill.core.ensemble.RunningMoments`).

Heads (``single_pass.multi_head_channels``): the paper's head (3x3 conv-BN-ReLU, then a
1x1 to C classes) per member, of ``model.head_channels`` width by default; with 0, member
0's trained 3x3 block is shared (frozen) and only F 1x1 classifiers are new (the cheapest
last layer, at about the baseline's cost).

Training (the cheaper of the two recipes the issue allows): on labels, not distilled from
the members, so no member runs. Diversity comes from what a deep ensemble's members differ
in when their data is the same: head k starts from its own seeded initialisation, and sees
its own bootstrap replicate of the training images (a Poisson(1) weight per image, drawn
once from the seed): bagging. Cross-entropy at the image's resolution (the heads' logits
upsampled as the model's are), ``train.class_weights`` as the members use them, Adam. The
frozen trunk's features are computed once and kept in memory when they fit
``multi_head_cache_mb``, else recomputed each epoch; each epoch ends with a resumable state.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..core.ensemble import RunningMoments
from ..core.pixel_scores import PredictorOutput
from ..data.labels import IGNORE_INDEX
from ..errors import CheckpointError
from ..models.checkpoint import load_state, load_tensors, save_state, save_tensors
from ..models.heads import ConvHead, conv_bn_relu
from .common import OutSize, to_image, trunk

FORMAT = "udistill-multi-head/1"


class MultiHead(nn.Module):
    """F heads on one feature map. ``shared_block``: a (frozen) 3x3 block all heads share,
    then ``heads`` 1x1 classifiers; else ``heads`` full :class:`ConvHead` of ``head_channels``.

    Shape: forward features (N, D, h, w) -> logits (F, N, C, h, w)."""

    def __init__(
        self,
        in_channels: int,
        head_channels: int,
        num_classes: int,
        heads: int,
        shared_block: nn.Module | None = None,
    ):
        super().__init__()
        if heads < 1:
            raise ValueError(f"a multi-head ensemble needs at least one head, got {heads}")
        self.in_channels, self.num_classes = int(in_channels), int(num_classes)
        self.head_channels = int(head_channels)
        self.shared = shared_block
        if shared_block is not None:
            for p in shared_block.parameters():
                p.requires_grad_(False)
            self.heads = nn.ModuleList(nn.Conv2d(head_channels, num_classes, 1) for _ in range(heads))
        else:
            self.heads = nn.ModuleList(ConvHead(in_channels, head_channels, num_classes) for _ in range(heads))

    def __len__(self) -> int:
        return len(self.heads)

    def train(self, mode: bool = True):
        super().train(mode)
        if self.shared is not None:
            self.shared.eval()  # frozen: its BatchNorm statistics stay member 0's
        return self

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        x = self.shared(feats) if self.shared is not None else feats
        return torch.stack([h(x) for h in self.heads])

    def predict(self, feats: torch.Tensor, out_size: OutSize) -> PredictorOutput:
        """Mean softmax, population std over heads and mutual information at the image size.

        Shape: feats (N, D, h, w) -> probs, spread (N, C, H, W), mutual_info (N, H, W)."""
        x = self.shared(feats) if self.shared is not None else feats
        mom = RunningMoments()
        for h in self.heads:
            mom.update(torch.softmax(to_image(h(x), out_size).float(), 1))
        r = mom.result()
        return PredictorOutput(r.mean, r.std, r.mutual_info)


def build_multi_head(model: nn.Module, heads: int, channels: int | None, seed: int = 0) -> MultiHead:
    """F fresh heads for ``model``'s features (head k initialised from ``seed`` and k);
    ``channels`` 0 shares a frozen copy of the model's 3x3 head block."""
    cfg = model.cfg
    shared = None
    if channels == 0:
        shared = copy.deepcopy(model.head.block)
        width = cfg.head_channels
    else:
        width = int(channels or cfg.head_channels)
    with torch.random.fork_rng(devices=[]):  # the caller's random stream stays untouched
        torch.manual_seed(int(seed))
        mh = MultiHead(cfg.decoder_channels, width, model.num_classes, heads, shared)
        for k, h in enumerate(mh.heads):  # each head its own seeded start
            torch.manual_seed(int(seed) * 1_000_003 + k)
            for m in h.modules():
                if isinstance(m, nn.Conv2d):
                    m.reset_parameters()
    return mh


class MultiHeadPredictor(nn.Module):
    """Member 0's trunk once, then the F heads. Call with images (N, 3, H, W) in [0, 1];
    returns PredictorOutput (mean, std, MI)."""

    def __init__(self, model: nn.Module, heads: MultiHead):
        super().__init__()
        self.model, self.heads = model, heads

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> PredictorOutput:
        self.heads.eval()
        feats, size = trunk(self.model, images)
        return self.heads.predict(feats, size)


def bootstrap_weights(heads: int, images: int, seed: int) -> torch.Tensor:
    """Poisson(1) weight of each image for each head (bagging), drawn once from ``seed``.

    Shape: -> (F, images)."""
    gen = torch.Generator().manual_seed(int(seed) * 7919 + 1)
    return torch.poisson(torch.ones(heads, images), generator=gen)


def head_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    out_size: OutSize,
    weights: torch.Tensor,
    class_weights: torch.Tensor | None,
) -> torch.Tensor:
    """Sum over heads of each head's bootstrap-weighted, class-weighted cross-entropy.

    Shape: logits (F, N, C, h, w); labels (N, H, W); weights (F, N)."""
    total = logits.new_zeros(())
    valid = labels != IGNORE_INDEX
    pix_w = (
        class_weights[labels.clamp_max(len(class_weights) - 1)] if class_weights is not None else valid.float()
    ) * valid
    per_image_w = pix_w.flatten(1).sum(1)  # (N,)
    for k in range(logits.shape[0]):
        ce = F.cross_entropy(
            to_image(logits[k], out_size), labels, weight=class_weights, ignore_index=IGNORE_INDEX, reduction="none"
        )
        num = (ce.flatten(1).sum(1) * weights[k]).sum()
        den = (per_image_w * weights[k]).sum()
        if den > 0:
            total = total + num / den
    return total


def train_heads(
    model: nn.Module,
    heads: MultiHead,
    dataset,
    device,
    epochs: int,
    lr: float = 3e-3,
    batch_size: int = 8,
    class_weights: list[float] | None = None,
    seed: int = 0,
    cache_mb: float = 512,
    state_path: str | Path | None = None,
    log: Callable[[str], None] = print,
) -> list[dict]:
    """Train ``heads`` on ``model``'s frozen features of ``dataset`` (see the module
    docstring); resumes from ``state_path`` after the last finished epoch. Returns one
    ``{epoch, loss}`` per epoch (those of a resumed run included)."""
    heads.to(device)
    params = [p for p in heads.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=lr)
    start, history = 0, []
    if state_path is not None and Path(state_path).exists():
        st = load_state(state_path)
        heads.load_state_dict(st["heads"])
        opt.load_state_dict(st["optimizer"])
        start = int(st["epoch"])
        history = list(st.get("history") or [])
        log(f"[multi-head] resuming after epoch {start}")
    n = len(dataset)
    boot = bootstrap_weights(len(heads), n, seed)
    cw = torch.tensor(class_weights, dtype=torch.float32, device=device) if class_weights else None
    cache = _FeatureCache(model, dataset, device, cache_mb)
    for epoch in range(start, epochs):
        order = torch.randperm(n, generator=torch.Generator().manual_seed(int(seed) * 1009 + epoch))
        heads.train()
        losses = []
        for i in range(0, n, batch_size):
            idx = order[i : i + batch_size].tolist()
            feats, labels, size = cache.batch(idx)
            loss = head_loss(heads(feats), labels, size, boot[:, idx].to(device), cw)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()) / len(heads))
        mean = sum(losses) / max(1, len(losses))
        if not math.isfinite(mean):
            raise FloatingPointError(f"multi-head training diverged at epoch {epoch + 1} (loss {mean})")
        history.append({"epoch": epoch + 1, "loss": mean})
        if state_path is not None:
            state = {"heads": heads.state_dict(), "optimizer": opt.state_dict(), "epoch": epoch + 1, "history": history}
            save_state(state_path, state)
    heads.eval()
    return history


class _FeatureCache:
    """Member 0's frozen features of each image: kept in memory when all of them fit
    ``cache_mb`` (computed on first use), else recomputed per batch."""

    def __init__(self, model: nn.Module, dataset, device, cache_mb: float):
        self.model, self.dataset, self.device = model, dataset, device
        self.store: dict[int, tuple[torch.Tensor, torch.Tensor, OutSize]] | None = None
        first = dataset[0]["image"][None].to(device)
        f, _ = trunk(model, first)
        if f.numel() * 4 * len(dataset) <= cache_mb * 2**20:
            self.store = {}

    def _compute(self, idx: list[int]):
        items = [self.dataset[i] for i in idx]
        images = torch.stack([it["image"] for it in items]).to(self.device)
        labels = torch.stack([torch.as_tensor(it["label"]) for it in items]).long().to(self.device)
        feats, size = trunk(self.model, images)
        return feats, labels, size

    def batch(self, idx: list[int]) -> tuple[torch.Tensor, torch.Tensor, OutSize]:
        if self.store is None:
            return self._compute(idx)
        missing = [i for i in idx if i not in self.store]
        if missing:
            feats, labels, size = self._compute(missing)
            for j, i in enumerate(missing):
                self.store[i] = (feats[j], labels[j], size)
        got = [self.store[i] for i in idx]
        return torch.stack([g[0] for g in got]), torch.stack([g[1] for g in got]), got[0][2]


def save_multi_head(path: str | Path, heads: MultiHead, meta: dict) -> None:
    """Safetensors (never pickle) of the heads, with their shape and record as JSON metadata."""
    shape = {
        "heads": len(heads),
        "in_channels": heads.in_channels,
        "head_channels": heads.head_channels,
        "num_classes": heads.num_classes,
        "shared_block": heads.shared is not None,
    }
    save_tensors(path, dict(heads.state_dict()), {"format": FORMAT, "shape": shape, **meta})


def load_multi_head(path: str | Path) -> tuple[MultiHead, dict]:
    """Heads written by :func:`save_multi_head` (digest verified), in eval mode."""
    t, meta = load_tensors(path, what="multi-head ensemble")
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a udistill multi-head ensemble ({meta.get('format')!r})")
    try:
        s = meta["shape"]
        shared = conv_bn_relu(int(s["in_channels"]), int(s["head_channels"])) if s["shared_block"] else None
        mh = MultiHead(int(s["in_channels"]), int(s["head_channels"]), int(s["num_classes"]), int(s["heads"]), shared)
        mh.load_state_dict(t, strict=True)
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{path}: invalid multi-head ensemble ({exc})") from None
    return mh.eval(), meta
