"""Output heads on the decoder's feature map (1/4 of the input resolution).

The paper (section 3): each head is a 3x3 conv-BN-ReLU block with 256 channels followed
by a 1x1 convolution to C classes. The baseline has one such head (``ConvHead``); the
student has two, a prediction head (softmax) and an uncertainty head (sigmoid).

``SharedTrunkHeads`` is the light alternative (beyond the paper): one 3x3 trunk shared by
both outputs and two 1x1 convolutions, so the student costs one extra 1x1 conv over the
baseline instead of a second full 3x3 block.
"""

from __future__ import annotations

import torch
from torch import nn


def conv_bn_relu(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class ConvHead(nn.Module):
    """3x3 conv-BN-ReLU (``head_channels``) then 1x1 conv to ``num_classes``.

    Shape: features (N, in_channels, h, w) -> (N, num_classes, h, w).
    """

    def __init__(self, in_channels: int, head_channels: int, num_classes: int):
        super().__init__()
        self.block = conv_bn_relu(in_channels, head_channels)
        self.classifier = nn.Conv2d(head_channels, num_classes, 1)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.block(features))


class SharedTrunkHeads(nn.Module):
    """Light student heads: one shared 3x3 trunk, two 1x1 outputs (logits, sigma pre-activation).

    The trunk and the prediction 1x1 carry the baseline head's weights unchanged, so the
    student starts as exactly the baseline.
    """

    def __init__(self, in_channels: int, head_channels: int, num_classes: int):
        super().__init__()
        self.block = conv_bn_relu(in_channels, head_channels)
        self.classifier = nn.Conv2d(head_channels, num_classes, 1)
        self.uncertainty = nn.Conv2d(head_channels, num_classes, 1)

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        trunk = self.block(features)
        return self.classifier(trunk), self.uncertainty(trunk)
