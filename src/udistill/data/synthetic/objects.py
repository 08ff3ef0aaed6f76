"""Things in the street, each drawn from a few polygons in world coordinates: trees, lamp
posts, sign posts, traffic lights, cars and vans, pedestrians, bicyclists.

Each takes the scene and where the thing stands (lateral offset X, distance Z in metres) and
draws its own sizes and colours from the scene's random generator and style.
"""

from __future__ import annotations

import numpy as np

from .materials import BICYCLIST, CAR, DEPTH_GROUND, DEPTH_WALL, PEDESTRIAN, POLE, ROAD, SIGN, TREE
from .painter import LAYER_STREET, Scene


def tree(sc: Scene, layer, X, Z):
    """A tree at (X, Z): trunk, one or two wobbly crowns, and a dappled shadow when sunny."""
    st, rng = sc.style, sc.rng
    r = rng.uniform
    if Z < 1.5:
        return
    trunk_h = r(1.8, 3.5)
    tw = r(0.18, 0.35)
    tm = sc.material(TREE, sc.pick(st.trunk, 0.03), param=Z, tex=(0.05, 0.08))
    cm = sc.material(TREE, sc.pick(st.tree, 0.04), param=Z - 0.01, tex=(r(0.1, 0.2), r(0.25, 0.45)))
    rx, ry = r(1.3, 3.2), r(1.5, 3.6)
    cy = trunk_h + ry * r(0.6, 0.9)
    sc.front(layer, Z, [X - tw / 2, X - tw / 2, X + tw / 2, X + tw / 2], [0, cy, cy, 0], tm)
    n = 22
    th = np.linspace(0, 2 * np.pi, n, endpoint=False)
    for k in range(int(rng.integers(1, 3))):
        ph = rng.uniform(0, 2 * np.pi, 3)
        rad = 1 + 0.14 * np.sin(3 * th + ph[0]) + 0.09 * np.sin(5 * th + ph[1]) + 0.06 * np.sin(8 * th + ph[2])
        rad += rng.uniform(-0.06, 0.06, n)
        ox, oy = (0.0, 0.0) if k == 0 else (r(-0.6, 0.6) * rx, r(-0.3, 0.4) * ry)
        sc.front(layer, Z, X + ox + rx * rad * np.cos(th), cy + oy + ry * rad * np.sin(th), cm, z=Z)
    if sc.sunny:
        # dappled shadow of the crown on the ground, offset away from the sun
        xs = X - sc.sun_side * cy * 0.6
        x0, y0, x1, y1 = sc.proj([xs - rx, xs + rx], 0.0, [Z - ry * 0.6, Z + ry * 0.6])
        box = [min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)]
        value = int(r(90, 170))
        if Z > 6.0 and box[2] - box[0] > 1 and box[3] - box[1] > 1:
            sc.shadow("ellipse", box, value)


def lamp_post(sc: Scene, side, X, Z, col):
    """A lamp post on the pavement with an arm over the road; its head lights up at dusk."""
    r = sc.rng.uniform
    hgt = r(6.0, 9.0)
    w = r(0.14, 0.24)
    pm = sc.material(POLE, col * r(0.95, 1.05), param=Z, tex=(0.03, 0.04))
    sc.front(LAYER_STREET, Z, [X - w / 2, X - w * 0.35, X + w * 0.35, X + w / 2], [0, hgt, hgt, 0], pm)
    arm = r(1.0, 2.2)
    xe = X - side * arm  # towards the road
    sc.front(LAYER_STREET, Z, [X, X, xe, xe], [hgt - 0.12, hgt, hgt + 0.1, hgt - 0.02], pm)
    head = sc.material(POLE, col * 0.8 + 0.1, param=Z - 0.01, tex=(0.02, 0.02), emit=(1.6, 1.25, 0.7))
    sc.front(
        LAYER_STREET,
        Z,
        [xe - 0.3, xe - 0.25, xe + 0.25, xe + 0.3],
        [hgt - 0.05, hgt - 0.2, hgt - 0.2, hgt - 0.05],
        head,
    )


def sign_post(sc: Scene, side, X, Z):
    """A sign post with one or two plates (square, round, triangle, wide); some seen from the back."""
    st, r = sc.style, sc.rng.uniform
    hgt = r(2.1, 3.2)
    w = r(0.06, 0.1)
    pm = sc.material(POLE, sc.pick(st.pole, 0.02), param=Z, tex=(0.03, 0.04))
    sc.front(LAYER_STREET, Z, [X - w / 2, X - w / 2, X + w / 2, X + w / 2], [0, hgt, hgt, 0], pm)
    for k in range(1 if r() < 0.75 else 2):
        s = r(0.45, 0.9)
        back = r() < 0.25
        col = sc.pick(st.sign_back if back else st.sign_front, 0.03)
        sm = sc.material(SIGN, col, param=Z - 0.02, tex=(0.02, 0.03))
        yc = hgt - s / 2 - k * (s + 0.1)
        shape = int(sc.rng.integers(4))
        if shape == 0:
            sc.front(
                LAYER_STREET,
                Z,
                [X - s / 2, X - s / 2, X + s / 2, X + s / 2],
                [yc - s / 2, yc + s / 2, yc + s / 2, yc - s / 2],
                sm,
            )
        elif shape == 1:
            sc.front_ellipse(LAYER_STREET, Z, X, yc, s / 2, s / 2, sm)
        elif shape == 2:
            sc.front(LAYER_STREET, Z, [X - s / 2, X, X + s / 2], [yc - s * 0.4, yc + s * 0.5, yc - s * 0.4], sm)
        else:
            # a wide plate (street name / direction sign)
            sc.front(
                LAYER_STREET,
                Z,
                [X - s, X - s, X + s, X + s],
                [yc - s * 0.3, yc + s * 0.3, yc + s * 0.3, yc - s * 0.3],
                sm,
            )
        if not back and r() < 0.6:
            inner = sc.material(SIGN, np.clip(1.0 - col * 0.9, 0.05, 0.95), param=Z - 0.03, tex=(0.02, 0.02))
            sc.front_ellipse(LAYER_STREET, Z, X, yc, s * 0.28, s * 0.28, inner)


def traffic_light(sc: Scene, side, X, Z):
    """A traffic light: pole, box and three lamps, one of them lit."""
    st, r = sc.style, sc.rng.uniform
    hgt = r(2.6, 3.6)
    pm = sc.material(POLE, sc.pick(st.pole, 0.02), param=Z, tex=(0.03, 0.04))
    w = 0.12
    sc.front(LAYER_STREET, Z, [X - w / 2, X - w / 2, X + w / 2, X + w / 2], [0, hgt, hgt, 0], pm)
    box = sc.material(SIGN, np.full(3, r(0.08, 0.2)), param=Z - 0.02, tex=(0.02, 0.02))
    bw, bh = 0.32, 0.95
    sc.front(LAYER_STREET, Z, [X - bw / 2, X - bw / 2, X + bw / 2, X + bw / 2], [hgt, hgt + bh, hgt + bh, hgt], box)
    on = int(sc.rng.integers(3))
    colors = ((0.9, 0.15, 0.1), (0.95, 0.65, 0.1), (0.15, 0.85, 0.35))
    for k in range(3):
        lit = k == on
        c = np.asarray(colors[k]) * (1.0 if lit else 0.25)
        lm = sc.material(
            SIGN, c, param=Z - 0.03, tex=(0.01, 0.01), emit=tuple(np.asarray(colors[k]) * 1.5) if lit else (0, 0, 0)
        )
        sc.front_ellipse(LAYER_STREET, Z, X, hgt + bh - 0.17 - k * 0.3, 0.1, 0.1, lm)


def car(sc: Scene, Xc, Z, facing: int):
    """A car or van whose face nearest the camera is at distance Z (facing +1: rear view)."""
    st, rng = sc.style, sc.rng
    r = rng.uniform
    if Z < 1.0:
        return
    van = r() < 0.15
    w = r(1.65, 1.95) if not van else r(1.9, 2.1)
    L = r(3.8, 4.9) if not van else r(4.8, 5.8)
    h = r(1.35, 1.6) if not van else r(1.9, 2.5)
    col = sc.pick(st.car, 0.03)
    glass_c = np.asarray((0.1, 0.11, 0.13)) + r(0, 0.12)
    tyre_c = np.full(3, r(0.05, 0.1))
    lit = (1.5, 1.4, 1.2) if facing < 0 else (1.2, 0.1, 0.05)
    light_c = (0.9, 0.88, 0.8) if facing < 0 else (0.65, 0.08, 0.06)
    # ground contact shadow
    shade = sc.material(ROAD, sc.road_col * 0.45, mode=DEPTH_GROUND, tex=(0.05, 0.05))
    sc.ground(LAYER_STREET, Xc - w / 2 - 0.1, Xc + w / 2 + 0.1, Z + 0.05, Z + L, shade, z=Z + L + 0.01)
    body_side = None
    xs = Xc - np.sign(Xc) * w / 2
    if abs(Xc) > w / 2 + 0.05:
        body_side = sc.material(CAR, col * 0.85, mode=DEPTH_WALL, param=abs(xs), tex=(0.03, 0.03))
        glass_side = sc.material(CAR, glass_c * 1.2, mode=DEPTH_WALL, param=abs(xs) + 0.001, tex=(0.03, 0.03))
        tyre_side = sc.material(CAR, tyre_c, mode=DEPTH_WALL, param=abs(xs) - 0.001, tex=(0.03, 0.03))
        if van:
            pu = np.array([0, 0, 0.12, 0.2, 1, 1])
            pv = np.array([0.12, 0.5, 0.55, 1, 1, 0.12])
            gu = np.array([0.14, 0.2, 0.32, 0.3])
            gv = np.array([0.55, 0.88, 0.88, 0.55])
        else:
            pu = np.array([0, 0, 0.22, 0.32, 0.76, 0.88, 1, 1])
            pv = np.array([0.17, 0.6, 0.63, 1, 1, 0.62, 0.58, 0.17])
            gu = np.array([0.25, 0.34, 0.74, 0.83])
            gv = np.array([0.64, 0.94, 0.94, 0.64])
        if facing > 0:
            pu, gu = 1 - pu, 1 - gu  # front of the car is far
        sc.wall_profile(LAYER_STREET, xs, Z + L * pu, h * pv, body_side, z=Z)
        sc.wall_profile(LAYER_STREET, xs, Z + L * gu, h * gv, glass_side, z=Z)
        th = np.linspace(0, 2 * np.pi, 12, endpoint=False)
        for wu in (0.18, 0.82):
            sc.wall_profile(LAYER_STREET, xs, Z + L * wu + 0.33 * np.cos(th), 0.33 + 0.33 * np.sin(th), tyre_side, z=Z)
    # the face towards the camera
    body = sc.material(CAR, col, param=Z, tex=(0.03, 0.03))
    glass = sc.material(CAR, glass_c, param=Z - 0.01, tex=(0.03, 0.03))
    tyre = sc.material(CAR, tyre_c, param=Z + 0.3, tex=(0.03, 0.03))
    light = sc.material(CAR, light_c, param=Z - 0.01, tex=(0.02, 0.02), emit=lit)
    for xw in (Xc - w / 2 + 0.05, Xc + w / 2 - 0.28):
        sc.front(LAYER_STREET, Z, [xw, xw, xw + 0.23, xw + 0.23], [0, 0.3, 0.3, 0], tyre)
    top = 0.42 if not van else 0.49
    sc.front(
        LAYER_STREET,
        Z,
        [Xc - w / 2, Xc - w / 2, Xc - w * 0.47, Xc - w * top, Xc + w * top, Xc + w * 0.47, Xc + w / 2, Xc + w / 2],
        [0.2 * h / 1.5, 0.55 * h, 0.62 * h, h, h, 0.62 * h, 0.55 * h, 0.2 * h / 1.5],
        body,
    )
    gy0, gy1 = (0.64, 0.93) if not van else (0.6, 0.85)
    sc.front(
        LAYER_STREET,
        Z,
        [Xc - w * 0.43, Xc - w * (top - 0.03), Xc + w * (top - 0.03), Xc + w * 0.43],
        [gy0 * h, gy1 * h, gy1 * h, gy0 * h],
        glass,
    )
    for xl_ in (Xc - w / 2 + 0.05, Xc + w / 2 - 0.3):
        sc.front(LAYER_STREET, Z, [xl_, xl_, xl_ + 0.25, xl_ + 0.25], [0.45 * h, 0.55 * h, 0.55 * h, 0.45 * h], light)


def pedestrian(sc: Scene, X, Z, crossing: bool):
    """A pedestrian standing or walking along the pavement, or crossing (legs apart)."""
    st, rng = sc.style, sc.rng
    r = rng.uniform
    if Z < 1.5:
        return
    hp = r(1.5, 1.92) if r() > 0.1 else r(1.05, 1.3)
    legs = sc.material(PEDESTRIAN, sc.pick(st.clothing, 0.03), param=Z, tex=(0.04, 0.05))
    top = sc.material(PEDESTRIAN, sc.pick(st.clothing, 0.03), param=Z - 0.01, tex=(0.04, 0.05))
    facing_cam = r() < 0.5
    skin_c = sc.pick(st.skin, 0.02)
    head_c = skin_c if facing_cam else np.asarray(st.skin[-1]) * r(0.7, 2.5)
    skin = sc.material(PEDESTRIAN, np.clip(head_c, 0.03, 0.9), param=Z - 0.02, tex=(0.03, 0.03))
    hands = sc.material(PEDESTRIAN, skin_c, param=Z - 0.02, tex=(0.03, 0.03))
    phase = r(-1, 1)
    spread = 0.28 if crossing else 0.07
    hip = 0.5 * hp
    for s in (-1, 1):
        hx = X + s * 0.07
        fx = hx + s * phase * spread
        sc.front(LAYER_STREET, Z, [hx - 0.07, hx + 0.07, fx + 0.06, fx - 0.06], [hip, hip, 0, 0], legs)
    coat = r() < 0.35
    sw = 0.2 if not crossing else 0.15
    bottom = hip - (0.15 * hp if coat else 0.0)
    sc.front(LAYER_STREET, Z, [X - sw * 0.8, X - sw, X + sw, X + sw * 0.8], [bottom, 0.82 * hp, 0.82 * hp, bottom], top)
    for s in (-1, 1):
        swing = -s * phase * (0.2 if crossing else 0.05)
        sx, hx = X + s * sw * 0.95, X + s * (sw + 0.04) + swing
        sc.front(
            LAYER_STREET,
            Z,
            [sx - 0.045, sx + 0.045, hx + 0.04, hx - 0.04],
            [0.81 * hp, 0.81 * hp, 0.47 * hp, 0.47 * hp],
            top,
        )
        sc.front_ellipse(LAYER_STREET, Z, hx, 0.45 * hp, 0.045, 0.05, hands)
    sc.front(
        LAYER_STREET, Z, [X - 0.05, X - 0.05, X + 0.05, X + 0.05], [0.8 * hp, 0.88 * hp, 0.88 * hp, 0.8 * hp], hands
    )
    sc.front_ellipse(LAYER_STREET, Z, X, 0.92 * hp, 0.095, 0.12, skin)
    if r() < 0.25:  # a bag
        bag = sc.material(PEDESTRIAN, sc.pick(st.clothing, 0.03) * 0.8, param=Z - 0.03, tex=(0.03, 0.03))
        s = -1 if r() < 0.5 else 1
        bx = X + s * (sw + 0.1)
        sc.front(
            LAYER_STREET,
            Z,
            [bx - 0.13, bx - 0.13, bx + 0.13, bx + 0.13],
            [0.35 * hp, 0.52 * hp, 0.52 * hp, 0.35 * hp],
            bag,
        )


def bicyclist(sc: Scene, X, Z, view: str):
    """A bicyclist seen from behind (``view='back'``) or from the side."""
    st, rng = sc.style, sc.rng
    r = rng.uniform
    if Z < 2.0:
        return
    k = r(0.9, 1.05)  # rider size
    frame = sc.material(BICYCLIST, sc.pick(st.car, 0.05) * 0.8, param=Z, tex=(0.03, 0.03))
    tyre = sc.material(BICYCLIST, np.full(3, r(0.05, 0.12)), param=Z, tex=(0.02, 0.02))
    cloth = sc.material(BICYCLIST, sc.pick(st.clothing, 0.03), param=Z - 0.01, tex=(0.04, 0.05))
    legs = sc.material(BICYCLIST, sc.pick(st.clothing, 0.03), param=Z - 0.01, tex=(0.04, 0.05))
    head = sc.material(
        BICYCLIST,
        sc.pick(st.skin, 0.02) if r() < 0.5 else sc.pick(st.sign_front, 0.05),
        param=Z - 0.02,
        tex=(0.03, 0.03),
    )
    if view == "back":
        sc.front(LAYER_STREET, Z, [X - 0.035, X - 0.035, X + 0.035, X + 0.035], [0.0, 0.68, 0.68, 0.0], tyre)
        ph = r(-1, 1)
        for s in (-1, 1):
            py = 0.45 + s * ph * 0.15
            sc.front(
                LAYER_STREET,
                Z,
                [X + s * 0.05, X + s * 0.16, X + s * 0.14, X + s * 0.06],
                [0.95 * k, 0.95 * k, py, py],
                legs,
            )
        sc.front(
            LAYER_STREET, Z, [X - 0.17, X - 0.2, X + 0.2, X + 0.17], [0.92 * k, 1.42 * k, 1.42 * k, 0.92 * k], cloth
        )
        sc.front(LAYER_STREET, Z, [X - 0.3, X - 0.3, X + 0.3, X + 0.3], [1.0, 1.04, 1.04, 1.0], frame)
        for s in (-1, 1):
            sc.front_line(LAYER_STREET, Z, [X + s * 0.19, X + s * 0.29], [1.38 * k, 1.04], 0.07, cloth)
        sc.front_ellipse(LAYER_STREET, Z, X, 1.56 * k, 0.1, 0.12, head)
        rear = sc.material(BICYCLIST, (0.6, 0.05, 0.05), param=Z - 0.03, tex=(0.01, 0.01), emit=(1.2, 0.1, 0.05))
        sc.front(LAYER_STREET, Z, [X - 0.04, X - 0.04, X + 0.04, X + 0.04], [0.7, 0.76, 0.76, 0.7], rear)
    else:
        d = -1.0 if r() < 0.5 else 1.0
        P = lambda u, v: (X + d * u, v)  # noqa: E731
        rh, seat, crank, headt, fh = P(-0.52, 0.34), P(-0.22, 0.92), P(0.0, 0.32), P(0.42, 0.95), P(0.52, 0.34)
        for c in (rh, fh):
            sc.front_ring(LAYER_STREET, Z, c[0], c[1], 0.34, 0.05, tyre)
        for a, b in ((rh, seat), (seat, crank), (crank, rh), (seat, headt), (crank, headt), (headt, fh)):
            sc.front_line(LAYER_STREET, Z, [a[0], b[0]], [a[1], b[1]], 0.045, frame)
        hip = P(-0.2, 0.98 * k)
        sh = P(0.12, 1.42 * k)
        ph = r(0, 2 * np.pi)
        for s in (0, np.pi):
            pedal = P(0.16 * np.cos(ph + s), 0.32 + 0.16 * np.sin(ph + s))
            knee = P(0.1 + 0.05 * np.cos(ph + s), 0.68 + 0.08 * np.sin(ph + s))
            sc.front_line(LAYER_STREET, Z, [hip[0], knee[0], pedal[0]], [hip[1], knee[1], pedal[1]], 0.12, legs)
        sc.front_line(LAYER_STREET, Z, [hip[0], sh[0]], [hip[1], sh[1]], 0.3, cloth)
        sc.front_line(LAYER_STREET, Z, [sh[0], headt[0]], [sh[1], headt[1] + 0.08], 0.08, cloth)
        hx, hy = P(0.2, 1.58 * k)
        sc.front_ellipse(LAYER_STREET, Z, hx, hy, 0.11, 0.12, head)
