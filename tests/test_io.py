"""Atomic writers and failures of our own writes, on a real full file system (a small tmpfs)."""

from __future__ import annotations

import errno
import hashlib
import subprocess

import numpy as np
import pandas as pd
import pytest
import torch
from diskfull import fill, small_disk
from httpserver import MediaServer

from soundsup.fetch import fetch_url
from soundsup.io import (
    OutputWriteError,
    atomic_path,
    output_write_error,
    save_npy,
    write_json,
    write_parquet,
    write_text,
)


def torch_save(path, payload) -> None:
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


WRITERS = {
    "save_npy": (save_npy, np.zeros(100_000)),
    "write_parquet": (write_parquet, pd.DataFrame({"x": np.random.default_rng(0).random(100_000)})),
    "write_text": (write_text, "x" * 400_000),
    "write_json": (write_json, {"x": "y" * 400_000}),
    "torch.save": (torch_save, {"w": torch.rand(100_000)}),
}


@pytest.mark.parametrize("name", list(WRITERS))
def test_every_atomic_writer_says_the_disk_is_full(tmp_path, name):
    """numpy and torch give no errno ('N requested and M written', 'unexpected pos'): still ENOSPC."""
    writer, payload = WRITERS[name]
    with small_disk(tmp_path / "disk", size="256k") as disk:
        target = disk / "results" / "artifact.bin"
        target.parent.mkdir()
        fill(disk, leave=16_384)
        with pytest.raises(OutputWriteError) as caught:
            writer(target, payload)
        error = caught.value
        assert error.errno == errno.ENOSPC and error.filename == str(target)
        assert str(error).startswith(f"cannot write {target}: No space left on device [ENOSPC]")
        assert isinstance(error, OSError)
        assert sorted(path.name for path in target.parent.iterdir()) == []  # no temporary file left


def test_a_read_only_file_system_and_other_errors(tmp_path):
    with small_disk(tmp_path / "disk", size="64k") as disk:
        (disk / "results").mkdir()
        subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True)
        with pytest.raises(OutputWriteError, match=r"Read-only file system \[EROFS\]"):
            write_text(disk / "results" / "a.txt", "x")
    # Errors that are not the machine's stay what they are.
    assert output_write_error(ValueError("bad value"), tmp_path) is None
    assert output_write_error(FileNotFoundError(errno.ENOENT, "no such file"), tmp_path) is None
    assert output_write_error(RuntimeError("a bug, with space left"), tmp_path) is None
    with pytest.raises(TypeError):
        write_json(tmp_path / "b.json", {"x": object()})
    assert not list(tmp_path.glob(".b.*"))


def test_a_download_onto_a_full_disk_is_not_retried(tmp_path):
    served = tmp_path / "served"
    served.mkdir()
    payload = bytes(range(256)) * 600  # 150 KB
    (served / "data.bin").write_bytes(payload)
    with MediaServer(served) as server, small_disk(tmp_path / "disk", size="256k") as disk:
        fill(disk, leave=100_000)
        with pytest.raises(OutputWriteError, match=r"data\.bin: No space left on device"):
            fetch_url(server.url("data.bin"), disk / "data.bin", retries=3, backoff_s=0.01)
        assert len(server.requests) == 1
        (disk / "filler").unlink()
        fetch_url(server.url("data.bin"), disk / "data.bin", sha256=hashlib.sha256(payload).hexdigest())
        assert (disk / "data.bin").read_bytes() == payload
