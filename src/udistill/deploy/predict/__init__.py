"""Deployment: segmentation, pixel uncertainty and an out-of-distribution alarm in one pass.

Python API
----------
>>> from udistill.deploy.predict import Predictor
>>> predictor = Predictor.from_checkpoint("runs/x")   # run folder, student folder or file
>>> p = predictor("street.png")            # path, PIL image, HxWx3 uint8 array or float tensor
>>> p.labels, p.uncertainty, p.image_score, p.is_ood

What is computed
----------------
- frames are resized to the size the model was trained at (checkpoint ``input_size`` and
  ``resize``; :mod:`.geometry`), results are brought back to the frame's size;
  ``native=True`` (``--native``), or a checkpoint without ``input_size``, runs at the
  frame's own size. Images smaller than 16x16 pixels are refused;
- ``labels``: argmax of the softmax, (H, W) int64;
- ``uncertainty`` U, (H, W) float32: for a student (two heads) the mean over classes of the
  uncertainty head's sigma (the distilled ensemble standard deviation, paper eq. 8); for a
  single-head model (baseline, ensemble member) ``1 - max softmax``, so every checkpoint can
  be deployed;
- ``image_score``: U *at the model's input size* reduced by the chosen image score
  (:func:`udistill.metrics.image.image_scores`; default ``median_plus_min_over_max`` =
  (median(U) + min(U)) / max(U)), the size its threshold was calibrated at;
- ``is_ood``: ``image_score > threshold``.

The threshold
-------------
``threshold=`` (``--threshold``) wins; otherwise the checkpoint's calibrated threshold
``meta["ood"]["thresholds"][score]`` (written by ``udistill calibrate`` or ``udistill
evaluate``); otherwise there is none: ``is_ood`` is always False and the predictor warns once.

Backends
--------
``backend="torch"`` loads the ``.safetensors`` checkpoint; ``backend="onnxruntime"`` runs
the file written by ``udistill export`` (``onnx_path``, default: the checkpoint path with
``.onnx``, or the checkpoint itself when it ends in ``.onnx``) and reads classes, thresholds
and the resizing from the ONNX metadata, so it needs only the ``.onnx``.

Command line (``udistill predict CHECKPOINT INPUT... --out DIR``)
------------------------------------------------------------------
Inputs are image files, folders (:mod:`.jobs`) and videos (.mp4, .avi, .mov, .mkv, read with
imageio's ffmpeg reader). Per image, in ``--out`` (folder inputs keep their sub-folders):

- ``<stem>_seg.png``: the labels as a palette PNG coloured by the checkpoint's label scheme;
- ``<stem>_uncertainty.png``: U as an ``inferno`` heat map on the calibrated display range
  (:mod:`.rendering`; ``--uncertainty-max`` overrides);
- ``<stem>_overlay.png``: the image blended with the segmentation colours (``--alpha``),
  with a colour bar of the heat-map scale;
- ``<stem>.json``: input path, image score (name and value, plus all five scores),
  threshold, ``is_ood``, the class histogram, the model input size and the heat-map scale.

Per video: ``<stem>.jsonl`` with one JSON line per frame and, with ``--video-out``,
``<stem>_annotated.mp4``. Bad inputs are reported and skipped; exit codes in :mod:`.runner`.

Modules: :mod:`.api` (Predictor, Prediction), :mod:`.alarm` (the stored OOD alarm), :mod:`.backends` (torch, onnxruntime),
:mod:`.geometry` (resizing), :mod:`.inputs`, :mod:`.rendering`, :mod:`.jobs`, :mod:`.runner`.
"""

from .api import BACKENDS, Prediction, Predictor, resolve_checkpoint
from .geometry import MIN_SIDE, RESIZE_MODES, Geometry
from .jobs import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS, plan_inputs
from .rendering import HEATMAP, heatmap, overlay
from .runner import (
    EXIT_ERROR,
    EXIT_OK,
    EXIT_SKIPPED,
    PredictOptions,
    predict_image_file,
    predict_video_file,
    run_predict,
)

__all__ = [
    "BACKENDS",
    "Prediction",
    "Predictor",
    "resolve_checkpoint",
    "MIN_SIDE",
    "RESIZE_MODES",
    "Geometry",
    "IMAGE_EXTENSIONS",
    "VIDEO_EXTENSIONS",
    "plan_inputs",
    "HEATMAP",
    "heatmap",
    "overlay",
    "EXIT_ERROR",
    "EXIT_OK",
    "EXIT_SKIPPED",
    "predict_image_file",
    "predict_video_file",
    "PredictOptions",
    "run_predict",
]
