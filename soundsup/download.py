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

yt-dlp runs in worker processes (:mod:`soundsup.ytdlp_worker`), one per download thread and
reused from clip to clip, so that ``timeout_s`` bounds the whole fetch of a clip: past it the
worker is killed with the ffmpeg it started, whatever it was blocked on (a page that drips,
a stalled body). ffmpeg's messages of each clip come back with its answer.

Every exception raised for one clip becomes that clip's failure with a reason, except a failed
write of our own (disk full, I/O error, permissions: :class:`soundsup.io.OutputWriteError`),
which stops the shard and fails the job: a rerun after the cause is fixed obtains the clips.

``source: local`` cuts ``local_dir/{ytid}.mp4`` with the ffmpeg command that yt-dlp would run
(``-ss S -t D -i SRC``, stream copy or re-encode): yt-dlp itself refuses sections of
``file:`` URLs ("This format cannot be partially downloaded": its ffmpeg downloader lists
only network protocols). Probe, cache, classification and manifest are shared. The videos of
a folder (``world: folder``, :mod:`soundsup.folder`) are cut the same way from the path each
selection row names; a video the scan found unusable is its failure row at once.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import errno
import logging
import math
import os
import re
import shutil
import stat
import string
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pandas as pd

from soundsup.audioset import ID_PATTERN, MAX_SECONDS
from soundsup.clips import (
    COVERAGE_TOLERANCE_S,
    DURATION_TOLERANCE_S,
    SILENCE_RMS,
    ClipFailure,
    DamagedClipsError,
    cached_clip,
    check_probe,
    clip_path,
    coverage_tolerance,
    ffmpeg_error_line,
    file_sha256,
    make_record,
    probe_clip,
    record_path,
    verify_manifest_clips,
    write_record,
    writing,
)
from soundsup.ffmpeg import ffmpeg_binary, ffmpeg_on_path
from soundsup.io import OutputWriteError, write_errno_in_text
from soundsup.redact import PROXY_VARIABLES, redact, secrets_in_environment
from soundsup.ytdlp_worker import WorkerDied, WorkerProcess, WorkerStartError, WorkerTimeout

__all__ = [
    "COVERAGE_TOLERANCE_S", "DURATION_TOLERANCE_S", "MANIFEST_COLUMNS", "REASONS", "SILENCE_RMS",
    "ClipFailure", "DamagedClipsError", "DownloadConfig", "DownloadFailureError", "OutputWriteError",
    "cached_clip", "check_failures", "check_url_template", "classify_error", "clip_path",
    "dataset_summary", "download_shard", "file_sha256", "probe_clip", "record_path",
    "verify_manifest_clips", "ytdlp_options",
]  # fmt: skip

log = logging.getLogger(__name__)

REASONS: tuple[str, ...] = (
    "unavailable", "private", "geo_blocked", "age_restricted", "bot_check", "rate_limited", "http_error",
    "timeout", "no_audio", "no_video", "too_short", "truncated", "corrupt", "other",
)  # fmt: skip
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
RETRIED_REASONS = frozenset({"timeout", "http_error", "rate_limited", "corrupt", "truncated"})
LOCAL_RETRIED_REASONS = frozenset({"timeout"})  # a local file gives the same answer twice
MAX_PAUSE_S = 3600.0

_MESSAGE_REASONS = (
    ("bot_check", r"confirm you.{0,3}re not a bot|not a robot"),
    ("age_restricted", r"confirm your age|age[- ]restricted|inappropriate for some users"),
    ("private", r"private video|video is private"),
    ("geo_blocked", r"in your country|geo[- ]?restrict"),
    ("rate_limited", r"http error 429|server returned 429|too many requests|rate[- ]limit"),
    (
        "unavailable",
        r"http error 40[4]|http error 410|video unavailable|no longer available|has been removed"
        r"|account .{0,80}terminated|does not exist|video is not available|no such file"
        r"|server returned 404|server returned 410",
    ),
    ("http_error", r"http error [45]\d\d|server returned [45]\d\d|server returned 5xx|server returned 4xx"),
    ("timeout", r"timed out|timeout"),
    ("corrupt", r"exited with code 183|invalid data found|moov atom not found"),
)
_FFMPEG_NOTEWORTHY = re.compile(
    r"error|invalid|not found|failed|does not contain|timed out|prematurely|forbidden|denied|refused"
    r"|unable|no space|returned [45]",
    re.I,
)
_OUTPUT_CONTEXT = re.compile(
    r"error writing trailer|av_interleaved_write_frame|error muxing|error opening output|could not open "
    r"output|error closing|\[out#|output file",
    re.I,
)


def check_url_template(template: str) -> None:
    """Raise ``ValueError`` unless ``template`` is an http(s) URL whose only placeholder is ``{ytid}``."""
    try:
        fields = [
            (name, spec, conversion)
            for _, name, spec, conversion in string.Formatter().parse(template)
            if name is not None
        ]
    except ValueError as error:
        raise ValueError(f"download.url_template {template!r} is not a valid template: {error}") from error
    names = {name for name, _, _ in fields}
    if names != {"ytid"} or any(spec or conversion for _, spec, conversion in fields):
        others = sorted(repr("{" + name + "}") for name in names - {"ytid"})
        detail = f"it has {', '.join(others)}" if others else "found no plain '{ytid}'"
        raise ValueError(
            f"download.url_template {template!r}: the only placeholder allowed is '{{ytid}}' ({detail})"
        )
    parts = urlsplit(template.format(ytid="A" * 11))
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(
            f"download.url_template {template!r}: only http:// and https:// URLs with a host are fetched"
        )


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
        check_url_template(self.url_template)
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


def classify_error(message: str, cause: BaseException | None = None, status: int | None = None) -> str:
    """The failure reason (one of :data:`REASONS`) of a yt-dlp or ffmpeg error message.

    ``status`` (or ``cause.status``) is the HTTP status when yt-dlp knew it.
    """
    if status is None:
        status = getattr(cause, "status", None)
    if isinstance(status, int):
        if status in (404, 410):
            return "unavailable"
        if status == 429:
            return "rate_limited"
        if 400 <= status < 600:
            return "http_error"
    lowered = message.lower()
    for reason, pattern in _MESSAGE_REASONS:
        if re.search(pattern, lowered):
            return reason
    if cause is not None and "timed out" in str(cause).lower():
        return "timeout"
    return "other"


def _ffmpeg_notes(stderr: str, limit: int = 3) -> str:
    """The few lines of ffmpeg's messages that say what went wrong, joined (empty if none)."""
    lines = []
    for line in stderr.splitlines():
        line = line.strip()
        if line and "\0end" not in line and _FFMPEG_NOTEWORTHY.search(line) and line not in lines:
            lines.append(line[:200])
    return " | ".join(lines[:limit])


def _own_write_failure(stderr: str, target: Path) -> OutputWriteError | None:
    """A failed write of the clip's output in ffmpeg's messages (disk full, I/O, permission)."""
    code = write_errno_in_text(stderr)
    if code is None:
        for line in stderr.splitlines():
            mentions_output = str(target.with_suffix("")) in line or _OUTPUT_CONTEXT.search(line)
            if not mentions_output:
                continue
            if "input/output error" in line.lower():
                code = errno.EIO
            elif "permission denied" in line.lower():
                code = errno.EACCES
            if code is not None:
                break
    if code is None:
        return None
    return OutputWriteError(target, code, _ffmpeg_notes(stderr, limit=2) or "ffmpeg could not write it")


# ----------------------------------------------------------------------------------------------
# Shared pause (rate limits), rate limit


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


def _rate_bytes(rate_limit: str | None) -> float | None:
    if not rate_limit:
        return None
    from yt_dlp.utils import parse_bytes

    value = parse_bytes(rate_limit)
    if not value:
        raise ValueError(f"download.rate_limit {rate_limit!r} is not a byte rate like '2M' or '500K'")
    return float(value)


# ----------------------------------------------------------------------------------------------
# Fetchers: put the section of one segment at ``target`` (a temporary .mp4 path)


@dataclass
class _Fetched:
    """A fetched section: its file, the source's duration (or file, to ask it) when known, ffmpeg's notes."""

    path: Path
    source_seconds: float | None = None
    notes: str = ""
    source_file: Path | None = None
    source_margin_s: float = 0.0  # how far off ``source_seconds`` may be (sites round to seconds)


def ytdlp_options(config: DownloadConfig) -> dict:
    """The YoutubeDL parameters shared by every clip (JSON-able; section and output are per clip).

    File URLs stay disabled (yt-dlp's default): a redirect to ``file://`` is refused.
    """
    height = int(config.max_height)
    read_timeout_us = int(config.timeout_s / 2 * 1e6)
    downloader_args = {"ffmpeg_i": ["-loglevel", "warning", "-nostats", "-rw_timeout", str(read_timeout_us)]}
    if config.reencode:
        downloader_args["ffmpeg_o"] = ["-c:v", "libx264", "-preset", "veryfast", "-crf", "23", "-c:a", "aac"]
    options = {
        "format": f"bv*[height<=?{height}]+ba/b[height<=?{height}]/wv*+ba/w",
        "format_sort": ["vcodec:h264", "acodec:aac", "ext:mp4:m4a"],
        "merge_output_format": "mp4",
        "force_keyframes_at_cuts": bool(config.reencode),
        "external_downloader_args": downloader_args,
        "socket_timeout": float(config.timeout_s) / 2,
        "retries": int(config.retries),
        "extractor_retries": int(config.retries),
        "quiet": False,  # True would pass -loglevel quiet to ffmpeg and hide why it failed
        "no_warnings": False,
        "noprogress": True,
        "noplaylist": True,
        "overwrites": True,
        "continuedl": False,
        "cachedir": False,
        "updatetime": False,
    }
    rate = _rate_bytes(config.rate_limit)
    if rate:
        options["ratelimit"] = rate
    if config.cookies:
        options["cookiefile"] = str(config.cookies)
    proxy = proxy_url(config.proxy_env)
    if proxy:
        options["proxy"] = proxy  # in memory only; yt-dlp hands it to ffmpeg in its environment
    return options


def proxy_url(variable: str | None, environ: dict[str, str] | None = None) -> str | None:
    """The proxy for clip downloads, from the environment only (a proxy URL may hold a password).

    ``variable`` names the environment variable that holds it; None takes the standard ones
    (``HTTPS_PROXY``, ``HTTP_PROXY``, ``ALL_PROXY``, either case), as curl and yt-dlp do.
    Passing it to yt-dlp explicitly makes its ffmpeg use the same proxy.
    """
    environ = os.environ if environ is None else environ
    if variable:
        value = environ.get(variable, "").strip()
        if not value:
            raise ValueError(f"download.proxy_env names {variable}, which is not set in the environment")
        return value
    for name in PROXY_VARIABLES:
        if environ.get(name, "").strip():
            return environ[name].strip()
    return None


class _YtdlpFetcher:
    """One yt-dlp worker process per download thread, reused for every clip that thread fetches."""

    def __init__(self, config: DownloadConfig, partial_dir: Path) -> None:
        self.config = config
        self.partial_dir = partial_dir
        self._options = ytdlp_options(config)
        self._local = threading.local()
        self._created: list[WorkerProcess] = []
        self._lock = threading.Lock()

    def _worker(self) -> WorkerProcess:
        worker = getattr(self._local, "worker", None)
        if worker is None or not worker.alive:
            worker = WorkerProcess(self._options)
            self._local.worker = worker
            with self._lock:
                self._created.append(worker)
        return worker

    def __call__(self, ytid: str, start: float, end: float, target: Path) -> _Fetched:
        worker = self._worker()
        stem = target.with_suffix("")
        request = {
            "url": self.config.url_template.format(ytid=ytid),
            "start": start,
            "end": end,
            "outtmpl": f"{stem}.%(ext)s",
        }
        began = time.monotonic()
        try:
            event = worker.fetch(request, self.config.timeout_s, progress=self.partial_dir)
        except WorkerTimeout as late:
            raise ClipFailure("timeout", late.message) from late
        except WorkerDied as died:
            raise ClipFailure("other", str(died)) from died
        elapsed = time.monotonic() - began
        stderr = event["stderr"]
        own = _own_write_failure(stderr, target)
        if own is None and event.get("errno") in (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EIO):
            filename = Path(event.get("filename") or target)
            if event["errno"] != errno.EIO or self.partial_dir in filename.parents:
                own = OutputWriteError(filename, int(event["errno"]), event.get("message", ""))
        if own is not None:
            raise own
        notes = _ffmpeg_notes(stderr)
        if event["event"] == "error":
            raise _fetch_failure(event, notes, elapsed, self.config.timeout_s / 2)
        downloaded = Path(str(event.get("filepath") or ""))
        if not event.get("filepath") or not downloaded.is_file():
            raise ClipFailure("other", f"yt-dlp reported no downloaded file (last step: {event['stage']!r})")
        duration = event.get("duration")
        source_seconds = float(duration) if isinstance(duration, int | float) and duration > 0 else None
        return _Fetched(_as_mp4(downloaded, target, self.config.timeout_s), source_seconds, notes, None, 1.0)

    def close(self) -> None:
        for worker in self._created:
            worker.close()


def _fetch_failure(event: dict, notes: str, elapsed_s: float, read_timeout_s: float) -> ClipFailure:
    """The failure of a yt-dlp error answer, classified by yt-dlp's message and ffmpeg's.

    ffmpeg reports its own read timeout (``-rw_timeout``) as an I/O error: one that came after
    at least that long is a timeout.
    """
    message = str(event.get("message", ""))
    reason = classify_error(message, status=event.get("status"))
    if reason in ("other", "corrupt") and "exited with code" in message:
        # ffmpeg failed after a successful extraction: the video exists; its media URL did not answer.
        by_ffmpeg = classify_error(notes) if notes else "other"
        reason = "http_error" if by_ffmpeg == "unavailable" else by_ffmpeg if by_ffmpeg != "other" else reason
        silent_io = not notes or "input/output error" in notes.lower()
        if reason in ("other", "corrupt") and silent_io and elapsed_s >= 0.95 * read_timeout_s:
            reason = "timeout"
            message = f"no data for {read_timeout_s:g} s from the media URL, ffmpeg gave up ({message})"
    if event.get("cause") == "RequestError" and reason == "other":
        message = f"request refused: {message}"
    if notes and notes not in message:
        message = f"{message} (ffmpeg: {notes})"
    return ClipFailure(reason, message[:500])


def _as_mp4(downloaded: Path, target: Path, timeout_s: float) -> Path:
    """Move (or remux, if yt-dlp chose another container) the download to ``target``."""
    if downloaded.suffix == ".mp4":
        with writing(target):
            os.replace(downloaded, target)
        return target
    command = [ffmpeg_binary(), "-y", "-hide_banner", "-loglevel", "error", "-nostdin", "-i", str(downloaded),
               "-map", "0:v:0?", "-map", "0:a:0?", "-c", "copy", "-f", "mp4", str(target)]  # fmt: skip
    try:
        result = subprocess.run(command, capture_output=True, timeout=timeout_s)
    except subprocess.TimeoutExpired as error:
        raise ClipFailure("timeout", f"remux to mp4 ran past {timeout_s:g} s") from error
    finally:
        downloaded.unlink(missing_ok=True)
    stderr = result.stderr.decode(errors="replace")
    if result.returncode != 0:
        own = _own_write_failure(stderr, target)
        if own is not None:
            raise own
        raise ClipFailure("corrupt", "remux to mp4 failed: " + ffmpeg_error_line(stderr))
    return target


def cut_command(
    source: str | Path,
    start: float,
    end: float,
    target: str | Path,
    reencode: bool,
    max_height: int | None = None,
) -> list[str]:
    """The ffmpeg command yt-dlp runs for a section (input seek, stream copy or re-encode).

    ``max_height`` (re-encoding only): scale taller video down to it (even sizes, aspect kept).
    """
    codecs = (
        ["-c:v", "libx264", "-preset", "veryfast", "-crf", "23", "-c:a", "aac"]
        if reencode
        else ["-c", "copy"]
    )
    if reencode and max_height:
        scale = f"scale=w=-2:h='trunc(min(ih,{int(max_height)})/2)*2',format=yuv420p"
        codecs = ["-vf", scale, *codecs]
    return [
        ffmpeg_binary(), "-y", "-hide_banner", "-loglevel", "error", "-nostdin",
        "-ss", f"{start:.3f}", "-t", f"{end - start:.3f}", "-i", str(source),
        "-map", "0:v:0?", "-map", "0:a:0?", *codecs, "-f", "mp4", str(target),
    ]  # fmt: skip


def _source_seconds(source: Path, timeout_s: float) -> float | None:
    """The duration a container states (``Duration: HH:MM:SS.ss``), without decoding."""
    command = [ffmpeg_binary(), "-hide_banner", "-nostdin", "-i", str(source)]
    try:
        result = subprocess.run(command, capture_output=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return None
    found = re.search(r"Duration: (\d+):(\d\d):(\d\d(?:\.\d+)?)", result.stderr.decode(errors="replace"))
    if not found:
        return None
    hours, minutes, seconds = found.groups()
    return int(hours) * 3600 + int(minutes) * 60 + float(seconds)


class _CutFailed(ClipFailure):
    """An ffmpeg cut failed; ``stderr`` holds all of ffmpeg's messages."""

    def __init__(self, reason: str, message: str, stderr: str) -> None:
        super().__init__(reason, message)
        self.stderr = stderr


def _run_cut(command: list[str], target: Path, timeout_s: float) -> str:
    """Run an ffmpeg cut; its messages. A failure of the clip raises :class:`_CutFailed`, one
    of our own writes :class:`OutputWriteError`."""
    try:
        result = subprocess.run(command, capture_output=True, timeout=timeout_s)
    except subprocess.TimeoutExpired as error:
        raise ClipFailure("timeout", f"ffmpeg cut ran past {timeout_s} s: killed") from error
    stderr = result.stderr.decode("utf-8", errors="replace")
    if result.returncode != 0:
        own = _own_write_failure(stderr, target)
        if own is not None:
            raise own
        message = ffmpeg_error_line(stderr)
        reason = classify_error(message)
        raise _CutFailed(
            reason if reason != "other" else "corrupt",
            f"ffmpeg exited with code {result.returncode}: {message}",
            stderr,
        )
    return stderr


class _LocalFetcher:
    """Cuts ``local_dir/{ytid}.mp4`` with the ffmpeg command of yt-dlp's section download."""

    def __init__(self, config: DownloadConfig) -> None:
        self.config = config
        self.folder = Path(str(config.local_dir))
        if not self.folder.is_dir():
            raise FileNotFoundError(f"download.local_dir is not a folder: {self.folder}")

    def __call__(self, ytid: str, start: float, end: float, target: Path) -> _Fetched:
        source = self.folder / f"{ytid}.mp4"
        if not source.is_file():
            raise ClipFailure("unavailable", f"no file {source}")
        command = cut_command(source, start, end, target, self.config.reencode)
        stderr = _run_cut(command, target, self.config.timeout_s)
        return _Fetched(target, notes=_ffmpeg_notes(stderr), source_file=source)

    def close(self) -> None:
        return


_NOT_IN_MP4 = re.compile(r"codec not currently supported in container|could not find tag for codec", re.I)


class _FolderFetcher:
    """Cuts a segment of a video of a folder (``world: folder``) as :class:`_LocalFetcher` does,
    from ``folder / source_path`` of the segment's selection row.

    The path is checked again when it is cut (a regular file inside the folder, not a link:
    the folder may have changed since it was scanned) and reaches ffmpeg as a ``file:`` URL of
    its absolute form. Re-encoding scales taller video down to ``max_height``; a stream copy
    that the mp4 container cannot hold (VP8, Theora ...) is re-encoded instead.
    """

    def __init__(self, config: DownloadConfig, folder: str | Path, segments: pd.DataFrame) -> None:
        self.config = config
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise FileNotFoundError(f"folder.path is not a folder: {self.folder}")
        self.folder = self.folder.resolve()
        missing = {"source_path", "source_seconds"} - set(segments.columns)
        if missing:
            raise ValueError(f"the segments of a folder lack the columns {sorted(missing)}")
        self.sources = {
            str(ytid): (str(path), float(seconds))
            for ytid, path, seconds in zip(
                segments["ytid"], segments["source_path"], segments["source_seconds"], strict=True
            )
        }

    def _source(self, ytid: str) -> Path:
        relative = self.sources[ytid][0]
        source = self.folder / relative
        try:
            status = source.lstat()
        except FileNotFoundError as error:
            raise ClipFailure(
                "unavailable", f"no file {relative} in {self.folder} (gone since the scan)"
            ) from error
        real = source.resolve()
        if stat.S_ISLNK(status.st_mode) or not real.is_relative_to(self.folder) or real != source:
            raise ClipFailure("other", f"{relative}: refused, it leads out of {self.folder} through a link")
        if not stat.S_ISREG(status.st_mode):
            raise ClipFailure("other", f"{relative}: refused, not a regular file")
        return source

    def __call__(self, ytid: str, start: float, end: float, target: Path) -> _Fetched:
        source = self._source(ytid)
        url, height = f"file:{source}", self.config.max_height
        try:
            stderr = _run_cut(cut_command(url, start, end, target, self.config.reencode, height),
                              target, self.config.timeout_s)  # fmt: skip
        except _CutFailed as failure:
            if self.config.reencode or not _NOT_IN_MP4.search(failure.stderr):
                raise
            log.info("%s: its codecs do not fit an mp4 stream copy: re-encoding", source.name)
            stderr = _run_cut(
                cut_command(url, start, end, target, True, height), target, self.config.timeout_s
            )
        return _Fetched(target, source_seconds=self.sources[ytid][1], notes=_ffmpeg_notes(stderr))

    def close(self) -> None:
        return


# ----------------------------------------------------------------------------------------------
# One shard


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
        self.rate = _rate_bytes(config.rate_limit)
        self.stopping = threading.Event()
        self.local = folder is not None or config.source == "local"
        if folder is not None:
            self.fetch = _FolderFetcher(config, folder, segments)
        elif config.source == "local":
            self.fetch = _LocalFetcher(config)
        else:
            self.fetch = _YtdlpFetcher(config, self.partial_dir)

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


def _check_probe_fetched(info: dict, segment, fetched: _Fetched) -> None:
    """:func:`_check_probe`, with a short clip explained by the source or ffmpeg where they can."""
    start, end = float(segment.start), float(segment.end)
    try:
        check_probe(info, end - start)
    except ClipFailure as failure:
        if failure.reason != "truncated":
            raise
        source = fetched.source_seconds
        if source is None and fetched.source_file is not None:
            source = _source_seconds(fetched.source_file, timeout_s=60)
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


def _empty_manifest() -> pd.DataFrame:
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
        return _empty_manifest()
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


def dataset_summary(
    selection: pd.DataFrame,
    manifests: list[pd.DataFrame],
    pair_indices: list[pd.DataFrame],
    pair_failures: list[pd.DataFrame] | None = None,
) -> pd.DataFrame:
    """One row per shard and a ``total`` row: requested, downloaded, failed_<reason>, pairs,
    skipped (1 for a shard that ``download.on_shard_failure: skip`` left out, see
    :func:`settle_shard`).

    The shard of a manifest or index row is looked up by its id in ``selection``.
    ``pair_failures`` (optional) adds ``no_pairs``: downloaded clips that gave no pair.
    """
    shard_of_id = dict(zip(selection["ytid"].astype(str), selection["shard"].astype(int), strict=True))
    shards = sorted(selection["shard"].astype(int).unique())
    manifest = pd.concat([_empty_manifest(), *manifests], ignore_index=True)
    index = pd.concat([pd.DataFrame({"ytid": pd.Series([], dtype=str)}), *pair_indices], ignore_index=True)
    shard_column = {"manifest": manifest["ytid"].map(shard_of_id), "index": index["ytid"].map(shard_of_id)}
    rows = []
    for shard in shards:
        clips = manifest[shard_column["manifest"] == shard]
        row = {
            "shard": str(shard),
            "requested": int((selection["shard"] == shard).sum()),
            "downloaded": int((clips["status"] == "ok").sum()),
        }
        failed = clips[clips["status"] != "ok"]["reason"]
        row.update({f"failed_{reason}": int((failed == reason).sum()) for reason in REASONS})
        row["pairs"] = int((shard_column["index"] == shard).sum())
        row["skipped"] = int(shard_was_skipped(clips))
        rows.append(row)
    if pair_failures is not None:
        failures = pd.concat(
            [pd.DataFrame({"ytid": pd.Series([], dtype=str)}), *pair_failures], ignore_index=True
        )
        by_shard = failures["ytid"].map(shard_of_id)
        for row in rows:
            row["no_pairs"] = int((by_shard == int(row["shard"])).sum())
    summary = pd.DataFrame(rows, columns=_summary_columns(pair_failures is not None))
    total = {column: int(summary[column].sum()) for column in summary.columns if column != "shard"}
    return pd.concat([summary, pd.DataFrame([{"shard": "total", **total}])], ignore_index=True)


def _summary_columns(with_no_pairs: bool) -> list[str]:
    columns = [
        "shard",
        "requested",
        "downloaded",
        *(f"failed_{reason}" for reason in REASONS),
        "pairs",
        "skipped",
    ]
    return [*columns, "no_pairs"] if with_no_pairs else columns
