"""What a config will cost before it runs: disk per stage, time per stage from a measured
throughput, and the commands of the plan (for ``udistill experiment --dry-run``).

Why: at the paper's scale (Cityscapes, 25 members) a full-resolution teacher cache alone
filled 118 GB, and the long stages (members, cache, evaluation) are meant to run as jobs
on a scheduler; both should be known before the first job starts.

Sizes are computed, not guessed: checkpoint bytes from the model's own parameter count
(a model is built without weights), optimiser state per optimiser, the cache from
:func:`udistill.pipeline.targets.cache_nbytes`. Image counts come from the data (or, when no root is
given anywhere, neither in the config nor in the data set's environment variable, from the
published split sizes; otherwise "unknown"). A root that is given must hold the images: the
dry run checks it with the run's own validation (:mod:`udistill.pipeline.validation`).
Times scale a *measured* throughput (:data:`MEASURED`, each with the file it comes from)
by pixels; no GPU has been measured in this project, so every time is CPU time of one
thread, to be divided by the speed-up of the hardware actually used.
"""

from __future__ import annotations

import dataclasses
import json
import math
import shlex
from collections.abc import Sequence

from ..config import ExperimentConfig
from ..data.auxiliary import auxiliary_count
from ..data.from_config import dataset_for, parse_shifts
from ..data.labels import SCHEMES
from ..errors import ConfigError, UdistillError
from ..models.build import build_model, to_student
from ..train.recipes import member_recipe
from .distill import views_for
from .targets import cache_nbytes
from .validation import root_not_given

# Train-throughput labels of benchmarks/train_throughput.py -> model keys (encoder/channels)
_TRAIN_LABELS = {
    "default (mobilenet_v2, 256 ch)": "mobilenet_v2/256",
    "fast (tu-mobilenetv3_small_100, 256 ch)": "tu-mobilenetv3_small_100/256",
    "fast, 64 ch (camvid-cpu / demo)": "tu-mobilenetv3_small_100/64",
}


def _shipped(name: str) -> dict:
    """A committed benchmark result shipped with the package (``presets/measured/``, copies of
    ``benchmarks/results/``; a test keeps them equal)."""
    from importlib import resources

    return json.loads((resources.files("udistill") / "presets" / "measured" / name).read_text())


def _measured() -> dict:
    """Measured throughputs (images/s, 1 CPU thread), read from the committed results, and
    where each figure comes from."""
    train = _shipped("train-throughput-cpu-1thread.json")
    bench = _shipped("benchmark-cpu.json")
    cost = _shipped("distill-epoch-cost-cpu.json")["paper head, auxiliary_ratio 0.25"]
    ips = bench["throughput_ips"]
    return {
        "train": {  # forward + backward + SGD step, batch 8
            **{_TRAIN_LABELS[k]: v for k, v in train["images_per_s"].items() if k in _TRAIN_LABELS},
            "size": tuple(train["size"]),
            "source": "benchmarks/results/train-throughput-cpu-1thread.json",
        },
        "forward": {  # one model, eval, batch 8 (the baseline); the other predictors as ratios of it
            f"{bench['model']['encoder']}/{bench['model']['decoder_channels']}": ips["baseline"]["torch"],
            "size": tuple(bench["size"]),
            "student_over_baseline": bench["ratios"]["student_over_baseline"],
            "mc_dropout_T10_over_baseline": ips["baseline"]["torch"] / ips["mc_dropout"]["torch"],
            "source": "benchmarks/results/benchmark-cpu.json (torch, throughput_ips)",
        },
        "distill_over_train": {  # per image: the auxiliary images are counted as more images
            "cached": cost["ratio_to_baseline"]["cached"],
            "online": cost["ratio_to_baseline"]["online"],
            "source": "benchmarks/results/distill-epoch-cost-cpu.json",
        },
        "evaluation_bytes": {
            "fixed": 0.8e6,
            "per_image": 2.9e3,
            "source": "benchmarks/results/camvid-cpu (1.8 MB for 365 images)",
        },
    }


MEASURED = _measured()
# published split sizes, used when the data is not on this machine
PUBLISHED = {
    ("cityscapes", "train"): 2975,
    ("cityscapes", "val"): 500,
    ("foggy-cityscapes", "val"): 500,
    ("camvid", "train"): 367,
    ("camvid", "val"): 101,
    ("camvid", "test"): 233,
}


def _model_key(cfg: ExperimentConfig) -> str:
    return f"{cfg.model.encoder}/{cfg.model.decoder_channels}"


def count_images(cfg: ExperimentConfig, role: str, shift=None) -> tuple[int | None, str]:
    """(images, how it was found) of a role's set (or a shift of it)."""
    try:
        return len(dataset_for(cfg.data, role, shift=shift)), "counted"
    except UdistillError as exc:
        root = (shift.root if shift is not None else None) or cfg.data.root
        if root is not None or not root_not_given(exc):  # given, but not usable: never a silent guess
            what = f"the {role} set" if shift is None else f"shift '{shift.name}'"
            raise ConfigError(f"config key 'data.root': {what}: {exc}") from None
        split = {"train": cfg.data.train_split, "val": cfg.data.val_split, "test": cfg.data.test_split}[role]
        name = cfg.data.dataset
        if shift is not None:
            name, split = shift.dataset or name, shift.split or split
        n = PUBLISHED.get((name, split))
        return n, ("published" if n is not None else "unknown")


def _num_classes(cfg: ExperimentConfig) -> int:
    scheme = cfg.data.options.get("label_scheme")
    if scheme in SCHEMES:
        return SCHEMES[scheme].num_classes
    return 11 if cfg.data.dataset in ("camvid", "synthetic") else 19


def model_bytes(cfg: ExperimentConfig, heads: str = "prediction") -> tuple[int, int]:
    """(bytes of the weights file's tensors, bytes of the trainable parameters) of the config's model."""
    mc = dataclasses.replace(cfg.model, encoder_weights=None)
    model = build_model(mc, _num_classes(cfg))
    if heads != "prediction":
        model = to_student(model, heads)
    tensors = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    params = sum(p.numel() * p.element_size() for p in model.parameters())
    return tensors, params


def optimizer_copies(name: str, momentum: float) -> int:
    """Parameter-sized buffers an optimiser keeps (saved in ``last.state.safetensors``)."""
    return {"sgd": int(momentum > 0), "adam": 2, "adamw": 2, "rmsprop": 1 + int(momentum > 0)}.get(name, 2)


def _fmt_bytes(n: float) -> str:
    for unit, k in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= k:
            return f"{n / k:.1f} {unit}"
    return f"{int(n)} B"


def _fmt_time(s: float | None) -> str:
    if s is None:
        return "unknown"
    if s < 120:
        return f"{s:.0f} s"
    if s < 7200:
        return f"{s / 60:.0f} min"
    if s < 3 * 86400:
        return f"{s / 3600:.1f} h"
    return f"{s / 86400:.0f} days"


def _pixels(cfg: ExperimentConfig) -> int | None:
    return cfg.data.size[0] * cfg.data.size[1] if cfg.data.size else None


def throughput(cfg: ExperimentConfig, kind: str) -> tuple[float | None, str]:
    """Images/s of ``kind`` (train | forward) for this model at the config's size, scaled by
    pixels from the measurement, with a note of what was measured."""
    m = MEASURED[kind]
    key = _model_key(cfg)
    px = _pixels(cfg)
    if key not in m or px is None:
        why = f"no measurement for {key}" if key not in m else "data.size not set"
        return None, f"{why} ({m['source']})"
    h, w = m["size"]
    ips = m[key] * (h * w) / px
    return ips, f"{m[key]:.2f} img/s at {h}x{w}, 1 CPU thread, {m['source']}"


@dataclasses.dataclass
class Stage:
    name: str
    disk: float  # bytes written
    seconds: float | None  # 1 CPU thread
    note: str = ""


def _secs(images, per_image_factor, ips):
    """Seconds for ``images`` x ``per_image_factor`` passes at ``ips`` images/s (None if unknown)."""
    if images is None or ips is None:
        return None
    return images * per_image_factor / ips


def estimate(cfg: ExperimentConfig) -> tuple[list[Stage], list[str]]:
    """Per-stage disk and time, and the notes that say where the figures come from."""
    counts = {split: count_images(cfg, split) for split in ("train", "val", "test")}
    shifts = [(s.name, *count_images(cfg, "test", shift=s)) for s in parse_shifts(cfg.data)]

    def count(n, how):
        return f"{'?' if n is None else n} ({how})"

    notes = [
        "images: "
        + ", ".join(f"{split} {count(*counts[split])}" for split in counts)
        + "".join(f", {name} {count(n, how)}" for name, n, how in shifts)
    ]
    train_ips, train_note = throughput(cfg, "train")
    fwd_ips, fwd_note = throughput(cfg, "forward")
    notes += [
        f"time: training {train_note}",
        f"time: inference {fwd_note}",
        "time: CPU seconds of one thread (no GPU measured in this project: divide by your hardware's speed-up; "
        "cache and evaluation also divide by the number of torchrun processes)",
    ]
    stages = _training_stages(cfg, counts["train"][0], train_ips, fwd_ips)
    eval_sets = [("test", counts["test"][0])] + [(name, n) for name, n, _ in shifts]
    stages += _evaluation_stages(cfg, counts["val"][0], eval_sets, fwd_ips)
    eb = MEASURED["evaluation_bytes"]
    notes.append(
        f"disk: checkpoints = weights + last.state (weights + optimiser buffers), from the model's parameter count; "
        f"evaluation from {eb['source']}"
    )
    return stages, notes


def _training_stages(cfg: ExperimentConfig, n_train, train_ips, fwd_ips) -> list[Stage]:
    """Members, teacher cache, student(s) and control."""
    t, dc = cfg.train, cfg.distill
    weights, params = model_bytes(cfg)
    stages = []
    for k in range(cfg.teacher.members):
        r = member_recipe(t, k, cfg.teacher.diversify)
        state = weights + params * optimizer_copies(r.optimizer, r.momentum)
        stages.append(Stage(f"member {k}", weights + state, _secs(n_train, t.epochs, train_ips), f"{r.optimizer}"))
    views = views_for(dc, t.seed)
    k_views = views.count if views is not None else 1
    size = tuple(cfg.data.size) if cfg.data.size else None
    # the student's epoch: the training images plus the auxiliary ones (udistill.data.auxiliary)
    n_distill = (
        None if n_train is None else n_train + (auxiliary_count(n_train, dc.auxiliary_ratio) if dc.auxiliary else 0)
    )
    aux_note = f", {n_distill - n_train} auxiliary images" if n_distill and n_train and n_distill > n_train else ""
    if dc.targets == "cached":
        if size is None or n_distill is None:
            stages.append(Stage("teacher cache", math.nan, None, "needs data.size and the training images"))
        else:
            stages.append(
                Stage(
                    "teacher cache",
                    cache_nbytes(n_distill * k_views, _num_classes(cfg), size, dc.cache_reduction),
                    _secs(n_distill * k_views, cfg.teacher.members, fwd_ips),
                    f"{n_distill * k_views} entries at 1/{dc.cache_reduction}{aux_note}",
                )
            )
    s_weights, s_params = model_bytes(
        cfg, "prediction+uncertainty" if cfg.model.uncertainty_head == "paper" else "prediction+uncertainty-light"
    )
    epochs = dc.epochs or t.epochs
    ratio = MEASURED["distill_over_train"][dc.targets if dc.targets in ("cached", "online") else "online"]
    student_state = s_weights + s_params * optimizer_copies(t.optimizer, t.momentum)
    student_time = _secs(n_distill, epochs * ratio, train_ips)
    stages.append(
        Stage("student", s_weights + student_state, student_time, f"{epochs} epochs, targets {dc.targets}{aux_note}")
    )
    if dc.light_student and cfg.model.uncertainty_head != "light":
        lw, lp = model_bytes(cfg, "prediction+uncertainty-light")
        stages.append(Stage("light student", 2 * lw + lp * optimizer_copies(t.optimizer, t.momentum), student_time))
    if dc.control:
        stages.append(
            Stage(
                "control",
                2 * weights + params * optimizer_copies(t.optimizer, t.momentum),
                _secs(n_train, epochs, train_ips),
                "member 0 on labels, the student's epochs",
            )
        )
    return stages


def _evaluation_stages(cfg: ExperimentConfig, n_val, eval_sets: list, fwd_ips) -> list[Stage]:
    """Calibration of the alarm and the evaluation of every predictor on every test set."""
    dc, ec = cfg.distill, cfg.evaluate
    fw = MEASURED["forward"]
    student_cost = fw["student_over_baseline"] * (2 if dc.light_student else 1)
    stages = [Stage("calibrate", 0.0, _secs(n_val, student_cost, fwd_ips), "alarm stored in the student checkpoint")]
    cap = (lambda n: n) if ec.max_images is None else (lambda n: min(n, ec.max_images))
    known = sum(cap(n) for _, n in eval_sets if n is not None)
    uncounted = [name for name, n in eval_sets if n is None]
    per_image = 1 + cfg.teacher.members + student_cost + (1 if dc.control else 0)
    if ec.mc_samples >= 2:
        per_image += fw["mc_dropout_T10_over_baseline"] * ec.mc_samples / 10
    eb = MEASURED["evaluation_bytes"]
    note = f"{known} images x {per_image:.1f} baseline passes"
    if uncounted:
        each = (
            "" if fwd_ips is None else f", {_fmt_time(per_image / fwd_ips)} and {_fmt_bytes(eb['per_image'])} per image"
        )
        note += f" + the images of {', '.join(uncounted)} (not counted: data not here{each})"
    stages.append(Stage("evaluate", eb["fixed"] + eb["per_image"] * known, _secs(known, per_image, fwd_ips), note))
    return stages


def plan_commands(cfg: ExperimentConfig, config_path: str | None = None, overrides: Sequence[str] = ()) -> list[str]:
    """The plan as shell commands, in dependency order (members are independent of each other)."""
    base = f"--config {shlex.quote(config_path or 'CONFIG.yaml')}" + "".join(
        f" --set {shlex.quote(o)}" for o in overrides
    )
    cmds = [f"udistill train-teacher {base} --member {k}" for k in range(cfg.teacher.members)]
    cmds.append(f"udistill distill {base}")
    if cfg.distill.light_student and cfg.model.uncertainty_head != "light":
        cmds.append(f"udistill distill {base} --light")
    if cfg.distill.control:
        cmds.append(f"udistill distill {base} --control")
    cmds.append(f"udistill calibrate {base}")
    cmds.append(f"udistill evaluate {base}")
    return cmds


def describe_costs(cfg: ExperimentConfig, config_path: str | None = None, overrides: Sequence[str] = ()) -> list[str]:
    """The lines ``--dry-run`` prints after the plan: the table, the totals, the commands."""
    stages, notes = estimate(cfg)
    lines = ["", "estimates (disk written; time on 1 CPU thread from a measured throughput):"]
    members = [s for s in stages if s.name.startswith("member ")]
    rest = [s for s in stages if not s.name.startswith("member ")]
    if members:
        per = members[0]
        total_t = None if any(s.seconds is None for s in members) else sum(s.seconds for s in members)
        lines.append(
            f"  {'members (' + str(len(members)) + ')':<16} {_fmt_bytes(sum(s.disk for s in members)):>10}  "
            f"{_fmt_time(total_t):>10}  ({_fmt_bytes(per.disk)} and {_fmt_time(per.seconds)} each)"
        )
    for s in rest:
        disk = "?" if s.disk != s.disk else _fmt_bytes(s.disk)
        lines.append(f"  {s.name:<16} {disk:>10}  {_fmt_time(s.seconds):>10}  {s.note}")
    disk_total = sum(s.disk for s in stages if s.disk == s.disk)
    times = [s.seconds for s in stages]
    lines.append(
        f"  {'total':<16} {_fmt_bytes(disk_total):>10}  {_fmt_time(None if None in times else sum(times)):>10}"
    )
    lines += [f"  {n}" for n in notes]
    lines += [
        "",
        "commands (members are independent jobs; then distill, calibrate, evaluate in order;",
        "distill and evaluate also run under `torchrun --nproc_per_node N -m udistill ...`):",
    ]
    lines += [f"  {c}" for c in plan_commands(cfg, config_path, overrides)]
    return lines
