"""Running the CLI in-process as a user would and checking its one-line errors: shared by the
bad-input and config-validation tests."""

from __future__ import annotations

from udistill.cli import main

# a tiny run config (format with out=...; name= names the run)
TINY_RUN_CONFIG = """\
name: {name}
out_dir: {out}
device: cpu
data:
  dataset: synthetic
  size: [32, 48]
  train_options: {{length: 8}}
  test_options: {{length: 2}}
model: {{encoder: tu-mobilenetv3_small_100, decoder_channels: 16, head_channels: 16, dropout: 0.1}}
train: {{epochs: 1, batch_size: 4, deterministic: true, progress: false}}
teacher: {{members: 2}}
evaluate: {{mc_samples: 2}}
"""


def cli(capsys, *argv) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of ``udistill ARGV``."""
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def assert_error(code: int, err: str, *names) -> str:
    """Exit 2 and exactly one stderr line ``udistill: error: ...`` naming every item of ``names``."""
    assert code == 2, f"exit code {code}, stderr: {err!r}"
    assert "Traceback" not in err, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, f"expected exactly one line on stderr, got {err!r}"
    assert lines[0].startswith("udistill: error: "), lines[0]
    for name in names:
        assert str(name) in lines[0], f"{name!r} not named in {lines[0]!r}"
    return lines[0]
