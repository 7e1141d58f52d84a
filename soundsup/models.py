"""The two backbones of the paper and the model file format shared by pretext and VOC stages.

``alexnet`` is the batch-norm AlexNet that the authors trained, DeepCluster's
(``models/alexnet.py``): 96-256-384-384-256 convolutions, each followed by batch norm and
ReLU, conv weights N(0, sqrt(2 / (k^2 x out_channels))), linear weights N(0, 0.01), zero
biases. torchvision's plain AlexNet (64-192-384-256-256, no batch norm) is kept only as the
``torchvision`` variant, for the ImageNet baseline, because its pretrained weights exist only
for it. ResNet-18 is torchvision's. AlexNet's fully connected layers (fc6, fc7) can be narrowed
with ``fc_width`` (4096 in the paper; the demo uses less so that it trains on two CPU cores).

Both AlexNets expose ``features`` (conv1..pool5), ``avgpool`` (adaptive to 6 x 6, so crops
smaller than 224 px work) and ``classifier`` (fc6, fc7 and, last, the output layer fc8). The
last linear layer is "the head" that a pretext task or the VOC task replaces.

A model file records the architecture *and* its variant; files written before the variant
was recorded held torchvision's AlexNet under the name ``alexnet`` and are refused.
"""

from __future__ import annotations

import errno
import math
import os
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn
from torchvision import models

from soundsup.io import os_error_in
from soundsup.names import ARCHS, MIN_INPUT_SIZE  # noqa: F401  (MIN_INPUT_SIZE: re-exported)

VARIANTS = {"alexnet": ("batchnorm", "torchvision"), "resnet18": ("torchvision",)}
DEFAULT_VARIANT = {"alexnet": "batchnorm", "resnet18": "torchvision"}
MODEL_FORMAT = 2  # 1 (no "format" key): AlexNet meant torchvision's, without batch norm
Mode = Literal["head", "all"]

# (out_channels, kernel, stride, padding) of conv1..conv5; "M" = max pool 3 x 3, stride 2
_ALEXNET_LAYOUT = (
    (96, 11, 4, 2), "M", (256, 5, 1, 2), "M", (384, 3, 1, 1), (384, 3, 1, 1), (256, 3, 1, 1), "M",
)  # fmt: skip


class BatchNormAlexNet(nn.Module):
    """DeepCluster's AlexNet: (B, 3, H, W) float -> (B, n_outputs) logits.

    conv 11x11/4 96 -> BN -> ReLU -> maxpool 3/2; conv 5x5 256 -> BN -> ReLU -> maxpool;
    conv 3x3 384 -> BN -> ReLU; conv 3x3 384 -> BN -> ReLU; conv 3x3 256 -> BN -> ReLU ->
    maxpool; adaptive average pool to 6 x 6 (the identity at 224 px); classifier Dropout,
    fc6, ReLU, Dropout, fc7, ReLU, fc8.
    """

    def __init__(self, n_outputs: int, fc_width: int = 4096) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        in_channels = 3
        for spec in _ALEXNET_LAYOUT:
            if spec == "M":
                layers.append(nn.MaxPool2d(kernel_size=3, stride=2))
                continue
            out_channels, kernel, stride, padding = spec
            layers += [
                nn.Conv2d(in_channels, out_channels, kernel, stride=stride, padding=padding),
                nn.BatchNorm2d(out_channels),
                nn.ReLU(inplace=True),
            ]
            in_channels = out_channels
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d((6, 6))
        self.classifier = _alexnet_classifier(fc_width, n_outputs)
        self._initialise()

    def _initialise(self) -> None:
        """DeepCluster's init, drawn from the global torch generator (seed it first)."""
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                fan_out = module.kernel_size[0] * module.kernel_size[1] * module.out_channels
                nn.init.normal_(module.weight, 0.0, math.sqrt(2.0 / fan_out))
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, 0.0, 0.01)
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.avgpool(self.features(x))
        return self.classifier(torch.flatten(x, 1))


def _alexnet_classifier(fc_width: int, n_outputs: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Dropout(0.5),
        nn.Linear(256 * 6 * 6, fc_width),
        nn.ReLU(inplace=True),
        nn.Dropout(0.5),
        nn.Linear(fc_width, fc_width),
        nn.ReLU(inplace=True),
        nn.Linear(fc_width, n_outputs),
    )


_ALEXNETS = (BatchNormAlexNet, models.AlexNet)


def build_model(arch: str, n_outputs: int, fc_width: int = 4096, variant: str | None = None) -> nn.Module:
    """A randomly initialised ``arch`` with ``n_outputs`` logits (seed the global torch RNG first).

    ``variant`` (default :data:`DEFAULT_VARIANT`): for ``alexnet``, ``'batchnorm'`` (the
    pretext network and the random baseline) or ``'torchvision'`` (torchvision's AlexNet, for
    its ImageNet weights).
    """
    if arch not in ARCHS:
        raise ValueError(f"unknown architecture {arch!r}; expected one of {ARCHS}")
    variant = DEFAULT_VARIANT[arch] if variant is None else variant
    if variant not in VARIANTS[arch]:
        raise ValueError(f"unknown {arch} variant {variant!r}; expected one of {VARIANTS[arch]}")
    if arch == "resnet18":
        return models.resnet18(weights=None, num_classes=n_outputs)
    if variant == "batchnorm":
        return BatchNormAlexNet(n_outputs, fc_width)
    model = models.alexnet(weights=None, num_classes=n_outputs)
    if fc_width != 4096:
        model.classifier = _alexnet_classifier(fc_width, n_outputs)
    return model


def model_variant(model: nn.Module) -> tuple[str, str]:
    """(arch, variant) of a model built by :func:`build_model`."""
    if isinstance(model, BatchNormAlexNet):
        return "alexnet", "batchnorm"
    if isinstance(model, models.AlexNet):
        return "alexnet", "torchvision"
    if isinstance(model, models.ResNet):
        return "resnet18", "torchvision"
    raise TypeError(f"unsupported model type {type(model).__name__}")


def output_layer(model: nn.Module) -> nn.Linear:
    """The final linear layer (AlexNet's fc8, ResNet's fc)."""
    if isinstance(model, _ALEXNETS):
        return model.classifier[-1]
    if isinstance(model, models.ResNet):
        return model.fc
    raise TypeError(f"unsupported model type {type(model).__name__}")


def replace_head(model: nn.Module, n_outputs: int) -> nn.Module:
    """Swap the final linear layer for a fresh one with ``n_outputs`` logits (in place)."""
    old = output_layer(model)
    new = nn.Linear(old.in_features, n_outputs)
    if isinstance(model, _ALEXNETS):
        model.classifier[-1] = new
    else:
        model.fc = new
    return model


def head_modules(model: nn.Module) -> list[nn.Module]:
    """The layers that "head" fine-tuning trains.

    AlexNet: fc6-fc8 (the whole classifier, from pool5). ResNet-18: everything after the last
    residual stage (global pool and fc).
    """
    if isinstance(model, _ALEXNETS):
        return [model.classifier]
    if isinstance(model, models.ResNet):
        return [model.fc]
    raise TypeError(f"unsupported model type {type(model).__name__}")


def set_trainable(model: nn.Module, mode: Mode) -> list[nn.Parameter]:
    """Freeze all but the head (``mode='head'``) or nothing (``'all'``); return trainable params.

    In ``head`` mode the frozen layers also stay in eval mode (batch-norm statistics fixed), see
    :func:`train_mode`.
    """
    if mode not in ("head", "all"):
        raise ValueError(f"unknown fine-tuning mode {mode!r}; expected 'head' or 'all'")
    for parameter in model.parameters():
        parameter.requires_grad = mode == "all"
    if mode == "head":
        for module in head_modules(model):
            for parameter in module.parameters():
                parameter.requires_grad = True
    return [p for p in model.parameters() if p.requires_grad]


def train_mode(model: nn.Module, mode: Mode) -> None:
    """Put ``model`` in training mode; in ``head`` mode the frozen trunk stays in eval mode."""
    model.train()
    if mode == "head":
        model.eval()
        for module in head_modules(model):
            module.train()


def conv_layers(model: nn.Module) -> dict[str, nn.Module]:
    """Named convolutional stages, for activation figures and per-layer evaluation.

    AlexNet: ``conv1``..``conv5``, the Conv2d modules (in the batch-norm AlexNet their output
    is taken before its batch norm); ResNet-18: ``layer1``..``layer4``.
    """
    if isinstance(model, _ALEXNETS):
        convs = [m for m in model.features if isinstance(m, nn.Conv2d)]
        return {f"conv{i + 1}": conv for i, conv in enumerate(convs)}
    if isinstance(model, models.ResNet):
        return {name: getattr(model, name) for name in ("layer1", "layer2", "layer3", "layer4")}
    raise TypeError(f"unsupported model type {type(model).__name__}")


# ---------------------------------------------------------------------------------------------
# files


class WriteError(OSError):
    """A file could not be written (full disk, quota, I/O error); the message names it and why."""


def write_error(path: str | Path, what: str, error: BaseException) -> WriteError:
    """A :class:`WriteError` for ``what`` at ``path``: the OS cause (ENOSPC, EDQUOT, EIO, ...)
    when one is in ``error``'s chain, and the space left on the file system."""
    cause = os_error_in(error)  # torch wraps a failed write in a RuntimeError
    if cause is not None:
        reason = f"{errno.errorcode.get(cause.errno, cause.errno)}: {os.strerror(cause.errno)}"
    else:
        reason = str(error)
    try:
        stats = os.statvfs(Path(path).parent)
        free = f"; {stats.f_bavail * stats.f_frsize / 1e6:.1f} MB free on its file system"
    except OSError:
        free = ""
    message = f"cannot write {what} {path} ({reason}{free})"
    return WriteError(cause.errno, message) if cause is not None else WriteError(message)


def save_torch(path: str | Path, payload: Any, what: str = "file") -> None:
    """``torch.save(payload)`` to ``path`` atomically; a failed write raises :class:`WriteError`
    naming the path and its cause, removes the partial file and leaves an older ``path`` intact."""
    from soundsup.io import atomic_path

    try:
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as handle:  # a Python file keeps the OSError that torch's writer hides
                torch.save(payload, handle)
    except (OSError, RuntimeError) as error:
        raise write_error(path, what, error) from error


def save_checkpoint(
    path: str | Path, model: nn.Module, arch: str, n_outputs: int, fc_width: int, **extra
) -> None:
    """Write the model file read by :func:`load_model` (atomically; :class:`WriteError` on failure)."""
    model_arch, variant = model_variant(model)
    if model_arch != arch:
        raise ValueError(f"save_checkpoint: the model is a {model_arch}, not a {arch}")
    payload = {
        "format": MODEL_FORMAT,
        "arch": arch,
        "variant": variant,
        "n_outputs": n_outputs,
        "fc_width": fc_width,
        "state_dict": model.state_dict(),
        **extra,
    }
    save_torch(path, payload, "model file")


def backbone_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The trunk's state dict: every entry but the output layer's (AlexNet's fc8, ResNet's fc).

    It loads with ``strict=True`` into the architecture's definition once its output layer is
    an ``nn.Identity()``: torchvision's ``resnet18()``, or this module's
    ``build_model("alexnet", n, fc_width)`` (DeepCluster's batch-norm AlexNet).
    """
    head = output_layer(model)
    head_ids = {id(tensor) for tensor in head.state_dict(keep_vars=True).values()}
    return {
        name: tensor.detach().cpu().clone()
        for name, tensor in model.state_dict(keep_vars=True).items()
        if id(tensor) not in head_ids
    }


def save_backbone(path: str | Path, model: nn.Module) -> None:
    """Write :func:`backbone_state_dict` as a plain ``torch.save`` file (atomically)."""
    save_torch(path, backbone_state_dict(model), "backbone file")


def output_layer_prefix(model: nn.Module) -> str:
    """The state-dict prefix of the output layer (``'fc.'``, AlexNet's ``'classifier.6.'``)."""
    head = output_layer(model)
    for name, module in model.named_modules():
        if module is head:
            return f"{name}."
    raise TypeError(f"{type(model).__name__} has no output layer")  # output_layer found one


def load_trunk(model: nn.Module, path: str | Path) -> nn.Module:
    """Load the trunk of ``model`` (every layer but its output layer, which keeps its weights)
    from the torch file ``path``: a plain state dict (``backbone.pth``, torchvision's), or a dict
    with a ``state_dict`` entry (``model.pt``); a ``module.`` prefix (DataParallel) and the
    file's own output layer are dropped. Every trunk tensor must be there with its shape;
    a missing or extra key or a wrong shape raises ``ValueError`` naming the file and the keys.
    """
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch.load raises many types (pickle, zip, runtime) on a bad file
        raise ValueError(f"{path}: cannot be read as a torch state dict ({error})") from error
    if isinstance(payload, dict) and isinstance(payload.get("state_dict"), dict):
        payload = payload["state_dict"]
    if not isinstance(payload, dict) or not all(isinstance(v, torch.Tensor) for v in payload.values()):
        raise ValueError(f"{path}: not a state dict (a mapping of names to tensors)")
    head = output_layer_prefix(model)
    state = {key.removeprefix("module."): value for key, value in payload.items()}
    state = {key: value for key, value in state.items() if not key.startswith(head)}
    expected = {key: value for key, value in model.state_dict().items() if not key.startswith(head)}
    # num_batches_tracked (a counter, unused with momentum) is absent from older torchvision files
    missing = sorted(key for key in set(expected) - set(state) if not key.endswith("num_batches_tracked"))
    extra = sorted(set(state) - set(expected))
    shapes = [
        f"{key} {tuple(state[key].shape)} (expected {tuple(value.shape)})"
        for key, value in expected.items()
        if key in state and state[key].shape != value.shape
    ]
    if missing or extra or shapes:
        arch, variant = model_variant(model)
        problems = [
            f"missing {', '.join(missing[:6])}{' …' if len(missing) > 6 else ''}" if missing else "",
            f"unexpected {', '.join(extra[:6])}{' …' if len(extra) > 6 else ''}" if extra else "",
            f"wrong shape {', '.join(shapes[:4])}" if shapes else "",
        ]
        raise ValueError(f"{path}: not the trunk of {arch} ({variant}): " + "; ".join(filter(None, problems)))
    model.load_state_dict(state, strict=False)
    return model


def load_model(path: str | Path, map_location: str | torch.device = "cpu") -> tuple[nn.Module, dict]:
    """Rebuild a model saved by :func:`save_checkpoint`; returns (model, the saved dict)."""
    payload = torch.load(path, map_location=map_location, weights_only=False)
    if not isinstance(payload, dict) or "state_dict" not in payload:
        raise ValueError(f"{path}: not a soundsup model file")
    if payload.get("format") != MODEL_FORMAT:
        raise ValueError(
            f"{path}: a model file of format {payload.get('format', 1)}, this code reads format "
            f"{MODEL_FORMAT} (older files hold torchvision's AlexNet without batch norm under the "
            "name 'alexnet'); delete it and train it again"
        )
    for key in ("arch", "variant", "n_outputs", "fc_width"):
        if key not in payload:
            raise ValueError(f"{path}: not a soundsup model file (missing {key!r})")
    model = build_model(payload["arch"], payload["n_outputs"], payload["fc_width"], payload["variant"])
    model.load_state_dict(payload["state_dict"])
    return model, payload
