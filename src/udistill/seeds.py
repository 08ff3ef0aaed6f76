"""Seeds for single items: one hash wherever an item needs its own reproducible randomness.

A synthetic scene, an item's augmentation in an epoch, a real image's synthetic weather:
each draws from a generator seeded by :func:`item_seed` of a key naming the use and the item.
Hashing (rather than arithmetic on the run seed) makes neighbouring items, epochs and run
seeds draw unrelated streams, and the first key part keeps the uses apart.
"""

from __future__ import annotations

import hashlib


def item_seed(*key: object, bits: int = 31) -> int:
    """A ``bits``-bit seed from ``key`` (parts joined by ``|`` as text: ``item_seed("augment", 0, 3, 17)``).

    The low ``bits`` of the little-endian 128-bit BLAKE2b digest of the joined key; 31 bits
    suit every generator (numpy, torch, albumentations), 128 keep the whole digest.
    """
    if not 1 <= bits <= 128:
        raise ValueError(f"bits must be in 1..128, got {bits}")
    blob = "|".join(str(part) for part in key).encode("utf-8")
    value = int.from_bytes(hashlib.blake2b(blob, digest_size=16).digest(), "little")
    return value & ((1 << bits) - 1)
