"""Label schemes (class names, colours) and mappings between them.

Every dataset in udistill yields labels in one of these schemes with 255 = ignore.
``CAMVID11`` is the synthetic data's and CamVid's scheme; ``CITYSCAPES19`` the trainId
scheme of Cityscapes, Foggy/Rain Cityscapes and (mapped) A2D2. ``map_labels`` moves a
label map from one scheme to another so a model trained on one can be scored on another.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

IGNORE_INDEX = 255


@dataclass(frozen=True)
class LabelScheme:
    name: str
    classes: tuple[str, ...]
    colors: tuple[tuple[int, int, int], ...]  # RGB per class

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def palette(self) -> np.ndarray:
        """(256, 3) uint8 lookup table: class colours, black for ignore and unknown ids."""
        lut = np.zeros((256, 3), np.uint8)
        lut[: self.num_classes] = np.asarray(self.colors, np.uint8)
        return lut

    def colorize(self, label: np.ndarray) -> np.ndarray:
        """(H, W) int labels -> (H, W, 3) uint8 RGB."""
        return self.palette()[np.asarray(label).astype(np.int64).clip(0, 255)]


CAMVID11 = LabelScheme(
    name="camvid11",
    classes=(
        "sky",
        "building",
        "pole",
        "road",
        "pavement",
        "tree",
        "sign-symbol",
        "fence",
        "car",
        "pedestrian",
        "bicyclist",
    ),
    colors=(
        (128, 128, 128),
        (128, 0, 0),
        (192, 192, 128),
        (128, 64, 128),
        (60, 40, 222),
        (128, 128, 0),
        (192, 128, 128),
        (64, 64, 128),
        (64, 0, 128),
        (64, 64, 0),
        (0, 128, 192),
    ),
)

CITYSCAPES19 = LabelScheme(
    name="cityscapes19",
    classes=(
        "road",
        "sidewalk",
        "building",
        "wall",
        "fence",
        "pole",
        "traffic light",
        "traffic sign",
        "vegetation",
        "terrain",
        "sky",
        "person",
        "rider",
        "car",
        "truck",
        "bus",
        "train",
        "motorcycle",
        "bicycle",
    ),
    colors=(
        (128, 64, 128),
        (244, 35, 232),
        (70, 70, 70),
        (102, 102, 156),
        (190, 153, 153),
        (153, 153, 153),
        (250, 170, 30),
        (220, 220, 0),
        (107, 142, 35),
        (152, 251, 152),
        (70, 130, 180),
        (220, 20, 60),
        (255, 0, 0),
        (0, 0, 142),
        (0, 0, 70),
        (0, 60, 100),
        (0, 80, 100),
        (0, 0, 230),
        (119, 11, 32),
    ),
)

SCHEMES = {s.name: s for s in (CAMVID11, CITYSCAPES19)}

# Cityscapes trainId -> CamVid-11 id. Classes with no counterpart become ignore:
# wall has none in CamVid's 11 (SegNet folds it into building), terrain none (ignore);
# truck/bus/train fold into car, rider into bicyclist, motorcycle and bicycle into bicyclist.
_CS19_TO_CV11 = {
    0: 3,
    1: 4,
    2: 1,
    3: 1,
    4: 7,
    5: 2,
    6: 6,
    7: 6,
    8: 5,
    9: IGNORE_INDEX,
    10: 0,
    11: 9,
    12: 10,
    13: 8,
    14: 8,
    15: 8,
    16: 8,
    17: 10,
    18: 10,
}
# CamVid-11 id -> Cityscapes trainId (the many-to-one folds above cannot be undone:
# car -> car, bicyclist -> bicycle, sign-symbol -> traffic sign).
_CV11_TO_CS19 = {0: 10, 1: 2, 2: 5, 3: 0, 4: 1, 5: 8, 6: 7, 7: 4, 8: 13, 9: 11, 10: 18}

_MAPPINGS = {
    ("cityscapes19", "camvid11"): _CS19_TO_CV11,
    ("camvid11", "cityscapes19"): _CV11_TO_CS19,
}


def mapping_lut(source: str, target: str) -> np.ndarray:
    """(256,) uint8 lookup table from ``source`` ids to ``target`` ids; 255 stays 255."""
    lut = np.full(256, IGNORE_INDEX, np.uint8)
    if source == target:
        lut[:] = np.arange(256)
        return lut
    try:
        table = _MAPPINGS[(source, target)]
    except KeyError:
        raise ValueError(f"no label mapping from {source} to {target}") from None
    for src, dst in table.items():
        lut[src] = dst
    return lut


def map_labels(label: np.ndarray, source: str, target: str) -> np.ndarray:
    """Map an (H, W) label array between schemes (ignore stays ignore)."""
    return mapping_lut(source, target)[np.asarray(label).astype(np.int64).clip(0, 255)].astype(np.int64)


def map_probabilities(prob, source: str, target: str):
    """Sum (N, C_src, H, W) class probabilities into the target scheme's classes.

    Used to score a model trained in one scheme on a dataset labelled in another: the
    probability of a target class is the sum over the source classes that map to it.
    Works on numpy arrays and torch tensors.
    """
    lut = mapping_lut(source, target)
    n_target = SCHEMES[target].num_classes
    n_source = SCHEMES[source].num_classes
    shape = list(prob.shape)
    shape[1] = n_target
    out = prob.new_zeros(shape) if hasattr(prob, "new_zeros") else np.zeros(shape, prob.dtype)
    for src in range(n_source):
        dst = int(lut[src])
        if dst != IGNORE_INDEX:
            out[:, dst] += prob[:, src]
    # source classes without a counterpart (e.g. terrain) drop out: renormalise the rest
    total = out.sum(1, keepdims=True) if not hasattr(out, "new_zeros") else out.sum(1, keepdim=True)
    return out / (total.clip(1e-12) if not hasattr(total, "clamp_min") else total.clamp_min(1e-12))
