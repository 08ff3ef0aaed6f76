"""The dry run's plan: per-stage disk and time estimates and the commands of the plan."""

import shlex
from pathlib import Path

import pytest
import torch

from udistill.cli import build_parser
from udistill.config import ExperimentConfig, load_config
from udistill.models import build_model, save_model
from udistill.pipeline.experiment import describe_plan
from udistill.pipeline.planning import estimate, model_bytes, plan_commands

ROOT = Path(__file__).parents[2]


def _paper(*overrides):
    return load_config(ExperimentConfig, str(ROOT / "configs" / "cityscapes-paper.yaml"), list(overrides))


@pytest.fixture(scope="module")
def paper():
    return _paper("distill.recipe=paper")  # the paper's recipe: one cache entry per image


def test_cityscapes_paper_plan_sizes_the_cache_at_the_heads_resolution(paper):
    stages, notes = estimate(paper)
    by = {s.name: s for s in stages}
    # 2975 images x 19 classes x (512/4 x 1024/4) x (M, Σ) x float16, + CRC and flag
    assert by["teacher cache"].disk == 2975 * (19 * 128 * 256 * 2 * 2 + 5)
    full = _paper("distill.recipe=paper", "distill.cache_reduction=1")
    assert {s.name: s for s in estimate(full)[0]}["teacher cache"].disk == 2975 * (
        19 * 512 * 1024 * 2 * 2 + 5
    )  # the 118 GB of old
    views = _paper("distill.recipe=udistill", "distill.view_count=4")  # K cached views per image
    assert {s.name: s for s in estimate(views)[0]}["teacher cache"].disk == 4 * by["teacher cache"].disk
    assert len([s for s in stages if s.name.startswith("member ")]) == 25
    assert all(s.seconds is not None and s.seconds > 0 for s in stages)
    assert any("train-throughput-cpu-1thread.json" in n for n in notes)  # says where the figure comes from


def test_dry_run_prints_estimates_and_commands_that_the_cli_accepts(paper):
    text = describe_plan(paper, "configs/cityscapes-paper.yaml", ["data.root=/data/cs"])
    assert "teacher cache" in text and "7.4 GB" in text and "no GPU measured" in text
    cmds = plan_commands(paper, "configs/cityscapes-paper.yaml", ["data.root=/data/cs"])
    assert [c.split()[1] for c in cmds] == ["train-teacher"] * 25 + ["distill", "distill", "calibrate", "evaluate"]
    assert cmds[3].endswith("--member 3") and "--control" in cmds[-3]
    parser = build_parser()
    for c in cmds:
        assert c in text
        args = parser.parse_args(shlex.split(c)[1:])
        assert args.config == "configs/cityscapes-paper.yaml" and args.overrides == ["data.root=/data/cs"]


def test_checkpoint_estimate_matches_a_written_checkpoint(tmp_path):
    cfg = load_config(
        ExperimentConfig,
        None,
        [
            "data.size=[32,48]",
            "model.encoder=tu-mobilenetv3_small_100",
            "model.decoder_channels=16",
            "model.head_channels=16",
            "model.encoder_weights=null",
        ],
    )
    weights, params = model_bytes(cfg)
    torch.manual_seed(0)
    save_model(build_model(cfg.model, 11), tmp_path / "m.safetensors")
    size = (tmp_path / "m.safetensors").stat().st_size
    assert weights <= size < weights * 1.05 + 64_000  # tensors plus the header and metadata
    assert 0 < params <= weights


def test_planning_reads_the_committed_benchmark_results():
    """The plan's throughputs are the committed measurements (shipped copies kept equal)."""
    import json
    from pathlib import Path

    from udistill.pipeline.planning import MEASURED

    root = Path(__file__).resolve().parents[2]
    for name in ("benchmark-cpu.json", "train-throughput-cpu-1thread.json", "distill-epoch-cost-cpu.json"):
        shipped = root / "src" / "udistill" / "presets" / "measured" / name
        assert json.loads(shipped.read_text()) == json.loads((root / "benchmarks" / "results" / name).read_text())
    bench = json.loads((root / "benchmarks" / "results" / "benchmark-cpu.json").read_text())
    assert MEASURED["forward"]["mobilenet_v2/256"] == bench["throughput_ips"]["baseline"]["torch"]
    assert MEASURED["forward"]["student_over_baseline"] == bench["ratios"]["student_over_baseline"]
    cost = json.loads((root / "benchmarks" / "results" / "distill-epoch-cost-cpu.json").read_text())
    ratios = cost["paper head, auxiliary_ratio 0.25"]["ratio_to_baseline"]
    assert MEASURED["distill_over_train"]["cached"] == ratios["cached"]
    assert MEASURED["distill_over_train"]["online"] == ratios["online"]
