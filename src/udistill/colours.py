"""The colours every picture of udistill shares: the heat-map colour map of the uncertainty U
(the report's figures and ``predict``'s PNGs draw U the same way) and its lookup table.
Class colours live with the label schemes (``LabelScheme.palette``/``colorize``)."""

from __future__ import annotations

import numpy as np

HEATMAP = "inferno"
_LUT: dict[str, np.ndarray] = {}


def colormap_lut(cmap: str = HEATMAP) -> np.ndarray:
    """(256, 3) uint8 colours of a matplotlib colour map."""
    if cmap not in _LUT:
        import matplotlib

        _LUT[cmap] = (matplotlib.colormaps[cmap](np.linspace(0.0, 1.0, 256))[:, :3] * 255).round().astype(np.uint8)
    return _LUT[cmap]
