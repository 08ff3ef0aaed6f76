"""The stage runner (udistill.train.stage) on toy stages with known answers: a first run builds,
a second reuses without loading or building, changed inputs are refused (or set aside and
rebuilt inside ``rebuilding_stale``), a build that raises leaves no finished record, the
stage's config is saved before the build, the lock is held while it runs, and the steps run in
the documented order. No training: a build writes a two-number checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from udistill.config import ExperimentConfig
from udistill.errors import StaleStageError
from udistill.layout import LOCK_NAME, PARTIAL_FILE, RunLayout
from udistill.models.checkpoint import read_metadata, save_tensors
from udistill.runlock import RunLockedError, run_lock
from udistill.train.stage import RUN, Stage, rebuilding_stale, run_stage


class Toy:
    """A stage whose steps are recorded in ``events``; ``fail`` makes its build raise."""

    def __init__(self, run: Path, *, lock: str | None = "toy", resumes: bool = True, record: str = "checkpoint"):
        output = run / "toy" / "model.safetensors" if record == "checkpoint" else run / "toy.json"
        self.stage = Stage("toy stage", run, output, lock=lock, resumes=resumes, record=record)
        self.events: list[str] = []
        self.fail = False
        self.config = ExperimentConfig(name="toy", out_dir=str(run))

    def inputs(self, value: str):
        def record() -> dict:
            self.events.append("inputs")
            return {"config": value, "members": {"0": "aaaa"}}

        return record

    def load(self):
        self.events.append("load")
        return "loaded"

    def prepare(self, loaded):
        self.events.append(f"prepare({loaded})")
        return "prepared"

    def build(self, prepared, built_from):
        config = RunLayout.config_in(self.stage.folder)
        self.events.append(f"build({prepared}, config saved: {config.exists()})")
        if self.fail:
            raise RuntimeError("the build broke")
        if self.stage.record == "json":
            return {"value": 1.5}
        save_tensors(self.stage.output, {"w": torch.tensor([1.0, 2.0])}, {"built_from": built_from})
        return None

    def run(self, value: str = "v1", log=None):
        return run_stage(
            self.stage,
            self.inputs(value),
            self.build,
            load=self.load,
            prepare=self.prepare,
            config=self.config if self.stage.record == "checkpoint" else None,
            log=log or self.events.append,
        )


def test_a_first_run_builds_in_order_and_a_second_reuses_without_loading_or_building(tmp_path):
    toy = Toy(tmp_path / "run")
    assert toy.run() == toy.stage.output
    assert toy.events == ["inputs", "load", "prepare(loaded)", "build(prepared, config saved: True)"]
    assert read_metadata(toy.stage.output)["built_from"] == {"config": "v1", "members": {"0": "aaaa"}}
    assert json.loads((toy.stage.folder / PARTIAL_FILE).read_text()) == {"config": "v1", "members": {"0": "aaaa"}}
    saved = yaml.safe_load((toy.stage.folder / "config.yaml").read_text())
    assert saved["name"] == "toy" and saved["out_dir"] == str(tmp_path / "run")
    stamp = toy.stage.output.stat().st_mtime_ns
    toy.events.clear()
    assert toy.run() == toy.stage.output
    assert toy.events == ["inputs"]  # reused: neither load, nor prepare, nor build
    assert toy.stage.output.stat().st_mtime_ns == stamp


def test_changed_inputs_are_refused_naming_the_change_and_leave_the_stage_as_it_was(tmp_path):
    toy = Toy(tmp_path / "run")
    toy.run("v1")
    before = sorted(p.relative_to(tmp_path) for p in (tmp_path / "run").rglob("*"))
    toy.events.clear()
    with pytest.raises(StaleStageError, match=r"the toy stage is stale \(config changed \(v1 -> v2\)\); rebuild it"):
        toy.run("v2")
    assert toy.events == ["inputs"]
    assert sorted(p.relative_to(tmp_path) for p in (tmp_path / "run").rglob("*")) == before
    assert read_metadata(toy.stage.output)["built_from"]["config"] == "v1"


def test_inside_rebuilding_stale_a_stale_stage_is_set_aside_and_rebuilt(tmp_path):
    run = tmp_path / "run"
    toy = Toy(run)
    toy.run("v1")
    toy.events.clear()
    with rebuilding_stale():
        assert toy.run("v2") == toy.stage.output
    assert toy.events[0] == "inputs"
    assert toy.events[1].startswith("[toy stage] stale (config changed (v1 -> v2)): moved to ")
    assert toy.events[2:] == ["load", "prepare(loaded)", "build(prepared, config saved: True)"]
    assert read_metadata(toy.stage.output)["built_from"]["config"] == "v2"
    moved = list((run / ".stale").iterdir())
    assert len(moved) == 1 and moved[0].name.startswith("toy-")
    assert read_metadata(moved[0] / "model.safetensors")["built_from"]["config"] == "v1"


def test_a_build_that_raises_leaves_no_finished_record_and_the_next_run_builds_again(tmp_path):
    toy = Toy(tmp_path / "run")
    toy.fail = True
    with pytest.raises(RuntimeError, match="the build broke"):
        toy.run()
    assert not toy.stage.output.exists()
    assert json.loads((toy.stage.folder / PARTIAL_FILE).read_text())["config"] == "v1"  # started, not finished
    assert not (tmp_path / "run" / LOCK_NAME).exists()  # the lock is released on the way out
    toy.fail = False
    toy.events.clear()
    toy.run()
    assert toy.events == ["inputs", "load", "prepare(loaded)", "build(prepared, config saved: True)"]
    assert read_metadata(toy.stage.output)["built_from"]["config"] == "v1"


def test_a_load_that_refuses_leaves_the_run_folder_unchanged(tmp_path):
    run = tmp_path / "run"
    toy = Toy(run)

    def refuse():
        raise FileNotFoundError("no data")

    toy.load = refuse
    with pytest.raises(FileNotFoundError):
        toy.run()
    assert not run.exists()  # no stage folder, no partial record, no lock file, no empty run folder


def test_an_unfinished_state_of_other_inputs_is_set_aside_at_the_start(tmp_path):
    run = tmp_path / "run"
    toy = Toy(run)
    toy.fail = True
    with pytest.raises(RuntimeError):
        toy.run("v1")
    (toy.stage.folder / "last.state.safetensors").write_bytes(b"state of v1")
    toy.fail = False
    toy.events.clear()
    toy.run("v2")
    assert "not resumed" in toy.events[2] and "config changed (v1 -> v2)" in toy.events[2]
    moved = list((run / ".stale").glob("toy-partial-*/last.state.safetensors"))
    assert len(moved) == 1 and moved[0].read_bytes() == b"state of v1"


def test_the_stage_lock_is_held_while_the_stage_runs(tmp_path):
    run = tmp_path / "run"
    toy = Toy(run, lock="toy")
    seen = {}

    def build(prepared, built_from):
        seen["stage lock"] = RunLayout(run).stage_lock("toy").exists()
        seen["run shared"] = (run / LOCK_NAME).exists()
        return Toy.build(toy, prepared, built_from)

    toy.build = build
    toy.run()
    assert seen == {"stage lock": True, "run shared": True}
    assert not (run / LOCK_NAME).exists() and not RunLayout(run).stage_locks.exists()

    other = tmp_path / "other"
    whole = Toy(other, lock=RUN, resumes=False, record="json")
    whole.build = lambda prepared, built_from: seen.update(holder=json.loads((other / LOCK_NAME).read_text())) or {}
    whole.run()
    assert seen["holder"]["stage"] is None  # the run held exclusively (an exclusive holder records itself)


def test_a_stage_held_by_another_writer_is_refused_before_its_inputs_are_read(tmp_path):
    import subprocess
    import sys
    import textwrap

    run = tmp_path / "run"
    code = textwrap.dedent("""
        import sys, time
        from udistill.runlock import run_lock
        with run_lock(sys.argv[1], stage="toy"):
            print("locked", flush=True)
            time.sleep(120)
    """)
    proc = subprocess.Popen([sys.executable, "-c", code, str(run)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "locked"
        toy = Toy(run)
        with pytest.raises(RunLockedError, match=rf"stage toy is being written by pid {proc.pid}"):
            toy.run()
        assert toy.events == []
    finally:
        proc.kill()
        proc.wait()


def test_a_json_stage_gets_its_record_written_by_the_runner_and_is_refitted_when_stale(tmp_path):
    run = tmp_path / "run"
    toy = Toy(run, lock=None, resumes=False, record="json")
    record = toy.run("v1")
    assert record == {"value": 1.5, "built_from": {"config": "v1", "members": {"0": "aaaa"}}}
    assert json.loads(toy.stage.output.read_text()) == record
    assert not (run / PARTIAL_FILE).exists() and not (run / "config.yaml").exists()  # no start record, no config
    toy.events.clear()
    assert toy.run("v1") == record  # reused: read back from its file
    assert toy.events == ["inputs"]
    with pytest.raises(StaleStageError, match=r"toy.json: the toy stage is stale .*refit it with"):
        toy.stage.check({"config": "v2"})
    refit = Stage("toy stage", run, run / "toy.json", record="json", refit_stale=True)
    toy.stage = refit
    toy.events.clear()
    assert toy.run("v2")["built_from"]["config"] == "v2"
    assert toy.events[1] == "[toy stage] stale (config changed (v1 -> v2)): refitting"
    toy.stage.output.write_text("{not json")  # unreadable: refitted, not reused
    toy.events.clear()
    assert toy.run("v2")["value"] == 1.5 and "load" in toy.events


def test_outputs_without_a_record_are_reused_and_unreadable_checkpoints_left_to_the_loader(tmp_path):
    run = tmp_path / "run"
    toy = Toy(run)
    save_tensors(toy.stage.output, {"w": torch.zeros(1)}, {"role": "written before provenance"})
    assert toy.run() == toy.stage.output and toy.events == ["inputs"]
    toy.stage.output.write_bytes(b"not a checkpoint")
    toy.events.clear()
    assert toy.run() == toy.stage.output and toy.events == ["inputs"]
    toy.stage.check({"config": "anything"})  # nothing to say: whoever loads it reports the damage


def test_the_run_layout_names_the_paths_the_stages_write(tmp_path):
    lay = RunLayout(tmp_path / "run")
    assert lay.member_model(3) == tmp_path / "run" / "members" / "member-3" / "model.safetensors"
    assert lay.student() == tmp_path / "run" / "student" and lay.student_light == tmp_path / "run" / "student-light"
    assert lay.control == tmp_path / "run" / "control" and lay.evaluation == tmp_path / "run" / "evaluation"
    assert lay.teacher_cache("teacher-cache-views4") == tmp_path / "run" / "student" / "teacher-cache-views4"
    assert lay.temperature == tmp_path / "run" / "temperature.json"
    assert lay.density_file == tmp_path / "run" / "feature-density" / "density.safetensors"
    assert lay.multi_head_model == tmp_path / "run" / "multi-head" / "model.safetensors"
    assert lay.config == tmp_path / "run" / "config.yaml" and lay.stale == tmp_path / "run" / ".stale"
    assert lay.stage_lock("member-2") == tmp_path / "run" / ".locks" / "member-2.lock"
    with run_lock(lay.out_dir, stage="member-2"):
        assert lay.stage_lock("member-2").exists() and lay.lock.exists()
