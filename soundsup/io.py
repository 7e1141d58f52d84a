"""Atomic file writes, failures of our own writes, and provenance sidecars.

Every artifact is written to a temporary name beside its target and renamed into place, so a
killed job never leaves a file that looks finished.

A write of ours that fails because of the machine (disk full, quota, I/O error, no permission,
read-only file system) is the job's failure, never one input's: :func:`atomic_path` raises
:class:`OutputWriteError` naming the path and the cause, and :func:`output_write_error` tells
such a failure apart from any other exception (also the ones that carry no ``errno``: numpy's
``"N requested and M written"``, torch's ``"iostream error"`` / ``"unexpected pos"``, which are
recognised by the free space left on the file system they were writing to).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import platform
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from importlib import metadata
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import pandas as pd

WRITE_ERRNOS = frozenset(
    {errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EACCES, errno.EPERM, errno.EROFS, errno.EFBIG}
)
"""errno values of a write that failed because of the machine, not because of the data written."""
LOW_SPACE_BYTES = 1 << 20
"""Below this much free space, a write error that carries no errno is taken for a full disk."""

_STRERROR = {errno.ENOSPC: "No space left on device", errno.EDQUOT: "Disk quota exceeded",
             errno.EROFS: "Read-only file system", errno.EIO: "Input/output error",
             errno.EACCES: "Permission denied", errno.EFBIG: "File too large"}  # fmt: skip


class OutputWriteError(OSError):
    """Writing one of our own files failed (disk full, quota, I/O error, permission, read-only).

    ``errno``/``strerror`` are the cause, ``filename`` the path that could not be written. It
    fails the job: no input is to blame, and a rerun after the cause is fixed redoes the work.
    """

    def __init__(self, path: str | os.PathLike[str], code: int, detail: str = "") -> None:
        strerror = _STRERROR.get(code) or os.strerror(code)
        super().__init__(code, strerror, str(path))
        self.detail = detail

    def __str__(self) -> str:
        name = errno.errorcode.get(self.errno, str(self.errno))
        hint = {
            errno.ENOSPC: "free space on that file system, then run again",
            errno.EDQUOT: "free space or raise the quota, then run again",
        }.get(self.errno, "fix the file system or its permissions, then run again")
        detail = f" ({self.detail})" if self.detail and self.detail != self.strerror else ""
        return f"cannot write {self.filename}: {self.strerror} [{name}]{detail}; {hint}"


def write_errno_in_text(text: str) -> int | None:
    """The errno whose message (``No space left on device`` ...) appears in ``text``, else None.

    Only the unambiguous causes (ENOSPC, EDQUOT, EROFS, EFBIG) are looked for: I/O and
    permission errors also come from network reads and need the context of a path.
    """
    for code in (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG):
        if _STRERROR[code].lower() in text.lower():
            return code
    return None


def free_bytes(path: str | os.PathLike[str]) -> int | None:
    """Bytes an unprivileged writer may still use on the file system holding ``path`` (its
    nearest existing parent), or None when that cannot be told."""
    where = Path(path)
    while not where.exists() and where != where.parent:
        where = where.parent
    try:
        stats = os.statvfs(where)
    except OSError:
        return None
    return stats.f_bavail * stats.f_frsize


def output_write_error(error: BaseException, path: str | os.PathLike[str]) -> OutputWriteError | None:
    """The :class:`OutputWriteError` that ``error``, raised while writing ``path``, stands for.

    Returns None when ``error`` is no failure of the machine (a bug, bad data, a network
    error). Recognised: an ``OSError`` whose errno is in :data:`WRITE_ERRNOS`; a message naming
    ENOSPC, EDQUOT, EROFS or EFBIG; and any ``OSError``/``RuntimeError`` without an errno
    (numpy, torch, pyarrow) raised while less than :data:`LOW_SPACE_BYTES` are free where
    ``path`` lives (call it before the partial file is removed) or on a read-only file system.
    Training jobs call it around ``torch.save``; :func:`atomic_path` calls it for every block.
    """
    if isinstance(error, OutputWriteError):
        return error
    target = Path(path)
    code = getattr(error, "errno", None) if isinstance(error, OSError) else None
    if code in WRITE_ERRNOS:
        return OutputWriteError(target, code, str(getattr(error, "strerror", "") or ""))
    if not isinstance(error, OSError | RuntimeError):
        return None
    text = str(error)
    code = write_errno_in_text(text)
    if code is not None:
        return OutputWriteError(target, code, text[:300])
    if isinstance(error, OSError) and error.errno is not None:
        return None  # a known errno that is not the machine's (ENOENT, ECONNRESET ...)
    free = free_bytes(target)
    if free is not None and free < LOW_SPACE_BYTES:
        return OutputWriteError(target, errno.ENOSPC, f"{free} bytes free after: {text[:200]}")
    where = target if target.exists() else target.parent
    try:
        if os.statvfs(where).f_flag & os.ST_RDONLY:
            return OutputWriteError(target, errno.EROFS, text[:200])
    except OSError:
        return None
    return None


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` if the block succeeds.

    The temporary name keeps the target's suffix (or ``suffix``) so that libraries which
    choose a format by extension (numpy, matplotlib, torch) behave as for the real name.
    A failure of the machine while writing (see :func:`output_write_error`) is raised as
    :class:`OutputWriteError` naming ``path``; the temporary file is removed either way.
    """
    target = Path(path)
    ext = suffix if suffix is not None else "".join(target.suffixes[-1:])
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{target.stem}.", suffix=f".tmp{ext}", dir=target.parent)
    except OSError as error:
        raise (output_write_error(error, target) or error) from error
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; results are meant to be shared
        os.replace(tmp, target)
    except Exception as error:
        failure = output_write_error(error, target)
        if failure is None or failure is error:
            raise
        raise failure from error
    finally:
        if tmp.exists():
            tmp.unlink()


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def save_npy(path: str | os.PathLike[str], array: np.ndarray) -> None:
    """Write ``array`` as ``.npy`` atomically."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as handle:
            np.save(handle, array)


def write_parquet(path: str | os.PathLike[str], frame: pd.DataFrame) -> None:
    """Write ``frame`` as parquet atomically (index dropped)."""
    with atomic_path(path) as tmp:
        frame.to_parquet(tmp, index=False)


def write_json(path: str | os.PathLike[str], payload: Any) -> None:
    """Write ``payload`` as indented JSON atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(payload, indent=2, sort_keys=True, default=_jsonable) + "\n")


def write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def file_sha256(path: str | os.PathLike[str], chunk_bytes: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes, read ``chunk_bytes`` at a time."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_bytes):
            digest.update(chunk)
    return digest.hexdigest()


def config_hash(config_slice: Any) -> str:
    """Short stable hash of a JSON-serialisable config slice."""
    text = json.dumps(config_slice, sort_keys=True, default=_jsonable)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def git_commit(start: str | os.PathLike[str] | None = None) -> str:
    """The commit of the repository holding ``start`` (default: this package), or 'unknown'."""
    where = Path(start) if start is not None else Path(__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=where, capture_output=True, text=True, timeout=10, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip() or "unknown"


_TRACKED_PACKAGES = ("numpy", "scipy", "torch", "torchvision", "librosa", "scikit-learn", "pandas", "yt-dlp")


def package_versions(names: tuple[str, ...] = _TRACKED_PACKAGES) -> dict[str, str]:
    """Installed versions of the packages that shape numerical results."""
    versions = {"python": platform.python_version()}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def write_meta(
    artifact: str | os.PathLike[str], config_slice: Any, seed: int | None = None, **extra: Any
) -> Path:
    """Write the provenance sidecar ``<artifact>.meta.json`` and return its path.

    It records the config slice that produced the artifact, its hash, the seed, the git commit
    and the versions of the numerical packages.
    """
    meta_path = Path(f"{artifact}.meta.json")
    payload = {
        "artifact": Path(artifact).name,
        "config": config_slice,
        "config_hash": config_hash(config_slice),
        "seed": seed,
        "git_commit": git_commit(),
        "versions": package_versions(),
        **extra,
    }
    write_json(meta_path, payload)
    return meta_path


def os_error_in(error: BaseException) -> OSError | None:
    """The first ``OSError`` with an errno in the chain of ``error`` (itself, its cause, its context)."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, OSError) and error.errno is not None:
            return error
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None


@contextlib.contextmanager
def naming_write_errors(path: str | os.PathLike[str]) -> Iterator[None]:
    """Re-raise an ``OSError`` of the block as one that names ``path`` and its cause.

    A full disk reads ``[Errno 28] cannot write results/x.npy: No space left on device
    (ENOSPC)``; the errno is kept, so callers can still tell the causes apart. Writers that
    turn the ``OSError`` into another exception (``torch.save`` raises a ``RuntimeError`` about
    the zip stream while handling it) are seen through.
    """
    try:
        yield
    except Exception as error:
        cause = os_error_in(error)
        if cause is None:
            if isinstance(error, OSError):
                raise OSError(f"cannot write {path}: {error}") from error
            raise
        code = errno.errorcode.get(cause.errno, "unknown errno")
        raise OSError(cause.errno, f"cannot write {path}: {cause.strerror} ({code})") from error


def write_durably(path: str | os.PathLike[str], write: Callable[[BinaryIO], None]) -> None:
    """Write ``path`` atomically and durably: ``write(handle)`` fills a temporary file beside it,
    which is flushed, fsynced and renamed onto ``path``.

    Any failure (a full disk included, which may only show at flush or fsync) leaves ``path``
    as it was, removes the temporary file and raises an ``OSError`` naming ``path`` and the
    cause (see :func:`naming_write_errors`). ``write`` must write through ``handle.write``
    (numpy's ``tofile`` fast path loses the errno: serialise arrays to bytes first).
    """
    with naming_write_errors(path), atomic_path(path) as tmp:
        with open(tmp, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
