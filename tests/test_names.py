"""The model-name grammar: one parser and formatter, the wildcard built from it, the list of models."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from soundsup.config import validate_config
from soundsup.names import ModelName, ModelNameError, external_problem, model_names, wildcard_pattern

REPO = Path(__file__).resolve().parent.parent
SCHEMA = REPO / "schemas" / "config.schema.yaml"


@pytest.mark.parametrize(
    ("name", "parts"),
    [
        ("texture-k15-alexnet", {"init": "sound", "feature": "texture", "k": 15, "arch": "alexnet"}),
        ("mfcc-k4-resnet18", {"init": "sound", "feature": "mfcc", "k": 4, "arch": "resnet18"}),
        ("random-alexnet", {"init": "random", "feature": None, "k": None, "arch": "alexnet"}),
        ("imagenet-resnet18", {"init": "imagenet", "feature": None, "k": None, "arch": "resnet18"}),
        ("moco_v2-resnet18", {"init": "external", "feature": None, "k": None, "arch": "resnet18"}),
    ],
)
def test_a_name_parses_into_its_parts_and_back(name, parts):
    model = ModelName.parse(name)
    assert str(model) == name
    assert model.parts() == {"model": name, **parts}


@pytest.mark.parametrize(
    "bad", ["texture-k0-alexnet", "texture-k05-alexnet", "texture-15-alexnet", "sound-k4-alexnet",
            "random-vgg16", "Mine-resnet18", "texture-resnet18", "random", "mine-k4-resnet18", ""],
)  # fmt: skip
def test_a_bad_name_is_refused_with_the_grammar(bad):
    with pytest.raises(ModelNameError, match="expected '{feature}-k{k}-{arch}'"):
        ModelName.parse(bad)


def test_external_names_cannot_pass_for_the_workflows_own():
    assert external_problem("my_model2") is None
    for reserved in ("random", "imagenet", "texture", "mfcc", "sound", "external"):
        assert "name of the workflow's own models" in external_problem(reserved)
    assert "lower-case" in external_problem("My-Model")


def test_the_wildcard_matches_every_model_of_a_config_and_nothing_else(tmp_path):
    weights = tmp_path / "w.pth"
    weights.write_bytes(b"")
    raw = yaml.safe_load((REPO / "configs" / "demo.yaml").read_text())
    raw["voc"]["external"] = {"mine": {"arch": "resnet18", "weights": str(weights)}}
    config = validate_config(raw, SCHEMA)
    names = model_names(config)
    # texture: 2 k on AlexNet, 1 on ResNet-18; MFCC: 1 k on AlexNet; the random baselines; the external model
    assert names[-1] == "mine-resnet18" and len(names) == 4 + 2 + 1
    pattern = re.compile(wildcard_pattern(config["features"]["names"], config["voc"]["external"]))
    assert all(pattern.fullmatch(name) for name in names)
    for other in ("theirs-resnet18", "texture-k8-vgg", "mine-k8-resnet18", "texture-k8-alexnet/head"):
        assert not pattern.fullmatch(other), other
