"""The whole pipeline for one config: members -> student -> (single-pass methods) ->
evaluation -> report.

Each stage skips what is finished and resumes what was interrupted, so rerunning the same
command after a crash or a kill continues where it stopped.
"""

from __future__ import annotations

import contextlib
import json

from ..config import ExperimentConfig, save_config
from ..data.from_config import parse_shifts
from ..deploy.alarm_calibration import run_calibration
from ..device import resolve_device
from ..evaluation.evaluate import run_evaluation
from ..layout import RunLayout
from ..runlock import locks_run
from ..single_pass.stages import check_config, heads_of, run_single_pass
from ..train.recipes import member_recipe
from ..train.stage import rebuilds_stale
from .distill import run_control, run_distill
from .member_jobs import member_job_count, train_members_in_parallel
from .planning import describe_costs
from .teacher import train_member
from .validation import check_encoder, validate_config  # noqa: F401 - validate_config: public here too

_check_encoder = check_encoder  # the old private name


def describe_plan(cfg: ExperimentConfig, config_path: str | None = None, overrides=()) -> str:
    """The plan of ``cfg``: stages, member recipes, per-stage disk and time estimates
    (:mod:`udistill.pipeline.planning`) and the commands a scheduler can run."""
    validate_config(cfg, data="plan", alarm=True)  # the run's own checks; data not on this machine: published counts
    d, m, t = cfg.data, cfg.model, cfg.train
    lines = [
        f"experiment '{cfg.name}' -> {cfg.out_dir} (device {cfg.device})",
        f"data: {d.dataset} root={d.root or '-'} size={d.size or 'native'} splits train={d.train_split} val={d.val_split} test={d.test_split}",
        f"model: {m.arch} encoder={m.encoder} weights={m.encoder_weights} decoder={m.decoder_channels} head={m.head_channels} dropout={m.dropout}",
        f"1. teacher: {cfg.teacher.members} members x {t.epochs} epochs, batch {t.batch_size}, "
        f"{'one init seed ' + str(cfg.teacher.init_seed) if not cfg.teacher.diverse_init else 'init seed per member'}",
    ]
    for k in range(cfg.teacher.members):
        r = member_recipe(t, k, cfg.teacher.diversify)
        lines.append(
            f"   member {k:>2}: optimizer={r.optimizer:<7} lr={r.lr:<8g} augment={r.augment}{'  (baseline)' if k == 0 else ''}"
        )
    dc = cfg.distill
    lines.append(
        f"2. student: from {dc.init_from}, heads={m.uncertainty_head}, targets={dc.targets}, T={dc.temperature} "
        f"alpha={dc.alpha} beta={dc.beta}, {dc.epochs or t.epochs} epochs"
    )
    shifts = [s.name for s in parse_shifts(d)]
    sp = cfg.single_pass
    if sp.enabled:
        check_config(cfg)

        width = {None: "paper heads", 0: "shared 3x3 block, 1x1 heads"}.get(sp.multi_head_channels)
        lines.append(
            f"2b. single-pass: temperature on '{d.val_split}', feature density ({sp.density_covariance} covariance, "
            f"{sp.density_score}) on '{d.train_split}', {heads_of(cfg)}-head ensemble "
            f"({width or f'{sp.multi_head_channels}-channel heads'}, {sp.multi_head_epochs} epochs)"
        )
    lines.append(
        f"3. evaluate: test split '{d.test_split}' + shifts: {', '.join(shifts) or 'none'}; MC dropout T={cfg.evaluate.mc_samples}"
    )
    lines.append(f"4. report: {RunLayout.of(cfg).evaluation / 'report.html'}")
    lines += describe_costs(cfg, config_path, overrides)
    return "\n".join(lines)


def run_experiment(
    cfg: ExperimentConfig, device: str | None = None, progress: bool = True, log=print, clock=None
) -> dict:
    """Run every stage (finished ones are skipped, stale ones rebuilt); returns the results dict.

    ``clock`` (a :class:`~udistill.progress.StageClock`) prints one line per stage with its
    expected and elapsed time; without it each stage logs one line. Members run as parallel
    one-thread processes when ``teacher.parallel_jobs`` asks for it on a CPU."""
    validate_config(cfg, device=device, alarm=True)  # every value, the device and the data, before the first stage
    if cfg.single_pass.enabled:
        check_config(cfg)
    jobs = member_job_count(cfg, resolve_device(device or cfg.device))
    if jobs > 1:  # before the run's exclusive lock: the member jobs share it
        with _stage(clock, log, "members", f"{cfg.teacher.members} teacher members, {jobs} jobs side by side"):
            train_members_in_parallel(cfg, jobs, device, log=_quiet(clock, log))
    return _run_stages(cfg, device, progress, log, clock, parallel_done=jobs > 1)


def _stage(clock, log, name: str, what: str):
    """One stage's line: timed by ``clock`` when given, else logged."""
    if clock is not None:
        return clock.stage(name, what)
    log(f"[{name}] {what}")
    return contextlib.nullcontext()


def _quiet(clock, log):
    """Per-member lines only without a stage clock (the clock's stage line covers them)."""
    return (lambda _msg: None) if clock is not None else log


@locks_run
@rebuilds_stale
def _run_stages(cfg: ExperimentConfig, device, progress: bool, log, clock, parallel_done: bool = False) -> dict:

    layout = RunLayout.of(cfg)
    layout.out_dir.mkdir(parents=True, exist_ok=True)
    save_config(cfg, layout.config)
    if clock is not None and not parallel_done:
        with clock.stage("members", f"{cfg.teacher.members} teacher members, one after another"):
            for k in range(cfg.teacher.members):
                train_member(cfg, k, device)
    else:  # without a clock one line per member; after the parallel jobs only the reuse checks
        for k in range(cfg.teacher.members):
            if not parallel_done:
                log(f"[teacher] member {k + 1}/{cfg.teacher.members}")
            train_member(cfg, k, device)
    with _stage(clock, log, "student", "distilling"):
        run_distill(cfg, device)
    if cfg.distill.light_student and cfg.model.uncertainty_head != "light":
        with _stage(clock, log, "student-light", "distilling the light-head student for comparison"):
            run_distill(cfg, device, heads="light")
    if cfg.distill.control:
        with _stage(clock, log, "control", "member 0 trained on labels alone for the student's epochs"):
            run_control(cfg, device)
    if cfg.single_pass.enabled:
        what = f"temperature on val, feature density on train, {heads_of(cfg)}-head ensemble on member 0's trunk"
        with _stage(clock, log, "single-pass", what):
            run_single_pass(cfg, device, log=_quiet(clock, log))
    with _stage(
        clock, log, "calibrate", "OOD alarm of every student on the calibration set (score chosen on validation shifts)"
    ):
        run_calibration(cfg, device)
    with _stage(clock, log, "evaluate", "every predictor and method on the validation and test sets and every shift"):
        ev = run_evaluation(cfg, device, progress=progress)
    results = json.loads((ev / "results.json").read_text())
    if clock is not None:
        clock.close()
    log(summary_table(results))
    log(f"report: {ev / 'report.html'}")
    return results


def summary_table(results: dict) -> str:
    """The short table the demo prints: the report's headline, then mIoU per shift."""
    from ..evaluation.report.headline import headline_rows, headline_text

    lines = [headline_text(results.get("headline") or headline_rows(results))]
    preds = [
        p for p in ("baseline", "control", "multi_head", "teacher", "student", "student_light") if p in results["miou"]
    ]

    def f(x):
        return "  -  " if x is None else f"{x:.3f}"

    lines.append("mIoU " + "/".join(preds) + ":")
    lines.append(f"  {'in-distribution':<16} " + " ".join(f(results["miou"][p]) for p in preds))
    for name, s in results.get("shifts", {}).items():
        lines.append(f"  {name:<16} " + " ".join(f(s["miou"].get(p)) for p in preds))
    return "\n".join(lines)
