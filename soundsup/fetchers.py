"""Fetchers: each puts the section of one segment at a temporary ``.mp4`` path and says what
it learnt on the way (the source's duration, ffmpeg's notes).

- :class:`YtdlpFetcher`: yt-dlp in worker processes (:mod:`soundsup.ytdlp_worker`), one per
  download thread and reused from clip to clip, so that ``timeout_s`` bounds the whole fetch.
- :class:`LocalFetcher` (``source: local``): cuts ``local_dir/{ytid}.mp4`` with the ffmpeg
  command yt-dlp would run (``-ss S -t D -i SRC``): yt-dlp refuses sections of ``file:`` URLs.
- :class:`FolderFetcher` (``world: folder``): the same cut, from the path of a selection row.

A failure of the clip raises :class:`soundsup.clips.ClipFailure` with its reason; a failed write
of our own raises :class:`soundsup.io.OutputWriteError`.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import stat
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from soundsup.clips import ClipFailure, ffmpeg_error_line, writing
from soundsup.config import byte_rate
from soundsup.failures import classify_error, ffmpeg_notes, own_write_failure
from soundsup.ffmpeg import ffmpeg_binary
from soundsup.io import OutputWriteError
from soundsup.redact import PROXY_VARIABLES
from soundsup.ytdlp_worker import WorkerDied, WorkerProcess, WorkerTimeout

if TYPE_CHECKING:
    from soundsup.download import DownloadConfig

log = logging.getLogger(__name__)


def rate_bytes(rate_limit: str | None) -> float | None:
    """Bytes per second of ``download.rate_limit`` (yt-dlp's syntax, "2M"), None when unset."""
    if not rate_limit:
        return None
    value = byte_rate(rate_limit)
    if not value:
        raise ValueError(f"download.rate_limit {rate_limit!r} is not a byte rate like '2M' or '500K'")
    return float(value)


@dataclass
class Fetched:
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
    rate = rate_bytes(config.rate_limit)
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


class YtdlpFetcher:
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

    def __call__(self, ytid: str, start: float, end: float, target: Path) -> Fetched:
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
        own = own_write_failure(stderr, target)
        if own is None and event.get("errno") in (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EIO):
            filename = Path(event.get("filename") or target)
            if event["errno"] != errno.EIO or self.partial_dir in filename.parents:
                own = OutputWriteError(filename, int(event["errno"]), event.get("message", ""))
        if own is not None:
            raise own
        notes = ffmpeg_notes(stderr)
        if event["event"] == "error":
            raise _fetch_failure(event, notes, elapsed, self.config.timeout_s / 2)
        downloaded = Path(str(event.get("filepath") or ""))
        if not event.get("filepath") or not downloaded.is_file():
            raise ClipFailure("other", f"yt-dlp reported no downloaded file (last step: {event['stage']!r})")
        duration = event.get("duration")
        source_seconds = float(duration) if isinstance(duration, int | float) and duration > 0 else None
        return Fetched(_as_mp4(downloaded, target, self.config.timeout_s), source_seconds, notes, None, 1.0)

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
        own = own_write_failure(stderr, target)
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


def source_seconds(source: Path, timeout_s: float) -> float | None:
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


class CutFailed(ClipFailure):
    """An ffmpeg cut failed; ``stderr`` holds all of ffmpeg's messages."""

    def __init__(self, reason: str, message: str, stderr: str) -> None:
        super().__init__(reason, message)
        self.stderr = stderr


def _run_cut(command: list[str], target: Path, timeout_s: float) -> str:
    """Run an ffmpeg cut; its messages. A failure of the clip raises :class:`CutFailed`, one
    of our own writes :class:`OutputWriteError`."""
    try:
        result = subprocess.run(command, capture_output=True, timeout=timeout_s)
    except subprocess.TimeoutExpired as error:
        raise ClipFailure("timeout", f"ffmpeg cut ran past {timeout_s} s: killed") from error
    stderr = result.stderr.decode("utf-8", errors="replace")
    if result.returncode != 0:
        own = own_write_failure(stderr, target)
        if own is not None:
            raise own
        message = ffmpeg_error_line(stderr)
        reason = classify_error(message)
        raise CutFailed(
            reason if reason != "other" else "corrupt",
            f"ffmpeg exited with code {result.returncode}: {message}",
            stderr,
        )
    return stderr


class LocalFetcher:
    """Cuts ``local_dir/{ytid}.mp4`` with the ffmpeg command of yt-dlp's section download."""

    def __init__(self, config: DownloadConfig) -> None:
        self.config = config
        self.folder = Path(str(config.local_dir))
        if not self.folder.is_dir():
            raise FileNotFoundError(f"download.local_dir is not a folder: {self.folder}")

    def __call__(self, ytid: str, start: float, end: float, target: Path) -> Fetched:
        source = self.folder / f"{ytid}.mp4"
        if not source.is_file():
            raise ClipFailure("unavailable", f"no file {source}")
        command = cut_command(source, start, end, target, self.config.reencode)
        stderr = _run_cut(command, target, self.config.timeout_s)
        return Fetched(target, notes=ffmpeg_notes(stderr), source_file=source)

    def close(self) -> None:
        return


_NOT_IN_MP4 = re.compile(r"codec not currently supported in container|could not find tag for codec", re.I)


class FolderFetcher:
    """Cuts a segment of a video of a folder (``world: folder``) as :class:`LocalFetcher` does,
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

    def __call__(self, ytid: str, start: float, end: float, target: Path) -> Fetched:
        source = self._source(ytid)
        url, height = f"file:{source}", self.config.max_height
        try:
            stderr = _run_cut(cut_command(url, start, end, target, self.config.reencode, height),
                              target, self.config.timeout_s)  # fmt: skip
        except CutFailed as failure:
            if self.config.reencode or not _NOT_IN_MP4.search(failure.stderr):
                raise
            log.info("%s: its codecs do not fit an mp4 stream copy: re-encoding", source.name)
            stderr = _run_cut(
                cut_command(url, start, end, target, True, height), target, self.config.timeout_s
            )
        return Fetched(target, source_seconds=self.sources[ytid][1], notes=ffmpeg_notes(stderr))

    def close(self) -> None:
        return
