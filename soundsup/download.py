"""Download the AudioSet segments of one shard as short mp4 clips, resumably, and say why any failed.

Each clip is cut at the source by yt-dlp (``download_ranges``; ffmpeg reads only the section),
lands under a temporary name in ``cache_dir/.partial``, is probed (video and audio streams
decode, long enough, not silent; yt-dlp reports success for truncated, soundless and
past-the-end sections alike) and only then renamed to ``cache_dir/{ytid}_{start_ms}.mp4``. A
rerun probes what is in the cache and downloads only the rest, so a killed shard resumes.

``source: local`` cuts ``local_dir/{ytid}.mp4`` with the ffmpeg command that yt-dlp would run
(``-ss S -t D -i SRC``, stream copy or re-encode): yt-dlp itself refuses sections of
``file:`` URLs ("This format cannot be partially downloaded": its ffmpeg downloader lists
only network protocols). Probe, cache, classification and manifest are shared.
"""

from __future__ import annotations

import concurrent.futures
import logging
import math
import os
import re
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from soundsup.audioset import ID_PATTERN
from soundsup.ffmpeg import ffmpeg_binary, ffmpeg_on_path

log = logging.getLogger(__name__)

REASONS: tuple[str, ...] = (
    "unavailable", "private", "geo_blocked", "age_restricted", "bot_check", "rate_limited", "http_error",
    "timeout", "no_audio", "no_video", "too_short", "corrupt", "other",
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
)
SILENCE_RMS = 1e-4
DURATION_TOLERANCE_S = 0.02
RETRIED_REASONS = frozenset({"timeout", "http_error", "rate_limited", "corrupt"})
LOCAL_RETRIED_REASONS = frozenset({"timeout"})  # a local file gives the same answer twice
MAX_PAUSE_S = 3600.0

_MESSAGE_REASONS = (
    ("bot_check", r"confirm you.{0,3}re not a bot|not a robot"),
    ("age_restricted", r"confirm your age|age[- ]restricted|inappropriate for some users"),
    ("private", r"private video|video is private"),
    ("geo_blocked", r"in your country|geo[- ]?restrict"),
    ("rate_limited", r"http error 429|too many requests|rate[- ]limit"),
    (
        "unavailable",
        r"http error 40[4]|http error 410|video unavailable|no longer available|has been removed"
        r"|account .{0,80}terminated|does not exist|video is not available|no such file",
    ),
    ("http_error", r"http error [45]\d\d"),
    ("timeout", r"timed out|timeout"),
    ("corrupt", r"exited with code 183|invalid data found|moov atom not found"),
)


@dataclass(frozen=True)
class DownloadConfig:
    """How clips are obtained (config section ``download``).

    ``timeout_s`` bounds one clip (ffmpeg ``-rw_timeout`` of half of it per read, and an outer
    deadline that kills a stalled ffmpeg); ``retries`` with exponential back-off from
    ``backoff_s``; ``rate_limit`` bytes/s per download in yt-dlp syntax ("2M");
    ``concurrency`` parallel downloads per shard; ``reencode`` gives keyframe-accurate cuts.
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

    def __post_init__(self) -> None:
        if self.source not in ("youtube", "local"):
            raise ValueError(f"download.source must be 'youtube' or 'local', got {self.source!r}")
        if self.source == "local" and not self.local_dir:
            raise ValueError("download.source=local needs download.local_dir")
        if "{ytid}" not in self.url_template:
            raise ValueError(f"download.url_template must contain '{{ytid}}', got {self.url_template!r}")
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


class ClipFailure(Exception):
    """One clip could not be obtained; ``reason`` is one of :data:`REASONS`."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.message = message


class DownloadFailureError(RuntimeError):
    """Too many clips of a shard failed."""


def clip_path(cache_dir: str | Path, ytid: str, start: float) -> Path:
    """Where the clip of a segment is cached: ``cache_dir/{ytid}_{start_ms}.mp4``."""
    return Path(cache_dir) / f"{ytid}_{int(round(start * 1000))}.mp4"


def classify_error(message: str, cause: BaseException | None = None) -> str:
    """The failure reason (one of :data:`REASONS`) of a yt-dlp or ffmpeg error message."""
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


# ----------------------------------------------------------------------------------------------
# Probe


def _parse_streams(stderr: str) -> dict:
    video = re.search(
        r"Stream #0:\d+[^\n]*?: Video: (?![^\n]*attached pic)[^\n]*?, (\d{2,5})x(\d{2,5})\b[^\n]*", stderr
    )
    fps = re.search(r"([\d.]+) fps", video.group(0)) if video else None
    tbr = re.search(r"([\d.]+)k? tbr", video.group(0)) if video else None
    rate = float(fps.group(1)) if fps else (float(tbr.group(1)) if tbr else 0.0)
    return {
        "has_video": video is not None,
        "has_audio": re.search(r"Stream #0:\d+[^\n]*?: Audio:", stderr) is not None,
        "width": int(video.group(1)) if video else 0,
        "height": int(video.group(2)) if video else 0,
        "fps": rate,
    }


def _ffmpeg_error(stderr: str) -> str:
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    interesting = [
        line for line in lines if re.search(r"error|invalid|not found|failed|does not contain", line, re.I)
    ]
    return (interesting or lines or ["ffmpeg failed without a message"])[0][:300]


def probe_clip(path: str | Path, silence_rms: float = SILENCE_RMS, timeout_s: float = 120) -> dict:
    """Decode a clip once and describe it.

    Returns ``has_video``, ``has_audio``, ``width``, ``height``, ``fps``, ``video_seconds``
    (decoded frames / fps), ``audio_seconds`` (decoded samples / rate), ``seconds`` (the
    smaller), ``rms`` (of the mono audio), ``silent`` (rms below ``silence_rms``) and
    ``error`` ('' when the file opened and decoded).
    """
    command = [
        ffmpeg_binary(), "-hide_banner", "-nostats", "-nostdin", "-threads", "1", "-i", str(path),
        "-map", "0:v:0?", "-f", "null", "-",
        "-map", "0:a:0?", "-ac", "1", "-ar", "8000", "-f", "f32le", "pipe:1",
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, timeout=timeout_s)
    stderr = result.stderr.decode("utf-8", errors="replace")
    info = {
        **_parse_streams(stderr),
        "video_seconds": 0.0, "audio_seconds": 0.0, "seconds": 0.0, "rms": 0.0, "silent": True, "error": "",
    }  # fmt: skip
    if "Error opening input" in stderr or (
        result.returncode != 0 and not (info["has_video"] and info["has_audio"])
    ):
        info["error"] = "" if "does not contain any stream" in stderr else _ffmpeg_error(stderr)
        return info
    if result.returncode != 0:
        info["error"] = _ffmpeg_error(stderr)
    audio = np.frombuffer(result.stdout[: len(result.stdout) // 4 * 4], dtype=np.float32)
    frames = re.findall(r"frame=\s*(\d+)", stderr)
    if frames and info["fps"] > 0:
        info["video_seconds"] = int(frames[-1]) / info["fps"]
    info["audio_seconds"] = len(audio) / 8000
    info["seconds"] = min(info["video_seconds"], info["audio_seconds"])
    info["rms"] = float(np.sqrt(np.mean(np.square(audio, dtype=np.float64)))) if len(audio) else 0.0
    info["silent"] = info["rms"] < silence_rms
    return info


def _check_probe(info: dict, window_s: float) -> None:
    """Raise :class:`ClipFailure` unless the probe describes a usable clip."""
    if info["error"] and not info["has_video"] and not info["has_audio"]:
        raise ClipFailure("corrupt", info["error"])
    if not info["has_video"] and not info["has_audio"]:
        raise ClipFailure(
            "too_short", "no streams in the clip (the section lies past the end of the source?)"
        )
    if not info["has_audio"]:
        raise ClipFailure("no_audio", "the clip has no audio stream")
    if not info["has_video"]:
        raise ClipFailure("no_video", "the clip has no video stream")
    if info["error"]:
        raise ClipFailure("corrupt", info["error"])
    if info["seconds"] + DURATION_TOLERANCE_S < window_s:
        raise ClipFailure(
            "too_short",
            f"{info['seconds']:.2f} s decoded (video {info['video_seconds']:.2f} s, "
            f"audio {info['audio_seconds']:.2f} s) < window {window_s} s",
        )
    if info["silent"]:
        raise ClipFailure("no_audio", f"the audio is silent (RMS {info['rms']:.2e})")


# ----------------------------------------------------------------------------------------------
# Shared pause (rate limits), rate limit, outer timeout


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


class _Watchdog:
    """The outer per-clip deadline: kills this process's ffmpeg children that run past it.

    yt-dlp starts ffmpeg itself, so the child is found by its command line, which names the
    clip's unique temporary path (Linux ``/proc``; elsewhere only ``-rw_timeout`` applies).
    """

    def __init__(self, poll_s: float = 0.25) -> None:
        self._deadlines: dict[str, float] = {}
        self._expired: set[str] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(poll_s,), daemon=True)
        self._thread.start()

    @contextmanager
    def watch(self, token: str, seconds: float) -> Iterator[Callable[[], bool]]:
        """Guard the block; yields a function telling whether the deadline killed something."""
        with self._lock:
            self._deadlines[token] = time.monotonic() + seconds
            self._expired.discard(token)
        try:
            yield lambda: token in self._expired
        finally:
            with self._lock:
                self._deadlines.pop(token, None)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self, poll_s: float) -> None:
        while not self._stop.wait(poll_s):
            now = time.monotonic()
            with self._lock:
                late = [token for token, deadline in self._deadlines.items() if now > deadline]
            for token in late:
                for pid in _children_naming(token):
                    log.warning(
                        "clip %s ran past its deadline: killing ffmpeg (pid %d)", Path(token).name, pid
                    )
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        continue
                with self._lock:
                    self._expired.add(token)


def _children_naming(token: str) -> list[int]:
    """Pids of direct children of this process whose command line contains ``token``."""
    proc = Path("/proc")
    if not proc.is_dir():
        return []
    me, needle, found = os.getpid(), token.encode(), []
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            parent = int(stat.rsplit(")", 1)[1].split()[1])
            if parent == me and needle in (entry / "cmdline").read_bytes():
                found.append(int(entry.name))
        except (OSError, ValueError, IndexError):
            continue
    return found


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


class _YtdlpLogger:
    """Routes yt-dlp's messages to this module's logger (errors come back as exceptions)."""

    def debug(self, message: str) -> None:
        return

    def info(self, message: str) -> None:
        return

    def warning(self, message: str) -> None:
        log.debug("yt-dlp: %s", message)

    def error(self, message: str) -> None:
        log.debug("yt-dlp: %s", message)


def ytdlp_options(config: DownloadConfig) -> dict:
    """The YoutubeDL parameters shared by every clip (section and output path are per clip)."""
    height = int(config.max_height)
    read_timeout_us = int(config.timeout_s / 2 * 1e6)
    downloader_args = {"ffmpeg_i": ["-rw_timeout", str(read_timeout_us)]}
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
        "quiet": True,
        "no_warnings": True,
        "noprogress": True,
        "logger": _YtdlpLogger(),
        "noplaylist": True,
        "overwrites": True,
        "continuedl": False,
        "cachedir": False,
        "updatetime": False,
        "enable_file_urls": True,
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
    for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        if environ.get(name, "").strip():
            return environ[name].strip()
    return None


class _YtdlpFetcher:
    """One ``YoutubeDL`` per worker thread, reused for every clip that thread downloads."""

    def __init__(self, config: DownloadConfig, watchdog: _Watchdog) -> None:
        self.config = config
        self.watchdog = watchdog
        self._options = ytdlp_options(config)
        self._local = threading.local()
        self._created: list = []
        self._lock = threading.Lock()

    def _ydl(self):
        ydl = getattr(self._local, "ydl", None)
        if ydl is None:
            import yt_dlp

            ydl = yt_dlp.YoutubeDL(dict(self._options))
            self._local.ydl = ydl
            with self._lock:
                self._created.append(ydl)
        return ydl

    def __call__(self, ytid: str, start: float, end: float, target: Path) -> Path:
        from yt_dlp.utils import DownloadError, download_range_func

        ydl = self._ydl()
        stem = target.with_suffix("")
        ydl.params["outtmpl"] = {"default": f"{stem}.%(ext)s"}
        ydl.params["download_ranges"] = download_range_func(None, [(start, end)])
        url = self.config.url_template.format(ytid=ytid)
        began = time.monotonic()
        with self.watchdog.watch(str(stem), self.config.timeout_s) as expired:
            try:
                info = ydl.extract_info(url, download=True)
            except DownloadError as error:
                cause = error.exc_info[1] if error.exc_info else None
                message = re.sub(r"^ERROR:\s*", "", str(error))
                reason = classify_error(message, cause)
                elapsed = time.monotonic() - began
                if expired():
                    reason, message = (
                        "timeout",
                        f"ran past the clip's limit of {self.config.timeout_s} s: ffmpeg killed",
                    )
                elif "exited with code" in message and elapsed >= self.config.timeout_s / 2 * 0.95:
                    reason, message = "timeout", f"no data for {self.config.timeout_s / 2} s ({message})"
                raise ClipFailure(reason, message[:500]) from error
            if expired():
                raise ClipFailure("timeout", f"killed after {self.config.timeout_s} s")
        downloads = (info or {}).get("requested_downloads") or []
        if not downloads or not Path(downloads[0].get("filepath", "")).is_file():
            raise ClipFailure("other", "yt-dlp reported no downloaded file")
        return _as_mp4(Path(downloads[0]["filepath"]), target, self.config.timeout_s)

    def close(self) -> None:
        for ydl in self._created:
            ydl.close()


def _as_mp4(downloaded: Path, target: Path, timeout_s: float) -> Path:
    """Move (or remux, if yt-dlp chose another container) the download to ``target``."""
    if downloaded.suffix == ".mp4":
        os.replace(downloaded, target)
        return target
    command = [ffmpeg_binary(), "-y", "-hide_banner", "-loglevel", "error", "-nostdin", "-i", str(downloaded),
               "-map", "0:v:0?", "-map", "0:a:0?", "-c", "copy", "-f", "mp4", str(target)]  # fmt: skip
    result = subprocess.run(command, capture_output=True, timeout=timeout_s)
    downloaded.unlink(missing_ok=True)
    if result.returncode != 0:
        raise ClipFailure(
            "corrupt", "remux to mp4 failed: " + _ffmpeg_error(result.stderr.decode(errors="replace"))
        )
    return target


def cut_command(
    source: str | Path, start: float, end: float, target: str | Path, reencode: bool
) -> list[str]:
    """The ffmpeg command yt-dlp runs for a section (input seek, stream copy or re-encode)."""
    codecs = (
        ["-c:v", "libx264", "-preset", "veryfast", "-crf", "23", "-c:a", "aac"]
        if reencode
        else ["-c", "copy"]
    )
    return [
        ffmpeg_binary(), "-y", "-hide_banner", "-loglevel", "error", "-nostdin",
        "-ss", f"{start:.3f}", "-t", f"{end - start:.3f}", "-i", str(source),
        "-map", "0:v:0?", "-map", "0:a:0?", *codecs, "-f", "mp4", str(target),
    ]  # fmt: skip


class _LocalFetcher:
    """Cuts ``local_dir/{ytid}.mp4`` with the ffmpeg command of yt-dlp's section download."""

    def __init__(self, config: DownloadConfig) -> None:
        self.config = config
        self.folder = Path(str(config.local_dir))
        if not self.folder.is_dir():
            raise FileNotFoundError(f"download.local_dir is not a folder: {self.folder}")

    def __call__(self, ytid: str, start: float, end: float, target: Path) -> Path:
        source = self.folder / f"{ytid}.mp4"
        if not source.is_file():
            raise ClipFailure("unavailable", f"no file {source}")
        try:
            result = subprocess.run(
                cut_command(source, start, end, target, self.config.reencode),
                capture_output=True,
                timeout=self.config.timeout_s,
            )
        except subprocess.TimeoutExpired as error:
            raise ClipFailure("timeout", f"ffmpeg cut ran past {self.config.timeout_s} s") from error
        if result.returncode != 0:
            message = _ffmpeg_error(result.stderr.decode("utf-8", errors="replace"))
            reason = classify_error(message)
            raise ClipFailure(
                reason if reason != "other" else "corrupt",
                f"ffmpeg exited with code {result.returncode}: {message}",
            )
        return target

    def close(self) -> None:
        return


# ----------------------------------------------------------------------------------------------
# One shard


def _row(
    segment,
    status: str,
    reason: str = "",
    message: str = "",
    path: str = "",
    size: int = 0,
    seconds: float = 0.0,
) -> dict:
    return {
        "ytid": str(segment.ytid), "start": float(segment.start), "end": float(segment.end),
        "labels": str(getattr(segment, "labels", "")), "status": status, "reason": reason, "message": message,
        "path": path, "bytes": int(size), "seconds": float(seconds),
    }  # fmt: skip


def _cached(final: Path, window_s: float) -> dict | None:
    """The probe of a complete cached clip, or None (a clip that fails the probe is removed)."""
    if not final.is_file():
        return None
    info = probe_clip(final)
    try:
        _check_probe(info, window_s)
    except ClipFailure as failure:
        log.info("cached %s fails the probe (%s): downloading it again", final.name, failure)
        final.unlink(missing_ok=True)
        return None
    return info


class _ShardDownloader:
    """Obtains the clips of one shard; shared state: the pause, the watchdog, the fetcher."""

    def __init__(self, cache_dir: Path, config: DownloadConfig, window_s: float) -> None:
        self.cache_dir = cache_dir
        self.partial_dir = cache_dir / ".partial"
        self.partial_dir.mkdir(parents=True, exist_ok=True)
        self.config = config
        self.window_s = window_s
        self.pause = _Pause(config.backoff_s)
        self.watchdog = _Watchdog()
        self.rate = _rate_bytes(config.rate_limit)
        self.fetch = (
            _LocalFetcher(config) if config.source == "local" else _YtdlpFetcher(config, self.watchdog)
        )

    def close(self) -> None:
        self.fetch.close()
        self.watchdog.close()

    def clip(self, segment) -> dict:
        """Download (or find in the cache), probe and place one clip; never raises ClipFailure."""
        ytid, start, end = str(segment.ytid), float(segment.start), float(segment.end)
        valid_time = math.isfinite(start) and math.isfinite(end) and 0 <= start < end
        if not ID_PATTERN.match(ytid) or not valid_time:
            return _row(segment, "failed", "other", f"invalid segment {ytid!r} [{start}, {end}]")
        final = clip_path(self.cache_dir, ytid, start)
        info = _cached(final, self.window_s)
        if info is not None:
            return _row(segment, "ok", path=str(final), size=final.stat().st_size, seconds=info["seconds"])
        failure = ClipFailure("other", "not attempted")
        for attempt in range(self.config.retries + 1):
            try:
                return self._attempt(segment, final)
            except ClipFailure as caught:
                failure = caught
            retried = RETRIED_REASONS if self.config.source == "youtube" else LOCAL_RETRIED_REASONS
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

    def _attempt(self, segment, final: Path) -> dict:
        ytid, start, end = str(segment.ytid), float(segment.start), float(segment.end)
        target = self.partial_dir / final.name
        for leftover in self.partial_dir.glob(f"{final.stem}.*"):
            leftover.unlink(missing_ok=True)
        self.pause.wait()
        began = time.monotonic()
        try:
            downloaded = self.fetch(ytid, start, end, target)
            info = probe_clip(downloaded, timeout_s=self.config.timeout_s)
            _check_probe(info, self.window_s)
        except (ClipFailure, subprocess.TimeoutExpired) as error:
            for leftover in self.partial_dir.glob(f"{final.stem}.*"):
                leftover.unlink(missing_ok=True)
            if isinstance(error, subprocess.TimeoutExpired):
                raise ClipFailure("timeout", f"ffmpeg ran past {self.config.timeout_s} s") from error
            raise
        size = downloaded.stat().st_size
        os.replace(downloaded, final)
        self.pause.clear()
        if self.rate:
            time.sleep(max(0.0, size / self.rate - (time.monotonic() - began)))
        return _row(segment, "ok", path=str(final), size=size, seconds=info["seconds"])


def _empty_manifest() -> pd.DataFrame:
    dtypes = dict.fromkeys(MANIFEST_COLUMNS, str) | {
        "start": float,
        "end": float,
        "bytes": np.int64,
        "seconds": float,
    }
    return pd.DataFrame({column: pd.Series([], dtype=dtype) for column, dtype in dtypes.items()})


def download_shard(
    segments: pd.DataFrame, cache_dir: str | Path, config: DownloadConfig, window_s: float = 3.75
) -> pd.DataFrame:
    """Obtain every segment of a shard; return the manifest (one row per segment, input order).

    Columns: ``ytid, start, end, labels, status ('ok'|'failed'), reason ('' when ok, else one
    of REASONS), message, path, bytes, seconds`` (duration as probed).
    """
    if config.source == "youtube":
        ffmpeg_on_path()
        if shutil.which("ffmpeg") is None:
            raise FileNotFoundError("yt-dlp needs an executable named ffmpeg on PATH")
    cache_dir = Path(cache_dir)
    downloader = _ShardDownloader(cache_dir, config, window_s)
    rows: list[dict] = []
    try:
        with concurrent.futures.ThreadPoolExecutor(max_workers=config.concurrency) as pool:
            for number, row in enumerate(
                pool.map(downloader.clip, segments.itertuples(index=False)), start=1
            ):
                rows.append(row)
                if number % 25 == 0 or number == len(segments):
                    n_ok = sum(entry["status"] == "ok" for entry in rows)
                    log.info(
                        "%d of %d clips done (%d ok, %d failed)", number, len(segments), n_ok, number - n_ok
                    )
    finally:
        downloader.close()
    if not rows:
        return _empty_manifest()
    manifest = pd.DataFrame(rows, columns=list(MANIFEST_COLUMNS))
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


def dataset_summary(
    selection: pd.DataFrame,
    manifests: list[pd.DataFrame],
    pair_indices: list[pd.DataFrame],
    pair_failures: list[pd.DataFrame] | None = None,
) -> pd.DataFrame:
    """One row per shard and a ``total`` row: requested, downloaded, failed_<reason>, pairs.

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
    columns = ["shard", "requested", "downloaded", *(f"failed_{reason}" for reason in REASONS), "pairs"]
    return [*columns, "no_pairs"] if with_no_pairs else columns
