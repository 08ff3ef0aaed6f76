"""The segmentation model: an smp encoder-decoder plus udistill's own heads.

``SegmentationModel`` owns three things the callers should never repeat:
- input normalisation (mean/std stored as buffers and in the checkpoint metadata), so
  datasets and the predictor hand over RGB in [0, 1];
- padding to the encoder stride (DeepLabV3+ needs sides divisible by 16) and cropping
  the output back, so any input size works;
- the heads: ``prediction`` (baseline and members), ``prediction+uncertainty`` (the
  student, paper heads) or ``prediction+uncertainty-light`` (shared trunk).

The forward pass returns :class:`SegOutput` (``logits``, ``sigma``), ``sigma`` being None
for single-head models.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from ..config import ModelConfig
from .heads import ConvHead, SharedTrunkHeads

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
HEADS = ("prediction", "prediction+uncertainty", "prediction+uncertainty-light")


class SegOutput(NamedTuple):
    """Shape: logits (N, C, H, W); sigma (N, C, H, W) in (0, 1) or None."""

    logits: torch.Tensor
    sigma: torch.Tensor | None = None


class SegmentationModel(nn.Module):
    def __init__(
        self, cfg: ModelConfig, num_classes: int, heads: str = "prediction", stride: int = 16, pretrained: bool = True
    ):
        """``pretrained=False`` builds with random encoder weights whatever ``cfg.encoder_weights``
        says (``self.cfg`` still records it): for weights loaded afterwards, so loading a
        checkpoint never downloads ImageNet weights only to overwrite them."""
        super().__init__()
        import segmentation_models_pytorch as smp

        if heads not in HEADS:
            raise ValueError(f"unknown heads '{heads}' (known: {', '.join(HEADS)})")
        if cfg.arch != "deeplabv3plus":
            raise ValueError(f"unknown arch '{cfg.arch}' (known: deeplabv3plus)")
        self.cfg = cfg
        self.num_classes = num_classes
        self.heads = heads
        self.stride = stride
        base = smp.DeepLabV3Plus(
            encoder_name=cfg.encoder,
            encoder_weights=cfg.encoder_weights if pretrained else None,
            decoder_channels=cfg.decoder_channels,
            classes=num_classes,
        )
        self.encoder = base.encoder
        self.decoder = base.decoder
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.dropout = nn.Dropout2d(cfg.dropout) if cfg.dropout > 0 else nn.Identity()
        c_in = cfg.decoder_channels
        if heads == "prediction+uncertainty-light":
            self.head = SharedTrunkHeads(c_in, cfg.head_channels, num_classes)
        else:
            self.head = ConvHead(c_in, cfg.head_channels, num_classes)
        self.uncertainty_head = (
            ConvHead(c_in, cfg.head_channels, num_classes) if heads == "prediction+uncertainty" else None
        )

    @property
    def has_uncertainty(self) -> bool:
        return self.heads != "prediction"

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Decoder features at 1/4 resolution of the padded input. Shape: (N, D, H'/4, W'/4)."""
        feats = self.encoder((x - self.mean) / self.std)
        return self.decoder(feats)

    def forward(self, x: torch.Tensor) -> SegOutput:
        """Shape: x (N, 3, H, W) RGB in [0, 1], any H, W -> SegOutput at (H, W)."""
        feats, out_size = self.padded_features(x)
        return self.heads_forward(self.dropout(feats), out_size)

    def padded_features(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int, int, int]]:
        """Decoder features of ``x`` padded to the stride, and (H, W, padded H, padded W) for
        :meth:`heads_forward` (MC dropout reuses one feature map for all its samples).

        Shape: x (N, 3, H, W) -> features (N, D, H'/4, W'/4)."""
        h, w = x.shape[-2:]
        ph, pw = (-h) % self.stride, (-w) % self.stride
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph), mode="replicate")
        return self.features(x), (h, w, x.shape[-2], x.shape[-1])

    def heads_forward(self, feats: torch.Tensor, out_size: tuple[int, int, int, int]) -> SegOutput:
        """The heads on (possibly dropped-out) decoder features, upsampled and cropped to (H, W)."""
        h, w, hp, wp = out_size
        if isinstance(self.head, SharedTrunkHeads):
            logits, raw_sigma = self.head(feats)
        else:
            logits = self.head(feats)
            raw_sigma = self.uncertainty_head(feats) if self.uncertainty_head is not None else None
        logits = F.interpolate(logits, size=(hp, wp), mode="bilinear", align_corners=False)[..., :h, :w]
        if raw_sigma is None:
            return SegOutput(logits, None)
        raw_sigma = F.interpolate(raw_sigma, size=(hp, wp), mode="bilinear", align_corners=False)[..., :h, :w]
        return SegOutput(logits, torch.sigmoid(raw_sigma))


def build_model(
    cfg: ModelConfig, num_classes: int, heads: str = "prediction", pretrained: bool = True
) -> SegmentationModel:
    """Build a model from its config (no weights are downloaded unless encoder_weights says so,
    and never with ``pretrained=False``: for weights loaded right after, e.g. a resumed run)."""
    return SegmentationModel(cfg, num_classes, heads, pretrained=pretrained)


def student_heads(cfg: ModelConfig) -> str:
    if cfg.uncertainty_head == "paper":
        return "prediction+uncertainty"
    if cfg.uncertainty_head == "light":
        return "prediction+uncertainty-light"
    raise ValueError(f"model.uncertainty_head must be 'paper' or 'light', got '{cfg.uncertainty_head}'")


def to_student(baseline: SegmentationModel, heads: str) -> SegmentationModel:
    """A two-headed student initialised from a trained single-head model.

    Encoder, decoder and the prediction head keep the baseline's weights; the uncertainty
    head starts fresh (paper, section 4: the student is pretrained on labels, then its output
    layer is replaced by the two heads). With the light heads the shared trunk is the
    baseline's head block.
    """
    if baseline.heads != "prediction":
        raise ValueError("to_student expects a single-head model")
    student = SegmentationModel(baseline.cfg, baseline.num_classes, heads, pretrained=False)  # weights copied below
    state = baseline.state_dict()
    missing, unexpected = student.load_state_dict(state, strict=False)
    if unexpected:
        raise RuntimeError(f"unexpected keys when converting to student: {unexpected[:5]}")
    return student


def enable_dropout(model: nn.Module) -> int:
    """Put dropout layers in train mode (MC dropout); returns how many were found."""
    n = 0
    for m in model.modules():
        if isinstance(m, (nn.Dropout, nn.Dropout2d)):
            m.train()
            n += 1
    return n
