"""Turn any segmentation model into a two-headed student (prediction + uncertainty).

The paper's student has a prediction head (softmax) and an uncertainty head (sigmoid) on
the decoder's feature map. A user's model already has the first one; we add the second on
a feature map of the model, read with a forward hook, so the model's own code and
weights stay as they are:

- ``head="paper"``: a fresh 3x3 conv-BN-ReLU + 1x1 block (:class:`~udistill.models.heads.ConvHead`)
  on the decoder's output (the input of the model's own head);
- ``head="light"``: one 1x1 convolution on the trunk the model's final 1x1 classifier
  reads (the uncertainty output of :class:`~udistill.models.heads.SharedTrunkHeads`, with
  the model's own head as the shared trunk): one extra 1x1 conv over the model.

σ is computed at the feature map's resolution and upsampled bilinearly (before the
sigmoid) to the logits', as :class:`~udistill.models.build.SegmentationModel` does.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..models.build import SegmentationModel, SegOutput, to_student
from ..models.heads import ConvHead
from .ensemble import member_logits

HEAD_KINDS = ("paper", "light")
PAPER_HEAD_CHANNELS = 256  # paper, section 3


def _feature_tensor(output: Any, layer: str) -> torch.Tensor:
    if isinstance(output, torch.Tensor):
        feats = output
    elif isinstance(output, Mapping) and "out" in output:  # torchvision backbones
        feats = output["out"]
    elif isinstance(output, (list, tuple)) and output and isinstance(output[-1], torch.Tensor):
        feats = output[-1]  # e.g. an encoder's list of stages: the last one
    else:
        raise TypeError(f"feature layer '{layer}' returned {type(output).__name__}, not a feature map tensor")
    if feats.ndim != 4:
        raise ValueError(f"feature layer '{layer}' gives shape {tuple(feats.shape)}; a map (N, D, h, w) is needed")
    return feats


class PointwiseHead(nn.Module):
    """The light uncertainty head: one 1x1 convolution (``SharedTrunkHeads.uncertainty``) on
    the trunk the model's own classifier reads; named ``classifier`` as in
    :class:`~udistill.models.heads.ConvHead`, so both heads' output layer is found the same way.

    Shape: features (N, D, h, w) -> (N, C, h, w)."""

    def __init__(self, in_channels: int, num_classes: int):
        super().__init__()
        self.classifier = nn.Conv2d(in_channels, num_classes, 1)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.classifier(features)


class UncertaintyStudent(nn.Module):
    """A user's segmentation model plus an uncertainty head on one of its feature maps.

    ``model`` is wrapped, not copied (its weights are trained in place; deep-copy it first
    to keep the original). The feature map of ``feature_layer`` is caught by a forward hook
    on each call.

    Shape: images (N, 3, H, W) -> :class:`~udistill.models.build.SegOutput` with logits
    (N, C, H', W') as the model gives them and sigma (N, C, H', W') in (0, 1).
    """

    def __init__(self, model: nn.Module, feature_layer: str, uncertainty_head: nn.Module, num_classes: int):
        super().__init__()
        self.model = model
        self.feature_layer = feature_layer
        self.uncertainty_head = uncertainty_head
        self.num_classes = int(num_classes)
        self._features: torch.Tensor | None = None
        self._hook = model.get_submodule(feature_layer).register_forward_hook(self._keep_features)

    def _keep_features(self, module: nn.Module, inputs: Any, output: Any) -> None:
        self._features = _feature_tensor(output, self.feature_layer)

    @property
    def has_uncertainty(self) -> bool:
        return True

    def remove_hook(self) -> None:
        """Detach the feature hook from the wrapped model (the wrapper stops working)."""
        self._hook.remove()

    def forward(self, images: torch.Tensor) -> SegOutput:
        self._features = None
        logits = member_logits(self.model(images))
        feats, self._features = self._features, None  # hold no activation between calls
        if feats is None:
            raise RuntimeError(f"the feature layer '{self.feature_layer}' was not called in the model's forward pass")
        raw = self.uncertainty_head(feats)
        if raw.shape[-2:] != logits.shape[-2:]:
            raw = F.interpolate(raw, size=logits.shape[-2:], mode="bilinear", align_corners=False)
        return SegOutput(logits, torch.sigmoid(raw))


def default_feature_layer(model: nn.Module, head: str) -> str | None:
    """Where the uncertainty head reads, for the model families we know (None otherwise):
    smp models: the decoder's output (which their segmentation head reads); torchvision
    DeepLabV3: the ASPP output (paper head) or the 3x3 block's output that the final 1x1
    classifier reads (light head)."""
    try:
        import segmentation_models_pytorch as smp

        if isinstance(model, smp.base.SegmentationModel):
            return "decoder"
    except ImportError:  # smp is optional for users of this function
        pass
    try:
        from torchvision.models.segmentation.deeplabv3 import DeepLabHead, DeepLabV3

        if isinstance(model, DeepLabV3) and isinstance(model.classifier, DeepLabHead):
            return "classifier.0" if head == "paper" else "classifier.3"
    except ImportError:
        pass
    return None


@torch.no_grad()
def _probe(model: nn.Module, layer: str, example: torch.Tensor) -> tuple[int, int]:
    """(feature channels, classes) from one forward pass in eval mode; every module's
    train/eval flag is restored afterwards (BatchNorm statistics are not touched)."""
    modes = {m: m.training for m in model.modules()}
    seen: list[torch.Tensor] = []
    hook = model.get_submodule(layer).register_forward_hook(
        lambda mod, inp, out: seen.append(_feature_tensor(out, layer))
    )
    try:
        model.eval()
        logits = member_logits(model(example))
    finally:
        hook.remove()
        for m, t in modes.items():
            m.train(t)
    if not seen:
        raise ValueError(f"feature_layer '{layer}' is not called in the model's forward pass")
    return seen[-1].shape[1], logits.shape[1]


def add_uncertainty_head(
    model: nn.Module,
    head: str = "paper",
    num_classes: int | None = None,
    feature_layer: str | None = None,
    *,
    head_channels: int = PAPER_HEAD_CHANNELS,
    example_input: torch.Tensor | None = None,
) -> nn.Module:
    """A two-headed student from a segmentation model: it returns ``.logits`` (the model's
    own prediction) and ``.sigma`` (the new head, sigmoid), the outputs the distillation
    loss trains against the ensemble's M and Σ.

    ``model``: an smp model, a torchvision DeepLabV3, udistill's own single-head model
    (converted with :func:`~udistill.models.build.to_student`), or any module returning
    logits / ``.logits`` / ``{"out": logits}`` whose feature map ``feature_layer`` names
    (a dotted submodule name, e.g. ``"decoder.block3"``). ``num_classes`` is checked
    against the model's output. ``example_input`` (default zeros (1, 3, 64, 64)) is run
    once, in eval mode, to read the feature and class counts.

    Shape: example_input (1, 3, H, W); the student maps images (N, 3, H, W) to logits and
    sigma (N, C, H', W'), sigma in (0, 1).
    """
    if head not in HEAD_KINDS:
        raise ValueError(f"unknown head '{head}' (known: {', '.join(HEAD_KINDS)})")
    if isinstance(model, SegmentationModel) and feature_layer is None:
        if model.has_uncertainty:
            raise ValueError("the model already has an uncertainty head")
        student = to_student(model, "prediction+uncertainty" if head == "paper" else "prediction+uncertainty-light")
        if num_classes is not None and num_classes != student.num_classes:
            raise ValueError(f"num_classes={num_classes} but the model predicts {student.num_classes} classes")
        return student
    layer = feature_layer or default_feature_layer(model, head)
    if layer is None:
        raise ValueError(
            f"add_uncertainty_head does not know where {type(model).__name__} keeps its last feature map: "
            "name it with feature_layer='<dotted submodule name>' (see model.named_modules())"
        )
    try:
        model.get_submodule(layer)
    except AttributeError:
        raise ValueError(f"{type(model).__name__} has no submodule '{layer}'") from None
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    example = torch.zeros(1, 3, 64, 64, device=device) if example_input is None else example_input.to(device)
    channels, classes = _probe(model, layer, example)
    if num_classes is not None and num_classes != classes:
        raise ValueError(f"num_classes={num_classes} but the model predicts {classes} classes")
    if head == "paper":
        new_head: nn.Module = ConvHead(channels, head_channels, classes)
    else:
        new_head = PointwiseHead(channels, classes)
    if param is not None:
        new_head = new_head.to(device=device, dtype=param.dtype)
    return UncertaintyStudent(model, layer, new_head, classes)


def uncertainty_output_layer(student) -> torch.nn.Conv2d:
    """The 1x1 convolution whose sigmoid is σ (paper heads or light head)."""
    if student.uncertainty_head is not None:
        return student.uncertainty_head.classifier
    return student.head.uncertainty


def init_sigma_bias(student, sigma: torch.Tensor) -> None:
    """Start the uncertainty head at σ = ``sigma`` (per class, shape (C,)) everywhere: the
    output layer's weights are zeroed and its bias set to logit(sigma). The MSE gradient
    near small targets is tiny, so a head starting at σ ≈ 0.5 may never reach the teacher's
    scale; starting there removes that. The weights leave zero at the first step."""
    layer = uncertainty_output_layer(student)
    s = sigma.double().clamp(1e-5, 1 - 1e-5)
    with torch.no_grad():
        layer.weight.zero_()
        layer.bias.copy_(torch.log(s / (1 - s)).to(layer.bias.dtype))
