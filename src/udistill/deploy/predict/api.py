"""The Python API: :class:`Predictor` (build from a checkpoint, an ONNX file or a model) and
its result :class:`Prediction`. See :mod:`udistill.deploy.predict` for what is computed."""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ...data.labels import SCHEMES, LabelScheme
from ...device import resolve_device
from ...errors import CheckpointError, UdistillError
from ...metrics.image import IMAGE_SCORES
from ...models.checkpoint import load_model, resolve_checkpoint
from .alarm import alarm_score, check_calibration, stored_display_range, stored_threshold
from .backends import METADATA_KEY, Infer, RawOutput, onnx_backend, torch_backend
from .geometry import Geometry, check_frame_size
from .inputs import as_batch

BACKENDS = ("torch", "onnxruntime")


@dataclass(frozen=True)
class Prediction:
    """One image's result, or a batch's (a 4-D tensor input).

    Single image: ``labels`` (H, W) int64, ``uncertainty`` (H, W) float32, ``image_score``
    float, ``is_ood`` bool. Batch of N: ``labels`` (N, H, W) int64, ``uncertainty``
    (N, H, W) float32, ``image_score`` (N,) float64 array, ``is_ood`` (N,) bool array;
    :meth:`unbatch` splits it into N single predictions. ``scores``: all five image scores
    ({name: value}, or a list of such dicts for a batch), computed at the model's input size.
    """

    labels: np.ndarray
    uncertainty: np.ndarray
    image_score: float | np.ndarray
    is_ood: bool | np.ndarray
    scores: dict | list | None = None

    @property
    def batched(self) -> bool:
        return self.labels.ndim == 3

    def unbatch(self) -> list[Prediction]:
        if not self.batched:
            return [self]
        scores = self.scores if isinstance(self.scores, list) else [None] * self.labels.shape[0]
        return [
            Prediction(self.labels[i], self.uncertainty[i], float(self.image_score[i]), bool(self.is_ood[i]), scores[i])
            for i in range(self.labels.shape[0])
        ]


def make_scheme(meta: dict, num_classes: int) -> LabelScheme:
    """The label scheme for colours and class names: the checkpoint's, else a generated one."""
    name = meta.get("label_scheme")
    scheme = SCHEMES.get(name) if isinstance(name, str) else None
    classes = meta.get("classes")
    if not (isinstance(classes, list) and len(classes) == num_classes):
        classes = (
            list(scheme.classes)
            if scheme is not None and scheme.num_classes == num_classes
            else [f"class_{i}" for i in range(num_classes)]
        )
    if scheme is not None and scheme.num_classes == num_classes:
        return LabelScheme(scheme.name, tuple(str(c) for c in classes), scheme.colors)
    import colorsys  # unknown scheme: a fixed, well-spread palette (golden-ratio hues)

    colors = []
    for i in range(num_classes):
        r, g, b = colorsys.hsv_to_rgb((i * 0.618033988749895) % 1.0, 0.65, 0.95 if i % 2 else 0.75)
        colors.append((int(r * 255), int(g * 255), int(b * 255)))
    return LabelScheme(str(name or "custom"), tuple(str(c) for c in classes), tuple(colors))


def _resolve_device(device):
    return device if isinstance(device, torch.device) else resolve_device(device or "auto")


class Predictor:
    """Runs a model on images; see :mod:`udistill.deploy.predict`. Build with :meth:`from_checkpoint`
    (or :meth:`from_model` for an in-memory model, :meth:`from_onnx` for an export)."""

    def __init__(
        self,
        infer: Infer,
        meta: dict,
        num_classes: int,
        has_uncertainty: bool,
        score: str | None = None,
        threshold: float | None = None,
        backend: str = "torch",
        source: str = "model",
        geometry: Geometry | None = None,
    ):
        score = score or alarm_score(meta)  # default: the alarm's own score, chosen by `udistill calibrate`
        if score not in IMAGE_SCORES:
            raise UdistillError(f"unknown image score '{score}' (known: {', '.join(IMAGE_SCORES)})")
        self._infer = infer
        self.meta = meta
        self.num_classes = int(num_classes)
        self.has_uncertainty = bool(has_uncertainty)
        self.score = score
        self.backend = backend
        self.source = source
        self.geometry = geometry or Geometry()
        self.scheme = make_scheme(meta, self.num_classes)
        self.threshold = float(threshold) if threshold is not None else stored_threshold(meta, score)
        self.threshold_source = (
            "argument" if threshold is not None else ("checkpoint" if self.threshold is not None else None)
        )
        if self.threshold is None:
            warnings.warn(
                f"{source}: no calibrated OOD threshold for score '{score}' (run `udistill calibrate` "
                "or pass threshold=/--threshold); is_ood will always be False",
                UserWarning,
                stacklevel=3,
            )

    # properties ---------------------------------------------------------------------------
    @property
    def classes(self) -> list[str]:
        return list(self.scheme.classes)

    @property
    def uncertainty_kind(self) -> str:
        return "mean_sigma" if self.has_uncertainty else "one_minus_max_softmax"

    @property
    def uncertainty_max(self) -> float:
        """Largest possible U: 1 for sigma, 1 - 1/C for 1 - max softmax."""
        return 1.0 if self.has_uncertainty else 1.0 - 1.0 / self.num_classes

    @property
    def display_range(self) -> tuple[float, float] | None:
        """The heat-map scale stored at calibration (``meta["ood"]["display_range"]``), if any."""
        return stored_display_range(self.meta)

    # construction -------------------------------------------------------------------------
    @classmethod
    def from_model(cls, model, meta: dict | None = None, device=None, native: bool = False, **kwargs) -> Predictor:
        """Wrap an in-memory :class:`~udistill.models.build.SegmentationModel`; frames are
        resized to ``meta["input_size"]`` unless ``native`` (see :mod:`.geometry`)."""
        meta = dict(meta or {})
        dev = _resolve_device(device)
        model = model.to(dev).eval()
        geometry = Geometry.from_meta(meta, native=native)
        kwargs.setdefault("source", "model")
        return cls(
            torch_backend(model, dev, geometry),
            meta,
            model.num_classes,
            model.has_uncertainty,
            backend="torch",
            geometry=geometry,
            **kwargs,
        )

    @classmethod
    def from_checkpoint(
        cls,
        path: str | Path,
        device: str | torch.device | None = None,
        backend: str = "torch",
        onnx_path: str | Path | None = None,
        score: str | None = None,
        threshold: float | None = None,
        native: bool = False,
    ) -> Predictor:
        """Load a ``.safetensors`` checkpoint (torch) or its exported ``.onnx`` (onnxruntime).
        ``path`` may also be the checkpoint's folder or a run folder (its student)."""
        if backend not in BACKENDS:
            raise UdistillError(f"unknown backend '{backend}' (known: {', '.join(BACKENDS)})")
        path = Path(path)
        if backend == "onnxruntime":
            if path.suffix.lower() != ".onnx":
                path = resolve_checkpoint(path) if path.is_dir() else path
            onnx_file = (
                Path(onnx_path)
                if onnx_path
                else (path if path.suffix.lower() == ".onnx" else path.with_suffix(".onnx"))
            )
            return cls.from_onnx(
                onnx_file, device=device, score=score, threshold=threshold, checkpoint=path, native=native
            )
        path = resolve_checkpoint(path)
        if path.suffix.lower() == ".onnx":
            raise CheckpointError(f"{path}: an ONNX file needs backend 'onnxruntime' (--backend onnxruntime)")

        model, meta = load_model(path)
        check_calibration(path, meta)
        return cls.from_model(
            model, meta, device=device, score=score, threshold=threshold, source=str(path), native=native
        )

    @classmethod
    def from_onnx(
        cls,
        onnx_path: str | Path,
        device: str | None = None,
        score: str | None = None,
        threshold: float | None = None,
        checkpoint: str | Path | None = None,
        native: bool = False,
    ) -> Predictor:
        """Run an exported model with onnxruntime; classes, thresholds and the resizing come
        from its metadata (the graph resizes by itself)."""
        sess, meta = _open_onnx(Path(onnx_path), device, checkpoint)
        outputs, num_classes, has_u, geometry = _onnx_model_info(sess, meta, onnx_path)
        if native and not geometry.native:
            raise UdistillError(
                f"{onnx_path}: this export resizes frames to {geometry.describe()} inside the graph; "
                "re-export with --native to run at native resolution"
            )
        return cls(
            onnx_backend(sess, outputs),
            meta,
            num_classes,
            has_u,
            score=score,
            threshold=threshold,
            backend="onnxruntime",
            source=str(onnx_path),
            geometry=geometry,
        )

    # inference --------------------------------------------------------------------------
    def predict_tensor(self, x: torch.Tensor) -> Prediction:
        """(N, 3, H, W) float in [0, 1] (or uint8 0..255) -> a batched :class:`Prediction`."""
        check_frame_size(int(x.shape[-2]), int(x.shape[-1]), "input")
        raw: RawOutput = self._infer(x)
        k = IMAGE_SCORES.index(self.score)
        scores = raw.scores[:, k].astype(np.float64)
        flags = scores > self.threshold if self.threshold is not None else np.zeros(len(scores), bool)
        all_scores = [{s: float(row[j]) for j, s in enumerate(IMAGE_SCORES)} for row in raw.scores]
        return Prediction(raw.labels, raw.uncertainty, scores, flags, all_scores)

    def __call__(self, image: Any) -> Prediction | list[Prediction]:
        """Predict on a path, PIL image, (H, W, 3) uint8 array or (3, H, W) float tensor
        (-> one Prediction), an (N, 3, H, W) tensor (-> a batched Prediction) or a list or
        tuple of those (-> a list)."""
        if isinstance(image, (list, tuple)):
            return [self(im) for im in image]
        x, batched = as_batch(image)
        pred = self.predict_tensor(x)
        return pred if batched else pred.unbatch()[0]


def _onnx_model_info(sess, meta: dict, onnx_path) -> tuple[list[str], int, bool, Geometry]:
    """(output names, number of classes, has an uncertainty head, in-graph resizing) of an export."""
    onnx_info = meta.get("onnx") or {}
    outputs = [o.name for o in sess.get_outputs()]
    if "probabilities" not in outputs and "labels" not in outputs:
        raise CheckpointError(f"{onnx_path}: not a udistill export (no 'probabilities' or 'labels' output)")
    num_classes = meta.get("num_classes") or len(meta.get("classes") or [])
    if not num_classes and "probabilities" in outputs:
        num_classes = sess.get_outputs()[outputs.index("probabilities")].shape[1]
    if not isinstance(num_classes, int):
        raise CheckpointError(f"{onnx_path}: number of classes unknown (no udistill metadata)")
    has_u = "sigma" in outputs or bool(onnx_info.get("has_sigma"))
    return outputs, num_classes, has_u, Geometry.from_meta(onnx_info.get("resize") or {})


def _open_onnx(onnx_path: Path, device, checkpoint):
    """(onnxruntime session, udistill metadata) with one clear error per problem."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise UdistillError(
            "backend 'onnxruntime' needs the onnxruntime package: pip install 'udistill[deploy]'"
        ) from None

    if not onnx_path.is_file():
        hint = (
            f"udistill export {checkpoint} --onnx {onnx_path}"
            if checkpoint and Path(checkpoint) != onnx_path
            else "udistill export CHECKPOINT --onnx FILE"
        )
        raise CheckpointError(f"{onnx_path}: ONNX file not found (create it with: {hint})")
    newer = (
        checkpoint
        and Path(checkpoint) != onnx_path
        and Path(checkpoint).is_file()
        and Path(checkpoint).stat().st_mtime > onnx_path.stat().st_mtime + 1
    )
    if newer:
        warnings.warn(
            f"{checkpoint} is newer than {onnx_path}; re-export it to pick up new weights or thresholds",
            UserWarning,
            stacklevel=4,
        )
    providers = ["CPUExecutionProvider"]
    if str(device or "auto") != "cpu" and "CUDAExecutionProvider" in ort.get_available_providers():
        providers = ["CUDAExecutionProvider", "CPUExecutionProvider"]
    try:
        sess = ort.InferenceSession(str(onnx_path), providers=providers)
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own exception types
        raise CheckpointError(
            f"{onnx_path}: cannot load ONNX model ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})"
        ) from None
    raw = sess.get_modelmeta().custom_metadata_map.get(METADATA_KEY)
    try:
        meta = json.loads(raw) if raw else {}
    except json.JSONDecodeError:
        raise CheckpointError(f"{onnx_path}: corrupt udistill metadata") from None
    return sess, meta
