import numpy as np
import torch
from torch import nn

from udistill.core.ensemble import Ensemble, RunningMoments
from udistill.models.build import SegOutput


class FixedLogits(nn.Module):
    def __init__(self, logits):
        super().__init__()
        self.register_buffer("logits", logits)

    def forward(self, x):
        return SegOutput(self.logits.expand(x.shape[0], -1, -1, -1))


def test_mean_and_population_std_match_numpy():
    torch.manual_seed(0)
    f, c, h, w = 7, 5, 4, 6
    logits = [torch.randn(1, c, h, w) * 3 for _ in range(f)]
    ens = Ensemble([FixedLogits(z) for z in logits], temperature=1.5)
    out = ens(torch.zeros(2, 3, h, w))
    probs = np.stack([torch.softmax(z / 1.5, 1).numpy() for z in logits])
    np.testing.assert_allclose(out.mean[0].numpy(), probs.mean(0)[0], atol=1e-6)
    np.testing.assert_allclose(out.std[0].numpy(), probs.std(0, ddof=0)[0], atol=1e-6)
    # mutual information = entropy of the mean - mean entropy
    ent = lambda p: -(p * np.log(p)).sum(1)  # noqa: E731
    mi = ent(probs.mean(0)) - np.mean([ent(p) for p in probs], axis=0)
    np.testing.assert_allclose(out.mutual_info[0].numpy(), mi[0], atol=1e-5)


def test_streaming_moments_hold_no_member_stack():
    mom = RunningMoments()
    for _ in range(30):
        mom.update(torch.softmax(torch.randn(1, 3, 8, 8), 1))
    assert mom.mean.shape == (1, 3, 8, 8) and mom.m2.shape == (1, 3, 8, 8)
    assert mom.count == 30
