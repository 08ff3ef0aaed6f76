"""int8 ONNX: onnxruntime's static quantisation of an exported student, with its fidelity.

Why: on a CPU in a vehicle, int8 convolutions run faster than float32; the price is a small
change in the outputs, which is measured here rather than assumed. ``udistill export
CHECKPOINT --onnx student.onnx --int8 --calibration-images DIR`` writes the float32 file and
``student.int8.onnx`` next to it.

- Calibration: the activation ranges (MinMax) are fitted on the user's frames in ``DIR``
  (a folder or list file, as the ``images`` dataset reads it); every fourth image is held
  out and never used for calibration.
- What is quantised: convolutions only (QOperator format: QLinearConv, int8 weights,
  uint8 activations, after onnxruntime's graph pre-processing); the in-graph resizing, softmax and sigmoid stay in float32, so the int8
  model takes and returns exactly what the float32 one does.
- Fidelity, on the held-out images: label agreement (fraction of pixels with the same
  class) and the Pearson correlation of U, float32 against int8. Stored in the int8 file's
  metadata (``onnx.int8``) and printed.
"""

from __future__ import annotations

import json
import logging
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..data.imageio import read_frame
from ..data.images import list_images
from ..errors import UdistillError
from ..io import atomic_path
from .predict.backends import onnx_backend

HOLDOUT_EVERY = 4
# QOperator (QLinearConv) with per-tensor weights was the fastest variant on an AVX2 CPU
# without VNNI (QDQ graphs were slower than float32 there); see benchmarks/field_deploy.py.
PER_CHANNEL = False
MAX_CALIBRATION_IMAGES = 64


def split_images(files: Sequence[Path]) -> tuple[list[Path], list[Path]]:
    """(calibration, held-out): every :data:`HOLDOUT_EVERY`-th image is held out."""
    files = list(files)
    if len(files) < 2:
        raise UdistillError(
            f"int8 calibration needs at least 2 images (one to calibrate on, one to measure fidelity), got {len(files)}"
        )
    held = files[HOLDOUT_EVERY - 1 :: HOLDOUT_EVERY] or files[-1:]
    calib = [f for f in files if f not in held]
    return calib[:MAX_CALIBRATION_IMAGES], held


def _frame(path: Path) -> np.ndarray:
    """(1, 3, H, W) float32 in [0, 1], as the predictor feeds the graph."""
    rgb = read_frame(path)
    return np.ascontiguousarray(rgb.transpose(2, 0, 1)[None], dtype=np.float32) / 255.0


class _Frames:
    """onnxruntime CalibrationDataReader over image files."""

    def __init__(self, files: Sequence[Path], input_name: str):
        self.files, self.input_name, self.i = list(files), input_name, 0

    def get_next(self):
        if self.i >= len(self.files):
            return None
        self.i += 1
        return {self.input_name: _frame(self.files[self.i - 1])}

    def rewind(self):
        self.i = 0


def quantize_onnx(fp32_path: str | Path, out_path: str | Path, calibration_images: str | Path) -> dict:
    """Write the int8 version of ``fp32_path`` to ``out_path``; returns the fidelity record."""
    try:
        import onnx
        from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    except ImportError:
        raise UdistillError("int8 export needs onnx and onnxruntime: pip install 'udistill[deploy]'") from None

    fp32_path, out_path = Path(fp32_path), Path(out_path)
    _, files = list_images(calibration_images)
    calib, held = split_images(files)
    with tempfile.TemporaryDirectory(prefix="udistill-int8-") as tmp:
        raw = Path(tmp) / "int8.onnx"
        root = logging.getLogger()
        level = root.level
        root.setLevel(logging.ERROR)  # the quantiser logs advice for every bias it leaves in float
        try:
            quantize_static(
                _preprocessed(fp32_path, Path(tmp) / "pre.onnx"),
                str(raw),
                _Frames(calib, "image"),
                quant_format=QuantFormat.QOperator,
                op_types_to_quantize=["Conv"],
                per_channel=PER_CHANNEL,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                calibrate_method=CalibrationMethod.MinMax,
            )
        finally:
            root.setLevel(level)
        proto = onnx.load(str(raw))
    fidelity = measure_fidelity(fp32_path, proto.SerializeToString(), held)
    fidelity.update({"calibration_images": len(calib), "source": str(Path(calibration_images))})
    src = onnx.load(str(fp32_path), load_external_data=False)
    meta = {}
    for entry in src.metadata_props:
        if entry.key == "udistill":
            meta = json.loads(entry.value)
    meta.setdefault("onnx", {})["int8"] = fidelity
    del proto.metadata_props[:]
    entry = proto.metadata_props.add()
    entry.key, entry.value = "udistill", json.dumps(meta, default=str)
    with atomic_path(out_path) as tmp_path:
        onnx.save_model(proto, str(tmp_path), save_as_external_data=False)
    return fidelity


def _preprocessed(src: Path, dst: Path) -> str:
    """onnxruntime's recommended pre-processing (graph optimisation before quantisation);
    the graph as it is when that fails."""
    try:
        from onnxruntime.quantization.shape_inference import quant_pre_process

        quant_pre_process(str(src), str(dst), skip_symbolic_shape=True)
        return str(dst)
    except Exception:  # noqa: BLE001 - optional step; quantising the raw graph still works
        return str(src)


def measure_fidelity(fp32_path: str | Path, int8_model: bytes, held: Sequence[Path]) -> dict:
    """Label agreement and Pearson of U between the two graphs on the ``held`` images."""
    import onnxruntime as ort
    import torch

    runs = []
    for model in (str(fp32_path), int8_model):
        sess = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
        runs.append(onnx_backend(sess, [o.name for o in sess.get_outputs()]))
    same = total = 0
    u_a, u_b = [], []
    for path in held:
        x = torch.from_numpy(_frame(path))
        a, b = runs[0](x), runs[1](x)
        same += int((a.labels == b.labels).sum())
        total += a.labels.size
        u_a.append(a.uncertainty.astype(np.float64).ravel())
        u_b.append(b.uncertainty.astype(np.float64).ravel())
    ua, ub = np.concatenate(u_a), np.concatenate(u_b)
    pearson = float(np.corrcoef(ua, ub)[0, 1]) if ua.std() > 0 and ub.std() > 0 else float("nan")
    return {"holdout_images": len(held), "label_agreement": same / max(total, 1), "u_pearson": pearson}
