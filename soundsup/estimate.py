"""What a job will cost, before it runs: the time limits the GPU rules ask of a scheduler.

A SLURM partition rejects a job that asks more than its MaxTime, and backfill starts a job
early only when its limit is honest, so the training rules size ``runtime`` from the work
they will do, not from a constant: images seen (pairs x (1 - val_fraction) x epochs, plus one
validation pass per epoch) or fine-tuning iterations (plus the test passes), divided by an
assumed throughput (config ``runtime_estimate``), times a safety factor, times the attempt
(a retried job gets more time; training resumes from its checkpoint either way).

The throughputs are assumptions for one H100-class GPU with bf16 autocast and the frames in
GPU memory, stated in the schema; a site whose GPUs are slower raises the safety factor or
sets ``gpu_runtime`` in its SLURM site file.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from soundsup.config import pretext_section, voc_section

NPY_HEADER_BYTES = 128  # numpy's .npy header for these arrays (version 1, padded to 64)


def n_frames(frames_bytes: int, frame_size: int) -> int:
    """How many (S, S, 3) uint8 frames ``frames_bytes`` of .npy files hold (one file per shard:
    the headers are a rounding error next to one frame)."""
    return max(0, int(frames_bytes // (frame_size * frame_size * 3)))


def _minutes(seconds: float, estimate: Mapping[str, Any], attempt: int) -> int:
    minutes = seconds * float(estimate["safety_factor"]) / 60.0
    return int(max(math.ceil(minutes), int(estimate["minimum_minutes"])) * max(1, int(attempt)))


def pretext_minutes(n_pairs: int, arch: str, config: Mapping[str, Any], attempt: int = 1) -> int:
    """The time limit of one ``train_pretext`` job, in minutes."""
    pretext, estimate = pretext_section(config, arch), config["runtime_estimate"]
    images = (
        n_pairs * pretext["epochs"] * pretext["epoch_repeats"]
    )  # training (1 - val) and validation (val) together
    return _minutes(images / float(estimate["pretext_images_per_second"][arch]), estimate, attempt)


def finetune_minutes(arch: str, config: Mapping[str, Any], n_test: int = 4952, attempt: int = 1) -> int:
    """The time limit of one ``finetune_voc`` job, in minutes (training plus the test crops;
    "head" is cheaper than "all", both get the limit of "all")."""
    voc, estimate = voc_section(config, arch), config["runtime_estimate"]
    test_iterations = voc["test_augmentations"] * math.ceil(n_test / voc["batch_size"]) / 3  # no backward
    iterations = voc["iterations"] + test_iterations
    return _minutes(iterations / float(estimate["voc_iterations_per_second"][arch]), estimate, attempt)
