"""Buildings: façades along the street, the block closing it, their window grids.

A façade is one material whose windows are a pattern computed in wall coordinates at shading
time (:func:`.shading.paint_patterns`), so they stay in perspective at any size.
"""

from __future__ import annotations

import numpy as np

from .materials import BUILDING, DEPTH_CONST, DEPTH_WALL, PATTERN_PLAIN, PATTERN_WINDOWS
from .painter import Scene


def _window_params(sc: Scene, height: float):
    """Window grid of a façade: (pattern, (su, sv, fu, fv, v0, vtop, shop), window colour)."""
    st, r = sc.style, sc.rng.uniform
    if r() >= st.windows_prob:
        return PATTERN_PLAIN, (0.0,) * 7, (0.0, 0.0, 0.0)
    su = r(2.2, 4.5)  # column spacing (m)
    sv = r(*st.floor_height)  # floor height (m)
    v0 = r(2.8, 4.2)  # first floor above the street
    shop = 1.0 if r() < st.shop_prob else 0.0  # large windows on the ground floor
    vtop = height - r(0.6, 1.5)
    wcol = sc.pick(st.window, 0.03, (0.85, 1.1))
    return PATTERN_WINDOWS, (su, sv, r(0.3, 0.65), r(0.35, 0.62), v0, vtop, shop), tuple(wcol)


def _facade_material(sc: Scene, mode, param, height, light=1.0):
    """A building material with a palette colour times ``light`` and a window grid."""
    st, r = sc.style, sc.rng.uniform
    col = sc.pick(st.building, 0.03) * light
    pat, pp, pc = _window_params(sc, height)
    return sc.material(
        BUILDING, col, mode=mode, param=param, tex=(r(0.02, 0.06), r(0.02, 0.06)), pattern=pat, pparam=pp, pcolor=pc
    )


def facade_side(sc: Scene, layer, side, X, z1, z2, height, face_to):
    """A façade parallel to the road at lateral offset X from z1 to z2; ``face_to``: draw the
    face towards the camera out to that offset (where the previous block is set back)."""
    mat = _facade_material(sc, DEPTH_WALL, abs(X), height, sc.side_light(side))
    if face_to is not None:
        # the face of this block towards the camera, where the previous block is set back
        fm = _facade_material(sc, DEPTH_CONST, z1, height, 0.9)
        sc.front(layer, z1, [X, X, face_to, face_to], [0.0, height, height, 0.0], fm, z=z1 + 0.01)
    # roofline with a little variation: a few steps of different heights
    if sc.rng.uniform() < 0.3:
        k = int(sc.rng.integers(2, 4))
        zs = np.linspace(z1, z2, k + 1)
        hs = np.maximum(height + sc.rng.uniform(-3.0, 3.0, k), 4.0)
        zz = np.r_[z1, np.repeat(zs, 2)[1:-1], z2]
        yy = np.r_[0.0, np.repeat(hs, 2), 0.0]
        sc.wall_profile(layer, X, zz, yy, mat, z=z1)
    else:
        sc.wall(layer, X, z1, z2, 0.0, height, mat, z=z1)


def facade_front(sc: Scene, layer, Z, x1, x2, height):
    """A façade facing the camera at distance Z (the block closing the street)."""
    mat = _facade_material(sc, DEPTH_CONST, Z, height, 0.95)
    sc.front(layer, Z, [x1, x1, x2, x2], [0.0, height, height, 0.0], mat)
