"""Configs: YAML -> dataclasses, unknown keys, overrides, round trip, the shipped configs."""

from pathlib import Path

import pytest

from pcseg.config import ConfigError, config_to_dict, load_config, save_config

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def write(tmp_path, text):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return path


def test_values_and_types(tmp_path):
    cfg = load_config(
        write(tmp_path, "data:\n  num_points: 512\nmodel:\n  name: acnn\ntrain:\n  lr: 1e-3\n  epochs: 3\n")
    )
    assert cfg.data.num_points == 512 and cfg.model.name == "acnn"
    assert cfg.train.lr == 0.001 and isinstance(cfg.train.lr, float) and cfg.train.epochs == 3
    assert cfg.data.block_size == 1.0  # default kept


def test_unknown_key_names_key_and_valid_ones(tmp_path):
    with pytest.raises(ConfigError) as error:
        load_config(write(tmp_path, "train:\n  learning_rate: 0.1\n"))
    message = str(error.value)
    assert "train.learning_rate" in message and "'lr'" in message and "'epochs'" in message


def test_unknown_section(tmp_path):
    with pytest.raises(ConfigError, match="unknown section 'optim'.*'data', 'model', 'train'"):
        load_config(write(tmp_path, "optim:\n  lr: 0.1\n"))


def test_wrong_type_and_value(tmp_path):
    with pytest.raises(ConfigError, match="train.epochs: expected an integer"):
        load_config(write(tmp_path, "train:\n  epochs: many\n"))
    with pytest.raises(ConfigError, match="train.optimizer must be adamw or sgd"):
        load_config(write(tmp_path, "train:\n  optimizer: lbfgs\n"))
    for loss in ("hinge", "cross_entropy+cross_entropy", "cross_entropy+"):
        with pytest.raises(ConfigError, match=r"train.loss must be one of .*cross_entropy\+lovasz"):
            load_config(None, [f"train.loss={loss}"])
    assert load_config(None, ["train.loss=focal+lovasz"]).train.loss == "focal+lovasz"
    with pytest.raises(ConfigError, match=r"block_centres must be one of \['random', 'class_balanced'\], got 'even'"):
        load_config(None, ["data.block_centres=even"])


def test_unknown_model_name_fails_at_load(tmp_path):
    with pytest.raises(ConfigError) as error:
        load_config(write(tmp_path, "model:\n  name: pointnet_semseg\n"))
    message = str(error.value)
    assert "model.name 'pointnet_semseg'" in message and "'pointnet_sem_seg'" in message and "'acnn'" in message
    with pytest.raises(ConfigError, match="unknown model.name 'pointnet2'"):
        load_config(None, ["model.name=pointnet2"])


def test_unknown_model_option_fails_at_load(tmp_path):
    with pytest.raises(ConfigError) as error:
        load_config(write(tmp_path, "model:\n  name: acnn\n  options:\n    dropuot: 0.1\n"))
    message = str(error.value)
    assert "model.options.dropuot" in message and "'acnn'" in message
    assert "'dropout'" in message and "'normal_k'" in message and "'num_classes'" not in message
    with pytest.raises(ConfigError, match=r"model.options.num_classes is set by data.num_classes"):
        load_config(None, ["model.options={num_classes: 3}"])
    assert load_config(None, ["model.name=acnn", "model.options={dropout: 0.1, normal_k: 8}"]).model.options == {
        "dropout": 0.1,
        "normal_k": 8,
    }


def test_overrides(tmp_path):
    cfg = load_config(
        write(tmp_path, "train:\n  lr: 0.1\n"),
        ["train.lr=0.01", "data.use_color=false", "model.options={dropout: 0.0}"],
    )
    assert cfg.train.lr == 0.01 and cfg.data.use_color is False and cfg.model.options == {"dropout": 0.0}
    with pytest.raises(ConfigError, match="unknown key train.lrr in override.*'lr'"):
        load_config(None, ["train.lrr=0.1"])
    with pytest.raises(ConfigError, match="section.key=value"):
        load_config(None, ["train.lr"])


def test_saved_config_reads_back(tmp_path):
    cfg = load_config(CONFIGS / "acnn_synthetic.yaml", ["train.seed=7"])
    save_config(cfg, tmp_path / "resolved.yaml")
    again = load_config(tmp_path / "resolved.yaml")
    assert config_to_dict(again) == config_to_dict(cfg) and again.train.seed == 7


@pytest.mark.parametrize(
    "name",
    [
        "pointnet_s3dis",
        "acnn_s3dis",
        "pointnet_semantickitti",
        "pointnet_synthetic",
        "acnn_synthetic",
        "fusion_sunrgbd",
    ],
)
def test_shipped_configs_load_and_build(name):
    from pcseg.checkpoint import build_model_from_config
    from pcseg.inputs import input_channels

    cfg = load_config(CONFIGS / f"{name}.yaml")
    model = build_model_from_config(cfg)
    assert model.num_classes == cfg.data.num_classes and model.in_channels == input_channels(cfg.data)


def test_missing_file():
    with pytest.raises(FileNotFoundError, match="nope.yaml"):
        load_config("nope.yaml")
