"""Files never lie: an unwritable or full output folder is one clear error with nothing
half-written left behind, and nothing udistill reads is ever unpickled."""

from __future__ import annotations

import ast
import errno
import io
import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

import udistill
from udistill import io as uio
from udistill.cli import main
from udistill.config import ModelConfig
from udistill.errors import CheckpointError, DataError, UdistillError
from udistill.models import build_model, load_model, load_state, read_metadata, save_model, save_state
from udistill.pipeline.targets import CachedTargets

SRC = Path(udistill.__file__).resolve().parent
TINY = ModelConfig(encoder="tu-mobilenetv3_small_100", decoder_channels=16, head_channels=16)


@pytest.fixture(scope="module")
def tiny_model():
    torch.manual_seed(0)
    return build_model(TINY, 11, "prediction")


def leftovers(folder: Path) -> list[Path]:
    """Every file under ``folder`` (temporary files of atomic writes included)."""
    return sorted(p for p in Path(folder).rglob("*") if p.is_file() or p.is_symlink())


def one_error_line(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, f"expected one line on stderr, got: {err!r}"
    assert lines[0].startswith("udistill: error: "), lines[0]
    assert "Traceback" not in err
    return lines[0]


# --- an output folder that cannot be written --------------------------------------------------


@pytest.fixture
def blocked(tmp_path) -> Path:
    """A path whose parent is a regular file: unwritable even for root (chmod does not stop root)."""
    (tmp_path / "file.txt").write_text("a regular file, not a folder\n")
    return tmp_path / "file.txt" / "sub"


def test_atomic_write_json_into_unwritable_folder(blocked, tmp_path):
    target = blocked / "results.json"
    with pytest.raises(UdistillError, match=rf"^{target}: cannot write here \(Not a directory\)"):
        uio.atomic_write_json(target, {"a": 1})
    assert [p.name for p in leftovers(tmp_path)] == ["file.txt"]


def test_save_model_into_unwritable_folder(blocked, tmp_path, tiny_model):
    target = blocked / "model.safetensors"
    with pytest.raises(UdistillError, match=rf"^{target}: cannot write here"):
        save_model(tiny_model, target)
    with pytest.raises(UdistillError, match=rf"^{blocked / 'last.state.safetensors'}: cannot write here"):
        save_state(blocked / "last.state.safetensors", {"epoch": 1, "w": torch.zeros(2)})
    assert [p.name for p in leftovers(tmp_path)] == ["file.txt"]


@pytest.mark.skipif(os.geteuid() == 0, reason="chmod does not stop root")
def test_atomic_write_into_read_only_folder(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        with pytest.raises(UdistillError, match=rf"^{ro / 'x.json'}: cannot write here \(Permission denied\)"):
            uio.atomic_write_json(ro / "x.json", {})
        assert list(ro.iterdir()) == []
    finally:
        ro.chmod(0o700)


def test_cli_data_preview_into_unwritable_folder(blocked, tmp_path, capsys):
    out = blocked / "preview.png"
    code = main(["data", "preview", "--dataset", "synthetic", "--count", "1", "--size", "32", "48", "--out", str(out)])
    line = one_error_line(capsys.readouterr().err)
    assert code == 2
    assert str(out) in line and "cannot write here" in line
    assert [p.name for p in leftovers(tmp_path)] == ["file.txt"]


def test_cli_train_teacher_with_out_dir_under_a_file(blocked, tmp_path, capsys):
    """The run folder itself cannot be created: one line naming it, no traceback, nothing written."""
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        "data: {dataset: synthetic, size: [32, 48], train_options: {length: 8}, test_options: {length: 2}}\n"
        "model: {encoder: tu-mobilenetv3_small_100, decoder_channels: 16, head_channels: 16}\n"
        "train: {epochs: 1, batch_size: 4, progress: false}\n"
        f"out_dir: {blocked}\n"
    )
    code = main(["train-teacher", "--config", str(cfg), "--member", "0", "--device", "cpu"])
    line = one_error_line(capsys.readouterr().err)
    assert code == 2
    assert str(blocked) in line
    assert sorted(p.name for p in leftovers(tmp_path)) == ["c.yaml", "file.txt"]


# --- a full disk -------------------------------------------------------------------------------


def _enospc(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_disk_full_at_replace_leaves_neither_temp_nor_target(tmp_path, monkeypatch):
    monkeypatch.setattr(uio.os, "replace", _enospc)
    target = tmp_path / "out" / "results.json"
    with pytest.raises(UdistillError, match=rf"^{target}: write failed \(No space left on device\)"):
        uio.atomic_write_json(target, {"a": list(range(100))})
    assert leftovers(tmp_path) == []


def test_disk_full_keeps_the_previous_version(tmp_path, monkeypatch):
    target = tmp_path / "results.json"
    uio.atomic_write_json(target, {"version": 1})
    monkeypatch.setattr(uio.os, "replace", _enospc)
    with pytest.raises(UdistillError, match="No space left on device"):
        uio.atomic_write_json(target, {"version": 2})
    assert json.loads(target.read_text()) == {"version": 1}
    assert leftovers(tmp_path) == [target]


def test_disk_full_in_the_middle_of_a_checkpoint(tmp_path, monkeypatch, tiny_model):
    """The writer fills the disk half way: the old checkpoint survives, verified, and no temp file stays."""
    import safetensors.torch

    target = tmp_path / "model.safetensors"
    save_model(tiny_model, target, note="v1")
    before = target.read_bytes()
    real = safetensors.torch.save_file

    def half_then_full(tensors, filename, metadata=None):
        real(tensors, filename, metadata=metadata)
        data = Path(filename).read_bytes()
        Path(filename).write_bytes(data[: len(data) // 2])
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), filename)

    monkeypatch.setattr(safetensors.torch, "save_file", half_then_full)
    with pytest.raises(UdistillError, match=rf"^{target}: write failed \(No space left on device\)"):
        save_model(tiny_model, target, note="v2")
    assert target.read_bytes() == before
    assert load_model(target)[1]["note"] == "v1"
    assert leftovers(tmp_path) == [target]


def test_fsync_failure_is_a_write_failure(tmp_path, monkeypatch):
    def eio(fd):
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    monkeypatch.setattr(uio.os, "fsync", eio)
    target = tmp_path / "x.json"
    with pytest.raises(UdistillError, match=rf"^{target}: write failed \(Input/output error\)"):
        uio.atomic_write_json(target, {})
    assert leftovers(tmp_path) == []


def test_an_exception_inside_the_writer_removes_the_temp_file(tmp_path):
    target = tmp_path / "x.bin"
    with pytest.raises(KeyboardInterrupt), uio.atomic_path(target) as tmp:
        tmp.write_bytes(b"half")
        raise KeyboardInterrupt
    assert leftovers(tmp_path) == []


# --- nothing is ever unpickled ------------------------------------------------------------------


class _Bomb:
    """Unpickling this creates ``marker``: proof that somebody unpickled it."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def _pickles(marker: Path) -> dict[str, bytes]:
    bomb = _Bomb(marker)
    zipped, legacy = io.BytesIO(), io.BytesIO()
    torch.save({"w": torch.zeros(2), "x": bomb}, zipped)
    torch.save({"w": torch.zeros(2), "x": bomb}, legacy, _use_new_zipfile_serialization=False)
    return {
        "torch.save": zipped.getvalue(),
        "torch.save-legacy": legacy.getvalue(),
        "pickle-protocol-0": pickle.dumps(bomb, protocol=0),
        "pickle-protocol-2": pickle.dumps(bomb, protocol=2),
        "pickle-protocol-5": pickle.dumps(bomb, protocol=5),
    }


@pytest.mark.parametrize(
    "kind", ["torch.save", "torch.save-legacy", "pickle-protocol-0", "pickle-protocol-2", "pickle-protocol-5"]
)
def test_checkpoint_loaders_refuse_pickles(tmp_path, kind):
    marker = tmp_path / "UNPICKLED"
    path = tmp_path / "model.safetensors"
    path.write_bytes(_pickles(marker)[kind])
    for loader in (load_model, load_state, read_metadata):
        with pytest.raises(CheckpointError, match=rf"^{path}: ") as info:
            loader(path)
        assert "\n" not in str(info.value)
    assert not marker.exists(), "a pickle was unpickled"


def test_teacher_cache_refuses_pickles(tmp_path):
    marker = tmp_path / "UNPICKLED"
    blob = _pickles(marker)["pickle-protocol-2"]
    (tmp_path / "meta.json").write_bytes(blob)
    for name in ("mean.f16", "std.f16", "crc.u32", "done.u8"):
        (tmp_path / name).write_bytes(blob)
    with pytest.raises(UdistillError, match=rf"{tmp_path / 'meta.json'}: teacher cache metadata is not valid JSON"):
        CachedTargets(tmp_path)
    assert not marker.exists()


def test_camvid_depth_refuses_pickled_arrays(tmp_path):
    from PIL import Image

    from udistill.data import build_dataset

    marker = tmp_path / "UNPICKLED"
    for sub in ("train", "trainannot", "traindepth"):
        (tmp_path / sub).mkdir()
    Image.fromarray(np.zeros((4, 6, 3), np.uint8)).save(tmp_path / "train" / "0006R0_1.png")
    Image.fromarray(np.zeros((4, 6), np.uint8)).save(tmp_path / "trainannot" / "0006R0_1.png")
    np.save(tmp_path / "traindepth" / "0006R0_1.npy", np.array([_Bomb(marker)], dtype=object), allow_pickle=True)
    ds = build_dataset("camvid", "train", root=tmp_path)
    with pytest.raises(DataError, match=r"0006R0_1.npy: depth file is corrupt"):
        ds[0]
    assert not marker.exists()


# Calls that unpickle (or may): none of them may appear in udistill's source.
_FORBIDDEN_CALLS = {
    ("pickle", "load"),
    ("pickle", "loads"),
    ("pickle", "Unpickler"),
    ("cPickle", "load"),
    ("cPickle", "loads"),
    ("torch", "load"),
    ("jit", "load"),
    ("dill", "load"),
    ("dill", "loads"),
    ("joblib", "load"),
    ("cloudpickle", "load"),
    ("cloudpickle", "loads"),
    ("marshal", "load"),
    ("marshal", "loads"),
    ("shelve", "open"),
    ("pd", "read_pickle"),
    ("pandas", "read_pickle"),
}
_FORBIDDEN_MODULES = {"pickle", "cPickle", "_pickle", "dill", "cloudpickle", "joblib", "shelve", "marshal"}


def _dotted(node: ast.AST) -> tuple[str, ...]:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
    return tuple(reversed(parts))


def test_source_never_unpickles():
    problems = []
    files = sorted(SRC.rglob("*.py"))
    assert len(files) > 20
    for path in files:
        tree = ast.parse(path.read_text("utf-8"), filename=str(path))
        where = lambda n, path=path: f"{path.relative_to(SRC.parent)}:{n.lineno}"  # noqa: E731
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                problems += [
                    f"{where(node)}: import {a.name}" for a in node.names if a.name.split(".")[0] in _FORBIDDEN_MODULES
                ]
            elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in _FORBIDDEN_MODULES:
                problems.append(f"{where(node)}: from {node.module} import ...")
            elif isinstance(node, ast.Call):
                name = _dotted(node.func)
                if len(name) >= 2 and name[-2:] in _FORBIDDEN_CALLS:
                    problems.append(f"{where(node)}: {'.'.join(name)}(...)")
                if name and name[-1] == "load" and len(name) >= 2 and name[-2] in ("np", "numpy"):
                    kw = {k.arg: k.value for k in node.keywords}
                    ok = isinstance(kw.get("allow_pickle"), ast.Constant) and kw["allow_pickle"].value is False
                    if not ok:
                        problems.append(f"{where(node)}: {'.'.join(name)}(...) without allow_pickle=False")
                for k in node.keywords:
                    if k.arg == "weights_only" and isinstance(k.value, ast.Constant) and k.value.value is False:
                        problems.append(f"{where(node)}: weights_only=False")
                    if k.arg == "allow_pickle" and isinstance(k.value, ast.Constant) and k.value.value is True:
                        problems.append(f"{where(node)}: allow_pickle=True")
    assert not problems, "udistill must never unpickle:\n" + "\n".join(problems)


def test_stale_temp_files_of_a_killed_writer_are_removed(tmp_path):
    """A SIGKILL between mkstemp and os.replace leaves ``.NAME.XXXX.tmp``; resuming removes it."""
    stale = tmp_path / ".model.safetensors.k3j2x9.tmp"
    stale.write_bytes(b"half a checkpoint")
    keep = [tmp_path / "model.safetensors", tmp_path / "notes.tmp", tmp_path / ".hidden"]
    for p in keep:
        p.write_bytes(b"x")
    assert uio.remove_stale_temp_files(tmp_path) == [stale]
    assert leftovers(tmp_path) == sorted(keep)
    assert uio.remove_stale_temp_files(tmp_path / "absent") == []
