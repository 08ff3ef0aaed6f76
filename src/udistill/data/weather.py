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

KNOWN_SHIFTS: tuple[str, ...] = ("fog-light", "fog", "fog-dense", "rain", "dusk")

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
    far: float = 100.0,
    sky_depth: float = SKY_DEPTH,
    sky_class: int = 0,
) -> np.ndarray:
    """Flat-ground depth estimate (metres) for an image without depth, as (H, W) float32.

    A forward-facing car camera at ``camera_height`` metres above a flat road sees the
    ground point at distance ``Z`` on image row ``y = y_h + f · h / Z`` (pinhole model,
    horizon row ``y_h = horizon · H``, focal length ``f`` in pixels). Inverting,

        depth(y) = camera_height · focal / (y − y_h)   for rows below the horizon,

    capped at ``far``; every row at or above the horizon gets the constant ``far`` (walls
    and objects there are of unknown distance; ``far`` is a typical street-canyon depth).
    The default focal length ``0.87 · W`` is a 60° horizontal field of view. If a ``label``
    map is given, pixels of ``sky_class`` (0 = sky in CamVid's scheme) get ``sky_depth``.
    Depth is constant along each row (objects standing on the road take the depth of the
    ground behind them, a known limitation) and increases monotonically towards the horizon.
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
        depth[label == sky_class] = sky_depth
    return depth


# --------------------------------------------------------------------------- helpers
def _check_image(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise DataError(f"apply_shift: image must be uint8 HxWx3, got {image.dtype} {image.shape}")
    return image


def _check_depth(depth, image: np.ndarray, label) -> np.ndarray:
    h, w = image.shape[:2]
    if depth is None:
        return estimate_depth(h, w, label)
    depth = np.asarray(depth, dtype=np.float32)
    if depth.shape != (h, w):
        raise DataError(f"apply_shift: depth shape {depth.shape} does not match image {h}x{w}")
    if not np.isfinite(depth).all():
        depth = np.nan_to_num(depth, nan=SKY_DEPTH, posinf=SKY_DEPTH, neginf=0.0)
    return np.clip(depth, 0.0, SKY_DEPTH)


def _to_uint8(x: np.ndarray) -> np.ndarray:
    return np.clip(x * 255.0 + 0.5, 0, 255).astype(np.uint8)


def srgb_to_linear(x: np.ndarray) -> np.ndarray:
    """sRGB in [0, 1] to linear light (IEC 61966-2-1, approximated by a 2.2 power law)."""
    return np.power(np.clip(x, 0.0, 1.0), 2.2, dtype=np.float32)


def linear_to_srgb(x: np.ndarray) -> np.ndarray:
    return np.power(np.clip(x, 0.0, 1.0), 1.0 / 2.2, dtype=np.float32)


def _blur(x: np.ndarray, radius: float) -> np.ndarray:
    """Gaussian blur of an (H, W) or (H, W, 3) float array in [0, 1] (via Pillow, 8 bit)."""
    if x.ndim == 2:
        img = Image.fromarray(_to_uint8(x), "L")
    else:
        img = Image.fromarray(_to_uint8(x), "RGB")
    return np.asarray(img.filter(ImageFilter.GaussianBlur(radius)), dtype=np.float32) / 255.0


# --------------------------------------------------------------------------- fog
def fog(image: np.ndarray, depth: np.ndarray, beta: float, airlight: np.ndarray | float = 0.85) -> np.ndarray:
    """Koschmieder's law ``I = J·t + A·(1−t)``, ``t = exp(−β·d)``; uint8 in, uint8 out."""
    j = image.astype(np.float32) / 255.0
    t = np.exp(-float(beta) * depth.astype(np.float32))[..., None]
    a = np.asarray(airlight, dtype=np.float32)
    return _to_uint8(j * t + a * (1.0 - t))


def _fog(image, depth, rng, shift):
    # Atmospheric light: bright, nearly neutral, slightly different per image.
    a = np.float32(rng.uniform(0.78, 0.9)) + rng.uniform(-0.015, 0.015, 3).astype(np.float32)
    beta = FOG_BETA[shift] * rng.uniform(0.9, 1.1)
    return fog(image, depth, beta, a)


# --------------------------------------------------------------------------- rain
#: (distance from the camera in m, streak length as a fraction of H, width px, opacity, count per 10⁴ px)
_RAIN_LAYERS = ((10.0, 0.035, 1, 0.22, 14.0), (4.0, 0.07, 1, 0.30, 6.0), (1.5, 0.14, 2, 0.38, 1.6))


def rain_streaks(height: int, width: int, depth: np.ndarray, rng: np.random.Generator, intensity: float = 1.0) -> np.ndarray:
    """Opacity (H, W) float32 in [0, 1] of slanted rain streaks, occluded by nearer scene."""
    angle = np.deg2rad(rng.normal(0.0, 12.0))
    total = np.zeros((height, width), np.float32)
    for dist, length, lw, alpha, per in _RAIN_LAYERS:
        n = int(round(per * intensity * height * width / 1e4))
        if n == 0:
            continue
        canvas = Image.new("L", (width, height), 0)
        draw = ImageDraw.Draw(canvas)
        ln = length * height * rng.uniform(0.6, 1.4, n)
        x0 = rng.uniform(-0.1 * width, 1.1 * width, n)
        y0 = rng.uniform(-0.15 * height, height, n)
        val = (255 * rng.uniform(0.5, 1.0, n)).astype(int)
        ang = angle + rng.normal(0.0, 0.03, n)
        ex, ey = x0 + np.sin(ang) * ln, y0 + np.cos(ang) * ln
        for i in range(n):
            draw.line((x0[i], y0[i], ex[i], ey[i]), fill=int(val[i]), width=max(1, int(round(lw * height / 360))))
        layer = np.asarray(canvas.filter(ImageFilter.GaussianBlur(0.6 + 0.2 * lw)), np.float32) * (alpha / 255.0)
        layer *= depth > dist
        total += layer * (1.0 - total)
    return total


def _rain(image, depth, rng):
    h, w = image.shape[:2]
    j = image.astype(np.float32) / 255.0
    # Overcast: lower exposure and saturation a little.
    gray = j.mean(axis=2, keepdims=True)
    j = (0.75 * j + 0.25 * gray) * np.float32(rng.uniform(0.78, 0.88))
    # Water on the lens: slight defocus.
    j = _blur(j, 0.9 * h / 360)
    intensity = rng.uniform(0.8, 1.25)
    s = rain_streaks(h, w, depth, rng, intensity)[..., None]
    streak_color = np.float32(rng.uniform(0.75, 0.9))
    a = np.float32(rng.uniform(0.62, 0.72))
    t = np.exp(-RAIN_BETA * intensity * depth.astype(np.float32))[..., None]
    out = t * (j * (1.0 - s) + s * streak_color) + (1.0 - t) * a
    return _to_uint8(out)


# --------------------------------------------------------------------------- dusk
def _bloom(light: np.ndarray, scale: int = 8, radius: float = 2.0) -> np.ndarray:
    """Cheap wide glow of an (H, W, 3) linear emission image (downsample, blur, upsample)."""
    h, w = light.shape[:2]
    peak = float(light.max())
    if peak <= 0:
        return light
    small_size = (max(1, w // scale), max(1, h // scale))
    img = Image.fromarray(_to_uint8(light / peak), "RGB").resize(small_size, Image.BILINEAR)
    img = img.filter(ImageFilter.GaussianBlur(radius)).resize((w, h), Image.BILINEAR)
    return np.asarray(img, np.float32) * (peak / 255.0)


def _dusk(image, rng, lights):
    h, w = image.shape[:2]
    lin = srgb_to_linear(image.astype(np.float32) / 255.0)
    exposure = rng.uniform(0.06, 0.09)
    balance = np.array([0.78, 0.9, 1.15], np.float32) * rng.uniform(0.95, 1.05, 3).astype(np.float32)
    lin = lin * (exposure * balance)
    if lights is not None:
        lights = np.asarray(lights, np.float32)
        if lights.ndim == 2:
            lights = np.repeat(lights[..., None], 3, axis=2) * np.array([1.0, 0.85, 0.6], np.float32)
        if lights.shape != (h, w, 3):
            raise DataError(f"apply_shift: lights shape {lights.shape} does not match image {h}x{w}")
        lin = lin + lights + 0.25 * _bloom(lights, radius=2.0 * h / 360)
    # Poisson-Gaussian sensor noise at high gain (in linear light).
    gain = 1.0 / exposure
    shot = 0.0004 * gain
    read = 0.0025
    sigma = np.sqrt(shot * np.clip(lin, 0, None) + read * read).astype(np.float32)
    lin = lin + sigma * rng.standard_normal((h, w, 3), dtype=np.float32)
    return _to_uint8(linear_to_srgb(lin))


# --------------------------------------------------------------------------- entry point
def apply_shift(
    image: np.ndarray,
    shift: str,
    depth: np.ndarray | None = None,
    seed: int = 0,
    *,
    label: np.ndarray | None = None,
    lights: np.ndarray | None = None,
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
    if shift == "dusk":
        return _dusk(image, rng, lights)
    depth = _check_depth(depth, image, label)
    if shift == "rain":
        return _rain(image, depth, rng)
    return _fog(image, depth, rng, shift)
