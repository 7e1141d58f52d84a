"""Fine-tuning on PASCAL VOC 2007 classification: philkr's protocol, DeepCluster's classifier.

The backbone's output layer is replaced by 20 logits. With ``reinit`` (the default) the
classifier starts as in DeepCluster's ``eval_voc_classif.py``, which the paper's authors ported
for their Table 1: AlexNet's fc6 and fc7 are redrawn N(0, 0.01) with bias 0.1, and the new
output layer keeps torch's default weights (U(+-1/sqrt(fan_in))) with bias 0.1; without it
fc6 and fc7 keep their pretext weights and the output layer is Caffe's fc8 (N(0, 0.01), bias 0).
ResNet-18 has no fc6/fc7: its only fully connected layer is the one replaced. "head" trains
fc6-fc8 of AlexNet (the fc of ResNet-18) on a frozen trunk held in eval mode; "all" trains
everything. With ``batchnorm: frozen`` (the default, DeepCluster's ``model.features.eval()``)
every batch-norm layer normalises with its stored statistics and never updates them, in both
modes (its scale and shift still train in "all"); ``train`` lets "all" use batch statistics.

Every training and test image is a random square crop (:mod:`soundsup.voc_crops`: side
crop_size * s, s ~ U[scale_low, min(scale_high, H / crop_size, W / crop_size)], placed
uniformly, mirrored with probability 1/2, resized with an antialiased bilinear filter), cut for
the whole batch on the training device. SGD with momentum, biases at ``bias_lr_mult`` x lr,
weight decay, gradient-norm clipping, lr x ``lr_gamma`` every ``lr_step`` iterations; loss =
sigmoid cross-entropy summed over the classes and divided by the batch size, label 0 (difficult
only) masked out. The final weights score the test set: the sum of the logits over
``test_augmentations`` random crops. Forward passes run under bf16 autocast where the hardware
multiplies bf16 natively (``precision``; see :func:`soundsup.device.autocast_dtype`). Labels
live on the device and nothing in the loop waits for the device except the log lines and the
checkpoints.

All randomness comes from the seed: the batch order of epoch e from a generator seeded by
(seed, e), crops from an explicit generator, dropout from a forked global generator (restored
afterwards). Every ``checkpoint_every`` iterations and at the end of training the whole state
(model, optimizer, iteration, every generator, the loss window) is written atomically to a
checkpoint that carries a fingerprint of everything that shapes the weights; a restarted call
resumes from it, and on CPU ends bit-identical to an uninterrupted run.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision import models as tv_models

from soundsup.device import autocast, autocast_dtype, memory_format
from soundsup.io import write_durably
from soundsup.models import (
    ARCHS,
    build_model,
    load_model,
    load_trunk,
    output_layer,
    replace_head,
    set_trainable,
    train_mode,
)
from soundsup.names import VOC_CLASSES
from soundsup.progress import Eta, EventLog, job_logger
from soundsup.voc import PackedImages, pack_images
from soundsup.voc_crops import CropCutter, place_pixels

log = logging.getLogger(__name__)

N_CLASSES = len(VOC_CLASSES)
BACKBONE_SPECS = ("pretext", "random", "imagenet", "external")
_TORCHVISION_WEIGHTS = {
    "alexnet": tv_models.AlexNet_Weights.IMAGENET1K_V1,
    "resnet18": tv_models.ResNet18_Weights.IMAGENET1K_V1,
}


BATCH_NORM_MODES = ("frozen", "train")
CHECKPOINT_FORMAT = 1
# config keys that do not change the trained weights (a checkpoint resumes across them)
_NOT_SHAPING_WEIGHTS = ("log_every", "checkpoint_every", "test_augmentations")
_BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)


@dataclass(frozen=True)
class FinetuneConfig:
    """The ``voc`` config keys of the fine-tuning protocol (defaults: the published protocol's)."""

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
    reinit: bool = True
    batchnorm: str = "frozen"  # 'frozen' | 'train'
    log_every: int = 100
    checkpoint_every: int = 5000
    precision: str = "auto"  # 'auto' | 'bf16' | 'fp32'

    def __post_init__(self) -> None:
        positive = ("iterations", "batch_size", "lr", "lr_step", "lr_gamma", "clip_grad_norm", "crop_size")
        positive += (
            "scale_low",
            "scale_high",
            "test_augmentations",
            "max_side",
            "log_every",
            "checkpoint_every",
        )
        for name in positive:
            if not getattr(self, name) > 0:
                raise ValueError(f"voc.{name} must be positive; got {getattr(self, name)!r}")
        if self.scale_low > self.scale_high:
            raise ValueError(f"voc.scale_low ({self.scale_low}) exceeds voc.scale_high ({self.scale_high})")
        if self.batchnorm not in BATCH_NORM_MODES:
            raise ValueError(f"voc.batchnorm must be one of {BATCH_NORM_MODES}; got {self.batchnorm!r}")
        if not isinstance(self.reinit, bool):
            raise ValueError(f"voc.reinit must be true or false; got {self.reinit!r}")


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
    model = build_model(arch, 1000, 4096, variant="torchvision")  # the one its weights exist for
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
    spec: str,
    arch: str,
    fc_width: int,
    model_path: str | None,
    imagenet_weights: str | None,
    variant: str | None = None,
) -> nn.Module:
    """The network that fine-tuning starts from (its original output layer still in place).

    ``spec``: ``'pretext'`` (the sound-pretrained model file ``model_path``), ``'random'`` (a
    fresh ``arch`` with 1000 outputs and ``fc_width``; seed the global torch RNG first) or
    ``'imagenet'`` (``imagenet_weights``: a local state-dict file, or ``'torchvision'`` for
    torchvision's own download; torchvision's AlexNet has fc width 4096 whatever ``fc_width``)
    or ``'external'`` (an outside checkpoint ``model_path`` holding the trunk of an ``arch`` of
    ``variant`` and ``fc_width``, :func:`soundsup.models.load_trunk`).
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
    if spec == "external":
        if not model_path or not Path(model_path).is_file():
            raise FileNotFoundError(f"outside checkpoint {model_path} does not exist")
        return load_trunk(build_model(arch, 1000, fc_width, variant), model_path)
    raise ValueError(f"unknown backbone spec {spec!r}; expected one of {BACKBONE_SPECS}")


def backbone_from_spec(backbone: Mapping[str, Any], model_path: str | None) -> nn.Module:
    """The network a rule's ``backbone`` params describe (rules/common.smk, ``backbone_params``):
    ``init`` (``sound``: the pretext model file ``model_path``; ``random``: a fresh network of
    ``fc_width``, so seed the global torch RNG first; ``imagenet``: the state-dict file
    ``weights``; ``external``: the checkpoint ``weights`` of ``variant`` and ``fc_width``) and
    ``arch``. See :func:`load_backbone`."""
    init = backbone["init"]
    external = init == "external"
    return load_backbone(
        "pretext" if init == "sound" else init,
        arch=backbone["arch"],
        fc_width=backbone.get("fc_width", 4096),
        model_path=backbone["weights"] if external else (model_path or None),
        imagenet_weights=None if external else backbone.get("weights"),
        variant=backbone.get("variant") if external else None,
    )


# ---------------------------------------------------------------------------------------------
# the protocol: which layers start afresh, which train, and batch norm


def hidden_layers(model: nn.Module) -> list[nn.Linear]:
    """AlexNet's fc6 and fc7: the ``nn.Linear`` layers of ``model.classifier`` (an
    ``nn.Sequential`` ending with the output layer) before its last module; [] for a model
    without such a classifier (ResNet-18, whose only fully connected layer is its output)."""
    classifier = getattr(model, "classifier", None)
    if not isinstance(classifier, nn.Sequential):
        return []
    return [module for module in list(classifier)[:-1] if isinstance(module, nn.Linear)]


def prepare_model(model: nn.Module, mode: str, config: FinetuneConfig, generator: torch.Generator) -> None:
    """Give ``model`` (in place) the 20-logit output layer and the initial classifier of the
    protocol (``config.reinit``, see the module doc), and freeze what ``mode`` does not train.

    New weights are drawn from ``generator``; torch's global generator is consumed too (by the
    default initialisation of the new layer, overwritten at once).
    """
    replace_head(model, N_CLASSES)
    head = output_layer(model)
    with torch.no_grad():
        if config.reinit:
            for layer in hidden_layers(model):
                nn.init.normal_(layer.weight, 0.0, 0.01, generator=generator)
                layer.bias.fill_(0.1)
            bound = 1.0 / math.sqrt(head.in_features)  # nn.Linear's default weights
            nn.init.uniform_(head.weight, -bound, bound, generator=generator)
            head.bias.fill_(0.1)
        else:
            nn.init.normal_(head.weight, 0.0, 0.01, generator=generator)
            head.bias.zero_()
    set_trainable(model, mode)


def set_training_mode(model: nn.Module, mode: str, batchnorm: str) -> None:
    """Training mode for ``mode`` (the frozen trunk of "head" in eval mode); with ``batchnorm``
    ``'frozen'`` every batch-norm layer in eval mode too (stored statistics, never updated)."""
    train_mode(model, mode)
    if batchnorm == "frozen":
        for module in model.modules():
            if isinstance(module, _BATCH_NORMS):
                module.eval()


# ---------------------------------------------------------------------------------------------
# training and scoring


def _seeds(seed: int) -> dict[str, int]:
    """Independent 63-bit seeds: new layers, batch order, training crops, dropout, test crops."""
    names = ("head", "order", "train", "dropout", "test")
    state = np.random.SeedSequence(seed).generate_state(len(names), dtype=np.uint64) >> np.uint64(1)
    return dict(zip(names, (int(value) for value in state), strict=True))


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


class EpochOrder:
    """The batch order: epochs of ``n_items``, each a permutation seeded by (``seed``, epoch),
    one after another; batch ``i`` (1-based) is items [(i - 1) B, i B) of that sequence (an
    epoch may end inside a batch). A pure function of the iteration: a resumed run needs no state.
    """

    def __init__(self, n_items: int, batch_size: int, seed: int) -> None:
        self.n_items, self.batch_size, self.seed = n_items, batch_size, seed
        self._permutations: dict[int, np.ndarray] = {}

    def _permutation(self, epoch: int) -> np.ndarray:
        if epoch not in self._permutations:
            if len(self._permutations) > 2:
                self._permutations.pop(min(self._permutations))
            words = np.random.SeedSequence([self.seed, epoch]).generate_state(2, dtype=np.uint32)
            generator = torch.Generator().manual_seed(int(words[0]) << 31 | int(words[1]) >> 1)
            self._permutations[epoch] = torch.randperm(self.n_items, generator=generator).numpy()
        return self._permutations[epoch]

    def rows(self, iteration: int) -> np.ndarray:
        """The item indices (batch_size,) int64 of batch ``iteration`` (1-based)."""
        positions = np.arange((iteration - 1) * self.batch_size, iteration * self.batch_size)
        epochs = positions // self.n_items
        rows = np.empty(self.batch_size, dtype=np.int64)
        for epoch in np.unique(epochs).tolist():
            chosen = epochs == epoch
            rows[chosen] = self._permutation(epoch)[positions[chosen] % self.n_items]
        return rows


def _forward(model: nn.Module, batch: Tensor, device: torch.device, amp: torch.dtype | None) -> Tensor:
    with autocast(device, amp):
        logits = model(batch.contiguous(memory_format=memory_format(device, amp)))
    return logits.float()


# ---------------------------------------------------------------------------------------------
# checkpoints


def state_digest(model: nn.Module) -> str:
    """SHA-256 (hex) of a model's state dict: names, dtypes, shapes and values, layout-independent."""
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        flat = tensor.detach().to("cpu").contiguous().reshape(-1)
        digest.update(f"{name} {flat.dtype} {tuple(tensor.shape)}\n".encode())
        digest.update(flat.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def training_fingerprint(
    model: nn.Module,
    train: PackedImages,
    labels: np.ndarray,
    mode: str,
    config: FinetuneConfig,
    seed: int,
    amp: torch.dtype | None,
) -> dict:
    """What a checkpoint must match to be resumed: everything that shapes the trained weights
    (the starting network, the training images and labels, the settings, seed, mode, autocast)."""
    settings = {k: v for k, v in dataclasses.asdict(config).items() if k not in _NOT_SHAPING_WEIGHTS}
    return {
        "mode": mode,
        "seed": int(seed),
        "config": settings,
        "autocast": str(amp),
        "model_sha256": state_digest(model),
        "images_sha256": train.digest,
        "labels_sha256": hashlib.sha256(np.ascontiguousarray(labels, dtype=np.int8).tobytes()).hexdigest(),
    }


def remove_stale_temporaries(path: str | Path) -> list[Path]:
    """Delete the temporary files a killed write of ``path`` left beside it (see
    :func:`soundsup.io.atomic_path`; a checkpoint's may be hundreds of MB); return them."""
    path = Path(path)
    stale = sorted(path.parent.glob(f".{path.stem}.*.tmp{path.suffix}"))
    for item in stale:
        item.unlink(missing_ok=True)
    if stale:
        log.info("removed %d temporary files of an interrupted write of %s", len(stale), path)
    return stale


def load_checkpoint(path: str | Path, fingerprint: dict) -> dict | None:
    """The checkpoint at ``path`` if it exists and belongs to this run, else None.

    A checkpoint of another run (its fingerprint differs: other weights, data, settings, seed
    or mode) is refused with a warning naming what differs, as is an unreadable one; training
    then starts afresh and overwrites it.
    """
    path = Path(path)
    if not path.exists():
        return None
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch.load raises many types on a damaged file
        log.warning("%s: unreadable checkpoint (%s); training from the start", path, error)
        return None
    saved = payload.get("fingerprint") if isinstance(payload, dict) else None
    if (
        not isinstance(payload, dict)
        or payload.get("format") != CHECKPOINT_FORMAT
        or not isinstance(saved, dict)
    ):
        log.warning("%s: not a fine-tuning checkpoint of this version; training from the start", path)
        return None
    if saved != fingerprint:
        differing = sorted(
            key for key in fingerprint.keys() | saved.keys() if saved.get(key) != fingerprint.get(key)
        )
        log.warning(
            "%s: a checkpoint of another run (differs in %s); training from the start",
            path,
            ", ".join(differing),
        )
        return None
    return payload


def _rng_states(device: torch.device) -> dict:
    states = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        states["cuda"] = torch.cuda.get_rng_state(device)
    return states


def _restore_rng_states(states: dict, device: torch.device) -> None:
    torch.set_rng_state(states["torch"])
    if device.type == "cuda" and "cuda" in states:
        torch.cuda.set_rng_state(states["cuda"], device)


@dataclass
class _Progress:
    """Where training stands: the last finished iteration, the history, the open loss window."""

    iteration: int
    history: list[dict]
    window_loss: Tensor
    window_steps: int


def _save_checkpoint(
    path: Path,
    fingerprint: dict,
    progress: _Progress,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    crop_generator: torch.Generator,
    device: torch.device,
) -> None:
    payload = {
        "format": CHECKPOINT_FORMAT,
        "fingerprint": fingerprint,
        "iteration": progress.iteration,
        "history": progress.history,
        "window_loss": progress.window_loss.detach().to("cpu"),
        "window_steps": progress.window_steps,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "crop_rng": crop_generator.get_state(),
        "rng": _rng_states(device),
    }
    write_durably(path, lambda handle: torch.save(payload, handle))


def _train(
    model: nn.Module,
    cutter: CropCutter,
    labels: Tensor,
    mode: str,
    config: FinetuneConfig,
    seeds: dict[str, int],
    device: torch.device,
    checkpoint: tuple[Path, dict] | None,
    job_log: logging.LoggerAdapter,
    tensorboard_dir: str | Path | None = None,
) -> list[dict]:
    """Run SGD up to ``config.iterations`` (resuming from ``checkpoint`` = (path, fingerprint)
    when it holds this run's state); return one history record per log step, each also logged
    to ``job_log`` with the time left and, when ``tensorboard_dir`` is given and ``tensorboard``
    installed, written there as TensorBoard scalars (step = iteration)."""
    amp = autocast_dtype(device, config.precision)
    optimizer = _optimizer(model, config)
    crop_generator = torch.Generator().manual_seed(seeds["train"])
    order = EpochOrder(len(labels), config.batch_size, seeds["order"])
    progress = _Progress(0, [], torch.zeros((), device=device), 0)
    saved = load_checkpoint(*checkpoint) if checkpoint else None
    if saved is not None:
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        crop_generator.set_state(saved["crop_rng"])
        _restore_rng_states(saved["rng"], device)
        progress = _Progress(
            saved["iteration"], saved["history"], saved["window_loss"].to(device), saved["window_steps"]
        )
        job_log.info(
            "resuming from %s at iteration %d of %d", checkpoint[0], progress.iteration, config.iterations
        )
    del saved
    with EventLog.open(tensorboard_dir, progress.history, "iteration") as events:
        trainable = [p for p in model.parameters() if p.requires_grad]
        set_training_mode(model, mode, config.batchnorm)
        eta = Eta(config.iterations, start=progress.iteration)
        window_start = time.perf_counter()
        for iteration in range(progress.iteration + 1, config.iterations + 1):
            factor = config.lr_gamma ** ((iteration - 1) // config.lr_step)
            for group in optimizer.param_groups:
                group["lr"] = group["base_lr"] * factor
            batch, rows = cutter(order.rows(iteration), crop_generator)
            loss = masked_bce(_forward(model, batch, device, amp), labels[rows])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(trainable, config.clip_grad_norm)
            optimizer.step()
            progress.window_loss += loss.detach()
            progress.window_steps += 1
            progress.iteration = iteration
            if iteration % config.log_every == 0 or iteration == config.iterations:
                record = _log_window(
                    progress, config, factor, time.perf_counter() - window_start, job_log, eta
                )
                progress.history.append(record)
                events.add(record)
                progress.window_loss.zero_()
                progress.window_steps, window_start = 0, time.perf_counter()
            if checkpoint and (iteration % config.checkpoint_every == 0 or iteration == config.iterations):
                _save_checkpoint(
                    checkpoint[0], checkpoint[1], progress, model, optimizer, crop_generator, device
                )
    return progress.history


def _log_window(
    progress: _Progress,
    config: FinetuneConfig,
    factor: float,
    seconds: float,
    job_log: logging.LoggerAdapter,
    eta: Eta,
) -> dict:
    """The history record of the log window that ends at ``progress.iteration`` (reads the loss),
    logged as a progress line with the training's time left."""
    mean_loss = float(progress.window_loss) / progress.window_steps
    if not np.isfinite(mean_loss):
        raise FloatingPointError(f"VOC fine-tuning loss is {mean_loss} at iteration {progress.iteration}")
    record = {
        "iteration": progress.iteration,
        "loss": mean_loss,
        "lr": config.lr * factor,
        "images_per_second": progress.window_steps * config.batch_size / max(seconds, 1e-9),
    }
    job_log.info(
        "iteration %d/%d  loss %.4f  lr %.2e  %.1f images/s  %s",
        progress.iteration, config.iterations, mean_loss, record["lr"], record["images_per_second"],
        eta(progress.iteration),
    )  # fmt: skip
    return record


@torch.inference_mode()
def predict_voc(
    model: nn.Module,
    cutter: CropCutter,
    config: FinetuneConfig,
    generator: torch.Generator,
    device: torch.device,
) -> np.ndarray:
    """Test scores (N, 20) float32: logits summed over ``config.test_augmentations`` random crops
    of each image that ``cutter`` holds (batches of ``config.batch_size`` in order)."""
    model.eval()
    amp = autocast_dtype(device, config.precision)
    n_images = len(cutter.sizes)
    scores = torch.zeros((n_images, N_CLASSES), dtype=torch.float32, device=device)
    for _ in range(config.test_augmentations):
        for start in range(0, n_images, config.batch_size):
            stop = min(start + config.batch_size, n_images)
            batch, _ = cutter(np.arange(start, stop), generator)
            scores[start:stop] += _forward(model, batch, device, amp)
    return scores.cpu().numpy()


def _packed(images: PackedImages | Sequence[np.ndarray]) -> PackedImages:
    return images if isinstance(images, PackedImages) else pack_images(images)


def finetune_voc(
    model: nn.Module,
    train_images: PackedImages | Sequence[np.ndarray],
    train_labels: np.ndarray,
    test_images: PackedImages | Sequence[np.ndarray],
    mode: str,
    config: FinetuneConfig,
    seed: int,
    device: torch.device,
    checkpoint_path: str | Path | None = None,
    crop_method: str = "auto",
    job_name: str | None = None,
    tensorboard_dir: str | Path | None = None,
) -> tuple[np.ndarray, list[dict]]:
    """Fine-tune ``model`` on VOC (in place: its output layer becomes 20 logits) and score the test set.

    ``train_images`` / ``test_images``: :class:`soundsup.voc.PackedImages` or lists of
    (H_i, W_i, 3) uint8 RGB arrays; ``train_labels`` (N, 20) in {1, -1, 0}; ``mode``:
    ``'head'`` or ``'all'``. With ``checkpoint_path`` the training state is saved there every
    ``config.checkpoint_every`` iterations and at the end, and a checkpoint of this run found
    there is resumed (the caller removes it once its outputs are safe). ``crop_method``: see
    :class:`soundsup.voc_crops.CropCutter`. ``job_name`` (e.g. ``random-resnet18 all seed0``;
    default ``{mode} seed{seed}``) starts every log line in brackets; progress lines end with
    the training's estimated time left (:mod:`soundsup.progress`). ``tensorboard_dir``: where
    the history also goes as TensorBoard scalars, when the ``tensorboard`` package is installed
    (it always holds exactly the history, a resumed run included). Returns the test scores
    (N_test, 20) float32 (sums of logits over the test crops) and the history (one dict per log
    step: iteration, loss, lr, images_per_second).
    """
    if mode not in ("head", "all"):
        raise ValueError(f"unknown fine-tuning mode {mode!r}; expected 'head' or 'all'")
    train, test = _packed(train_images), _packed(test_images)
    train_labels = np.asarray(train_labels)
    if train_labels.shape != (len(train), N_CLASSES):
        raise ValueError(f"train_labels must be ({len(train)}, {N_CLASSES}); got {train_labels.shape}")
    if not np.isin(train_labels, (-1, 0, 1)).all():
        raise ValueError("train_labels must hold only 1, -1 and 0")
    seeds = _seeds(seed)
    amp = autocast_dtype(device, config.precision)
    job_log = job_logger(log, job_name or f"{mode} seed{seed}")
    fork_devices = []
    if device.type == "cuda":
        fork_devices = [device.index if device.index is not None else torch.cuda.current_device()]
    # The new layers' default init and dropout use the global generators: fork them.
    with torch.random.fork_rng(devices=fork_devices):
        prepare_model(model, mode, config, torch.Generator().manual_seed(seeds["head"]))
        checkpoint = None
        if checkpoint_path is not None:
            remove_stale_temporaries(checkpoint_path)
            fingerprint = training_fingerprint(model, train, train_labels, mode, config, seed, amp)
            checkpoint = (Path(checkpoint_path), fingerprint)
        torch.manual_seed(seeds["dropout"])
        model.to(device=device, memory_format=memory_format(device, amp))
        cutter = CropCutter(
            place_pixels(train.pixels, device), train.sizes,
            config.crop_size, config.scale_low, config.scale_high, device, crop_method,
        )  # fmt: skip
        labels = torch.from_numpy(train_labels.astype(np.int8)).to(device)
        job_log.info(
            "fine-tuning (%s, reinit %s, batch norm %s) on %d images, %d iterations of %d, on %s (%s crops)",
            mode, config.reinit, config.batchnorm, len(train), config.iterations, config.batch_size, device,
            cutter.method,
        )  # fmt: skip
        history = _train(
            model, cutter, labels, mode, config, seeds, device, checkpoint, job_log, tensorboard_dir
        )
    del cutter, labels  # frees the training images on the device before the test images arrive
    test_cutter = CropCutter(
        place_pixels(test.pixels, device), test.sizes,
        config.crop_size, config.scale_low, config.scale_high, device, crop_method,
    )  # fmt: skip
    job_log.info("scoring %d test images, %d random crops each", len(test), config.test_augmentations)
    scores = predict_voc(model, test_cutter, config, torch.Generator().manual_seed(seeds["test"]), device)
    return scores, history
