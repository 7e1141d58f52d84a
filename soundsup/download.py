"""Download the AudioSet segments of one shard as short mp4 clips, resumably, and say why any failed.

Each clip is cut at the source by yt-dlp (``download_ranges``; ffmpeg reads only the section),
lands under a temporary name in ``cache_dir/.partial``, is probed (video and audio streams
decode, the requested segment is covered, not silent; yt-dlp reports success for truncated,
soundless and past-the-end sections alike) and only then renamed to
``cache_dir/{ytid}_{start_ms}.mp4``, with a record beside it (``.mp4.json``: size, SHA-256,
probed duration). A clip is valid when it decodes and covers its segment (``end - start``,
within a tolerance), whatever the later stages do with it; a rerun checks each cached clip
against its record (size and checksum, no decoding) and fetches only what is missing, damaged
or changed. No cached clip is ever deleted: a damaged one is replaced when a good copy arrives.

How a section arrives (yt-dlp in reused worker processes under a whole-fetch timeout, or an
ffmpeg cut of a local file or of a folder's video) is :mod:`soundsup.fetchers`; the reasons a
clip fails and how messages map onto them, :mod:`soundsup.failures`; the probe and the cache
records, :mod:`soundsup.clips`; the per-shard report, :mod:`soundsup.dataset_report`. This
module runs a shard: cache lookup, retries with back-off (one rate-limit answer pauses every
worker), probing, placing, the manifest and the shard's verdict.

Every exception raised for one clip becomes that clip's failure with a reason, except a failed
write of our own (disk full, I/O error, permissions: :class:`soundsup.io.OutputWriteError`),
which stops the shard and fails the job: a rerun after the cause is fixed obtains the clips.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import errno
import logging
import math
import os
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from soundsup.audioset import ID_PATTERN, MAX_SECONDS
from soundsup.clips import (
    ClipFailure,
    cached_clip,
    check_probe,
    clip_path,
    coverage_tolerance,
    file_sha256,
    make_record,
    probe_clip,
    write_record,
    writing,
)
from soundsup.config import url_template_problem
from soundsup.failures import LOCAL_RETRIED_REASONS, RETRIED_REASONS, classify_error
from soundsup.fetchers import Fetched, FolderFetcher, LocalFetcher, YtdlpFetcher, rate_bytes, source_seconds
from soundsup.ffmpeg import ffmpeg_on_path
from soundsup.io import OutputWriteError, write_parquet
from soundsup.redact import redact, secrets_in_environment
from soundsup.ytdlp_worker import WorkerStartError

log = logging.getLogger(__name__)

MANIFEST_COLUMNS = (
    "ytid",
    "start",
    "end",
    "labels",
    "status",
    "reason",
    "message",
    "path",
    "bytes",
    "seconds",
    "sha256",
    "source_path",
)
MAX_PAUSE_S = 3600.0


@dataclass(frozen=True)
class DownloadConfig:
    """How clips are obtained (config section ``download``).

    ``timeout_s`` bounds the whole fetch of one clip (yt-dlp's extraction and HTTP reads, and
    ffmpeg; ffmpeg also gets ``-rw_timeout`` of half of it per read); ``retries`` with
    exponential back-off from ``backoff_s``; ``rate_limit`` bytes/s per download in yt-dlp
    syntax ("2M"); ``concurrency`` parallel downloads per shard; ``reencode`` gives
    keyframe-accurate cuts.
    """

    source: str = "youtube"
    url_template: str = "https://www.youtube.com/watch?v={ytid}"
    local_dir: str | None = None
    timeout_s: float = 120
    retries: int = 3
    backoff_s: float = 2.0
    concurrency: int = 4
    rate_limit: str | None = None
    cookies: str | None = None
    proxy_env: str | None = None
    max_failure_fraction: float = 0.35
    max_height: int = 360
    reencode: bool = True
    on_submit_host: bool = False
    on_shard_failure: str = "fail"

    def __post_init__(self) -> None:
        if self.on_shard_failure not in ("fail", "skip"):
            raise ValueError(
                f"download.on_shard_failure must be 'fail' or 'skip', got {self.on_shard_failure!r}"
            )
        if self.source not in ("youtube", "local"):
            raise ValueError(f"download.source must be 'youtube' or 'local', got {self.source!r}")
        if self.source == "local" and not self.local_dir:
            raise ValueError("download.source=local needs download.local_dir")
        if (problem := url_template_problem(self.url_template)) is not None:
            raise ValueError(problem)
        if not (self.timeout_s > 0 and self.retries >= 0 and self.backoff_s >= 0 and self.concurrency >= 1):
            raise ValueError(
                "download: timeout_s > 0, retries >= 0, backoff_s >= 0 and concurrency >= 1 are required"
            )
        if not 0 <= self.max_failure_fraction <= 1:
            raise ValueError(
                f"download.max_failure_fraction must be in [0, 1], got {self.max_failure_fraction}"
            )
        if self.cookies and not Path(self.cookies).is_file():
            raise FileNotFoundError(f"download.cookies: no such file {self.cookies}")


class DownloadFailureError(RuntimeError):
    """Too many clips of a shard failed."""


class _Pause:
    """A back-off shared by every worker of a shard: one rate-limit answer pauses them all."""

    def __init__(self, base_s: float) -> None:
        self.base_s = base_s
        self._lock = threading.Lock()
        self._resume_at = 0.0
        self._strikes = 0

    def wait(self) -> None:
        while (delay := self._resume_at - time.monotonic()) > 0:
            time.sleep(min(delay, 1.0))

    def strike(self) -> float:
        with self._lock:
            delay = min(self.base_s * 2**self._strikes, MAX_PAUSE_S)
            self._strikes += 1
            self._resume_at = max(self._resume_at, time.monotonic() + delay)
        log.warning("rate limited: every worker pauses for %.1f s", delay)
        return delay

    def clear(self) -> None:
        with self._lock:
            self._strikes = 0


class _ShardStopped(Exception):
    """The shard is stopping (a fatal error in another clip): this clip was not attempted."""


def _row(
    segment,
    status: str,
    reason: str = "",
    message: str = "",
    path: str = "",
    size: int = 0,
    seconds: float = 0.0,
    digest: str = "",
) -> dict:
    return {
        "ytid": str(segment.ytid), "start": float(segment.start), "end": float(segment.end),
        "labels": str(getattr(segment, "labels", "")), "status": status, "reason": reason, "message": message,
        "path": path, "bytes": int(size), "seconds": float(seconds), "sha256": digest,
        "source_path": str(getattr(segment, "source_path", "") or ""),
    }  # fmt: skip


def _ok_row(segment, clip: Path, record: dict) -> dict:
    return _row(segment, "ok", path=str(clip), size=record["bytes"], seconds=record["seconds"],
                digest=record["sha256"])  # fmt: skip


class _ShardDownloader:
    """Obtains the clips of one shard; shared state: the pause, the fetcher, the stop flag."""

    def __init__(
        self, cache_dir: Path, config: DownloadConfig, folder: str | Path | None, segments: pd.DataFrame
    ) -> None:
        self.cache_dir = cache_dir
        self.partial_dir = cache_dir / ".partial"
        with writing(self.partial_dir):
            self.partial_dir.mkdir(parents=True, exist_ok=True)
        self.config = config
        self.pause = _Pause(config.backoff_s)
        self.rate = rate_bytes(config.rate_limit)
        self.stopping = threading.Event()
        self.local = folder is not None or config.source == "local"
        if folder is not None:
            self.fetch = FolderFetcher(config, folder, segments)
        elif config.source == "local":
            self.fetch = LocalFetcher(config)
        else:
            self.fetch = YtdlpFetcher(config, self.partial_dir)

    def close(self) -> None:
        self.fetch.close()

    def clip(self, segment) -> dict:
        """Find in the cache or download, probe and place one clip; its manifest row.

        Every failure of this clip becomes its row; raised are only :class:`OutputWriteError`
        (our own write failed), an ``OSError`` reading the cache, :class:`WorkerStartError` and
        :class:`_ShardStopped`.
        """
        if self.stopping.is_set():
            raise _ShardStopped()
        scan_reason = str(getattr(segment, "scan_reason", "") or "")
        if scan_reason:  # a video of a folder that gave no segment: its reason, as found by the scan
            return _row(segment, "failed", scan_reason, str(getattr(segment, "scan_message", "")))
        ytid, start, end = str(segment.ytid), float(segment.start), float(segment.end)
        valid_time = math.isfinite(start) and math.isfinite(end) and 0 <= start < end <= MAX_SECONDS
        if not ID_PATTERN.match(ytid) or not valid_time:
            return _row(segment, "failed", "other", f"invalid segment {ytid!r} [{start}, {end}]")
        final = clip_path(self.cache_dir, ytid, start)
        try:
            record = cached_clip(self.cache_dir, segment)
        except OSError:
            raise  # the cache itself cannot be read or written: the job's failure, naming the file
        except Exception as error:  # noqa: BLE001 - an unreadable cached clip is fetched again
            log.warning("%s: checking the cached clip failed (%s): fetching it again", final.name, error)
            record = None
        if record is not None:
            return _ok_row(segment, final, record)
        failure = ClipFailure("other", "not attempted")
        retried = LOCAL_RETRIED_REASONS if self.local else RETRIED_REASONS
        for attempt in range(self.config.retries + 1):
            if self.stopping.is_set():
                raise _ShardStopped()
            try:
                return self._attempt(segment, final)
            except ClipFailure as caught:
                failure = caught
            except (OutputWriteError, WorkerStartError):
                raise
            except Exception as error:  # noqa: BLE001 - one clip's surprise is that clip's failure
                if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS):
                    raise OutputWriteError(error.filename or final, error.errno, str(error)) from error
                log.warning("%s@%.3f: unexpected %s", ytid, start, type(error).__name__, exc_info=True)
                failure = ClipFailure("other", f"{type(error).__name__}: {error}"[:500])
            if failure.reason not in retried or attempt == self.config.retries:
                break
            if failure.reason == "rate_limited":
                self.pause.strike()
            else:
                time.sleep(self.config.backoff_s * 2**attempt)
            log.info(
                "%s@%.3f: %s; retry %d of %d", ytid, start, failure.reason, attempt + 1, self.config.retries
            )
        return _row(segment, "failed", failure.reason, failure.message)

    def _remove_partials(self, final: Path) -> None:
        for leftover in self.partial_dir.glob(f"{final.stem}.*"):
            with contextlib.suppress(FileNotFoundError):
                leftover.unlink()

    def _attempt(self, segment, final: Path) -> dict:
        ytid, start, end = str(segment.ytid), float(segment.start), float(segment.end)
        target = self.partial_dir / final.name
        self._remove_partials(final)
        self.pause.wait()
        began = time.monotonic()
        try:
            fetched = self.fetch(ytid, start, end, target)
            try:
                info = probe_clip(fetched.path, timeout_s=self.config.timeout_s)
            except subprocess.TimeoutExpired as error:
                raise ClipFailure("timeout", f"the probe ran past {self.config.timeout_s} s") from error
            _check_probe_fetched(info, segment, fetched)
            size = fetched.path.stat().st_size
            digest = file_sha256(fetched.path)
            with writing(final):
                os.replace(fetched.path, final)
        finally:
            self._remove_partials(final)
        record = make_record(segment, final, info, size, digest)
        write_record(final, record)
        self.pause.clear()
        if self.rate:
            time.sleep(max(0.0, size / self.rate - (time.monotonic() - began)))
        return _ok_row(segment, final, record)


def _check_probe_fetched(info: dict, segment, fetched: Fetched) -> None:
    """:func:`~soundsup.clips.check_probe`, a short clip explained by the source or ffmpeg where they can."""
    start, end = float(segment.start), float(segment.end)
    try:
        check_probe(info, end - start)
    except ClipFailure as failure:
        if failure.reason != "truncated":
            raise
        source = fetched.source_seconds
        if source is None and fetched.source_file is not None:
            source = source_seconds(fetched.source_file, timeout_s=60)
        if source is not None and source + fetched.source_margin_s + coverage_tolerance(info["fps"]) < end:
            raise ClipFailure(
                "too_short", f"the video is {source:.2f} s long; the segment asks for {start:.3f}-{end:.3f} s"
            ) from failure
        if fetched.notes:
            # An HLS segment that did not answer shortens the clip: say why (a 404 of a media URL
            # that was just extracted is the host's error, not a removed video).
            by_ffmpeg = classify_error(fetched.notes)
            reason = {"unavailable": "http_error"}.get(by_ffmpeg, by_ffmpeg)
            if reason not in ("http_error", "rate_limited", "timeout"):
                reason = "truncated"
            raise ClipFailure(reason, f"{failure.message}; ffmpeg: {fetched.notes}"[:500]) from failure
        raise


def _first_fatal(futures: list[concurrent.futures.Future], caught: BaseException) -> BaseException:
    """The error that stopped a shard: the first one that is not a clip skipped because of it."""
    if not isinstance(caught, _ShardStopped):
        return caught
    for future in futures:
        if future.cancelled():
            continue
        error = future.exception()
        if error is not None and not isinstance(error, _ShardStopped):
            return error
    return RuntimeError("the shard stopped, and no clip says why")


def empty_manifest() -> pd.DataFrame:
    dtypes = dict.fromkeys(MANIFEST_COLUMNS, str) | {
        "start": float,
        "end": float,
        "bytes": np.int64,
        "seconds": float,
    }
    return pd.DataFrame({column: pd.Series([], dtype=dtype) for column, dtype in dtypes.items()})


def download_shard(
    segments: pd.DataFrame, cache_dir: str | Path, config: DownloadConfig, folder: str | Path | None = None
) -> pd.DataFrame:
    """Obtain every segment of a shard; return the manifest (one row per segment, input order).

    Columns: ``ytid, start, end, labels, status ('ok'|'failed'), reason ('' when ok, else one
    of REASONS), message, path, bytes, seconds`` (duration as probed), ``sha256`` (of the
    cached clip; '' when failed) and ``source_path`` (the video's path in its folder; '' for
    other sources). ``folder``: the segments are cut from the videos of this folder (world
    folder; the rows carry ``source_path``, ``source_key``, ``source_seconds`` and the
    ``scan_reason`` of a video that gave no segment), whatever ``config.source`` says. Raises
    :class:`OutputWriteError` when a write of ours fails (disk full ...): the shard stops,
    clips already placed stay valid in the cache, nothing half-written is left under a final
    name, and a rerun resumes.
    """
    if folder is None and config.source == "youtube":
        ffmpeg_on_path()
        if shutil.which("ffmpeg") is None:
            raise FileNotFoundError("yt-dlp needs an executable named ffmpeg on PATH")
    downloader = _ShardDownloader(Path(cache_dir), config, folder, segments)
    rows: list[dict] = []
    try:
        with concurrent.futures.ThreadPoolExecutor(max_workers=config.concurrency) as pool:
            futures = [pool.submit(downloader.clip, segment) for segment in segments.itertuples(index=False)]
            try:
                for number, future in enumerate(futures, start=1):
                    rows.append(future.result())
                    if number % 25 == 0 or number == len(segments):
                        n_ok = sum(entry["status"] == "ok" for entry in rows)
                        log.info(
                            "%d of %d clips done (%d ok, %d failed)",
                            number, len(segments), n_ok, number - n_ok,
                        )  # fmt: skip
            except BaseException as error:
                downloader.stopping.set()
                for future in futures:
                    future.cancel()
                concurrent.futures.wait(futures)
                fatal = _first_fatal(futures, error)
                if fatal is error:
                    raise
                raise fatal from None
    finally:
        downloader.close()
    if not rows:
        return empty_manifest()
    manifest = pd.DataFrame(rows, columns=list(MANIFEST_COLUMNS))
    # A failure message may quote a URL with a password (a proxy error): never into the manifest.
    secrets = secrets_in_environment([config.proxy_env] if config.proxy_env else [])
    manifest["message"] = [redact(str(message), secrets) for message in manifest["message"]]
    return manifest.astype({"bytes": np.int64, "seconds": float, "start": float, "end": float})


def check_failures(manifest: pd.DataFrame, max_failure_fraction: float, name: str) -> None:
    """Raise :class:`DownloadFailureError` when more than ``max_failure_fraction`` of clips failed."""
    if len(manifest) == 0:
        return
    failed = manifest[manifest["status"] != "ok"]
    fraction = len(failed) / len(manifest)
    if fraction > max_failure_fraction:
        reasons = ", ".join(f"{reason} {count}" for reason, count in failed["reason"].value_counts().items())
        raise DownloadFailureError(
            f"{name}: {len(failed)} of {len(manifest)} clips failed ({fraction:.1%} > the bound "
            f"{max_failure_fraction:.1%}): {reasons}. The manifest lists each clip with its reason."
        )


def settle_shard(manifest: pd.DataFrame, config: DownloadConfig, name: str) -> pd.DataFrame:
    """The manifest with its verdict in column ``shard_skipped`` (the same for every row).

    A shard whose failures pass ``max_failure_fraction`` (after every clip's own retries) fails
    the job with :class:`DownloadFailureError` under ``on_shard_failure: fail``; under ``skip``
    it is kept as a skipped shard: its manifest still lists every clip with its reason, it gives
    no pairs, and the dataset report and the tables name it.
    """
    skipped = False
    try:
        check_failures(manifest, config.max_failure_fraction, name)
    except DownloadFailureError as failure:
        if config.on_shard_failure == "fail":
            raise
        log.warning("%s; download.on_shard_failure is skip: the run goes on without this shard", failure)
        skipped = True
    return manifest.assign(shard_skipped=skipped)


def shard_was_skipped(manifest: pd.DataFrame) -> bool:
    """Whether :func:`settle_shard` skipped the shard of ``manifest`` (manifests from before
    the column existed were never skipped)."""
    return bool("shard_skipped" in manifest and manifest["shard_skipped"].any())


def download_job(
    *,
    selection_path: str | Path,
    shard: int,
    config: DownloadConfig,
    cache_dir: str | Path,
    folder_path: str | Path | None,
    manifest_path: str | Path,
) -> pd.DataFrame:
    """Rule ``download_clips``: the segments of ``shard`` in the selection -> clips in the
    cache and the shard's manifest (its verdict included, :func:`settle_shard`).

    Segments with a ``source_path`` (world folder) are cut from the videos of ``folder_path``
    (``folder.path``: where from, like ``download.local_dir``, not a rerun trigger). Every
    failure is logged with its reason.
    """
    selection = pd.read_parquet(selection_path)
    segments = selection[selection["shard"] == shard].reset_index(drop=True)
    folder = folder_path if "source_path" in segments.columns else None
    log.info("shard %d: %d segments, source %s", shard, len(segments), folder or config.source)
    manifest = download_shard(segments, cache_dir, config, folder=folder)
    failed = manifest[manifest["status"] != "ok"]
    for reason, count in failed["reason"].value_counts().items():
        log.info("shard %d: %d failed (%s)", shard, count, reason)
    for row in failed.itertuples():
        where = f" ({row.source_path})" if row.source_path else ""
        log.info("failed %s@%.3f%s: %s: %s", row.ytid, row.start, where, row.reason, row.message)
    settled = settle_shard(manifest, config, name=f"shard {shard}")
    write_parquet(manifest_path, settled)
    return settled
