"""A real small file system for tests of full disks: a tmpfs mounted on a test's folder.

``small_disk(folder, size)`` mounts a tmpfs of ``size`` on ``folder`` (root and the right to
mount are needed; the test is skipped with the reason otherwise) and unmounts it after.
``fill(folder, leave)`` writes a filler file so that only ``leave`` bytes stay free, and returns
its path (delete it to free the space again).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest


@contextlib.contextmanager
def small_disk(folder: Path, size: str = "2m") -> Iterator[Path]:
    """Mount a tmpfs of ``size`` on ``folder`` for the block (skip the test where that fails)."""
    folder.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0777", "tmpfs", str(folder)],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        pytest.skip(
            f"cannot mount a tmpfs on {folder} ({result.stderr.strip() or result.returncode}): "
            "the full-disk tests need root and the permission to mount"
        )
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True)


def free_bytes(folder: Path) -> int:
    stats = os.statvfs(folder)
    return stats.f_bavail * stats.f_frsize


def fill(folder: Path, leave: int) -> Path:
    """Write ``folder/filler`` so that ``leave`` bytes (rounded to pages) stay free."""
    filler = folder / "filler"
    with open(filler, "wb") as handle:
        handle.write(b"\0" * max(0, free_bytes(folder) - leave))
    return filler
