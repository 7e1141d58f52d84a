"""The schema: defaults filled, a wrong key or type named, cross-key checks, the model list."""

import re
from pathlib import Path

import pytest
import yaml

from soundsup.config import (
    TORCHVISION_IMAGENET_URLS,
    ConfigError,
    build_settings,
    byte_rate,
    load_schema,
    rule_params,
    runtime_settings,
    validate_config,
)
from soundsup.names import MIN_INPUT_SIZE, model_names

ALEXNET_MIN_INPUT = MIN_INPUT_SIZE["alexnet"]

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


def test_figure_choices_follow_from_the_config_unless_set():
    config = load("configs/test.yaml")
    config["clusters"]["k"] = [4, 6, 9]
    figures = validate_config(config, SCHEMA)["figures"]
    assert figures["montage_k"] == 6 and figures["activation_model"] == "texture-k6-alexnet"
    config["features"]["names"] = ["mfcc"]
    config["pretext"]["arch"] = ["resnet18"]
    figures = validate_config(config, SCHEMA)["figures"]
    assert figures["montage_feature"] == "mfcc" and figures["activation_model"] == "mfcc-k6-resnet18"
    paper = validate_config(load("config.yaml"), SCHEMA)["figures"]
    assert (paper["montage_k"], paper["activation_model"]) == (15, "texture-k15-alexnet")


def test_figure_choices_must_exist_in_the_dag():
    config = load("configs/test.yaml")
    config["figures"]["montage_k"] = 7
    with pytest.raises(ConfigError, match=r"figures\.montage_k=7 is not one of the k of texture \[3\]"):
        validate_config(config, SCHEMA)
    # the montage feature's own k count, not the section's
    config["figures"]["montage_k"] = 3
    config["clusters"]["per_feature"] = {"texture": {"k": [5]}}
    with pytest.raises(ConfigError, match=r"figures\.montage_k=3 is not one of the k of texture \[5\]"):
        validate_config(config, SCHEMA)


def test_a_feature_can_have_k_values_of_its_own():
    from soundsup.names import feature_ks, sound_model_names

    config = load("configs/test.yaml")
    config["clusters"] = {"k": [4, 8], "per_feature": {"mfcc": {"k": [8]}}}
    config["pretext"]["arch"] = ["alexnet", "resnet18"]
    config = validate_config(config, SCHEMA)
    assert feature_ks(config, "texture") == [4, 8] and feature_ks(config, "mfcc") == [8]
    assert sound_model_names(config) == [
        "texture-k4-alexnet", "texture-k4-resnet18", "texture-k8-alexnet", "texture-k8-resnet18",
        "mfcc-k8-alexnet", "mfcc-k8-resnet18",
    ]  # fmt: skip
    # the montage defaults to a k its feature has; a k only the other feature has is refused
    assert config["figures"]["montage_feature"] == "texture" and config["figures"]["montage_k"] == 8
    config["clusters"]["per_feature"] = {"texture": {"k": [6]}}
    config["figures"] = {"montage_k": 8}
    with pytest.raises(ConfigError, match=r"figures\.montage_k=8 is not one of the k of texture \[6\]"):
        validate_config(config, SCHEMA)
    for bad, message in (
        ({"mel": {"k": [4]}}, r"unknown config key clusters\.per_feature\.mel"),
        ({"mfcc": {"n_init": 3}}, r"unknown config key clusters\.per_feature\.mfcc\.n_init"),
        ({"mfcc": {"k": [1]}}, r"clusters\.per_feature\.mfcc\.k\.0: 1 is less than the minimum of 2"),
        ({"mfcc": {"k": []}}, r"clusters\.per_feature\.mfcc\.k"),
    ):
        with pytest.raises(ConfigError, match=message):
            validate_config({"clusters": {"per_feature": bad}}, SCHEMA)


@pytest.mark.parametrize(
    ("section", "key", "value", "message"),
    [
        # the texture statistics run at 20 kHz whatever the windows' rate: 10 kHz is their ceiling
        ("features.texture", "high_hz", 12000.0, r"high_hz=12000 is above 10000 Hz.*resampled to 20000"),
        ("pairs", "sample_rate", 16000, r"high_hz=10000 is above 8000 Hz.*pairs\.sample_rate=16000"),
        ("features.mfcc", "sample_rate", 24000, r"mfcc\.sample_rate=24000 is above pairs\.sample_rate=20000"),
        ("synthetic", "audio_sample_rate", 16000, r"above synthetic\.audio_sample_rate=16000: .*upsampled"),
    ],
)
def test_each_rate_of_the_audio_stream_is_checked_against_the_one_it_comes_from(section, key, value, message):
    config = load("configs/test.yaml")
    node = config
    for part in section.split("."):
        node = node.setdefault(part, {})
    node[key] = value
    with pytest.raises(ConfigError, match=message):
        validate_config(config, SCHEMA)
    if section == "features.mfcc":  # a feature the config does not compute is not checked
        config["features"]["names"] = ["texture"]
        validate_config(config, SCHEMA)


def test_synthetic_world_needs_the_local_source():
    config = load("configs/test.yaml")
    config["download"]["source"] = "youtube"
    with pytest.raises(ConfigError, match="download.source=local"):
        validate_config(config, SCHEMA)


# ---------------------------------------------------------------------------------------------
# worlds without an ontology: a folder of videos, VGGSound


def test_a_folder_needs_no_ontology_and_uses_every_segment():
    config = validate_config({"world": "folder", "folder": {"path": "/data/videos"}}, SCHEMA)
    assert config["select"]["exclude_labels"] == [] and config["select"]["include_labels"] == []
    assert config["select"]["n_segments"] == 0
    assert config["voc"]["download"] is True
    written = validate_config(
        {"world": "folder", "folder": {"path": "x"}, "select": {"exclude_labels": []}}, SCHEMA
    )
    assert written["select"]["exclude_labels"] == []
    # The paper's world keeps the paper's defaults.
    assert validate_config({}, SCHEMA)["select"]["exclude_labels"] == ["/m/04rlf", "/m/09x0r"]


def test_vggsound_filters_by_label_text_not_by_ontology():
    config = validate_config({"world": "vggsound", "vggsound": {"csv": "v.csv"}}, SCHEMA)
    assert config["select"]["exclude_labels"] == [] and config["select"]["n_segments"] == 33500
    assert config["vggsound"]["splits"] == ["train", "test"]
    with pytest.raises(
        ConfigError, match=r"select\.exclude_labels=\['/m/09x0r'\].*use vggsound\.exclude_labels"
    ):
        validate_config(
            {"world": "vggsound", "vggsound": {"csv": "v.csv"}, "select": {"exclude_labels": ["/m/09x0r"]}},
            SCHEMA,
        )


FOLDER = {"world": "folder", "folder": {"path": "v"}}


def folder_with(**sections) -> dict:
    return {**FOLDER, **{key: {**FOLDER.get(key, {}), **value} for key, value in sections.items()}}


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"world": "folder"}, "world=folder needs folder.path"),
        ({"world": "vggsound"}, "world=vggsound needs vggsound.csv"),
        (folder_with(folder={"labels": "labels.txt"}), r"folder\.labels='labels\.txt'"),
        (folder_with(select={"n_segments": 100}), r"select\.n_segments=100"),
        (folder_with(select={"include_labels": ["/m/0838f"]}), "no ontology"),
        (folder_with(folder={"segment_s": 2.0}), r"folder\.segment_s=2\.0 is shorter"),
        (folder_with(download={"source": "local", "local_dir": "d"}), "cuts the videos of folder.path"),
        ({"world": "vggsound", "vggsound": {"csv": "v.csv", "splits": ["val"]}}, r"vggsound\.splits"),
        (folder_with(folder={"extensions": ["mp4", ".mkv"]}), r"folder\.extensions"),
    ],
)
def test_a_source_that_cannot_work_stops_with_its_key(config, message):
    with pytest.raises(ConfigError, match=message):
        validate_config(config, SCHEMA)


@pytest.mark.parametrize("name", ["example-folder", "example-vggsound"])
def test_the_readme_shows_the_example_configs_as_they_are(name):
    text = (REPO / "configs" / f"{name}.yaml").read_text()
    readme = (REPO / "README.md").read_text()
    assert f"```yaml\n{text}```" in readme, f"README.md must show configs/{name}.yaml verbatim"
    config = validate_config(yaml.safe_load(text), SCHEMA)
    assert config["world"] == name.split("-")[1]


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


# ---------------------------------------------------------------------------------------------
# canonical configs: the same values give the same validated config, however they were written


def _reordered(value, reverse: bool):
    if isinstance(value, dict):
        return {key: _reordered(value[key], reverse) for key in sorted(value, reverse=reverse)}
    return value


@pytest.mark.parametrize("name", ["config.yaml", "configs/demo.yaml", "configs/test.yaml"])
def test_key_order_and_explicit_defaults_give_the_same_config(name):
    original = load(name)
    reference = validate_config(original, SCHEMA)
    for variant in (_reordered(original, False), _reordered(original, True), reference):
        again = validate_config(variant, SCHEMA)
        assert again == reference
        assert repr(again) == repr(reference)  # what Snakemake compares params by


def test_numbers_take_their_schema_type():
    config = validate_config({"voc": {"lr": 1, "iterations": 30}, "pretext": {"lr_max": "2e-3"}}, SCHEMA)
    assert repr(config["voc"]["lr"]) == "1.0" and repr(config["voc"]["iterations"]) == "30"
    assert config["pretext"]["lr_max"] == 0.002 and isinstance(config["pretext"]["lr_max"], float)
    assert validate_config({"shards": "4"}, SCHEMA)["shards"] == 4


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"pretext": {"epochs": 2.5}}, r"pretext\.epochs: 2\.5 is not of type 'integer'"),
        ({"shards": 2.0}, r"shards: 2\.0 is not of type 'integer'"),
        ({"voc": {"lr": float("nan")}}, r"voc\.lr: nan is not a finite number"),
        ({"voc": {"clip_grad_norm": float("inf")}}, r"voc\.clip_grad_norm: inf is not a finite number"),
        (
            {"voc": {"scale_low": 1.5, "scale_high": 1.2}},
            r"voc\.scale_low=1\.5 is above voc\.scale_high=1\.2",
        ),
        ({"pretext": {"crop_size": 48}}, r"pretext\.crop_size=48 is below 63"),
        ({"voc": {"crop_size": 32}}, r"voc\.crop_size=32 is below 63"),
        ({"download": {"rate_limit": "fast"}}, r"download\.rate_limit='fast' is not a positive byte rate"),
        ({"download": {"rate_limit": "0"}}, r"download\.rate_limit='0'"),
        ({"download": {"url_template": "https://x.org/{id}"}}, r"unknown fields \['id'\]"),
        ({"download": {"url_template": "file:///videos/{ytid}.mp4"}}, r"must be an http:// or https:// URL"),
        ({"download": {"url_template": "https://x.org/watch"}}, r"must contain \{ytid\}"),
        ({"download": {"url_template": "https://x.org/{ytid"}}, r"is not a valid template"),
        ({"download": {"proxy": "http://user:secret@proxy:3128"}}, r"download\.proxy is not a config key"),
        ({"download": {"proxy_env": "not a name"}}, r"download\.proxy_env"),
        (
            {"pretext": {"per_arch": {"alexnet": {"crop_size": 48}}}},
            r"pretext\.per_arch\.alexnet\.crop_size=48 is below 63",
        ),
        (
            {"pretext": {"per_arch": {"resnet18": {"threads": 2}}}},
            r"unknown config key pretext\.per_arch\.resnet18\.threads",
        ),
        ({"pretext": {"per_arch": {"vgg": {"epochs": 2}}}}, r"unknown config key pretext\.per_arch\.vgg"),
        (
            {"voc": {"per_arch": {"alexnet": {"crop_size": 56}}}},
            r"voc\.per_arch\.alexnet\.crop_size=56 is below 63",
        ),
        (
            {"voc": {"per_arch": {"resnet18": {"test_augmentations": 2}}}},
            r"unknown config key voc\.per_arch\.resnet18\.test_augmentations",
        ),
        (
            {"voc": {"external": {"mine": {"arch": "resnet18"}}}},
            r"voc\.external\.mine: 'weights' is a required property",
        ),
        ({"voc": {"external": {"mine": {"arch": "vgg", "weights": "w"}}}}, r"voc\.external\.mine\.arch"),
        (
            {"voc": {"external": {"mine": {"arch": "resnet18", "weights": "/nowhere/w.pth"}}}},
            r"voc\.external\.mine\.weights: file /nowhere/w\.pth does not exist",
        ),
        (
            {"voc": {"external": {"mine": {"arch": "resnet18", "weights": "w", "extra": 1}}}},
            r"unknown config key voc\.external\.mine\.extra",
        ),
    ],
)
def test_bad_values_are_refused_naming_the_key(change, message):
    with pytest.raises(ConfigError, match=message):
        validate_config(change, SCHEMA)


def test_a_removed_key_is_explained_even_when_null():
    with pytest.raises(ConfigError) as caught:
        validate_config({"download": {"proxy": None}}, SCHEMA)
    assert "HTTPS_PROXY" in str(caught.value) and "unknown config key" not in str(caught.value)


def test_a_proxy_password_never_appears_in_the_error():
    with pytest.raises(ConfigError) as caught:
        validate_config({"download": {"proxy": "http://user:s3cr3t@proxy:3128"}}, SCHEMA)
    assert "s3cr3t" not in str(caught.value)


def test_byte_rates_read_as_yt_dlp_reads_them():
    from yt_dlp.utils import parse_bytes

    for text in ("2M", "500K", "1.5M", "100", "3G", "2m", "10 K", "M", "2MB", "-1M", "1,5M", ""):
        assert byte_rate(text) == parse_bytes(text.upper()), text


def test_alexnet_minimum_input_is_what_its_layers_accept():
    import torch

    from soundsup.models import build_model

    model = build_model("alexnet", 4, fc_width=16).eval()
    with torch.no_grad():
        assert model(torch.zeros(1, 3, ALEXNET_MIN_INPUT, ALEXNET_MIN_INPUT)).shape == (1, 4)
        with pytest.raises(RuntimeError):
            model(torch.zeros(1, 3, ALEXNET_MIN_INPUT - 1, ALEXNET_MIN_INPUT - 1))


def test_runtime_keys_are_left_out_of_rule_params_and_read_back():
    schema = load_schema(SCHEMA)
    config = validate_config(load("configs/test.yaml"), SCHEMA)
    params = rule_params(config, schema, "pretext", exclude=("arch",))
    runtime = runtime_settings(config, schema, "pretext")
    assert {"log_every", "threads", "mem_mb"} <= set(runtime)
    assert not set(runtime) & set(params) and "arch" not in params
    assert set(params) | set(runtime) | {"arch"} == set(config["pretext"])
    transport = runtime_settings(config, schema, "download")
    assert {"timeout_s", "retries", "backoff_s", "concurrency", "rate_limit", "cookies", "proxy_env"} <= set(
        transport
    )
    assert {"max_height", "reencode"} <= set(rule_params(config, schema, "download"))


SETTINGS = [
    ("soundsup.audioset", "SelectConfig", "select"),
    ("soundsup.download", "DownloadConfig", "download"),
    ("soundsup.pairs", "PairConfig", "pairs"),
    ("soundsup.texture", "TextureConfig", "features.texture"),
    ("soundsup.mfcc", "MfccConfig", "features.mfcc"),
    ("soundsup.clusters", "ClusterConfig", "clusters"),
    ("soundsup.pretext", "PretextConfig", "pretext"),
    ("soundsup.finetune", "FinetuneConfig", "voc"),
    ("soundsup.synthetic", "SyntheticConfig", "synthetic"),
    ("soundsup.folder", "FolderConfig", "folder"),
    ("soundsup.vggsound", "VGGSoundConfig", "vggsound"),
    ("soundsup.frozen", "FeatureConfig", "svm"),
    ("soundsup.svm", "SolverConfig", "svm"),
    ("soundsup.svm", "SvmConfig", "svm"),
    ("soundsup.svm", "LowShotConfig", "svm"),
    ("soundsup.svm", "KnnConfig", "svm"),
]


@pytest.mark.parametrize(("module", "name", "section"), SETTINGS, ids=[entry[1] for entry in SETTINGS])
def test_every_settings_default_is_the_schema_default(module, name, section):
    import dataclasses
    import importlib

    cls = getattr(importlib.import_module(module), name)
    defaults = validate_config({}, SCHEMA)
    for key in section.split("."):
        defaults = defaults[key]
    for field in dataclasses.fields(cls):
        assert field.name in defaults, f"{name}.{field.name} is not a config key of {section}"
        default = field.default if field.default is not dataclasses.MISSING else field.default_factory()
        expected = defaults[field.name]
        if isinstance(default, tuple):
            default = list(default)
        assert default == expected, f"{name}.{field.name}: dataclass {default!r}, schema {expected!r}"
    assert build_settings(cls, defaults) == cls()


def test_torchvision_weight_urls_are_torchvisions():
    from torchvision import models

    assert TORCHVISION_IMAGENET_URLS == {
        "alexnet": models.AlexNet_Weights.IMAGENET1K_V1.url,
        "resnet18": models.ResNet18_Weights.IMAGENET1K_V1.url,
    }


def test_outside_checkpoints_need_names_the_grammar_can_carry(tmp_path):
    weights = tmp_path / "w.pth"
    weights.write_bytes(b"")
    for name, message in (("random", "name of the workflow's own models"), ("My-Net", "lower-case letters")):
        with pytest.raises(ConfigError, match=rf"voc\.external\.{re.escape(name)}: .*{message}"):
            validate_config(
                {"voc": {"external": {name: {"arch": "resnet18", "weights": str(weights)}}}}, SCHEMA
            )
    with pytest.raises(ConfigError, match="variant and fc_width are AlexNet's keys"):
        validate_config(
            {"voc": {"external": {"m": {"arch": "resnet18", "weights": str(weights), "fc_width": 512}}}},
            SCHEMA,
        )
    config = validate_config(
        {"voc": {"external": {"m": {"arch": "alexnet", "weights": str(weights)}}}}, SCHEMA
    )
    assert config["voc"]["external"]["m"] == {
        "arch": "alexnet",
        "fc_width": 4096,
        "variant": "batchnorm",
        "weights": str(weights),
    }
    assert model_names(config)[-1] == "m-alexnet"


def test_a_feature_can_be_trained_on_some_architectures_only():
    from soundsup.config import pretext_section
    from soundsup.names import feature_archs, sound_model_names

    raw = {
        "clusters": {"k": [4, 8], "per_feature": {"mfcc": {"k": [8]}}},
        "pretext": {"arch": ["alexnet", "resnet18"], "per_feature": {"mfcc": {"arch": ["alexnet"]}}},
    }
    config = validate_config(raw, SCHEMA)
    assert feature_archs(config, "mfcc") == ["alexnet"] and feature_archs(config, "texture") == [
        "alexnet",
        "resnet18",
    ]
    assert sound_model_names(config) == [
        "texture-k4-alexnet", "texture-k4-resnet18", "texture-k8-alexnet", "texture-k8-resnet18",
        "mfcc-k8-alexnet",
    ]  # fmt: skip
    assert "per_feature" not in pretext_section(config, "alexnet")  # it plans models, trains none
    # an architecture outside pretext.arch would have no baseline and no settings
    raw["pretext"]["arch"] = ["alexnet"]
    raw["pretext"]["per_feature"] = {"mfcc": {"arch": ["resnet18"]}}
    with pytest.raises(
        ConfigError, match=r"pretext\.per_feature\.mfcc\.arch names \['resnet18'\], not in pretext\.arch"
    ):
        validate_config(raw, SCHEMA)
    with pytest.raises(ConfigError, match=r"unknown config key pretext\.per_feature\.mfcc\.epochs"):
        validate_config({"pretext": {"per_feature": {"mfcc": {"epochs": 3}}}}, SCHEMA)


def test_an_architecture_can_train_on_some_k_only():
    from soundsup.config import pretext_section
    from soundsup.names import sound_model_names

    raw = {
        "clusters": {"k": [4, 8], "per_feature": {"mfcc": {"k": [8]}}},
        "pretext": {
            "arch": ["alexnet", "resnet18"],
            "per_arch": {"resnet18": {"epochs": 6, "k": [8]}},
            "per_feature": {"mfcc": {"arch": ["alexnet"]}},
        },
    }
    config = validate_config(raw, SCHEMA)
    assert sound_model_names(config) == [
        "texture-k4-alexnet", "texture-k8-alexnet", "texture-k8-resnet18", "mfcc-k8-alexnet",
    ]  # fmt: skip
    resnet = pretext_section(config, "resnet18")
    assert resnet["epochs"] == 6 and "k" not in resnet  # it plans models, trains none
    # the activation figure's model defaults to one that is trained
    raw["pretext"]["per_arch"] = {"alexnet": {"k": [4]}}
    raw["figures"] = {"montage_k": 8}
    config = validate_config(raw, SCHEMA)
    assert config["figures"]["activation_model"] == "texture-k8-resnet18"
    # a k no feature is clustered at leaves the architecture without a model
    raw["pretext"]["per_arch"] = {"resnet18": {"k": [5]}}
    with pytest.raises(
        ConfigError, match=r"pretext\.per_arch\.resnet18\.k \[5\] leaves resnet18 without a sound model"
    ):
        validate_config(raw, SCHEMA)


def test_voc_per_arch_keys_override_the_section_for_one_architecture():
    from soundsup.config import voc_section
    from soundsup.estimate import finetune_minutes

    config = validate_config(
        {"voc": {"iterations": 1000, "per_arch": {"resnet18": {"crop_size": 48, "iterations": 500}}}}, SCHEMA
    )
    resnet, alexnet = voc_section(config, "resnet18"), voc_section(config, "alexnet")
    assert (resnet["crop_size"], resnet["iterations"]) == (48, 500) and "per_arch" not in resnet
    assert (alexnet["crop_size"], alexnet["iterations"]) == (227, 1000)
    config["runtime_estimate"]["minimum_minutes"] = 1
    shorter = finetune_minutes("resnet18", config)
    assert shorter < finetune_minutes("resnet18", {**config, "voc": {**config["voc"], "per_arch": {}}})


def test_per_arch_keys_override_the_section_for_one_architecture():
    from soundsup.config import pretext_section
    from soundsup.estimate import pretext_minutes

    config = validate_config(
        {"pretext": {"epochs": 40, "per_arch": {"resnet18": {"epochs": 10, "crop_size": 48}}}}, SCHEMA
    )
    assert (
        pretext_section(config, "resnet18")["epochs"] == 10
        and pretext_section(config, "resnet18")["crop_size"] == 48
    )
    assert pretext_section(config, "alexnet")["epochs"] == 40 and "per_arch" not in pretext_section(
        config, "alexnet"
    )
    config["runtime_estimate"]["minimum_minutes"] = 1
    assert pretext_minutes(10**6, "resnet18", config) < pretext_minutes(
        10**6, "resnet18", {**config, "pretext": {**config["pretext"], "per_arch": {}}}
    )
