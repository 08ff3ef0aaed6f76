"""The synthetic renderer's output, byte for byte, for a handful of items.

The digests were computed before the renderer was split into a package (one module of
1121 lines then), so a refactor that changes a single pixel, label or depth value fails
here. They depend on numpy's and Pillow's arithmetic too: if an upgrade of either changes
them, compare the images by eye (``udistill data preview``) before updating the digests,
and bump ``GENERATOR_VERSION`` if the scenes themselves changed.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from udistill.data.synthetic import SyntheticDataset, render

# (split, shift, (H, W), seed, index) -> SHA-256 of image, label and depth (dtype, shape, bytes)
ITEM_DIGESTS = {
    ("train", None, (96, 128), 0, 0): "08989226d85bdeb5826494bb46260c1785f1d20b4115f5386da6561a1691f646",
    ("train", None, (120, 160), 3, 7): "49f4c7d5815ccb320c256c59ce0389f6bd3e45d8a8e44d0410a0d97b5ee34966",
    ("val", "fog", (96, 128), 0, 1): "035b6177d866bfcd90127ba6c482f180be7f2cf632de808b636a3bc96d502cad",
    ("val", "rain", (64, 96), 1, 2): "f92c32d661b7e87637abf63c2e96049a07d9c17ea846774e4b3d73509e7b47fc",
    ("test", "dusk", (96, 128), 0, 3): "a740d96829764287e374a173346c771e4e6ead51c8ca241a28beeb2ceef588de",
    ("test", "new-city", (120, 160), 2, 4): "6b836d4fc8d5438e948b9c1a8a0cf2ddd8219f887bdae0aa2332f4cdf17d741e",
    ("train", "fog-dense", (48, 64), 5, 11): "5862a310ad6f4abcde06751010264bb5584c7c6da4e5f862352bd99a641a0ba8",
}

# render(180, 240, seed=123, style="camvid", lights=True): image, label, depth, lights (bytes)
RENDER_DIGEST = "836e38b238745d4240af96682a94e466de6d95583f79af5cd13b8902c7090d74"


def _digest(arrays, with_layout: bool = True) -> str:
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a)
        if with_layout:
            h.update(str(a.dtype).encode())
            h.update(str(a.shape).encode())
        h.update(a.tobytes())
    return h.hexdigest()


@pytest.mark.parametrize("key", list(ITEM_DIGESTS), ids=lambda k: f"{k[0]}-{k[1]}-{k[2][0]}x{k[2][1]}-s{k[3]}-i{k[4]}")
def test_rendered_item_bytes_unchanged(key):
    split, shift, size, seed, index = key
    image, label, _, depth = SyntheticDataset(split, shift=shift, size=size, seed=seed).load(index)
    assert _digest((image, label, depth)) == ITEM_DIGESTS[key]


def test_render_with_lights_unchanged():
    assert _digest(render(180, 240, 123, "camvid", lights=True), with_layout=False) == RENDER_DIGEST
