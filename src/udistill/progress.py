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


class StageClock:
    """A long command as a person follows it: one line per stage with its expected and
    elapsed time, and one overall bar in seconds of expected work.

    ``expected`` maps stage names to seconds measured earlier (e.g. the demo's
    ``demo-time.json``); an unknown stage says so. ``times`` holds what each stage took.
    """

    def __init__(self, expected: dict[str, float] | None = None, enabled: bool = True, desc: str = "overall"):
        from tqdm import tqdm

        self.expected = dict(expected or {})
        self.times: dict[str, float] = {}
        total = sum(self.expected.values()) or None
        self.bar = tqdm(
            total=round(total) if total else None,
            desc=desc,
            unit="s",
            position=0,
            leave=False,
            dynamic_ncols=True,
            disable=not enabled,
            bar_format="{desc}: {percentage:3.0f}%|{bar}| {n:.0f}/{total:.0f} s expected work [{elapsed}]"
            if total
            else "{desc}: stages running [{elapsed}]",
        )
        self._write = tqdm.write

    def stage(self, name: str, what: str):
        """Context manager timing one stage."""
        import contextlib
        import time

        @contextlib.contextmanager
        def timed():
            exp = self.expected.get(name)
            self._write(f"[{name}] {what} (expected {f'~{exp:.0f} s' if exp else 'unknown'})")
            t0 = time.monotonic()
            yield
            dt = time.monotonic() - t0
            self.times[name] = self.times.get(name, 0.0) + dt
            self._write(f"[{name}] done in {dt:.0f} s")
            self.bar.update(exp if exp else 0)

        return timed()

    def close(self) -> None:
        self.bar.close()
