"""Hypothesis: config parsing and image decoding either succeed or raise the one error type
that names the key or the file; never any other exception."""

from __future__ import annotations

import io
import tempfile
import zlib
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from udistill.config import ExperimentConfig, load_config, to_dict
from udistill.data.imageio import read_image, read_label
from udistill.errors import ConfigError, DataError

pytestmark = [
    pytest.mark.filterwarnings("ignore::UserWarning:PIL"),  # Pillow's "Corrupt EXIF data" on fuzzed TIFFs
    pytest.mark.slow,  # fuzzing: hundreds of generated inputs
]

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True)

# --- config parsing ---------------------------------------------------------------------------

_KEYS = sorted(
    {*to_dict(ExperimentConfig()).keys()}
    | {f"{section}.{key}" for section, d in to_dict(ExperimentConfig()).items() if isinstance(d, dict) for key in d}
)
_key = st.one_of(st.sampled_from(_KEYS), st.text(min_size=0, max_size=12))
_scalar = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(10**400), max_value=10**400),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.sampled_from(["1e-4", "1e30", "-2.5E+3", ".inf", "nan", "3", "[32, 48]", "{a: 1}", "yes", "~", "0x10", "1_000"]),
)
_value = st.recursive(
    _scalar,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=8,
)


def _nested(keys_values: dict) -> dict:
    out: dict = {}
    for dotted, value in keys_values.items():
        node = out
        parts = dotted.split(".")
        for part in parts[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = node[part] = {}
            node = child
        node[parts[-1]] = value
    return out


def _check(build):
    try:
        cfg = build()
    except ConfigError as exc:
        msg = str(exc)
        assert msg and "\n" not in msg, msg
        return None
    assert isinstance(cfg, ExperimentConfig)
    return cfg


@FUZZ
@given(st.dictionaries(_key, _value, max_size=6))
def test_config_from_arbitrary_yaml_mapping(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("cfg") / "c.yaml"
    try:
        path.write_text(yaml.safe_dump(_nested(data), allow_unicode=True))
    except (yaml.YAMLError, RecursionError):  # pragma: no cover - not representable
        return
    _check(lambda: load_config(ExperimentConfig, path))


@FUZZ
@given(
    st.lists(
        st.tuples(
            _key,
            st.one_of(st.text(max_size=20), _value.map(lambda v: yaml.safe_dump(v, default_flow_style=True).strip())),
        ),
        max_size=5,
    ),
    st.lists(st.text(max_size=25), max_size=2),
)
def test_config_from_random_dotted_overrides(pairs, raw):
    overrides = [f"{k}={v}" for k, v in pairs] + raw
    _check(lambda: load_config(ExperimentConfig, None, overrides))


@FUZZ
@given(st.text(max_size=200))
def test_config_from_arbitrary_text(tmp_path_factory, text):
    path = tmp_path_factory.mktemp("cfg") / "c.yaml"
    path.write_bytes(text.encode("utf-8"))
    _check(lambda: load_config(ExperimentConfig, path))


def test_scientific_notation_is_a_number():
    """PyYAML (YAML 1.1) reads 1e-4 as a string; float keys still accept it."""
    cfg = load_config(ExperimentConfig, None, ["train.lr=1e-4", "distill.alpha=2E+1", "train.weight_decay=-1.5e-3"])
    assert (cfg.train.lr, cfg.distill.alpha, cfg.train.weight_decay) == (1e-4, 20.0, -1.5e-3)
    with pytest.raises(ConfigError, match="'train.epochs': expected an integer, got '1e3'"):
        load_config(ExperimentConfig, None, ["train.epochs=1e3"])


# --- image decoding ---------------------------------------------------------------------------


def _png(mode: str, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    shape = {"RGB": (9, 13, 3), "RGBA": (9, 13, 4), "L": (9, 13), "P": (9, 13), "I;16": (9, 13)}[mode]
    arr = rng.integers(0, 256 if mode != "I;16" else 300, shape).astype(np.uint16 if mode == "I;16" else np.uint8)
    img = Image.fromarray(arr, mode="L" if mode == "P" else None)
    if mode == "P":
        img = img.convert("P")
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def _jpeg(seed: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(buf, format="JPEG")
    return buf.getvalue()


_VALID = [_png(m, i) for i, m in enumerate(("RGB", "RGBA", "L", "P", "I;16"))] + [_jpeg(7)]


@st.composite
def damaged_images(draw):
    data = bytearray(draw(st.sampled_from(_VALID)))
    for _ in range(draw(st.integers(0, 6))):
        pos = draw(st.integers(0, len(data) - 1))
        data[pos] = draw(st.integers(0, 255))
    if draw(st.booleans()):
        data = data[: draw(st.integers(0, len(data)))]
    if draw(st.booleans()):  # fix the CRCs, so the damage reaches the decoder instead of the chunk check
        data = _fix_png_crcs(bytes(data))
    return bytes(data)


def _fix_png_crcs(data: bytes) -> bytes:
    if not data.startswith(b"\x89PNG\r\n\x1a\n"):
        return data
    out, pos = bytearray(data[:8]), 8
    while pos + 12 <= len(data):
        n = int.from_bytes(data[pos : pos + 4], "big")
        end = pos + 8 + n
        if end + 4 > len(data):
            break
        out += data[pos:end] + zlib.crc32(data[pos + 4 : end]).to_bytes(4, "big")
        pos = end + 4
    return bytes(out + data[pos:])


def _decode(data: bytes, suffix: str = ".png"):
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / f"fuzzed{suffix}"
        path.write_bytes(data)
        for reader in (read_image, read_label):
            try:
                arr = reader(path)
            except DataError as exc:
                assert str(exc).startswith(f"{path}: "), str(exc)
                assert "\n" not in str(exc)
                continue
            assert isinstance(arr, np.ndarray) and arr.dtype == np.uint8
            assert arr.ndim == (3 if reader is read_image else 2)


@FUZZ
@given(st.binary(max_size=512))
def test_random_bytes_decode_or_raise_data_error(data):
    _decode(data)


@FUZZ
@given(damaged_images(), st.sampled_from([".png", ".jpg"]))
def test_damaged_images_decode_or_raise_data_error(data, suffix):
    _decode(data, suffix)


@FUZZ
@given(
    st.sampled_from(
        [b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF89a", b"BM", b"II*\x00", b"MM\x00*", b"RIFF", b"P6\n"]
    ),
    st.binary(max_size=256),
)
def test_image_magic_followed_by_garbage(magic, rest):
    _decode(magic + rest)


def test_absurd_numbers_are_config_errors(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  epochs: " + "9" * 5000 + "\n")
    with pytest.raises(ConfigError, match=rf"^{path}: invalid YAML"):
        load_config(ExperimentConfig, path)
    with pytest.raises(ConfigError, match="'train.lr': number too large"):
        load_config(ExperimentConfig, None, ["train.lr=" + "9" * 400])
    with pytest.raises(ConfigError, match="'train.lr': expected a number"):
        load_config(ExperimentConfig, None, ["train.lr=" + "9" * 5000])
