"""A real small file system for tests of full-disk behaviour: a tmpfs of a given size.

``small_tmpfs(folder, size_bytes)`` mounts a tmpfs on ``folder`` (created) and unmounts it on
exit; it calls ``pytest.skip`` with the reason when mounting is not permitted (not root, no
CAP_SYS_ADMIN, a container without mount rights, no ``mount`` binary).
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest


@contextlib.contextmanager
def small_tmpfs(folder: Path, size_bytes: int) -> Iterator[Path]:
    """Mount a tmpfs of ``size_bytes`` (rounded up to whole KiB) on ``folder``; yield it."""
    if shutil.which("mount") is None:
        pytest.skip("no mount binary: cannot make a small file system")
    folder.mkdir(parents=True, exist_ok=True)
    size_kib = -(-size_bytes // 1024)
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size_kib}k,mode=0777", "tmpfs", str(folder)],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        pytest.skip(f"mounting a tmpfs is not permitted here: {result.stderr.strip() or result.returncode}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=True)


def fill(folder: Path, leave_bytes: int) -> None:
    """Fill the file system of ``folder`` with a file so that about ``leave_bytes`` stay free."""
    stats = shutil.disk_usage(folder)
    with open(folder / "filler", "wb") as handle:
        handle.write(b"\0" * max(0, stats.free - leave_bytes))
