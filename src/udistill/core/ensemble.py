"""The teacher: a deep ensemble whose per-pixel, per-class softmax statistics are the
distillation targets (paper, eq. 3).

For F members with softmax maps p_j = softmax(z_j / T):
- mean M = (1/F) sum_j p_j;
- population standard deviation Sigma = sqrt((1/F) sum_j (p_j - M)^2)  (divide by F, not F-1);
- mutual information MI = H(M) - (1/F) sum_j H(p_j) (epistemic part of the entropy).

Statistics are streamed over members with Welford's update (running mean and sum of
squared deviations), so memory holds two C x H x W maps, never an F x C x H x W stack;
members may stay on the CPU and visit the device in turn (``offload=True``), for
ensembles larger than device memory.

Members may be any segmentation model: an ``nn.Module`` returning logits (N, C, H, W), an
object with ``.logits`` (udistill's own models), a dict with ``"out"`` (torchvision's
segmentation models), or a plain callable mapping a batch of images to any of these
(:func:`member_logits`), so a team's existing ensemble is used as it is.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import nn

from ..errors import CheckpointError
from ..layout import member_paths
from ..models.checkpoint import load_model
from .pixel_scores import entropy as _entropy


class EnsembleOutput(NamedTuple):
    """Shape: mean, std (N, C, H, W); mutual_info, expected_entropy (N, H, W)."""

    mean: torch.Tensor
    std: torch.Tensor
    mutual_info: torch.Tensor
    expected_entropy: torch.Tensor

    @property
    def entropy(self) -> torch.Tensor:
        """Entropy of the mean, H(M) (total uncertainty). Shape: (N, H, W)."""
        return _entropy(self.mean)


class RunningMoments:
    """Welford's streaming mean and population std of probability maps over members."""

    def __init__(self):
        self.count = 0
        self.mean: torch.Tensor | None = None
        self.m2: torch.Tensor | None = None
        self.entropy_sum: torch.Tensor | None = None

    def update(self, prob: torch.Tensor) -> None:
        prob = prob.float()
        self.count += 1
        ent = _entropy(prob)
        if self.mean is None:
            self.mean = prob.clone()
            self.m2 = torch.zeros_like(prob)
            self.entropy_sum = ent
            return
        delta = prob - self.mean
        self.mean += delta / self.count
        self.m2 += delta * (prob - self.mean)
        self.entropy_sum += ent

    def result(self) -> EnsembleOutput:
        if self.count == 0:
            raise ValueError("no members were added")
        std = (self.m2 / self.count).clamp_min(0).sqrt()
        expected = self.entropy_sum / self.count
        mi = (_entropy(self.mean) - expected).clamp_min(0)
        return EnsembleOutput(self.mean, std, mi, expected)


def member_logits(output: Any) -> torch.Tensor:
    """The logits in a member's output: a tensor, ``.logits`` (udistill's models) or
    ``["out"]`` (torchvision's segmentation models).

    Shape: -> (N, C, H, W)."""
    if isinstance(output, torch.Tensor):
        logits = output
    elif isinstance(output, Mapping) and "out" in output:
        logits = output["out"]
    elif isinstance(getattr(output, "logits", None), torch.Tensor):
        logits = output.logits
    else:
        raise TypeError(
            f"a member returned {type(output).__name__}; expected logits (N, C, H, W) as a tensor, "
            "an object with .logits or a dict with 'out' (or pass a function that returns the logits)"
        )
    if logits.ndim != 4:
        raise ValueError(f"a member's logits must be (N, C, H, W), got shape {tuple(logits.shape)}")
    return logits


class CallableMember(nn.Module):
    """A member given as a plain function ``images -> logits`` (e.g. a model behind a
    preprocessing step); it holds no parameters of its own."""

    def __init__(self, fn: Callable[[torch.Tensor], Any]):
        super().__init__()
        self.fn = fn

    def forward(self, images: torch.Tensor) -> Any:
        return self.fn(images)


class Ensemble(nn.Module):
    """Members' softmax statistics at temperature T.

    ``members``: ``nn.Module``s or callables whose output :func:`member_logits` reads. Each
    member is put in eval mode when called (the teacher is never trained here); images
    reach the members as they are, so normalise inside the member if it expects that.

    Shape: images (N, 3, H, W) -> :class:`EnsembleOutput` (mean, std (N, C, H, W);
    mutual_info, expected_entropy, entropy (N, H, W)).
    """

    def __init__(
        self,
        members: Sequence[nn.Module | Callable[[torch.Tensor], Any]],
        temperature: float = 1.0,
        offload: bool = False,
    ):
        super().__init__()
        if not members:
            raise ValueError("an ensemble needs at least one member")
        self.members = nn.ModuleList(m if isinstance(m, nn.Module) else CallableMember(m) for m in members)
        self.temperature = float(temperature)
        self.offload = offload
        self.metadata: list[dict] = []
        self.eval()

    def __len__(self) -> int:
        return len(self.members)

    @classmethod
    def from_paths(
        cls,
        paths: Sequence[str | Path],
        temperature: float = 1.0,
        offload: bool = False,
        num_classes: int | None = None,
    ) -> Ensemble:
        models, metas = [], []
        for p in paths:
            m, meta = load_model(p, num_classes=num_classes)
            num_classes = m.num_classes  # every member must have the first one's classes
            models.append(m)
            metas.append(meta)
        ens = cls(models, temperature=temperature, offload=offload)
        ens.metadata = metas
        return ens

    @classmethod
    def from_run(
        cls, run_dir: str | Path, temperature: float = 1.0, offload: bool = False, members: int | None = None
    ) -> Ensemble:
        """Load finished members from ``run_dir/members/member-K/model.safetensors``."""
        paths = member_paths(run_dir)
        if members is not None:
            if len(paths) < members:
                raise CheckpointError(f"{run_dir}: {len(paths)} finished members, {members} needed (train them first)")
            paths = paths[:members]
        if not paths:
            raise CheckpointError(f"{run_dir}: no finished ensemble members under members/")
        return cls.from_paths(paths, temperature, offload)

    def fingerprint(self) -> str:
        """Identity of the members' weights (for cache invalidation)."""
        h = hashlib.sha256()
        for m in self.members:
            for k, v in m.state_dict().items():
                h.update(k.encode())
                h.update(v.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()[:4096])
                h.update(str(float(v.float().sum())).encode())
        h.update(str(self.temperature).encode())
        return h.hexdigest()[:16]

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> EnsembleOutput:
        device = images.device
        moments = RunningMoments()
        for member in self.members:
            if self.offload:
                member.to(device)
            member.eval()
            logits = member_logits(member(images))
            moments.update(torch.softmax(logits.float() / self.temperature, dim=1))
            if self.offload:
                member.to("cpu")
        return moments.result()

    @torch.no_grad()
    def member_probs(self, images: torch.Tensor):
        """Yield each member's softmax map in turn (for evaluation of single members)."""
        for member in self.members:
            member.eval()
            yield torch.softmax(member_logits(member(images)).float() / self.temperature, dim=1)
