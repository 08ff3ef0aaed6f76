"""Progress bars: one wrapper so every loop shows (or hides) its bar the same way.

Bars go to stderr and disappear when done (``leave=False``): logs keep the summary lines the
commands print, not a bar per epoch.
"""

from __future__ import annotations

from collections.abc import Iterable


def progress(
    iterable: Iterable | None = None,
    desc: str = "",
    total: int | None = None,
    enabled: bool | None = True,
    unit: str = "it",
):
    """``iterable`` wrapped in a tqdm bar (``enabled=False``: a silent one; ``None``: only on a
    terminal). Without an iterable, call ``update(n)`` on the result (e.g. for video frames).

    The silent bar still offers ``update``/``set_postfix``/``close``, so callers need no branches.
    Plain ``tqdm``, not ``tqdm.auto``: the latter's asyncio variant calls ``iter()`` on the
    iterable when the bar is built, and a DataLoader draws its worker seed from torch's global
    generator per ``iter()``: showing a bar would change the training run's random numbers.
    """
    from tqdm import tqdm

    disable = None if enabled is None else not enabled
    return tqdm(iterable, desc=desc, total=total, unit=unit, leave=False, dynamic_ncols=True, disable=disable)
