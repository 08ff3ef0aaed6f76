import pytest

from udistill.config import ExperimentConfig, load_config, save_config
from udistill.errors import ConfigError


def test_yaml_and_overrides(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("train:\n  epochs: 3\ndata:\n  size: [64, 96]\n")
    cfg = load_config(
        ExperimentConfig, p, ["train.lr=0.5", "model.encoder=tu-mobilenetv3_small_100", "data.shifts=[fog, rain]"]
    )
    assert cfg.train.epochs == 3 and cfg.train.lr == 0.5
    assert cfg.data.size == [64, 96] and cfg.data.shifts == ["fog", "rain"]
    assert cfg.model.encoder == "tu-mobilenetv3_small_100"
    save_config(cfg, tmp_path / "resolved.yaml")
    again = load_config(ExperimentConfig, tmp_path / "resolved.yaml")
    assert again == cfg


@pytest.mark.parametrize(
    "text,key",
    [
        ("train:\n  epoch: 3\n", "train.epoch"),
        ("train:\n  epochs: three\n", "train.epochs"),
        ("nonsense: 1\n", "nonsense"),
        ("model:\n  dropout: [1]\n", "model.dropout"),
    ],
)
def test_unknown_keys_and_wrong_types_name_the_key(tmp_path, text, key):
    p = tmp_path / "c.yaml"
    p.write_text(text)
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_config(ExperimentConfig, p)


def test_bad_yaml_and_bad_override(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("train: [unclosed\n")
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_config(ExperimentConfig, p)
    with pytest.raises(ConfigError, match="dotted.key=value"):
        load_config(ExperimentConfig, None, ["novalue"])
