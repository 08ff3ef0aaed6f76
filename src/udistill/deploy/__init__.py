"""Deployment: the predictor and ``udistill predict``, ONNX export and quantisation, the
benchmark, the OOD report and the alarm's calibration.

Imports no training code (:mod:`udistill.pipeline`, :mod:`udistill.train`; see
docs/architecture.md)."""
