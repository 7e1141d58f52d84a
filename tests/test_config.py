"""The schema: defaults filled, a wrong key or type named, cross-key checks, the model list."""

from pathlib import Path

import pytest
import yaml

from soundsup.config import ConfigError, model_names, validate_config

REPO = Path(__file__).resolve().parent.parent
SCHEMA = REPO / "schemas" / "config.schema.yaml"


def load(name: str) -> dict:
    return yaml.safe_load((REPO / name).read_text())


@pytest.mark.parametrize("name", ["config.yaml", "configs/demo.yaml", "configs/test.yaml"])
def test_shipped_configs_validate(name):
    config = validate_config(load(name), SCHEMA)
    assert config["pairs"]["sample_rate"] == 20000
    assert config["features"]["texture"]["mod_norm"] == "var"


def test_defaults_are_the_paper_values():
    config = validate_config({}, SCHEMA)
    assert config["clusters"]["k"] == [5, 10, 15, 20, 30, 40, 50]
    assert config["pretext"]["epochs"] == 200 and config["pretext"]["batch_size"] == 256
    assert config["voc"]["iterations"] == 80000 and config["voc"]["batch_size"] == 16
    assert config["voc"]["lr"] == pytest.approx(1e-3) and config["voc"]["weight_decay"] == pytest.approx(1e-6)
    assert config["download"]["url_template"] == "https://www.youtube.com/watch?v={ytid}"
    assert config["pairs"]["window_s"] == 3.75


def test_defaults_are_not_shared_between_calls():
    first = validate_config({}, SCHEMA)
    first["clusters"]["k"].append(99)
    assert 99 not in validate_config({}, SCHEMA)["clusters"]["k"]


def test_unknown_key_is_named_with_its_path():
    config = load("configs/test.yaml")
    config["pretext"]["epochz"] = 3
    with pytest.raises(ConfigError, match=r"pretext\.epochz"):
        validate_config(config, SCHEMA)


def test_unknown_top_level_key_is_named():
    with pytest.raises(ConfigError, match=r"unknown config key shardz"):
        validate_config({"shardz": 3}, SCHEMA)


def test_wrong_type_is_named():
    config = load("configs/test.yaml")
    config["voc"]["lr"] = "fast"
    with pytest.raises(ConfigError, match=r"config key voc\.lr: 'fast' is not of type 'number'"):
        validate_config(config, SCHEMA)


def test_wrong_enum_value_is_named():
    with pytest.raises(ConfigError, match=r"download\.source"):
        validate_config({"download": {"source": "vimeo"}}, SCHEMA)


def test_figure_choices_must_exist_in_the_dag():
    config = load("configs/test.yaml")
    config["figures"]["montage_k"] = 7
    with pytest.raises(ConfigError, match=r"figures\.montage_k=7 is not in clusters\.k"):
        validate_config(config, SCHEMA)


def test_synthetic_world_needs_the_local_source():
    config = load("configs/test.yaml")
    config["download"]["source"] = "youtube"
    with pytest.raises(ConfigError, match="download.source=local"):
        validate_config(config, SCHEMA)


def test_model_list_covers_features_k_archs_and_baselines():
    config = validate_config(load("config.yaml"), SCHEMA)
    names = model_names(config)
    assert len(names) == 2 * 7 * 2 + 2 + 2
    assert "texture-k15-alexnet" in names and "mfcc-k50-resnet18" in names
    assert names[-4:] == ["random-alexnet", "random-resnet18", "imagenet-alexnet", "imagenet-resnet18"]


def test_imagenet_rows_need_weights():
    config = validate_config(load("config.yaml"), SCHEMA)
    config["voc"]["imagenet_weights"]["resnet18"] = None
    assert "imagenet-resnet18" not in model_names(config)
    assert "imagenet-alexnet" in model_names(config)
