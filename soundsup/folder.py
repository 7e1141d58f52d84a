"""A folder of one's own videos as a source of segments (``world: folder``).

Every regular file under ``folder.path`` (recursively) whose extension is one of
``folder.extensions`` is a video; hidden names (``.``) are skipped, other files are ignored and
counted. Symbolic links are never followed: a link with a video extension, or a link to a
folder, stops the scan with a :class:`FolderError` that names it (a link can lead out of the
folder), as do fifos and devices with a video extension, names that are not UTF-8, folders
that cannot be read and a folder without any video. The workflow's own outputs (``results``,
``resources``, ``logs`` of its working directory, which may lie inside the folder) are skipped.

Ids. A video's id is 11 characters of ``[0-9a-z]``, the base-36 digits of a SHA-256 of its
relative path (``/``-separated, exactly as the file system spells it): stable across runs and
machines, the same length as a YouTube id so that every later stage (shards, clip cache,
pairs) treats it like one, safe as a file name and as an argument (no ``/``, no leading ``-``,
one case only, so distinct on case-insensitive file systems). The relative path itself is kept
beside the id (``source_path`` in the selection, the manifests and the pairs' index). Two paths
whose ids collide (about 2^-57 for a pair) stop the scan naming both.

Segments. A video is probed (its container's duration and streams; when the container states no
duration, the audio is decoded to find it) and cut into consecutive segments of
``folder.segment_s`` (10 s, the paper's unit) from its start; a remainder of at least
``select.min_duration_s`` is one more, shorter segment. A video with more than
``folder.max_segments_per_file`` segments keeps that many, spread evenly over its length. A
video that gives no segment is one row of the selection with a failure reason of the manifests
(``corrupt``, ``no_audio``, ``no_video``, ``too_short``, ``timeout``; ``unavailable`` for one
gone since the scan, ``other`` for one replaced by a link), which the download step copies into
its shard's manifest.

Labels. ``folder.labels``: null (none), ``folders`` (the name of the first-level sub-folder a
video lies in; videos at the top have none) or the path of a CSV file with a header row naming
the columns ``path`` (relative to the folder) and ``labels`` (comma-separated label texts).
A label text keeps its words; a comma inside one (a folder called ``dogs, barking``) becomes
``;`` because the pipeline's ``labels`` column is comma-separated.

What a change of the folder means. A video is identified by its relative path, its size and
its modification time (:attr:`VideoFile.key`), as make and Snakemake see files. The workflow
scans the folder when it starts (file metadata only, no reads: :func:`folder_snapshot`) and
hands each shard's rule ``scan_folder`` the list of that shard's videos (path, size, time,
labels) as a parameter: a shard's segments are made again, and its clips cut, exactly when a
video of that shard was added, removed or changed, or its labels changed. Adding a video reruns
one shard; touching or moving the folder reruns nothing. The clip cache records the key of the
video a clip was cut from, so a changed video is never served from the cache.
"""

from __future__ import annotations

import concurrent.futures
import csv
import hashlib
import io
import logging
import math
import os
import re
import stat
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from soundsup.audioset import MAX_SECONDS, shard_of
from soundsup.clips import parse_streams
from soundsup.ffmpeg import ffmpeg_binary

log = logging.getLogger(__name__)

ID_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz"
ID_LENGTH = 11
_ID_SALT = b"soundsup folder video\x00"
DEFAULT_EXTENSIONS = (
    "3gp", "asf", "avi", "dv", "flv", "m2ts", "m4v", "mkv", "mov", "mp4", "mpeg", "mpg", "mts",
    "mxf", "ogv", "ts", "vob", "webm", "wmv",
)  # fmt: skip
SELECTION_COLUMNS = (
    "ytid", "start", "end", "labels", "shard",
    "source_path", "source_key", "source_seconds", "scan_reason", "scan_message",
)  # fmt: skip
MAX_LISTED = 10
_DURATION = re.compile(r"Duration: (\d+):(\d\d):(\d\d(?:\.\d+)?)")
_DECODED_TIME = re.compile(r"time=\s*(\d+):(\d\d):(\d\d(?:\.\d+)?)")
_MOVING_PICTURE = re.compile(r"Stream #0:\d+[^\n]*?: Video: (?![^\n]*attached pic)")
_UNREADABLE = re.compile(
    r"invalid data found|moov atom not found|error opening input|could not find codec parameters"
    r"|end of file|no such file|permission denied|unknown format",
    re.I,
)


class FolderError(ValueError):
    """The folder (or its labels CSV) cannot be used as a source: the message names what and why."""


# ----------------------------------------------------------------------------------------------
# Ids


def check_relative_path(text: str) -> str:
    """``text`` if it is a relative, normalised, ``/``-separated path inside a folder, else raise.

    Refused: empty, absolute (``/x``), ``.``, ``..`` or empty components (``a//b``, ``a/``),
    NUL characters.
    """
    if not isinstance(text, str) or not text:
        raise ValueError(f"{text!r} is not a relative path")
    if "\x00" in text:
        raise ValueError(f"{text!r} contains a NUL character")
    if text.startswith("/"):
        raise ValueError(f"{text!r} is absolute: paths are relative to the folder")
    parts = text.split("/")
    if any(part in ("", ".", "..") for part in parts):
        raise ValueError(f"{text!r} is not a plain path inside the folder (empty, '.' or '..' parts)")
    return text


def folder_id(relative_path: str) -> str:
    """The 11-character id of the video at ``relative_path`` (see the module documentation)."""
    check_relative_path(relative_path)
    digest = hashlib.sha256(_ID_SALT + relative_path.encode("utf-8", "surrogateescape")).digest()
    number = int.from_bytes(digest[:16], "big") % len(ID_ALPHABET) ** ID_LENGTH
    letters = []
    for _ in range(ID_LENGTH):
        number, digit = divmod(number, len(ID_ALPHABET))
        letters.append(ID_ALPHABET[digit])
    return "".join(reversed(letters))


# ----------------------------------------------------------------------------------------------
# Scanning (metadata only)


@dataclass(frozen=True)
class VideoFile:
    """One video of the folder: its relative path, size in bytes and modification time (ns)."""

    path: str
    size: int
    mtime_ns: int

    @property
    def id(self) -> str:
        return folder_id(self.path)

    @property
    def key(self) -> str:
        """What identifies this version of the file: ``{size}-{mtime_ns}``."""
        return f"{self.size}-{self.mtime_ns}"


@dataclass(frozen=True)
class FolderScan:
    """The videos of a folder (sorted by path) and how many other files were ignored."""

    root: Path
    videos: tuple[VideoFile, ...]
    n_ignored: int
    ignored_examples: tuple[str, ...] = ()


def _extension(name: str) -> str:
    return name.rsplit(".", 1)[-1].lower() if "." in name else ""


def _listed(items: list[str]) -> str:
    shown = "; ".join(items[:MAX_LISTED])
    return shown + (f"; ... ({len(items) - MAX_LISTED} more)" if len(items) > MAX_LISTED else "")


WORKFLOW_FOLDERS = ("results", "resources", "logs")
"""What the workflow writes in its working directory (clips among them): never videos of the folder."""


def workflow_folders(work_dir: str | Path) -> frozenset[Path]:
    """The folders a scan must skip when the workflow runs in ``work_dir``: its outputs (a cached
    clip is no video of yours; scanning it would feed each run's clips into the next), and
    ``work_dir`` itself when it lies inside the folder."""
    work_dir = Path(work_dir).resolve()
    return frozenset({work_dir, *(work_dir / name for name in WORKFLOW_FOLDERS)})


def scan_folder(
    root: str | Path, extensions: Iterable[str] = DEFAULT_EXTENSIONS, skip: Iterable[Path] = ()
) -> FolderScan:
    """Every video under ``root`` (see the module documentation), the folders ``skip`` (absolute)
    left out; raise :class:`FolderError` naming each symbolic link, special file, unreadable
    folder or non-UTF-8 name met."""
    folder = Path(root)
    if not folder.is_dir():
        raise FolderError(f"folder.path {str(root)!r} is not a folder")
    folder = folder.resolve()
    skipped = {Path(path).resolve() for path in skip} - {folder}
    wanted = {extension.lower().lstrip(".") for extension in extensions}
    videos: list[VideoFile] = []
    ignored: list[str] = []
    problems: list[str] = []
    pending = [(folder, "")]
    while pending:
        directory, prefix = pending.pop()
        try:
            with os.scandir(directory) as listing:
                entries = sorted(listing, key=lambda entry: entry.name)
        except OSError as error:
            problems.append(f"{directory}: cannot be read ({error.strerror or error})")
            continue
        for entry in entries:
            if entry.name.startswith("."):
                continue
            relative = prefix + entry.name
            try:
                relative.encode("utf-8")
            except UnicodeEncodeError:
                problems.append(f"{os.fsencode(entry.path)!r}: the name is not UTF-8 (rename it)")
                continue
            try:
                if entry.is_symlink():
                    if entry.is_dir() or _extension(entry.name) in wanted:
                        target = os.readlink(entry.path)
                        problems.append(f"{relative} -> {target}: a symbolic link (links are not followed)")
                    else:
                        ignored.append(relative)
                    continue
                if entry.is_dir(follow_symlinks=False):
                    if Path(entry.path) in skipped:
                        log.info("%s: the workflow's own folder, skipped", relative)
                    else:
                        pending.append((Path(entry.path), relative + "/"))
                    continue
                if _extension(entry.name) not in wanted:
                    ignored.append(relative)
                    continue
                status = entry.stat(follow_symlinks=False)
            except OSError as error:
                problems.append(f"{relative}: cannot be read ({error.strerror or error})")
                continue
            if not stat.S_ISREG(status.st_mode):
                problems.append(f"{relative}: not a regular file (a fifo, socket or device)")
                continue
            videos.append(VideoFile(relative, int(status.st_size), int(status.st_mtime_ns)))
    if problems:
        raise FolderError(
            f"folder.path {str(folder)!r} cannot be used as it is: {_listed(problems)}. Videos must be "
            "regular, readable files inside the folder: replace each link by the file it points to "
            "(or point folder.path at the real folder), rename or move the others"
        )
    videos.sort(key=lambda video: video.path)
    _check_distinct_ids(videos, folder)
    return FolderScan(folder, tuple(videos), len(ignored), tuple(sorted(ignored)[:MAX_LISTED]))


def _check_distinct_ids(videos: list[VideoFile], folder: Path) -> None:
    seen: dict[str, str] = {}
    for video in videos:
        other = seen.setdefault(video.id, video.path)
        if other != video.path:
            raise FolderError(
                f"{folder}: {other!r} and {video.path!r} have the same id {video.id}: rename one of them"
            )


# ----------------------------------------------------------------------------------------------
# Labels


def label_text(text: str) -> str:
    """One label as the ``labels`` column holds it: words kept, whitespace collapsed, a comma
    (which separates labels there) written ``;``."""
    parts = [" ".join(part.split()) for part in str(text).split(",")]
    return "; ".join(part for part in parts if part)


def folder_label(relative_path: str) -> str:
    """The label of a video from its folders: the first-level sub-folder's name ('' at the top)."""
    return label_text(relative_path.split("/", 1)[0]) if "/" in relative_path else ""


def read_labels_csv(
    path: str | Path, known_paths: Iterable[str]
) -> tuple[dict[str, str], list[tuple[int, str, str]]]:
    """Labels of videos from a CSV with the columns ``path`` and ``labels`` (header row).

    Returns ``({relative path: labels}, rejected)``, ``labels`` comma-separated label texts
    (each as :func:`label_text` writes it) and ``rejected`` the ``(line, text, reason)`` of each
    row not used: a path that is absolute or leaves the folder, a path that is not a video of
    the folder, a path listed twice. Raises :class:`FolderError` for a file that is not such a
    CSV (not UTF-8, no ``path`` and ``labels`` columns).
    """
    path = Path(path)
    if not path.is_file():
        raise FolderError(f"folder.labels: no such file {path}")
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise FolderError(f"folder.labels: {path} is not UTF-8 text (byte {error.start})") from error
    reader = csv.reader(io.StringIO(text, newline=""))
    header = next(reader, None)
    columns = [name.strip().lower() for name in header or []]
    if "path" not in columns or "labels" not in columns:
        raise FolderError(
            f"folder.labels: {path} must start with a header row naming the columns 'path' and "
            f"'labels' (found {header!r})"
        )
    path_column, labels_column = columns.index("path"), columns.index("labels")
    known = set(known_paths)
    labels: dict[str, str] = {}
    first_line: dict[str, int] = {}
    rejected: list[tuple[int, str, str]] = []
    for row in reader:
        line = reader.line_num
        if not any(field.strip() for field in row):
            continue
        raw = ",".join(row)[:1000]
        if len(row) <= max(path_column, labels_column):
            rejected.append((line, raw, f"expected the columns {header!r}, found {len(row)} fields"))
            continue
        relative = row[path_column] if row[path_column] in known else row[path_column].strip()
        try:
            check_relative_path(relative)
        except ValueError as error:
            rejected.append((line, raw, f"refused: {error}"))
            continue
        if relative not in known:
            hint = " (write '/' between folders)" if "\\" in relative else ""
            rejected.append((line, raw, f"{relative!r} is not a video of the folder{hint}"))
            continue
        if relative in first_line:
            rejected.append(
                (line, raw, f"{relative!r} is listed twice (first at line {first_line[relative]})")
            )
            continue
        first_line[relative] = line
        texts = [label_text(item) for item in row[labels_column].split(",")]
        labels[relative] = ",".join(dict.fromkeys(item for item in texts if item))
    return labels, rejected


# ----------------------------------------------------------------------------------------------
# Probing and segments


def _seconds(match: re.Match) -> float:
    hours, minutes, seconds = match.groups()
    return int(hours) * 3600 + int(minutes) * 60 + float(seconds)


def probe_video(path: str | Path, timeout_s: float = 300) -> dict:
    """Describe a video from its container (no decoding unless the container states no duration).

    Returns ``seconds`` (float, or None when unknown), ``has_video``, ``has_audio``, ``width``,
    ``height``, ``error`` ('' when it opened) and ``timed_out``. The path reaches ffmpeg as a
    ``file:`` URL of its absolute form, so no name is read as an option or a protocol.
    """
    url = f"file:{Path(path).resolve()}"
    base = [ffmpeg_binary(), "-hide_banner", "-nostdin", "-threads", "1", "-i", url]
    info = {"seconds": None, "has_video": False, "has_audio": False, "width": 0, "height": 0,
            "error": "", "timed_out": False}  # fmt: skip
    try:
        result = subprocess.run(base, capture_output=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return {**info, "timed_out": True}
    stderr = result.stderr.decode("utf-8", errors="replace")
    streams = parse_streams(stderr)
    info.update({key: streams[key] for key in ("has_video", "has_audio", "width", "height")})
    info["has_video"] = _MOVING_PICTURE.search(stderr) is not None  # cover art is no video
    if not (info["has_video"] or info["has_audio"]):
        unreadable = [line.strip() for line in stderr.splitlines() if _UNREADABLE.search(line)]
        info["error"] = (unreadable or ["ffmpeg finds no audio or video stream in it"])[0][:300]
        return info
    found = _DURATION.search(stderr)
    if found:
        info["seconds"] = _seconds(found)
        return info
    # No duration in the container (e.g. a WebM recorded by a browser): decode the audio (or the video).
    stream = "0:a:0" if info["has_audio"] else "0:v:0"
    try:
        decoded = subprocess.run(
            [*base, "-map", stream, "-f", "null", "-"], capture_output=True, timeout=timeout_s
        )
    except subprocess.TimeoutExpired:
        return {**info, "timed_out": True}
    times = _DECODED_TIME.findall(decoded.stderr.decode("utf-8", errors="replace"))
    if times:
        hours, minutes, seconds = times[-1]
        info["seconds"] = int(hours) * 3600 + int(minutes) * 60 + float(seconds)
    return info


def probe_failure(info: dict, min_duration_s: float, timeout_s: float) -> tuple[str, str] | None:
    """``(reason, message)`` when a probed video gives no segment (reasons of the manifests), else None."""
    if info["timed_out"]:
        return "timeout", f"probing the video ran past {timeout_s:g} s"
    if info["error"] or not (info["has_video"] or info["has_audio"]):
        return "corrupt", info["error"] or "no stream"
    if not info["has_audio"]:
        return "no_audio", "the video has no audio stream"
    if not info["has_video"]:
        return "no_video", "the file has no video stream"
    if info["width"] == 0 or info["height"] == 0:
        return "corrupt", "the video stream states no picture size"
    seconds = info["seconds"]
    if seconds is None or not math.isfinite(seconds):
        return "corrupt", "its duration cannot be determined"
    if seconds > MAX_SECONDS:
        return "corrupt", f"a stated duration of {seconds:g} s is beyond any video"
    if seconds < min_duration_s:
        return (
            "too_short",
            f"the video is {seconds:.2f} s long, shorter than select.min_duration_s={min_duration_s:g}",
        )
    return None


def file_segments(
    seconds: float, segment_s: float, min_duration_s: float, max_segments: int
) -> list[tuple[float, float]]:
    """The ``(start, end)`` segments (seconds, ms precision) of a video ``seconds`` long.

    Consecutive segments of ``segment_s`` from 0; a remainder of at least ``min_duration_s``
    (and at least 1 ms) is one more, shorter segment; more than ``max_segments`` are thinned to
    ``max_segments`` spread evenly (first and last kept).
    """
    total_ms = int(math.floor(seconds * 1000 + 1e-6))
    step_ms = int(round(segment_s * 1000))
    if step_ms <= 0 or max_segments < 1:
        raise ValueError("segment_s must be positive and max_segments >= 1")
    bounds = [(start, start + step_ms) for start in range(0, total_ms - step_ms + 1, step_ms)]
    rest_start = bounds[-1][1] if bounds else 0
    if total_ms - rest_start >= max(1, int(math.ceil(min_duration_s * 1000 - 1e-6))):
        bounds.append((rest_start, total_ms))
    if len(bounds) > max_segments:
        keep = np.unique(np.round(np.linspace(0, len(bounds) - 1, max_segments)).astype(int))
        bounds = [bounds[index] for index in keep]
    return [(start / 1000, end / 1000) for start, end in bounds]


# ----------------------------------------------------------------------------------------------
# The workflow's view: a snapshot when it starts, the segments of each shard, the selection


def video_labels(
    videos: Iterable[VideoFile], labels: str | Path | None
) -> tuple[dict[str, str], list[tuple[int, str, str]]]:
    """``({relative path: labels}, rejected CSV rows)`` for ``folder.labels`` = ``labels``."""
    videos = list(videos)
    if labels is None:
        return {}, []
    if labels == "folders":
        return {video.path: folder_label(video.path) for video in videos}, []
    return read_labels_csv(labels, [video.path for video in videos])


@dataclass(frozen=True)
class FolderSnapshot:
    """The folder as the workflow saw it when it started: per shard, the list of its videos
    ``[path, size, mtime_ns, labels]`` (JSON-able: a rule's parameter), in path order."""

    shards: dict[int, list[list]]
    n_videos: int


def folder_snapshot(
    root: str | Path,
    extensions: Iterable[str],
    n_shards: int,
    labels: str | Path | None = None,
    work_dir: str | Path | None = None,
) -> FolderSnapshot:
    """Scan ``root`` (metadata only; :func:`workflow_folders` of ``work_dir`` skipped) and list
    each shard's videos with their labels.

    Raises :class:`FolderError` as :func:`scan_folder` and :func:`read_labels_csv` do, and
    when the folder holds no video (a wrong path or extension list).
    """
    scan = scan_folder(root, extensions, workflow_folders(work_dir) if work_dir is not None else ())
    if not scan.videos:
        others = (
            f"; {scan.n_ignored} other files, e.g. {list(scan.ignored_examples[:3])}"
            if scan.n_ignored
            else ""
        )
        raise FolderError(
            f"folder.path {str(root)!r} holds no video: no file ends in one of folder.extensions "
            f"{sorted(extensions)}{others}"
        )
    labels_of, _ = video_labels(scan.videos, labels)
    shards: dict[int, list[list]] = {shard: [] for shard in range(n_shards)}
    for video in scan.videos:
        entry = [video.path, video.size, video.mtime_ns, labels_of.get(video.path, "")]
        shards[shard_of(video.id, n_shards)].append(entry)
    return FolderSnapshot(shards, len(scan.videos))


@dataclass(frozen=True)
class FolderConfig:
    """The folder source (config section ``folder``): see the module documentation."""

    path: str | None = None
    labels: str | None = None
    extensions: tuple = DEFAULT_EXTENSIONS
    segment_s: float = 10.0
    max_segments_per_file: int = 30
    probe_timeout_s: float = 300.0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.segment_s) and self.segment_s > 0) or self.max_segments_per_file < 1:
            raise ValueError("folder.segment_s must be > 0 and folder.max_segments_per_file >= 1")
        if not self.extensions:
            raise ValueError("folder.extensions must name at least one extension")


def _listed_file(folder: Path, relative: str) -> tuple[VideoFile, tuple[str, str] | None]:
    """The video at ``relative`` as it is now (size and time 0 when unknown), and the failure
    that stops it, if any: gone, or no longer a regular file inside the folder."""
    path = folder / relative
    try:
        status = path.lstat()
    except FileNotFoundError:
        return VideoFile(relative, 0, 0), ("unavailable", "the video is gone since the folder was scanned")
    except OSError as error:
        return VideoFile(relative, 0, 0), ("other", f"cannot be read: {error.strerror or error}")
    video = VideoFile(relative, int(status.st_size), int(status.st_mtime_ns))
    if stat.S_ISLNK(status.st_mode) or path.resolve() != path:
        return video, ("other", "refused: the path leads through a symbolic link (links are not followed)")
    if not stat.S_ISREG(status.st_mode):
        return video, ("other", "refused: not a regular file")
    return video, None


def _video_rows(
    video: VideoFile, labels: str, outcome: tuple[dict | None, tuple[str, str] | None],
    config: FolderConfig, min_duration_s: float, n_shards: int,
) -> list[dict]:  # fmt: skip
    info, failure = outcome
    base = {
        "ytid": video.id, "labels": labels, "shard": shard_of(video.id, n_shards), "source_path": video.path,
        "source_key": video.key, "source_seconds": float((info or {}).get("seconds") or 0.0),
    }  # fmt: skip
    if failure is None:
        failure = probe_failure(info, min_duration_s, config.probe_timeout_s)
    if failure is not None:
        return [{**base, "start": 0.0, "end": base["source_seconds"],
                 "scan_reason": failure[0], "scan_message": failure[1]}]  # fmt: skip
    segments = file_segments(info["seconds"], config.segment_s, min_duration_s, config.max_segments_per_file)
    return [
        {**base, "start": start, "end": end, "scan_reason": "", "scan_message": ""} for start, end in segments
    ]


def _selection_frame(rows: list[dict]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=list(SELECTION_COLUMNS))
    frame = frame.astype(
        {"ytid": str, "labels": str, "source_path": str, "source_key": str, "scan_reason": str,
         "scan_message": str, "start": float, "end": float, "source_seconds": float, "shard": np.int64}
    )  # fmt: skip
    return frame.sort_values(["shard", "ytid", "start"], kind="stable").reset_index(drop=True)


def select_shard(
    videos: Sequence[Sequence],
    config: FolderConfig,
    min_duration_s: float,
    n_shards: int,
    threads: int = 1,
) -> pd.DataFrame:
    """The selection rows of one shard: ``videos`` as :class:`FolderSnapshot` lists them
    (``[path, size, mtime_ns, labels]``), probed as they are now, ``threads`` at a time.

    Returns columns :data:`SELECTION_COLUMNS`, one row per segment and one per video that gave
    none (its ``scan_reason``), sorted by ``(shard, ytid, start)``; ``source_key`` is the key of
    the file probed. A listed path that is not a plain relative path raises ``ValueError``.
    """
    if not config.path:
        raise FolderError("folder.path is not set: world folder needs the folder of videos")
    folder = Path(config.path)
    if not folder.is_dir():
        raise FolderError(f"folder.path {config.path!r} is not a folder")
    folder = folder.resolve()
    listed = [(check_relative_path(str(entry[0])), str(entry[3])) for entry in videos]
    checked = [_listed_file(folder, relative) for relative, _ in listed]

    def probe(item: tuple[VideoFile, tuple | None]) -> tuple[dict | None, tuple | None]:
        video, failure = item
        return (
            (None, failure) if failure else (probe_video(folder / video.path, config.probe_timeout_s), None)
        )

    rows: list[dict] = []
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        outcomes = list(pool.map(probe, checked))
    for done, ((video, _), (_, labels), outcome) in enumerate(zip(checked, listed, outcomes, strict=True), 1):
        rows += _video_rows(video, labels, outcome, config, min_duration_s, n_shards)
        if done % 100 == 0 or done == len(checked):
            log.info("%d of %d videos probed", done, len(checked))
    return _selection_frame(rows)


def gather_selection(
    shard_selections: Iterable[pd.DataFrame], labels_csv: str | Path | None = None
) -> tuple[pd.DataFrame, list[tuple[int, str, str]], dict[str, int]]:
    """The folder's selection from the selections of its shards, the rows of the labels CSV
    that were not used (``(line, text, reason)``), and counts."""
    frames = [frame for frame in shard_selections if len(frame)]
    selection = _selection_frame(pd.concat(frames, ignore_index=True).to_dict("records") if frames else [])
    rejected: list[tuple[int, str, str]] = []
    if labels_csv:
        _, rejected = read_labels_csv(labels_csv, selection["source_path"].unique())
        for line, text, reason in rejected:
            log.warning("folder.labels line %d not used (%s): %r", line, reason, text[:200])
    failed = selection[selection["scan_reason"] != ""]
    reasons = failed["scan_reason"].value_counts()
    counts = {
        "videos": int(selection["source_path"].nunique()),
        "segments": int(len(selection) - len(failed)),
        "videos_without_segments": int(len(failed)),
        **{f"without_segments_{reason}": int(count) for reason, count in reasons.items()},
        "rejected_label_rows": len(rejected),
    }  # fmt: skip
    log.info("folder selection: %s", counts)
    return selection, rejected, counts


def scan_shard_job(
    *,
    videos: Sequence[Sequence],
    config: FolderConfig,
    min_duration_s: float,
    n_shards: int,
    shard: int | str,
    threads: int,
    segments_path: str | Path,
) -> pd.DataFrame:
    """Rule ``scan_folder``: the videos of one shard (as listed when the workflow started) ->
    its segments, each video that gave none logged with its reason."""
    from soundsup.io import write_parquet

    log.info("shard %s: %d videos of %s", shard, len(videos), config.path)
    segments = select_shard(videos, config, min_duration_s=min_duration_s, n_shards=n_shards, threads=threads)
    for row in segments[segments["scan_reason"] != ""].itertuples():
        log.info("no segment from %s: %s: %s", row.source_path, row.scan_reason, row.scan_message)
    log.info("%d segments from %d videos", (segments["scan_reason"] == "").sum(), len(videos))
    write_parquet(segments_path, segments)
    return segments
