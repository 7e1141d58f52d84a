"""Fine-tuning on PASCAL VOC 2007 classification, the protocol of philkr/voc-classification.

The backbone's output layer is replaced by 20 logits (fc8-style init: N(0, 0.01), bias 0).
"head" trains fc6-fc8 of AlexNet (avgpool + fc of ResNet-18) on a frozen trunk; "all" trains
everything. Every training and test image is a random square crop of side crop_size * s,
s ~ U[scale_low, min(scale_high, H / crop_size, W / crop_size)], placed uniformly, mirrored with
probability 1/2 and resized bilinearly to crop_size. SGD with momentum, biases at
``bias_lr_mult`` x lr, weight decay, gradient-norm clipping, lr x ``lr_gamma`` every ``lr_step``
iterations; loss = sigmoid cross-entropy summed over the classes and divided by the batch size,
with label 0 (difficult only) masked out. The final weights score the test set: the sum of the
logits over ``test_augmentations`` random crops. Forward passes run under bf16 autocast where
the hardware multiplies bf16 natively (``precision``; see :func:`soundsup.device.autocast_dtype`).

All randomness comes from the seed: crops and batch order from explicit generators, dropout
from a forked global generator (restored afterwards), so a CPU run is deterministic.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision import models as tv_models

from soundsup.device import autocast, autocast_dtype, memory_format
from soundsup.models import (
    ARCHS,
    build_model,
    load_model,
    output_layer,
    replace_head,
    set_trainable,
    train_mode,
)
from soundsup.voc import VOC_CLASSES

log = logging.getLogger(__name__)

N_CLASSES = len(VOC_CLASSES)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
BACKBONE_SPECS = ("pretext", "random", "imagenet")
_TORCHVISION_WEIGHTS = {
    "alexnet": tv_models.AlexNet_Weights.IMAGENET1K_V1,
    "resnet18": tv_models.ResNet18_Weights.IMAGENET1K_V1,
}


@dataclass(frozen=True)
class FinetuneConfig:
    """The ``voc`` config keys of the fine-tuning protocol (defaults: philkr's / the paper's)."""

    iterations: int = 80000
    batch_size: int = 16
    lr: float = 0.001
    bias_lr_mult: float = 2.0
    lr_step: int = 10000
    lr_gamma: float = 0.5
    momentum: float = 0.9
    weight_decay: float = 1e-6
    clip_grad_norm: float = 10.0
    crop_size: int = 227
    scale_low: float = 0.5
    scale_high: float = 2.0
    test_augmentations: int = 10
    max_side: int = 500
    log_every: int = 100
    precision: str = "auto"  # 'auto' | 'bf16' | 'fp32'

    def __post_init__(self) -> None:
        positive = ("iterations", "batch_size", "lr", "lr_step", "lr_gamma", "clip_grad_norm", "crop_size")
        for name in (*positive, "scale_low", "scale_high", "test_augmentations", "max_side", "log_every"):
            if not getattr(self, name) > 0:
                raise ValueError(f"voc.{name} must be positive; got {getattr(self, name)!r}")
        if self.scale_low > self.scale_high:
            raise ValueError(f"voc.scale_low ({self.scale_low}) exceeds voc.scale_high ({self.scale_high})")


class WeightsUnavailable(RuntimeError):
    """ImageNet weights were asked for but neither a local file nor a download gives them."""


# ---------------------------------------------------------------------------------------------
# backbones


def _imagenet_backbone(arch: str, imagenet_weights: str | None) -> nn.Module:
    """torchvision's ImageNet ``arch`` from a local state-dict file, or downloaded (``'torchvision'``)."""
    if imagenet_weights is None:
        raise WeightsUnavailable(
            f"no ImageNet weights configured for {arch} (voc.imagenet_weights.{arch} is null)"
        )
    model = build_model(arch, 1000, 4096)
    if imagenet_weights == "torchvision":
        weights = _TORCHVISION_WEIGHTS[arch]
        try:
            state_dict = weights.get_state_dict(progress=False)
        except (OSError, RuntimeError, ValueError) as error:
            raise WeightsUnavailable(f"downloading torchvision's {weights} failed: {error}") from error
        model.load_state_dict(state_dict)
        return model
    path = Path(imagenet_weights)
    if not path.is_file():
        raise WeightsUnavailable(f"ImageNet weights file {path} for {arch} does not exist")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch.load raises many types (pickle, zip, runtime) on a bad file
        raise ValueError(f"{path}: cannot be read as a torch state dict ({error})") from error
    state_dict = payload.get("state_dict", payload) if isinstance(payload, dict) else payload
    try:
        model.load_state_dict(state_dict)
    except (RuntimeError, TypeError, AttributeError) as error:
        raise ValueError(f"{path}: not a state dict of torchvision's {arch} ({error})") from error
    return model


def load_backbone(
    spec: str, arch: str, fc_width: int, model_path: str | None, imagenet_weights: str | None
) -> nn.Module:
    """The network that fine-tuning starts from (its original output layer still in place).

    ``spec``: ``'pretext'`` (the sound-pretrained model file ``model_path``), ``'random'`` (a
    fresh ``arch`` with 1000 outputs and ``fc_width``; seed the global torch RNG first) or
    ``'imagenet'`` (``imagenet_weights``: a local state-dict file, or ``'torchvision'`` for
    torchvision's own download; torchvision's AlexNet has fc width 4096 whatever ``fc_width``).
    Raises :class:`WeightsUnavailable` when ImageNet weights cannot be had.
    """
    if arch not in ARCHS:
        raise ValueError(f"unknown architecture {arch!r}; expected one of {ARCHS}")
    if spec == "pretext":
        if not model_path:
            raise ValueError("a 'pretext' backbone needs model_path")
        if not Path(model_path).is_file():
            raise FileNotFoundError(f"pretext model {model_path} does not exist")
        model, payload = load_model(model_path)
        if payload["arch"] != arch:
            raise ValueError(f"{model_path}: holds a {payload['arch']}, expected {arch}")
        return model
    if spec == "random":
        return build_model(arch, 1000, fc_width)
    if spec == "imagenet":
        return _imagenet_backbone(arch, imagenet_weights)
    raise ValueError(f"unknown backbone spec {spec!r}; expected one of {BACKBONE_SPECS}")


def backbone_from_spec(backbone: Mapping[str, Any], model_path: str | None) -> nn.Module:
    """The network a rule's ``backbone`` params describe (rules/common.smk, ``backbone_params``):
    ``init`` (``sound``: the pretext model file ``model_path``; ``random``: a fresh network of
    ``fc_width``, so seed the global torch RNG first; ``imagenet``: the state-dict file
    ``weights``) and ``arch``. See :func:`load_backbone`."""
    init = backbone["init"]
    return load_backbone(
        "pretext" if init == "sound" else init,
        arch=backbone["arch"],
        fc_width=backbone.get("fc_width", 4096),
        model_path=model_path or None,
        imagenet_weights=backbone.get("weights"),
    )


# ---------------------------------------------------------------------------------------------
# crops


def sample_crops(
    shapes: Sequence[tuple[int, int]], config: FinetuneConfig, generator: torch.Generator
) -> list[tuple[int, int, int, bool]]:
    """philkr's random square crops: one ``(top, left, side, mirror)`` per image (H, W) in ``shapes``.

    side = round(crop_size * s), s ~ U[scale_low, min(scale_high, H / crop_size, W / crop_size)]
    (an image smaller than scale_low * crop_size gives its whole shorter side); the position is
    uniform over the integer offsets where the crop fits; mirror with probability 1/2. Draws
    4 float64 numbers per image from ``generator``.
    """
    draws = torch.rand((len(shapes), 4), generator=generator, dtype=torch.float64).tolist()
    crops = []
    for (height, width), (scale_draw, top_draw, left_draw, mirror_draw) in zip(shapes, draws, strict=True):
        high = min(config.scale_high, height / config.crop_size, width / config.crop_size)
        low = min(config.scale_low, high)
        side = round(config.crop_size * (low + (high - low) * scale_draw))
        side = min(max(side, 1), height, width)
        top = min(int(top_draw * (height - side + 1)), height - side)
        left = min(int(left_draw * (width - side + 1)), width - side)
        crops.append((top, left, side, mirror_draw < 0.5))
    return crops


def crop_batch(
    images: Sequence[Tensor], crops: Sequence[tuple[int, int, int, bool]], crop_size: int
) -> Tensor:
    """Cut and resize crops: ``images`` (H_i, W_i, 3) uint8 tensors -> (B, 3, crop_size, crop_size)
    float32, ImageNet-normalised, on the images' device."""
    out = []
    for image, (top, left, side, mirror) in zip(images, crops, strict=True):
        patch = image[top : top + side, left : left + side].permute(2, 0, 1).unsqueeze(0).float()
        if side != crop_size:
            patch = F.interpolate(
                patch, size=(crop_size, crop_size), mode="bilinear", align_corners=False, antialias=True
            )
        out.append(patch.flip(-1) if mirror else patch)
    batch = torch.cat(out).div_(255.0)
    mean = torch.tensor(IMAGENET_MEAN, device=batch.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=batch.device).view(1, 3, 1, 1)
    return (batch - mean) / std


# ---------------------------------------------------------------------------------------------
# training and scoring


def _seeds(seed: int) -> dict[str, int]:
    """Independent 63-bit seeds for the head init, the training crops, dropout and the test crops."""
    state = np.random.SeedSequence(seed).generate_state(4, dtype=np.uint64) >> np.uint64(1)
    return dict(zip(("head", "train", "dropout", "test"), (int(value) for value in state), strict=True))


def _new_head(model: nn.Module, generator: torch.Generator) -> nn.Linear:
    """Replace the output layer by 20 logits, weights N(0, 0.01) and zero bias (Caffe's fc8)."""
    replace_head(model, N_CLASSES)
    head = output_layer(model)
    with torch.no_grad():
        nn.init.normal_(head.weight, 0.0, 0.01, generator=generator)
        head.bias.zero_()
    return head


def _optimizer(model: nn.Module, config: FinetuneConfig) -> torch.optim.SGD:
    """SGD over the trainable parameters: biases at ``bias_lr_mult`` x lr (group 1), weights at lr."""
    named = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
    weights = [p for name, p in named if not name.endswith("bias")]
    biases = [p for name, p in named if name.endswith("bias")]
    groups = [
        {"params": weights, "lr": config.lr, "base_lr": config.lr},
        {"params": biases, "lr": config.lr * config.bias_lr_mult, "base_lr": config.lr * config.bias_lr_mult},
    ]
    fused = all(p.device.type in ("cpu", "cuda") for p in weights + biases)
    return torch.optim.SGD(
        groups, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay, fused=fused
    )


def masked_bce(logits: Tensor, labels: Tensor) -> Tensor:
    """Sigmoid cross-entropy summed over classes and images, divided by the batch size.

    ``logits`` (B, 20) float; ``labels`` (B, 20) in {1, -1, 0}: 1 -> target 1, -1 -> target 0,
    0 (difficult only) -> no loss.
    """
    targets = (labels == 1).to(logits.dtype)
    mask = (labels != 0).to(logits.dtype)
    losses = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    return (losses * mask).sum() / logits.shape[0]


def _batch_indices(n_items: int, batch_size: int, generator: torch.Generator) -> Iterator[list[int]]:
    """Endless batches of indices: shuffled epochs, one after another (an epoch may span batches)."""
    pending: list[int] = []
    while True:
        while len(pending) < batch_size:
            pending.extend(torch.randperm(n_items, generator=generator).tolist())
        yield pending[:batch_size]
        pending = pending[batch_size:]


def _to_device(images: Sequence[np.ndarray], device: torch.device) -> list[Tensor]:
    """(H, W, 3) uint8 arrays -> tensors on ``device`` (no copy on CPU for writable C-order arrays)."""
    tensors = []
    for index, image in enumerate(images):
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"image {index}: expected (H, W, 3) uint8, got {image.shape} {image.dtype}")
        if not (image.flags.c_contiguous and image.flags.writeable):
            image = np.array(image, order="C")
        tensors.append(torch.from_numpy(image).to(device))
    return tensors


def _forward(model: nn.Module, batch: Tensor, device: torch.device, amp: torch.dtype | None) -> Tensor:
    with autocast(device, amp):
        logits = model(batch.contiguous(memory_format=memory_format(device, amp)))
    return logits.float()


def _train(
    model: nn.Module,
    images: list[Tensor],
    labels: Tensor,
    mode: str,
    config: FinetuneConfig,
    generator: torch.Generator,
    device: torch.device,
) -> list[dict]:
    """Run ``config.iterations`` SGD steps; return one history record per log step."""
    trainable = [p for p in model.parameters() if p.requires_grad]
    amp = autocast_dtype(device, config.precision)
    optimizer = _optimizer(model, config)
    batches = _batch_indices(len(images), config.batch_size, generator)
    shapes = [tuple(image.shape[:2]) for image in images]
    history: list[dict] = []
    window_loss = torch.zeros((), device=device)
    window_start, window_steps = time.perf_counter(), 0
    train_mode(model, mode)
    for iteration in range(1, config.iterations + 1):
        factor = config.lr_gamma ** ((iteration - 1) // config.lr_step)
        for group in optimizer.param_groups:
            group["lr"] = group["base_lr"] * factor
        indices = next(batches)
        crops = sample_crops([shapes[i] for i in indices], config, generator)
        batch = crop_batch([images[i] for i in indices], crops, config.crop_size)
        loss = masked_bce(_forward(model, batch, device, amp), labels[indices])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(trainable, config.clip_grad_norm)
        optimizer.step()
        window_loss += loss.detach()
        window_steps += 1
        if iteration % config.log_every == 0 or iteration == config.iterations:
            mean_loss = float(window_loss) / window_steps
            if not np.isfinite(mean_loss):
                raise FloatingPointError(f"VOC fine-tuning loss is {mean_loss} at iteration {iteration}")
            seconds = time.perf_counter() - window_start
            record = {
                "iteration": iteration,
                "loss": mean_loss,
                "lr": config.lr * factor,
                "images_per_second": window_steps * config.batch_size / max(seconds, 1e-9),
            }
            history.append(record)
            log.info(
                "iteration %d/%d  loss %.4f  lr %.2e  %.1f images/s",
                iteration, config.iterations, mean_loss, record["lr"], record["images_per_second"],
            )  # fmt: skip
            window_loss.zero_()
            window_start, window_steps = time.perf_counter(), 0
    return history


@torch.inference_mode()
def predict_voc(
    model: nn.Module,
    images: list[Tensor],
    config: FinetuneConfig,
    generator: torch.Generator,
    device: torch.device,
) -> np.ndarray:
    """Test scores (N, 20) float32: logits summed over ``config.test_augmentations`` random crops."""
    model.eval()
    amp = autocast_dtype(device, config.precision)
    shapes = [tuple(image.shape[:2]) for image in images]
    scores = torch.zeros((len(images), N_CLASSES), dtype=torch.float32, device=device)
    for _ in range(config.test_augmentations):
        for start in range(0, len(images), config.batch_size):
            stop = min(start + config.batch_size, len(images))
            crops = sample_crops(shapes[start:stop], config, generator)
            batch = crop_batch(images[start:stop], crops, config.crop_size)
            scores[start:stop] += _forward(model, batch, device, amp)
    return scores.cpu().numpy()


def finetune_voc(
    model: nn.Module,
    train_images: list[np.ndarray],
    train_labels: np.ndarray,
    test_images: list[np.ndarray],
    mode: str,
    config: FinetuneConfig,
    seed: int,
    device: torch.device,
) -> tuple[np.ndarray, list[dict]]:
    """Fine-tune ``model`` on VOC (in place: its output layer becomes 20 logits) and score the test set.

    ``train_images`` / ``test_images``: (H_i, W_i, 3) uint8 RGB arrays; ``train_labels`` (N, 20)
    in {1, -1, 0}; ``mode``: ``'head'`` or ``'all'``. Returns the test scores (N_test, 20)
    float32 (sums of logits over the test crops) and the history (one dict per log step:
    iteration, loss, lr, images_per_second).
    """
    if mode not in ("head", "all"):
        raise ValueError(f"unknown fine-tuning mode {mode!r}; expected 'head' or 'all'")
    train_labels = np.asarray(train_labels)
    if train_labels.shape != (len(train_images), N_CLASSES):
        raise ValueError(f"train_labels must be ({len(train_images)}, {N_CLASSES}); got {train_labels.shape}")
    if not np.isin(train_labels, (-1, 0, 1)).all():
        raise ValueError("train_labels must hold only 1, -1 and 0")
    seeds = _seeds(seed)
    fork_devices = []
    if device.type == "cuda":
        fork_devices = [device.index if device.index is not None else torch.cuda.current_device()]
    # nn.Linear's default init (replaced at once) and dropout use the global generators: fork them.
    with torch.random.fork_rng(devices=fork_devices):
        torch.manual_seed(seeds["dropout"])
        _new_head(model, torch.Generator().manual_seed(seeds["head"]))
        set_trainable(model, mode)
        model.to(device=device, memory_format=memory_format(device, autocast_dtype(device, config.precision)))
        train = _to_device(train_images, device)
        labels = torch.from_numpy(train_labels.astype(np.int8)).to(device)
        log.info(
            "fine-tuning (%s) on %d images for %d iterations, batch %d, on %s",
            mode, len(train), config.iterations, config.batch_size, device,
        )  # fmt: skip
        train_generator = torch.Generator().manual_seed(seeds["train"])
        history = _train(model, train, labels, mode, config, train_generator, device)
    del train
    test = _to_device(test_images, device)
    scores = predict_voc(model, test, config, torch.Generator().manual_seed(seeds["test"]), device)
    return scores, history
