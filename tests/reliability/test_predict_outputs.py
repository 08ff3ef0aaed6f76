"""Issue 22: what ``udistill predict`` writes, and what it refuses to write over.

Outputs never replace a file predict did not create; a frame's files appear as one set
(the .json last); reruns resume; damaged videos are reported; ood-report refuses
overlapping folders. Tiny random student, 40x56 frames."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from PIL import Image

from toy import save_random_student
from udistill.cli import main
from udistill.config import ModelConfig

TINY = ModelConfig(encoder="tu-mobilenetv3_small_100", decoder_channels=16, head_channels=16)
OOD = {"score": "median_plus_min_over_max", "thresholds": {"median_plus_min_over_max": 0.5}}
SET = ("_seg.png", "_uncertainty.png", "_overlay.png", ".json")


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return save_random_student(tmp_path_factory.mktemp("ck") / "student.safetensors", TINY, OOD, (32, 48))


def _image(path, seed=0, h=40, w=56):
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(path)
    return path


def _predict(capsys, *argv):
    code = main(["predict", *map(str, argv)])
    out, err = capsys.readouterr()
    return code, out, err


def _one_error(code, err, *names):
    assert code == 2, err
    lines = [ln for ln in err.splitlines() if ln.strip() and "warning" not in ln]
    assert len(lines) == 1 and lines[0].startswith("udistill: error: "), err
    for n in names:
        assert str(n) in lines[0], lines[0]


# --- 1. never write over the user's files --------------------------------------------------------


def test_glob_into_the_input_folder_refuses_to_replace_a_user_file(ckpt, tmp_path, capsys):
    d = tmp_path / "d"
    _image(d / "a.png", 0)
    _image(d / "a_overlay.png", 1)  # the user's own picture, named like an output of a.png
    before = (d / "a_overlay.png").read_bytes()
    code, _, err = _predict(capsys, ckpt, d / "a.png", d / "a_overlay.png", "--out", d)
    _one_error(code, err, d / "a_overlay.png")
    assert (d / "a_overlay.png").read_bytes() == before
    assert sorted(p.name for p in d.iterdir()) == ["a.png", "a_overlay.png"]


def test_a_stray_user_file_named_like_an_output_is_refused(ckpt, tmp_path, capsys):
    img = _image(tmp_path / "in" / "a.png")
    out = tmp_path / "out"
    out.mkdir()
    (out / "a.json").write_text('{"mine": 1}')
    code, _, err = _predict(capsys, ckpt, img, "--out", out)
    _one_error(code, err, out / "a.json")
    assert (out / "a.json").read_text() == '{"mine": 1}'
    (out / "a.json").unlink()
    (out / "a_seg.png").write_bytes(b"user data")  # no record, no journal: not ours
    code, _, err = _predict(capsys, ckpt, img, "--out", out)
    _one_error(code, err, out / "a_seg.png")
    assert (out / "a_seg.png").read_bytes() == b"user data"


def test_an_earlier_result_is_ours_and_a_rerun_with_other_settings_redoes_it(ckpt, tmp_path, capsys):
    img = _image(tmp_path / "in" / "a.png")
    out = tmp_path / "out"
    assert _predict(capsys, ckpt, img, "--out", out)[0] == 0
    code, _, err = _predict(capsys, ckpt, img, "--out", out, "--threshold", "0.01")
    assert code == 0, err
    assert json.loads((out / "a.json").read_text())["threshold"] == 0.01


# --- 8. one set per frame, resuming ---------------------------------------------------------------


def test_a_partial_set_left_by_a_kill_is_completed_and_its_tmp_removed(ckpt, tmp_path, capsys):
    img = _image(tmp_path / "in" / "a.png")
    out = tmp_path / "out"
    assert _predict(capsys, ckpt, img, "--out", out)[0] == 0
    # what a kill between the renames leaves: the journal, one png, no .json, a temporary file
    (out / "a.json").rename(out / ".a.json.pending")
    for s in ("_uncertainty.png", "_overlay.png"):
        (out / f"a{s}").unlink()
    (out / ".a_overlay.png.k3x9.tmp").write_bytes(b"half a png")
    code, _, err = _predict(capsys, ckpt, img, "--out", out)
    assert code == 0, err
    assert sorted(p.name for p in out.iterdir()) == sorted(f"a{s}" for s in SET)
    rec = json.loads((out / "a.json").read_text())
    assert rec["outputs"] == ["a_seg.png", "a_uncertainty.png", "a_overlay.png"]


def test_rerun_skips_complete_frames_and_overwrite_redoes_them(ckpt, tmp_path, capsys):
    src = tmp_path / "in"
    for i in range(2):
        _image(src / f"f{i}.png", i)
    out = tmp_path / "out"
    assert _predict(capsys, ckpt, src, "--out", out)[0] == 0
    names = ["f1_seg.png", "f1_uncertainty.png", "f1_overlay.png"]
    (out / "f1.json").write_text(json.dumps({"input": "x", "outputs": names}))  # ours, made from another input
    stamp = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    os.utime(out / "f0_seg.png", ns=(1, 1))
    code, stdout, err = _predict(capsys, ckpt, src, "--out", out)
    assert code == 0, err
    assert "1 input(s) already done" in stdout and "processed 2" in stdout
    assert (out / "f0_seg.png").stat().st_mtime_ns == 1  # not rewritten
    assert (out / "f1.json").stat().st_mtime_ns != stamp["f1.json"]
    assert json.loads((out / "f1.json").read_text())["input"] == str(src / "f1.png")
    code, stdout, err = _predict(capsys, ckpt, src, "--out", out, "--overwrite")
    assert code == 0 and "already done" not in stdout
    assert (out / "f0_seg.png").stat().st_mtime_ns != 1


# --- 10. smaller ones ------------------------------------------------------------------------------


def test_an_output_name_taken_by_a_folder_skips_that_frame_only(ckpt, tmp_path, capsys):
    src = tmp_path / "in"
    _image(src / "a.png", 0)
    _image(src / "b.png", 1)
    out = tmp_path / "out"
    (out / "a_overlay.png").mkdir(parents=True)
    code, stdout, err = _predict(capsys, ckpt, src, "--out", out)
    assert code == 3, err
    assert f"udistill: skipped: {out / 'a_overlay.png'}" in err
    assert all((out / f"b{s}").is_file() for s in SET)
    assert not (out / "a.json").exists() and not (out / "a_seg.png").exists()


def test_out_is_not_left_behind_when_every_input_fails(ckpt, tmp_path, capsys):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a png")
    out = tmp_path / "new" / "out"
    code, _, err = _predict(capsys, ckpt, bad, "--out", out)
    _one_error(code, err, bad)
    assert not (tmp_path / "new").exists()


def test_ood_report_refuses_the_same_or_overlapping_folders(ckpt, tmp_path, capsys):
    a = tmp_path / "a"
    for i in range(2):
        _image(a / f"x{i}.png", i)
    code = main(["ood-report", str(ckpt), "--in", str(a), "--ood", str(a)])
    _one_error(code, capsys.readouterr().err, a)
    listed = tmp_path / "list.txt"
    listed.write_text(f"{a / 'x1.png'}\n")
    code = main(["ood-report", str(ckpt), "--in", str(a), "--ood", str(listed)])
    _one_error(code, capsys.readouterr().err, "x1.png")


# --- 9. damaged videos ------------------------------------------------------------------------------


def _video(path, codec, fmt, n=20):
    imageio_ffmpeg = pytest.importorskip("imageio_ffmpeg")
    pytest.importorskip("imageio")
    writer = imageio_ffmpeg.write_frames(
        str(path),
        (56, 40),
        fps=10,
        codec=codec,
        macro_block_size=1,
        ffmpeg_log_level="error",
        output_params=["-f", fmt],
    )
    writer.send(None)
    yy, xx = np.mgrid[0:40, 0:56]
    rng = np.random.default_rng(0)
    for i in range(n):
        frame = np.stack([(xx * 4 + i * 10) % 256, (yy * 5) % 256, rng.integers(0, 256, (40, 56))], -1)
        writer.send(np.ascontiguousarray(frame.astype(np.uint8)))
    writer.close()
    return path


def test_a_cut_avi_and_a_damaged_mp4_are_reported_with_exit_3(ckpt, tmp_path, capsys):
    from udistill.deploy.predict.video_check import declared_frame_count

    avi = _video(tmp_path / "v.avi", "mjpeg", "avi")
    mp4 = _video(tmp_path / "v.mp4", "libx264", "mp4")
    assert declared_frame_count(avi) == 20 and declared_frame_count(mp4) == 20
    code, stdout, err = _predict(capsys, ckpt, avi, mp4, "--out", tmp_path / "good")
    assert code == 0, err
    data = avi.read_bytes()
    cut = tmp_path / "cut.avi"
    cut.write_bytes(data[: int(len(data) * 0.6)])
    damaged = bytearray(mp4.read_bytes())
    mid = len(damaged) // 2
    damaged[mid : mid + 200] = b"\x55" * 200
    (tmp_path / "dmg.mp4").write_bytes(bytes(damaged))
    out = tmp_path / "out"
    code, stdout, err = _predict(capsys, ckpt, cut, tmp_path / "dmg.mp4", "--out", out)
    assert code == 3, err
    lines = [ln for ln in err.splitlines() if ln.startswith("udistill: skipped:")]
    assert len(lines) == 2, err
    frames = len((out / "cut.jsonl").read_text().splitlines())
    assert 0 < frames < 20
    assert str(cut) in lines[0] and f"decoded {frames} of the 20 frames" in lines[0]
    assert str(tmp_path / "dmg.mp4") in lines[1] and "ffmpeg" in lines[1] and "decoding error" in lines[1]
    assert len((out / "dmg.jsonl").read_text().splitlines()) == 20  # kept, but said to be damaged
    # a rerun reuses the results and says it again
    code, stdout, err = _predict(capsys, ckpt, cut, tmp_path / "dmg.mp4", "--out", out)
    assert code == 3 and "2 input(s) already done" in stdout
    assert len([ln for ln in err.splitlines() if ln.startswith("udistill: skipped:")]) == 2


def test_an_interrupted_video_keeps_its_frames_and_the_rerun_resumes(ckpt, tmp_path, capsys, monkeypatch):
    from udistill.deploy.predict import runner

    video = _video(tmp_path / "clip.mp4", "libx264", "mp4", n=6)
    out = tmp_path / "out"
    real, calls = runner._record, []

    def interrupt_at_frame_4(predictor, pred):
        calls.append(1)
        if len(calls) == 5:
            raise KeyboardInterrupt
        return real(predictor, pred)

    monkeypatch.setattr(runner, "_record", interrupt_at_frame_4)
    assert main(["predict", str(ckpt), str(video), "--out", str(out)]) == 130
    err = capsys.readouterr().err
    assert f"udistill: interrupted: {video}: frames 0-3 done and kept" in err
    assert not (out / "clip.jsonl").exists()
    monkeypatch.setattr(runner, "_record", real)
    calls.clear()
    code, stdout, err = _predict(capsys, ckpt, video, "--out", out)
    assert code == 0, err
    assert "resuming after frame 3" in err
    lines = [json.loads(x) for x in (out / "clip.jsonl").read_text().splitlines()]
    assert [r["frame"] for r in lines] == list(range(6))
    assert sorted(p.name for p in out.iterdir()) == [".clip.video.json", "clip.jsonl"]
