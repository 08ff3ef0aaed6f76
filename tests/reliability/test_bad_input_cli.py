"""The bad-input corpus through the real command line (in process, ``udistill.cli.main``):
every case is exit code 2, exactly one line on stderr that starts with ``udistill: error:``
and names the file or the config key, no traceback, and no partial output."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_checks import TINY_RUN_CONFIG, assert_error, cli
from PIL import Image

from toy import png_header
from udistill.config import ModelConfig
from udistill.data.labels import CAMVID11
from udistill.models import build_model, save_model
from udistill.models.checkpoint import model_metadata, save_tensors

H, W = 12, 16
STEMS = ("0006R0_f00930", "0006R0_f00960")
TINY = dict(encoder="tu-mobilenetv3_small_100", decoder_channels=16, head_channels=16, dropout=0.1)
CONFIG = TINY_RUN_CONFIG.replace("{name}", "bad-input")


def files_under(folder: Path) -> list[Path]:
    return sorted(p for p in Path(folder).rglob("*") if p.is_file())


def no_tmp_files(folder: Path) -> None:
    assert not [p for p in Path(folder).rglob("*") if p.name.endswith(".tmp")]


# --- a tiny CamVid folder and its damage ---------------------------------------------------------


def camvid(root: Path, list_file: bool = False) -> Path:
    """Two valid image/label pairs in the SegNet layout (optionally with train.txt)."""
    rng = np.random.default_rng(0)
    (root / "train").mkdir(parents=True)
    (root / "trainannot").mkdir()
    for stem in STEMS:
        Image.fromarray(rng.integers(0, 256, (H, W, 3), dtype=np.uint8)).save(root / "train" / f"{stem}.png")
        Image.fromarray(rng.integers(0, 12, (H, W), dtype=np.uint8)).save(root / "trainannot" / f"{stem}.png")
    if list_file:
        (root / "train.txt").write_text(
            "".join(f"/SegNet/CamVid/train/{s}.png /SegNet/CamVid/trainannot/{s}.png\n" for s in STEMS)
        )
    return root


def png_bytes(array: np.ndarray, **kw) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array, **kw).save(buf, format="PNG")
    return buf.getvalue()


def _truncate(p: Path):
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])


def _corrupt(p: Path):
    data = p.read_bytes()
    p.write_bytes(data[:40] + bytes(np.random.default_rng(1).integers(0, 256, len(data) - 40, dtype=np.uint8)))


def _symlink_loop(p: Path):
    p.unlink()
    p.symlink_to(p.name)  # points at itself: ELOOP


def _label_values(p: Path):
    label = np.zeros((H, W), np.uint8)
    label[3, 4] = 40
    p.write_bytes(png_bytes(label))


# (case, file: "image"/"label", damage, words the error line must hold, needs train.txt)
DATA_CASES = [
    ("truncated image", "image", _truncate, "image is corrupt or not an image", False),
    ("corrupt image", "image", _corrupt, "image is corrupt or not an image", False),
    ("zero-byte image", "image", lambda p: p.write_bytes(b""), "image is an empty file", False),
    (
        "text file named .png",
        "image",
        lambda p: p.write_text("this is not a PNG\n"),
        "image is corrupt or not an image",
        False,
    ),
    (
        "html page named .png",
        "image",
        lambda p: p.write_text("<html><body>404</body></html>"),
        "image is corrupt or not an image",
        False,
    ),
    (
        "decompression bomb header 20000x20000",
        "image",
        lambda p: p.write_bytes(png_header(20000, 20000)),
        "decompression bomb",
        False,
    ),
    ("image symlink loop (listed)", "image", _symlink_loop, "not found", True),
    ("truncated label", "label", _truncate, "label is corrupt or not an image", False),
    ("zero-byte label", "label", lambda p: p.write_bytes(b""), "label is an empty file", False),
    (
        "label of the wrong size",
        "label",
        lambda p: p.write_bytes(png_bytes(np.zeros((H + 3, W), np.uint8))),
        f"label is {W}x{H + 3} pixels",
        False,
    ),
    ("label value out of range", "label", _label_values, "label values [40] are not valid", False),
    (
        "16-bit label value 300",
        "label",
        lambda p: p.write_bytes(png_bytes(np.full((H, W), 300, np.uint16))),
        "label values outside 0..255",
        False,
    ),
    (
        "RGB label",
        "label",
        lambda p: p.write_bytes(png_bytes(np.zeros((H, W, 3), np.uint8))),
        "single-channel PNG, got mode RGB",
        False,
    ),
    (
        "RGBA label",
        "label",
        lambda p: p.write_bytes(png_bytes(np.zeros((H, W, 4), np.uint8))),
        "single-channel PNG, got mode RGBA",
        False,
    ),
    ("label symlink loop", "label", _symlink_loop, "has no label", False),
]


@pytest.mark.parametrize("case,which,damage,words,list_file", DATA_CASES, ids=[c[0] for c in DATA_CASES])
def test_data_check_names_the_bad_file(tmp_path, capsys, case, which, damage, words, list_file):
    root = camvid(tmp_path / "camvid", list_file=list_file)
    bad = root / ("train" if which == "image" else "trainannot") / f"{STEMS[1]}.png"
    damage(bad)
    before = files_under(tmp_path)
    code, out, err = cli(capsys, "data", "check", "--dataset", "camvid", "--root", root)
    line = assert_error(code, err, bad.name, words)
    expected = bad if "no label" not in words else root / "train" / bad.name  # "image X has no label (label Y ...)"
    assert str(expected) in line
    assert "1 of 2 items OK" in out  # the summary on stdout still lists the good item
    assert files_under(tmp_path) == before


@pytest.mark.parametrize("mode", ["L", "RGBA", "P"])
def test_grayscale_rgba_and_palette_images_are_accepted(tmp_path, capsys, mode):
    root = camvid(tmp_path / "camvid")
    arr = np.random.default_rng(3).integers(0, 256, (H, W, 4) if mode == "RGBA" else (H, W), dtype=np.uint8)
    img = Image.fromarray(arr) if mode != "P" else Image.fromarray(arr).convert("P")
    img.save(root / "train" / f"{STEMS[0]}.png")
    code, out, err = cli(capsys, "data", "check", "--dataset", "camvid", "--root", root)
    assert (code, err) == (0, "")
    assert "2 of 2 items OK" in out


def test_data_check_lists_every_problem_and_says_how_many(tmp_path, capsys):
    root = camvid(tmp_path / "camvid")
    for stem in STEMS:
        (root / "train" / f"{stem}.png").write_bytes(b"")
    code, out, err = cli(capsys, "data", "check", "--dataset", "camvid", "--root", root)
    assert_error(code, err, f"{STEMS[0]}.png: image is an empty file", "and 1 more problem(s)")
    assert out.count("image is an empty file") == 2


def test_data_check_missing_root(tmp_path, capsys):
    code, _, err = cli(capsys, "data", "check", "--dataset", "camvid", "--root", tmp_path / "absent")
    assert_error(code, err, tmp_path / "absent", "root folder not found")


def test_data_check_root_with_symlink_loop_as_split_folder(tmp_path, capsys):
    root = tmp_path / "camvid"
    root.mkdir()
    (root / "train").symlink_to("train")
    (root / "trainannot").symlink_to("trainannot")
    code, _, err = cli(capsys, "data", "check", "--dataset", "camvid", "--root", root)
    assert_error(code, err, root / "train", "split folder not found")


def test_data_preview_of_a_broken_dataset_writes_nothing(tmp_path, capsys):
    root = camvid(tmp_path / "camvid")
    _truncate(root / "train" / f"{STEMS[0]}.png")
    out = tmp_path / "preview" / "grid.png"
    code, stdout, err = cli(
        capsys, "data", "preview", "--dataset", "camvid", "--root", root, "--count", "2", "--out", out
    )
    assert_error(code, err, root / "train" / f"{STEMS[0]}.png", "corrupt")
    assert stdout == ""
    assert not out.exists()
    assert not out.parent.exists() or list(out.parent.iterdir()) == []


# --- configuration files ---------------------------------------------------------------------------


YAML_CASES = [
    ("unknown key", "optimiser: sgd\n", "'optimiser'"),
    ("unknown nested key", "model: {encodr: resnet18}\n", "'model.encodr'"),
    ("unknown deeper key", "train: {sgd: {momentum: 0.9}}\n", "'train.sgd'"),
    ("wrong type: string for int", "train: {epochs: three}\n", "'train.epochs'"),
    ("wrong type: float for int", "train: {epochs: 2.5}\n", "'train.epochs'"),
    ("wrong type: bool for float", "train: {lr: true}\n", "'train.lr'"),
    ("wrong type: scalar for section", "train: 5\n", "'train'"),
    ("wrong type: scalar for list", "data: {size: 32}\n", "'data.size'"),
    ("wrong type: list item", "data: {size: [32, big]}\n", "'data.size[1]'"),
    ("wrong type: list for string", "name: [a, b]\n", "'name'"),
    ("non-string key", "1: 2\n", "'1'"),
    ("bad YAML syntax", "train: {epochs: 3\n", "invalid YAML"),
    ("tab indentation", "train:\n\tepochs: 3\n", "invalid YAML"),
    ("not a mapping: list", "- a\n- b\n", "must be a mapping"),
    ("not a mapping: scalar", "just a string\n", "must be a mapping"),
]


@pytest.mark.parametrize("case,text,key", YAML_CASES, ids=[c[0] for c in YAML_CASES])
def test_train_teacher_with_a_bad_config(tmp_path, capsys, case, text, key):
    out = tmp_path / "run"
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(text + f"out_dir: {out}\n" if "mapping" not in key else text)
    code, _, err = cli(capsys, "train-teacher", "--config", cfg, "--member", "0", "--set", f"out_dir={out}")
    assert_error(code, err, cfg, key)
    assert not out.exists()
    assert files_under(tmp_path) == [cfg]


def test_config_file_not_found_or_not_text(tmp_path, capsys):
    missing = tmp_path / "missing.yaml"
    code, _, err = cli(capsys, "train-teacher", "--config", missing, "--member", "0")
    assert_error(code, err, missing, "not found")
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"\xff\xfe\x00garbage\x80\x81")
    code, _, err = cli(capsys, "train-teacher", "--config", binary, "--member", "0")
    assert_error(code, err, binary, "cannot read config")
    folder = tmp_path / "folder.yaml"
    folder.mkdir()
    code, _, err = cli(capsys, "train-teacher", "--config", folder, "--member", "0")
    assert_error(code, err, folder)


SET_CASES = [
    ("train.epochz=3", "'train.epochz'"),
    ("train.epochs=three", "'train.epochs'"),
    ("data.size=[32]x", "'data.size'"),
    ("train.lr=fast", "'train.lr'"),
    ("no-equals-sign", "'no-equals-sign'"),
    ("=3", "'=3'"),
    ("train.epochs.deeper=1", "'train.epochs'"),
]


@pytest.mark.parametrize("override,key", SET_CASES, ids=[c[0] for c in SET_CASES])
def test_bad_set_override(tmp_path, capsys, override, key):
    out = tmp_path / "run"
    cfg = tmp_path / "ok.yaml"
    cfg.write_text(CONFIG.format(out=out))
    code, _, err = cli(capsys, "train-teacher", "--config", cfg, "--member", "0", "--set", override)
    assert_error(code, err, key)
    assert not out.exists()


def test_non_finite_loss_stops_training_cleanly(tmp_path, capsys):
    """--set train.lr=1e30 blows the weights up at the second step: one line, no model file."""
    out = tmp_path / "run"
    cfg = tmp_path / "ok.yaml"
    cfg.write_text(CONFIG.format(out=out))
    code, _, err = cli(capsys, "train-teacher", "--config", cfg, "--member", "0", "--set", "train.lr=1e30")
    assert_error(code, err, "member 0: loss became", "nothing was saved", "Try a lower learning rate")
    member = out / "members" / "member-0"
    assert not (member / "model.safetensors").exists()
    assert not (member / "last.state.safetensors").exists()  # no epoch finished: nothing to resume
    no_tmp_files(out)


# --- checkpoints --------------------------------------------------------------------------------------


def _save(model, path: Path, **extra) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    save_model(model, path, classes=list(CAMVID11.classes)[: model.num_classes], label_scheme="camvid11", **extra)
    return path


@pytest.fixture(scope="module")
def models():
    torch.manual_seed(0)
    good = build_model(ModelConfig(**TINY), 11, "prediction")
    return {
        "good": good,
        "student": build_model(ModelConfig(**TINY), 11, "prediction+uncertainty"),
        "decoder": build_model(ModelConfig(**{**TINY, "decoder_channels": 24}), 11, "prediction"),
        "encoder": build_model(ModelConfig(**{**TINY, "encoder": "tu-mobilenetv3_small_050"}), 11, "prediction"),
        "classes": build_model(ModelConfig(**TINY), 5, "prediction"),
    }


def _flip_byte(path: Path):
    data = bytearray(path.read_bytes())
    data[-100] ^= 0xFF  # inside the tensor data: the header still parses
    path.write_bytes(bytes(data))


def _torch_save(path: Path, models):
    torch.save(models["good"].state_dict(), path)  # a .pt renamed .safetensors (zip pickle)


def _torch_save_legacy(path: Path, models):
    torch.save(models["good"].state_dict(), path, _use_new_zipfile_serialization=False)


def _wrong_weights(path: Path, models):
    """Metadata of the tiny model, tensors of the wider decoder: consistent digest, wrong shapes."""
    save_tensors(path, models["decoder"].state_dict(), model_metadata(models["good"], classes=list(CAMVID11.classes)))


def _unknown_arch(path: Path, models):
    meta = model_metadata(models["good"], classes=list(CAMVID11.classes))
    meta["model"]["arch"] = "unet"
    save_tensors(path, models["good"].state_dict(), meta)


def _unknown_encoder(path: Path, models):
    meta = model_metadata(models["good"], classes=list(CAMVID11.classes))
    meta["model"]["encoder"] = "tu-no_such_encoder"
    save_tensors(path, models["good"].state_dict(), meta)


# (case, how member 0 is written, words the error line must hold)
CKPT_CASES = [
    ("other decoder width", lambda p, m: _save(m["decoder"], p), "decoder_channels=24"),
    ("other encoder", lambda p, m: _save(m["encoder"], p), "encoder='tu-mobilenetv3_small_050'"),
    ("other class count", lambda p, m: _save(m["classes"], p), "5 classes"),
    ("student where a member belongs", lambda p, m: _save(m["student"], p), "heads"),
    ("tampered (one byte flipped)", lambda p, m: (_save(m["good"], p), _flip_byte(p)), "checksum mismatch"),
    ("truncated", lambda p, m: (_save(m["good"], p), _truncate(p)), "not a valid safetensors"),
    ("zero bytes", lambda p, m: p.write_bytes(b""), "not a valid safetensors"),
    ("torch.save pickle renamed .safetensors", _torch_save, "refusing to unpickle"),
    ("legacy torch.save pickle", _torch_save_legacy, "refusing to unpickle"),
    ("weights that do not fit the metadata", _wrong_weights, "weights do not fit"),
    ("metadata with an unknown arch", _unknown_arch, "unet"),
    ("metadata with an unknown encoder", _unknown_encoder, "tu-no_such_encoder"),
    ("a folder named model.safetensors", lambda p, m: p.mkdir(), "found a folder"),
]


def _run_folder(tmp_path: Path, models, case_writer) -> tuple[Path, Path, Path]:
    out = tmp_path / "run"
    cfg = tmp_path / "c.yaml"
    cfg.write_text(CONFIG.format(out=out))
    member0 = out / "members" / "member-0" / "model.safetensors"
    member0.parent.mkdir(parents=True)
    case_writer(member0, models)
    _save(models["good"], out / "members" / "member-1" / "model.safetensors")
    return out, cfg, member0


@pytest.mark.parametrize("case,writer,words", CKPT_CASES, ids=[c[0] for c in CKPT_CASES])
def test_distill_refuses_a_bad_member_0(tmp_path, capsys, models, case, writer, words):
    out, cfg, member0 = _run_folder(tmp_path, models, writer)
    before = files_under(tmp_path)
    code, _, err = cli(capsys, "distill", "--config", cfg)
    assert_error(code, err, member0, words)
    assert not (out / "student").exists()
    assert files_under(tmp_path) == before


@pytest.mark.parametrize("case,writer,words", CKPT_CASES, ids=[c[0] for c in CKPT_CASES])
def test_evaluate_refuses_a_bad_member_0(tmp_path, capsys, models, case, writer, words):
    out, cfg, member0 = _run_folder(tmp_path, models, writer)
    _save(models["student"], out / "student" / "model.safetensors", role="student")
    before = files_under(tmp_path)
    code, _, err = cli(capsys, "evaluate", "--config", cfg)
    assert_error(code, err, member0, words)
    assert not (out / "evaluation").exists()
    assert files_under(tmp_path) == before


# --- predict: checkpoints, images, folders ---------------------------------------------------------


@pytest.fixture
def student_ckpt(tmp_path, models) -> Path:
    return _save(models["student"], tmp_path / "student.safetensors", role="student")


def _image(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (24, 32, 3), dtype=np.uint8)).save(path)
    return path


@pytest.mark.parametrize(
    "case,writer,words",
    [
        c
        for c in CKPT_CASES
        if c[0]
        in (
            "tampered (one byte flipped)",
            "torch.save pickle renamed .safetensors",
            "truncated",
            "metadata with an unknown arch",
        )
    ],
)
def test_predict_refuses_a_bad_checkpoint(tmp_path, capsys, models, case, writer, words):
    ckpt = tmp_path / "ckpt" / "model.safetensors"
    ckpt.parent.mkdir()
    writer(ckpt, models)
    img = _image(tmp_path / "in" / "street.png")
    out = tmp_path / "pred"
    code, _, err = cli(capsys, "predict", ckpt, img, "--out", out, "--threshold", "0.5")
    assert_error(code, err, ckpt, words)
    assert not out.exists() or files_under(out) == []


@pytest.mark.parametrize("damage", ["truncated", "zero-byte", "text", "bomb"])
def test_predict_on_a_bad_image_writes_nothing(tmp_path, capsys, student_ckpt, damage):
    img = _image(tmp_path / "in" / "street.png")
    {
        "truncated": _truncate,
        "zero-byte": lambda p: p.write_bytes(b""),
        "text": lambda p: p.write_text("hello"),
        "bomb": lambda p: p.write_bytes(png_header(20000, 20000)),
    }[damage](img)
    out = tmp_path / "pred"
    code, _, err = cli(capsys, "predict", student_ckpt, img, "--out", out, "--threshold", "0.5")
    assert_error(code, err, img)
    assert not out.exists() or files_under(out) == []


def test_predict_folder_with_a_symlink_loop(tmp_path, capsys, student_ckpt):
    """A folder symlink pointing back up is not followed (the walk ends); a file symlink that
    points at itself is one error naming it."""
    folder = tmp_path / "in"
    _image(folder / "a" / "street.png")
    (folder / "a" / "up").symlink_to("..", target_is_directory=True)
    (folder / "a" / "deeper").mkdir()
    (folder / "a" / "deeper" / "loop").symlink_to("../..", target_is_directory=True)
    out = tmp_path / "pred"
    code, stdout, err = cli(capsys, "predict", student_ckpt, folder, "--out", out, "--threshold", "0.5")
    assert code == 0, err
    assert sorted(p.name for p in files_under(out)) == [
        "street.json",
        "street_overlay.png",
        "street_seg.png",
        "street_uncertainty.png",
    ]

    loop = folder / "a" / "zz_loop.png"
    loop.symlink_to(loop.name)
    out1 = tmp_path / "pred1"
    code, _, err = cli(capsys, "predict", student_ckpt, folder, "--out", out1, "--threshold", "0.5")
    # found by the folder walk, refused when read, reported and skipped (exit 3); the rest is written
    assert code == 3 and err.splitlines() == [f"udistill: skipped: {loop}: image not found"], err
    assert sorted(p.name for p in files_under(out1)) == [
        "street.json",
        "street_overlay.png",
        "street_seg.png",
        "street_uncertainty.png",
    ]
    code, _, err = cli(
        capsys,
        "predict",
        student_ckpt,
        folder,
        "--out",
        tmp_path / "pred1b",
        "--threshold",
        "0.5",
        "--on-error",
        "stop",
    )
    assert_error(code, err, loop)
    assert not [p for p in out1.rglob("*") if p.name.endswith(".tmp") or p.name.startswith("zz_loop")]
    out2 = tmp_path / "pred2"
    code, _, err = cli(capsys, "predict", student_ckpt, loop, "--out", out2, "--threshold", "0.5")
    assert_error(code, err, loop)
    assert not out2.exists() or files_under(out2) == []


def test_predict_into_an_unwritable_folder(tmp_path, capsys, student_ckpt):
    (tmp_path / "file.txt").write_text("x")
    out = tmp_path / "file.txt" / "pred"
    img = _image(tmp_path / "in" / "street.png")
    code, _, err = cli(capsys, "predict", student_ckpt, img, "--out", out, "--threshold", "0.5")
    assert_error(code, err, out)
