"""From the material canvas to the outputs: label, depth, colour (textures, patterns, sky,
cast shadows, camera effects) and the dusk emission image.

Every random draw happens here in a fixed order (exposure, textures, clouds, shadow strength,
noise, blur), so the image of a seed is reproducible to the byte.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageFilter

from .. import weather
from .materials import (
    DEPTH_GROUND,
    DEPTH_SKY,
    DEPTH_WALL,
    PATTERN_PAVERS,
    PATTERN_SLATS,
    PATTERN_WINDOWS,
)
from .painter import Scene


def shade(sc: Scene, want_lights: bool):
    """``(image uint8 HxWx3, label uint8 HxW, depth float32 HxW metres, lights or None)``."""
    H, W, rng, st = sc.H, sc.W, sc.rng, sc.style
    mid = sc.rasterise()
    m = sc.m
    label = np.take(np.asarray(m.label, np.uint8), mid)
    mode_lut = np.asarray(m.mode, np.int8)
    mode = np.take(mode_lut, mid)
    depth = depth_map(sc, mid, mode)

    gain = (rng.uniform(*st.exposure) * (1.0 + rng.uniform(-st.tint, st.tint, 3))).astype(np.float32)
    col_lut = np.stack(m.color).astype(np.float32)
    color = np.take(col_lut, mid, axis=0)  # (H, W, 3)
    low, high, shading = _texture(sc, mid)

    lights = np.zeros((H, W, 3), np.float32) if want_lights else None
    paint_patterns(sc, mid, mode_lut, depth, color, shading, low, lights)
    _sky(sc, mode, color, col_lut[0], shading, high)
    _cast_shadows(sc, mode, shading)
    image = _camera(sc, color, shading, gain)

    if lights is not None:
        emit = np.asarray(m.emit, np.float32)
        if emit.any():
            lights = np.maximum(lights, np.take(emit, mid, axis=0))
    return image, label, depth.astype(np.float32), lights


def depth_map(sc: Scene, mid: np.ndarray, mode: np.ndarray) -> np.ndarray:
    """Metres per pixel: ground from the ground-plane equation, walls from their plane,
    objects from their distance, sky at :data:`weather.SKY_DEPTH`.

    Shape: mid, mode (H, W) material ids and their depth modes; returns (H, W) float32.
    """
    rows = np.arange(sc.H, dtype=np.float32) + 0.5
    cols = np.arange(sc.W, dtype=np.float32) + 0.5
    dy = rows - sc.h0
    ground_col = np.where(dy > 0.05, sc.f * sc.hc / np.maximum(dy, 0.05), weather.SKY_DEPTH).astype(np.float32)
    wall_row = (sc.f / np.maximum(np.abs(cols - sc.cx), 0.5)).astype(np.float32)
    depth = np.take(np.asarray(sc.m.param, np.float32), mid)
    depth = np.where(mode == DEPTH_GROUND, ground_col[:, None], depth)
    depth = np.where(mode == DEPTH_WALL, depth * wall_row[None, :], depth)
    np.clip(depth, 0.3, weather.SKY_DEPTH, out=depth)
    return depth


def _texture(sc: Scene, mid: np.ndarray):
    """Per-material texture: ``(low, high, shade)``, low- and high-frequency noise and the
    brightness factor they give each pixel (all (H, W) float32)."""
    H, W, rng = sc.H, sc.W, sc.rng
    tex_lut = np.asarray(sc.m.tex, np.float32)
    gh, gw = H // 12 + 2, W // 12 + 2
    low = Image.fromarray(rng.standard_normal((gh, gw)).astype(np.float32), "F").resize((W, H), Image.BILINEAR)
    low = np.asarray(low, np.float32)
    high = rng.random((H, W), dtype=np.float32)
    high -= 0.5
    high *= 3.4
    shading = np.take(tex_lut[:, 0], mid)
    shading *= low
    shading += 1.0
    shading += np.take(tex_lut[:, 1], mid) * high
    return low, high, shading


def _sky(sc: Scene, mode, color, horizon_color, shading, high) -> None:
    """Sky: a gradient from the horizon colour towards the zenith, and soft clouds."""
    H, W, rng = sc.H, sc.W, sc.rng
    sky = np.flatnonzero(mode.ravel() == DEPTH_SKY)
    cl = rng.standard_normal((4, 6)).astype(np.float32)
    if not sky.size:
        return
    rows = np.arange(H, dtype=np.float32) + 0.5
    clouds = np.asarray(Image.fromarray(cl, "F").resize((W, H), Image.BICUBIC), np.float32).ravel()[sky]
    t = np.clip((sc.h0 - rows) / max(sc.h0, 1.0), 0.0, 1.0) ** 0.8  # 0 at the horizon, 1 at the top
    grad = (sc.zenith - horizon_color)[None, :] * t[:, None]  # (H, 3)
    amp = 0.02 if sc.sunny else 0.045
    cf = color.reshape(-1, 3)
    cf[sky] += grad[sky // W] + (amp * clouds)[:, None]
    shading.ravel()[sky] = 1.0 + 0.01 * high.ravel()[sky]


def _cast_shadows(sc: Scene, mode, shading) -> None:
    """Darken the ground under the cast shadows of a sunny scene."""
    strength = sc.rng.uniform(0.4, 0.55)
    if sc.sunny and sc.shadow_ops:
        sh = sc.rasterise_shadows() * (strength / 255.0)
        shading *= np.where(mode == DEPTH_GROUND, 1.0 - sh, 1.0)


def _camera(sc: Scene, color, shading, gain) -> np.ndarray:
    """Global light (exposure, white balance), vignetting, sensor noise, lens blur -> uint8 RGB."""
    H, W, rng = sc.H, sc.W, sc.rng
    shading *= _vignette(H, W)
    sigma = rng.uniform(0.008, 0.02) * 255.0
    noise = rng.random((H, W), dtype=np.float32)
    noise -= 0.5
    noise *= sigma * 3.4
    color *= shading[..., None]
    color *= gain * 255.0
    color += noise[..., None]
    np.clip(color, 0.0, 255.0, out=color)
    image = color.astype(np.uint8)
    radius = rng.uniform(0.35, 0.8) * H / 360
    return np.asarray(Image.fromarray(image, "RGB").filter(ImageFilter.BoxBlur(radius)))


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


# --------------------------------------------------------------------------- patterns
def paint_patterns(sc: Scene, mid, mode_lut, depth, color, shading, low, lights) -> None:
    """Windows, fence slats and pavers, computed in surface coordinates (metres).

    Shape: mid, depth, shading, low (H, W); color and lights (H, W, 3), changed in place.
    """
    m, W = sc.m, sc.W
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
    v = sc.hc - (yy - sc.h0) * z / sc.f  # height above the ground
    side = (xx - sc.cx) * z / sc.f  # lateral position
    u = np.where(np.take(mode_lut, mm) == DEPTH_WALL, z, side)  # along the surface
    kind = flat_pat[sel]
    sflat = shading.ravel()
    w_ = kind == PATTERN_WINDOWS
    if w_.any():
        _windows(sc, pp, mm[w_], u[w_], v[w_], sel[w_], color.reshape(-1, 3), sflat, low, lights)
    s_ = kind == PATTERN_SLATS
    if s_.any():  # fence slats: darker gaps between boards
        ms = mm[s_]
        frac = np.mod(u[s_] / np.take(pp[:, 0], ms), 1.0)
        sflat[sel[s_][frac > np.take(pp[:, 1], ms)]] *= 0.55
    p_ = kind == PATTERN_PAVERS
    if p_.any():  # pavers: a tile grid on the ground, faded out where it would alias
        tile = np.take(pp[:, 0], mm[p_])
        zz = z[p_]
        a = np.mod(side[p_] / tile, 1.0)
        b = np.mod(zz / (tile * 0.5), 1.0)
        joint = (zz / sc.f < tile * 0.2) & ((a < 0.08) | (b < 0.1))
        sflat[sel[p_][joint]] *= 0.78


def _windows(sc: Scene, pp, mw, uw, vw, idx, cflat, sflat, low, lights) -> None:
    """A grid of windows (su, sv spacing, fu, fv filled fraction, first floor v0, top vtop)
    and shop windows on the ground floor; some are lit at dusk.

    Shape: mw, uw, vw, idx (P,) material ids, surface coordinates and flat pixel indices.
    """
    uu = uw / np.take(pp[:, 0], mw)
    v0 = np.take(pp[:, 4], mw)
    vv = (vw - v0) / np.take(pp[:, 1], mw)
    iu, iv = np.floor(uu), np.floor(vv)
    fu = uu - iu
    glass = (
        (fu < np.take(pp[:, 2], mw)) & ((vv - iv) < np.take(pp[:, 3], mw)) & (vw > v0) & (vw < np.take(pp[:, 5], mw))
    )
    glass |= (np.take(pp[:, 6], mw) > 0) & (vw > 0.4) & (vw < v0 - 0.5) & (fu < 0.8)
    g = np.flatnonzero(glass)
    # per-window brightness from a hash of the window's cell (deterministic, no RNG)
    h = (
        (iu[g].astype(np.int64) * 73856093) ^ (iv[g].astype(np.int64) * 19349663) ^ (mw[g].astype(np.int64) * 83492791)
    ) & 1023
    hv = h.astype(np.float32) / 1023.0
    pc = np.asarray(sc.m.pcolor, np.float32)
    gi = idx[g]
    cflat[gi] = np.take(pc, mw[g], axis=0) * (0.7 + 0.6 * hv)[:, None]
    sflat[gi] = 1.0 + 0.15 * low.ravel()[gi]
    if lights is not None:
        lit = hv < 0.35
        lights.reshape(-1, 3)[gi[lit]] = np.array([0.5, 0.4, 0.22], np.float32) * (0.5 + hv[lit, None])
