"""The scene being painted: a pinhole camera over flat ground, materials, paint operations.

Layout and object code describe things in world coordinates (metres; X right, Y up from the
ground, Z forward) with the primitives of :class:`Scene` (``wall``, ``ground``, ``front``…);
each becomes a 2-D paint operation sorted by layer, then by distance (far first), then by
insertion order: the painter's algorithm. :meth:`Scene.rasterise` draws them as material ids.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from .materials import DEPTH_CONST, PATTERN_PLAIN, Materials
from .styles import Style

# paint layers, back to front
LAYER_BACKGROUND, LAYER_GROUND, LAYER_BEHIND, LAYER_FACADE, LAYER_FENCE, LAYER_STREET = range(6)


class Scene:
    """Collects materials and paint operations of one image; the camera and the light.

    Camera: focal length ``f`` (pixels), horizon row ``h0``, principal column ``cx``,
    height above the ground ``hc`` (metres). Light: ``sunny`` and ``sun_side`` (-1 left, +1 right).
    """

    def __init__(self, height: int, width: int, rng: np.random.Generator, style: Style):
        self.H, self.W, self.rng, self.style = height, width, rng, style
        r = rng.uniform
        self.f = r(*style.focal) * width
        self.h0 = r(*style.horizon) * height
        self.cx = width * (0.5 + r(-style.yaw, style.yaw))
        self.hc = r(*style.cam_height)
        self.m = Materials()
        self.ops: list = []
        self.seq = 0
        self.sunny = r() < style.sunny_prob
        # light from the left or the right: walls facing the sun are brighter
        self.sun_side = 1.0 if r() < 0.5 else -1.0
        self.shadow_ops: list = []
        self.zenith: np.ndarray | None = None  # sky colour at the top (set by the layout)
        self.road_col: np.ndarray | None = None  # asphalt colour (cars' contact shadows darken it)

    # ------------------------------------------------------------------ colours and materials
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

    def material(
        self,
        label,
        color,
        *,
        mode=DEPTH_CONST,
        param=1.0,
        tex=(0.06, 0.04),
        pattern=PATTERN_PLAIN,
        pparam=(0.0,) * 7,
        pcolor=(0, 0, 0),
        emit=(0, 0, 0),
    ) -> int:
        """Add a material; returns its id (what the paint operations draw)."""
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

    # ------------------------------------------------------------------ camera
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

    # ------------------------------------------------------------------ paint operations
    def add(self, layer: int, z: float, kind: str, data, mat: int, width: int = 0) -> None:
        self.ops.append((layer, -float(z), self.seq, kind, data, mat, width))
        self.seq += 1

    # geometric primitives (world coordinates, metres; Y up from the ground)
    def wall(self, layer, X, Z1, Z2, Y1, Y2, mat, z=None):
        """Rectangle in the vertical plane at lateral offset X, parallel to the road."""
        self.add(layer, Z1 if z is None else z, "poly", self.proj(X, [Y1, Y2, Y2, Y1], [Z1, Z1, Z2, Z2]), mat)

    def wall_profile(self, layer, X, zs, ys, mat, z):
        """Polygon (zs, ys) in the vertical plane at lateral offset X."""
        self.add(layer, z, "poly", self.proj(X, ys, zs), mat)

    def ground(self, layer, X1, X2, Z1, Z2, mat, z=None):
        """Rectangle on the ground between lateral offsets X1, X2 and distances Z1, Z2."""
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

    # ------------------------------------------------------------------ rasterising
    def rasterise(self) -> np.ndarray:
        """The material id of every pixel (int32, H x W), paint operations drawn back to front."""
        canvas = Image.new("I", (self.W, self.H), 0)  # material 0 = sky
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
        return np.asarray(canvas, dtype=np.int32)

    def rasterise_shadows(self) -> np.ndarray:
        """Cast-shadow strength in [0, 1] (float32, H x W), drawn at half size and upsampled."""
        sh = Image.new("L", (self.W // 2, self.H // 2), 0)
        sd = ImageDraw.Draw(sh)
        for kind, data, val in self.shadow_ops:
            if kind == "poly":
                sd.polygon(data, fill=val)
            else:
                sd.ellipse(data, fill=val)
        return np.asarray(sh.resize((self.W, self.H), Image.BILINEAR), np.float32)
