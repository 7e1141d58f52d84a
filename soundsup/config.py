"""Validate a workflow configuration against its JSON schema, fill defaults, check cross-keys.

The error for a wrong key or type names the key by its dotted path (``pretext.epochs``), so a
typo stops the run before any job starts instead of silently falling back to a default.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jsonschema
import yaml


class ConfigError(ValueError):
    """A configuration value is unknown, of the wrong type, or inconsistent with another."""


def load_schema(path: str | Path) -> dict:
    with open(path) as handle:
        return yaml.safe_load(handle)


def _fill_defaults(instance: dict, schema: Mapping[str, Any]) -> None:
    """Insert schema defaults into ``instance`` recursively (copies, never shared objects)."""
    for key, subschema in schema.get("properties", {}).items():
        if key not in instance and "default" in subschema:
            instance[key] = copy.deepcopy(subschema["default"])
        if isinstance(instance.get(key), dict) and subschema.get("type") == "object":
            _fill_defaults(instance[key], subschema)


def _dotted(path: Any) -> str:
    return ".".join(str(part) for part in path) or "<top level>"


def _describe(error: jsonschema.ValidationError) -> str:
    where = _dotted(error.absolute_path)
    if error.validator == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        extra = sorted(set(error.instance) - set(allowed))
        names = ", ".join(f"{where}.{key}" if error.absolute_path else key for key in extra)
        return f"unknown config key {names} (allowed here: {', '.join(allowed)})"
    return f"config key {where}: {error.message}"


def validate_config(config: Mapping[str, Any], schema_path: str | Path) -> dict:
    """Return a validated deep copy of ``config`` with every default filled in.

    Raises :class:`ConfigError` naming the offending key(s).
    """
    schema = load_schema(schema_path)
    filled = copy.deepcopy(dict(config))
    _fill_defaults(filled, schema)
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(
        validator.iter_errors(filled), key=lambda e: (len(e.absolute_path), _dotted(e.absolute_path))
    )
    if errors:
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(_describe(e) for e in errors))
    _check_consistency(filled)
    return filled


def model_names(config: Mapping[str, Any]) -> list[str]:
    """Every model that the VOC stage evaluates: sound models, then baselines.

    ``{feature}-k{k}-{arch}`` for each pretext model, ``random-{arch}``, and ``imagenet-{arch}``
    where ImageNet weights are configured for that architecture.
    """
    archs = config["pretext"]["arch"]
    names = [
        f"{feature}-k{k}-{arch}"
        for feature in config["features"]["names"]
        for k in config["clusters"]["k"]
        for arch in archs
    ]
    baselines = config["voc"]["baselines"]
    if "random" in baselines:
        names += [f"random-{arch}" for arch in archs]
    if "imagenet" in baselines:
        weights = config["voc"]["imagenet_weights"]
        names += [f"imagenet-{arch}" for arch in archs if weights.get(arch)]
    return names


def _check_consistency(config: Mapping[str, Any]) -> None:
    figures = config["figures"]
    problems = []
    if figures["montage_feature"] not in config["features"]["names"]:
        problems.append(f"figures.montage_feature={figures['montage_feature']!r} is not in features.names")
    if figures["montage_k"] not in config["clusters"]["k"]:
        problems.append(
            f"figures.montage_k={figures['montage_k']} is not in clusters.k {config['clusters']['k']}"
        )
    sound_models = [name for name in model_names(config) if not name.startswith(("random-", "imagenet-"))]
    if figures["activation_model"] not in sound_models:
        problems.append(
            f"figures.activation_model={figures['activation_model']!r} is not one of {sound_models}"
        )
    if config["world"] == "synthetic" and config["download"]["source"] != "local":
        problems.append("world=synthetic needs download.source=local (the synthetic clips are local files)")
    if (
        config["download"]["source"] == "local"
        and config["world"] != "synthetic"
        and not config["download"]["local_dir"]
    ):
        problems.append("download.source=local needs download.local_dir")
    if config["features"]["texture"]["high_hz"] > config["pairs"]["sample_rate"] / 2:
        problems.append("features.texture.high_hz is above the Nyquist frequency of pairs.sample_rate")
    if problems:
        raise ConfigError("inconsistent configuration:\n  " + "\n  ".join(problems))
