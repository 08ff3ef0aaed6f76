"""Checkpoints as safetensors with JSON metadata: nothing is ever unpickled.

A model file is one ``.safetensors`` whose header metadata holds:
- ``udistill``: JSON with format version, model config, heads, classes, label scheme,
  normalisation, training config, data fingerprint, and anything else the caller adds;
- ``sha256``: a digest of all tensor bytes, verified on load (detects tampering and
  torn copies that still parse).

Training state (optimiser, scheduler, RNG, epoch) uses the same container through
:func:`save_state` / :func:`load_state`: nested dicts/lists are split into tensors
(stored as safetensors) and a JSON skeleton that points at them.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch

from ..config import ModelConfig, _from_dict, to_dict
from ..errors import CheckpointError, ConfigError
from ..io import atomic_path
from ..layout import MODEL_FILE, RunLayout
from .build import IMAGENET_MEAN, IMAGENET_STD, SegmentationModel

FORMAT = "udistill-checkpoint/1"


def _digest(tensors: dict[str, torch.Tensor]) -> str:
    h = hashlib.sha256()
    for key in sorted(tensors):
        t = tensors[key].detach().cpu().contiguous()
        h.update(key.encode())
        h.update(str(t.dtype).encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def save_tensors(path: str | Path, tensors: dict[str, torch.Tensor], meta: dict) -> None:
    """Write tensors + JSON metadata atomically, with a content digest."""
    from safetensors.torch import save_file

    tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    header = {"udistill": json.dumps(meta, default=str), "sha256": _digest(tensors)}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=header)


def _looks_like_safetensors(path: Path) -> bool:
    """A safetensors file starts with a little-endian u64 header length N, then N bytes of JSON."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as fh:
            head = fh.read(9)
    except OSError:
        return False
    if len(head) < 9:
        return False
    n = int.from_bytes(head[:8], "little")
    return 8 + n <= size and head[8:9] == b"{"


def load_tensors(path: str | Path, what: str = "checkpoint") -> tuple[dict[str, torch.Tensor], dict]:
    """Read and verify a file written by :func:`save_tensors`."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file, safe_open

    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: {what} not found")
    if path.is_dir():
        raise CheckpointError(f"{path}: expected a {what} file (.safetensors), found a folder")
    if not _looks_like_safetensors(path):
        with open(path, "rb") as fh:
            head = fh.read(2)
        if head[:1] == b"\x80" or head == b"PK":  # pickle protocol 2+ / torch.save zip
            raise CheckpointError(
                f"{path}: looks like a pickle/torch.save file; udistill only loads safetensors checkpoints (refusing to unpickle)"
            )
    try:
        with safe_open(str(path), framework="pt") as fh:
            header = fh.metadata() or {}
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{path}: not a valid safetensors {what} ({exc})") from None
    if "udistill" not in header or "sha256" not in header:
        raise CheckpointError(f"{path}: safetensors file without udistill metadata")
    try:
        meta = json.loads(header["udistill"])
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{path}: corrupt metadata ({exc})") from None
    if _digest(tensors) != header["sha256"]:
        raise CheckpointError(f"{path}: checksum mismatch: the {what} was modified or is corrupt")
    return tensors, meta


def model_metadata(model: SegmentationModel, **extra: Any) -> dict:
    meta = {
        "format": FORMAT,
        "model": to_dict(model.cfg),
        "heads": model.heads,
        "num_classes": model.num_classes,
        "normalisation": {"mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD), "input": "RGB in [0, 1]"},
    }
    meta.update(extra)
    return meta


def save_model(model: SegmentationModel, path: str | Path, **extra: Any) -> None:
    """Save weights + metadata. ``extra`` typically: classes, label_scheme, train, data_fingerprint."""
    model = getattr(model, "module", model)
    save_tensors(path, model.state_dict(), model_metadata(model, **extra))


def read_metadata(path: str | Path) -> dict:
    """Metadata only (no tensor digest check): for quick inspection."""
    from safetensors.torch import safe_open

    try:
        with safe_open(str(path), framework="pt") as fh:
            return json.loads((fh.metadata() or {})["udistill"])
    except Exception as exc:  # noqa: BLE001 - any failure is the same user error
        raise CheckpointError(f"{path}: cannot read checkpoint metadata ({exc})") from None


def load_model(
    path: str | Path,
    expect: ModelConfig | None = None,
    num_classes: int | None = None,
    heads: str | None = None,
    map_location: str | torch.device = "cpu",
) -> tuple[SegmentationModel, dict]:
    """Rebuild a saved model. ``expect``/``num_classes``/``heads`` check that it fits the request.

    Returns ``(model in eval mode, metadata)``.
    """
    tensors, meta = load_tensors(path)
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{path}: unknown checkpoint format {meta.get('format')!r}")
    try:
        cfg = _from_dict(ModelConfig, meta["model"])
    except (ConfigError, KeyError) as exc:
        raise CheckpointError(f"{path}: invalid model metadata ({exc})") from None
    try:
        saved_classes, saved_heads = int(meta["num_classes"]), str(meta["heads"])
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: invalid model metadata ({type(exc).__name__}: {exc})") from None
    if num_classes is not None and num_classes != saved_classes:
        raise CheckpointError(f"{path}: checkpoint has {saved_classes} classes, the config needs {num_classes}")
    if heads is not None and heads != saved_heads:
        raise CheckpointError(f"{path}: checkpoint has heads '{saved_heads}', expected '{heads}'")
    if expect is not None:
        for key in ("arch", "encoder", "decoder_channels", "head_channels"):
            if getattr(expect, key) != getattr(cfg, key):
                raise CheckpointError(
                    f"{path}: checkpoint {key}={getattr(cfg, key)!r} does not fit the config's {key}={getattr(expect, key)!r}"
                )
    try:
        # weights come from the file: never fetch pretrained ones (offline loading)
        model = SegmentationModel(cfg, saved_classes, saved_heads, pretrained=False)
    except Exception as exc:  # noqa: BLE001 - unknown arch/encoder/heads: the file's problem, not a bug
        first = (str(exc).splitlines() or [type(exc).__name__])[0][:300]
        raise CheckpointError(
            f"{path}: cannot build the recorded model (arch={cfg.arch!r}, encoder={cfg.encoder!r}, heads={saved_heads!r}): {first}"
        ) from None
    try:
        model.load_state_dict(tensors, strict=True)
    except RuntimeError as exc:
        first = " ".join(str(exc).split())[:300]  # one line, with the first mismatching key
        raise CheckpointError(f"{path}: weights do not fit the recorded architecture ({first})") from None
    return model.to(map_location).eval(), meta


# --- training state: nested python structures with tensors -------------------------------


def _split(obj: Any, tensors: dict[str, torch.Tensor], prefix: str) -> Any:
    if isinstance(obj, torch.Tensor):
        key = prefix or "t"
        tensors[key] = obj
        return {"__tensor__": key}
    if isinstance(obj, dict):
        return {
            "__dict__": [
                [_split(k, tensors, f"{prefix}.k{i}"), _split(v, tensors, f"{prefix}.{i}")]
                for i, (k, v) in enumerate(obj.items())
            ]
        }
    if isinstance(obj, (list, tuple)):
        return {
            "__list__" if isinstance(obj, list) else "__tuple__": [
                _split(v, tensors, f"{prefix}.{i}") for i, v in enumerate(obj)
            ]
        }
    if hasattr(obj, "tolist") and not isinstance(obj, (int, float, bool, str)):
        return {"__array__": obj.tolist(), "dtype": str(obj.dtype)}
    if obj is None or isinstance(obj, (int, float, bool, str)):
        return obj
    raise TypeError(f"cannot store {type(obj).__name__} in a checkpoint")


def _join(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, dict):
        if "__tensor__" in obj:
            return tensors[obj["__tensor__"]]
        if "__dict__" in obj:
            return {_join(k, tensors): _join(v, tensors) for k, v in obj["__dict__"]}
        if "__list__" in obj:
            return [_join(v, tensors) for v in obj["__list__"]]
        if "__tuple__" in obj:
            return tuple(_join(v, tensors) for v in obj["__tuple__"])
        if "__array__" in obj:
            import numpy as np

            return np.asarray(obj["__array__"], dtype=obj["dtype"])
    return obj


def save_state(path: str | Path, state: dict) -> None:
    """Save a nested training state (model/optimiser/scheduler state dicts, RNG, epoch...)."""
    tensors: dict[str, torch.Tensor] = {}
    skeleton = _split(state, tensors, "s")
    save_tensors(path, tensors, {"format": "udistill-state/1", "state": skeleton})


def load_state(path: str | Path) -> dict:
    tensors, meta = load_tensors(path, what="training state")
    if meta.get("format") != "udistill-state/1":
        raise CheckpointError(f"{path}: not a udistill training state")
    return _join(meta["state"], tensors)


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint file, a student folder (``<dir>/model.safetensors``) or a run folder
    (``<run>/student/model.safetensors``) -> the checkpoint file."""
    path = Path(path)
    if not path.is_dir():
        return path
    for candidate in (path / MODEL_FILE, RunLayout(path).student() / MODEL_FILE):
        if candidate.is_file():
            return candidate
    raise CheckpointError(
        f"{path}: folder holds no student checkpoint ({MODEL_FILE} or student/{MODEL_FILE}); "
        "pass the checkpoint file, its folder or the run folder"
    )


def weights_digest(path: str | Path) -> str | None:
    """The weights digest recorded in a checkpoint's header (16 hex digits); None if absent."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        from safetensors.torch import safe_open

        with safe_open(str(path), framework="pt") as fh:
            sha = (fh.metadata() or {}).get("sha256")
    except Exception:  # noqa: BLE001 - a broken file is reported by whoever loads it
        return None
    return sha[:16] if isinstance(sha, str) else None
