"""What a painted pixel can be: a class id, a way to compute its depth, a texture.

The painter draws *material ids* into one canvas; every other output (label, colour, depth,
window/slat/paver patterns, dusk emission) is looked up per material afterwards, which is
what keeps the label, the depth and the image in exact agreement.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# CamVid-11 class ids
SKY, BUILDING, POLE, ROAD, PAVEMENT, TREE, SIGN, FENCE, CAR, PEDESTRIAN, BICYCLIST = range(11)

# how a material's depth is computed (see shading.depth_map)
DEPTH_CONST, DEPTH_GROUND, DEPTH_WALL, DEPTH_SKY = 0, 1, 2, 3
# texture patterns computed in surface coordinates (see shading.paint_patterns)
PATTERN_PLAIN, PATTERN_WINDOWS, PATTERN_SLATS, PATTERN_PAVERS = 0, 1, 2, 3


@dataclass
class Materials:
    """The material table of one scene, one list entry per material id (0 is the sky)."""

    label: list = field(default_factory=list)
    color: list = field(default_factory=list)
    tex: list = field(default_factory=list)  # (low-frequency amplitude, high-frequency amplitude)
    mode: list = field(default_factory=list)
    param: list = field(default_factory=list)  # depth (const), |X| (wall), 1 (ground), SKY_DEPTH (sky)
    pattern: list = field(default_factory=list)
    pparam: list = field(default_factory=list)  # pattern parameters (7 floats)
    pcolor: list = field(default_factory=list)
    emit: list = field(default_factory=list)  # linear-light emission at dusk
