"""Deployment: segmentation, pixel uncertainty and an out-of-distribution alarm in one pass.

Python API
----------
>>> from udistill.predict import Predictor
>>> predictor = Predictor.from_checkpoint("runs/x/student/model.safetensors")
>>> p = predictor("street.png")            # path, PIL image, HxWx3 uint8 array or float tensor
>>> p.labels, p.uncertainty, p.image_score, p.is_ood

What is computed
----------------
- ``labels``: argmax of the softmax, (H, W) int64;
- ``uncertainty`` U, (H, W) float32: for a student (two heads) the mean over classes of the
  uncertainty head's sigma (the distilled ensemble standard deviation, paper eq. 8); for a
  single-head model (baseline, ensemble member) ``1 - max softmax`` (the maximum softmax
  probability baseline), so every checkpoint can be deployed;
- ``image_score``: U reduced by the chosen image score (:func:`udistill.metrics.image.image_scores`;
  default ``median_plus_min_over_max`` = (median(U) + min(U)) / max(U));
- ``is_ood``: ``image_score > threshold``.

The threshold
-------------
``threshold=`` (``--threshold``) wins; otherwise the checkpoint's calibrated threshold
``meta["ood"]["thresholds"][score]`` (written by ``udistill evaluate`` at its configured
false-alarm rate on in-distribution validation images); otherwise there is none: ``is_ood``
is always False and the predictor warns once (a :class:`UserWarning` when it is built).

Backends
--------
``backend="torch"`` loads the ``.safetensors`` checkpoint; ``backend="onnxruntime"`` runs
the file written by ``udistill export`` (``onnx_path``, default: the checkpoint path with
``.onnx``, or the checkpoint itself when it ends in ``.onnx``) and reads classes and
thresholds from the ONNX metadata, so it needs only the ``.onnx``.

Command line (``udistill predict CHECKPOINT INPUT... --out DIR``)
------------------------------------------------------------------
Inputs are image files, folders (searched recursively, in sorted order, for files with an
image extension; hidden files/folders and symbolic links to folders are skipped; a corrupt
image stops the run with an error naming it) and videos (.mp4, .avi, .mov, .mkv, read with
imageio's ffmpeg reader). Per image, in ``--out`` (folder inputs keep their sub-folders):

- ``<stem>_seg.png``: the labels as a palette PNG coloured by the checkpoint's label scheme
  (``np.array(Image.open(f))`` gives the class ids, ``.convert("RGB")`` the colours);
- ``<stem>_uncertainty.png``: U as an ``inferno`` heat map on the fixed scale
  0 .. ``--uncertainty-max`` (default: the measure's full range, 1 for sigma and 1 - 1/C for
  1 - max softmax), so maps are comparable between images;
- ``<stem>_overlay.png``: the image blended with the segmentation colours (``--alpha``);
- ``<stem>.json``: input path, image score (name and value, plus all five scores), threshold,
  ``is_ood``, the class histogram (pixels per class) and the heat-map scale.

Per video: ``<stem>.jsonl`` with one JSON line per frame (frame index, time, score,
threshold, is_ood, class histogram) and, with ``--video-out``, ``<stem>_annotated.mp4``
(overlay next to the heat map, a red frame and the score when flagged). Two inputs with
the same output stem get the extension (``x_jpg``) or a counter appended. Every file is
written atomically; images are streamed one at a time, so memory stays flat.
"""

from __future__ import annotations

import io
import json
import os
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Sequence, Union

import numpy as np
import torch

from .data.labels import SCHEMES, LabelScheme
from .errors import CheckpointError, DataError, UdistillError
from .io import atomic_path, atomic_write_bytes, atomic_write_json
from .metrics.image import IMAGE_SCORES, image_scores

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv")
BACKENDS = ("torch", "onnxruntime")
HEATMAP = "inferno"


@dataclass(frozen=True)
class Prediction:
    """One image's result, or a batch's (a 4-D tensor input).

    Single image: ``labels`` (H, W) int64, ``uncertainty`` (H, W) float32, ``image_score``
    float, ``is_ood`` bool. Batch of N: ``labels`` (N, H, W) int64, ``uncertainty``
    (N, H, W) float32, ``image_score`` (N,) float64 array, ``is_ood`` (N,) bool array;
    :meth:`unbatch` splits it into N single predictions.
    """

    labels: np.ndarray
    uncertainty: np.ndarray
    image_score: Union[float, np.ndarray]
    is_ood: Union[bool, np.ndarray]

    @property
    def batched(self) -> bool:
        return self.labels.ndim == 3

    def unbatch(self) -> list["Prediction"]:
        if not self.batched:
            return [self]
        return [Prediction(self.labels[i], self.uncertainty[i], float(self.image_score[i]), bool(self.is_ood[i]))
                for i in range(self.labels.shape[0])]


# --- inputs -------------------------------------------------------------------------------


def _as_batch(image: Any) -> tuple[torch.Tensor, bool]:
    """Any accepted input -> (float32 tensor (N, 3, H, W) in [0, 1] on the CPU, batched?)."""
    if isinstance(image, (str, os.PathLike)):
        from .data.imageio import read_image

        image = read_image(image)
    if hasattr(image, "mode") and hasattr(image, "convert"):  # PIL image
        image = np.asarray(image.convert("RGB") if image.mode != "RGB" else image, dtype=np.uint8)
    if isinstance(image, np.ndarray):
        arr = image
        if arr.ndim == 2:
            arr = np.repeat(arr[..., None], 3, axis=2)
        if arr.ndim != 3 or arr.shape[2] not in (3, 4):
            raise ValueError(f"expected an (H, W, 3) RGB array, got shape {arr.shape}")
        arr = arr[..., :3]
        if not (arr.flags.c_contiguous and arr.flags.writeable):
            arr = np.array(arr, order="C")  # torch.from_numpy needs a writable, contiguous buffer
        t = torch.from_numpy(arr).permute(2, 0, 1)
        if arr.dtype == np.uint8:
            t = t.float() / 255.0
        elif np.issubdtype(arr.dtype, np.floating):
            t = t.float()
        else:
            raise ValueError(f"expected a uint8 (0..255) or float (0..1) array, got {arr.dtype}")
        return _check_range(t.unsqueeze(0)), False
    if isinstance(image, torch.Tensor):
        t = image.detach()
        batched = t.ndim == 4
        if t.ndim == 3:
            t = t.unsqueeze(0)
        if t.ndim != 4 or t.shape[1] != 3:
            raise ValueError(f"expected a tensor (3, H, W) or (N, 3, H, W), got shape {tuple(image.shape)}")
        t = t.cpu()
        t = t.float() / 255.0 if t.dtype == torch.uint8 else t.float()
        return _check_range(t), batched
    raise TypeError(f"cannot predict on {type(image).__name__}: pass a path, a PIL image, an HxWx3 uint8 array or a float tensor")


def _check_range(t: torch.Tensor) -> torch.Tensor:
    if t.numel() and (float(t.max()) > 1.0 + 1e-3 or float(t.min()) < -1e-3):
        raise ValueError("float images must hold RGB values in [0, 1] (divide 0..255 values by 255)")
    return t.contiguous()


def _to_uint8(x: torch.Tensor) -> np.ndarray:
    """(3, H, W) float in [0, 1] -> (H, W, 3) uint8."""
    return (x.clamp(0, 1) * 255.0).round().to(torch.uint8).permute(1, 2, 0).numpy()


# --- the predictor ---------------------------------------------------------------------------


def _make_scheme(meta: dict, num_classes: int) -> LabelScheme:
    name = meta.get("label_scheme")
    scheme = SCHEMES.get(name) if isinstance(name, str) else None
    classes = meta.get("classes")
    if not (isinstance(classes, list) and len(classes) == num_classes):
        classes = list(scheme.classes) if scheme is not None and scheme.num_classes == num_classes else [f"class_{i}" for i in range(num_classes)]
    if scheme is not None and scheme.num_classes == num_classes:
        return LabelScheme(scheme.name, tuple(str(c) for c in classes), scheme.colors)
    # unknown scheme: a fixed, well-spread palette (golden-ratio hues)
    import colorsys

    colors = []
    for i in range(num_classes):
        r, g, b = colorsys.hsv_to_rgb((i * 0.618033988749895) % 1.0, 0.65, 0.95 if i % 2 else 0.75)
        colors.append((int(r * 255), int(g * 255), int(b * 255)))
    return LabelScheme(str(name or "custom"), tuple(str(c) for c in classes), tuple(colors))


class Predictor:
    """Runs a model on images; see the module docstring. Build with :meth:`from_checkpoint`
    (or :meth:`from_model` for an in-memory model)."""

    def __init__(
        self,
        infer: Callable[[torch.Tensor], tuple[np.ndarray, np.ndarray]],
        meta: dict,
        num_classes: int,
        has_uncertainty: bool,
        score: str = "median_plus_min_over_max",
        threshold: Optional[float] = None,
        backend: str = "torch",
        source: str = "model",
    ):
        if score not in IMAGE_SCORES:
            raise UdistillError(f"unknown image score '{score}' (known: {', '.join(IMAGE_SCORES)})")
        self._infer = infer
        self.meta = meta
        self.num_classes = int(num_classes)
        self.has_uncertainty = bool(has_uncertainty)
        self.score = score
        self.backend = backend
        self.source = source
        self.scheme = _make_scheme(meta, self.num_classes)
        self.threshold_source: Optional[str] = None
        if threshold is not None:
            self.threshold: Optional[float] = float(threshold)
            self.threshold_source = "argument"
        else:
            self.threshold = self._stored_threshold(meta, score)
            if self.threshold is not None:
                self.threshold_source = "checkpoint"
        if self.threshold is None:
            warnings.warn(
                f"{source}: no calibrated OOD threshold for score '{score}' (run `udistill evaluate` "
                "or pass threshold=/--threshold); is_ood will always be False",
                UserWarning, stacklevel=3,
            )

    @staticmethod
    def _stored_threshold(meta: dict, score: str) -> Optional[float]:
        ood = meta.get("ood")
        if not isinstance(ood, dict):
            return None
        value = (ood.get("thresholds") or {}).get(score)
        return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None

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

    # construction -------------------------------------------------------------------------
    @classmethod
    def from_model(cls, model, meta: dict | None = None, device=None, **kwargs) -> "Predictor":
        """Wrap an in-memory :class:`~udistill.models.build.SegmentationModel`."""
        from .train.loop import resolve_device

        dev = resolve_device(device or "auto") if not isinstance(device, torch.device) else device
        model = model.to(dev).eval()

        @torch.inference_mode()
        def infer(x: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
            out = model(x.to(dev))
            probs = torch.softmax(out.logits.float(), dim=1)
            labels = probs.argmax(1)
            u = out.sigma.float().mean(1) if out.sigma is not None else 1.0 - probs.max(1).values
            return labels.cpu().numpy().astype(np.int64), u.cpu().numpy().astype(np.float32)

        kwargs.setdefault("source", "model")
        return cls(infer, dict(meta or {}), model.num_classes, model.has_uncertainty, backend="torch", **kwargs)

    @classmethod
    def from_checkpoint(
        cls,
        path: str | Path,
        device: str | torch.device | None = None,
        backend: str = "torch",
        onnx_path: str | Path | None = None,
        score: str = "median_plus_min_over_max",
        threshold: float | None = None,
    ) -> "Predictor":
        """Load a ``.safetensors`` checkpoint (torch) or its exported ``.onnx`` (onnxruntime)."""
        path = Path(path)
        if backend not in BACKENDS:
            raise UdistillError(f"unknown backend '{backend}' (known: {', '.join(BACKENDS)})")
        if backend == "onnxruntime":
            onnx_file = Path(onnx_path) if onnx_path else (path if path.suffix.lower() == ".onnx" else path.with_suffix(".onnx"))
            return cls.from_onnx(onnx_file, device=device, score=score, threshold=threshold, checkpoint=path)
        if path.suffix.lower() == ".onnx":
            raise CheckpointError(f"{path}: an ONNX file needs backend 'onnxruntime' (--backend onnxruntime)")
        from .models.checkpoint import load_model

        model, meta = load_model(path)
        return cls.from_model(model, meta, device=device, score=score, threshold=threshold, source=str(path))

    @classmethod
    def from_onnx(
        cls,
        onnx_path: str | Path,
        device: str | None = None,
        score: str = "median_plus_min_over_max",
        threshold: float | None = None,
        checkpoint: str | Path | None = None,
    ) -> "Predictor":
        """Run an exported model with onnxruntime; classes and thresholds come from its metadata."""
        try:
            import onnxruntime as ort
        except ImportError:
            raise UdistillError("backend 'onnxruntime' needs the onnxruntime package: pip install 'udistill[deploy]'") from None
        from .export import METADATA_KEY

        onnx_path = Path(onnx_path)
        if not onnx_path.is_file():
            hint = f"udistill export {checkpoint} --onnx {onnx_path}" if checkpoint and Path(checkpoint) != onnx_path else "udistill export CHECKPOINT --onnx FILE"
            raise CheckpointError(f"{onnx_path}: ONNX file not found (create it with: {hint})")
        if checkpoint and Path(checkpoint) != onnx_path and Path(checkpoint).is_file():
            if Path(checkpoint).stat().st_mtime > onnx_path.stat().st_mtime + 1:
                warnings.warn(f"{checkpoint} is newer than {onnx_path}; re-export it to pick up new weights or thresholds", UserWarning, stacklevel=3)
        providers = ["CPUExecutionProvider"]
        if str(device or "auto") != "cpu" and "CUDAExecutionProvider" in ort.get_available_providers():
            providers = ["CUDAExecutionProvider", "CPUExecutionProvider"]
        try:
            sess = ort.InferenceSession(str(onnx_path), providers=providers)
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own exception types
            raise CheckpointError(f"{onnx_path}: cannot load ONNX model ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") from None
        raw = sess.get_modelmeta().custom_metadata_map.get(METADATA_KEY)
        try:
            meta = json.loads(raw) if raw else {}
        except json.JSONDecodeError:
            raise CheckpointError(f"{onnx_path}: corrupt udistill metadata") from None
        outputs = [o.name for o in sess.get_outputs()]
        if "probabilities" not in outputs:
            raise CheckpointError(f"{onnx_path}: not a udistill export (no 'probabilities' output)")
        has_sigma = "sigma" in outputs
        input_name = sess.get_inputs()[0].name
        num_classes = meta.get("num_classes") or len(meta.get("classes") or []) or sess.get_outputs()[0].shape[1]
        if not isinstance(num_classes, int):
            raise CheckpointError(f"{onnx_path}: number of classes unknown (no udistill metadata)")

        def infer(x: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
            names = ["probabilities", "sigma"] if has_sigma else ["probabilities"]
            res = sess.run(names, {input_name: x.numpy().astype(np.float32, copy=False)})
            probs = res[0]
            labels = probs.argmax(1).astype(np.int64)
            u = res[1].mean(1) if has_sigma else 1.0 - probs.max(1)
            return labels, u.astype(np.float32)

        return cls(infer, meta, num_classes, has_sigma, score=score, threshold=threshold, backend="onnxruntime", source=str(onnx_path))

    # inference --------------------------------------------------------------------------
    def predict_tensor(self, x: torch.Tensor) -> Prediction:
        """(N, 3, H, W) float in [0, 1] -> a batched :class:`Prediction`."""
        labels, u = self._infer(x)
        scores = np.array([image_scores(u[i])[self.score] for i in range(u.shape[0])], np.float64)
        flags = scores > self.threshold if self.threshold is not None else np.zeros(len(scores), bool)
        return Prediction(labels, u, scores, flags)

    def __call__(self, image: Any) -> Union[Prediction, list[Prediction]]:
        """Predict on a path, PIL image, (H, W, 3) uint8 array or (3, H, W) float tensor
        (-> one Prediction), an (N, 3, H, W) tensor (-> a batched Prediction) or a list or
        tuple of those (-> a list)."""
        if isinstance(image, (list, tuple)):
            return [self(im) for im in image]
        x, batched = _as_batch(image)
        pred = self.predict_tensor(x)
        return pred if batched else pred.unbatch()[0]


# --- rendering -------------------------------------------------------------------------------

_LUT: dict[str, np.ndarray] = {}


def heatmap(u: np.ndarray, vmax: float = 1.0, cmap: str = HEATMAP) -> np.ndarray:
    """(H, W) values on the scale 0..vmax -> (H, W, 3) uint8 colours of ``cmap``."""
    if cmap not in _LUT:
        import matplotlib

        _LUT[cmap] = (matplotlib.colormaps[cmap](np.linspace(0.0, 1.0, 256))[:, :3] * 255).round().astype(np.uint8)
    idx = np.clip(np.asarray(u, np.float32) / max(float(vmax), 1e-12), 0.0, 1.0) * 255.0
    return _LUT[cmap][np.round(idx).astype(np.uint8)]


def overlay(rgb: np.ndarray, seg_rgb: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    return (rgb.astype(np.float32) * (1.0 - alpha) + seg_rgb.astype(np.float32) * alpha).round().clip(0, 255).astype(np.uint8)


def _png_bytes(img) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def _write_rgb_png(path: Path, arr: np.ndarray) -> None:
    from PIL import Image

    atomic_write_bytes(path, _png_bytes(Image.fromarray(np.ascontiguousarray(arr, dtype=np.uint8))))


def _write_label_png(path: Path, labels: np.ndarray, scheme: LabelScheme) -> None:
    from PIL import Image

    if scheme.num_classes > 255:
        raise UdistillError(f"cannot write a palette PNG for {scheme.num_classes} classes (at most 255)")
    lab = np.ascontiguousarray(labels, dtype=np.uint8)
    img = Image.frombuffer("P", (lab.shape[1], lab.shape[0]), lab.tobytes(), "raw", "P", 0, 1)
    img.putpalette(scheme.palette().reshape(-1).tolist())
    atomic_write_bytes(path, _png_bytes(img))


def _histogram(labels: np.ndarray, classes: Sequence[str]) -> dict[str, int]:
    counts = np.bincount(labels.reshape(-1), minlength=len(classes))
    return {name: int(counts[i]) for i, name in enumerate(classes)}


def _record(predictor: Predictor, pred: Prediction) -> dict:
    return {
        "score": predictor.score,
        "image_score": float(pred.image_score),
        "threshold": predictor.threshold,
        "threshold_source": predictor.threshold_source,
        "is_ood": bool(pred.is_ood),
        "classes": _histogram(pred.labels, predictor.classes),
    }


# --- inputs on disk --------------------------------------------------------------------------


@dataclass(frozen=True)
class _Job:
    kind: str  # "image" | "video"
    path: Path
    key: str  # output stem relative to --out (may contain sub-folders)
    from_folder: bool


def _walk_images(root: Path, skip: Path | None) -> Iterator[Path]:
    """Image files under ``root``, sorted, without following symbolic links to folders."""
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        here = Path(dirpath)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and (skip is None or (here / d).resolve() != skip))
        for name in sorted(filenames):
            if not name.startswith(".") and Path(name).suffix.lower() in IMAGE_EXTENSIONS:
                yield here / name


def plan_inputs(inputs: Sequence[str | Path], out: Path | None = None) -> list[_Job]:
    """Expand files and folders into jobs with unique output stems."""
    skip = out.resolve() if out is not None else None
    jobs: list[_Job] = []
    for raw in inputs:
        p = Path(raw)
        if not p.exists():
            raise DataError(f"{p}: input not found")
        if p.is_dir():
            if skip is not None and p.resolve() == skip:
                raise UdistillError(f"{p}: the output folder (--out) must differ from the input folder")
            found = list(_walk_images(p, skip))
            if not found:
                raise DataError(f"{p}: folder holds no image ({', '.join(IMAGE_EXTENSIONS)})")
            for f in found:
                jobs.append(_Job("image", f, f.relative_to(p).with_suffix("").as_posix(), True))
        elif p.suffix.lower() in VIDEO_EXTENSIONS:
            jobs.append(_Job("video", p, p.stem, False))
        else:
            jobs.append(_Job("image", p, p.stem, False))
    taken: set[str] = set()
    unique = []
    for job in jobs:
        key = job.key
        if key in taken:
            key = f"{job.key}_{job.path.suffix.lstrip('.').lower() or 'file'}"
            n = 2
            while key in taken:
                key = f"{job.key}_{n}"
                n += 1
        taken.add(key)
        unique.append(_Job(job.kind, job.path, key, job.from_folder))
    return unique


# --- the command ----------------------------------------------------------------------------


def _progress(iterable, total=None, desc="", show=True):
    from tqdm import tqdm

    return tqdm(iterable, total=total, desc=desc, unit="img", disable=None if show else True, dynamic_ncols=True)


def predict_image_file(predictor: Predictor, job: _Job, out: Path, vmax: float, alpha: float) -> Prediction:
    from .data.imageio import read_image

    rgb = read_image(job.path)
    pred = predictor(rgb)
    base = out / job.key
    seg = predictor.scheme.colorize(pred.labels)
    _write_label_png(base.with_name(base.name + "_seg.png"), pred.labels, predictor.scheme)
    _write_rgb_png(base.with_name(base.name + "_uncertainty.png"), heatmap(pred.uncertainty, vmax))
    _write_rgb_png(base.with_name(base.name + "_overlay.png"), overlay(rgb, seg, alpha))
    record = {"input": str(job.path), "size": list(pred.labels.shape), "backend": predictor.backend,
              **_record(predictor, pred),
              "scores": image_scores(pred.uncertainty),
              "uncertainty": predictor.uncertainty_kind,
              "uncertainty_png_scale": [0.0, float(vmax)]}
    atomic_write_json(base.with_name(base.name + ".json"), record)
    return pred


def _annotate(rgb: np.ndarray, pred: Prediction, predictor: Predictor, vmax: float, alpha: float) -> np.ndarray:
    from PIL import Image, ImageDraw

    left = overlay(rgb, predictor.scheme.colorize(pred.labels), alpha)
    frame = np.concatenate([left, heatmap(pred.uncertainty, vmax)], axis=1)
    if pred.is_ood:
        b = max(2, min(frame.shape[:2]) // 40)
        frame[:b], frame[-b:], frame[:, :b], frame[:, -b:] = (255, 0, 0), (255, 0, 0), (255, 0, 0), (255, 0, 0)
    img = Image.fromarray(frame)
    text = f"{predictor.score}={float(pred.image_score):.3f}" + ("  OOD" if pred.is_ood else "")
    ImageDraw.Draw(img).text((6, 4), text, fill=(255, 0, 0) if pred.is_ood else (255, 255, 255))
    frame = np.asarray(img)
    h, w = frame.shape[:2]  # libx264/yuv420p needs even sides
    if h % 2 or w % 2:
        frame = np.pad(frame, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")
    return np.ascontiguousarray(frame)


def predict_video_file(predictor: Predictor, job: _Job, out: Path, vmax: float, alpha: float,
                       video_out: bool = False, show_progress: bool = True) -> tuple[int, int]:
    """Returns (frames, frames flagged OOD)."""
    try:
        import imageio.v2 as iio
    except ImportError:
        raise UdistillError("video input needs imageio and imageio-ffmpeg: pip install 'udistill[deploy]'") from None

    def bad(exc: BaseException) -> DataError:
        msg = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        return DataError(f"{job.path}: cannot read video ({msg})")

    try:
        reader = iio.get_reader(str(job.path), format="FFMPEG")
        info = reader.get_meta_data()
    except Exception as exc:  # noqa: BLE001 - ffmpeg/imageio raise OSError, RuntimeError, ...
        raise bad(exc) from None
    fps = float(info.get("fps") or 25.0)
    nframes = info.get("nframes")
    total = int(nframes) if isinstance(nframes, (int, float)) and np.isfinite(nframes) else None
    base = out / job.key
    frames = flagged = 0
    writer = None
    try:
        with atomic_path(base.with_name(base.name + ".jsonl")) as tmp_jsonl, open(tmp_jsonl, "w", encoding="utf-8") as fh, \
                _maybe_atomic(base.with_name(base.name + "_annotated.mp4"), video_out) as tmp_video:
            it = iter(reader)
            bar = _progress(None, total=total, desc=job.path.name, show=show_progress)
            try:
                while True:
                    try:
                        rgb = next(it)
                    except StopIteration:
                        break
                    except Exception as exc:  # noqa: BLE001
                        raise bad(exc) from None
                    rgb = np.ascontiguousarray(np.asarray(rgb, np.uint8)[..., :3])
                    pred = predictor(rgb)
                    line = {"input": str(job.path), "frame": frames, "time_s": round(frames / fps, 6), **_record(predictor, pred)}
                    fh.write(json.dumps(line) + "\n")
                    if tmp_video is not None:
                        frame = _annotate(rgb, pred, predictor, vmax, alpha)
                        if writer is None:
                            import imageio_ffmpeg

                            writer = imageio_ffmpeg.write_frames(
                                str(tmp_video), (frame.shape[1], frame.shape[0]), fps=fps, codec="libx264",
                                macro_block_size=1, output_params=["-f", "mp4"], ffmpeg_log_level="error")
                            writer.send(None)
                        writer.send(frame)
                    frames += 1
                    flagged += bool(pred.is_ood)
                    bar.update(1)
            finally:
                bar.close()
            if frames == 0:
                raise DataError(f"{job.path}: the video holds no frame")
            if writer is not None:
                writer.close()
                writer = None
    finally:
        if writer is not None:
            writer.close()
        reader.close()
    return frames, flagged


class _maybe_atomic:
    """``atomic_path(path)`` when ``enabled``, else a context yielding None."""

    def __init__(self, path: Path, enabled: bool):
        self.ctx = atomic_path(path) if enabled else None

    def __enter__(self):
        return self.ctx.__enter__() if self.ctx is not None else None

    def __exit__(self, *exc):
        return self.ctx.__exit__(*exc) if self.ctx is not None else False


def run_predict(args) -> dict:
    """``udistill predict``: see the module docstring. Returns a summary dict."""
    out = Path(args.out)
    alpha = float(getattr(args, "alpha", 0.5))
    if not 0.0 <= alpha <= 1.0:
        raise UdistillError(f"--alpha must lie in [0, 1], got {alpha}")
    jobs = plan_inputs(args.inputs, out)  # fail on a missing input before loading the model
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        predictor = Predictor.from_checkpoint(
            args.checkpoint, device=getattr(args, "device", None), backend=getattr(args, "backend", "torch"),
            onnx_path=getattr(args, "onnx", None), score=getattr(args, "score", "median_plus_min_over_max"),
            threshold=getattr(args, "threshold", None))
    for w in caught:  # one line each on the command line
        print(f"udistill: warning: {w.message}", file=sys.stderr)
    vmax = getattr(args, "uncertainty_max", None) or predictor.uncertainty_max
    images = [j for j in jobs if j.kind == "image"]
    videos = [j for j in jobs if j.kind == "video"]
    out.mkdir(parents=True, exist_ok=True)
    n_img = n_img_ood = n_frames = n_frames_ood = 0
    show = any(j.from_folder for j in images)
    for job in _progress(images, total=len(images), desc="images", show=show):
        pred = predict_image_file(predictor, job, out, vmax, alpha)
        n_img += 1
        n_img_ood += bool(pred.is_ood)
    for job in videos:
        f, k = predict_video_file(predictor, job, out, vmax, alpha, video_out=bool(getattr(args, "video_out", False)))
        n_frames += f
        n_frames_ood += k
    parts = []
    if images:
        parts.append(f"{n_img} image(s), {n_img_ood} flagged OOD")
    if videos:
        parts.append(f"{len(videos)} video(s), {n_frames} frame(s), {n_frames_ood} flagged OOD")
    thr = f"{predictor.threshold:.4g} ({predictor.threshold_source})" if predictor.threshold is not None else "none"
    print(f"predict: {'; '.join(parts)} -> {out} (score {predictor.score}, threshold {thr}, backend {predictor.backend})")
    return {"images": n_img, "images_ood": n_img_ood, "videos": len(videos), "frames": n_frames, "frames_ood": n_frames_ood}
