"""Device, precision and thread choices, made explicit and passed as arguments."""

from __future__ import annotations

import contextlib
import random

import numpy as np
import torch


def pick_device(requested: str = "auto") -> torch.device:
    """``'auto'`` gives CUDA when present, else CPU; anything else is taken literally."""
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(requested)


def autocast(device: torch.device) -> contextlib.AbstractContextManager:
    """bf16 autocast on CUDA; a no-op on CPU (where bf16 would be slower and less exact)."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def memory_format(device: torch.device) -> torch.memory_format:
    """channels_last on CUDA (tensor cores want NHWC), contiguous on CPU."""
    return torch.channels_last if device.type == "cuda" else torch.contiguous_format


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, numpy and torch; return a torch CPU generator seeded the same way."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def set_threads(n_threads: int) -> None:
    """Use ``n_threads`` intra-op threads (the rule's ``threads``)."""
    torch.set_num_threads(max(1, int(n_threads)))
