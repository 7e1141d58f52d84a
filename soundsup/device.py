"""Device, precision, memory and thread choices, made explicit and passed as arguments."""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import platform
import random

import numpy as np
import torch

log = logging.getLogger(__name__)

PRECISIONS = ("auto", "bf16", "fp32")
_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4  # glibc <malloc.h>


DEVICES = ("auto", "cuda", "cpu")


def pick_device(requested: str = "auto") -> torch.device:
    """The training device (config key ``device``): ``'auto'`` gives CUDA when present, else the
    CPU; ``'cuda'`` requires a GPU and raises RuntimeError without one (a GPU run must not
    quietly train for days on the CPU); ``'cpu'`` is the CPU even when a GPU is there."""
    if requested not in DEVICES:
        raise ValueError(f"device must be one of {DEVICES}; got {requested!r}")
    if requested == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(
            "config key device is 'cuda', but torch sees no CUDA device here "
            f"(torch {torch.__version__}, CUDA build {torch.version.cuda}, "
            f"CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES')!r}); set device: auto "
            "to train on the CPU"
        )
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(requested)


# oneDNN's instruction-set caps (ONEDNN_MAX_CPU_ISA) below which it has no bf16 kernels.
_ISA_WITHOUT_BF16 = ("SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX512_CORE", "AVX512_CORE_VNNI")


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` multiplies bf16 in hardware (CUDA Ampere+; x86 AVX512-BF16 or AMX).

    On a CPU, a cap on oneDNN's instruction set (``ONEDNN_MAX_CPU_ISA`` / ``DNNL_MAX_CPU_ISA``,
    e.g. ``AVX2``) below AVX512_CORE_BF16 counts as no bf16: oneDNN then has no bf16 kernels.
    """
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported(including_emulation=False)
    if device.type == "cpu":
        cap = (os.environ.get("ONEDNN_MAX_CPU_ISA") or os.environ.get("DNNL_MAX_CPU_ISA") or "").upper()
        if cap in _ISA_WITHOUT_BF16:
            return False
        checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
        return torch.backends.mkldnn.is_available() and any(
            getattr(torch.cpu, name, lambda: False)() for name in checks
        )
    return False


def autocast_dtype(device: torch.device, precision: str = "auto") -> torch.dtype | None:
    """The autocast dtype of ``precision`` on ``device``: bf16, or None for plain fp32.

    ``'auto'`` is bf16 where the hardware computes it natively (see :func:`native_bf16`) and
    fp32 elsewhere, where emulated bf16 would be slower and no more exact; ``'bf16'`` forces
    it, ``'fp32'`` turns it off. Weights, optimizer state and the loss stay fp32 either way.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}; got {precision!r}")
    if precision == "fp32" or (precision == "auto" and not native_bf16(device)):
        return None
    return torch.bfloat16


def autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    """Autocast to ``dtype`` on ``device`` (from :func:`autocast_dtype`); a no-op for None."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def memory_format(device: torch.device, dtype: torch.dtype | None = None) -> torch.memory_format:
    """channels_last on CUDA and under bf16 autocast (tensor cores and oneDNN's bf16 convolutions
    want NHWC), contiguous for fp32 on CPU."""
    if device.type == "cuda" or dtype is not None:
        return torch.channels_last
    return torch.contiguous_format


def retain_freed_host_memory() -> bool:
    """Let glibc's malloc keep freed memory for reuse: no mmap for big blocks, no trimming.

    A training step frees and re-allocates the same large buffers (gradients, bf16 weight
    copies, activations); by default glibc returns each block of 32 MB or more to the kernel
    and the next step page-faults it back in, which costs as much as the matrix products on a
    CPU. The process's resident size then stays at its peak instead of shrinking. Returns
    False (and changes nothing) where the C library is not glibc.
    """
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    mallopt = getattr(ctypes.CDLL(None), "mallopt", None)
    if mallopt is None:
        return False
    done = mallopt(_M_MMAP_MAX, 0) == 1 and mallopt(_M_TRIM_THRESHOLD, 2**31 - 1) == 1
    log.debug("glibc malloc: freed memory retained (%s)", done)
    return done


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, numpy and torch; return a torch CPU generator seeded the same way."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def set_threads(n_threads: int) -> None:
    """Use ``n_threads`` intra-op threads (the rule's ``threads``)."""
    torch.set_num_threads(max(1, int(n_threads)))
