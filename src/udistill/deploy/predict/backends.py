"""The two ways to run a model: PyTorch and onnxruntime, behind one seam.

A backend is a callable ``infer(frames) -> RawOutput``: frames (N, 3, H, W) float in [0, 1]
at the frame's own size in, labels and U at the frame's size out, plus the five image
scores computed on U at the model's input size (where the OOD threshold was fitted).

- torch: resizing per :mod:`.geometry` in Python, the model, strip-wise upsampling back;
- onnxruntime: the exported graph does the resizing itself (see :mod:`udistill.deploy.export`);
  full-output graphs give ``probabilities``, ``sigma`` and ``score_map`` (U at the model's
  input size); fused graphs give ``labels``, ``uncertainty`` and ``image_scores`` directly.
  Files exported before these existed (``probabilities`` and ``sigma`` only) still work.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from ...metrics.image import IMAGE_SCORES, image_scores
from .geometry import Geometry, as_float, to_model, upsample_strips

METADATA_KEY = "udistill"  # the ONNX custom-metadata entry: written by export, read by the onnxruntime backend


@dataclass(frozen=True)
class RawOutput:
    """Shape: labels (N, H, W) int64; uncertainty (N, H, W) float32; scores (N, 5) float64
    in the order of :data:`~udistill.metrics.image.IMAGE_SCORES`."""

    labels: np.ndarray
    uncertainty: np.ndarray
    scores: np.ndarray


Infer = Callable[[torch.Tensor], RawOutput]


def score_rows(u_maps) -> np.ndarray:
    """(N, h, w) uncertainty maps -> (N, 5) image scores."""
    return np.array([[image_scores(u)[s] for s in IMAGE_SCORES] for u in u_maps], np.float64).reshape(
        -1, len(IMAGE_SCORES)
    )


def torch_backend(model, device: torch.device, geometry: Geometry) -> Infer:
    """``model`` (a SegmentationModel in eval mode on ``device``) as an :data:`Infer`.
    Frames may be float in [0, 1] or uint8."""

    @torch.inference_mode()
    def infer(x: torch.Tensor) -> RawOutput:
        big = tuple(x.shape[-2:])
        xm, (vh, vw) = to_model(x, geometry)
        out = model(xm.to(device))
        probs = torch.softmax(out.logits.float(), dim=1)[..., :vh, :vw].cpu()
        if out.sigma is not None:
            u = out.sigma.float()[..., :vh, :vw].mean(1).cpu()
        else:
            u = 1.0 - probs.max(1).values
        scores = score_rows(u)
        labels = np.empty((x.shape[0], *big), np.int64)
        unc = np.empty((x.shape[0], *big), np.float32)
        for i in range(x.shape[0]):
            labels[i], unc[i] = upsample_strips(probs[i], u[i], big)
        return RawOutput(labels, unc, scores)

    return infer


def onnx_backend(session, outputs: list[str]) -> Infer:
    """An onnxruntime ``session`` of a udistill export as an :data:`Infer`."""
    input_name = session.get_inputs()[0].name

    def run(names, x):
        return session.run(names, {input_name: as_float(x).numpy().astype(np.float32, copy=False)})

    if "image_scores" in outputs:  # fused graph

        def infer(x: torch.Tensor) -> RawOutput:
            labels, u, scores = run(["labels", "uncertainty", "image_scores"], x)
            return RawOutput(labels.astype(np.int64), u.astype(np.float32), scores.astype(np.float64))

        return infer
    has_sigma = "sigma" in outputs
    has_score_map = "score_map" in outputs

    def infer_full(x: torch.Tensor) -> RawOutput:
        names = ["probabilities"] + (["sigma"] if has_sigma else []) + (["score_map"] if has_score_map else [])
        res = dict(zip(names, run(names, x)))
        probs = res["probabilities"]
        u = res["sigma"].mean(1) if has_sigma else 1.0 - probs.max(1)
        small = res["score_map"] if has_score_map else u
        return RawOutput(probs.argmax(1).astype(np.int64), u.astype(np.float32), score_rows(small))

    return infer_full
