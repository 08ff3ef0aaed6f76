"""Where everything goes: the street's geometry, then what is painted along it, in order.

:func:`build_scene` draws the street (lanes, pavements, building lines, how far it goes) and
then paints, back to front of the story: sky, road surface, markings, the distant skyline,
the block closing the street, façades with fences and hedges, street furniture, traffic.
The order of the random draws is part of the output: each seed gives one exact scene.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import weather
from .buildings import facade_front, facade_side
from .materials import (
    BUILDING,
    DEPTH_GROUND,
    DEPTH_SKY,
    DEPTH_WALL,
    FENCE,
    PATTERN_PAVERS,
    PATTERN_SLATS,
    PAVEMENT,
    ROAD,
    SKY,
    TREE,
)
from .objects import bicyclist, car, lamp_post, pedestrian, sign_post, traffic_light, tree
from .painter import LAYER_BACKGROUND, LAYER_BEHIND, LAYER_FACADE, LAYER_FENCE, LAYER_GROUND, LAYER_STREET, Scene


@dataclass(frozen=True)
class Street:
    """The street's plan in metres: road edges ``xl``/``xr`` (X), pavements ``pl``/``pr`` wide
    up to the building lines ``line_l``/``line_r``, from ``z0`` to ``z_end`` (Z), the skyline at
    ``far``; ``end_block``: a block closes the street (a T-junction), else the road goes on."""

    n_lanes: int
    lw: float  # lane width
    cam_lane: int
    xl: float
    xr: float
    pl: float
    pr: float
    z_end: float
    far: float
    end_block: bool
    z0: float = 0.8

    @property
    def road_w(self) -> float:
        return self.n_lanes * self.lw

    @property
    def line_l(self) -> float:
        return self.xl - self.pl

    @property
    def line_r(self) -> float:
        return self.xr + self.pr

    @property
    def road_end(self) -> float:
        return self.z_end + 8 if self.end_block else self.far


def build_scene(sc: Scene) -> None:
    """Paint a whole street scene into ``sc`` (materials and paint operations)."""
    sky_h = _sky(sc)
    st = _street(sc)
    _road_surface(sc, st)
    _markings(sc, st)
    _skyline(sc, st, sky_h)
    if st.end_block:
        _end_block(sc, st)
    for side, line in ((-1.0, st.line_l), (1.0, st.line_r)):
        _facade_row(sc, st, side, line)
        _fence(sc, st, side, line)
        _hedge(sc, st, side, line)
        if sc.sunny and side == sc.sun_side:  # façade shadows on the ground, on the side away from the sun
            reach = sc.rng.uniform(0.0, 1.0) * (st.road_w + st.pl + st.pr)
            x_in = line - side * reach
            sc.shadow("poly", sc.proj([line, x_in, x_in, line], 0.0, [st.z0, st.z0, st.z_end, st.z_end]), 255)
    for side, kerb in ((-1.0, st.xl), (1.0, st.xr)):
        _kerbside(sc, st, side, kerb)
    _signs_and_lights(sc, st)
    _cars(sc, st)
    _pedestrians(sc, st)
    _bicyclists(sc, st)


def _span(sc: Scene, Z: float) -> float:
    """How far to the side the camera can see at distance Z: |X| < Z * W / f (plus a margin)."""
    return Z * max(sc.cx, sc.W - sc.cx) / sc.f + 5.0


def _sky(sc: Scene) -> np.ndarray:
    """Material 0, the sky; returns its colour at the horizon."""
    sky_h = sc.pick(sc.style.sky_horizon, 0.02, (0.96, 1.04))
    sc.zenith = sc.pick(sc.style.sky_zenith, 0.02, (0.95, 1.05)).astype(np.float32)
    sc.material(SKY, sky_h, mode=DEPTH_SKY, param=weather.SKY_DEPTH, tex=(0.0, 0.01))
    return sky_h


def _street(sc: Scene) -> Street:
    rng, style = sc.rng, sc.style
    r = rng.uniform
    n_lanes = int(style.lanes[int(rng.integers(len(style.lanes)))])
    lw = r(*style.lane_width)
    cam_lane = int(rng.integers(n_lanes))
    xl = -(cam_lane + 0.5) * lw + r(-0.4, 0.4)
    xr = xl + n_lanes * lw
    pl, pr = r(*style.pave_width), r(*style.pave_width)
    z_end = r(*style.street_end)
    far = z_end + r(60.0, 250.0)
    end_block = r() < style.end_block_prob
    return Street(n_lanes, lw, cam_lane, xl, xr, pl, pr, z_end, far, end_block)


def _road_surface(sc: Scene, st: Street) -> None:
    """Road, pavements (plain or pavers) and kerbs (top and face)."""
    style, r = sc.style, sc.rng.uniform
    xl, xr, z0 = st.xl, st.xr, st.z0
    road_col = sc.pick(style.road, 0.02)
    road_tex = (r(0.04, 0.1), r(0.05, 0.12))
    sc.road_col = road_col
    road = sc.material(ROAD, road_col, mode=DEPTH_GROUND, tex=road_tex)
    pave_col = sc.pick(style.pavement, 0.03)
    pavers = r() < style.pavers_prob
    pave_kw = dict(pattern=PATTERN_PAVERS, pparam=(r(0.3, 0.6), 0, 0, 0, 0, 0, 0)) if pavers else {}
    pave_l = sc.material(PAVEMENT, pave_col, mode=DEPTH_GROUND, tex=(r(0.05, 0.1), r(0.04, 0.1)), **pave_kw)
    pave_r = sc.material(
        PAVEMENT, pave_col * r(0.94, 1.06), mode=DEPTH_GROUND, tex=(r(0.05, 0.1), r(0.04, 0.1)), **pave_kw
    )
    kerb_col = sc.pick(style.kerb, 0.02)
    kerb_g = sc.material(PAVEMENT, kerb_col, mode=DEPTH_GROUND, tex=(0.03, 0.03))
    kerb_l = sc.material(PAVEMENT, kerb_col * 0.8, mode=DEPTH_WALL, param=abs(xl), tex=(0.03, 0.03))
    kerb_r = sc.material(PAVEMENT, kerb_col * 0.8, mode=DEPTH_WALL, param=abs(xr), tex=(0.03, 0.03))
    outer = _span(sc, st.far) + 50
    sc.ground(LAYER_GROUND, xl, xr, z0, st.road_end, road, z=0)
    sc.ground(LAYER_GROUND, -outer, xl, z0, st.far, pave_l, z=0)
    sc.ground(LAYER_GROUND, xr, outer, z0, st.far, pave_r, z=0)
    for xk, mk in ((xl, kerb_l), (xr, kerb_r)):
        s = np.sign(xk) or 1.0
        sc.ground(LAYER_GROUND, xk, xk + s * 0.25, z0, st.z_end, kerb_g, z=0)  # kerb stone top
        sc.wall(LAYER_GROUND, xk, z0, st.z_end, 0.0, 0.12, mk, z=0)


def _markings(sc: Scene, st: Street) -> None:
    """Lane lines (dashed, sometimes a double centre line), edge lines, a zebra crossing (label road)."""
    style, r = sc.style, sc.rng.uniform
    xl, xr, z0, z_end = st.xl, st.xr, st.z0, st.z_end
    mark_col = sc.pick(style.marking, 0.02, (0.9, 1.05))
    mark = sc.material(ROAD, mark_col, mode=DEPTH_GROUND, tex=(0.08, 0.12))
    dash, gap = r(2.0, 4.0), r(4.0, 8.0)
    for j in range(1, st.n_lanes):
        xm = xl + j * st.lw
        w_ = r(0.1, 0.16)
        if st.n_lanes % 2 == 0 and j == st.n_lanes // 2 and r() < 0.4:
            for o in (-0.12, 0.12):  # double centre line
                sc.ground(LAYER_GROUND, xm + o - w_ / 2, xm + o + w_ / 2, z0, z_end, mark, z=0)
            continue
        z = z0 + r(0, dash + gap)
        while z < z_end:
            sc.ground(LAYER_GROUND, xm - w_ / 2, xm + w_ / 2, z, min(z + dash, z_end), mark, z=0)
            z += dash + gap
    if r() < style.edge_line_prob:
        for xe, s in ((xl, 1), (xr, -1)):
            sc.ground(LAYER_GROUND, xe + s * 0.3, xe + s * 0.42, z0, z_end, mark, z=0)
    if r() < style.crossing_prob:
        zc = r(7.0, 30.0)
        depth_c = r(2.5, 4.0)
        x = xl + 0.3
        while x < xr - 0.5:
            sc.ground(LAYER_GROUND, x, x + 0.5, zc, zc + depth_c, mark, z=0)
            x += 1.0


def _skyline(sc: Scene, st: Street, sky_h: np.ndarray) -> None:
    """Distant buildings and tree crowns covering the horizon."""
    style, rng = sc.style, sc.rng
    r, far = rng.uniform, st.far
    sky_col = sc.pick(style.building, 0.03, (0.75, 0.95)) * 0.9 + sky_h * 0.1
    skyline = sc.material(BUILDING, sky_col, param=far, tex=(0.04, 0.02))
    tree_far = sc.material(TREE, sc.pick(style.tree, 0.03) * 1.1, param=far, tex=(0.1, 0.15))
    xs_, ys_ = [], []
    x = -_span(sc, far)
    while x < _span(sc, far):
        w_ = r(8.0, 40.0)
        hgt = r(4.0, 30.0) if r() < 0.75 else r(30.0, 60.0)
        xs_ += [x, x + w_]
        ys_ += [hgt, hgt]
        x += w_
    sc.front(LAYER_BACKGROUND, far, [xs_[0]] + xs_ + [xs_[-1]], [0.0] + ys_ + [0.0], skyline)
    for _ in range(int(rng.integers(2, 8))):
        X = r(-_span(sc, far), _span(sc, far))
        rx = r(8.0, 25.0)
        sc.front_ellipse(LAYER_BACKGROUND, far - 1, X, rx * 0.4, rx, rx * 0.7, tree_far)


def _end_block(sc: Scene, st: Street) -> None:
    """Façades across the street at its end."""
    r = sc.rng.uniform
    x = st.line_l - r(10, 40)
    x_stop = st.line_r + r(10, 40)
    while x < x_stop:
        w_ = r(8.0, 30.0)
        facade_front(sc, LAYER_BEHIND, st.z_end + r(0, 8), x, min(x + w_, x_stop), r(*sc.style.building_height))
        x += w_


def _facade_row(sc: Scene, st: Street, side: float, line: float) -> None:
    """Façade segments along one building line, with gaps showing set-back buildings or trees."""
    style, rng = sc.style, sc.rng
    r = rng.uniform
    z = st.z0
    prev_x = None
    while z < st.z_end:
        seg = r(*style.segment_length)
        z2 = min(z + seg, st.z_end)
        if r() < style.gap_prob and z > 5:
            # a gap: something set back, trees, or nothing
            if r() < 0.6:
                xb = line + side * r(4.0, 15.0)
                facade_side(sc, LAYER_BEHIND, side, xb, z, z2, r(*style.building_height), face_to=None)
            if r() < 0.5:
                for _ in range(int(rng.integers(1, 4))):
                    tree(sc, LAYER_BEHIND, line + side * r(1.5, 5.0), r(z, z2))
            prev_x = None
        else:
            xb = line + side * r(*style.setback)
            face_to = xb + side * 12.0 if prev_x is None else prev_x
            if prev_x is not None and abs(prev_x) <= abs(xb):
                face_to = None
            if z <= st.z0:
                face_to = None
            facade_side(sc, LAYER_FACADE, side, xb, z, z2, r(*style.building_height), face_to=face_to)
            prev_x = xb
        z = z2


def _fence(sc: Scene, st: Street, side: float, line: float) -> None:
    """Sometimes a slatted fence with posts in front of the building line."""
    r = sc.rng.uniform
    if not r() < sc.style.fence_prob:
        return
    zf1 = r(st.z0, 30.0)
    zf2 = min(zf1 + r(8.0, 60.0), st.z_end)
    xf = line - side * r(0.2, 0.6)
    hgt = r(0.9, 1.7)
    col = sc.pick(sc.style.fence, 0.02)
    slats = (r(0.12, 0.35), r(0.45, 0.8), 0, 0, 0, 0, 0)
    fm = sc.material(FENCE, col, mode=DEPTH_WALL, param=abs(xf), tex=(0.05, 0.08), pattern=PATTERN_SLATS, pparam=slats)
    sc.wall(LAYER_FENCE, xf, zf1, zf2, 0.0, hgt, fm, z=zf1)
    pm = sc.material(FENCE, col * 0.8, mode=DEPTH_WALL, param=abs(xf) - 0.01, tex=(0.03, 0.03))  # posts
    zp = zf1
    while zp < zf2:
        sc.wall(LAYER_FENCE, xf - side * 0.01, zp, zp + 0.12, 0.0, hgt + 0.1, pm, z=zf1)
        zp += r(2.0, 3.0)


def _hedge(sc: Scene, st: Street, side: float, line: float) -> None:
    """Sometimes a hedge with an uneven top in front of the building line."""
    rng = sc.rng
    r = rng.uniform
    if not r() < sc.style.hedge_prob:
        return
    zh1 = r(st.z0, 40.0)
    zh2 = min(zh1 + r(6.0, 40.0), st.z_end)
    xh = line - side * r(0.3, 0.9)
    hm = sc.material(TREE, sc.pick(sc.style.tree, 0.03) * 0.85, mode=DEPTH_WALL, param=abs(xh), tex=(0.12, 0.3))
    zs = np.linspace(zh1, zh2, 14)
    ys = r(0.8, 1.5) + rng.uniform(-0.15, 0.15, 14)
    sc.wall_profile(LAYER_FENCE, xh, np.r_[zs, zs[::-1]], np.r_[ys, np.zeros(14)], hm, z=zh1)


def _kerbside(sc: Scene, st: Street, side: float, kerb: float) -> None:
    """Along one kerb: lamp posts, a row of trees, parked cars, a guard railing."""
    style, r = sc.style, sc.rng.uniform
    z = r(3.0, 15.0)
    xp = kerb + side * r(0.4, 0.8)  # on the pavement
    pcol = sc.pick(style.pole, 0.02)
    while z < min(st.z_end, 120.0):
        lamp_post(sc, side, xp, z, pcol)
        z += r(*style.lamp_spacing)
    if r() < style.tree_row_prob:
        z = r(2.0, 12.0)
        xt = kerb + side * r(0.7, 1.3)
        step = r(7.0, 15.0)
        while z < min(st.z_end, 150.0):
            if r() < 0.85:
                tree(sc, LAYER_STREET, xt + r(-0.2, 0.2), z + r(-1, 1))
            z += step
    if r() < style.parked_prob:
        z = r(3.0, 12.0)
        xc = kerb - side * r(1.0, 1.3)  # on the road, along the kerb
        while z < min(st.z_end - 5, 90.0):
            if r() < 0.6:
                car(sc, xc + r(-0.15, 0.15), z, facing=-1 if r() < 0.5 else 1)
            z += r(5.0, 7.5)
    if r() < style.railing_prob:
        _railing(sc, side, kerb)


def _railing(sc: Scene, side: float, kerb: float) -> None:
    """A pedestrian guard railing along the kerb, in short panels so that it sorts with the objects."""
    r = sc.rng.uniform
    zr1 = r(3.0, 25.0)
    zr2 = zr1 + r(6.0, 40.0)
    xr_ = kerb + side * 0.3
    hgt = r(0.9, 1.1)
    col = sc.pick(sc.style.fence, 0.02)
    slats = (r(0.12, 0.25), r(0.25, 0.5), 0, 0, 0, 0, 0)
    fm = sc.material(FENCE, col, mode=DEPTH_WALL, param=abs(xr_), tex=(0.03, 0.05), pattern=PATTERN_SLATS, pparam=slats)
    zp = zr1
    while zp < zr2:
        sc.wall(LAYER_STREET, xr_, zp, zp + 2.5, 0.0, hgt, fm, z=zp)
        zp += 2.5


def _signs_and_lights(sc: Scene, st: Street) -> None:
    rng, r = sc.rng, sc.rng.uniform
    for _ in range(rng.poisson(sc.style.n_signs)):
        side = -1.0 if r() < 0.5 else 1.0
        kerb = st.xl if side < 0 else st.xr
        sign_post(sc, side, kerb + side * r(0.3, 1.0), r(4.0, 60.0))
    if r() < sc.style.traffic_light_prob:
        zt = r(12.0, 50.0)
        for side, kerb in ((-1.0, st.xl), (1.0, st.xr)):
            traffic_light(sc, side, kerb + side * r(0.3, 0.8), zt + r(-1, 1))


def _cars(sc: Scene, st: Street) -> None:
    """Moving cars in lanes, at least 7 m apart in a lane; oncoming traffic on the right
    (left-hand traffic, as in CamVid)."""
    rng, r = sc.rng, sc.rng.uniform
    occupied: list[tuple[int, float]] = []
    for _ in range(rng.poisson(sc.style.n_cars)):
        lane = int(rng.integers(st.n_lanes))
        zc = r(4.0 if lane != st.cam_lane else 7.0, min(90.0, st.z_end - 6.0))
        if any(lane == ol and abs(zc - oz) < 7.0 for ol, oz in occupied):
            continue
        occupied.append((lane, zc))
        facing = -1 if lane > st.cam_lane else 1
        car(sc, st.xl + (lane + 0.5) * st.lw + r(-0.3, 0.3), zc, facing=facing)


def _pedestrians(sc: Scene, st: Street) -> None:
    """Pedestrians on the pavements (sometimes in groups) or crossing the road."""
    rng, r = sc.rng, sc.rng.uniform
    for _ in range(rng.poisson(sc.style.n_peds)):
        side = -1.0 if r() < 0.5 else 1.0
        kerb = st.xl if side < 0 else st.xr
        line = st.line_l if side < 0 else st.line_r
        if r() < 0.15:
            pedestrian(sc, r(st.xl, st.xr), r(5.0, 35.0), crossing=True)
        else:
            zp = r(3.0, 55.0)
            xp = r(min(kerb, line), max(kerb, line))
            pedestrian(sc, xp, zp, crossing=False)
            if r() < 0.3:  # a group
                for _ in range(int(rng.integers(1, 3))):
                    pedestrian(sc, xp + r(-0.8, 0.8), zp + r(-1.5, 1.5), crossing=False)


def _bicyclists(sc: Scene, st: Street) -> None:
    """Bicyclists on the road near the kerb (from behind) or crossing anywhere (from the side)."""
    rng, r = sc.rng, sc.rng.uniform
    for _ in range(rng.poisson(sc.style.n_bikes)):
        side = -1.0 if r() < 0.5 else 1.0
        kerb = st.xl if side < 0 else st.xr
        zb = r(5.0, 50.0)
        if r() < 0.6:
            bicyclist(sc, kerb - side * r(0.6, 1.4), zb, view="back")
        else:
            x = r(st.xl + 0.5, st.xr - 0.5) if r() < 0.5 else kerb - side * r(0.5, 1.5)
            bicyclist(sc, x, zb, view="side")
