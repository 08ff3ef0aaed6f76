"""The result blocks of README.md and docs/*.md are what the committed result files say
(rendered by benchmarks/readme_results.py), each block in exactly one page, and the help texts
quote the measured demo time."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _module():
    spec = importlib.util.spec_from_file_location("readme_results", ROOT / "benchmarks" / "readme_results.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _texts(mod) -> dict[str, str]:
    return {str(p.relative_to(ROOT)): p.read_text() for p in mod.pages()}


def test_readme_result_blocks_match_the_committed_files():
    mod = _module()
    texts = _texts(mod)
    assert "README.md" in texts and any(p.startswith("docs/") for p in texts)
    for page, text in texts.items():
        assert mod.render(text) == text, (
            f"{page} differs from benchmarks/results/: run python benchmarks/readme_results.py"
        )


def test_every_block_sits_in_exactly_one_page():
    mod = _module()
    where, problems = mod.placement(_texts(mod))
    assert problems == []
    assert all(len(pages) == 1 for pages in where.values())


def test_placement_names_missing_doubled_and_unknown_blocks():
    mod = _module()
    name = next(iter(mod.BLOCKS))
    block = f"<!-- results:{name} -->\nx\n<!-- /results:{name} -->\n"
    texts = {"README.md": block, "docs/a.md": block + "<!-- results:no-such -->\n<!-- /results:no-such -->\n"}
    _, problems = mod.placement(texts)
    text = "\n".join(problems)
    assert f"block {name} is in several pages" in text
    assert "results:no-such names no block" in text
    assert sum("is in no page" in p for p in problems) == len(mod.BLOCKS) - 1
    _, problems = mod.placement({"README.md": f"<!-- results:{name} -->\n"})
    assert any("exactly one opening and one closing" in p for p in problems)


def test_the_script_rewrites_and_checks_every_page(tmp_path, monkeypatch):
    """A stale block in a docs page is found by --check and rewritten by a plain run; README.md
    and the other pages are left as they are."""
    mod = _module()
    (tmp_path / "docs").mkdir()
    texts = _texts(mod)
    for page, text in texts.items():
        (tmp_path / page).write_text(text)
    page = next(p for p, t in texts.items() if p.startswith("docs/") and "<!-- results:" in t)
    name = next(n for n in mod.BLOCKS if f"<!-- results:{n} -->" in texts[page])
    stale = texts[page].replace(
        f"<!-- results:{name} -->\n" + mod.BLOCKS[name]().rstrip("\n"), f"<!-- results:{name} -->\nstale"
    )
    assert stale != texts[page]
    (tmp_path / page).write_text(stale)
    monkeypatch.setattr(mod, "ROOT", tmp_path)
    monkeypatch.setattr(mod, "README", tmp_path / "README.md")
    monkeypatch.setattr(mod, "DOCS", tmp_path / "docs")
    assert mod.main(["--check"]) == 1
    assert (tmp_path / page).read_text() == stale
    assert mod.main([]) == 0
    assert (tmp_path / page).read_text() == texts[page]
    assert mod.main(["--check"]) == 0
    assert (tmp_path / "README.md").read_text() == texts["README.md"]


def test_readme_results_table_is_generated():
    """Every number of the README's results table sits in a generated block."""
    text = (ROOT / "README.md").read_text()
    section = text.split("## Results", 1)[1].split("\n## ", 1)[0]
    outside = re.sub(r"<!-- results:(\S+) -->\n.*?<!-- /results:\1 -->", "", section, flags=re.S)
    assert "<!-- results:summary -->" in section
    assert not re.search(r"\d\.\d", outside), "a typed number in README's results section"


def test_a_changed_result_file_changes_the_rendered_block(tmp_path, monkeypatch):
    mod = _module()
    t = json.loads((ROOT / "benchmarks" / "results" / "demo-time.json").read_text())
    t["total_s"] = 9999.0
    (tmp_path / "demo-time.json").write_text(json.dumps(t))
    monkeypatch.setattr(mod, "RESULTS", tmp_path)
    assert "**9999 s**" in mod.demo_time()


def test_help_texts_quote_the_measured_demo_time(capsys):
    import pytest

    from udistill.cli import build_parser
    from udistill.pipeline import demo

    measured = json.loads((ROOT / "benchmarks" / "results" / "demo-time.json").read_text())
    shipped = demo.measured_timings()
    assert shipped["total_s"] == measured["total_s"] and shipped["stages_s"] == measured["stages_s"]
    figure = f"{measured['total_s']:.0f} s"
    parser = build_parser()
    for argv in (["--help"], ["demo", "--help"]):
        with pytest.raises(SystemExit):
            parser.parse_args(argv)
        assert figure in capsys.readouterr().out.replace("\n", " ")
    assert figure in (ROOT / "README.md").read_text()
    assert figure in demo.__doc__.replace("\n", " ")
