"""Typed configuration: dataclasses with commented defaults, read from YAML.

Every key can be overridden on the command line with ``--set dotted.key=value`` (the value
is parsed as YAML, so ``--set train.epochs=3`` gives an int and ``--set data.size=[64,96]``
a list). Unknown keys and wrong types raise :class:`~udistill.errors.ConfigError` naming the
key. Each run writes its resolved config next to its outputs (:func:`save_config`).
"""

from __future__ import annotations

import dataclasses
import math
import re
import sys
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml

from .errors import ConfigError
from .io import atomic_write_text


@dataclass
class DataConfig:
    dataset: str = "synthetic"  # registry name, see udistill.data.available_datasets()
    root: str | None = None  # dataset folder; synthetic needs none
    size: list[int] | None = None  # [H, W] to resize to; None = native resolution
    train_split: str = "train"
    val_split: str = "val"
    test_split: str = "test"
    options: dict[str, Any] = field(default_factory=dict)  # extra build_dataset kwargs (all splits)
    train_options: dict[str, Any] = field(default_factory=dict)  # extra kwargs for the train split only
    test_options: dict[str, Any] = field(default_factory=dict)  # extra kwargs for val/test splits
    # extra kwargs for one role only, applied last: {train|val|test|calibration: {...}}
    # (e.g. CamVid: {test: {sequences: [Seq05VD]}} tests in distribution on a sequence of its own)
    role_options: dict[str, Any] = field(default_factory=dict)
    # shifted sets evaluated as out-of-distribution: a shift name ("fog") or a mapping
    # {name, shift, split, dataset, root, options} (e.g. another sequence or data set)
    shifts: list[Any] = field(default_factory=list)
    # validation shifts (same syntax, built from the *val* role): choices about shifts (which
    # image score the alarm uses) are made on these, never on the test shifts above
    val_shifts: list[Any] = field(default_factory=list)
    num_workers: int = 0
    seed: int = 0
    cache_in_memory: bool = False  # keep decoded/rendered items in RAM after the first epoch


@dataclass
class ModelConfig:
    arch: str = "deeplabv3plus"
    encoder: str = "mobilenet_v2"  # any segmentation_models_pytorch encoder name
    encoder_weights: str | None = None  # "imagenet" needs the network; None = random init
    decoder_channels: int = 256
    head_channels: int = 256  # paper: 3x3 conv-BN-ReLU with 256 channels
    dropout: float = 0.0  # dropout before the head (MC-dropout baseline needs > 0)
    uncertainty_head: str = "paper"  # student only: "paper" (two full heads) or "light"


@dataclass
class TrainConfig:
    epochs: int = 10
    batch_size: int = 8
    lr: float = 0.01
    optimizer: str = "sgd"  # sgd | adam | adamw | rmsprop
    momentum: float = 0.9
    weight_decay: float = 1e-4
    poly_power: float = 0.9  # poly learning-rate schedule
    grad_clip: float = 5.0  # max gradient norm; 0 disables
    class_weights: list[float] | None = None
    augment: str = "basic"  # augmentation recipe, see udistill.train.recipes
    amp: bool = True  # mixed precision on CUDA only (= precision fp16 there); precision, when set, wins
    precision: str | None = None  # fp32 | fp16 | bf16 (autocast dtype; fp16 with loss scaling)
    sync_bn: bool | None = None  # BatchNorm statistics over all DDP ranks; None = on for several GPUs
    channels_last: bool = False  # NHWC memory layout (faster convolutions on recent GPUs)
    compile: bool | str = False  # torch.compile the model: true, or a backend name ("inductor", "eager")
    deterministic: bool = False  # deterministic algorithms; false also turns cudnn.benchmark on
    seed: int = 0
    max_iters_per_epoch: int | None = None  # cap (for smoke tests)
    tensorboard: bool = False
    progress: bool = True


@dataclass
class TeacherConfig:
    members: int = 4  # F, the ensemble size (paper: 25)
    init_seed: int = 0  # one initialisation for all members (paper)
    diverse_init: bool = False  # True: member K is initialised with init_seed + K
    diversify: bool = True  # per-member lr / optimiser / augmentation drawn from K
    # members trained side by side as one-thread processes on a CPU (experiment/demo): 1 = one
    # after another in this process, 0 = one job per core (see udistill.pipeline.member_jobs)
    parallel_jobs: int = 1


@dataclass
class DistillConfig:
    temperature: float = 1.0  # the paper does not give its T
    # the student's own seed (new head, views, data order); None = train.seed. Seeds of the student
    # with the members fixed give the spread of a verdict (benchmarks/student_seeds.py)
    seed: int | None = None
    alpha: float = 0.1
    beta: float = 1.1
    targets: str = "cached"  # cached | online
    init_from: str = "member0"  # "member0" or a checkpoint path
    epochs: int | None = None  # None = train.epochs
    lr: float | None = None  # None = train.lr
    light_student: bool = False  # also distil a light-head student (compared in the evaluation)
    # recipe: "paper" (eq. 7 MSE, fresh uncertainty head, clean training images) or "udistill"
    # (see udistill.pipeline.distill.RECIPES); the three keys below override single parts of it
    recipe: str = "paper"
    sigma_loss: str | None = None  # mse | log-mse | sqrt-mse (udistill.core.losses.sigma_loss_fn)
    sigma_init: str | None = None  # none | teacher-mean (bias = logit of the mean Σ per class) | a number
    views: str | None = None  # none | perturb (distil on perturbed views, udistill.pipeline.perturb)
    view_count: int = 4  # cached targets: K fixed views per image (view 0 clean); online: fresh views
    cache_reduction: int = (
        4  # cached targets stored at 1/r of the input (the heads' resolution); 1 = full (udistill.pipeline.targets)
    )
    teacher_precision: str = "fp32"  # online targets: the ensemble runs outside float16 autocast (fp32 | bf16)
    control: bool = True  # also fine-tune member 0 on labels alone for the same epochs (the control)
    # auxiliary unlabelled images distilled beside the training images (teacher targets only,
    # no CE): synthetic:<style>, corrupt:<family> or folders of frames (udistill.data.auxiliary)
    auxiliary: list[str] = field(default_factory=list)
    auxiliary_ratio: float = 0.25  # share of auxiliary images in a distillation epoch


@dataclass
class EvaluateConfig:
    mc_samples: int = 10  # T for MC dropout
    mc_dropout: float = 0.2  # dropout rate before the head when the baseline has none (model.dropout)
    mc_seed: int = 0  # MC dropout masks are drawn from this seed: two evaluations agree
    bins: int = 4096  # log-spaced histogram bins for streamed pixel metrics (see metrics/pixel.py)
    max_images: int | None = None
    false_alarm_rate: float = 0.05  # OOD threshold calibration
    # the calibration set of the OOD alarm: a split ("val" by default, data.val_split) and which
    # of its images ("all", "even" or "odd" indices); it must share no image with any test set
    calibration_split: str | None = None
    calibration_subset: str = "all"
    # image score of the alarm: "auto" = the best mean AUROC over data.val_shifts (the paper's
    # (median+min)/max when there are none), or one of min|mean|median|max|median_plus_min_over_max
    ood_score: str = "auto"
    examples: int = 3  # images per grid in the example figures
    batch_size: int = 4


@dataclass
class SinglePassConfig:
    """The single-pass methods evaluated beside the student (udistill.single_pass): the
    baseline with a fitted temperature, a feature density of its decoder features, and a
    multi-head ensemble on its frozen encoder/decoder."""

    enabled: bool = False  # fit the three after the members, evaluate them beside the student
    temperature_max_pixels: int = 2_000_000  # validation pixels (seeded sample) whose logits fit T
    density_covariance: str = "shared"  # shared (one pooled covariance, DDU's LDA form) | per-class
    # added to the covariance diagonal, times its mean variance; x10 until Cholesky succeeds
    density_jitter: float = 1e-4
    # log_density: -log sum_c pi_c N(x; mu_c, S) | mahalanobis: squared distance to the closest class mean
    density_score: str = "log_density"
    density_reservoir: int = 20000  # training features kept (seeded) to place the score's [0, 1] map
    multi_head_heads: int | None = None  # F; None = teacher.members
    # width of each head's 3x3 block; None = model.head_channels (paper heads), 0 = member 0's
    # trained 3x3 block shared and frozen, F new 1x1 classifiers (the cheapest last layer)
    multi_head_channels: int | None = None
    multi_head_epochs: int = 4
    multi_head_lr: float = 0.003  # Adam
    multi_head_batch_size: int | None = None  # None = train.batch_size
    multi_head_cache_mb: int = 512  # trunk features kept in memory across epochs up to this size
    seed: int = 0  # head initialisations, bootstrap weights, data order, pixel samples


@dataclass
class ExperimentConfig:
    """The whole pipeline: members, student, evaluation. Used by train-teacher, distill,
    evaluate, experiment and demo (each reads the sections it needs)."""

    name: str = "experiment"
    out_dir: str = "runs/experiment"
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)
    single_pass: SinglePassConfig = field(default_factory=SinglePassConfig)


T = TypeVar("T")
_SCIENTIFIC = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check ``value`` against the annotation ``tp``; return it (ints widen to floats)."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key)
            except ConfigError as exc:
                errors.append(exc)
        if len(errors) == 1:  # Optional[X]: X's own message is the precise one
            raise errors[0]
        raise ConfigError(f"config key '{key}': expected {_type_name(tp)}, got {value!r}")
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"config key '{key}': expected a mapping, got {value!r}")
        return _from_dict(tp, value, prefix=key + ".")
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"config key '{key}': expected a list, got {value!r}")
        (item_tp,) = args or (Any,)
        return [_coerce(v, item_tp, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"config key '{key}': expected a mapping, got {value!r}")
        return dict(value)
    if tp is float:
        if isinstance(value, str) and _SCIENTIFIC.fullmatch(value.strip()):
            value = float(value)  # YAML 1.1 reads 1e-4 as a string
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"config key '{key}': expected a number, got {value!r}")
        try:
            number = float(value)
        except OverflowError:
            raise ConfigError(f"config key '{key}': number too large, got {value!r}") from None
        if not math.isfinite(number):  # YAML .nan / .inf
            raise ConfigError(f"config key '{key}': expected a finite number, got {value!r}")
        return number
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"config key '{key}': expected an integer, got {value!r}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"config key '{key}': expected true/false, got {value!r}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"config key '{key}': expected a string, got {value!r}")
        return value
    return value


# Keys that existed once and were removed: configs that still set them load, with this message.
REMOVED_KEYS = {
    "teacher.temperature": "it was never read; the evaluated teacher uses T = 1 and "
    "distill.temperature shapes only the distillation targets",
}


def _from_dict(cls: type[T], data: dict, prefix: str = "") -> T:
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in data.items():
        if isinstance(key, str) and prefix + key in REMOVED_KEYS and key not in names:
            print(
                f"udistill: warning: config key '{prefix + key}' was removed and is ignored: {REMOVED_KEYS[prefix + key]}",
                file=sys.stderr,
            )
            continue
        if not isinstance(key, str) or key not in names:
            known = ", ".join(sorted(names))
            raise ConfigError(f"unknown config key {prefix + str(key)!r} (known: {known})")
        kwargs[key] = _coerce(value, hints[key], prefix + key)
    return cls(**kwargs)


def to_dict(cfg: Any) -> dict:
    return dataclasses.asdict(cfg)


def _set_dotted(data: dict, dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = data
    for part in parts[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node = child
    node[parts[-1]] = value


def parse_override(text: str) -> tuple[str, Any]:
    """Parse ``dotted.key=value``; the value is read as YAML."""
    if "=" not in text:
        raise ConfigError(f"--set expects dotted.key=value, got {text!r}")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key:
        raise ConfigError(f"--set expects dotted.key=value, got {text!r}")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except (yaml.YAMLError, ValueError):  # ValueError: an integer of over 4300 digits
        value = raw
    return key, value


def read_yaml(path: str | Path) -> dict:
    path = Path(path)
    try:
        text = path.read_text("utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read config ({exc})") from None
    try:
        data = yaml.safe_load(text)
    except (yaml.YAMLError, ValueError) as exc:  # ValueError: an integer of over 4300 digits
        raise ConfigError(f"{path}: invalid YAML ({str(exc).splitlines()[0]})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the config must be a mapping of keys, got {type(data).__name__}")
    return data


def load_config(
    cls: type[T],
    path: str | Path | None = None,
    overrides: list[str] | None = None,
    base: dict | None = None,
) -> T:
    """Build ``cls`` from defaults, then ``base``, then the YAML at ``path``, then ``--set`` overrides."""
    data: dict = {}
    if base:
        data = _deep_merge(data, base)
    if path is not None:
        try:
            data = _deep_merge(data, read_yaml(path))
        except ConfigError:
            raise
    keys = []
    for text in overrides or []:
        key, value = parse_override(text)
        _set_dotted(data, key, value)
        keys.append((key, text))
    try:
        return _from_dict(cls, data)
    except ConfigError as exc:
        culprit = _override_for(str(exc), keys)
        if culprit is not None:  # the bad value came from the command line, not the file
            raise ConfigError(f"--set {culprit!r}: {exc}" if "\n" in culprit else f"--set {culprit}: {exc}") from None
        if path is not None:
            raise ConfigError(f"{path}: {exc}") from None
        raise


_ERROR_KEY = re.compile(r"config key '([^']+)'")


def _override_for(message: str, keys: list[tuple[str, str]]) -> str | None:
    """The ``--set`` text that set the key an error names (the last one wins), if any."""
    m = _ERROR_KEY.search(message)
    if m is None:
        return None
    named = m.group(1)
    for key, text in reversed(keys):
        if named == key or named.startswith((key + ".", key + "[")) or key.startswith(named + "."):
            return text
    return None


def _deep_merge(a: dict, b: dict) -> dict:
    out = dict(a)
    for key, value in b.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def save_config(cfg: Any, path: str | Path) -> None:
    """Write the resolved config as YAML (atomically)."""
    atomic_write_text(path, yaml.safe_dump(to_dict(cfg), sort_keys=False))
