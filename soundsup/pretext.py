"""The pretext task: a CNN learns to predict, from one video frame, the cluster of its sound.

The data path is built for speed. Frames stay in memory as one uint8 tensor and are never
decoded again; on CUDA they are moved to the GPU once when they fit in half of its free memory,
otherwise each batch is gathered into pinned host memory and copied asynchronously. Every
batch is augmented on the training device by :mod:`soundsup.augment` (random resized crop,
mirror, colour jitter, ImageNet normalisation) in a few batched tensor ops.

Training is plain: cross-entropy, fused AdamW (betas, weight decay), gradient-norm clipping,
a learning-rate schedule stepped per batch (``onecycle``: OneCycleLR to ``lr_max``, beta1
cycling 0.85-``betas[0]``; ``constant``: ``lr_max`` and ``betas[0]`` throughout, which is what
the authors' code ran: it built OneCycleLR(max_lr=0.01) but never stepped it, so it trained at
its initial 0.01 / 25 = 4e-4 with beta1 0.95), bf16 autocast and channels-last wherever the
hardware multiplies bf16 natively (CUDA, and CPUs with AVX512-BF16 or AMX; ``precision``
overrides), ``torch.compile`` on request. One epoch is ``epoch_repeats`` shuffled passes over
the training frames (the authors' epoch was 10 augmented copies of the data).

Every ``checkpoint_every`` epochs, and after the last, the training state (model, optimizer,
scheduler, RNG states, history) replaces the previous checkpoint atomically; a restarted call
resumes from it. All randomness of an epoch (shuffle, crops, flips, jitter, dropout) is drawn
from generators seeded by (seed, epoch), so a resumed run on CPU ends with weights
bit-identical to an uninterrupted one. A write that fails (full disk, quota) raises
:class:`soundsup.models.WriteError` naming the file and the cause, and the last good
checkpoint stays. The checkpoint is removed once the model file and its sidecar are written
(AlexNet's with its optimizer state is ~0.7 GB).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from soundsup.augment import center_crop_resize, color_jitter, normalize, random_resized_crop_flip
from soundsup.device import autocast, autocast_dtype, memory_format, retain_freed_host_memory
from soundsup.io import write_meta, write_text
from soundsup.models import (
    MIN_INPUT_SIZE,
    build_model,
    save_backbone,
    save_checkpoint,
    save_torch,
    write_error,
)
from soundsup.names import ModelName
from soundsup.progress import Eta, EventLog, job_logger

log = logging.getLogger(__name__)

CHECKPOINT_FORMAT = 2
SCHEDULES = ("onecycle", "constant")
_SHUFFLE, _AUGMENT, _GLOBAL = 0, 1, 2  # per-epoch random streams


@dataclass(frozen=True)
class PretextConfig:
    """Pretext training settings (config keys ``pretext.*``; the paper config's values as defaults:
    the optimiser the authors' code ran, see the module docstring)."""

    epochs: int = 200
    batch_size: int = 256
    lr_max: float = 0.0004
    schedule: str = "constant"  # 'onecycle' | 'constant' (see the module docstring)
    betas: tuple[float, float] = (0.95, 0.999)
    weight_decay: float = 0.01
    clip_grad_norm: float | None = 5.0
    epoch_repeats: int = 1
    checkpoint_every: int = 25
    val_fraction: float = 0.1
    crop_size: int = 224
    fc_width: int = 4096
    compile: bool = False
    log_every: int = 50
    color_jitter: float = 0.4
    min_scale: float = 0.35
    precision: str = "auto"  # 'auto' | 'bf16' | 'fp32' (see soundsup.device.autocast_dtype)

    def __post_init__(self) -> None:
        object.__setattr__(self, "betas", tuple(float(beta) for beta in self.betas))
        if self.schedule not in SCHEDULES:
            raise ValueError(f"pretext.schedule must be one of {SCHEDULES}; got {self.schedule!r}")
        if len(self.betas) != 2 or not all(0 <= beta < 1 for beta in self.betas):
            raise ValueError(f"pretext.betas must be two numbers in [0, 1); got {self.betas}")
        for name in ("epochs", "batch_size", "epoch_repeats", "checkpoint_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"pretext.{name} must be >= 1; got {getattr(self, name)}")
        if self.clip_grad_norm is not None and not self.clip_grad_norm > 0:
            raise ValueError(f"pretext.clip_grad_norm must be > 0 or null; got {self.clip_grad_norm}")


def split_by_group(groups: np.ndarray, val_fraction: float, seed: int) -> np.ndarray:
    """Seeded validation mask (N,) bool over rows, whole groups (videos) on one side.

    round(val_fraction x number of groups) groups go to validation (at least one and never all,
    when there are two groups or more and val_fraction > 0). The choice depends only on the set
    of groups and the seed, not on the row order.
    """
    if not 0 <= val_fraction < 1:
        raise ValueError(f"pretext.val_fraction must be in [0, 1); got {val_fraction}")
    unique, inverse = np.unique(np.asarray(groups), return_inverse=True)
    n_groups = len(unique)
    n_val = int(round(val_fraction * n_groups))
    if val_fraction > 0 and n_groups >= 2:
        n_val = min(max(n_val, 1), n_groups - 1)
    else:
        n_val = 0
    chosen = np.random.default_rng(seed).permutation(n_groups)[:n_val]
    is_val_group = np.zeros(n_groups, dtype=bool)
    is_val_group[chosen] = True
    return is_val_group[inverse.reshape(-1)]


def _stream_seed(seed: int, epoch: int, stream: int) -> int:
    """A 63-bit seed for random stream ``stream`` of ``epoch`` under ``seed``."""
    state = np.random.SeedSequence([int(seed) % 2**63, epoch, stream]).generate_state(2, dtype=np.uint32)
    return int(state[0]) << 31 | int(state[1]) >> 1


def place_frames(frames: np.ndarray, device: torch.device) -> Tensor:
    """Frames (N, S, S, 3) uint8 as one tensor: on the GPU when it fits, else in host memory."""
    tensor = torch.from_numpy(np.ascontiguousarray(frames))
    if device.type == "cuda":
        free_bytes, _ = torch.cuda.mem_get_info(device)
        if tensor.nbytes <= free_bytes // 2:
            return tensor.to(device)
        log.info(
            "frames (%.1f GB) stay in host memory; batches go through pinned buffers", tensor.nbytes / 1e9
        )
    return tensor


def fetch_batch(frames: Tensor, rows: Tensor, device: torch.device) -> Tensor:
    """Rows ``rows`` (B,) int64 of ``frames`` (N, S, S, 3) uint8, on ``device``."""
    if frames.device == device or device.type != "cuda":
        return frames[rows.to(frames.device)]
    staging = torch.empty((len(rows), *frames.shape[1:]), dtype=frames.dtype, pin_memory=True)
    torch.index_select(frames, 0, rows, out=staging)
    return staging.to(device, non_blocking=True)


def train_inputs(
    images: Tensor, config: PretextConfig, generator: torch.Generator, amp: torch.dtype | None = None
) -> Tensor:
    """Augmented, normalised training inputs (B, 3, crop, crop) float from uint8 (B, S, S, 3),
    in the memory format the model runs in under autocast dtype ``amp``."""
    with torch.no_grad():
        x = random_resized_crop_flip(images, config.crop_size, config.min_scale, generator)
        x = color_jitter(x, config.color_jitter, generator)
        x = normalize(x)
    return x.contiguous(memory_format=memory_format(images.device, amp))


def eval_inputs(images: Tensor, config: PretextConfig, amp: torch.dtype | None = None) -> Tensor:
    """Centre-crop, normalised inputs (B, 3, crop, crop) float from uint8 (B, S, S, 3)."""
    with torch.no_grad():
        x = normalize(center_crop_resize(images, config.crop_size))
    return x.contiguous(memory_format=memory_format(images.device, amp))


def train_step(
    net: nn.Module,
    x: Tensor,
    y: Tensor,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    amp: torch.dtype | None = None,
    clip_grad_norm: float | None = None,
) -> tuple[Tensor, Tensor]:
    """One optimisation step under autocast dtype ``amp`` (None: fp32), the gradients' total
    norm clipped to ``clip_grad_norm`` (None: not clipped); returns (summed loss, number
    correct) as device tensors (no sync)."""
    with autocast(x.device, amp):
        logits = net(x)
    loss = F.cross_entropy(logits.float(), y)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if clip_grad_norm is not None:
        nn.utils.clip_grad_norm_(net.parameters(), clip_grad_norm, foreach=True)
    optimizer.step()
    scheduler.step()
    return loss.detach() * len(y), (logits.detach().argmax(dim=1) == y).sum()


def _check_inputs(frames: np.ndarray, targets: np.ndarray, groups: np.ndarray, n_classes: int) -> None:
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be uint8 (N, S, S, 3); got {frames.dtype} {frames.shape}")
    if len(targets) != len(frames) or len(groups) != len(frames):
        raise ValueError(f"{len(frames)} frames but {len(targets)} targets and {len(groups)} groups")
    targets = np.asarray(targets)
    if not np.issubdtype(targets.dtype, np.integer):
        raise ValueError(f"targets must be integer cluster ids; got {targets.dtype}")
    bad = np.flatnonzero((targets < 0) | (targets >= n_classes))
    if len(bad):
        raise ValueError(f"target {targets[bad[0]]} in row {bad[0]} is outside [0, {n_classes})")


def _fingerprint(
    frames: np.ndarray, targets: np.ndarray, groups: np.ndarray, arch: str, n_classes: int, config, seed: int
) -> dict:
    """What a checkpoint must match to be resumed (everything that shapes the weights)."""
    ignored = ("log_every", "compile", "checkpoint_every")  # they do not change the weights
    settings = {k: v for k, v in dataclasses.asdict(config).items() if k not in ignored}
    settings["betas"] = list(settings["betas"])
    digest = hashlib.sha256(np.ascontiguousarray(targets, dtype=np.int64).tobytes())
    digest.update("\n".join(map(str, groups)).encode())
    return {
        "arch": arch,
        "n_classes": int(n_classes),
        "seed": int(seed),
        "config": settings,
        "frames_shape": list(frames.shape),
        "data_sha256": digest.hexdigest(),
    }


def _rng_states(device: torch.device) -> dict:
    states = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if device.type == "cuda":
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def _restore_rng_states(states: dict) -> None:
    torch.set_rng_state(states["torch"])
    np.random.set_state(states["numpy"])
    random.setstate(states["python"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def _load_checkpoint(path: Path, fingerprint: dict) -> dict | None:
    """The checkpoint at ``path`` if it exists and was made by the same run, else None."""
    if not path.exists():
        return None
    try:
        payload = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as error:  # a damaged file: start again rather than fail the job
        log.warning("%s: unreadable checkpoint (%s); starting from scratch", path, error)
        return None
    if payload.get("format") != CHECKPOINT_FORMAT:
        log.warning("%s: checkpoint of an older format; starting from scratch", path)
        return None
    if payload.get("fingerprint") != fingerprint:
        log.warning("%s: checkpoint of a different run (config, data or seed); starting from scratch", path)
        return None
    return payload


def _write_history(path: str | Path, history: list[dict]) -> None:
    try:
        write_text(path, "".join(json.dumps(row, sort_keys=True) + "\n" for row in history))
    except OSError as error:
        raise write_error(path, "training history", error) from error


def _evaluate(
    net: nn.Module,
    frames: Tensor,
    rows: Tensor,
    targets: Tensor,
    config: PretextConfig,
    device: torch.device,
    amp: torch.dtype | None,
) -> tuple[float | None, float | None]:
    """(mean loss, accuracy) on the centre crops of ``rows``; (None, None) without rows."""
    if len(rows) == 0:
        return None, None
    net.eval()
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.int64)
    with torch.no_grad():
        for chunk in rows.split(config.batch_size):
            x = eval_inputs(fetch_batch(frames, chunk, device), config, amp)
            y = targets[chunk.to(targets.device)]
            with autocast(device, amp):
                logits = net(x)
            loss_sum += F.cross_entropy(logits.float(), y, reduction="sum")
            correct += (logits.argmax(dim=1) == y).sum()
    return loss_sum.item() / len(rows), correct.item() / len(rows)


def _train_epoch(
    net: nn.Module,
    frames: Tensor,
    rows: Tensor,
    targets: Tensor,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    config: PretextConfig,
    seed: int,
    epoch: int,
    device: torch.device,
    amp: torch.dtype | None,
    job_log: logging.LoggerAdapter,
    eta: Eta,
) -> dict:
    """``config.epoch_repeats`` passes over the training rows, shuffled together (as one pass over
    that many copies of them); returns loss, train_acc, lr (of the last step), images_per_s.

    Every ``config.log_every`` steps a progress line goes to ``job_log`` (the job's named logger)
    with the remaining time of the run from ``eta`` (counted in steps of all epochs).
    Raises FloatingPointError when the epoch's mean loss is not finite."""
    torch.manual_seed(_stream_seed(seed, epoch, _GLOBAL))  # dropout cannot take a generator
    shuffle = torch.Generator().manual_seed(_stream_seed(seed, epoch, _SHUFFLE))
    augment = torch.Generator().manual_seed(_stream_seed(seed, epoch, _AUGMENT))
    copies = rows.repeat(config.epoch_repeats)
    order = copies[torch.randperm(len(copies), generator=shuffle)]
    n_steps = steps_per_epoch(len(rows), config)
    net.train()
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.int64)
    n_images, lr, start = 0, 0.0, time.perf_counter()
    for step in range(n_steps):
        batch_rows = order[step * config.batch_size : (step + 1) * config.batch_size]
        x = train_inputs(fetch_batch(frames, batch_rows, device), config, augment, amp)
        y = targets[batch_rows.to(targets.device)]
        lr = optimizer.param_groups[0]["lr"]
        batch_loss, batch_correct = train_step(net, x, y, optimizer, scheduler, amp, config.clip_grad_norm)
        loss_sum += batch_loss
        correct += batch_correct
        n_images += len(batch_rows)
        if config.log_every > 0 and ((step + 1) % config.log_every == 0 or step + 1 == n_steps):
            rate = n_images / (time.perf_counter() - start)
            job_log.info(
                "epoch %d/%d step %d/%d loss %.4f acc %.3f lr %.2e %.0f img/s %s",
                epoch + 1, config.epochs, step + 1, n_steps,
                loss_sum.item() / n_images, correct.item() / n_images, lr, rate,
                eta(epoch * n_steps + step + 1),
            )  # fmt: skip
    loss_value, correct_value = loss_sum.item(), correct.item()
    seconds = time.perf_counter() - start
    if not np.isfinite(loss_value):
        raise FloatingPointError(
            f"pretext training loss is {loss_value / n_images} in epoch {epoch + 1} (lr {lr:.2e}); "
            "lower pretext.lr_max"
        )
    return {
        "loss": loss_value / n_images,
        "train_acc": correct_value / n_images,
        "lr": lr,
        "images_per_s": n_images / seconds,
    }


def steps_per_epoch(n_train: int, config: PretextConfig) -> int:
    """Optimiser steps in one epoch of ``n_train`` training frames (the last partial batch dropped)."""
    return max(1, n_train * config.epoch_repeats // config.batch_size)


def build_training(
    arch: str, n_classes: int, config: PretextConfig, total_steps: int, seed: int, device: torch.device
) -> tuple[nn.Module, torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    """Model (seeded init, in the memory format of its precision), AdamW and the learning-rate
    schedule ``config.schedule`` over ``total_steps``.

    ``onecycle``: torch's OneCycleLR (warm-up over 30 % of the steps from lr_max / 25, cosine
    down to lr_max / 25e4; beta1 from ``betas[0]`` down to 0.85 at the peak and back).
    ``constant``: lr_max and ``betas[0]`` at every step.

    AdamW is the fused kernel on CPU and CUDA: one pass over all parameters instead of a
    dozen tensor ops per parameter (on a CPU the unfused update of AlexNet's 61 M parameters
    takes as long as its forward and backward pass).
    """
    torch.manual_seed(seed)
    amp = autocast_dtype(device, config.precision)
    model = build_model(arch, n_classes, config.fc_width).to(device, memory_format=memory_format(device, amp))
    optimizer = torch.optim.AdamW(
        model.parameters(),
        lr=config.lr_max,
        betas=config.betas,
        weight_decay=config.weight_decay,
        fused=device.type in ("cpu", "cuda"),
    )
    if config.schedule == "onecycle":
        scheduler = torch.optim.lr_scheduler.OneCycleLR(
            optimizer,
            max_lr=config.lr_max,
            total_steps=total_steps,
            base_momentum=min(0.85, config.betas[0]),
            max_momentum=config.betas[0],
        )
    else:
        scheduler = torch.optim.lr_scheduler.ConstantLR(optimizer, factor=1.0, total_iters=0)
    return model, optimizer, scheduler


def train_pretext(
    frames: np.ndarray,
    targets: np.ndarray,
    groups: np.ndarray,
    arch: str,
    n_classes: int,
    config: PretextConfig,
    seed: int,
    device: torch.device,
    model_path: str | Path,
    history_path: str | Path,
    checkpoint_path: str | Path,
    stop_after_epoch: int | None = None,
    meta: dict | None = None,
    backbone_path: str | Path | None = None,
    job_name: str | None = None,
    tensorboard_dir: str | Path | None = None,
) -> dict:
    """Train ``arch`` to predict ``targets`` (N,) int64 in [0, n_classes) from ``frames``.

    ``frames`` (N, S, S, 3) uint8; ``groups`` (N,) video ids for the grouped validation split.
    Writes ``history_path`` (one JSON line per epoch), ``checkpoint_path`` every
    ``config.checkpoint_every`` epochs and after the last, then ``model_path``,
    ``backbone_path`` (when given: the trunk's plain state dict, see
    :func:`soundsup.models.backbone_state_dict`) and, when
    ``meta`` is given (keyword arguments of :func:`soundsup.io.write_meta`: config_slice,
    seed, extras), its sidecar with the run's metrics added; the checkpoint is removed only
    after both. ``stop_after_epoch`` returns after that epoch (1-based) as if killed there.
    ``job_name`` (e.g. ``texture-k8-alexnet``; default ``{arch} k{n_classes} seed{seed}``)
    starts every log line in brackets; progress lines end with the estimated time left
    (:mod:`soundsup.progress`). ``tensorboard_dir``: where the history also goes as TensorBoard
    scalars (step = epoch), when the ``tensorboard`` package is installed (an optional extra,
    never an output a rule declares); it always holds exactly the history, resumed runs included.
    Returns the final metrics (the last history line plus run totals). A failed write raises
    :class:`soundsup.models.WriteError` (an OSError) and keeps the last good checkpoint.
    """
    _check_inputs(frames, targets, groups, n_classes)
    if arch in MIN_INPUT_SIZE and config.crop_size < MIN_INPUT_SIZE[arch]:
        raise ValueError(
            f"pretext.crop_size {config.crop_size} is too small for {arch}: it needs at least "
            f"{MIN_INPUT_SIZE[arch]} px"
        )
    is_val = split_by_group(groups, config.val_fraction, seed)
    train_rows = torch.from_numpy(np.flatnonzero(~is_val))
    val_rows = torch.from_numpy(np.flatnonzero(is_val))
    if len(train_rows) < 2:
        raise ValueError(f"pretext training needs at least 2 training frames; got {len(train_rows)}")
    n_steps = steps_per_epoch(len(train_rows), config)
    amp = autocast_dtype(device, config.precision)
    job_log = job_logger(log, job_name or f"{arch} k{n_classes} seed{seed}")
    job_log.info(
        "%s, %d classes: %d training frames (%d steps/epoch), %d validation frames, device %s, %s",
        arch, n_classes, len(train_rows), n_steps, len(val_rows), device, "bf16 autocast" if amp else "fp32",
    )  # fmt: skip
    _log_optimiser(job_log, config)

    model, optimizer, scheduler = build_training(
        arch, n_classes, config, config.epochs * n_steps, seed, device
    )
    fingerprint = _fingerprint(frames, targets, groups, arch, n_classes, config, seed)
    checkpoint_path = Path(checkpoint_path)
    history = _resume(checkpoint_path, fingerprint, model, optimizer, scheduler, job_log)
    with EventLog.open(tensorboard_dir, history, "epoch") as events:
        eta = Eta(config.epochs * n_steps, start=len(history) * n_steps)
        net = torch.compile(model) if config.compile else model
        frames_tensor = place_frames(frames, device)
        targets_tensor = torch.as_tensor(np.asarray(targets), dtype=torch.int64).to(device)
        for epoch in range(len(history), config.epochs):
            start = time.perf_counter()
            train = _train_epoch(
                net,
                frames_tensor,
                train_rows,
                targets_tensor,
                optimizer,
                scheduler,
                config,
                seed,
                epoch,
                device,
                amp,
                job_log,
                eta,
            )
            val_loss, val_acc = _evaluate(net, frames_tensor, val_rows, targets_tensor, config, device, amp)
            row = {"epoch": epoch + 1, **train, "val_loss": val_loss, "val_acc": val_acc}
            row["seconds"] = time.perf_counter() - start
            history.append(row)
            job_log.info(
                "epoch %d/%d done, %s: %s",
                epoch + 1, config.epochs, eta((epoch + 1) * n_steps), json.dumps(row, sort_keys=True),
            )  # fmt: skip
            _write_history(history_path, history)
            events.add(row)
            if (epoch + 1) % config.checkpoint_every == 0 or epoch + 1 == config.epochs:
                saving = time.perf_counter()
                _save_training_state(
                    checkpoint_path, model, optimizer, scheduler, device, fingerprint, history
                )
                job_log.info(
                    "checkpoint after epoch %d written in %.2f s", epoch + 1, time.perf_counter() - saving
                )
            if stop_after_epoch is not None and epoch + 1 >= stop_after_epoch and epoch + 1 < config.epochs:
                return _final_metrics(history, len(train_rows), len(val_rows), stopped=True)

    metrics = _final_metrics(history, len(train_rows), len(val_rows), stopped=False)
    _write_history(history_path, history)
    _write_outputs(model, arch, n_classes, config, history, metrics, model_path, backbone_path, meta)
    checkpoint_path.unlink(missing_ok=True)
    return metrics


def _log_optimiser(job_log, config: PretextConfig) -> None:
    job_log.info(
        "AdamW betas %s, weight decay %g, clip %s, %s schedule to lr %g, %d epochs of %d pass(es), "
        "checkpoint every %d",
        config.betas, config.weight_decay, config.clip_grad_norm, config.schedule, config.lr_max,
        config.epochs, config.epoch_repeats, config.checkpoint_every,
    )  # fmt: skip


def _resume(checkpoint_path: Path, fingerprint: dict, model, optimizer, scheduler, job_log) -> list[dict]:
    """The history so far: restored from a checkpoint of this very run (model, optimiser,
    schedule, random generators), or empty."""
    checkpoint = _load_checkpoint(checkpoint_path, fingerprint)
    if checkpoint is None:
        return []
    model.load_state_dict(checkpoint["model"])
    optimizer.load_state_dict(checkpoint["optimizer"])
    scheduler.load_state_dict(checkpoint["scheduler"])
    _restore_rng_states(checkpoint["rng"])
    job_log.info("resuming from %s after epoch %d", checkpoint_path, checkpoint["epoch"])
    return checkpoint["history"]


def _write_outputs(
    model, arch: str, n_classes: int, config: PretextConfig, history: list[dict], metrics: dict,
    model_path, backbone_path, meta: dict | None,
) -> None:  # fmt: skip
    """The trained network (with its history and metrics), its trunk alone, and the sidecar."""
    save_checkpoint(
        model_path, model, arch, n_classes, config.fc_width,
        history=history, val_acc=metrics["val_acc"], epochs=config.epochs, metrics=metrics,
    )  # fmt: skip
    if backbone_path is not None:
        save_backbone(backbone_path, model)
    if meta is not None:
        try:
            write_meta(model_path, **{**meta, "metrics": metrics})
        except OSError as error:
            raise write_error(f"{model_path}.meta.json", "model sidecar", error) from error


def _save_training_state(path: Path, model, optimizer, scheduler, device, fingerprint: dict, history) -> None:
    """The checkpoint of the run after ``len(history)`` epochs, replacing the previous one."""
    payload = {
        "format": CHECKPOINT_FORMAT,
        "fingerprint": fingerprint,
        "epoch": len(history),
        "history": history,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "rng": _rng_states(device),
    }
    save_torch(path, payload, "training checkpoint")


def _final_metrics(history: list[dict], n_train: int, n_val: int, stopped: bool) -> dict:
    last = history[-1]
    val_accs = [row["val_acc"] for row in history if row["val_acc"] is not None]
    seconds = sum(row["seconds"] for row in history)
    return {
        **last,
        "epochs": last["epoch"],
        "best_val_acc": max(val_accs) if val_accs else None,
        "n_train": n_train,
        "n_val": n_val,
        "total_seconds": seconds,
        "stopped_early": stopped,
    }


def train_pretext_job(
    *,
    labels_path: str | Path,
    index_paths: Sequence[str | Path],
    frame_paths: Sequence[str | Path],
    feature: str,
    arch: str,
    n_clusters: int,
    config: PretextConfig,
    config_slice: dict,
    seed: int,
    device: torch.device,
    model_path: str | Path,
    history_path: str | Path,
    checkpoint_path: str | Path,
    backbone_path: str | Path,
) -> dict:
    """Rule ``train_pretext``: the frames of every shard and their sound clusters -> a network
    that predicts them (:func:`train_pretext`), named ``{feature}-k{n_clusters}-{arch}``.

    The frames that have a cluster are read once, into one array (:func:`soundsup.shards.load_pretext_data`,
    which checks that labels, indices and frames line up); glibc keeps freed blocks for the
    step's re-allocations. TensorBoard events go beside the history when tensorboard is installed.
    """
    from soundsup.shards import load_pretext_data

    retain_freed_host_memory()  # training re-allocates the same big buffers every step
    data = load_pretext_data(labels_path, index_paths, frame_paths)
    log.info("%d of %d frames have a sound cluster; device %s", len(data.frames), data.n_pairs, device)
    return train_pretext(
        data.frames,
        data.targets,
        data.groups,
        arch=arch,
        n_classes=n_clusters,
        config=config,
        seed=seed,
        device=device,
        model_path=model_path,
        history_path=history_path,
        checkpoint_path=checkpoint_path,
        backbone_path=backbone_path,
        meta={
            "config_slice": {**config_slice, "arch": arch, "k": n_clusters},
            "seed": seed,
            "feature": feature,
            "n_pretext_pairs": len(data.frames),
            "device": str(device),
        },
        job_name=str(ModelName(arch=arch, init="sound", feature=feature, k=n_clusters)),
        tensorboard_dir=Path(history_path).parent / "tensorboard",
    )
