"""BatchNorm statistics over the batch of every DDP rank (SyncBatchNorm), on any device.

With DistributedDataParallel each rank normalises with the statistics of its own slice of
the batch; at small per-GPU batches (segmentation at 2048x1024) those are noisy. Synchronised
BatchNorm computes the mean and variance over all ranks' slices. On CUDA this is timm's
conversion to :class:`torch.nn.SyncBatchNorm` (it also keeps the activation inside timm's
``BatchNormAct2d``, which torch's own conversion drops); torch's SyncBatchNorm runs only on
GPUs, so on other devices (CPU with gloo) layers become :class:`CrossRankBatchNorm2d`,
which does the same with two differentiable all-reduces.
"""

from __future__ import annotations

import torch
from torch import nn

from ..sharding import world


class CrossRankBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d whose training statistics come from every rank's batch (any device, any backend).

    Shape: input (N, C, H, W); N may differ between ranks. Outside training, or without a
    process group of two or more, it is plain BatchNorm2d. Keeps ``drop``/``act`` of a
    converted timm ``BatchNormAct2d``.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and world()[1] > 1:
            y = self._cross_rank(x)
        else:
            y = super().forward(x)
        if hasattr(self, "drop"):
            y = self.drop(y)
        if hasattr(self, "act"):
            y = self.act(y)
        return y

    def _cross_rank(self, x: torch.Tensor) -> torch.Tensor:
        from torch.distributed.nn.functional import all_reduce  # differentiable: gradients reach every rank

        c = x.shape[1]
        xf = x.float()
        count = torch.tensor([x.numel() // c], dtype=torch.float32, device=x.device)
        sums = all_reduce(torch.cat([xf.sum((0, 2, 3)), count]))
        n = sums[c]
        mean = sums[:c] / n
        centred = xf - mean[None, :, None, None]
        var = all_reduce((centred * centred).sum((0, 2, 3))) / n  # biased, as BatchNorm normalises with
        if self.track_running_stats:
            self._update_running_stats(mean.detach(), var.detach(), n.detach())
        y = centred * torch.rsqrt(var + self.eps)[None, :, None, None]
        if self.affine:
            y = y * self.weight[None, :, None, None] + self.bias[None, :, None, None]
        return y.to(x.dtype)

    @torch.no_grad()
    def _update_running_stats(self, mean: torch.Tensor, var: torch.Tensor, n: torch.Tensor) -> None:
        self.num_batches_tracked.add_(1)
        factor = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
        unbiased = var * (n / (n - 1).clamp_min(1))
        self.running_mean.mul_(1 - factor).add_(mean.to(self.running_mean.dtype), alpha=factor)
        self.running_var.mul_(1 - factor).add_(unbiased.to(self.running_var.dtype), alpha=factor)


def _to_cross_rank(module: nn.modules.batchnorm._BatchNorm) -> CrossRankBatchNorm2d:
    """The same layer (same parameters and buffers, shared) computing cross-rank statistics."""
    out = CrossRankBatchNorm2d(
        module.num_features, module.eps, module.momentum, module.affine, module.track_running_stats
    )
    if module.affine:
        out.weight, out.bias = module.weight, module.bias
    if module.track_running_stats:
        out.running_mean, out.running_var = module.running_mean, module.running_var
        out.num_batches_tracked = module.num_batches_tracked
    for name in ("drop", "act"):  # timm BatchNormAct2d
        if hasattr(module, name):
            setattr(out, name, getattr(module, name))
    out.train(module.training)
    return out


def convert_cross_rank_batchnorm(module: nn.Module) -> nn.Module:
    """Replace every 2-d BatchNorm in ``module`` by :class:`CrossRankBatchNorm2d` (in place; returns it)."""
    if isinstance(module, nn.BatchNorm2d) and not isinstance(module, CrossRankBatchNorm2d):
        return _to_cross_rank(module)
    for name, child in module.named_children():
        new = convert_cross_rank_batchnorm(child)
        if new is not child:
            setattr(module, name, new)
    return module


def synchronise_batchnorm(model: nn.Module, device: torch.device) -> nn.Module:
    """``model`` with BatchNorm statistics taken over all ranks (see the module docstring)."""
    if torch.device(device).type == "cuda":
        from timm.layers import convert_sync_batchnorm

        return convert_sync_batchnorm(model)
    return convert_cross_rank_batchnorm(model)


def uses_batchnorm_of_all_ranks(model: nn.Module) -> bool:
    """Whether ``model`` has BatchNorm layers that synchronise across ranks (recorded in checkpoints)."""
    return any(isinstance(m, (nn.SyncBatchNorm, CrossRankBatchNorm2d)) for m in model.modules())
