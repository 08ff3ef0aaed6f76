"""Every config value and every number or device flag checked before any work starts (issue 22):
a config that passes ``--dry-run`` does not fail hours later, the single-stage commands check
the same values, NaN and infinity are refused (and never written into JSON), a bad device is
one line and exit code 2 in every command, and a bad ``--set`` value is reported as the
override's, not the YAML file's."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_checks import TINY_RUN_CONFIG, assert_error, cli
from PIL import Image

from toy import save_random_student
from udistill.cli import main
from udistill.config import ModelConfig
from udistill.errors import CheckpointError, ConfigError

ROOT = Path(__file__).resolve().parents[2]
SYNTHETIC = str(ROOT / "configs" / "synthetic.yaml")
SMALL = ModelConfig(encoder="tu-mobilenetv3_small_100", decoder_channels=16, head_channels=16)
CONFIG = TINY_RUN_CONFIG.replace("{name}", "validation")


def assert_flag_refused(capsys, argv, flag: str) -> None:
    """argparse refuses the value: exit 2, the flag named, no traceback."""
    with pytest.raises(SystemExit) as exc:
        main([str(a) for a in argv])
    err = capsys.readouterr().err
    assert exc.value.code == 2, err
    assert flag in err and "Traceback" not in err, err


@pytest.fixture
def no_cuda(monkeypatch):
    """A CPU-only machine, whatever this one has."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)


# --- defect 2: the dry run checks every value the run would fail on -------------------------

DRY_RUN_CASES = [
    ("data.val_shifts=[fogg]", "'data.val_shifts[0]'", "fogg"),
    ("data.shifts=[fog, fogg]", "'data.shifts[1]'", "fogg"),
    ("data.val_shifts=[{name: x, shift: fogg}]", "'data.val_shifts[0].shift'", "fogg"),
    ("data.shifts=[{name: x, dataset: camvid, shift: new-city}]", "'data.shifts[0].shift'", "new-city"),
    ("evaluate.false_alarm_rate=2", "'evaluate.false_alarm_rate'", "(0, 1)"),
    ("evaluate.false_alarm_rate=0", "'evaluate.false_alarm_rate'", "(0, 1)"),
    ("train.class_weights=[1,2]", "'train.class_weights'", "11"),
    ("train.class_weights=[0,0,0,0,0,0,0,0,0,0,0]", "'train.class_weights'", "not all zero"),
    ("train.lr=-1", "'train.lr'", "> 0"),
    ("train.lr=0", "'train.lr'", "> 0"),
    ("distill.lr=-0.1", "'distill.lr'", "> 0"),
    ("train.lr=.nan", "'train.lr'", "finite"),
    ("distill.temperature=.inf", "'distill.temperature'", "finite"),
    ("device=bogus", "'device'", "bogus"),
    ("device=cuda:x", "'device'", "cuda:x"),
    ("evaluate.ood_score=maximum", "'evaluate.ood_score'", "maximum"),
]


@pytest.mark.parametrize("override,key,words", DRY_RUN_CASES, ids=[c[0] for c in DRY_RUN_CASES])
def test_dry_run_refuses_what_the_run_would_fail_on(capsys, override, key, words):
    code, out, err = cli(capsys, "experiment", "--config", SYNTHETIC, "--dry-run", "--set", override)
    assert_error(code, err, key, words)
    assert out == ""


def test_dry_run_refuses_cuda_on_a_cpu_only_machine(capsys, no_cuda):
    code, _, err = cli(capsys, "experiment", "--config", SYNTHETIC, "--dry-run", "--set", "device=cuda")
    assert_error(code, err, "'device'", "CUDA is not available")
    code, _, err = cli(capsys, "experiment", "--config", SYNTHETIC, "--dry-run", "--device", "cuda")
    assert_error(code, err, "'device'", "CUDA is not available")


def test_dry_run_refuses_a_data_root_that_is_not_there(tmp_path, capsys):
    missing = tmp_path / "nonexistent"
    sets = ["--set", "data.dataset=camvid", "--set", "data.shifts=[fog]", "--set", "data.val_shifts=[]"]
    sets += ["--set", "data.train_options={}", "--set", "data.test_options={}"]
    code, out, err = cli(
        capsys, "experiment", "--config", SYNTHETIC, "--dry-run", *sets, "--set", f"data.root={missing}"
    )
    assert_error(code, err, "'data.root'", missing)
    assert "published" not in out
    empty = tmp_path / "empty"  # there, but no CamVid images in it
    empty.mkdir()
    code, _, err = cli(capsys, "experiment", "--config", SYNTHETIC, "--dry-run", *sets, "--set", f"data.root={empty}")
    assert_error(code, err, "'data.root'", empty)


def test_dry_run_refuses_an_option_the_data_set_does_not_take(capsys):
    code, _, err = cli(capsys, "experiment", "--config", SYNTHETIC, "--dry-run", "--set", "data.options={colour: red}")
    assert_error(code, err, "'data", "colour")


def test_dry_run_refuses_a_shift_root_that_is_not_there(tmp_path, capsys):
    missing = tmp_path / "fleet"
    code, _, err = cli(
        capsys,
        "experiment",
        "--config",
        SYNTHETIC,
        "--dry-run",
        "--set",
        f"data.shifts=[{{name: fleet, dataset: images, root: {missing}}}]",
    )
    assert_error(code, err, "'data.shifts[0].root'", missing)


def test_dry_run_of_a_good_config_counts_the_images(capsys):
    code, out, err = cli(capsys, "experiment", "--config", SYNTHETIC, "--dry-run")
    assert code == 0, err
    assert "train 240 (counted)" in out


@pytest.mark.parametrize(
    "command",
    [
        ["train-teacher", "--member", "0"],
        ["distill"],
        ["distill", "--control"],
        ["evaluate"],
        ["calibrate"],
        ["experiment"],
    ],
    ids=lambda c: " ".join(c),
)
@pytest.mark.parametrize(
    "override,key",
    [("data.val_shifts=[fogg]", "'data.val_shifts[0]'"), ("evaluate.false_alarm_rate=2", "false_alarm_rate")],
    ids=["shift", "rate"],
)
def test_every_stage_checks_the_config_before_it_starts(tmp_path, capsys, command, override, key):
    out = tmp_path / "run"
    cfg = tmp_path / "c.yaml"
    cfg.write_text(CONFIG.format(out=out))
    code, _, err = cli(capsys, command[0], "--config", cfg, *command[1:], "--set", override)
    assert_error(code, err, key)
    assert not out.exists()


def test_calibrate_false_alarm_flag_is_a_rate(tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(CONFIG.format(out=tmp_path / "run"))
    for bad in ("2", "0", "1", "nan", "inf", "-0.1"):
        assert_flag_refused(capsys, ["calibrate", "--config", cfg, "--false-alarm", bad], "--false-alarm")


# --- defect 10: a bad --set value is the override's, not the file's ------------------------


@pytest.mark.parametrize(
    "override,key",
    [("train.lr=fast", "'train.lr'"), ("data.size=[32, big]", "'data.size[1]'"), ("model.encodr=x", "'model.encodr'")],
)
def test_a_bad_set_value_names_the_override_not_the_file(tmp_path, capsys, override, key):
    cfg = tmp_path / "ok.yaml"
    cfg.write_text(CONFIG.format(out=tmp_path / "run"))
    code, _, err = cli(capsys, "train-teacher", "--config", cfg, "--member", "0", "--set", override)
    line = assert_error(code, err, key, f"--set {override}")
    assert str(cfg) not in line


def test_a_bad_value_in_the_file_still_names_the_file(tmp_path, capsys):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(CONFIG.format(out=tmp_path / "run") + "optimizer_typo: 1\n")
    code, _, err = cli(capsys, "train-teacher", "--config", cfg, "--member", "0", "--set", "train.lr=0.1")
    line = assert_error(code, err, cfg, "'optimizer_typo'")
    assert "--set" not in line


# --- defects 5 and 6: numbers and devices of the deployment commands -----------------------


def _frames(folder: Path, count: int = 3, seed: int = 0) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(count):
        Image.fromarray(rng.integers(0, 256, (32, 48, 3), dtype=np.uint8)).save(folder / f"{i:02d}.png")
    return folder


def _student(path: Path, ood: dict | None = None) -> Path:
    return save_random_student(path, SMALL, ood)


@pytest.fixture
def student(tmp_path) -> Path:
    return _student(tmp_path / "run" / "student" / "model.safetensors", {"score": "mean", "thresholds": {"mean": 0.5}})


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "NaN", "Infinity", "x"])
def test_predict_and_ood_report_refuse_a_non_finite_threshold(tmp_path, capsys, student, value):
    frames = _frames(tmp_path / "in")
    out = tmp_path / "out"
    assert_flag_refused(capsys, ["predict", student, frames, "--out", out, "--threshold", value], "--threshold")
    argv = ["ood-report", student, "--in", frames, "--ood", _frames(tmp_path / "ood", seed=1), "--threshold", value]
    assert_flag_refused(capsys, argv, "--threshold")
    assert not out.exists()


@pytest.mark.parametrize("value", ["nan", "inf", "0", "-1"])
def test_predict_refuses_an_uncertainty_max_that_is_not_a_positive_number(tmp_path, capsys, student, value):
    frames = _frames(tmp_path / "in")
    out = tmp_path / "out"
    argv = ["predict", student, frames, "--out", out, "--uncertainty-max", value]
    assert_flag_refused(capsys, argv, "--uncertainty-max")
    assert_flag_refused(capsys, ["predict", student, frames, "--out", out, "--alpha", "nan"], "--alpha")
    assert not out.exists()


@pytest.mark.parametrize("stored", [math.nan, math.inf, "high"])
def test_a_checkpoint_with_a_non_finite_stored_threshold_is_refused(tmp_path, capsys, stored):
    path = _student(tmp_path / "s" / "model.safetensors", {"score": "mean", "thresholds": {"mean": stored}})
    frames = _frames(tmp_path / "in")
    out = tmp_path / "out"
    code, _, err = cli(capsys, "predict", path, frames, "--out", out)
    assert_error(code, err, "'mean'", "udistill calibrate")
    assert not out.exists()
    code, _, err = cli(
        capsys,
        "ood-report",
        path,
        "--in",
        frames,
        "--ood",
        _frames(tmp_path / "ood", seed=1),
        "--json",
        tmp_path / "r.json",
    )
    assert_error(code, err, "udistill calibrate")
    # an explicit --threshold does not read the stored one
    code, _, err = cli(capsys, "predict", path, frames, "--out", out, "--threshold", "0.5")
    assert code == 0, err


def test_stored_threshold_reads_finite_numbers_and_refuses_the_rest():
    from udistill.deploy.predict.alarm import stored_display_range, stored_threshold

    assert stored_threshold({"ood": {"thresholds": {"mean": 0.25}}}, "mean") == 0.25
    assert stored_threshold({"ood": {"thresholds": {}}}, "mean") is None
    assert stored_threshold({}, "mean") is None
    with pytest.raises(CheckpointError, match="calibrate"):
        stored_threshold({"ood": {"thresholds": {"mean": float("nan")}}}, "mean")
    assert stored_display_range({"ood": {"display_range": [0.0, float("inf")]}}) is None


def _device_commands(student: Path, frames: Path, out: Path, cfg: Path) -> dict[str, list]:
    return {
        "predict": ["predict", student, frames, "--out", out],
        "calibrate --images": ["calibrate", student, "--images", frames],
        "calibrate --config": ["calibrate", "--config", cfg],
        "ood-report": [
            "ood-report",
            student,
            "--in",
            frames,
            "--ood",
            _frames(frames.parent / "ood", seed=1),
            "--json",
            out / "r.json",
        ],
        "experiment": ["experiment", "--config", cfg],
        "train-teacher": ["train-teacher", "--config", cfg, "--member", "0"],
    }


@pytest.mark.parametrize("device", ["bogus", "cuda", "cuda:7"])
def test_a_bad_device_is_one_line_and_exit_2_in_every_command(tmp_path, capsys, student, no_cuda, device):
    frames = _frames(tmp_path / "in")
    out = tmp_path / "out"
    cfg = tmp_path / "c.yaml"
    cfg.write_text(CONFIG.format(out=tmp_path / "xp"))
    for name, argv in _device_commands(student, frames, out, cfg).items():
        code, _, err = cli(capsys, *argv, "--device", device)
        assert_error(code, err, f"device '{device}'")
        assert not out.exists(), name
        assert not (tmp_path / "xp").exists(), name


def test_resolve_device():
    from udistill.device import resolve_device

    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type in ("cpu", "cuda")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")
    for bad in ("bogus", "CPU", "", "meta", "cuda:-1"):
        with pytest.raises(ConfigError, match="device"):
            resolve_device(bad)


def test_resolve_device_refuses_cuda_without_cuda(no_cuda):
    from udistill.device import resolve_device

    for bad in ("cuda", "cuda:0", torch.device("cuda")):
        with pytest.raises(ConfigError, match="CUDA is not available"):
            resolve_device(bad)


# --- defect 5: JSON the tools write is strict -------------------------------------------------


def _strict(text: str):
    def refuse(name):
        raise ValueError(f"non-standard JSON constant {name}")

    return json.loads(text, parse_constant=refuse)


def test_json_writers_never_write_nan_or_infinity(tmp_path):
    from udistill.io import atomic_write_json

    path = tmp_path / "r.json"
    atomic_write_json(
        path,
        {"auroc": float("nan"), "fpr": [0.1, float("inf")], "scores": np.array([1.0, np.nan]), "t": np.float32(0.5)},
    )
    assert _strict(path.read_text()) == {"auroc": None, "fpr": [0.1, None], "scores": [1.0, None], "t": 0.5}


def test_a_calibration_set_too_small_for_the_rate_is_refused_before_training(tmp_path, capsys):
    """4 validation images cannot hold a 5 % conformal guarantee (19 needed): said by the dry
    run, before any member trains."""
    code = main(
        [
            "experiment",
            "--config",
            SYNTHETIC,
            "--dry-run",
            "--set",
            "data.test_options={length: 4}",
            "--set",
            f"out_dir={tmp_path / 'run'}",
        ]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert "evaluate.false_alarm_rate" in err[0] and "4 image(s)" in err[0] and "at least 19" in err[0]
    assert not (tmp_path / "run").exists()
