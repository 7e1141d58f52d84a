"""Give each GPU job on a workstation a card of its own.

Snakemake's ``--resources gpu=N`` stops more than N GPU jobs from running at once, but every
job still sees every card and would pick ``cuda:0``. :func:`claim_gpu` takes an exclusive lock
on one card's lock file and restricts the process to that card through
``CUDA_VISIBLE_DEVICES``, before CUDA is initialised. Under SLURM (or whenever
``CUDA_VISIBLE_DEVICES`` is already set) the scheduler has chosen, and nothing is changed.
"""

from __future__ import annotations

import fcntl
import logging
import os
import time
from pathlib import Path
from typing import IO

log = logging.getLogger(__name__)

_held: list[IO[str]] = []  # lock files stay open (and locked) for the life of the process


def visible_gpu_count() -> int:
    """Number of NVIDIA cards on this machine (``SOUNDSUP_GPU_COUNT`` overrides; 0 without a driver)."""
    override = os.environ.get("SOUNDSUP_GPU_COUNT", "").strip()
    if override:
        if not override.isdigit():
            raise ValueError(f"SOUNDSUP_GPU_COUNT={override!r} is not a number of GPUs")
        return int(override)
    gpus = Path("/proc/driver/nvidia/gpus")
    return len(list(gpus.iterdir())) if gpus.is_dir() else 0


def claim_gpu(lock_dir: str | os.PathLike[str] | None = None, wait_s: float = 3600.0) -> int | None:
    """Lock a free card, set ``CUDA_VISIBLE_DEVICES`` to it, and return its index.

    Returns None (and changes nothing) when ``CUDA_VISIBLE_DEVICES`` is already set or there is
    no card. Waits up to ``wait_s`` seconds for a card to come free, then raises TimeoutError.
    Must run before torch initialises CUDA.
    """
    if os.environ.get("CUDA_VISIBLE_DEVICES") is not None:
        return None
    count = visible_gpu_count()
    if count == 0:
        return None
    folder = Path(lock_dir or os.environ.get("SOUNDSUP_GPU_LOCK_DIR", "/tmp/soundsup-gpu-locks"))
    folder.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + wait_s
    while True:
        for index in range(count):
            handle = open(folder / f"gpu{index}.lock", "a+")
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.close()
                continue
            _held.append(handle)
            os.environ["CUDA_VISIBLE_DEVICES"] = str(index)
            log.info("using GPU %d of %d (lock %s)", index, count, handle.name)
            return index
        if time.monotonic() > deadline:
            raise TimeoutError(f"no free GPU among {count} after {wait_s:.0f} s (locks in {folder})")
        time.sleep(1.0)
