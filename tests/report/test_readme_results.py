"""The README's result blocks are what the committed result files say (rendered by
benchmarks/readme_results.py), and the help texts quote the measured demo time."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _module():
    spec = importlib.util.spec_from_file_location("readme_results", ROOT / "benchmarks" / "readme_results.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_readme_result_blocks_match_the_committed_files():
    mod = _module()
    text = (ROOT / "README.md").read_text()
    for name in mod.BLOCKS:
        assert f"<!-- results:{name} -->" in text, name
    assert mod.render(text) == text, (
        "README.md differs from benchmarks/results/: run python benchmarks/readme_results.py"
    )


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
