"""The vocabulary of the workflow: the VOC classes, the architectures, features, fine-tuning
modes and baselines, and the grammar of a model's name.

A model is named ``{feature}-k{k}-{arch}`` (pretrained on sound clusters), ``random-{arch}``,
``imagenet-{arch}`` (the baselines) or ``{name}-{arch}`` (an outside checkpoint the config
names under ``voc.external``). This module is the only place that spells that grammar: the
config, the rules' wildcard constraints, the fine-tuning adapter and the tables all use
:class:`ModelName`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

VOC_CLASSES: tuple[str, ...] = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train",
    "tvmonitor",
)  # fmt: skip
ARCHS: tuple[str, ...] = ("alexnet", "resnet18")
FEATURES: tuple[str, ...] = ("texture", "mfcc")
MODES: tuple[str, ...] = ("head", "all")
BASELINES: tuple[str, ...] = ("random", "imagenet")
# init of a model: pretrained on sound clusters, a baseline, or an outside checkpoint
INITS: tuple[str, ...] = ("sound", *BASELINES, "external")
# the smallest square input each architecture accepts: below 63 px AlexNet's pool5 map vanishes
# (conv1 11x11/4 pad 2, three 3x3/2 max-pools); tests/test_config.py checks it on the network
MIN_INPUT_SIZE: dict[str, int] = {"alexnet": 63, "resnet18": 1}
# the rate (Hz) of McDermott & Simoncelli's texture statistics: the audio windows (at
# pairs.sample_rate) are resampled to it, so their filterbank ends at its Nyquist frequency
TEXTURE_SAMPLE_RATE = 20000

_EXTERNAL_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_RESERVED = frozenset((*FEATURES, *BASELINES, "sound", "external"))


class ModelNameError(ValueError):
    """A model name does not follow the grammar; the message says what it expected."""


@dataclass(frozen=True)
class ModelName:
    """One model: ``init`` (one of :data:`INITS`), ``arch``, and ``feature`` and ``k`` for a
    sound model or ``name`` for an outside checkpoint. ``str()`` gives the name back."""

    init: str
    arch: str
    feature: str | None = None
    k: int | None = None
    name: str | None = None

    @classmethod
    def parse(cls, text: str) -> ModelName:
        parts = str(text).split("-")
        if len(parts) == 3 and parts[0] in FEATURES and parts[2] in ARCHS:
            k = parts[1][1:]
            if parts[1].startswith("k") and k.isdigit() and not k.startswith("0"):
                return cls("sound", parts[2], feature=parts[0], k=int(k))
        if len(parts) == 2 and parts[1] in ARCHS:
            if parts[0] in BASELINES:
                return cls(parts[0], parts[1])
            if external_problem(parts[0]) is None:
                return cls("external", parts[1], name=parts[0])
        raise ModelNameError(
            f"bad model name {text!r}: expected '{{feature}}-k{{k}}-{{arch}}' (feature in "
            f"{FEATURES}), 'random-{{arch}}', 'imagenet-{{arch}}' or '{{name}}-{{arch}}' for a "
            f"voc.external checkpoint, with arch in {ARCHS}"
        )

    def __str__(self) -> str:
        if self.init == "sound":
            return f"{self.feature}-k{self.k}-{self.arch}"
        if self.init == "external":
            return f"{self.name}-{self.arch}"
        return f"{self.init}-{self.arch}"

    def parts(self) -> dict[str, Any]:
        """``{"model", "init", "feature", "k", "arch"}``: the columns the tables carry."""
        return {
            "model": str(self),
            "init": self.init,
            "feature": self.feature,
            "k": self.k,
            "arch": self.arch,
        }


def external_problem(name: str) -> str | None:
    """Why ``name`` cannot name a voc.external checkpoint, or None when it can."""
    if not _EXTERNAL_NAME.match(name):
        return "a name is lower-case letters, digits and '_', starting with a letter"
    if name in _RESERVED:
        return f"{name!r} is a name of the workflow's own models"
    return None


def feature_ks(config: Mapping[str, Any], feature: str) -> list[int]:
    """The numbers of clusters that ``feature`` is clustered into: ``clusters.per_feature[feature].k``
    where the config sets it, else ``clusters.k``."""
    own = ((config["clusters"].get("per_feature") or {}).get(feature) or {}).get("k")
    return list(own if own is not None else config["clusters"]["k"])


def feature_archs(config: Mapping[str, Any], feature: str) -> list[str]:
    """The architectures trained on ``feature``'s clusters: ``pretext.per_feature[feature].arch``
    where the config sets it, else ``pretext.arch``."""
    own = ((config["pretext"].get("per_feature") or {}).get(feature) or {}).get("arch")
    return list(own if own is not None else config["pretext"]["arch"])


def trains_at(config: Mapping[str, Any], arch: str, k: int) -> bool:
    """Whether ``arch`` trains on clusterings of ``k``: ``k`` is in ``pretext.per_arch[arch].k``
    where the config sets it; every k where it does not."""
    own = ((config["pretext"].get("per_arch") or {}).get(arch) or {}).get("k")
    return own is None or k in own


def sound_model_names(config: Mapping[str, Any]) -> list[str]:
    """The pretext models of a config: ``{feature}-k{k}-{arch}`` for every feature, each of its
    k (:func:`feature_ks`) and each of its architectures (:func:`feature_archs`) that trains
    at that k (:func:`trains_at`)."""
    return [
        str(ModelName("sound", arch, feature=feature, k=k))
        for feature in config["features"]["names"]
        for k in feature_ks(config, feature)
        for arch in feature_archs(config, feature)
        if trains_at(config, arch, k)
    ]


def model_names(config: Mapping[str, Any]) -> list[str]:
    """Every model that the VOC stage evaluates: sound models, then baselines, then outside
    checkpoints. ``imagenet-{arch}`` only where ImageNet weights are configured for ``arch``."""
    archs = config["pretext"]["arch"]
    names = sound_model_names(config)
    baselines = config["voc"]["baselines"]
    if "random" in baselines:
        names += [f"random-{arch}" for arch in archs]
    if "imagenet" in baselines:
        weights = config["voc"]["imagenet_weights"]
        names += [f"imagenet-{arch}" for arch in archs if weights.get(arch)]
    for name, entry in (config["voc"].get("external") or {}).items():
        names.append(str(ModelName("external", entry["arch"], name=name)))
    return names


def wildcard_pattern(features: Iterable[str] = FEATURES, external: Iterable[str] = ()) -> str:
    """The regular expression of a model name, for the rules' wildcard constraints."""
    arch = "|".join(ARCHS)
    inits = "|".join((*BASELINES, *external))
    return rf"({'|'.join(features)})-k[1-9]\d*-({arch})|({inits})-({arch})"
