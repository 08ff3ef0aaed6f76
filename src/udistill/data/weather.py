"""Synthetic distribution shifts: fog, rain and dusk as pure numpy functions.

These are the image-level shifts of the project's robustness study. They are used by the
procedural generator (:mod:`udistill.data.synthetic`, which knows the exact depth of every
pixel and where the lamps are) and by loaders of real images such as CamVid, which have no
depth: there :func:`estimate_depth` supplies a flat-ground estimate. Every function is
deterministic given its ``seed`` and never touches a global random state.

Physics in brief
----------------
*Fog* follows Koschmieder's law, the model behind Foggy Cityscapes (Sakaridis et al., 2018)::

    I(x) = J(x) · t(x) + A · (1 − t(x)),   t(x) = exp(−β · d(x))

with ``J`` the clear image, ``d`` the distance in metres, ``A`` the atmospheric light (a
bright, nearly neutral grey) and ``β`` the attenuation coefficient. Meteorological
visibility is about 3/β (contrast threshold 5 %). Foggy Cityscapes uses β = 0.005, 0.01 and
0.02 m⁻¹ (visibility 600, 300, 150 m). Its street scenes reach several hundred metres; ours
(and CamVid's) mostly end within 30–150 m, where those values barely show, so the three
densities here are the Foggy Cityscapes values multiplied by :data:`FOG_BETA_SCALE` = 3:
β = 0.015 (``fog-light``, visibility ≈ 200 m), 0.03 (``fog``, ≈ 100 m) and 0.06
(``fog-dense``, ≈ 50 m). Contrast falls with depth: a car at 10 m keeps 74 % of its contrast
in ``fog`` while a façade at 60 m keeps 17 %.

*Rain* follows the imaging model of Rain Cityscapes (Hu et al., CVPR 2019): rain streak
layers plus a depth-dependent veiling (rain accumulation behaves like fog)::

    I = T · (J · (1 − S) + S · c_s) + (1 − T) · A,   T = exp(−β_r · d)

``S`` is the streak opacity: three layers of slanted, motion-blurred streaks at 1.5, 4 and
10 m from the camera (nearer layers: longer, wider, fewer, more opaque); a layer only shows
where the scene is farther than the layer, so streaks never appear "inside" a nearby car.
The sky is darkened to an overcast grey and the whole image slightly defocused (water on
the lens).

*Dusk* is a low-light exposure in linear light: the image is converted from sRGB to linear,
scaled by an exposure of 6–9 % with a bluish white balance, optional emitters (street lamps,
headlights, tail lights, lit windows; passed as ``lights`` by the generator) are added with a
bloom, Poisson–Gaussian sensor noise is added in linear light (shot noise grows with the
signal, read noise is constant, both amplified by the high ISO gain), and the result is
converted back to sRGB. Brightness and contrast drop, noise rises.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from ..errors import DataError

#: New names are appended, never inserted: a shift's random stream is keyed by its index here.
KNOWN_SHIFTS: tuple[str, ...] = ("fog-light", "fog", "fog-dense", "rain", "dusk", "rain-light", "dusk-light")

#: Graded strengths (validation shifts that discriminate between scores: a score that
#: separates only the heavy shifts is told apart from one that also sees the light ones).
#: ``rain-light``: the same rain with 35 % of the streaks, of the veiling and of the
#: overcast darkening; ``dusk-light``: the exposure of an early dusk (20–30 % instead of
#: 6–9 %), so less noise too.
RAIN_LIGHT_STRENGTH = 0.35
DUSK_EXPOSURE = {"dusk": (0.06, 0.09), "dusk-light": (0.20, 0.30)}

#: Foggy Cityscapes' attenuation coefficients (m⁻¹) for its three densities.
FOGGY_CITYSCAPES_BETA = {"fog-light": 0.005, "fog": 0.01, "fog-dense": 0.02}
#: Our scenes are shallower than Cityscapes' (see the module docstring).
FOG_BETA_SCALE = 3.0
FOG_BETA = {k: v * FOG_BETA_SCALE for k, v in FOGGY_CITYSCAPES_BETA.items()}

#: Veiling coefficient of rain accumulation (m⁻¹).
RAIN_BETA = 0.02
#: Depth assigned to sky (and used as the cap of every depth map), metres.
SKY_DEPTH = 1000.0


# --------------------------------------------------------------------------- depth
def estimate_depth(
    height: int,
    width: int,
    label: np.ndarray | None = None,
    *,
    horizon: float = 0.45,
    camera_height: float = 1.5,
    focal: float | None = None,
    far: float = 50.0,
    sky_depth: float = SKY_DEPTH,
    sky_class: int = 0,
    ground: np.ndarray | None = None,
) -> np.ndarray:
    """Flat-ground depth estimate (metres) for an image without depth, as (H, W) float32.

    A forward-facing car camera at ``camera_height`` metres above a flat road sees the
    ground point at distance ``Z`` on image row ``y = y_h + f · h / Z`` (pinhole model,
    horizon row ``y_h = horizon · H``, focal length ``f`` in pixels). Inverting,

        depth(y) = camera_height · focal / (y − y_h)   for rows below the horizon,

    capped at ``far``; every row at or above the horizon gets the constant ``far`` (walls
    and objects there are of unknown distance; 50 m is a typical depth of the façades and
    vehicles of an urban street: with a larger value medium fog would erase every
    building above the horizon, with a smaller one fog would hardly show there).
    The default focal length ``0.87 · W`` is a 60° horizontal field of view. If a ``label``
    map is given, pixels of ``sky_class`` (0 = sky in CamVid's scheme) get ``sky_depth``.
    Without ``ground``, depth is constant along each row (objects standing on the road take
    the depth of the ground behind them) and increases monotonically towards the horizon.
    With a ``ground`` mask (road/pavement pixels, bool (H, W)), every other non-sky pixel
    takes the depth of the nearest ground pixel below it in its column, its contact point
    with the road: a car or a façade gets one depth from bottom to top instead of a seam
    at the horizon row.
    """
    if height < 1 or width < 1:
        raise DataError(f"estimate_depth: image size must be positive, got {height}x{width}")
    f = 0.87 * width if focal is None else float(focal)
    y_h = horizon * height
    rows = np.arange(height, dtype=np.float64) + 0.5
    below = rows > y_h
    col = np.full(height, far, dtype=np.float64)
    col[below] = np.minimum(camera_height * f / (rows[below] - y_h), far)
    depth = np.broadcast_to(col[:, None].astype(np.float32), (height, width)).copy()
    if label is not None:
        label = np.asarray(label)
        if label.shape != (height, width):
            raise DataError(f"estimate_depth: label shape {label.shape} does not match {height}x{width}")
    if ground is not None:
        ground = np.asarray(ground, bool)
        if ground.shape != (height, width):
            raise DataError(f"estimate_depth: ground mask shape {ground.shape} does not match {height}x{width}")
        # row index of the nearest ground pixel at or below each pixel (height if none)
        idx = np.where(ground, np.arange(height)[:, None], height)
        below_idx = np.minimum.accumulate(idx[::-1], axis=0)[::-1]
        has = below_idx < height
        contact = col.astype(np.float32)[np.minimum(below_idx, height - 1)]
        objects = has & ~ground
        depth[objects] = contact[objects]
    if label is not None:
        depth[label == sky_class] = sky_depth
    return depth


# --------------------------------------------------------------------------- helpers
def _check_image(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise DataError(f"apply_shift: image must be uint8 HxWx3, got {image.dtype} {image.shape}")
    return image


def _check_depth(depth, image: np.ndarray, label, ground=None) -> np.ndarray:
    h, w = image.shape[:2]
    if depth is None:
        return estimate_depth(h, w, label, ground=ground)
    depth = np.asarray(depth, dtype=np.float32)
    if depth.shape != (h, w):
        raise DataError(f"apply_shift: depth shape {depth.shape} does not match image {h}x{w}")
    if not np.isfinite(depth).all():
        depth = np.nan_to_num(depth, nan=SKY_DEPTH, posinf=SKY_DEPTH, neginf=0.0)
    return np.clip(depth, 0.0, SKY_DEPTH)


def _to_uint8(x: np.ndarray) -> np.ndarray:
    x = x * 255.0
    x += 0.5
    np.clip(x, 0, 255, out=x)
    return x.astype(np.uint8)


# sRGB <-> linear light through lookup tables (a 2.2 power law, IEC 61966-2-1's usual approximation)
_TO_LINEAR = np.power(np.arange(256, dtype=np.float64) / 255.0, 2.2).astype(np.float32)
_LIN_LEVELS = 16383
_TO_SRGB = np.clip(np.power(np.arange(_LIN_LEVELS + 1) / _LIN_LEVELS, 1 / 2.2) * 255 + 0.5, 0, 255).astype(np.uint8)


def srgb_to_linear(image: np.ndarray) -> np.ndarray:
    """uint8 sRGB to float32 linear light in [0, 1]."""
    return np.take(_TO_LINEAR, image)


def linear_to_srgb(lin: np.ndarray) -> np.ndarray:
    """float linear light (clipped to [0, 1]) to uint8 sRGB (16384-level table)."""
    q = lin * _LIN_LEVELS
    np.clip(q, 0, _LIN_LEVELS, out=q)
    return np.take(_TO_SRGB, q.astype(np.uint16))


def _triangular(rng: np.random.Generator, shape) -> np.ndarray:
    """Zero-mean, unit-variance noise: a sum of two uniforms (close to Gaussian, 3x cheaper)."""
    n = rng.random(shape, dtype=np.float32)
    n += rng.random(shape, dtype=np.float32)
    n -= 1.0
    n *= np.float32(np.sqrt(6.0))
    return n


# --------------------------------------------------------------------------- fog
def fog(image: np.ndarray, depth: np.ndarray, beta: float, airlight=0.85) -> np.ndarray:
    """Koschmieder's law ``I = J·t + A·(1−t)``, ``t = exp(−β·d)``; uint8 in, uint8 out.

    ``airlight`` is ``A`` in [0, 1], a scalar or one value per channel.
    """
    t = np.exp(np.float32(-beta) * depth.astype(np.float32, copy=False))[..., None]
    a = np.asarray(airlight, dtype=np.float32) * 255.0
    x = image.astype(np.float32)
    x -= a
    x *= t
    x += a + 0.5  # a convex combination of two values in [0, 255]: no clipping needed
    return x.astype(np.uint8)


def _fog(image, depth, rng, shift):
    # Atmospheric light: bright, nearly neutral, slightly different per image.
    a = np.float32(rng.uniform(0.78, 0.9)) + rng.uniform(-0.015, 0.015, 3).astype(np.float32)
    beta = FOG_BETA[shift] * rng.uniform(0.9, 1.1)
    return fog(image, depth, beta, a)


# --------------------------------------------------------------------------- rain
#: (distance from the camera in m, streak length as a fraction of H, width px, opacity, count per 10⁴ px)
_RAIN_LAYERS = ((10.0, 0.035, 1, 0.22, 14.0), (4.0, 0.07, 1, 0.30, 6.0), (1.5, 0.14, 2, 0.38, 1.6))


def rain_streaks(
    height: int, width: int, depth: np.ndarray, rng: np.random.Generator, intensity: float = 1.0
) -> np.ndarray:
    """Opacity (H, W) float32 in [0, 1] of slanted rain streaks, occluded by nearer scene."""
    angle = np.deg2rad(rng.normal(0.0, 12.0))
    total = np.zeros((height, width), np.float32)
    scale = height / 360.0
    for dist, length, lw, alpha, per in _RAIN_LAYERS:
        n = int(round(per * intensity * height * width / 1e4))
        canvas = Image.new("L", (width, height), 0)
        draw = ImageDraw.Draw(canvas)
        ln = length * height * rng.uniform(0.6, 1.4, n)
        x0 = rng.uniform(-0.1 * width, 1.1 * width, n)
        y0 = rng.uniform(-0.15 * height, height, n)
        val = (255 * rng.uniform(0.5, 1.0, n)).astype(int).tolist()
        ang = angle + rng.normal(0.0, 0.03, n)
        ex, ey = (x0 + np.sin(ang) * ln).tolist(), (y0 + np.cos(ang) * ln).tolist()
        x0, y0 = x0.tolist(), y0.tolist()
        px = max(1, int(round(lw * scale)))
        for i in range(n):
            draw.line((x0[i], y0[i], ex[i], ey[i]), fill=val[i], width=px)
        layer = np.asarray(canvas.filter(ImageFilter.BoxBlur(0.5 * lw * scale)), np.float32)
        layer *= np.float32(alpha / 255.0)
        layer *= depth > dist  # the streaks of this layer are hidden behind nearer objects
        total += layer * (1.0 - total)
    return total


def _rain(image, depth, rng, strength: float = 1.0):
    h, w = image.shape[:2]
    # Water on the lens: slight defocus.
    j = np.asarray(Image.fromarray(image, "RGB").filter(ImageFilter.BoxBlur(0.8 * h / 360)), np.float32)
    # Overcast: lower exposure and saturation a little.
    darkening = rng.uniform(0.78, 0.88)
    if strength != 1.0:  # (the full-strength arithmetic stays exactly as it was)
        darkening = 1.0 - strength * (1.0 - darkening)
    k = np.float32(darkening / 255.0)
    gray = (j[..., 0] + j[..., 1] + j[..., 2]) * np.float32(0.25 / 3.0)
    j *= 0.75
    j += gray[..., None]
    j *= k
    intensity = rng.uniform(0.8, 1.25) * strength
    s = rain_streaks(h, w, depth, rng, intensity)[..., None]
    streak_color = np.float32(rng.uniform(0.75, 0.9))
    a = np.float32(rng.uniform(0.62, 0.72))
    t = np.exp(np.float32(-RAIN_BETA * intensity) * depth)[..., None]
    # I = T·(J·(1 − S) + S·c_s) + (1 − T)·A
    j *= 1.0 - s
    j += s * streak_color
    j -= a
    j *= t
    j += a
    return _to_uint8(j)


# --------------------------------------------------------------------------- dusk
def _bloom(intensity: np.ndarray, scale: int = 8, passes: int = 3) -> np.ndarray:
    """Cheap wide glow (H, W) of an (H, W) emission intensity: downsample, box-blur, upsample."""
    h, w = intensity.shape
    sw, sh = max(1, w // scale), max(1, h // scale)
    small = np.asarray(Image.fromarray(intensity, "F").resize((sw, sh), Image.BOX), np.float32).copy()
    for _ in range(passes):  # separable 3-tap box blur, edge-padded
        p = np.pad(small, 1, mode="edge")
        small = (p[1:-1, :-2] + p[1:-1, 1:-1] + p[1:-1, 2:]) / 3.0
        p = np.pad(small, 1, mode="edge")
        small = (p[:-2, 1:-1] + p[1:-1, 1:-1] + p[2:, 1:-1]) / 3.0
    return np.asarray(Image.fromarray(small.astype(np.float32), "F").resize((w, h), Image.BILINEAR), np.float32)


def _dusk(image, rng, lights, exposure_range=DUSK_EXPOSURE["dusk"]):
    h, w = image.shape[:2]
    lin = srgb_to_linear(image)
    exposure = rng.uniform(*exposure_range)
    balance = np.array([0.78, 0.9, 1.15], np.float32) * rng.uniform(0.95, 1.05, 3).astype(np.float32)
    lin *= np.float32(exposure) * balance
    if lights is not None:
        lights = np.asarray(lights, np.float32)
        if lights.ndim == 2:
            lights = lights[..., None] * np.array([1.0, 0.85, 0.6], np.float32)
        if lights.shape != (h, w, 3):
            raise DataError(f"apply_shift: lights shape {lights.shape} does not match image {h}x{w}")
        lin += lights
        glow = _bloom(np.ascontiguousarray(lights[..., 0]))
        lin += glow[..., None] * np.array([0.3, 0.24, 0.15], np.float32)
    # Poisson-Gaussian sensor noise at high gain (in linear light): variance = shot·I + read².
    shot = np.float32(0.0004 / exposure)
    read = np.float32(0.0025)
    sigma = np.clip(lin, 0, None)
    sigma *= shot
    sigma += read * read
    np.sqrt(sigma, out=sigma)
    sigma *= _triangular(rng, (h, w, 3))
    lin += sigma
    return linear_to_srgb(lin)


# --------------------------------------------------------------------------- entry point
def apply_shift(
    image: np.ndarray,
    shift: str,
    depth: np.ndarray | None = None,
    seed: int = 0,
    *,
    label: np.ndarray | None = None,
    lights: np.ndarray | None = None,
    ground: np.ndarray | None = None,
) -> np.ndarray:
    """Apply ``shift`` (one of :data:`KNOWN_SHIFTS`) to an (H, W, 3) uint8 image.

    ``depth`` is the per-pixel distance in metres; ``None`` uses :func:`estimate_depth`
    (with ``label``, if given, to put sky at :data:`SKY_DEPTH`). ``lights`` is an optional
    (H, W, 3) or (H, W) linear-light emission image (lamps, headlights) used by ``dusk``.
    The result is uint8 of the same shape, deterministic given ``seed``. Labels are not
    changed by any of these shifts.
    """
    image = _check_image(image)
    if shift not in KNOWN_SHIFTS:
        hint = " ('new-city' is a generator shift, only for the synthetic dataset)" if shift == "new-city" else ""
        raise DataError(f"unknown shift '{shift}' (known: {', '.join(KNOWN_SHIFTS)}){hint}")
    rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, KNOWN_SHIFTS.index(shift)])
    if shift in DUSK_EXPOSURE:
        return _dusk(image, rng, lights, DUSK_EXPOSURE[shift])
    depth = _check_depth(depth, image, label, ground)
    if shift == "rain":
        return _rain(image, depth, rng)
    if shift == "rain-light":
        return _rain(image, depth, rng, RAIN_LIGHT_STRENGTH)
    return _fog(image, depth, rng, shift)
