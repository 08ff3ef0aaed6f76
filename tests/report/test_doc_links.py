"""Every relative link of README.md and docs/*.md points at a file or folder that exists (and
at a heading of the page, where it names one), and every docs page is reachable from the README."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", re.S | re.M)


def _pages() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def _links(page: Path) -> list[str]:
    text = FENCE.sub("", page.read_text())  # links inside code blocks are code, not links
    return [m.group(1) for m in LINK.finditer(text)]


HEADING = re.compile(r"^#{1,6} (.+)$", re.M)


def _anchors(page: Path) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens."""
    text = FENCE.sub("", page.read_text())
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in HEADING.findall(text)}


def test_relative_links_resolve():
    broken = []
    for page in _pages():
        for target in _links(page):
            if re.match(r"[a-z][a-z0-9+.-]*:", target):
                continue  # a URL
            if target.startswith("#"):
                target = page.name + target  # an anchor within the page
            path = (page.parent / target.split("#", 1)[0]).resolve()
            if not path.exists():
                broken.append(f"{page.relative_to(ROOT)}: {target}")
            elif (
                path.is_file()
                and "#" in target
                and path.suffix == ".md"
                and target.split("#", 1)[1] not in _anchors(path)
            ):
                broken.append(f"{page.relative_to(ROOT)}: {target} (no such heading)")
    assert broken == []


def test_the_readme_links_every_docs_page():
    linked = {(ROOT / t.split("#", 1)[0]).resolve() for t in _links(ROOT / "README.md")}
    missing = [p.name for p in sorted((ROOT / "docs").glob("*.md")) if p.resolve() not in linked]
    assert missing == []
