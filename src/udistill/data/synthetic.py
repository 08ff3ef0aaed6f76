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
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from ..errors import DataError
from . import weather
from .base import SegmentationDataset
from .labels import CAMVID11
from .registry import register_dataset

GENERATOR_VERSION = 1
NATIVE_SIZE = (360, 480)  # H, W
SPLIT_LENGTHS = {"train": 200, "val": 50, "test": 50}
KNOWN_SHIFTS: tuple[str, ...] = weather.KNOWN_SHIFTS + ("new-city",)

# CamVid-11 ids
SKY, BUILDING, POLE, ROAD, PAVEMENT, TREE, SIGN, FENCE, CAR, PEDESTRIAN, BICYCLIST = range(11)

# depth modes of a material
_CONST, _GROUND, _WALL, _SKYMODE = 0, 1, 2, 3
# texture patterns of a material
_PLAIN, _WINDOWS, _SLATS, _PAVERS = 0, 1, 2, 3
# paint layers, back to front
_L_BACKGROUND, _L_GROUND, _L_BEHIND, _L_FACADE, _L_FENCE, _L_STREET = range(6)


# =========================================================================== styles
def _c(*rgb: float) -> tuple[float, float, float]:
    return tuple(float(v) for v in rgb)  # type: ignore[return-value]


@dataclass(frozen=True)
class Style:
    """Parameters of one "city": layout statistics, palettes, camera and light."""

    name: str
    horizon: tuple[float, float] = (0.40, 0.50)  # horizon row / H
    focal: tuple[float, float] = (0.80, 1.00)  # focal length / W
    cam_height: tuple[float, float] = (1.25, 1.6)  # metres
    yaw: float = 0.06  # vanishing-point offset, fraction of W
    lanes: tuple[int, ...] = (2, 2, 3, 4)
    lane_width: tuple[float, float] = (3.0, 3.6)
    pave_width: tuple[float, float] = (1.8, 4.5)
    building_height: tuple[float, float] = (6.0, 22.0)
    segment_length: tuple[float, float] = (7.0, 30.0)
    gap_prob: float = 0.18
    setback: tuple[float, float] = (0.0, 1.2)
    street_end: tuple[float, float] = (70.0, 220.0)
    end_block_prob: float = 0.6
    windows_prob: float = 0.85
    shop_prob: float = 0.35
    floor_height: tuple[float, float] = (2.8, 3.6)
    tree_row_prob: float = 0.45
    hedge_prob: float = 0.25
    fence_prob: float = 0.55
    railing_prob: float = 0.3
    parked_prob: float = 0.45
    pavers_prob: float = 0.0
    crossing_prob: float = 0.25
    edge_line_prob: float = 0.6
    n_cars: float = 2.0
    n_peds: float = 4.0
    n_bikes: float = 1.2
    n_signs: float = 3.0
    traffic_light_prob: float = 0.35
    lamp_spacing: tuple[float, float] = (18.0, 34.0)
    sunny_prob: float = 0.35
    exposure: tuple[float, float] = (0.85, 1.12)
    tint: float = 0.04
    road: tuple = ((0.42, 0.41, 0.43), (0.38, 0.37, 0.38), (0.46, 0.45, 0.44))
    pavement: tuple = ((0.50, 0.49, 0.47), (0.46, 0.45, 0.44), (0.56, 0.50, 0.46), (0.55, 0.55, 0.53))
    kerb: tuple = ((0.6, 0.6, 0.58), (0.5, 0.5, 0.49))
    marking: tuple = ((0.82, 0.82, 0.78), (0.75, 0.75, 0.70), (0.80, 0.72, 0.35))
    building: tuple = (
        (0.55, 0.52, 0.48), (0.62, 0.58, 0.50), (0.50, 0.32, 0.27), (0.72, 0.70, 0.66),
        (0.46, 0.46, 0.47), (0.60, 0.50, 0.38), (0.38, 0.36, 0.35), (0.66, 0.62, 0.58),
    )
    window: tuple = ((0.16, 0.18, 0.22), (0.28, 0.30, 0.34), (0.50, 0.56, 0.62), (0.12, 0.12, 0.13))
    sky_horizon: tuple = ((0.86, 0.88, 0.90), (0.80, 0.84, 0.90), (0.92, 0.92, 0.91), (0.74, 0.80, 0.88))
    sky_zenith: tuple = ((0.72, 0.77, 0.85), (0.55, 0.66, 0.85), (0.80, 0.81, 0.83))
    tree: tuple = ((0.20, 0.27, 0.12), (0.26, 0.32, 0.17), (0.30, 0.34, 0.19), (0.17, 0.21, 0.14), (0.33, 0.38, 0.16))
    trunk: tuple = ((0.27, 0.23, 0.19), (0.33, 0.31, 0.28))
    fence: tuple = ((0.20, 0.22, 0.20), (0.14, 0.15, 0.15), (0.36, 0.29, 0.21), (0.42, 0.42, 0.42), (0.19, 0.25, 0.17))
    pole: tuple = ((0.36, 0.36, 0.36), (0.20, 0.22, 0.21), (0.50, 0.50, 0.48), (0.17, 0.24, 0.19))
    sign_front: tuple = ((0.75, 0.13, 0.12), (0.13, 0.27, 0.65), (0.86, 0.86, 0.84), (0.86, 0.70, 0.12), (0.10, 0.42, 0.25))
    sign_back: tuple = ((0.52, 0.52, 0.52), (0.40, 0.40, 0.41))
    car: tuple = (
        (0.85, 0.85, 0.84), (0.66, 0.67, 0.68), (0.44, 0.45, 0.46), (0.12, 0.12, 0.13), (0.58, 0.10, 0.10),
        (0.16, 0.23, 0.45), (0.18, 0.30, 0.20), (0.66, 0.60, 0.48), (0.30, 0.30, 0.34),
    )
    clothing: tuple = (
        (0.12, 0.12, 0.14), (0.22, 0.24, 0.30), (0.20, 0.26, 0.42), (0.55, 0.48, 0.38), (0.60, 0.15, 0.15),
        (0.30, 0.30, 0.30), (0.70, 0.70, 0.68), (0.18, 0.30, 0.22), (0.45, 0.35, 0.25),
    )
    skin: tuple = ((0.84, 0.66, 0.54), (0.56, 0.39, 0.29), (0.72, 0.53, 0.42), (0.20, 0.16, 0.14))
    texture: float = 1.0  # scale of all texture amplitudes


CAMVID_STYLE = Style(name="camvid")

#: A different city: pastel and glass façades, taller blocks, red pavers, darker fresh
#: asphalt, brighter vegetation, clear skies with hard shadows, a wider lens mounted higher.
NEW_CITY_STYLE = Style(
    name="new-city",
    horizon=(0.48, 0.56),
    focal=(0.60, 0.75),
    cam_height=(1.55, 1.9),
    yaw=0.04,
    lanes=(2, 3, 3, 4),
    lane_width=(3.4, 3.9),
    pave_width=(3.0, 6.0),
    building_height=(12.0, 34.0),
    segment_length=(15.0, 45.0),
    gap_prob=0.08,
    setback=(0.0, 0.6),
    street_end=(120.0, 300.0),
    end_block_prob=0.4,
    windows_prob=0.95,
    shop_prob=0.6,
    floor_height=(3.2, 4.0),
    tree_row_prob=0.65,
    hedge_prob=0.4,
    fence_prob=0.3,
    railing_prob=0.15,
    parked_prob=0.35,
    pavers_prob=0.7,
    crossing_prob=0.4,
    edge_line_prob=0.9,
    n_cars=3.5,
    n_peds=2.5,
    n_bikes=1.5,
    n_signs=3.0,
    traffic_light_prob=0.5,
    lamp_spacing=(25.0, 40.0),
    sunny_prob=0.8,
    exposure=(0.95, 1.2),
    tint=0.03,
    road=((0.29, 0.29, 0.31), (0.33, 0.33, 0.35), (0.26, 0.27, 0.29)),
    pavement=((0.62, 0.44, 0.38), (0.66, 0.60, 0.52), (0.55, 0.40, 0.36), (0.70, 0.68, 0.64)),
    kerb=((0.78, 0.77, 0.74),),
    marking=((0.95, 0.95, 0.93),),
    building=(
        (0.88, 0.80, 0.56), (0.86, 0.63, 0.52), (0.66, 0.72, 0.77), (0.90, 0.88, 0.83),
        (0.77, 0.62, 0.36), (0.36, 0.46, 0.56), (0.80, 0.76, 0.70), (0.70, 0.50, 0.46),
    ),
    window=((0.20, 0.30, 0.40), (0.40, 0.55, 0.68), (0.10, 0.16, 0.22)),
    sky_horizon=((0.72, 0.82, 0.93), (0.78, 0.85, 0.94), (0.66, 0.78, 0.92)),
    sky_zenith=((0.35, 0.55, 0.88), (0.42, 0.60, 0.90), (0.30, 0.48, 0.82)),
    tree=((0.30, 0.46, 0.15), (0.38, 0.52, 0.20), (0.24, 0.38, 0.12), (0.42, 0.50, 0.22)),
    trunk=((0.38, 0.32, 0.26),),
    fence=((0.55, 0.55, 0.55), (0.25, 0.28, 0.32), (0.60, 0.45, 0.30)),
    pole=((0.55, 0.56, 0.58), (0.30, 0.32, 0.35), (0.62, 0.62, 0.60)),
    sign_front=((0.80, 0.10, 0.12), (0.10, 0.30, 0.72), (0.92, 0.92, 0.90), (0.92, 0.78, 0.10)),
    sign_back=((0.62, 0.63, 0.64),),
    car=(
        (0.10, 0.10, 0.12), (0.70, 0.71, 0.73), (0.20, 0.26, 0.45), (0.90, 0.90, 0.90), (0.38, 0.39, 0.41),
        (0.55, 0.58, 0.62), (0.65, 0.15, 0.12),
    ),
    clothing=(
        (0.10, 0.10, 0.12), (0.80, 0.78, 0.72), (0.25, 0.35, 0.60), (0.70, 0.55, 0.30), (0.45, 0.20, 0.40),
        (0.35, 0.40, 0.30), (0.85, 0.40, 0.20),
    ),
    texture=1.3,
)

STYLES = {"camvid": CAMVID_STYLE, "new-city": NEW_CITY_STYLE}


# =========================================================================== painter
@dataclass
class _Materials:
    label: list = field(default_factory=list)
    color: list = field(default_factory=list)
    tex: list = field(default_factory=list)  # (low-frequency amplitude, high-frequency amplitude)
    mode: list = field(default_factory=list)
    param: list = field(default_factory=list)  # depth (const), |X| (wall), 1 (ground), SKY_DEPTH (sky)
    pattern: list = field(default_factory=list)
    pparam: list = field(default_factory=list)  # pattern parameters (7 floats)
    pcolor: list = field(default_factory=list)
    emit: list = field(default_factory=list)  # linear-light emission at dusk


class _Scene:
    """Collects materials and paint operations; renders label, colour, depth."""

    def __init__(self, height: int, width: int, rng: np.random.Generator, style: Style):
        self.H, self.W, self.rng, self.style = height, width, rng, style
        r = rng.uniform
        self.f = r(*style.focal) * width
        self.h0 = r(*style.horizon) * height
        self.cx = width * (0.5 + r(-style.yaw, style.yaw))
        self.hc = r(*style.cam_height)
        self.m = _Materials()
        self.ops: list = []
        self.seq = 0
        self.sunny = r() < style.sunny_prob
        # light from the left or the right: walls facing the sun are brighter
        self.sun_side = 1.0 if r() < 0.5 else -1.0
        self.shadow_ops: list = []

    # ------------------------------------------------------------------ helpers
    def pick(self, palette, jitter: float = 0.04, gain: tuple[float, float] = (0.88, 1.12)) -> np.ndarray:
        """A palette colour with random brightness and a small per-channel jitter."""
        u = self.rng.random(5).tolist()
        base = palette[int(u[0] * len(palette))]
        g = gain[0] + (gain[1] - gain[0]) * u[1]
        return np.array([min(max(c * g + jitter * (2.0 * e - 1.0), 0.02), 0.98) for c, e in zip(base, u[2:])])

    def side_light(self, side: float) -> float:
        """Brightness of a wall facing the road from ``side`` (-1 left, +1 right)."""
        if not self.sunny:
            return 1.0
        # a wall on the left faces right (+X); lit if the sun comes from the right
        return 1.12 if side == -self.sun_side else 0.8

    def material(self, label, color, *, mode=_CONST, param=1.0, tex=(0.06, 0.04), pattern=_PLAIN,
                 pparam=(0.0,) * 7, pcolor=(0, 0, 0), emit=(0, 0, 0)) -> int:
        m = self.m
        m.label.append(label)
        m.color.append(np.asarray(color, np.float32))
        s = self.style.texture
        m.tex.append((tex[0] * s, tex[1] * s))
        m.mode.append(mode)
        m.param.append(float(param))
        m.pattern.append(pattern)
        m.pparam.append(pparam)
        m.pcolor.append(pcolor)
        m.emit.append(emit)
        return len(m.label) - 1

    def proj(self, X, Y, Z) -> list:
        """Project world points (scalars or sequences, broadcast) to a flat [x0, y0, x1, y1, ...].

        Pure Python: the polygons are small and numpy's per-call overhead would dominate.
        """
        seqs = [v.tolist() if isinstance(v, np.ndarray) else v for v in (X, Y, Z)]
        n = max((len(v) for v in seqs if isinstance(v, (list, tuple))), default=1)
        X, Y, Z = ([float(v)] * n if not isinstance(v, (list, tuple)) else v for v in seqs)
        f, cx, h0, hc = self.f, self.cx, self.h0, self.hc
        out = []
        for x, y, z in zip(X, Y, Z):
            k = f / (z if z > 0.05 else 0.05)
            out.append(min(max(cx + k * x, -1e5), 1e5))
            out.append(min(max(h0 + k * (hc - y), -1e5), 1e5))
        return out

    def add(self, layer: int, z: float, kind: str, data, mat: int, width: int = 0) -> None:
        self.ops.append((layer, -float(z), self.seq, kind, data, mat, width))
        self.seq += 1

    # geometric primitives (world coordinates, metres; Y up from the ground)
    def wall(self, layer, X, Z1, Z2, Y1, Y2, mat, z=None):
        """Rectangle in the vertical plane at lateral offset X, parallel to the road."""
        self.add(layer, Z1 if z is None else z, "poly", self.proj(X, [Y1, Y2, Y2, Y1], [Z1, Z1, Z2, Z2]), mat)

    def wall_profile(self, layer, X, zs, ys, mat, z):
        self.add(layer, z, "poly", self.proj(X, ys, zs), mat)

    def ground(self, layer, X1, X2, Z1, Z2, mat, z=None):
        self.add(layer, Z1 if z is None else z, "poly", self.proj([X1, X2, X2, X1], 0.0, [Z1, Z1, Z2, Z2]), mat)

    def front(self, layer, Z, xs, ys, mat, z=None):
        """Polygon in the plane at distance Z facing the camera."""
        self.add(layer, Z if z is None else z, "poly", self.proj(xs, ys, Z), mat)

    def front_ellipse(self, layer, Z, X, Y, rx, ry, mat, z=None):
        x, y = self.proj(X, Y, Z)
        sx, sy = self.f * rx / Z, self.f * ry / Z
        self.add(layer, Z if z is None else z, "ellipse", [x - sx, y - sy, x + sx, y + sy], mat)

    def front_line(self, layer, Z, xs, ys, thickness, mat, z=None):
        w = max(1, int(round(self.f * thickness / Z)))
        self.add(layer, Z if z is None else z, "line", self.proj(xs, ys, Z), mat, w)

    def front_ring(self, layer, Z, X, Y, r, thickness, mat, z=None):
        x, y = self.proj(X, Y, Z)
        s = self.f * r / Z
        w = max(1, int(round(self.f * thickness / Z)))
        self.add(layer, Z if z is None else z, "ring", [x - s, y - s, x + s, y + s], mat, w)

    def shadow(self, kind: str, data: list, value: int) -> None:
        """A cast shadow on the ground (drawn at half resolution: soft edges for free)."""
        self.shadow_ops.append((kind, [0.5 * v for v in data], value))

    # ------------------------------------------------------------------ rendering
    def render(self, want_lights: bool):
        H, W, rng, st = self.H, self.W, self.rng, self.style
        canvas = Image.new("I", (W, H), 0)  # material 0 = sky
        draw = ImageDraw.Draw(canvas)
        for _, _, _, kind, data, mat, width in sorted(self.ops, key=lambda o: o[:3]):
            if kind == "poly":
                draw.polygon(data, fill=mat)
            elif kind == "ellipse":
                draw.ellipse(data, fill=mat)
            elif kind == "line":
                draw.line(data, fill=mat, width=width)
            else:  # ring
                draw.ellipse(data, outline=mat, width=width)
        mid = np.asarray(canvas, dtype=np.int32)
        m = self.m
        label = np.take(np.asarray(m.label, np.uint8), mid)
        mode_lut = np.asarray(m.mode, np.int8)
        mode = np.take(mode_lut, mid)
        tex_lut = np.asarray(m.tex, np.float32)

        # ---------------------------------------------------------------- depth (metres)
        rows = np.arange(H, dtype=np.float32) + 0.5
        cols = np.arange(W, dtype=np.float32) + 0.5
        dy = rows - self.h0
        ground_col = np.where(dy > 0.05, self.f * self.hc / np.maximum(dy, 0.05), weather.SKY_DEPTH).astype(np.float32)
        wall_row = (self.f / np.maximum(np.abs(cols - self.cx), 0.5)).astype(np.float32)
        depth = np.take(np.asarray(m.param, np.float32), mid)
        depth = np.where(mode == _GROUND, ground_col[:, None], depth)
        depth = np.where(mode == _WALL, depth * wall_row[None, :], depth)
        np.clip(depth, 0.3, weather.SKY_DEPTH, out=depth)

        # ---------------------------------------------------------------- colour
        gain = (rng.uniform(*st.exposure) * (1.0 + rng.uniform(-st.tint, st.tint, 3))).astype(np.float32)
        col_lut = np.stack(m.color).astype(np.float32)
        color = np.take(col_lut, mid, axis=0)  # (H, W, 3)
        gh, gw = H // 12 + 2, W // 12 + 2
        low = Image.fromarray(rng.standard_normal((gh, gw)).astype(np.float32), "F").resize((W, H), Image.BILINEAR)
        low = np.asarray(low, np.float32)
        high = rng.random((H, W), dtype=np.float32)
        high -= 0.5
        high *= 3.4
        shade = np.take(tex_lut[:, 0], mid)
        shade *= low
        shade += 1.0
        shade += np.take(tex_lut[:, 1], mid) * high

        lights = np.zeros((H, W, 3), np.float32) if want_lights else None
        self._patterns(mid, mode_lut, depth, color, shade, low, lights)

        # sky: gradient towards the zenith and soft clouds
        sky = np.flatnonzero(mode.ravel() == _SKYMODE)
        cl = rng.standard_normal((4, 6)).astype(np.float32)
        if sky.size:
            clouds = np.asarray(Image.fromarray(cl, "F").resize((W, H), Image.BICUBIC), np.float32).ravel()[sky]
            t = np.clip((self.h0 - rows) / max(self.h0, 1.0), 0.0, 1.0) ** 0.8  # 0 at the horizon, 1 at the top
            grad = (self.zenith - col_lut[0])[None, :] * t[:, None]  # (H, 3)
            amp = 0.02 if self.sunny else 0.045
            cf = color.reshape(-1, 3)
            cf[sky] += grad[sky // W] + (amp * clouds)[:, None]
            shade.ravel()[sky] = 1.0 + 0.01 * high.ravel()[sky]

        # cast shadows on the ground (sunny scenes)
        strength = rng.uniform(0.4, 0.55)
        if self.sunny and self.shadow_ops:
            sh = Image.new("L", (W // 2, H // 2), 0)
            sd = ImageDraw.Draw(sh)
            for kind, data, val in self.shadow_ops:
                if kind == "poly":
                    sd.polygon(data, fill=val)
                else:
                    sd.ellipse(data, fill=val)
            sh = np.asarray(sh.resize((W, H), Image.BILINEAR), np.float32) * (strength / 255.0)
            shade *= np.where(mode == _GROUND, 1.0 - sh, 1.0)

        # global light (exposure, white balance), vignetting, sensor noise, lens blur
        shade *= _vignette(H, W)
        sigma = rng.uniform(0.008, 0.02) * 255.0
        noise = rng.random((H, W), dtype=np.float32)
        noise -= 0.5
        noise *= sigma * 3.4
        color *= shade[..., None]
        color *= gain * 255.0
        color += noise[..., None]
        np.clip(color, 0.0, 255.0, out=color)
        image = color.astype(np.uint8)
        radius = rng.uniform(0.35, 0.8) * H / 360
        image = np.asarray(Image.fromarray(image, "RGB").filter(ImageFilter.BoxBlur(radius)))

        if lights is not None:
            emit = np.asarray(m.emit, np.float32)
            if emit.any():
                lights = np.maximum(lights, np.take(emit, mid, axis=0))
        return image, label, depth.astype(np.float32), lights

    def _patterns(self, mid, mode_lut, depth, color, shade, low, lights) -> None:
        """Windows, fence slats and pavers, computed in surface coordinates (metres)."""
        m, W = self.m, self.W
        pat_lut = np.asarray(m.pattern, np.int8)
        if not pat_lut.any():
            return
        flat_pat = np.take(pat_lut, mid).ravel()
        sel = np.flatnonzero(flat_pat)
        if not sel.size:
            return
        pp = np.asarray(m.pparam, np.float32)
        mm = mid.ravel()[sel]
        yy = (sel // W).astype(np.float32) + 0.5
        xx = (sel % W).astype(np.float32) + 0.5
        z = depth.ravel()[sel]
        v = self.hc - (yy - self.h0) * z / self.f  # height above the ground
        side = (xx - self.cx) * z / self.f  # lateral position
        u = np.where(np.take(mode_lut, mm) == _WALL, z, side)  # along the surface
        kind = flat_pat[sel]
        cflat = color.reshape(-1, 3)
        sflat = shade.ravel()
        # windows: a grid (su, sv spacing, fu, fv filled fraction, first floor v0, top vtop)
        w_ = kind == _WINDOWS
        if w_.any():
            mw, uw, vw, idx = mm[w_], u[w_], v[w_], sel[w_]
            uu = uw / np.take(pp[:, 0], mw)
            v0 = np.take(pp[:, 4], mw)
            vv = (vw - v0) / np.take(pp[:, 1], mw)
            iu, iv = np.floor(uu), np.floor(vv)
            fu = uu - iu
            glass = (fu < np.take(pp[:, 2], mw)) & ((vv - iv) < np.take(pp[:, 3], mw)) & (vw > v0) & (vw < np.take(pp[:, 5], mw))
            # shop windows on the ground floor
            glass |= (np.take(pp[:, 6], mw) > 0) & (vw > 0.4) & (vw < v0 - 0.5) & (fu < 0.8)
            g = np.flatnonzero(glass)
            # per-window brightness from a hash of the window's cell (deterministic, no RNG)
            h = ((iu[g].astype(np.int64) * 73856093) ^ (iv[g].astype(np.int64) * 19349663) ^ (mw[g].astype(np.int64) * 83492791)) & 1023
            hv = h.astype(np.float32) / 1023.0
            pc = np.asarray(m.pcolor, np.float32)
            gi = idx[g]
            cflat[gi] = np.take(pc, mw[g], axis=0) * (0.7 + 0.6 * hv)[:, None]
            sflat[gi] = 1.0 + 0.15 * low.ravel()[gi]
            if lights is not None:
                lit = hv < 0.35
                lights.reshape(-1, 3)[gi[lit]] = np.array([0.5, 0.4, 0.22], np.float32) * (0.5 + hv[lit, None])
        # fence slats: darker gaps between boards
        s_ = kind == _SLATS
        if s_.any():
            ms = mm[s_]
            frac = np.mod(u[s_] / np.take(pp[:, 0], ms), 1.0)
            sflat[sel[s_][frac > np.take(pp[:, 1], ms)]] *= 0.55
        # pavers: a tile grid on the ground, faded out where it would alias
        p_ = kind == _PAVERS
        if p_.any():
            tile = np.take(pp[:, 0], mm[p_])
            zz = z[p_]
            a = np.mod(side[p_] / tile, 1.0)
            b = np.mod(zz / (tile * 0.5), 1.0)
            joint = (zz / self.f < tile * 0.2) & ((a < 0.08) | (b < 0.1))
            sflat[sel[p_][joint]] *= 0.78


_VIGNETTE_CACHE: dict = {}


def _vignette(h: int, w: int) -> np.ndarray:
    key = (h, w)
    v = _VIGNETTE_CACHE.get(key)
    if v is None:
        y = (np.arange(h, dtype=np.float32) + 0.5) / h - 0.5
        x = (np.arange(w, dtype=np.float32) + 0.5) / w - 0.5
        r2 = (x[None, :] ** 2) * (w / h) ** 2 * 0.56 + y[:, None] ** 2
        v = (1.0 - 0.35 * r2).astype(np.float32)
        if len(_VIGNETTE_CACHE) > 16:
            _VIGNETTE_CACHE.clear()
        _VIGNETTE_CACHE[key] = v
    return v


# =========================================================================== layout
def _build_scene(sc: _Scene) -> None:
    rng, st = sc.rng, sc.style
    r = rng.uniform
    H, W, f = sc.H, sc.W, sc.f

    # ---------------------------------------------------------------- sky
    sky_h = sc.pick(st.sky_horizon, 0.02, (0.96, 1.04))
    sc.zenith = sc.pick(st.sky_zenith, 0.02, (0.95, 1.05)).astype(np.float32)
    sc.material(SKY, sky_h, mode=_SKYMODE, param=weather.SKY_DEPTH, tex=(0.0, 0.01))

    # ---------------------------------------------------------------- road layout
    n_lanes = int(st.lanes[int(rng.integers(len(st.lanes)))])
    lw = r(*st.lane_width)
    road_w = n_lanes * lw
    cam_lane = int(rng.integers(n_lanes))
    xl = -(cam_lane + 0.5) * lw + r(-0.4, 0.4)
    xr = xl + road_w
    pl, pr = r(*st.pave_width), r(*st.pave_width)
    line_l, line_r = xl - pl, xr + pr  # building lines
    z_end = r(*st.street_end)
    z0 = 0.8
    far = z_end + r(60.0, 250.0)
    end_block = r() < st.end_block_prob  # a block closing the street (a T-junction), else the road goes on
    road_end = z_end + 8 if end_block else far
    # what the camera can see laterally at distance Z: |X| < Z * W / f
    span = lambda Z: Z * max(sc.cx, W - sc.cx) / f + 5.0  # noqa: E731

    road_col = sc.pick(st.road, 0.02)
    road_tex = (r(0.04, 0.1), r(0.05, 0.12))
    sc.road_col = road_col
    road = sc.material(ROAD, road_col, mode=_GROUND, tex=road_tex)
    pave_col = sc.pick(st.pavement, 0.03)
    pavers = r() < st.pavers_prob
    pave_kw = dict(pattern=_PAVERS, pparam=(r(0.3, 0.6), 0, 0, 0, 0, 0, 0)) if pavers else {}
    pave_l = sc.material(PAVEMENT, pave_col, mode=_GROUND, tex=(r(0.05, 0.1), r(0.04, 0.1)), **pave_kw)
    pave_r = sc.material(PAVEMENT, pave_col * r(0.94, 1.06), mode=_GROUND, tex=(r(0.05, 0.1), r(0.04, 0.1)), **pave_kw)
    kerb_col = sc.pick(st.kerb, 0.02)
    kerb_g = sc.material(PAVEMENT, kerb_col, mode=_GROUND, tex=(0.03, 0.03))
    kerb_l = sc.material(PAVEMENT, kerb_col * 0.8, mode=_WALL, param=abs(xl), tex=(0.03, 0.03))
    kerb_r = sc.material(PAVEMENT, kerb_col * 0.8, mode=_WALL, param=abs(xr), tex=(0.03, 0.03))
    outer = span(far) + 50
    sc.ground(_L_GROUND, xl, xr, z0, road_end, road, z=0)
    sc.ground(_L_GROUND, -outer, xl, z0, far, pave_l, z=0)
    sc.ground(_L_GROUND, xr, outer, z0, far, pave_r, z=0)
    for xk, mk in ((xl, kerb_l), (xr, kerb_r)):
        s = np.sign(xk) or 1.0
        sc.ground(_L_GROUND, xk, xk + s * 0.25, z0, z_end, kerb_g, z=0)  # kerb stone top
        sc.wall(_L_GROUND, xk, z0, z_end, 0.0, 0.12, mk, z=0)

    # markings (label road)
    mark_col = sc.pick(st.marking, 0.02, (0.9, 1.05))
    mark = sc.material(ROAD, mark_col, mode=_GROUND, tex=(0.08, 0.12))
    dash, gap = r(2.0, 4.0), r(4.0, 8.0)
    for j in range(1, n_lanes):
        xm = xl + j * lw
        w_ = r(0.1, 0.16)
        if n_lanes % 2 == 0 and j == n_lanes // 2 and r() < 0.4:
            for o in (-0.12, 0.12):  # double centre line
                sc.ground(_L_GROUND, xm + o - w_ / 2, xm + o + w_ / 2, z0, z_end, mark, z=0)
            continue
        z = z0 + r(0, dash + gap)
        while z < z_end:
            sc.ground(_L_GROUND, xm - w_ / 2, xm + w_ / 2, z, min(z + dash, z_end), mark, z=0)
            z += dash + gap
    if r() < st.edge_line_prob:
        for xe, s in ((xl, 1), (xr, -1)):
            sc.ground(_L_GROUND, xe + s * 0.3, xe + s * 0.42, z0, z_end, mark, z=0)
    if r() < st.crossing_prob:
        zc = r(7.0, 30.0)
        depth_c = r(2.5, 4.0)
        x = xl + 0.3
        while x < xr - 0.5:
            sc.ground(_L_GROUND, x, x + 0.5, zc, zc + depth_c, mark, z=0)
            x += 1.0

    # ---------------------------------------------------------------- distant skyline (covers the horizon)
    sky_col = sc.pick(st.building, 0.03, (0.75, 0.95)) * 0.9 + sky_h * 0.1
    skyline = sc.material(BUILDING, sky_col, param=far, tex=(0.04, 0.02))
    tree_far = sc.material(TREE, sc.pick(st.tree, 0.03) * 1.1, param=far, tex=(0.1, 0.15))
    xs_, ys_ = [], []
    x = -span(far)
    while x < span(far):
        w_ = r(8.0, 40.0)
        hgt = r(4.0, 30.0) if r() < 0.75 else r(30.0, 60.0)
        xs_ += [x, x + w_]
        ys_ += [hgt, hgt]
        x += w_
    sc.front(_L_BACKGROUND, far, [xs_[0]] + xs_ + [xs_[-1]], [0.0] + ys_ + [0.0], skyline)
    for _ in range(int(rng.integers(2, 8))):
        X = r(-span(far), span(far))
        rx = r(8.0, 25.0)
        sc.front_ellipse(_L_BACKGROUND, far - 1, X, rx * 0.4, rx, rx * 0.7, tree_far)

    # ---------------------------------------------------------------- block closing the street
    if end_block:
        x = line_l - r(10, 40)
        x_stop = line_r + r(10, 40)
        while x < x_stop:
            w_ = r(8.0, 30.0)
            _facade_front(sc, _L_BEHIND, z_end + r(0, 8), x, min(x + w_, x_stop), r(*st.building_height))
            x += w_

    # ---------------------------------------------------------------- façades
    for side, line in ((-1.0, line_l), (1.0, line_r)):
        z = z0
        prev_x = None
        while z < z_end:
            seg = r(*st.segment_length)
            z2 = min(z + seg, z_end)
            if r() < st.gap_prob and z > 5:
                # a gap: something set back, trees, or nothing
                if r() < 0.6:
                    xb = line + side * r(4.0, 15.0)
                    _facade_side(sc, _L_BEHIND, side, xb, z, z2, r(*st.building_height), face_to=None)
                if r() < 0.5:
                    for _ in range(int(rng.integers(1, 4))):
                        _tree(sc, _L_BEHIND, line + side * r(1.5, 5.0), r(z, z2))
                prev_x = None
            else:
                xb = line + side * r(*st.setback)
                face_to = xb + side * 12.0 if prev_x is None else prev_x
                if prev_x is not None and abs(prev_x) <= abs(xb):
                    face_to = None
                if z <= z0:
                    face_to = None
                _facade_side(sc, _L_FACADE, side, xb, z, z2, r(*st.building_height), face_to=face_to)
                prev_x = xb
            z = z2

        # fences and hedges along the building line
        if r() < st.fence_prob:
            zf1 = r(z0, 30.0)
            zf2 = min(zf1 + r(8.0, 60.0), z_end)
            xf = line - side * r(0.2, 0.6)
            hgt = r(0.9, 1.7)
            col = sc.pick(st.fence, 0.02)
            fm = sc.material(FENCE, col, mode=_WALL, param=abs(xf), tex=(0.05, 0.08), pattern=_SLATS,
                             pparam=(r(0.12, 0.35), r(0.45, 0.8), 0, 0, 0, 0, 0))
            sc.wall(_L_FENCE, xf, zf1, zf2, 0.0, hgt, fm, z=zf1)
            # posts
            pm = sc.material(FENCE, col * 0.8, mode=_WALL, param=abs(xf) - 0.01, tex=(0.03, 0.03))
            zp = zf1
            while zp < zf2:
                sc.wall(_L_FENCE, xf - side * 0.01, zp, zp + 0.12, 0.0, hgt + 0.1, pm, z=zf1)
                zp += r(2.0, 3.0)
        if r() < st.hedge_prob:
            zh1 = r(z0, 40.0)
            zh2 = min(zh1 + r(6.0, 40.0), z_end)
            xh = line - side * r(0.3, 0.9)
            hm = sc.material(TREE, sc.pick(st.tree, 0.03) * 0.85, mode=_WALL, param=abs(xh), tex=(0.12, 0.3))
            zs = np.linspace(zh1, zh2, 14)
            ys = r(0.8, 1.5) + rng.uniform(-0.15, 0.15, 14)
            sc.wall_profile(_L_FENCE, xh, np.r_[zs, zs[::-1]], np.r_[ys, np.zeros(14)], hm, z=zh1)

        # shadows of the façades on the ground, on the side away from the sun
        if sc.sunny and side == sc.sun_side:
            reach = r(0.0, 1.0) * (road_w + pl + pr)
            x_in = line - side * reach
            sc.shadow("poly", sc.proj([line, x_in, x_in, line], 0.0, [z0, z0, z_end, z_end]), 255)

    # ---------------------------------------------------------------- street furniture
    for side, kerb, line in ((-1.0, xl, line_l), (1.0, xr, line_r)):
        # lamp posts
        z = r(3.0, 15.0)
        xp = kerb + side * r(0.4, 0.8)  # on the pavement
        pcol = sc.pick(st.pole, 0.02)
        while z < min(z_end, 120.0):
            _lamp_post(sc, side, xp, z, pcol)
            z += r(*st.lamp_spacing)
        # trees along the kerb
        if r() < st.tree_row_prob:
            z = r(2.0, 12.0)
            xt = kerb + side * r(0.7, 1.3)
            step = r(7.0, 15.0)
            while z < min(z_end, 150.0):
                if r() < 0.85:
                    _tree(sc, _L_STREET, xt + r(-0.2, 0.2), z + r(-1, 1))
                z += step
        # parked cars
        if r() < st.parked_prob:
            z = r(3.0, 12.0)
            xc = kerb - side * r(1.0, 1.3)  # on the road, along the kerb
            while z < min(z_end - 5, 90.0):
                if r() < 0.6:
                    _car(sc, xc + r(-0.15, 0.15), z, facing=-1 if r() < 0.5 else 1)
                z += r(5.0, 7.5)

        # pedestrian guard railing along the kerb, in short panels so that it sorts with the objects
        if r() < st.railing_prob:
            zr1 = r(3.0, 25.0)
            zr2 = zr1 + r(6.0, 40.0)
            xr_ = kerb + side * 0.3
            hgt = r(0.9, 1.1)
            col = sc.pick(st.fence, 0.02)
            fm = sc.material(FENCE, col, mode=_WALL, param=abs(xr_), tex=(0.03, 0.05), pattern=_SLATS,
                             pparam=(r(0.12, 0.25), r(0.25, 0.5), 0, 0, 0, 0, 0))
            zp = zr1
            while zp < zr2:
                sc.wall(_L_STREET, xr_, zp, zp + 2.5, 0.0, hgt, fm, z=zp)
                zp += 2.5

    for _ in range(rng.poisson(st.n_signs)):
        side = -1.0 if r() < 0.5 else 1.0
        kerb = xl if side < 0 else xr
        _sign_post(sc, side, kerb + side * r(0.3, 1.0), r(4.0, 60.0))
    if r() < st.traffic_light_prob:
        zt = r(12.0, 50.0)
        for side, kerb in ((-1.0, xl), (1.0, xr)):
            _traffic_light(sc, side, kerb + side * r(0.3, 0.8), zt + r(-1, 1))

    # ---------------------------------------------------------------- traffic
    occupied: list[tuple[int, float]] = []
    for _ in range(rng.poisson(st.n_cars)):
        lane = int(rng.integers(n_lanes))
        zc = r(4.0 if lane != cam_lane else 7.0, min(90.0, z_end - 6.0))
        if any(lane == ol and abs(zc - oz) < 7.0 for ol, oz in occupied):
            continue
        occupied.append((lane, zc))
        facing = -1 if lane > cam_lane else 1  # oncoming traffic on the right (left-hand traffic, as in CamVid)
        _car(sc, xl + (lane + 0.5) * lw + r(-0.3, 0.3), zc, facing=facing)

    for _ in range(rng.poisson(st.n_peds)):
        side = -1.0 if r() < 0.5 else 1.0
        kerb = xl if side < 0 else xr
        line = line_l if side < 0 else line_r
        if r() < 0.15:
            # crossing the road
            _pedestrian(sc, r(xl, xr), r(5.0, 35.0), crossing=True)
        else:
            zp = r(3.0, 55.0)
            xp = r(min(kerb, line), max(kerb, line))
            _pedestrian(sc, xp, zp, crossing=False)
            if r() < 0.3:  # a group
                for _ in range(int(rng.integers(1, 3))):
                    _pedestrian(sc, xp + r(-0.8, 0.8), zp + r(-1.5, 1.5), crossing=False)

    for _ in range(rng.poisson(st.n_bikes)):
        side = -1.0 if r() < 0.5 else 1.0
        kerb = xl if side < 0 else xr
        zb = r(5.0, 50.0)
        if r() < 0.6:
            _bicyclist(sc, kerb - side * r(0.6, 1.4), zb, view="back")  # on the road near the kerb
        else:
            _bicyclist(sc, r(xl + 0.5, xr - 0.5) if r() < 0.5 else kerb - side * r(0.5, 1.5), zb, view="side")


# --------------------------------------------------------------------------- objects
def _window_params(sc: _Scene, height: float):
    """Window grid of a façade: (pattern, (su, sv, fu, fv, v0, vtop, shop), window colour)."""
    st, r = sc.style, sc.rng.uniform
    if r() >= st.windows_prob:
        return _PLAIN, (0.0,) * 7, (0.0, 0.0, 0.0)
    su = r(2.2, 4.5)  # column spacing (m)
    sv = r(*st.floor_height)  # floor height (m)
    v0 = r(2.8, 4.2)  # first floor above the street
    shop = 1.0 if r() < st.shop_prob else 0.0  # large windows on the ground floor
    vtop = height - r(0.6, 1.5)
    wcol = sc.pick(st.window, 0.03, (0.85, 1.1))
    return _WINDOWS, (su, sv, r(0.3, 0.65), r(0.35, 0.62), v0, vtop, shop), tuple(wcol)


def _facade_material(sc: _Scene, mode, param, height, light=1.0):
    st, r = sc.style, sc.rng.uniform
    col = sc.pick(st.building, 0.03) * light
    pat, pp, pc = _window_params(sc, height)
    return sc.material(BUILDING, col, mode=mode, param=param, tex=(r(0.02, 0.06), r(0.02, 0.06)),
                       pattern=pat, pparam=pp, pcolor=pc)


def _facade_side(sc: _Scene, layer, side, X, z1, z2, height, face_to):
    mat = _facade_material(sc, _WALL, abs(X), height, sc.side_light(side))
    if face_to is not None:
        # the face of this block towards the camera, where the previous block is set back
        fm = _facade_material(sc, _CONST, z1, height, 0.9)
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


def _facade_front(sc: _Scene, layer, Z, x1, x2, height):
    mat = _facade_material(sc, _CONST, Z, height, 0.95)
    sc.front(layer, Z, [x1, x1, x2, x2], [0.0, height, height, 0.0], mat)


def _tree(sc: _Scene, layer, X, Z):
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


def _lamp_post(sc: _Scene, side, X, Z, col):
    r = sc.rng.uniform
    hgt = r(6.0, 9.0)
    w = r(0.14, 0.24)
    pm = sc.material(POLE, col * r(0.95, 1.05), param=Z, tex=(0.03, 0.04))
    sc.front(_L_STREET, Z, [X - w / 2, X - w * 0.35, X + w * 0.35, X + w / 2], [0, hgt, hgt, 0], pm)
    arm = r(1.0, 2.2)
    xe = X - side * arm  # towards the road
    sc.front(_L_STREET, Z, [X, X, xe, xe], [hgt - 0.12, hgt, hgt + 0.1, hgt - 0.02], pm)
    head = sc.material(POLE, col * 0.8 + 0.1, param=Z - 0.01, tex=(0.02, 0.02), emit=(1.6, 1.25, 0.7))
    sc.front(_L_STREET, Z, [xe - 0.3, xe - 0.25, xe + 0.25, xe + 0.3], [hgt - 0.05, hgt - 0.2, hgt - 0.2, hgt - 0.05], head)


def _sign_post(sc: _Scene, side, X, Z):
    st, r = sc.style, sc.rng.uniform
    hgt = r(2.1, 3.2)
    w = r(0.06, 0.1)
    pm = sc.material(POLE, sc.pick(st.pole, 0.02), param=Z, tex=(0.03, 0.04))
    sc.front(_L_STREET, Z, [X - w / 2, X - w / 2, X + w / 2, X + w / 2], [0, hgt, hgt, 0], pm)
    for k in range(1 if r() < 0.75 else 2):
        s = r(0.45, 0.9)
        back = r() < 0.25
        col = sc.pick(st.sign_back if back else st.sign_front, 0.03)
        sm = sc.material(SIGN, col, param=Z - 0.02, tex=(0.02, 0.03))
        yc = hgt - s / 2 - k * (s + 0.1)
        shape = int(sc.rng.integers(4))
        if shape == 0:
            sc.front(_L_STREET, Z, [X - s / 2, X - s / 2, X + s / 2, X + s / 2], [yc - s / 2, yc + s / 2, yc + s / 2, yc - s / 2], sm)
        elif shape == 1:
            sc.front_ellipse(_L_STREET, Z, X, yc, s / 2, s / 2, sm)
        elif shape == 2:
            sc.front(_L_STREET, Z, [X - s / 2, X, X + s / 2], [yc - s * 0.4, yc + s * 0.5, yc - s * 0.4], sm)
        else:
            # a wide plate (street name / direction sign)
            sc.front(_L_STREET, Z, [X - s, X - s, X + s, X + s], [yc - s * 0.3, yc + s * 0.3, yc + s * 0.3, yc - s * 0.3], sm)
        if not back and r() < 0.6:
            inner = sc.material(SIGN, np.clip(1.0 - col * 0.9, 0.05, 0.95), param=Z - 0.03, tex=(0.02, 0.02))
            sc.front_ellipse(_L_STREET, Z, X, yc, s * 0.28, s * 0.28, inner)


def _traffic_light(sc: _Scene, side, X, Z):
    st, r = sc.style, sc.rng.uniform
    hgt = r(2.6, 3.6)
    pm = sc.material(POLE, sc.pick(st.pole, 0.02), param=Z, tex=(0.03, 0.04))
    w = 0.12
    sc.front(_L_STREET, Z, [X - w / 2, X - w / 2, X + w / 2, X + w / 2], [0, hgt, hgt, 0], pm)
    box = sc.material(SIGN, np.full(3, r(0.08, 0.2)), param=Z - 0.02, tex=(0.02, 0.02))
    bw, bh = 0.32, 0.95
    sc.front(_L_STREET, Z, [X - bw / 2, X - bw / 2, X + bw / 2, X + bw / 2], [hgt, hgt + bh, hgt + bh, hgt], box)
    on = int(sc.rng.integers(3))
    colors = ((0.9, 0.15, 0.1), (0.95, 0.65, 0.1), (0.15, 0.85, 0.35))
    for k in range(3):
        lit = k == on
        c = np.asarray(colors[k]) * (1.0 if lit else 0.25)
        lm = sc.material(SIGN, c, param=Z - 0.03, tex=(0.01, 0.01), emit=tuple(np.asarray(colors[k]) * 1.5) if lit else (0, 0, 0))
        sc.front_ellipse(_L_STREET, Z, X, hgt + bh - 0.17 - k * 0.3, 0.1, 0.1, lm)


def _car(sc: _Scene, Xc, Z, facing: int):
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
    shade = sc.material(ROAD, sc.road_col * 0.45, mode=_GROUND, tex=(0.05, 0.05))
    sc.ground(_L_STREET, Xc - w / 2 - 0.1, Xc + w / 2 + 0.1, Z + 0.05, Z + L, shade, z=Z + L + 0.01)
    body_side = None
    xs = Xc - np.sign(Xc) * w / 2
    if abs(Xc) > w / 2 + 0.05:
        body_side = sc.material(CAR, col * 0.85, mode=_WALL, param=abs(xs), tex=(0.03, 0.03))
        glass_side = sc.material(CAR, glass_c * 1.2, mode=_WALL, param=abs(xs) + 0.001, tex=(0.03, 0.03))
        tyre_side = sc.material(CAR, tyre_c, mode=_WALL, param=abs(xs) - 0.001, tex=(0.03, 0.03))
        if van:
            pu = np.array([0, 0, 0.12, 0.2, 1, 1]); pv = np.array([0.12, 0.5, 0.55, 1, 1, 0.12])
            gu = np.array([0.14, 0.2, 0.32, 0.3]); gv = np.array([0.55, 0.88, 0.88, 0.55])
        else:
            pu = np.array([0, 0, 0.22, 0.32, 0.76, 0.88, 1, 1]); pv = np.array([0.17, 0.6, 0.63, 1, 1, 0.62, 0.58, 0.17])
            gu = np.array([0.25, 0.34, 0.74, 0.83]); gv = np.array([0.64, 0.94, 0.94, 0.64])
        if facing > 0:
            pu, gu = 1 - pu, 1 - gu  # front of the car is far
        sc.wall_profile(_L_STREET, xs, Z + L * pu, h * pv, body_side, z=Z)
        sc.wall_profile(_L_STREET, xs, Z + L * gu, h * gv, glass_side, z=Z)
        th = np.linspace(0, 2 * np.pi, 12, endpoint=False)
        for wu in (0.18, 0.82):
            sc.wall_profile(_L_STREET, xs, Z + L * wu + 0.33 * np.cos(th), 0.33 + 0.33 * np.sin(th), tyre_side, z=Z)
    # the face towards the camera
    body = sc.material(CAR, col, param=Z, tex=(0.03, 0.03))
    glass = sc.material(CAR, glass_c, param=Z - 0.01, tex=(0.03, 0.03))
    tyre = sc.material(CAR, tyre_c, param=Z + 0.3, tex=(0.03, 0.03))
    light = sc.material(CAR, light_c, param=Z - 0.01, tex=(0.02, 0.02), emit=lit)
    for xw in (Xc - w / 2 + 0.05, Xc + w / 2 - 0.28):
        sc.front(_L_STREET, Z, [xw, xw, xw + 0.23, xw + 0.23], [0, 0.3, 0.3, 0], tyre)
    top = 0.42 if not van else 0.49
    sc.front(_L_STREET, Z, [Xc - w / 2, Xc - w / 2, Xc - w * 0.47, Xc - w * top, Xc + w * top, Xc + w * 0.47, Xc + w / 2, Xc + w / 2],
             [0.2 * h / 1.5, 0.55 * h, 0.62 * h, h, h, 0.62 * h, 0.55 * h, 0.2 * h / 1.5], body)
    gy0, gy1 = (0.64, 0.93) if not van else (0.6, 0.85)
    sc.front(_L_STREET, Z, [Xc - w * 0.43, Xc - w * (top - 0.03), Xc + w * (top - 0.03), Xc + w * 0.43], [gy0 * h, gy1 * h, gy1 * h, gy0 * h], glass)
    for xl_ in (Xc - w / 2 + 0.05, Xc + w / 2 - 0.3):
        sc.front(_L_STREET, Z, [xl_, xl_, xl_ + 0.25, xl_ + 0.25], [0.45 * h, 0.55 * h, 0.55 * h, 0.45 * h], light)


def _pedestrian(sc: _Scene, X, Z, crossing: bool):
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
        sc.front(_L_STREET, Z, [hx - 0.07, hx + 0.07, fx + 0.06, fx - 0.06], [hip, hip, 0, 0], legs)
    coat = r() < 0.35
    sw = 0.2 if not crossing else 0.15
    bottom = hip - (0.15 * hp if coat else 0.0)
    sc.front(_L_STREET, Z, [X - sw * 0.8, X - sw, X + sw, X + sw * 0.8], [bottom, 0.82 * hp, 0.82 * hp, bottom], top)
    for s in (-1, 1):
        swing = -s * phase * (0.2 if crossing else 0.05)
        sx, hx = X + s * sw * 0.95, X + s * (sw + 0.04) + swing
        sc.front(_L_STREET, Z, [sx - 0.045, sx + 0.045, hx + 0.04, hx - 0.04], [0.81 * hp, 0.81 * hp, 0.47 * hp, 0.47 * hp], top)
        sc.front_ellipse(_L_STREET, Z, hx, 0.45 * hp, 0.045, 0.05, hands)
    sc.front(_L_STREET, Z, [X - 0.05, X - 0.05, X + 0.05, X + 0.05], [0.8 * hp, 0.88 * hp, 0.88 * hp, 0.8 * hp], hands)
    sc.front_ellipse(_L_STREET, Z, X, 0.92 * hp, 0.095, 0.12, skin)
    if r() < 0.25:  # a bag
        bag = sc.material(PEDESTRIAN, sc.pick(st.clothing, 0.03) * 0.8, param=Z - 0.03, tex=(0.03, 0.03))
        s = -1 if r() < 0.5 else 1
        bx = X + s * (sw + 0.1)
        sc.front(_L_STREET, Z, [bx - 0.13, bx - 0.13, bx + 0.13, bx + 0.13], [0.35 * hp, 0.52 * hp, 0.52 * hp, 0.35 * hp], bag)


def _bicyclist(sc: _Scene, X, Z, view: str):
    st, rng = sc.style, sc.rng
    r = rng.uniform
    if Z < 2.0:
        return
    k = r(0.9, 1.05)  # rider size
    frame = sc.material(BICYCLIST, sc.pick(st.car, 0.05) * 0.8, param=Z, tex=(0.03, 0.03))
    tyre = sc.material(BICYCLIST, np.full(3, r(0.05, 0.12)), param=Z, tex=(0.02, 0.02))
    cloth = sc.material(BICYCLIST, sc.pick(st.clothing, 0.03), param=Z - 0.01, tex=(0.04, 0.05))
    legs = sc.material(BICYCLIST, sc.pick(st.clothing, 0.03), param=Z - 0.01, tex=(0.04, 0.05))
    head = sc.material(BICYCLIST, sc.pick(st.skin, 0.02) if r() < 0.5 else sc.pick(st.sign_front, 0.05), param=Z - 0.02, tex=(0.03, 0.03))
    if view == "back":
        sc.front(_L_STREET, Z, [X - 0.035, X - 0.035, X + 0.035, X + 0.035], [0.0, 0.68, 0.68, 0.0], tyre)
        ph = r(-1, 1)
        for s in (-1, 1):
            py = 0.45 + s * ph * 0.15
            sc.front(_L_STREET, Z, [X + s * 0.05, X + s * 0.16, X + s * 0.14, X + s * 0.06], [0.95 * k, 0.95 * k, py, py], legs)
        sc.front(_L_STREET, Z, [X - 0.17, X - 0.2, X + 0.2, X + 0.17], [0.92 * k, 1.42 * k, 1.42 * k, 0.92 * k], cloth)
        sc.front(_L_STREET, Z, [X - 0.3, X - 0.3, X + 0.3, X + 0.3], [1.0, 1.04, 1.04, 1.0], frame)
        for s in (-1, 1):
            sc.front_line(_L_STREET, Z, [X + s * 0.19, X + s * 0.29], [1.38 * k, 1.04], 0.07, cloth)
        sc.front_ellipse(_L_STREET, Z, X, 1.56 * k, 0.1, 0.12, head)
        rear = sc.material(BICYCLIST, (0.6, 0.05, 0.05), param=Z - 0.03, tex=(0.01, 0.01), emit=(1.2, 0.1, 0.05))
        sc.front(_L_STREET, Z, [X - 0.04, X - 0.04, X + 0.04, X + 0.04], [0.7, 0.76, 0.76, 0.7], rear)
    else:
        d = -1.0 if r() < 0.5 else 1.0
        P = lambda u, v: (X + d * u, v)  # noqa: E731
        rh, seat, crank, headt, fh = P(-0.52, 0.34), P(-0.22, 0.92), P(0.0, 0.32), P(0.42, 0.95), P(0.52, 0.34)
        for c in (rh, fh):
            sc.front_ring(_L_STREET, Z, c[0], c[1], 0.34, 0.05, tyre)
        for a, b in ((rh, seat), (seat, crank), (crank, rh), (seat, headt), (crank, headt), (headt, fh)):
            sc.front_line(_L_STREET, Z, [a[0], b[0]], [a[1], b[1]], 0.045, frame)
        hip = P(-0.2, 0.98 * k)
        sh = P(0.12, 1.42 * k)
        ph = r(0, 2 * np.pi)
        for s in (0, np.pi):
            pedal = P(0.16 * np.cos(ph + s), 0.32 + 0.16 * np.sin(ph + s))
            knee = P(0.1 + 0.05 * np.cos(ph + s), 0.68 + 0.08 * np.sin(ph + s))
            sc.front_line(_L_STREET, Z, [hip[0], knee[0], pedal[0]], [hip[1], knee[1], pedal[1]], 0.12, legs)
        sc.front_line(_L_STREET, Z, [hip[0], sh[0]], [hip[1], sh[1]], 0.3, cloth)
        sc.front_line(_L_STREET, Z, [sh[0], headt[0]], [sh[1], headt[1] + 0.08], 0.08, cloth)
        hx, hy = P(0.2, 1.58 * k)
        sc.front_ellipse(_L_STREET, Z, hx, hy, 0.11, 0.12, head)


# =========================================================================== public API
def render(height: int = NATIVE_SIZE[0], width: int = NATIVE_SIZE[1], seed=0, style: Style | str = "camvid",
           lights: bool = False):
    """Render one scene: ``(image uint8 HxWx3, label uint8 HxW, depth float32 HxW metres, lights)``.

    ``seed`` is anything :func:`numpy.random.default_rng` accepts. ``lights`` asks for the
    (H, W, 3) float32 linear emission image used by the dusk shift (else ``None``); it
    does not change the rest of the output.
    """
    if isinstance(style, str):
        try:
            style = STYLES[style]
        except KeyError:
            raise DataError(f"unknown synthetic style '{style}' (known: {', '.join(STYLES)})") from None
    rng = np.random.default_rng(seed)
    sc = _Scene(int(height), int(width), rng, style)
    _build_scene(sc)
    return sc.render(lights)


def item_seed(seed: int, split: str, index: int) -> int:
    """The 128-bit seed of item ``index`` of ``split`` (a hash, so nearby seeds are unrelated)."""
    blob = f"udistill-synthetic-v{GENERATOR_VERSION}|{int(seed)}|{split}|{int(index)}".encode()
    return int.from_bytes(hashlib.blake2b(blob, digest_size=16).digest(), "little")


class SyntheticDataset(SegmentationDataset):
    """Procedural street scenes, rendered directly at ``size`` (see the module docstring)."""

    scheme = CAMVID11

    def __init__(self, split: str = "train", shift: str | None = None, size=None, seed: int = 0, length: int | None = None):
        if split not in SPLIT_LENGTHS:
            raise DataError(f"synthetic: unknown split '{split}' (known: {', '.join(SPLIT_LENGTHS)})")
        if shift is not None and shift not in KNOWN_SHIFTS:
            raise DataError(f"synthetic: unknown shift '{shift}' (known: {', '.join(KNOWN_SHIFTS)})")
        if length is None:
            length = SPLIT_LENGTHS[split]
        if isinstance(length, bool) or not isinstance(length, (int, np.integer)) or length < 1:
            raise DataError(f"synthetic: length must be a positive integer, got {length!r}")
        if size is None:
            size = NATIVE_SIZE
        try:
            h, w = int(size[0]), int(size[1])
        except (TypeError, ValueError, IndexError):
            raise DataError(f"synthetic: size must be (height, width), got {size!r}") from None
        if h < 16 or w < 16:
            raise DataError(f"synthetic: size must be at least 16x16, got {h}x{w}")
        try:
            self.seed = int(seed)
        except (TypeError, ValueError):
            raise DataError(f"synthetic: seed must be an integer, got {seed!r}") from None
        self.split = split
        self.shift = shift
        self.length = int(length)
        self.render_size = (h, w)
        self.size = None  # rendered at the requested size: the base class must not resize
        self.style = NEW_CITY_STYLE if shift == "new-city" else CAMVID_STYLE

    def __len__(self) -> int:
        return self.length

    def _index(self, index: int) -> int:
        index = int(index)
        if index < 0:
            index += self.length
        if not 0 <= index < self.length:
            raise IndexError(f"synthetic {self.split}: index {index} out of range (length {self.length})")
        return index

    def load(self, index: int):
        index = self._index(index)
        h, w = self.render_size
        s = item_seed(self.seed, self.split, index)
        weather_shift = self.shift if self.shift in weather.KNOWN_SHIFTS else None
        image, label, depth, lights = render(h, w, s, self.style, lights=weather_shift == "dusk")
        if weather_shift is not None:
            image = weather.apply_shift(image, weather_shift, depth, seed=s & 0x7FFFFFFF, lights=lights)
        return image, label, self.name(index), depth

    def name(self, index: int) -> str:
        return f"synthetic-{self.split}-{index:06d}"

    def source(self, index: int) -> str:
        return f"synthetic({self.split}, shift={self.shift}, seed={self.seed})[{index}]"

    def describe(self) -> dict:
        return {
            "class": type(self).__name__, "version": GENERATOR_VERSION, "split": self.split,
            "shift": self.shift, "size": list(self.render_size), "seed": self.seed, "len": self.length,
        }


@register_dataset("synthetic")
def build_synthetic(split, root=None, shift=None, size=None, seed=0, length=None, **options):
    """Builder registered as ``"synthetic"``. ``root`` is ignored (nothing on disk).

    Lengths: train 200, val 50, test 50 unless ``length`` is given. ``size=(H, W)``
    renders at that size directly (default 360x480). Unknown options raise DataError.
    """
    if options:
        raise DataError(f"synthetic: unknown option(s) {', '.join(sorted(options))} (known: length)")
    return SyntheticDataset(split=split, shift=shift, size=size, seed=seed, length=length)
