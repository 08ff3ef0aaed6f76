"""``udistill predict``: run a predictor over image files, folders and videos, write the results.

Bad inputs do not end the run: an unreadable, corrupt or too small image (or a video that
cannot be opened) is reported on stderr as ``udistill: skipped: <file>: <problem>`` and the
run goes on; a video whose decoding fails part-way keeps the frames read so far and is
reported the same way. A summary line on stdout counts processed and skipped inputs.

Exit codes (:data:`EXIT_OK`, :data:`EXIT_SKIPPED`, :data:`EXIT_ERROR`):

- 0: every input processed;
- 3: some inputs skipped (the others processed and written);
- 2: nothing could be processed, or any other error (one line ``udistill: error: ...``);
  with ``--on-error stop`` the first bad input ends the run with exit 2 (the behaviour
  before inputs were skipped).

A damaged video counts as skipped (exit 3) though its frames are kept: a decode error,
ffmpeg's decoding errors, or fewer frames than its container declares (said with the count).

Files (issue 22): predict never writes over a file it did not create: an existing output
is ours only when the frame's record (its ``.json``; for a video a hidden
``.<stem>.video.json``) or the journal of an interrupted run names it; else the run is
refused before the model loads (exit 2, one line naming the file). A frame's files are
written as one set, the record last, so a frame is complete or absent; a kill leaves a
hidden journal (``.<record>.pending``) and temporary files, cleared by the next run.
Reruns resume: frames whose complete set was made from the same input with the same
settings are not redone (``--overwrite`` redoes them); an interrupted video continues
after its last finished frame. ``--out`` is created only when something is written.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...data.imageio import read_frame
from ...errors import DataError, UdistillError
from ...io import atomic_path, atomic_write_bytes, atomic_write_set, json_bytes, remove_temp_files_of
from ...progress import progress
from .api import Prediction, Predictor
from .geometry import check_frame_size
from .jobs import Job, Outputs, check_ownership, job_outputs, plan_inputs, read_record
from .rendering import (
    display_range,
    draw_colour_bar,
    heatmap,
    histogram,
    label_png_bytes,
    rgb_png_bytes,
    segmentation_overlay,
)
from .video_check import DecodeCheck, declared_frame_count, decode_problem

EXIT_OK, EXIT_ERROR, EXIT_SKIPPED = 0, 2, 3
ON_ERROR = ("skip", "stop")


def _record(predictor: Predictor, pred: Prediction) -> dict:
    return {
        "score": predictor.score,
        "image_score": float(pred.image_score),
        "threshold": predictor.threshold,
        "threshold_source": predictor.threshold_source,
        "is_ood": bool(pred.is_ood),
        "classes": histogram(pred.labels, predictor.classes),
    }


def _progress(iterable, total=None, desc="", show=True):
    """A bar on a terminal (``show``), else a silent one."""
    return progress(iterable, desc, total, enabled=None if show else False, unit="img")


def run_signature(predictor: Predictor, vmax: float | None, alpha: float) -> str:
    """A digest of everything that shapes a frame's outputs (model file, score, threshold,
    geometry, heat-map scale, blending): a finished frame is reused only by a run with the
    same signature."""
    src = Path(str(predictor.source))
    stat = [src.stat().st_size, src.stat().st_mtime_ns] if src.is_file() else None
    parts = [
        str(src.resolve()) if src.exists() else str(src),
        stat,
        predictor.backend,
        predictor.score,
        predictor.threshold,
        predictor.geometry.describe(),
        predictor.display_range,
        vmax,
        alpha,
    ]
    return hashlib.sha256(json.dumps(parts, default=str).encode()).hexdigest()[:16]


def _run_info(job: Job, signature: str | None) -> dict:
    st = job.path.stat()
    return {"signature": signature, "input_bytes": st.st_size, "input_mtime_ns": st.st_mtime_ns}


def finished_record(job: Job, o: Outputs, signature: str | None) -> dict | None:
    """The job's record when its complete output set exists and was made from this input
    by a run with this signature; else None (the job is (re)done)."""
    rec = read_record(o.record)
    if rec is None or rec.get("input") != str(job.path) or rec.get("run") != _run_info(job, signature):
        return None
    if rec.get("outputs") != [p.name for p in o.files] or not all(p.is_file() for p in o.files):
        return None
    return rec


def prepare_outputs(o: Outputs) -> None:
    """Clear what a killed run left for these outputs (temporary files; a journal beside a
    complete record), and report a folder in the way of an output as a problem of this job."""
    for p in (*o.all, o.journal):
        remove_temp_files_of(p)
    if o.journal.exists() and read_record(o.record) is not None:
        o.journal.unlink(missing_ok=True)
    for p in o.all:
        if p.is_dir():
            raise DataError(f"{p}: an output of this input is a folder; cannot write it")
        for parent in p.parents:
            if parent.exists():
                if not parent.is_dir():
                    raise DataError(f"{parent}: not a folder; cannot write {p.name} in it")
                break


def predict_image_file(
    predictor: Predictor, job: Job, out: Path, vmax: float | None, alpha: float, signature: str | None = None
) -> Prediction:
    """Predict one image file and write its four outputs as one set (the .json last: it
    exists only beside the three PNGs); DataError for a bad image."""
    o = job_outputs(job, out)
    prepare_outputs(o)
    rgb = read_frame(job.path)
    pred = predictor(rgb)
    (lo, hi), scale_source = display_range(predictor.display_range, pred.uncertainty, vmax)
    record = {
        "input": str(job.path),
        "size": list(pred.labels.shape),
        "backend": predictor.backend,
        "model_input": predictor.geometry.describe(),
        **_record(predictor, pred),
        "scores": pred.scores,
        "uncertainty": predictor.uncertainty_kind,
        "uncertainty_png_scale": [lo, hi],
        "uncertainty_png_scale_source": scale_source,
        "outputs": [p.name for p in o.files],
        "run": _run_info(job, signature),
    }
    seg, unc, ovl = o.files
    files = [
        (seg, lambda: label_png_bytes(pred.labels, predictor.scheme)),
        (unc, lambda: rgb_png_bytes(heatmap(pred.uncertainty, hi, vmin=lo))),
        (
            ovl,
            lambda: rgb_png_bytes(
                draw_colour_bar(segmentation_overlay(rgb, pred.labels, predictor.scheme, alpha), lo, hi)
            ),
        ),
    ]
    atomic_write_set(files, o.record, json_bytes(record), o.journal)
    return pred


def _annotate(rgb: np.ndarray, pred: Prediction, predictor: Predictor, vmax: float | None, alpha: float) -> np.ndarray:
    from PIL import Image, ImageDraw

    (lo, hi), _ = display_range(predictor.display_range, pred.uncertainty, vmax)
    left = segmentation_overlay(rgb, pred.labels, predictor.scheme, alpha)
    frame = np.concatenate([left, draw_colour_bar(heatmap(pred.uncertainty, hi, vmin=lo), lo, hi)], axis=1)
    if pred.is_ood:
        b = max(2, min(frame.shape[:2]) // 40)
        frame[:b], frame[-b:], frame[:, :b], frame[:, -b:] = (255, 0, 0), (255, 0, 0), (255, 0, 0), (255, 0, 0)
    img = Image.fromarray(frame)
    text = f"{predictor.score}={float(pred.image_score):.3f}" + ("  OOD" if pred.is_ood else "")
    ImageDraw.Draw(img).text((6, 4), text, fill=(255, 0, 0) if pred.is_ood else (255, 255, 255))
    frame = np.asarray(img)
    h, w = frame.shape[:2]  # libx264/yuv420p needs even sides
    if h % 2 or w % 2:
        frame = np.pad(frame, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")
    return np.ascontiguousarray(frame)


class _VideoWriter:
    """The annotated MP4, opened at the first frame (its size is known only then)."""

    def __init__(self, path: Path | None, fps: float):
        self.path, self.fps, self.writer = path, fps, None

    def send(self, frame: np.ndarray) -> None:
        if self.path is None:
            return
        if self.writer is None:
            import imageio_ffmpeg

            self.writer = imageio_ffmpeg.write_frames(
                str(self.path),
                (frame.shape[1], frame.shape[0]),
                fps=self.fps,
                codec="libx264",
                macro_block_size=1,
                output_params=["-f", "mp4"],
                ffmpeg_log_level="error",
            )
            self.writer.send(None)
        self.writer.send(frame)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


def _open_video(job: Job):
    try:
        import imageio.v2 as iio
    except ImportError:
        raise UdistillError("video input needs imageio and imageio-ffmpeg: pip install 'udistill[deploy]'") from None
    try:
        reader = iio.get_reader(str(job.path), format="FFMPEG")
        info = reader.get_meta_data()
    except Exception as exc:  # noqa: BLE001 - ffmpeg/imageio raise OSError, RuntimeError, ...
        raise _video_error(job, exc) from None
    return reader, info


def _video_error(job: Job, exc: BaseException, frame: int | None = None) -> DataError:
    msg = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    where = f" at frame {frame}" if frame is not None else ""
    return DataError(f"{job.path}: cannot read video{where} ({msg})")


def predict_video_file(
    predictor: Predictor,
    job: Job,
    out: Path,
    vmax: float | None,
    alpha: float,
    video_out: bool = False,
    show_progress: bool = True,
    signature: str | None = None,
    overwrite: bool = False,
) -> tuple[int, int, DataError | None]:
    """Returns (frames, frames flagged OOD, the problem found in decoding or None).

    A problem is a decode exception, ffmpeg's decoding errors, or fewer frames than the
    container declares: the frames read are kept and the video is reported. Frames go to a
    hidden partial .jsonl, flushed per frame; an interrupted run keeps it and the next run
    with the same settings resumes after it (not with --video-out: the annotated video
    cannot be continued). The .jsonl appears when the video is done."""
    o = job_outputs(job, out, video_out)
    prepare_outputs(o)
    reader, info = _open_video(job)
    fps = float(info.get("fps") or 25.0)
    declared = declared_frame_count(job.path)
    nframes = info.get("nframes")
    total = int(nframes) if isinstance(nframes, (int, float)) and np.isfinite(nframes) else declared
    record = {"input": str(job.path), "outputs": [p.name for p in o.files], "run": _run_info(job, signature)}
    done = [] if (video_out or overwrite) else _resumable(o, record)
    frames = flagged = 0
    problem = None
    decoded = False  # the reader reached its end (or a decode error): then ffmpeg's check counts
    check = DecodeCheck(job.path)
    try:
        atomic_write_bytes(o.journal, json_bytes(record))  # from here the files it names are ours
        if o.record.exists():
            o.record.unlink()
        _keep_lines(o.partial, done)
        if done:
            print(
                f"udistill: {job.path}: resuming after frame {len(done) - 1} (done by an earlier run)", file=sys.stderr
            )
        with (
            open(o.partial, "a", encoding="utf-8") as fh,
            _maybe_atomic(o.files[1] if video_out else None, video_out) as tmp_video,
        ):
            writer = _VideoWriter(tmp_video, fps)
            bar = _progress(None, total=total, desc=job.path.name, show=show_progress)
            it = iter(reader)
            try:
                while True:
                    try:
                        rgb = next(it)
                    except StopIteration:
                        break
                    except Exception as exc:  # noqa: BLE001 - a decoding error part-way: keep what was read
                        problem = _video_error(job, exc, frames)
                        break
                    if frames < len(done):  # done by an earlier run: decoded only to get past it
                        flagged += bool(done[frames].get("is_ood"))
                        frames += 1
                        bar.update(1)
                        continue
                    rgb = np.ascontiguousarray(np.asarray(rgb, np.uint8)[..., :3])
                    check_frame_size(rgb.shape[0], rgb.shape[1], str(job.path))
                    pred = predictor(rgb)
                    line = {
                        "input": str(job.path),
                        "frame": frames,
                        "time_s": round(frames / fps, 6),
                        **_record(predictor, pred),
                    }
                    fh.write(json.dumps(line) + "\n")
                    fh.flush()
                    if video_out:
                        writer.send(_annotate(rgb, pred, predictor, vmax, alpha))
                    frames += 1
                    flagged += bool(pred.is_ood)
                    bar.update(1)
                if frames == 0:
                    raise problem or DataError(f"{job.path}: the video holds no frame")
                os.fsync(fh.fileno())
                decoded = True
            finally:
                bar.close()
                writer.close()
    except KeyboardInterrupt:
        _say_interrupted(job, frames, video_out)
        raise
    except BaseException:
        o.partial.unlink(missing_ok=True)
        if not any(p.exists() for p in o.files):
            o.journal.unlink(missing_ok=True)
        raise
    finally:
        reader.close()
        errors = check.close(wait=decoded)
    problem = decode_problem(job, frames, declared, errors, problem)
    os.replace(o.partial, o.files[0])
    record.update(frames=frames, frames_ood=flagged, problem=str(problem) if problem else None)
    atomic_write_bytes(o.journal, json_bytes(record))
    os.replace(o.journal, o.record)
    return frames, flagged, problem


def _say_interrupted(job: Job, frames: int, video_out: bool) -> None:
    if frames == 0:
        print(f"udistill: interrupted: {job.path}: no frame done", file=sys.stderr)
    elif video_out:
        print(
            f"udistill: interrupted: {job.path}: frames 0-{frames - 1} of it were done; with --video-out "
            "the next run starts this video again",
            file=sys.stderr,
        )
    else:
        print(
            f"udistill: interrupted: {job.path}: frames 0-{frames - 1} done and kept; "
            f"the next run resumes at frame {frames}",
            file=sys.stderr,
        )


def _resumable(o: Outputs, record: dict) -> list[dict]:
    """The frames an interrupted run of the same video with the same settings finished: the
    partial file's complete lines numbered 0, 1, ... (a line cut by a kill ends them)."""
    journal = read_record(o.journal)
    if journal is None or journal.get("run") != record["run"] or journal.get("outputs") != record["outputs"]:
        return []
    lines = []
    try:
        with open(o.partial, encoding="utf-8") as fh:
            for raw in fh:
                if not raw.endswith("\n"):
                    break
                try:
                    line = json.loads(raw)
                except ValueError:
                    break
                if not isinstance(line, dict) or line.get("frame") != len(lines):
                    break
                lines.append(line)
    except (OSError, UnicodeDecodeError):
        return []
    return lines


def _keep_lines(path: Path, lines: list[dict]) -> None:
    """The partial file holding exactly ``lines`` (empty: a fresh start)."""
    with atomic_path(path) as tmp:
        tmp.write_text("".join(json.dumps(line) + "\n" for line in lines), "utf-8")


class _maybe_atomic:
    """``atomic_path(path)`` when ``enabled``, else a context yielding None."""

    def __init__(self, path: Path, enabled: bool):
        self.ctx = atomic_path(path) if enabled else None

    def __enter__(self):
        return self.ctx.__enter__() if self.ctx is not None else None

    def __exit__(self, *exc):
        return self.ctx.__exit__(*exc) if self.ctx is not None else False


class Problems:
    """Bad inputs: reported on stderr and counted (``stop``: the first one is raised).

    Reports wait until one input has succeeded: when nothing can be processed, the run ends
    with one error line instead (the single problem, or a count)."""

    def __init__(self, stop: bool):
        self.stop = stop
        self.errors: list[DataError] = []
        self.pending: list[str] = []
        self.processed = 0

    def skip(self, exc: DataError) -> None:
        if self.stop:
            raise exc
        self.errors.append(exc)
        self._say(f"udistill: skipped: {exc}")

    def ok(self) -> None:
        self.processed += 1
        if self.processed == 1:
            for line in self.pending:
                print(line, file=sys.stderr)
            self.pending = []

    def _say(self, line: str) -> None:
        if self.processed:
            print(line, file=sys.stderr)
        else:
            self.pending.append(line)

    def finish(self) -> None:
        """Raise when every input failed; else print what is still pending."""
        if self.processed == 0 and self.errors:
            if len(self.errors) == 1:
                raise self.errors[0]
            for line in self.pending:
                print(line, file=sys.stderr)
            raise UdistillError(f"none of the {len(self.errors)} inputs could be processed (each is listed above)")


@dataclass(frozen=True)
class PredictOptions:
    """What ``udistill predict`` was asked (one field per flag; ``cli.py`` builds it)."""

    checkpoint: str
    inputs: list[str]
    out: str
    device: str | None = None
    backend: str = "torch"
    onnx: str | None = None
    score: str | None = None
    threshold: float | None = None
    native: bool = False
    uncertainty_max: float | None = None
    alpha: float = 0.5
    on_error: str = "skip"
    overwrite: bool = False
    video_out: bool = False


def _load_predictor(opts: PredictOptions) -> Predictor:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        predictor = Predictor.from_checkpoint(
            opts.checkpoint,
            device=opts.device,
            backend=opts.backend,
            onnx_path=opts.onnx,
            score=opts.score,
            threshold=opts.threshold,
            native=bool(opts.native),
        )
    for w in caught:  # one line each on the command line
        print(f"udistill: warning: {w.message}", file=sys.stderr)
    if not predictor.has_uncertainty:  # deliberate (see udistill.deploy.predict): any checkpoint deploys
        print(
            f"udistill: warning: {opts.checkpoint}: no uncertainty head (a teacher member or the baseline, "
            "not a student); U is 1 - max softmax",
            file=sys.stderr,
        )
    return predictor


def run_predict(opts: PredictOptions) -> dict:
    """``udistill predict``: see the module docstring. Returns a summary dict whose
    ``exit_code`` is the command's exit code."""
    out = Path(opts.out)
    alpha = float(opts.alpha)
    if not 0.0 <= alpha <= 1.0:
        raise UdistillError(f"--alpha must lie in [0, 1], got {alpha}")
    on_error = opts.on_error or "skip"
    if on_error not in ON_ERROR:
        raise UdistillError(f"--on-error must be one of {', '.join(ON_ERROR)}, got {on_error!r}")
    overwrite = bool(opts.overwrite)
    video_out = bool(opts.video_out)
    jobs = plan_inputs(opts.inputs, out)  # fail on a missing input before loading the model
    _check_out(out)
    check_ownership(jobs, out, video_out)  # never write over a file predict did not create
    predictor = _load_predictor(opts)
    vmax = opts.uncertainty_max
    signature = run_signature(predictor, vmax, alpha)
    images = [j for j in jobs if j.kind == "image"]
    videos = [j for j in jobs if j.kind == "video"]
    created = _missing_folders(out)  # made only when a first output is written
    problems = Problems(stop=on_error == "stop")
    n_img_ood = n_frames = n_frames_ood = n_videos = n_done = 0
    try:
        with _sigterm_as_interrupt():
            for job in _progress(images, total=len(images), desc="images", show=any(j.from_folder for j in images)):
                rec = None if overwrite else finished_record(job, job_outputs(job, out), signature)
                if rec is not None:
                    n_done += 1
                    problems.ok()
                    n_img_ood += bool(rec.get("is_ood"))
                    continue
                try:
                    pred = predict_image_file(predictor, job, out, vmax, alpha, signature)
                except DataError as exc:
                    problems.skip(exc)
                    continue
                problems.ok()
                n_img_ood += bool(pred.is_ood)
            n_img = problems.processed
            for job in videos:
                rec = None if overwrite else finished_record(job, job_outputs(job, out, video_out), signature)
                if rec is not None:
                    n_done += 1
                    f, k, problem = int(rec.get("frames", 0)), int(rec.get("frames_ood", 0)), rec.get("problem")
                    problem = DataError(problem) if problem else None
                else:
                    try:
                        f, k, problem = predict_video_file(
                            predictor, job, out, vmax, alpha, video_out, signature=signature, overwrite=overwrite
                        )
                    except DataError as exc:
                        problems.skip(exc)
                        continue
                problems.ok()
                n_videos, n_frames, n_frames_ood = n_videos + 1, n_frames + f, n_frames_ood + k
                if problem is not None:
                    problems.skip(problem)
            problems.finish()
    finally:
        if problems.processed == n_done:  # nothing written: leave no folder behind
            _remove_empty(created)
    if n_done:
        print(
            f"predict: {n_done} input(s) already done in {out} by an earlier run with the same settings, "
            "not redone (--overwrite redoes them)"
        )
    _print_summary(predictor, out, problems, images, videos, n_img, n_img_ood, n_videos, n_frames, n_frames_ood)
    return {
        "images": n_img,
        "images_ood": n_img_ood,
        "videos": n_videos,
        "frames": n_frames,
        "frames_ood": n_frames_ood,
        "already_done": n_done,
        "skipped": [str(e) for e in problems.errors],
        "exit_code": EXIT_SKIPPED if problems.errors else EXIT_OK,
    }


def _check_out(out: Path) -> None:
    """--out must be (or be creatable as) a folder: checked before anything is loaded."""
    for p in (out, *out.parents):
        if p.exists():
            if not p.is_dir():
                raise UdistillError(f"{out}: cannot create the output folder ({p} is not a folder)")
            if not os.access(p, os.W_OK | os.X_OK):
                raise UdistillError(f"{out}: cannot write here ({p} is not writable)")
            return


def _missing_folders(out: Path) -> list[Path]:
    """``out`` and those of its parents that do not exist yet, deepest first."""
    return [p for p in (out, *out.parents) if not p.exists()]


def _remove_empty(folders: list[Path]) -> None:
    """Remove the folders this run created when they hold nothing (deepest first)."""
    for top in folders:
        if top.is_dir():
            for dirpath, _, _ in sorted(os.walk(top), key=lambda t: -len(t[0])):
                with contextlib.suppress(OSError):
                    os.rmdir(dirpath)


class _sigterm_as_interrupt:
    """SIGTERM handled like Ctrl-C while predict runs: temporary files are removed, a video's
    finished frames are kept and said, and the next run resumes."""

    def __enter__(self):
        self.old = None
        with contextlib.suppress(ValueError):  # not the main thread
            self.old = signal.signal(signal.SIGTERM, self._raise)
        return self

    @staticmethod
    def _raise(signum, frame):
        raise KeyboardInterrupt

    def __exit__(self, *exc):
        if self.old is not None:
            signal.signal(signal.SIGTERM, self.old)
        return False


def _print_summary(
    predictor, out, problems, images, videos, n_img, n_img_ood, n_videos, n_frames, n_frames_ood
) -> None:
    parts = []
    if images:
        parts.append(f"{n_img} image(s), {n_img_ood} flagged OOD")
    if videos:
        parts.append(f"{n_videos} video(s), {n_frames} frame(s), {n_frames_ood} flagged OOD")
    thr = f"{predictor.threshold:.4g} ({predictor.threshold_source})" if predictor.threshold is not None else "none"
    print(
        f"predict: processed {problems.processed}, skipped {len(problems.errors)}: {'; '.join(parts)} -> {out} "
        f"(score {predictor.score}, threshold {thr}, backend {predictor.backend}, model input {predictor.geometry.describe()})"
    )
