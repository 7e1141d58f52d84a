"""The two backbones of the paper and the checkpoint format shared by pretext and VOC stages.

AlexNet and ResNet-18 come from torchvision, randomly initialised. AlexNet's fully connected
layers (fc6, fc7) can be narrowed with ``fc_width`` (4096 in the paper; the demo uses less so
that it trains on two CPU cores). The last linear layer is "the head" that a pretext task or
the VOC task replaces.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import torch
from torch import nn
from torchvision import models

ARCHS = ("alexnet", "resnet18")
Mode = Literal["head", "all"]


def build_model(arch: str, n_outputs: int, fc_width: int = 4096) -> nn.Module:
    """A randomly initialised ``arch`` with ``n_outputs`` logits."""
    if arch == "alexnet":
        model = models.alexnet(weights=None, num_classes=n_outputs)
        if fc_width != 4096:
            model.classifier = nn.Sequential(
                nn.Dropout(0.5),
                nn.Linear(256 * 6 * 6, fc_width),
                nn.ReLU(inplace=True),
                nn.Dropout(0.5),
                nn.Linear(fc_width, fc_width),
                nn.ReLU(inplace=True),
                nn.Linear(fc_width, n_outputs),
            )
        return model
    if arch == "resnet18":
        return models.resnet18(weights=None, num_classes=n_outputs)
    raise ValueError(f"unknown architecture {arch!r}; expected one of {ARCHS}")


def output_layer(model: nn.Module) -> nn.Linear:
    """The final linear layer (AlexNet's fc8, ResNet's fc)."""
    if isinstance(model, models.AlexNet):
        return model.classifier[-1]
    if isinstance(model, models.ResNet):
        return model.fc
    raise TypeError(f"unsupported model type {type(model).__name__}")


def replace_head(model: nn.Module, n_outputs: int) -> nn.Module:
    """Swap the final linear layer for a fresh one with ``n_outputs`` logits (in place)."""
    old = output_layer(model)
    new = nn.Linear(old.in_features, n_outputs)
    if isinstance(model, models.AlexNet):
        model.classifier[-1] = new
    else:
        model.fc = new
    return model


def head_modules(model: nn.Module) -> list[nn.Module]:
    """The layers that "head" fine-tuning trains.

    AlexNet: fc6-fc8 (the whole classifier, from pool5). ResNet-18: everything after the last
    residual stage (global pool and fc).
    """
    if isinstance(model, models.AlexNet):
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
    """Named convolutional stages, for activation figures (AlexNet conv1..conv5, ResNet layer1..4)."""
    if isinstance(model, models.AlexNet):
        convs = [m for m in model.features if isinstance(m, nn.Conv2d)]
        return {f"conv{i + 1}": conv for i, conv in enumerate(convs)}
    if isinstance(model, models.ResNet):
        return {name: getattr(model, name) for name in ("layer1", "layer2", "layer3", "layer4")}
    raise TypeError(f"unsupported model type {type(model).__name__}")


def save_checkpoint(
    path: str | Path, model: nn.Module, arch: str, n_outputs: int, fc_width: int, **extra
) -> None:
    """Write the model file read by :func:`load_model` (atomically)."""
    from soundsup.io import atomic_path

    payload = {
        "arch": arch,
        "n_outputs": n_outputs,
        "fc_width": fc_width,
        "state_dict": model.state_dict(),
        **extra,
    }
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def load_model(path: str | Path, map_location: str | torch.device = "cpu") -> tuple[nn.Module, dict]:
    """Rebuild a model saved by :func:`save_checkpoint`; returns (model, the saved dict)."""
    payload = torch.load(path, map_location=map_location, weights_only=False)
    for key in ("arch", "n_outputs", "fc_width", "state_dict"):
        if key not in payload:
            raise ValueError(f"{path}: not a soundsup model file (missing {key!r})")
    model = build_model(payload["arch"], payload["n_outputs"], payload["fc_width"])
    model.load_state_dict(payload["state_dict"])
    return model, payload
