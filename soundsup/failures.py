"""Why a clip failed: the reasons of a download manifest and the classification of yt-dlp's
and ffmpeg's messages into them.

A reason is one of :data:`REASONS`; :data:`RETRIED_REASONS` are those worth another attempt
(a local file gives the same answer twice: only its timeout is retried). A failed write of our
own (disk full, I/O error, permissions) is not a clip's failure: :func:`own_write_failure`
finds it in ffmpeg's messages so that the shard stops instead.
"""

from __future__ import annotations

import errno
import re
from pathlib import Path

from soundsup.io import OutputWriteError, write_errno_in_text

REASONS: tuple[str, ...] = (
    "unavailable", "private", "geo_blocked", "age_restricted", "bot_check", "rate_limited", "http_error",
    "timeout", "no_audio", "no_video", "too_short", "truncated", "corrupt", "other",
)  # fmt: skip
RETRIED_REASONS = frozenset({"timeout", "http_error", "rate_limited", "corrupt", "truncated"})
LOCAL_RETRIED_REASONS = frozenset({"timeout"})  # a local file gives the same answer twice

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


def ffmpeg_notes(stderr: str, limit: int = 3) -> str:
    """The few lines of ffmpeg's messages that say what went wrong, joined (empty if none)."""
    lines = []
    for line in stderr.splitlines():
        line = line.strip()
        if line and "\0end" not in line and _FFMPEG_NOTEWORTHY.search(line) and line not in lines:
            lines.append(line[:200])
    return " | ".join(lines[:limit])


def own_write_failure(stderr: str, target: Path) -> OutputWriteError | None:
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
    return OutputWriteError(target, code, ffmpeg_notes(stderr, limit=2) or "ffmpeg could not write it")
