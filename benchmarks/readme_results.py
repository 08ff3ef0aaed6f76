"""The README's result blocks, generated from the committed result files (never typed).

    python benchmarks/readme_results.py            # rewrite the blocks in README.md
    python benchmarks/readme_results.py --check    # exit 1 when README.md differs from the files

A block sits between ``<!-- results:NAME -->`` and ``<!-- /results:NAME -->``; :data:`BLOCKS`
maps each name to the function that renders it from ``benchmarks/results/``. The test suite
runs the check, so a README that disagrees with its files fails CI.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
README = ROOT / "README.md"


def _load(rel: str) -> dict:
    return json.loads((RESULTS / rel).read_text())


def _f(v, digits: int = 3) -> str:
    return "–" if v is None else f"{v:.{digits}f}"


def demo_time() -> str:
    t = _load("demo-time.json")
    stages = ", ".join(f"{k} {v:.0f} s" for k, v in t["stages_s"].items())
    load = t["load_average_1min"]
    m = t["machine"]
    return (
        f"`udistill demo` in a fresh run folder: **{t['total_s']:.0f} s** of wall time ({stages}) on "
        f"{m['cores']} cores ({m['cpu']}), 1-minute load average {load['before']} before and "
        f"{load['mean']} on average while it ran (max {load['max']}); commit {t['commit']}, "
        "`benchmarks/results/demo-time.json` (`python benchmarks/demo_time.py`)."
    )


def demo_headline() -> str:
    from udistill.report.headline import headline_rows, headline_text

    r = _load("demo-synthetic/results.json")
    return "```\n" + headline_text(r.get("headline") or headline_rows(r)) + "\n```"


def _selected_table(r: dict, sides=("student", "ensemble", "baseline", "mc_dropout")) -> str:
    lines = ["| shift | " + " | ".join(sides) + " |", "|---" * (len(sides) + 1) + "|"]
    for name, s in (r.get("shifts") or {}).items():
        sel = s.get("selected") or {}
        cells = []
        for side in sides:
            e = sel.get(side)
            cells.append("–" if not e else f"{_f(e.get('auroc'))} ({e['method']} / {e['score']})")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def demo_selected() -> str:
    r = _load("demo-synthetic/results.json")
    if not r.get("selection"):
        return "(the committed demo results predate the validation selection)"
    sel = r["selection"]["student"]
    on = sel["chosen_on"]
    head = (
        f"Image-level OOD AUROC on the test shifts of the score each side chose on "
        f"{on['validation']['set']} ({on['validation']['images']} images) and its shifts "
        f"({', '.join(on['shifts'])}):\n\n"
    )
    return head + _selected_table(r)


def camvid_headline() -> str:
    from udistill.report.headline import headline_rows, headline_text

    r = _load("camvid-cpu/results.json")
    return "```\n" + headline_text(headline_rows(r)) + "\n```"


BLOCKS: dict[str, Callable[[], str]] = {
    "demo-time": demo_time,
    "demo-headline": demo_headline,
    "demo-selected": demo_selected,
    "camvid-headline": camvid_headline,
}


def render(text: str) -> str:
    """``text`` with every known block replaced by its rendering from the files."""
    for name, fn in BLOCKS.items():
        pattern = re.compile(rf"(<!-- results:{re.escape(name)} -->\n)(.*?)(\n<!-- /results:{re.escape(name)} -->)", re.S)
        if pattern.search(text):
            body = fn()
            text = pattern.sub(lambda m, body=body: m.group(1) + body + m.group(3), text)
    return text


def main(argv: list[str]) -> int:
    text = README.read_text()
    new = render(text)
    if "--check" in argv:
        if new != text:
            print("README.md's result blocks differ from benchmarks/results/: run python benchmarks/readme_results.py")
            return 1
        return 0
    README.write_text(new)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
