"""Validate a workflow configuration against its JSON schema, fill defaults, check cross-keys.

The error for a wrong key or type names the key by its dotted path (``pretext.epochs``), so a
typo stops the run before any job starts instead of silently falling back to a default.

The validated configuration is *canonical*: every mapping has its keys in sorted order, every
number has the type its schema gives (``lr: 1`` and ``lr: "1e-3"`` become floats), so two
configurations with the same values are equal and print the same, whatever their key order,
quoting or layout, and whether a value was written out or left to its default. Snakemake
compares a rule's ``params`` by their printed form, so this is what keeps the rerun contract
independent of how a config file is written.

Keys marked ``x-rerun: false`` in the schema change how a job runs (threads, memory, logging,
timeouts, checkpoint intervals), never what it computes. :func:`rule_params` leaves them out
of the rules' ``params`` (Snakemake's rerun trigger); adapters read them from the validated
config with :func:`runtime_settings`.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import re
import string
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import yaml

from soundsup.names import (
    MIN_INPUT_SIZE,
    TEXTURE_SAMPLE_RATE,
    external_problem,
    feature_archs,
    feature_ks,
    sound_model_names,
    trains_at,
)


class ConfigError(ValueError):
    """A configuration value is unknown, of the wrong type, or inconsistent with another."""


# Keys that once existed, and what replaces them (named in the error instead of "unknown key").
REMOVED_KEYS = {
    ("download", "proxy"): (
        "download.proxy is not a config key: a proxy URL may carry a password, and Snakemake "
        "writes config values to .snakemake/ and to the console. Put the proxy URL in the "
        "environment instead (HTTPS_PROXY / HTTP_PROXY / ALL_PROXY, or the variable that "
        "download.proxy_env names)"
    ),
}
URL_FIELDS = frozenset({"ytid"})  # the replacement fields a clip URL template may hold
# torchvision's ImageNet weights (``voc.imagenet_weights.<arch>: torchvision``), fetched by the
# rule fetch_imagenet_weights on the submit host; the 8 hex digits in each name are the start
# of the file's SHA-256 (tests/test_config.py checks these against torchvision's own table).
TORCHVISION_IMAGENET_URLS = {
    "alexnet": "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth",
    "resnet18": "https://download.pytorch.org/models/resnet18-f37072fd.pth",
}
# The layers of the frozen-feature evaluations (config section svm), in network order:
# AlexNet's five convolutions (after their ReLU), pool5 (the last max-pool) and fc6, fc7 (after
# their ReLU); ResNet-18 after each residual stage. tests/test_frozen.py checks these names
# against the networks' hooks.
FROZEN_LAYERS = {
    "alexnet": ("conv1", "conv2", "conv3", "conv4", "conv5", "pool5", "fc6", "fc7"),
    "resnet18": ("layer1", "layer2", "layer3", "layer4"),
}
_BYTE_RATE = re.compile(r"(?P<num>\d+(?:\.\d+)?)\s*(?P<unit>[KMGTPEZY]?)\b")  # yt-dlp's parse_bytes
_INT_TEXT = re.compile(r"[+-]?\d+")
_FLOAT_TEXT = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


def load_schema(path: str | Path) -> dict:
    with open(path) as handle:
        return yaml.safe_load(handle)


# ----------------------------------------------------------------------------------------------
# schema walking


def _resolve(subschema: Mapping[str, Any], root: Mapping[str, Any]) -> Mapping[str, Any]:
    """Follow a local ``$ref`` (``#/definitions/...``), keeping sibling keys such as defaults."""
    ref = subschema.get("$ref")
    if not ref:
        return subschema
    target: Any = root
    for part in ref.lstrip("#/").split("/"):
        target = target[part]
    return {**target, **{key: value for key, value in subschema.items() if key != "$ref"}}


def _types(subschema: Mapping[str, Any]) -> set[str]:
    declared = subschema.get("type", ())
    return {declared} if isinstance(declared, str) else set(declared)


def _fill_defaults(instance: dict, schema: Mapping[str, Any], root: Mapping[str, Any]) -> None:
    """Insert schema defaults into ``instance`` recursively (copies, never shared objects)."""
    properties = schema.get("properties", {})
    for key, subschema in properties.items():
        subschema = _resolve(subschema, root)
        if key not in instance and "default" in subschema:
            instance[key] = copy.deepcopy(subschema["default"])
        if isinstance(instance.get(key), dict) and "object" in _types(subschema):
            _fill_defaults(instance[key], subschema, root)
    entries = schema.get("additionalProperties")
    if isinstance(entries, Mapping):  # a mapping of user-named entries (voc.external)
        entries = _resolve(entries, root)
        for key, value in instance.items():
            if key not in properties and isinstance(value, dict) and "object" in _types(entries):
                _fill_defaults(value, entries, root)


def _canonical(value: Any, schema: Mapping[str, Any], root: Mapping[str, Any]) -> Any:
    """``value`` with sorted mapping keys and numbers of their schema type (text that spells a
    number is read as one where the schema asks for a number)."""
    schema = _resolve(schema, root)
    types = _types(schema)
    if isinstance(value, Mapping):
        properties = schema.get("properties", {})
        entries = schema.get("additionalProperties")
        entries = entries if isinstance(entries, Mapping) else {}
        return {
            key: _canonical(value[key], properties.get(key, entries), root) for key in sorted(value, key=str)
        }
    if isinstance(value, list | tuple):
        items = schema.get("items", {})
        return [_canonical(item, items, root) for item in value]
    if isinstance(value, bool):
        return value
    if "number" in types and "integer" not in types:
        if isinstance(value, int):
            return float(value)
        if isinstance(value, str) and _FLOAT_TEXT.fullmatch(value.strip()):
            return float(value)
    if "integer" in types and isinstance(value, str) and _INT_TEXT.fullmatch(value.strip()):
        return int(value)
    return value


def runtime_keys(schema: Mapping[str, Any]) -> set[tuple[str, ...]]:
    """Paths of the keys marked ``x-rerun: false`` (they change how a job runs, not its results)."""
    found: set[tuple[str, ...]] = set()

    def walk(node: Mapping[str, Any], path: tuple[str, ...]) -> None:
        for key, subschema in node.get("properties", {}).items():
            subschema = _resolve(subschema, schema)
            if subschema.get("x-rerun") is False:
                found.add((*path, key))
            walk(subschema, (*path, key))

    walk(schema, ())
    return found


# ----------------------------------------------------------------------------------------------
# validation


def _dotted(path: Iterable[Any]) -> str:
    return ".".join(str(part) for part in path) or "<top level>"


def _describe(error: jsonschema.ValidationError) -> str:
    where = _dotted(error.absolute_path)
    if error.validator == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        extra = sorted(set(error.instance) - set(allowed))
        names = ", ".join(f"{where}.{key}" if error.absolute_path else key for key in extra)
        return f"unknown config key {names} (allowed here: {', '.join(allowed)})"
    return f"config key {where}: {error.message}"


def _strict_integer(checker: Any, instance: Any) -> bool:
    """JSON Schema counts 2.0 as an integer; a config that says 2.0 epochs is a mistake."""
    return isinstance(instance, int) and not isinstance(instance, bool)


_Validator = jsonschema.validators.extend(
    jsonschema.Draft202012Validator,
    type_checker=jsonschema.Draft202012Validator.TYPE_CHECKER.redefine("integer", _strict_integer),
)


def _non_finite(value: Any, path: tuple[str, ...] = ()) -> list[str]:
    """Dotted paths of NaN or infinite numbers anywhere in ``value``."""
    if isinstance(value, Mapping):
        return [hit for key, item in value.items() for hit in _non_finite(item, (*path, str(key)))]
    if isinstance(value, list | tuple):
        return [hit for i, item in enumerate(value) for hit in _non_finite(item, (*path, str(i)))]
    if isinstance(value, float) and not math.isfinite(value):
        return [f"config key {_dotted(path)}: {value} is not a finite number"]
    return []


def _removed(config: Mapping[str, Any]) -> list[str]:
    problems = []
    for path, message in REMOVED_KEYS.items():
        node: Any = config
        for key in path[:-1]:
            node = node.get(key) if isinstance(node, Mapping) else None
        if isinstance(node, Mapping) and path[-1] in node:
            problems.append(message)
    return problems


def validate_config(config: Mapping[str, Any], schema_path: str | Path) -> dict:
    """Return a validated, canonical deep copy of ``config`` with every default filled in.

    Raises :class:`ConfigError` naming the offending key(s).
    """
    schema = load_schema(schema_path)
    problems = _removed(config)
    filled = copy.deepcopy(dict(config))
    _fill_defaults(filled, schema, schema)
    filled = _canonical(filled, schema, schema)
    errors = sorted(
        _Validator(schema).iter_errors(filled),
        key=lambda e: (len(e.absolute_path), _dotted(e.absolute_path)),
    )
    problems += [_describe(error) for error in errors if not _is_removed(error)]
    problems += _non_finite(filled)
    if problems:
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(problems))
    _derive_figures(filled)
    _check_consistency(filled, _derive_world_defaults(config, filled))
    return filled


ONTOLOGY_WORLDS = ("audioset", "synthetic")


def _derive_world_defaults(raw: Mapping[str, Any], config: dict) -> list[str]:
    """Give the ``select`` keys that a world without an ontology cannot use their value there,
    and return the problems of those written anyway.

    World folder and vggsound have free-text labels, no ontology: ``select.include_labels`` and
    ``select.exclude_labels`` (ontology ids, by default Music and Speech) are [] there; world
    folder uses every segment (``folder.max_segments_per_file`` bounds each video, and a shard's
    segments must depend on its own videos only), so ``select.n_segments`` is 0. A value that
    says otherwise, written in the config, is an error naming what to use instead.
    """
    world = config["world"]
    if world in ONTOLOGY_WORLDS:
        return []
    written = raw.get("select") if isinstance(raw.get("select"), Mapping) else {}
    problems = []
    for key in ("include_labels", "exclude_labels"):
        if written.get(key):
            instead = (
                f"use vggsound.{key} (label texts) instead"
                if world == "vggsound"
                else "leave it out (a folder holds only the videos you want; folder.labels names them)"
            )
            problems.append(
                f"select.{key}={list(written[key])} filters by AudioSet ontology ids, and world={world} "
                f"has no ontology: {instead}"
            )
        config["select"][key] = []
    if world == "folder":
        if written.get("n_segments"):
            problems.append(
                f"select.n_segments={written['n_segments']}: world=folder uses every segment of every video "
                "(folder.max_segments_per_file bounds each one); leave select.n_segments out or set it to 0"
            )
        config["select"]["n_segments"] = 0
    return problems


def _derive_figures(config: dict) -> None:
    """Fill the figure choices left null from what the config computes (so that changing
    ``clusters.k`` or ``features.names`` alone never leaves a figure asking for a model that
    is not trained)."""
    figures = config["figures"]
    features = config["features"]["names"]
    if figures["montage_feature"] is None:
        figures["montage_feature"] = "texture" if "texture" in features else features[0]
    ks = sorted(feature_ks(config, figures["montage_feature"]))
    if figures["montage_k"] is None:
        figures["montage_k"] = 15 if 15 in ks else ks[len(ks) // 2]
    if figures["activation_model"] is None:
        feature, k = figures["montage_feature"], figures["montage_k"]
        archs = [arch for arch in feature_archs(config, feature) if trains_at(config, arch, k)]
        archs = archs or feature_archs(config, feature)  # none at that k: _check_consistency says so
        arch = "alexnet" if "alexnet" in archs else archs[0]
        figures["activation_model"] = f"{feature}-k{k}-{arch}"


def _is_removed(error: jsonschema.ValidationError) -> bool:
    """An 'unknown key' error that :data:`REMOVED_KEYS` already explains."""
    if error.validator != "additionalProperties":
        return False
    allowed = set(error.schema.get("properties", {}))
    extra = set(error.instance) - allowed
    return all((*error.absolute_path, key) in REMOVED_KEYS for key in extra)


# ----------------------------------------------------------------------------------------------
# slices for rules and adapters


def _section(config: Mapping[str, Any], section: str) -> Mapping[str, Any]:
    node: Any = config
    for key in section.split("."):
        node = node[key]
    return node


def rule_params(
    config: Mapping[str, Any],
    schema: Mapping[str, Any],
    section: str,
    exclude: Iterable[str] = (),
) -> dict:
    """The part of config section ``section`` (dotted) that shapes a rule's results: every key
    but those marked ``x-rerun: false`` and those in ``exclude`` (keys the rule does not use)."""
    runtime = {path[-1] for path in runtime_keys(schema) if ".".join(path[:-1]) == section}
    skip = runtime | set(exclude)
    return {key: value for key, value in _section(config, section).items() if key not in skip}


def runtime_settings(config: Mapping[str, Any], schema: Mapping[str, Any], section: str) -> dict:
    """The keys of section ``section`` marked ``x-rerun: false``: how a job runs, not what it makes."""
    runtime = {path[-1] for path in runtime_keys(schema) if ".".join(path[:-1]) == section}
    return {key: value for key, value in _section(config, section).items() if key in runtime}


def _arch_section(config: Mapping[str, Any], section: str, arch: str, plan_keys: Sequence[str] = ()) -> dict:
    """Section ``section`` as a job of a model of ``arch`` sees it: ``{section}.per_arch[arch]``
    over the section's own values, without ``per_arch`` itself nor ``plan_keys`` (keys that say
    which models exist, not how one is made), in the section or in the override."""
    values = dict(config[section])
    overrides = dict((values.pop("per_arch", {}) or {}).get(arch) or {})
    for key in plan_keys:
        values.pop(key, None)
        overrides.pop(key, None)
    return {**values, **overrides}


def pretext_section(config: Mapping[str, Any], arch: str) -> dict:
    """The pretext section as a train_pretext job of ``arch`` sees it (:func:`_arch_section`;
    ``per_feature`` and ``per_arch[arch].k`` plan models, they do not train one)."""
    return _arch_section(config, "pretext", arch, plan_keys=("per_feature", "k"))


def voc_section(config: Mapping[str, Any], arch: str) -> dict:
    """The voc section as a fine-tuning or frozen-feature job of a model of ``arch`` sees it
    (:func:`_arch_section`)."""
    return _arch_section(config, "voc", arch)


def build_settings(cls: type, values: Mapping[str, Any]) -> Any:
    """The frozen settings dataclass ``cls`` built from a config slice ``values``.

    Every field must be in ``values`` (the schema's defaults are the only defaults a run uses);
    keys that are not fields are ignored (a section may hold keys for other rules). A list
    becomes a tuple where the field's default is one.
    """
    fields = dataclasses.fields(cls)
    missing = [field.name for field in fields if field.name not in values]
    if missing:
        raise ConfigError(f"{cls.__name__}: the config slice lacks {', '.join(missing)}")
    chosen = {}
    for field in fields:
        value = values[field.name]
        if isinstance(field.default, tuple) and isinstance(value, list):
            value = tuple(value)
        chosen[field.name] = value
    return cls(**chosen)


# ----------------------------------------------------------------------------------------------
# the model list and cross-key checks


def frozen_layers(config: Mapping[str, Any], arch: str, key: str = "layers") -> list[str]:
    """The layers of ``arch`` that config key ``svm.<key>`` (``layers`` or ``lowshot_layers``)
    names, in network order (``'all'``: every one of :data:`FROZEN_LAYERS`)."""
    chosen = config["svm"][key][arch]
    every = FROZEN_LAYERS[arch]
    if chosen == "all":
        return list(every)
    return [layer for layer in every if layer in chosen]


def byte_rate(text: str) -> int | None:
    """Bytes per second of a yt-dlp rate such as ``'2M'`` or ``'500K'`` (None if unparsable)."""
    match = _BYTE_RATE.fullmatch(text.strip().upper())
    if not match:
        return None
    return round(float(match.group("num")) * 1024 ** " KMGTPEZY".index(match.group("unit") or " "))


def url_template_problem(template: str) -> str | None:
    """Why ``template`` cannot be a clip URL template (None when it can): an http(s) URL with a
    host whose only replacement field is a plain ``{ytid}``."""
    try:
        fields = [
            (name, spec, conversion)
            for _, name, spec, conversion in string.Formatter().parse(template)
            if name is not None
        ]
    except ValueError as error:
        return f"download.url_template={template!r} is not a valid template ({error})"
    names = {name for name, _, _ in fields}
    unknown = sorted(names - URL_FIELDS)
    if unknown:
        return (
            f"download.url_template={template!r} has unknown fields {unknown} (allowed: {sorted(URL_FIELDS)})"
        )
    if "ytid" not in names:
        return f"download.url_template={template!r} must contain {{ytid}}"
    if any(spec or conversion for _, spec, conversion in fields):
        return f"download.url_template={template!r}: {{ytid}} takes no conversion or format spec"
    parts = urlsplit(template.format(ytid="A" * 11))
    if parts.scheme.lower() not in ("http", "https"):
        return f"download.url_template={template!r} must be an http:// or https:// URL (got {parts.scheme!r})"
    if not parts.hostname:
        return f"download.url_template={template!r} names no host"
    return None


def _check_sources(config: Mapping[str, Any]) -> list[str]:
    """Problems of the keys that say where segments and clips come from."""
    world, download, problems = config["world"], config["download"], []
    if world == "synthetic" and download["source"] != "local":
        problems.append("world=synthetic needs download.source=local (the synthetic clips are local files)")
    if download["source"] == "local" and world == "folder":
        problems.append(
            "download.source=local cuts local_dir/<id>.mp4 for AudioSet or VGGSound ids; world=folder "
            "cuts the videos of folder.path: leave download.source and download.local_dir out"
        )
    elif download["source"] == "local" and world != "synthetic" and not download["local_dir"]:
        problems.append("download.source=local needs download.local_dir")
    folder = config["folder"]
    if world == "folder":
        if not folder["path"]:
            problems.append("world=folder needs folder.path, the folder of videos")
        labels = folder["labels"]
        if labels is not None and labels != "folders" and not labels.lower().endswith(".csv"):
            problems.append(
                f"folder.labels={labels!r} must be null, 'folders' or the path of a CSV file ending in .csv"
            )
        if folder["segment_s"] < config["select"]["min_duration_s"]:
            problems.append(
                f"folder.segment_s={folder['segment_s']} is shorter than select.min_duration_s="
                f"{config['select']['min_duration_s']}: no segment would be long enough"
            )
    if world == "vggsound" and not config["vggsound"]["csv"]:
        problems.append("world=vggsound needs vggsound.csv, the path of vggsound.csv")
    return problems


def external_archs(config: Mapping[str, Any]) -> list[str]:
    """The architectures of the voc.external checkpoints."""
    return [entry["arch"] for entry in config["voc"]["external"].values()]


def _check_external(external: Mapping[str, Any]) -> list[str]:
    """Problems of voc.external: names the model grammar cannot carry, missing weight files."""
    problems = []
    for name, entry in external.items():
        if (problem := external_problem(str(name))) is not None:
            problems.append(f"voc.external.{name}: {problem}")
        if not Path(entry["weights"]).is_file():
            problems.append(f"voc.external.{name}.weights: file {entry['weights']} does not exist")
        if entry["arch"] != "alexnet" and (entry["variant"], entry["fc_width"]) != ("batchnorm", 4096):
            problems.append(
                f"voc.external.{name}: variant and fc_width are AlexNet's keys, not {entry['arch']}'s"
            )
    return problems


def _check_sample_rates(config: Mapping[str, Any]) -> list[str]:
    """One audio stream, three rates: the source's (synthetic world), the windows'
    (``pairs.sample_rate``) and each feature's analysis rate (texture: 20 kHz; MFCC:
    ``features.mfcc.sample_rate``). A rate above the one it is resampled from only adds empty
    bands, and a band above a Nyquist frequency is empty."""
    problems = []
    window_rate, names = config["pairs"]["sample_rate"], config["features"]["names"]
    if config["world"] == "synthetic" and config["synthetic"]["audio_sample_rate"] < window_rate:
        problems.append(
            f"pairs.sample_rate={window_rate} is above synthetic.audio_sample_rate="
            f"{config['synthetic']['audio_sample_rate']}: the windows would be upsampled"
        )
    high_hz = config["features"]["texture"]["high_hz"]
    nyquist = min(window_rate, TEXTURE_SAMPLE_RATE) / 2
    if "texture" in names and high_hz > nyquist:
        problems.append(
            f"features.texture.high_hz={high_hz:g} is above {nyquist:g} Hz, the Nyquist frequency of "
            f"the audio the texture statistics see (pairs.sample_rate={window_rate}, resampled to "
            f"{TEXTURE_SAMPLE_RATE})"
        )
    mfcc_rate = config["features"]["mfcc"]["sample_rate"]
    if "mfcc" in names and mfcc_rate > window_rate:
        problems.append(
            f"features.mfcc.sample_rate={mfcc_rate} is above pairs.sample_rate={window_rate}: the "
            "windows would be upsampled and the top mel bands left empty"
        )
    return problems


def _check_consistency(config: Mapping[str, Any], problems: list[str] | None = None) -> None:
    figures = config["figures"]
    problems = list(problems or [])
    if figures["montage_feature"] not in config["features"]["names"]:
        problems.append(f"figures.montage_feature={figures['montage_feature']!r} is not in features.names")
    montage_ks = feature_ks(config, figures["montage_feature"])
    if figures["montage_k"] not in montage_ks:
        problems.append(
            f"figures.montage_k={figures['montage_k']} is not one of the k of "
            f"{figures['montage_feature']} {montage_ks} (clusters.k, clusters.per_feature)"
        )
    for feature, own in (config["pretext"].get("per_feature") or {}).items():
        stray = [arch for arch in own.get("arch") or () if arch not in config["pretext"]["arch"]]
        if stray:
            problems.append(
                f"pretext.per_feature.{feature}.arch names {stray}, not in pretext.arch "
                f"{config['pretext']['arch']} (whose baselines and settings the models need)"
            )
    all_ks = {k for feature in config["features"]["names"] for k in feature_ks(config, feature)}
    for arch in config["pretext"]["arch"]:
        own = (config["pretext"]["per_arch"].get(arch) or {}).get("k")
        if own is not None and not set(own) & all_ks:
            problems.append(
                f"pretext.per_arch.{arch}.k {own} leaves {arch} without a sound model: no feature is "
                f"clustered at those k ({sorted(all_ks)}; clusters.k, clusters.per_feature)"
            )
    sound_models = sound_model_names(config)
    if figures["activation_model"] not in sound_models:
        problems.append(
            f"figures.activation_model={figures['activation_model']!r} is not one of {sound_models}"
        )
    download = config["download"]
    problems += _check_sources(config)
    if (problem := url_template_problem(download["url_template"])) is not None:
        problems.append(problem)
    if download["rate_limit"] is not None and not byte_rate(download["rate_limit"]):
        problems.append(
            f"download.rate_limit={download['rate_limit']!r} is not a positive byte rate like '2M' or '500K'"
        )
    problems += _check_sample_rates(config)
    voc = config["voc"]
    if voc["scale_low"] > voc["scale_high"]:
        problems.append(f"voc.scale_low={voc['scale_low']} is above voc.scale_high={voc['scale_high']}")
    problems += _check_external(voc["external"])
    sizes = [
        (f"pretext.per_arch.{arch}.crop_size" if "crop_size" in config["pretext"]["per_arch"].get(arch, {})
         else "pretext.crop_size", pretext_section(config, arch)["crop_size"], arch)
        for arch in config["pretext"]["arch"]
    ]  # fmt: skip
    sizes += [
        (f"voc.per_arch.{arch}.crop_size" if "crop_size" in voc["per_arch"].get(arch, {})
         else "voc.crop_size", voc_section(config, arch)["crop_size"], arch)
        for arch in [*config["pretext"]["arch"], *external_archs(config)]
    ]  # fmt: skip
    for key, size, arch in dict.fromkeys(sizes):
        if size < MIN_INPUT_SIZE[arch]:
            problems.append(
                f"{key}={size} is below {MIN_INPUT_SIZE[arch]}, the smallest input {arch}'s layers accept"
            )
    if problems:
        raise ConfigError("inconsistent configuration:\n  " + "\n  ".join(problems))
