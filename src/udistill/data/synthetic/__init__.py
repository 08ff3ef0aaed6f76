"""Procedurally generated driving scenes in CamVid's 11-class scheme.

A stand-in for CamVid that needs no download: every item is rendered on the fly, exactly
reproducibly, from ``(seed, split, index)``. Scenes are urban streets seen from a
forward-facing car camera (pinhole model, flat ground):

* a straight road of 2–4 lanes with dashed and solid markings, sometimes a zebra crossing,
  kerbs and pavements on both sides (paved in some styles);
* façades along both sides in segments of different heights, colours and setbacks, with
  windows (perspective-correct, computed in wall coordinates) and gaps showing set-back
  buildings, trees or sky; often a block closing the street far ahead and always a distant
  skyline at the horizon;
* street furniture: lamp posts with arms, sign posts (several plate shapes, some seen from
  the back), traffic lights, trees and hedges, fences;
* moving and parked cars and vans (3-D boxes: rear or front face plus the visible side),
  pedestrians (walking along the pavement or crossing), bicyclists (seen from behind or from
  the side);
* overcast or sunny light (cast shadows of buildings and trees on the ground), per-material
  textures, sky gradient and clouds, exposure and white balance, vignetting, lens blur and
  sensor noise.

Everything is painted back to front (painter's algorithm) into one *material* canvas; the
label, the colour and the per-pixel depth (metres) are then looked up per material, so the
labels, the depth and the image agree exactly. Depth is analytic: ground pixels from the
ground-plane equation, side walls from their wall plane, objects from their distance;
sky is :data:`~udistill.data.weather.SKY_DEPTH` (1000 m).

What makes it hard (a small network should *not* reach perfect IoU): poles only a few
pixels wide, distant cars and pedestrians of a few pixels, grey road vs grey pavement vs
grey façades, dark trees and hedges vs dark fences, traffic signs seen from the back in
pole grey, occlusions (parked cars hide the kerb), soft (blurred) boundaries, shadows, noise.

Shifts (``shift=``), all keeping the labels of the clean scene except ``new-city``:
``fog-light``/``fog``/``fog-dense``, ``rain``, ``dusk`` (image effects from
:mod:`udistill.data.weather` applied with the exact depth map; dusk also lights the lamps,
headlights, tail lights and some windows) and ``new-city``, a different parameterisation of
the generator (other palettes, textures, building heights, road layout, camera and light),
which plays the role A2D2 plays for Cityscapes-trained models.

The renderer's parts, one file each: :mod:`.styles` (what a "city" looks like),
:mod:`.materials` (class ids and the material table), :mod:`.painter` (the scene: camera,
paint operations, rasterising), :mod:`.layout` (where the road, façades, furniture and
traffic go), :mod:`.buildings` and :mod:`.objects` (how each thing is drawn),
:mod:`.shading` (material canvas -> image, label, depth, lights) and :mod:`.dataset` (the
``"synthetic"`` data set: seeds, shifts, sizes).
"""

from .dataset import (
    GENERATOR_VERSION,
    KNOWN_SHIFTS,
    NATIVE_SIZE,
    SPLIT_LENGTHS,
    SyntheticDataset,
    build_synthetic,
    render,
    scene_seed,
)
from .materials import BICYCLIST, BUILDING, CAR, FENCE, PAVEMENT, PEDESTRIAN, POLE, ROAD, SIGN, SKY, TREE
from .styles import CAMVID_STYLE, NEW_CITY_STYLE, STYLES, Style

item_seed = scene_seed  # the old name of scene_seed (udistill.seeds.item_seed is the general one)

__all__ = [
    "GENERATOR_VERSION",
    "KNOWN_SHIFTS",
    "NATIVE_SIZE",
    "SPLIT_LENGTHS",
    "SyntheticDataset",
    "build_synthetic",
    "scene_seed",
    "item_seed",
    "render",
    "CAMVID_STYLE",
    "NEW_CITY_STYLE",
    "STYLES",
    "Style",
    "SKY",
    "BUILDING",
    "POLE",
    "ROAD",
    "PAVEMENT",
    "TREE",
    "SIGN",
    "FENCE",
    "CAR",
    "PEDESTRIAN",
    "BICYCLIST",
]
