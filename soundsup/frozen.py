"""Frozen features of a network, layer by layer, for the linear evaluations of :mod:`soundsup.svm`.

The protocol is the VOC07 benchmark of Goyal et al. 2019 (the FAIR self-supervision benchmark,
as VISSL implements it), made independent of the input size:

- Layers (:data:`soundsup.config.FROZEN_LAYERS`): AlexNet ``conv1``..``conv5`` after their ReLU
  (after batch norm too, where the network has it), ``pool5`` (the output of ``features``, the
  last max-pool) and ``fc6``, ``fc7`` (the linear layers of ``classifier`` before the output
  layer, after their ReLU, dropout off); ResNet-18 ``layer1``..``layer4`` (after each residual
  stage). They are read by forward hooks on the named modules, so any network with AlexNet's
  module interface (``features``, ``classifier`` ending in the output Linear;
  :func:`soundsup.models.conv_layers` naming the convolutions) or torchvision's ResNet works.
- Pooling: a map of C channels is average-pooled (adaptively) to an s x s grid with
  s = round(sqrt(pooled_dims / C)), at most the map's height and width, and flattened channel
  by channel. With the default 9,000 this gives the benchmark's grids at 224 px for the
  DeepCluster AlexNet (conv1 10x10, conv2 6x6, conv3-4 5x5, conv5 6x6) and for ResNet-50
  (12, 6, 4, 3, 2) without its size-specific kernels, strides and paddings, and 8,192-9,600
  values for torchvision's AlexNet and ResNet-18. Maps smaller than the grid keep their size.
  Fully connected layers are taken as they are.
- Images: each whole image resized (bilinear, antialiased) to ``crop_size`` x ``crop_size``,
  ImageNet-normalised: deterministic, no crop (the benchmark resizes to 256, then to
  224 x 224).

Features are float32, written by :func:`soundsup.svm.save_features`.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from soundsup.augment import normalize
from soundsup.config import FROZEN_LAYERS
from soundsup.device import autocast, autocast_dtype, memory_format
from soundsup.models import conv_layers
from soundsup.voc import load_images

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FeatureConfig:
    """The ``svm`` config keys of the feature extraction (defaults: the benchmark's)."""

    pooled_dims: int = 9000
    precision: str = "auto"  # 'auto' | 'bf16' | 'fp32'
    batch_size: int = 64

    def __post_init__(self) -> None:
        for name in ("pooled_dims", "batch_size"):
            if not getattr(self, name) >= 1:
                raise ValueError(f"svm.{name} must be positive; got {getattr(self, name)!r}")


# ---------------------------------------------------------------------------------------------
# where each layer is read


def _relu_after(container: nn.Module, start: nn.Module, name: str) -> nn.Module:
    """The first ReLU after ``start`` in ``container``'s module order (before the next layer)."""
    modules = list(container.modules())
    index = next((i for i, module in enumerate(modules) if module is start), None)
    if index is None:
        raise ValueError(f"layer {name}: its module is not inside {type(container).__name__}")
    for module in modules[index + 1 :]:
        if isinstance(module, nn.ReLU):
            return module
        if isinstance(module, nn.Conv2d | nn.Linear):
            break
    raise ValueError(f"layer {name}: no ReLU follows {type(start).__name__} before the next layer")


def layer_modules(model: nn.Module, arch: str) -> dict[str, nn.Module]:
    """``{layer: module}`` whose forward output is the layer's activation, in network order.

    AlexNet: the ReLU after each convolution of :func:`~soundsup.models.conv_layers`, ``features``
    (pool5), the ReLU after each Linear of ``classifier`` but the last (fc6, fc7). ResNet-18: its
    residual stages. The names are exactly :data:`~soundsup.config.FROZEN_LAYERS` ``[arch]``.
    """
    if arch == "alexnet":
        found = {name: _relu_after(model.features, conv, name) for name, conv in conv_layers(model).items()}
        found["pool5"] = model.features
        linears = [module for module in model.classifier if isinstance(module, nn.Linear)]
        for index, linear in enumerate(linears[:-1]):
            found[f"fc{index + 6}"] = _relu_after(model.classifier, linear, f"fc{index + 6}")
    elif arch == "resnet18":
        found = dict(conv_layers(model))
    else:
        raise ValueError(f"unknown architecture {arch!r}; expected one of {tuple(FROZEN_LAYERS)}")
    if tuple(found) != FROZEN_LAYERS[arch]:
        raise ValueError(f"{arch}: the network gives layers {tuple(found)}, expected {FROZEN_LAYERS[arch]}")
    return found


# ---------------------------------------------------------------------------------------------
# pooling and images


def pooled_grid(channels: int, height: int, width: int, pooled_dims: int) -> tuple[int, int]:
    """The (rows, columns) a (channels, height, width) map is average-pooled to: s x s with
    s = round(sqrt(pooled_dims / channels)) (halves round up), at least 1, at most the map."""
    side = max(1, math.floor(math.sqrt(pooled_dims / channels) + 0.5))
    return min(side, height), min(side, width)


def pool_activation(activation: Tensor, pooled_dims: int) -> Tensor:
    """A layer's activation as (N, D) float32: (N, C, H, W) maps pooled by :func:`pooled_grid`
    and flattened channel-major; (N, D) activations unchanged."""
    if activation.ndim == 2:
        return activation.float().clone()  # a copy: a later in-place op must not change it
    if activation.ndim != 4:
        raise ValueError(f"expected an (N, C, H, W) or (N, D) activation; got {tuple(activation.shape)}")
    grid = pooled_grid(*activation.shape[1:], pooled_dims)
    return F.adaptive_avg_pool2d(activation.float(), grid).flatten(1)


def prepare_images(images: Sequence[np.ndarray], crop_size: int, device: torch.device) -> Tensor:
    """(H_i, W_i, 3) uint8 images -> (B, 3, crop_size, crop_size) float32 on ``device``: each
    whole image resized bilinearly (antialiased), ImageNet-normalised."""
    batch = []
    for index, image in enumerate(images):
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"image {index}: expected (H, W, 3) uint8, got {image.shape} {image.dtype}")
        pixels = torch.from_numpy(np.ascontiguousarray(image)).to(device).permute(2, 0, 1).unsqueeze(0)
        batch.append(
            F.interpolate(
                pixels.float().div_(255.0),
                size=(crop_size, crop_size),
                mode="bilinear",
                align_corners=False,
                antialias=True,
            )
        )
    return normalize(torch.cat(batch))


# ---------------------------------------------------------------------------------------------
# extraction


@torch.inference_mode()
def layer_features(
    model: nn.Module, arch: str, batch: Tensor, pooled_dims: int, amp: torch.dtype | None = None
) -> dict[str, Tensor]:
    """One forward pass of ``batch`` (B, 3, S, S): ``{layer: (B, D) float32}`` for every layer of
    :func:`layer_modules`. ``model`` must be in eval mode (dropout off, batch-norm statistics fixed)."""
    captured: dict[str, Tensor] = {}

    def hook_for(name: str):
        def hook(_module: nn.Module, _inputs: tuple, output: Tensor) -> None:
            if name in captured:
                raise RuntimeError(f"the module of layer {name} runs more than once in a forward pass")
            captured[name] = pool_activation(output, pooled_dims)

        return hook

    modules = layer_modules(model, arch)
    handles = [module.register_forward_hook(hook_for(name)) for name, module in modules.items()]
    try:
        with autocast(batch.device, amp):
            model(batch)
    finally:
        for handle in handles:
            handle.remove()
    return {name: captured[name] for name in modules}


def extract_features(
    model: nn.Module,
    arch: str,
    voc_root: str | Path,
    ids: Sequence[str],
    crop_size: int,
    config: FeatureConfig,
    device: torch.device,
    n_threads: int = 1,
) -> dict[str, np.ndarray]:
    """Features of VOC images ``ids`` (``JPEGImages/<id>.jpg`` under ``voc_root``) at every layer:
    ``{layer: (N, D_layer) float32}`` in network order. Images are decoded ``batch_size`` at a time
    by ``n_threads`` threads; ``model`` is put in eval mode on ``device``."""
    amp = autocast_dtype(device, config.precision)
    model.eval().to(device=device, memory_format=memory_format(device, amp))
    chunks: dict[str, list[np.ndarray]] = {name: [] for name in FROZEN_LAYERS[arch]}
    started = time.perf_counter()
    for start in range(0, len(ids), config.batch_size):
        images = load_images(voc_root, ids[start : start + config.batch_size], None, n_threads)
        batch = prepare_images(images, crop_size, device).contiguous(memory_format=memory_format(device, amp))
        for name, values in layer_features(model, arch, batch, config.pooled_dims, amp).items():
            chunks[name].append(values.cpu().numpy())
    features = {name: np.concatenate(parts) for name, parts in chunks.items()}
    log.info(
        "%d images, %s: %s in %.1f s",
        len(ids), arch, ", ".join(f"{name} {array.shape[1]}" for name, array in features.items()),
        time.perf_counter() - started,
    )  # fmt: skip
    return features


def extract_frozen_job(
    *,
    backbone: dict,
    model_path: str | Path | None,
    voc_root: str | Path,
    crop_size: int,
    config: FeatureConfig,
    device: torch.device,
    n_threads: int,
    seed: int,
    trainval_path: str | Path,
    test_path: str | Path,
    config_slice: dict,
    model_name: str,
) -> None:
    """Rule ``extract_frozen_features``: the features of one model at every layer, for VOC
    trainval (``trainval_path``) and test (``test_path``), with the provenance beside trainval.

    ``backbone`` is the model's spec (:func:`soundsup.finetune.backbone_from_spec`);
    ``seed`` seeds every generator first, so that the random baseline is the network that
    fine-tuning's seed 0 starts from.
    """
    from soundsup.device import seed_everything
    from soundsup.finetune import backbone_from_spec
    from soundsup.io import write_meta
    from soundsup.svm import save_features
    from soundsup.voc import read_labels

    seed_everything(seed)
    model = backbone_from_spec(backbone, model_path)
    dims: dict[str, int] = {}
    for split, path in (("trainval", trainval_path), ("test", test_path)):
        ids, _ = read_labels(voc_root, split)
        features = extract_features(
            model, backbone["arch"], voc_root, ids, crop_size, config, device, n_threads
        )
        save_features(path, ids, features)
        dims = {layer: int(values.shape[1]) for layer, values in features.items()}
        log.info("%s: %d images -> %s", split, len(ids), path)
    write_meta(
        trainval_path,
        {"svm": config_slice, "backbone": backbone, "crop_size": crop_size},
        seed=seed,
        model=model_name,
        dims=dims,
        device=str(device),
    )
