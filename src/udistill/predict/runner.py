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
"""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path

import numpy as np

from ..errors import DataError, UdistillError
from ..io import atomic_path, atomic_write_json
from ..progress import progress
from .api import Prediction, Predictor
from .geometry import check_frame_size
from .jobs import Job, plan_inputs
from .rendering import (
    display_range,
    draw_colour_bar,
    heatmap,
    histogram,
    segmentation_overlay,
    write_label_png,
    write_rgb_png,
)

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


def predict_image_file(predictor: Predictor, job: Job, out: Path, vmax: float | None, alpha: float) -> Prediction:
    """Predict one image file and write its four outputs; DataError for a bad image."""
    from ..data.imageio import read_image

    rgb = read_image(job.path)
    check_frame_size(rgb.shape[0], rgb.shape[1], str(job.path))
    pred = predictor(rgb)
    (lo, hi), scale_source = display_range(predictor.display_range, pred.uncertainty, vmax)
    base = out / job.key
    write_label_png(base.with_name(base.name + "_seg.png"), pred.labels, predictor.scheme)
    write_rgb_png(base.with_name(base.name + "_uncertainty.png"), heatmap(pred.uncertainty, hi, vmin=lo))
    write_rgb_png(
        base.with_name(base.name + "_overlay.png"),
        draw_colour_bar(segmentation_overlay(rgb, pred.labels, predictor.scheme, alpha), lo, hi),
    )
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
    }
    atomic_write_json(base.with_name(base.name + ".json"), record)
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
) -> tuple[int, int, DataError | None]:
    """Returns (frames, frames flagged OOD, the problem that ended decoding early or None)."""
    reader, info = _open_video(job)
    fps = float(info.get("fps") or 25.0)
    nframes = info.get("nframes")
    total = int(nframes) if isinstance(nframes, (int, float)) and np.isfinite(nframes) else None
    base = out / job.key
    frames = flagged = 0
    problem = None
    try:
        with (
            atomic_path(base.with_name(base.name + ".jsonl")) as tmp_jsonl,
            open(tmp_jsonl, "w", encoding="utf-8") as fh,
            _maybe_atomic(base.with_name(base.name + "_annotated.mp4"), video_out) as tmp_video,
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
                    if video_out:
                        writer.send(_annotate(rgb, pred, predictor, vmax, alpha))
                    frames += 1
                    flagged += bool(pred.is_ood)
                    bar.update(1)
                if frames == 0:
                    raise problem or DataError(f"{job.path}: the video holds no frame")
            finally:
                bar.close()
                writer.close()
    finally:
        reader.close()
    return frames, flagged, problem


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


def _load_predictor(args) -> Predictor:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        predictor = Predictor.from_checkpoint(
            args.checkpoint,
            device=getattr(args, "device", None),
            backend=getattr(args, "backend", "torch"),
            onnx_path=getattr(args, "onnx", None),
            score=getattr(args, "score", None),
            threshold=getattr(args, "threshold", None),
            native=bool(getattr(args, "native", False)),
        )
    for w in caught:  # one line each on the command line
        print(f"udistill: warning: {w.message}", file=sys.stderr)
    return predictor


def run_predict(args) -> dict:
    """``udistill predict``: see the module docstring. Returns a summary dict whose
    ``exit_code`` is the command's exit code."""
    out = Path(args.out)
    alpha = float(getattr(args, "alpha", 0.5))
    if not 0.0 <= alpha <= 1.0:
        raise UdistillError(f"--alpha must lie in [0, 1], got {alpha}")
    on_error = getattr(args, "on_error", "skip") or "skip"
    if on_error not in ON_ERROR:
        raise UdistillError(f"--on-error must be one of {', '.join(ON_ERROR)}, got {on_error!r}")
    jobs = plan_inputs(args.inputs, out)  # fail on a missing input before loading the model
    predictor = _load_predictor(args)
    vmax = getattr(args, "uncertainty_max", None)
    images = [j for j in jobs if j.kind == "image"]
    videos = [j for j in jobs if j.kind == "video"]
    out.mkdir(parents=True, exist_ok=True)
    problems = Problems(stop=on_error == "stop")
    n_img_ood = n_frames = n_frames_ood = n_videos = 0
    for job in _progress(images, total=len(images), desc="images", show=any(j.from_folder for j in images)):
        try:
            pred = predict_image_file(predictor, job, out, vmax, alpha)
        except DataError as exc:
            problems.skip(exc)
            continue
        problems.ok()
        n_img_ood += bool(pred.is_ood)
    n_img = problems.processed
    for job in videos:
        try:
            f, k, problem = predict_video_file(
                predictor, job, out, vmax, alpha, video_out=bool(getattr(args, "video_out", False))
            )
        except DataError as exc:
            problems.skip(exc)
            continue
        problems.ok()
        n_videos, n_frames, n_frames_ood = n_videos + 1, n_frames + f, n_frames_ood + k
        if problem is not None:
            problems.skip(DataError(f"{problem} (kept the {f} frame(s) before it)"))
    problems.finish()
    _print_summary(predictor, out, problems, images, videos, n_img, n_img_ood, n_videos, n_frames, n_frames_ood)
    return {
        "images": n_img,
        "images_ood": n_img_ood,
        "videos": n_videos,
        "frames": n_frames,
        "frames_ood": n_frames_ood,
        "skipped": [str(e) for e in problems.errors],
        "exit_code": EXIT_SKIPPED if problems.errors else EXIT_OK,
    }


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
