"""Small helpers the single-pass methods share: the output geometry of the baseline's heads
and label downsampling to its feature map."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..data.labels import IGNORE_INDEX

OutSize = tuple[int, int, int, int]  # (H, W, padded H, padded W), as SegmentationModel.padded_features


def to_image(maps: torch.Tensor, out_size: OutSize) -> torch.Tensor:
    """Feature-resolution maps upsampled and cropped to the image, exactly as the model's
    heads do (bilinear to the padded size, then the crop).

    Shape: (N, K, h, w) -> (N, K, H, W)."""
    h, w, hp, wp = out_size
    return F.interpolate(maps, size=(hp, wp), mode="bilinear", align_corners=False)[..., :h, :w]


def labels_to_features(labels: torch.Tensor, out_size: OutSize, feat_hw: tuple[int, int]) -> torch.Tensor:
    """Labels nearest-downsampled to the feature map: padded with ignore (the model pads the
    image by edge replication; those pixels have no label), then the pixel at each feature
    cell's top-left corner.

    Shape: (N, H, W) -> (N, h, w), int64, IGNORE_INDEX where unlabelled."""
    h, w, hp, wp = out_size
    lab = labels.long()
    if (hp, wp) != (h, w):
        lab = F.pad(lab, (0, wp - w, 0, hp - h), value=IGNORE_INDEX)
    return F.interpolate(lab[:, None].float(), size=feat_hw, mode="nearest")[:, 0].long()


@torch.no_grad()
def trunk(model, images: torch.Tensor) -> tuple[torch.Tensor, OutSize]:
    """The baseline's decoder features (what enters its head) in eval mode.

    Shape: images (N, 3, H, W) -> (N, D, h, w)."""
    model.eval()
    return model.padded_features(images)
