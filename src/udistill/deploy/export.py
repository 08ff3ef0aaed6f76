"""Export a udistill model to a single, self-describing ONNX file.

Graph
-----
- input ``image``: float32 (N, 3, H, W), RGB scaled to [0, 1]; N, H and W are dynamic
  (any size: the graph pads to a multiple of 16 with edge replication and crops back, as
  the PyTorch model does; mean/std normalisation is inside the graph);
- resizing: when the checkpoint records its training ``input_size`` (and ``--native`` is not
  given) the graph resizes every frame to it first (antialiased bilinear, the same numbers
  as the PyTorch predictor: :func:`udistill.deploy.predict.geometry.aa_resize`) and brings the
  outputs back to the frame's size (bilinear); only the ``stretch`` mode is exported;
- output ``probabilities``: float32 (N, C, H, W), the softmax of the prediction head;
- output ``sigma`` (students only): float32 (N, C, H, W) in (0, 1), the uncertainty head
  (the distilled per-class ensemble standard deviation). Single-head models (baseline,
  ensemble members) have no ``sigma`` output;
- output ``score_map`` (resizing graphs only): float32 (N, h, w), U at the training size,
  where image scores and their thresholds belong.

Fused output (``--fused``): instead of the above, ``labels`` uint8 (N, H, W), ``uncertainty``
float16 (N, H, W) (U) and ``image_scores`` float32 (N, 5) (min, mean, median, max,
(median + min) / max of U at the model's input size, as
:func:`udistill.metrics.image.image_scores`): about 2C times fewer bytes leave the graph.

We export probabilities rather than logits so that a consumer needs no post-processing
beyond ``argmax`` (labels), ``sigma.mean(1)`` (the student's uncertainty U) or
``1 - probabilities.max(1)`` (the single-head fallback).

Metadata
--------
The model's ``metadata_props`` hold ``udistill``: the checkpoint metadata as JSON (classes,
label scheme, heads, model config, the calibrated OOD thresholds ``ood`` when the evaluation
wrote them) plus an ``onnx`` entry describing the inputs and outputs. The onnxruntime
predictor (``udistill predict --backend onnxruntime``) therefore needs only the ``.onnx``.

The file is written atomically as one file (no external-data side file).

Exporter: the TorchScript-based ``torch.onnx.export(..., dynamo=False)`` is used (fast,
honours ``opset`` 17, needs only ``onnx``); the model is traced at a size that is *not* a
multiple of 16 so the padding branch is recorded with shape-dependent amounts (zero for
sizes that are already multiples). If that exporter is unavailable (a future PyTorch), the
``torch.export``-based one is used instead (needs ``onnxscript``; opset >= 18).
"""

from __future__ import annotations

import json
import tempfile
import warnings
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import UdistillError
from ..io import atomic_path
from ..metrics.image import IMAGE_SCORES
from ..models.checkpoint import load_model, resolve_checkpoint
from .predict.backends import METADATA_KEY
from .predict.geometry import Geometry, aa_resize

INPUT_NAME = "image"


class OnnxWrapper(nn.Module):
    """What the ONNX graph computes: ``image -> probabilities[, sigma][, score_map]``, or with
    ``fused`` ``image -> labels, uncertainty, image_scores`` (see the module docstring).

    ``size``: the training input size to resize frames to (None = native resolution).
    """

    def __init__(self, model: nn.Module, size: tuple[int, int] | None = None, fused: bool = False):
        super().__init__()
        self.model = model
        self.size = None if size is None else (int(size[0]), int(size[1]))
        self.fused = bool(fused)

    @property
    def output_names(self) -> list[str]:
        if self.fused:
            return ["labels", "uncertainty", "image_scores"]
        names = ["probabilities", "sigma"] if self.model.has_uncertainty else ["probabilities"]
        return names + (["score_map"] if self.size is not None else [])

    def forward(self, image: torch.Tensor):
        x = aa_resize(image, self.size) if self.size is not None else image
        out = self.model(x)
        probs = torch.softmax(out.logits.float(), dim=1)
        sigma = None if out.sigma is None else out.sigma.float()
        u_small = sigma.mean(1) if sigma is not None else 1.0 - probs.max(1).values
        if self.size is not None:
            big = image.shape[-2:]
            probs = F.interpolate(probs, size=big, mode="bilinear", align_corners=False)
            if sigma is not None and not self.fused:
                sigma = F.interpolate(sigma, size=big, mode="bilinear", align_corners=False)
        if self.fused:
            u = (
                u_small
                if self.size is None
                else F.interpolate(u_small[:, None], size=image.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
            )
            return probs.argmax(1).to(torch.uint8), u.to(torch.float16), image_scores_graph(u_small)
        outs = [probs] + ([sigma] if sigma is not None else []) + ([u_small] if self.size is not None else [])
        return outs[0] if len(outs) == 1 else tuple(outs)


def image_scores_graph(u: torch.Tensor) -> torch.Tensor:
    """The five image scores in graph ops (numpy's median: mean of the two middle values).

    Shape: u (N, h, w) -> (N, 5) in the order min, mean, median, max, (median + min) / max.
    """
    flat = u.flatten(1)
    n = flat.shape[1]
    ordered = torch.sort(flat, dim=1).values
    mid = torch.stack([torch.as_tensor((n - 1) // 2), torch.as_tensor(n // 2)])
    median = ordered.index_select(1, mid).mean(1)
    lo, hi = ordered[:, 0], ordered[:, -1]
    ratio = (median + lo) / torch.clamp(hi, min=1e-12)
    return torch.stack([lo, flat.mean(1), median, hi, ratio], 1)


def _require_onnx():
    try:
        import onnx  # noqa: F401
    except ImportError:
        raise UdistillError("ONNX export needs the 'onnx' package: pip install 'udistill[deploy]'") from None


def export_model(
    model: nn.Module,
    out_path: str | Path,
    opset: int = 17,
    meta: dict | None = None,
    size: tuple[int, int] | None = None,
    fused: bool = False,
) -> Path:
    """Export an in-memory :class:`~udistill.models.build.SegmentationModel` (see the module
    docstring for the graph; ``size``: resize frames to this training size inside the graph).
    ``meta`` goes into the file's metadata as JSON. Returns the path."""
    _require_onnx()
    import onnx

    out_path = Path(out_path)
    wrapper = OnnxWrapper(model, size=size, fused=fused).eval().cpu()
    names = wrapper.output_names
    stride = int(getattr(model, "stride", 16))
    # not a multiple of the stride, so the traced graph contains the (dynamic) padding
    example = torch.rand(1, 3, 3 * stride + 2, 4 * stride + 6)
    dyn = {n: {0: "batch", 2: "height", 3: "width"} for n in [INPUT_NAME, *names]}
    for n in ("labels", "uncertainty"):
        if n in dyn:
            dyn[n] = {0: "batch", 1: "height", 2: "width"}
    if "image_scores" in dyn:
        dyn["image_scores"] = {0: "batch"}
    if "score_map" in dyn:
        dyn["score_map"] = {0: "batch"}

    with tempfile.TemporaryDirectory(prefix="udistill-onnx-") as tmp:
        raw = Path(tmp) / "model.onnx"
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # deprecation of the TorchScript exporter, tracer warnings
            try:
                torch.onnx.export(
                    wrapper,
                    (example,),
                    str(raw),
                    dynamo=False,
                    opset_version=opset,
                    input_names=[INPUT_NAME],
                    output_names=names,
                    dynamic_axes=dyn,
                    do_constant_folding=True,
                )
            except (TypeError, NotImplementedError, AttributeError, ImportError):
                raw.unlink(missing_ok=True)
                _export_dynamo(wrapper, example, raw, max(opset, 18), names)
        proto = onnx.load(str(raw), load_external_data=True)

    info = dict(meta or {})
    info["onnx"] = {
        "input": {
            "name": INPUT_NAME,
            "shape": ["batch", 3, "height", "width"],
            "dtype": "float32",
            "range": "RGB in [0, 1]",
        },
        "outputs": names,
        "resize": {"input_size": list(size), "resize": "stretch"} if size is not None else None,
        "fused": bool(fused),
        "has_sigma": bool(model.has_uncertainty),
        "image_scores_order": list(IMAGE_SCORES),
        "opset": opset,
        "torch_version": torch.__version__,
    }
    del proto.metadata_props[:]
    entry = proto.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, json.dumps(info, default=str)
    proto.doc_string = "udistill segmentation model: image (N,3,H,W RGB in [0,1]) -> " + ", ".join(names)
    onnx.checker.check_model(proto)
    with atomic_path(out_path) as tmp_path:
        onnx.save_model(proto, str(tmp_path), save_as_external_data=False)
    return out_path


def _export_dynamo(wrapper: nn.Module, example: torch.Tensor, path: Path, opset: int, names: list[str]) -> None:
    from torch.export import Dim

    shapes = {"image": {0: Dim("batch", min=1, max=4096), 2: Dim.DYNAMIC, 3: Dim.DYNAMIC}}
    program = torch.onnx.export(
        wrapper,
        (example,),
        dynamo=True,
        opset_version=opset,
        input_names=[INPUT_NAME],
        output_names=names,
        dynamic_shapes=shapes,
    )
    program.save(str(path), external_data=False)


def export_onnx(
    checkpoint: str | Path, out_path: str | Path, opset: int = 17, native: bool = False, fused: bool = False
) -> Path:
    """Export a udistill checkpoint (``.safetensors``) to one ``.onnx`` file.

    Students get outputs ``probabilities`` (softmax, N x C x H x W) and ``sigma`` (the
    uncertainty head, N x C x H x W); single-head models ``probabilities`` only. The input
    ``image`` is float32 RGB in [0, 1] with dynamic batch, height and width. The checkpoint's
    metadata (classes, label scheme, calibrated OOD thresholds) is embedded as JSON under the
    ``udistill`` metadata key. ``checkpoint`` may be a student or run folder. Frames are
    resized to the recorded training size inside the graph unless ``native``; ``fused``
    gives the fused outputs. Returns ``out_path``.
    """
    checkpoint = resolve_checkpoint(checkpoint)
    model, meta = load_model(checkpoint)
    out_path = Path(out_path)
    if out_path.suffix.lower() != ".onnx":
        raise UdistillError(f"{out_path}: the output file name must end in .onnx")
    geometry = Geometry.from_meta(meta, native=native)
    if geometry.size is not None and geometry.mode != "stretch":
        raise UdistillError(
            f"{checkpoint}: resize mode '{geometry.mode}' is not exported inside the ONNX graph; "
            "export with --native and resize frames yourself"
        )
    return export_model(model, out_path, opset=opset, meta=meta, size=geometry.size, fused=fused)


def read_onnx_metadata(path: str | Path) -> dict[str, Any]:
    """The udistill metadata stored in an exported file ({} when absent)."""
    _require_onnx()
    import onnx

    path = Path(path)
    if not path.is_file():
        raise UdistillError(f"{path}: ONNX file not found (create it with: udistill export CHECKPOINT --onnx {path})")
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # noqa: BLE001 - protobuf raises various types
        raise UdistillError(f"{path}: not a valid ONNX file ({exc})") from None
    for entry in proto.metadata_props:
        if entry.key == METADATA_KEY:
            try:
                return json.loads(entry.value)
            except json.JSONDecodeError as exc:
                raise UdistillError(f"{path}: corrupt udistill metadata ({exc})") from None
    return {}
