"""The single-pass methods as stages of a run and predictors of the evaluation: fitted on
the right split only, reused while current, refused when stale, evaluated beside the student
with validation selections, in the report."""

from __future__ import annotations

import json
import math

import pytest
import torch
import yaml

from toy import save_random_run
from udistill.config import ExperimentConfig, ModelConfig, load_config
from udistill.errors import CheckpointError
from udistill.models.checkpoint import read_metadata

MODEL = {"encoder": "tu-mobilenetv3_small_100", "decoder_channels": 16, "head_channels": 16, "dropout": 0.1}
NEW = (
    "temperature_scaled_msp",
    "temperature_scaled_entropy",
    "feature_density",
    "multi_head_u",
    "multi_head_mi",
    "multi_head_entropy",
    "multi_head_msp",
)


def _config(run, *extra):
    return load_config(
        ExperimentConfig,
        None,
        [
            f"out_dir={run}",
            "data.size=[32,48]",
            "data.train_options={length: 4}",
            "data.test_options={length: 3}",
            f"model={yaml.safe_dump(MODEL, default_flow_style=True).strip()}",
            "teacher.members=2",
            "evaluate.mc_samples=2",
            "single_pass.enabled=true",
            "single_pass.multi_head_epochs=2",
            *extra,
        ],
    )


class _Spy:
    """A data set that records which of its items were read."""

    def __init__(self, inner, split, log):
        self._inner, self._split, self._log = inner, split, log

    def __len__(self):
        return len(self._inner)

    def __getitem__(self, i):
        self._log.append((self._split, int(i)))
        return self._inner[i]

    def __getattr__(self, name):
        return getattr(self._inner, name)


def test_each_stage_reads_only_its_own_split_and_the_density_is_the_training_sets(tmp_path, monkeypatch):
    """Fails if a validation or test image enters the density (or the heads): the stages read
    through the data module, and the stored statistics equal a fit on the training images alone."""
    import udistill.data.from_config as fc
    from udistill.single_pass import stages
    from udistill.single_pass.common import trunk
    from udistill.single_pass.feature_density import accumulate_features, load_density

    run = tmp_path / "run"
    save_random_run(run, ModelConfig(**MODEL), 11, "camvid11")
    cfg = _config(run)
    real = fc.build_dataset
    read: list[tuple[str, int]] = []
    monkeypatch.setattr(fc, "build_dataset", lambda name, split, **kw: _Spy(real(name, split, **kw), split, read))

    stages.fit_density_stage(cfg, "cpu", log=lambda _: None)
    assert {s for s, _ in read} == {"train"} and len({i for _, i in read}) == 4
    read.clear()
    stages.train_multi_head_stage(cfg, "cpu", log=lambda _: None)
    assert {s for s, _ in read} == {"train"}
    read.clear()
    stages.fit_temperature_stage(cfg, "cpu", log=lambda _: None)
    assert {s for s, _ in read} == {"val"}
    monkeypatch.undo()

    density, meta = load_density(run / stages.DENSITY_FILE)
    assert meta["fitted_on"]["images"] == 4 and "train" in meta["fitted_on"]["set"]
    baseline, _ = stages._baseline(cfg, torch.device("cpu"))
    train = fc.dataset_for(cfg.data, "train")
    direct = accumulate_features(baseline, train, "cpu", 11, batch_size=3, reservoir=100)
    assert meta["pixels"] == int(direct.count.sum())
    torch.testing.assert_close(density.means, direct.mean[direct.present()].float(), rtol=1e-5, atol=1e-5)
    # the check can fail: with the validation images in, the class means move
    both = accumulate_features(baseline, train, "cpu", 11, batch_size=3, reservoir=100)
    val = fc.dataset_for(cfg.data, "val")
    for i in range(len(val)):
        feats, size = trunk(baseline, val[i]["image"][None])
        from udistill.single_pass.common import labels_to_features

        both.update(feats, labels_to_features(torch.as_tensor(val[i]["label"])[None], size, tuple(feats.shape[-2:])))
    k = direct.present()
    assert not torch.allclose(both.mean[k].float(), density.means, rtol=1e-5, atol=1e-5)


def test_single_pass_methods_are_evaluated_beside_the_student(tmp_path):
    from udistill.evaluation.evaluate import load_models, run_evaluation, single_pass_outputs
    from udistill.single_pass.stages import DENSITY_FILE, MULTI_HEAD_FILE, TEMPERATURE_FILE, run_single_pass
    from udistill.train.provenance import StaleStageError

    run = tmp_path / "run"
    save_random_run(run, ModelConfig(**MODEL), 11, "camvid11")
    cfg = _config(run, "data.shifts=[fog]", "data.val_shifts=[rain]")
    with pytest.raises(CheckpointError, match="single-pass stage is missing"):
        load_models(cfg, torch.device("cpu"))
    run_single_pass(cfg, "cpu", log=lambda _: None)
    stamps = {f: (run / f).stat().st_mtime_ns for f in (TEMPERATURE_FILE, DENSITY_FILE, MULTI_HEAD_FILE)}
    run_single_pass(cfg, "cpu", log=lambda _: None)  # current: reused, nothing refitted
    assert stamps == {f: (run / f).stat().st_mtime_ns for f in stamps}
    assert read_metadata(run / MULTI_HEAD_FILE)["shape"]["heads"] == 2  # F = teacher.members

    models = load_models(cfg, torch.device("cpu"))
    x = torch.rand(2, 3, 32, 48)
    outs = single_pass_outputs(models, x)
    with torch.no_grad():
        assert torch.equal(outs["baseline"].probs, torch.softmax(models.baseline(x).logits.float(), 1))
        assert torch.equal(outs["multi_head"].probs, models.single_pass["multi_head"](x).probs)
        torch.testing.assert_close(outs["feature_density"].density, models.single_pass["feature_density"](x).density)

    res = json.loads((run_evaluation(cfg, progress=False) / "results.json").read_text())
    assert set(NEW) <= set(res["methods"])
    for m in NEW:
        for table in ("pixel", "pixel_student_errors"):
            assert 0 <= res[table][m]["auroc"] <= 1, (table, m)
        assert all(math.isfinite(v["auroc"]) for v in res["shifts"]["fog"]["ood"][m].values())
    for side in ("temperature_scaled", "feature_density", "multi_head"):
        sel = res["selection"][side]
        assert sel["predictor"] == side and set(sel["chosen_on"]["shifts"]) == {"rain"}
        assert sel["pixel"]["method"] in NEW
        chosen = res["shifts"]["fog"]["selected"][side]
        assert chosen["auroc"] == res["shifts"]["fog"]["ood"][sel["method"]][sel["score"]]["auroc"]
        assert side in res["pixel_student_errors_selected"]
        assert res["latency_ms"][f"{side}_over_baseline"] > 0
    t = json.loads((run / TEMPERATURE_FILE).read_text())
    assert res["single_pass"]["temperature_scaled"]["temperature"] == t["temperature"]
    assert t["nll_validation"] <= t["nll_validation_at_t1"]
    assert res["predictors"]["temperature_scaled"]["error_rate"] == res["predictors"]["baseline"]["error_rate"]
    assert any(r["what"].startswith("calibration") for r in res["headline"])
    html = (run / "evaluation" / "report.html").read_text()
    assert "The student beside the single-pass methods" in html and "multi_head" in html

    # a changed fit setting makes the stored stage stale: evaluation refuses it
    stale = _config(run, "data.shifts=[fog]", "data.val_shifts=[rain]", "single_pass.density_jitter=0.01")
    with pytest.raises(StaleStageError, match="feature density"):
        load_models(stale, torch.device("cpu"))


@pytest.mark.slow  # end to end through the CLI: members, student, single-pass stages, evaluation
def test_experiment_runs_the_single_pass_stage(tmp_path, capsys):
    from udistill.cli import main
    from udistill.single_pass.stages import DENSITY_FILE, MULTI_HEAD_FILE, TEMPERATURE_FILE

    cfg = {
        "out_dir": str(tmp_path / "exp"),
        "data": {
            "dataset": "synthetic",
            "size": [32, 48],
            "train_options": {"length": 4},
            "test_options": {"length": 4},
            "shifts": ["fog"],
            "val_shifts": ["rain"],
        },
        "model": MODEL,
        "train": {"epochs": 1, "batch_size": 4, "progress": False},
        "teacher": {"members": 2},
        "distill": {"control": False},
        "evaluate": {"mc_samples": 2, "false_alarm_rate": 0.25},
        "single_pass": {"enabled": True, "multi_head_epochs": 1},
    }
    p = tmp_path / "c.yaml"
    p.write_text(yaml.safe_dump(cfg))
    assert main(["experiment", "--config", str(p), "--dry-run"]) == 0
    assert "single-pass: temperature on 'val'" in capsys.readouterr().out
    assert main(["experiment", "--config", str(p)]) == 0
    out = capsys.readouterr().out
    assert "[single-pass]" in out and "single-pass:" in out  # the stage line, the headline's notes
    exp = tmp_path / "exp"
    res = json.loads((exp / "evaluation" / "results.json").read_text())
    assert {"temperature_scaled", "feature_density", "multi_head"} <= set(res["selection"])
    assert all((exp / f).exists() for f in (TEMPERATURE_FILE, DENSITY_FILE, MULTI_HEAD_FILE))
    # a bad value is refused before any stage, with one line naming the key
    p.write_text(yaml.safe_dump({**cfg, "single_pass": {"enabled": True, "density_covariance": "diagonal"}}))
    assert main(["experiment", "--config", str(p)]) == 2
    assert "single_pass.density_covariance" in capsys.readouterr().err
