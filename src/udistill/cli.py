"""The ``udistill`` command: parses arguments, builds a config, calls one function.

Errors the user can fix (:class:`~udistill.errors.UdistillError`) print one line and exit 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")


def _number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def finite_float(text: str) -> float:
    """argparse type: a finite number (NaN and infinity would silently switch checks off)."""
    return _number(text)


def positive_float(text: str) -> float:
    """argparse type: a finite number > 0."""
    value = _number(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}")
    return value


def rate_in_0_1(text: str) -> float:
    """argparse type: a rate strictly between 0 and 1."""
    value = _number(text)
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"expected a rate in (0, 1), got {text!r}")
    return value


def unit_float(text: str) -> float:
    """argparse type: a finite number in [0, 1]."""
    value = _number(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {text!r}")
    return value


def _add_config_args(p: argparse.ArgumentParser, required: bool = False) -> None:
    p.add_argument("--config", "-c", required=required, help="YAML config (see configs/)")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config key, e.g. --set train.epochs=3 (repeatable)",
    )
    p.add_argument("--device", default=None, help="auto | cpu | cuda | cuda:N (default: config's device)")


def _experiment_config(args, extra: list[str] = (), data: str = "check", alarm: bool = False):
    from .config import ExperimentConfig, load_config

    overrides = list(args.overrides)
    if getattr(args, "device", None):
        overrides.append(f"device={args.device}")
    cfg = load_config(ExperimentConfig, args.config, [*overrides, *extra])
    from .pipeline.validation import validate_config

    # every value, the device and the data, before any stage runs: one clear line, exit 2
    validate_config(cfg, data=data, alarm=alarm)
    return cfg


def build_parser() -> argparse.ArgumentParser:
    from . import __version__
    from .pipeline.demo import measured_duration

    parser = argparse.ArgumentParser(
        prog="udistill",
        description="Uncertainty distillation for semantic segmentation: train a deep ensemble, distil its "
        "per-pixel uncertainty into one two-headed student, evaluate, deploy. "
        f"First run: `udistill demo` ({measured_duration()}).",
    )
    parser.add_argument("--version", action="version", version=f"udistill {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    for add in (
        _data_commands,
        _pipeline_commands,
        _calibrate_command,
        _experiment_commands,
        _predict_command,
        _export_commands,
        _benchmark_command,
    ):
        add(sub)
    return parser


def _data_commands(sub) -> None:
    """data preview | check | export."""
    data = sub.add_parser("data", help="inspect, check and export datasets")
    dsub = data.add_subparsers(dest="data_command", metavar="ACTION")
    pv = dsub.add_parser("preview", help="grid of images with colourised labels (and depth)")
    pv.add_argument("--dataset", default="synthetic")
    pv.add_argument("--root", default=None)
    pv.add_argument("--split", default="train")
    pv.add_argument("--shift", default=None)
    pv.add_argument("--count", type=int, default=4)
    pv.add_argument("--size", type=int, nargs=2, default=None, metavar=("H", "W"))
    pv.add_argument("--seed", type=int, default=0)
    pv.add_argument("--out", default="preview.png")
    ck = dsub.add_parser("check", help="validate every image/label pair and print a summary")
    ck.add_argument("--dataset", required=True)
    ck.add_argument("--root", default=None)
    ck.add_argument("--split", default="train")
    ex = dsub.add_parser("export", help="write a dataset (normally synthetic) to disk in the CamVid layout")
    ex.add_argument("--dataset", default="synthetic")
    ex.add_argument("--out", required=True)
    ex.add_argument("--split", default="train")
    ex.add_argument("--count", type=int, default=None)
    ex.add_argument("--size", type=int, nargs=2, default=None, metavar=("H", "W"))
    ex.add_argument("--shift", default=None)
    ex.add_argument("--seed", type=int, default=0)


def _pipeline_commands(sub) -> None:
    """The stages one at a time: train-teacher, distill, evaluate."""
    tt = sub.add_parser("train-teacher", help="train ensemble member(s); finished members are skipped")
    _add_config_args(tt, required=True)
    g = tt.add_mutually_exclusive_group(required=True)
    g.add_argument("--member", type=int, help="member index K (0 is the baseline)")
    g.add_argument("--members", help="several members in turn, e.g. 0-4 or 0,2,5")
    tt.add_argument("--resume", action="store_true", help="(default behaviour) continue from the last epoch checkpoint")

    ds = sub.add_parser("distill", help="train the two-headed student from the ensemble")
    _add_config_args(ds, required=True)
    ds.add_argument("--resume", action="store_true", help="(default behaviour) continue from the last epoch checkpoint")
    dsk = ds.add_mutually_exclusive_group()
    dsk.add_argument(
        "--light", action="store_true", help="the light-head student (distill.light_student) instead of the paper's"
    )
    dsk.add_argument(
        "--control", action="store_true", help="the CE-only control (member 0 on labels for the student's epochs)"
    )

    ev = sub.add_parser("evaluate", help="tables, figures and results.json for baseline, teacher and student")
    _add_config_args(ev, required=True)


def _calibrate_command(sub) -> None:
    ca = sub.add_parser(
        "calibrate",
        help="fit the OOD alarm of a student (threshold at a false-alarm rate) and store it in its checkpoint",
        description="Fit the out-of-distribution alarm: an image score of the student's uncertainty and a threshold "
        "at the requested false-alarm rate on in-distribution images, stored in the student checkpoint. "
        "With --config: the config's calibration set (disjoint from every test set), the score chosen on "
        "data.val_shifts. With --images: your own unlabelled in-distribution frames.",
    )
    ca.add_argument(
        "checkpoint",
        nargs="?",
        help="student checkpoint, student folder or run folder (default with --config: every student of the run)",
    )
    ca.add_argument("--config", "-c", help="YAML config (see configs/)")
    ca.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config key (repeatable)",
    )
    ca.add_argument("--device", default=None, help="auto | cpu | cuda | cuda:N")
    ca.add_argument("--images", help="a folder (or list file) of your own in-distribution frames to calibrate on")
    ca.add_argument(
        "--stride",
        type=int,
        default=1,
        metavar="N",
        help="with --images: every N-th frame in name order (video frames next to each other are near-duplicates; "
        "the guarantee assumes frames drawn independently: take frames about a second or more apart)",
    )
    ca.add_argument(
        "--false-alarm",
        type=rate_in_0_1,
        default=None,
        help="false-alarm rate on the calibration images (default 0.05 or the config's)",
    )
    ca.add_argument("--score", default=None, help="image score: auto, min, mean, median, max, median_plus_min_over_max")


def _experiment_commands(sub) -> None:
    xp = sub.add_parser("experiment", help="the whole pipeline for one config: members, student, evaluation")
    _add_config_args(xp, required=True)
    xp.add_argument("--dry-run", action="store_true", help="validate the config and print the plan")

    from .pipeline.demo import measured_duration

    took = measured_duration()
    dm = sub.add_parser(
        "demo",
        help=f"the whole pipeline on built-in synthetic data ({took})",
        description=f"Teacher members, student, calibration, evaluation and report on built-in synthetic "
        f"scenes; finished stages are reused on a rerun. Wall time: {took}.",
    )
    dm.add_argument("--out", default="runs/demo")
    dm.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    dm.add_argument("--device", default=None)


def _predict_command(sub) -> None:
    pr = sub.add_parser(
        "predict",
        help="segmentation, uncertainty and OOD flag for images, folders, videos",
        epilog="exit codes: 0 every input processed; 3 some inputs skipped (each reported on stderr); "
        "2 nothing could be processed, or any other error. Images under 16x16 pixels are refused.",
    )
    pr.add_argument("checkpoint", help="student checkpoint file, its folder, or the run folder")
    pr.add_argument("inputs", nargs="+")
    pr.add_argument("--out", required=True)
    pr.add_argument(
        "--score",
        default=None,
        help="image score for the OOD flag (default: the calibrated alarm's, chosen on validation shifts)",
    )
    pr.add_argument("--threshold", type=finite_float, default=None, help="override the calibrated OOD threshold")
    pr.add_argument("--backend", default="torch", choices=["torch", "onnxruntime"])
    pr.add_argument("--onnx", default=None, help="ONNX file for --backend onnxruntime (default: CHECKPOINT with .onnx)")
    pr.add_argument("--device", default=None)
    pr.add_argument("--video-out", action="store_true", help="also write an annotated video for video inputs")
    pr.add_argument(
        "--uncertainty-max",
        type=positive_float,
        default=None,
        help="top of the heat-map scale (default: the calibrated display range, else each frame's 99th percentile of U)",
    )
    pr.add_argument(
        "--alpha", type=unit_float, default=0.5, help="weight of the segmentation colours in the overlay (0..1)"
    )
    pr.add_argument(
        "--native",
        action="store_true",
        help="run at each frame's own size instead of the checkpoint's training size (input_size)",
    )
    pr.add_argument(
        "--on-error",
        choices=["skip", "stop"],
        default="skip",
        help="bad input: report and skip it (exit 3 at the end) or stop at once (exit 2)",
    )
    pr.add_argument(
        "--overwrite",
        action="store_true",
        help="redo inputs whose outputs an earlier run with the same settings finished (default: skip them)",
    )


def _export_commands(sub) -> None:
    """export (ONNX) and ood-report."""
    xo = sub.add_parser("export", help="export the student to ONNX")
    xo.add_argument("checkpoint", help="student checkpoint file, its folder, or the run folder")
    xo.add_argument("--onnx", required=True, help="output .onnx path")
    xo.add_argument("--opset", type=int, default=17)
    xo.add_argument("--native", action="store_true", help="no resizing to the training size inside the graph")
    xo.add_argument(
        "--fused",
        action="store_true",
        help="outputs labels (uint8), U (float16) and image scores instead of C-channel maps",
    )
    xo.add_argument(
        "--int8",
        action="store_true",
        help="also write <name>.int8.onnx (onnxruntime static quantisation) and measure its fidelity",
    )
    xo.add_argument("--calibration-images", default=None, metavar="DIR", help="frames (folder or list file) for --int8")

    orp = sub.add_parser(
        "ood-report", help="AUROC, FPR95 and the stored threshold's operating point on folders of frames"
    )
    orp.add_argument("checkpoint", help="student checkpoint file, its folder, or the run folder")
    orp.add_argument(
        "--in", dest="in_folder", required=True, metavar="DIR", help="in-distribution frames (folder or list file)"
    )
    orp.add_argument(
        "--ood", action="append", default=[], metavar="DIR", help="out-of-distribution frames (repeatable)"
    )
    orp.add_argument("--json", default=None, help="write the report here")
    orp.add_argument("--score", default=None, help="image score (default: the calibrated one)")
    orp.add_argument("--threshold", type=finite_float, default=None, help="override the calibrated threshold")
    orp.add_argument("--native", action="store_true", help="run at each frame's own size")
    orp.add_argument("--device", default=None)


def _benchmark_command(sub) -> None:
    bm = sub.add_parser("benchmark", help="latency and throughput of baseline, students, ensemble, MC dropout")
    bm.add_argument("--config", "-c", default=None)
    bm.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    bm.add_argument("--json", default=None, help="write the results here")
    bm.add_argument("--device", default=None)
    bm.add_argument(
        "--size",
        dest="sizes",
        type=int,
        nargs=2,
        action="append",
        default=None,
        metavar=("H", "W"),
        help="input resolution (repeatable; default: the config's data.size or 360 480)",
    )
    bm.add_argument("--repeats", type=int, default=20, help="timed runs per measurement (median reported)")
    bm.add_argument(
        "--throughput-repeats", type=int, default=None, help="timed batch runs for throughput (default: --repeats)"
    )
    bm.add_argument("--batch-size", type=int, default=8, help="batch size for throughput")
    bm.add_argument("--warmup", type=int, default=3, help="untimed runs before timing")
    bm.add_argument(
        "--threads", type=int, default=None, help="CPU threads for torch and onnxruntime (default: torch's)"
    )
    bm.add_argument(
        "--models",
        nargs="+",
        default=None,
        metavar="MODEL",
        help="subset of baseline student student_light ensemble mc_dropout (default: all)",
    )
    bm.add_argument(
        "--backends", nargs="+", default=None, metavar="BACKEND", help="subset of torch onnxruntime (default: both)"
    )
    bm.add_argument(
        "--classes", type=int, default=None, help="number of classes (default: from the dataset name, 11 or 19)"
    )


def _options(cls, args: argparse.Namespace):
    """A command's typed options (a dataclass whose fields are its flags' names) from the
    parsed arguments: the library below this module never sees argparse."""
    return cls(**{f.name: getattr(args, f.name) for f in dataclasses.fields(cls)})


def _cmd_data(args) -> int:
    from .data import tools

    if args.data_command == "preview":
        from .data import build_dataset

        ds = build_dataset(args.dataset, args.split, root=args.root, shift=args.shift, size=args.size, seed=args.seed)
        tools.preview_grid(ds, args.out, count=args.count, seed=args.seed)
        print(
            f"wrote {args.out} ({min(args.count, len(ds))} images of {args.dataset}/{args.split}{' shift=' + args.shift if args.shift else ''})"
        )
        return 0
    if args.data_command == "check":
        summary = tools.check_dataset(args.dataset, args.root, args.split)
        tools.print_summary(summary)
        problems = summary["problems"]
        if problems:  # the summary above lists them all; stderr gets the usual one line
            more = f" (and {len(problems) - 1} more problem(s), listed above)" if len(problems) > 1 else ""
            print(f"udistill: error: {problems[0][1]}{more}", file=sys.stderr)
            return 2
        return 0
    if args.data_command == "export":
        n = tools.export_dataset(
            args.dataset, args.out, args.split, count=args.count, size=args.size, shift=args.shift, seed=args.seed
        )
        print(f"wrote {n} images to {args.out} (CamVid layout, split {args.split})")
        return 0
    print("udistill data: choose preview, check or export (see --help)", file=sys.stderr)
    return 2


def _cmd_train_teacher(args) -> int:
    from .pipeline.teacher import parse_members, train_members

    cfg = _experiment_config(args)
    members = [args.member] if args.member is not None else parse_members(args.members)
    import contextlib

    from .pipeline.member_jobs import REBUILD_ENV
    from .train.stage import rebuilding_stale

    # a job started by experiment/demo (teacher.parallel_jobs) rebuilds a stale member as they do
    rebuild = rebuilding_stale() if os.environ.get(REBUILD_ENV) == "1" else contextlib.nullcontext()
    with _distributed() as ctx, rebuild:
        paths = train_members(cfg, members)
        if ctx.is_main:
            for p in paths:
                print(f"member ready: {p}")
    return 0


def _cmd_distill(args) -> int:
    from .pipeline.distill import run_control, run_distill

    cfg = _experiment_config(args)
    with _distributed() as ctx:
        if getattr(args, "control", False):
            path, what = run_control(cfg), "control"
        else:
            path, what = run_distill(cfg, heads="light" if getattr(args, "light", False) else None), "student"
        if ctx.is_main:
            print(f"{what} ready: {path}")
    return 0


def _cmd_evaluate(args) -> int:
    from .evaluation.evaluate import run_evaluation
    from .runlock import run_lock
    from .train.stage import check_run

    cfg = _experiment_config(args)
    with _distributed() as ctx, run_lock(cfg.out_dir):  # torchrun: ranks share the images, rank 0 writes
        check_run(cfg)  # a stale student (members retrained since) is refused, not evaluated
        out = run_evaluation(cfg)
    if ctx.is_main:
        print(f"report: {out / 'report.html'}")
    return 0


def _cmd_calibrate(args) -> int:
    from .deploy.alarm_calibration import CalibrateOptions, run_calibrate_cli

    if args.config and not args.images:  # the config's values (rate, score, device, data) before any student loads
        extra = [f"evaluate.false_alarm_rate={args.false_alarm}"] if args.false_alarm is not None else []
        _experiment_config(args, extra + ([f"evaluate.ood_score={args.score}"] if args.score else []), alarm=True)
    elif args.device:
        from .device import resolve_device

        resolve_device(args.device)
    for path, rec in run_calibrate_cli(_options(CalibrateOptions, args)).items():
        print(
            f"{path}: alarm score {rec['score']}, threshold {rec['thresholds'][rec['score']]:.6g} at "
            f"{rec['false_alarm_rate']:.1%} false alarms on {rec['calibration_set']}"
        )
    return 0


def _cmd_experiment(args) -> int:
    from .pipeline.experiment import describe_plan, run_experiment

    cfg = _experiment_config(args, data="plan" if args.dry_run else "check", alarm=True)
    if args.dry_run:
        print(describe_plan(cfg, args.config, [*args.overrides, *([f"device={args.device}"] if args.device else [])]))
        return 0
    run_experiment(cfg)
    return 0


def _cmd_demo(args) -> int:
    from .pipeline.demo import run_demo

    run_demo(args.out, overrides=args.overrides, device=args.device)
    return 0


def _cmd_predict(args) -> int:
    from .deploy.predict.runner import PredictOptions, run_predict

    return run_predict(_options(PredictOptions, args))["exit_code"]


def _cmd_export(args) -> int:
    from .deploy.export import export_onnx

    if args.int8 and not args.calibration_images:
        from .errors import UdistillError

        raise UdistillError("--int8 needs --calibration-images DIR (your frames, to fit the activation ranges)")
    path = export_onnx(args.checkpoint, args.onnx, opset=args.opset, native=args.native, fused=args.fused)
    print(f"wrote {path}")
    if args.int8:
        from .deploy.quantize import quantize_onnx

        int8 = path.with_name(path.stem + ".int8.onnx")
        fid = quantize_onnx(path, int8, args.calibration_images)
        print(
            f"wrote {int8} (int8; on {fid['holdout_images']} held-out images: label agreement "
            f"{100 * fid['label_agreement']:.2f} %, U Pearson {fid['u_pearson']:.4f})"
        )
    return 0


def _cmd_ood_report(args) -> int:
    from .deploy.ood_report import OodReportOptions, run_ood_report

    return run_ood_report(_options(OodReportOptions, args))


def _cmd_benchmark(args) -> int:
    from .deploy.benchmark import BenchmarkOptions, run_benchmark_cli

    run_benchmark_cli(_options(BenchmarkOptions, args))
    return 0


_COMMANDS = {
    "data": _cmd_data,
    "train-teacher": _cmd_train_teacher,
    "distill": _cmd_distill,
    "evaluate": _cmd_evaluate,
    "calibrate": _cmd_calibrate,
    "experiment": _cmd_experiment,
    "demo": _cmd_demo,
    "predict": _cmd_predict,
    "export": _cmd_export,
    "ood-report": _cmd_ood_report,
    "benchmark": _cmd_benchmark,
}


def _dispatch(args) -> int:
    run = _COMMANDS.get(args.command)
    if run is None:
        build_parser().print_help()
        return 2
    return run(args)


class _distributed:
    """Initialise torch.distributed when launched by torchrun (WORLD_SIZE > 1)."""

    def __enter__(self):
        import torch
        import torch.distributed as dist

        from .sharding import is_main, launched_world_size, world

        self.active = launched_world_size() > 1 and not dist.is_initialized()
        if self.active:
            backend = "nccl" if torch.cuda.is_available() else "gloo"
            dist.init_process_group(backend)
            if torch.cuda.is_available():
                torch.cuda.set_device(world()[0] % torch.cuda.device_count())
        self.is_main = is_main()
        return self

    def __exit__(self, *exc):
        if self.active:
            from .train.distributed import shut_down

            shut_down(clean=exc[0] is None)
        return False


def main(argv: list[str] | None = None) -> int:
    from .errors import UdistillError

    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return _dispatch(args)
    except UdistillError as exc:
        print(f"udistill: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("udistill: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `udistill ... | head`
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    except OSError as exc:
        # a file or folder the user named cannot be created/read (not a folder, read-only, disk full)
        if exc.filename is None:
            raise
        print(f"udistill: error: {exc.filename}: {exc.strerror or exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
