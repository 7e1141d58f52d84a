"""What a valid clip is, and the cache of clips that keeps it: probe, coverage, records.

A clip is valid when it decodes (a video and an audio stream), is not silent and covers its
segment: at most :data:`COVERAGE_TOLERANCE_S` plus one video frame shorter than
``end - start``, whatever the later stages do with it (so no config change invalidates a
clip). The cache holds ``{ytid}_{start_ms}.mp4`` with a record beside it
(``{ytid}_{start_ms}.mp4.json``: size, SHA-256, probed durations); a cached clip is reused
when it still has the recorded size and checksum, which costs a read, not a decode. Nothing
here deletes a cached clip.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd

from soundsup.ffmpeg import ffmpeg_binary
from soundsup.io import file_sha256, output_write_error

log = logging.getLogger(__name__)

SILENCE_RMS = 1e-4
DURATION_TOLERANCE_S = 0.02
COVERAGE_TOLERANCE_S = 0.1
"""A clip covers its segment when it is at most this (plus one video frame) shorter."""
RECORD_SUFFIX = ".json"


class ClipFailure(Exception):
    """One clip could not be obtained; ``reason`` is one of :data:`soundsup.failures.REASONS`."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.message = message


class DamagedClipsError(RuntimeError):
    """Clips a manifest lists as downloaded are no longer the files it recorded."""


def clip_path(cache_dir: str | Path, ytid: str, start: float) -> Path:
    """Where the clip of a segment is cached: ``cache_dir/{ytid}_{start_ms}.mp4``."""
    return Path(cache_dir) / f"{ytid}_{int(round(start * 1000))}.mp4"


def record_path(clip: str | Path) -> Path:
    """The cache record of a clip: ``{clip}.json`` beside it."""
    clip = Path(clip)
    return clip.with_name(clip.name + RECORD_SUFFIX)


@contextlib.contextmanager
def writing(path: Path) -> Iterator[None]:
    """Raise a failed write of ours to ``path`` as :class:`OutputWriteError`."""
    try:
        yield
    except OSError as error:
        failure = output_write_error(error, path)
        if failure is None or failure is error:
            raise
        raise failure from error


def parse_streams(stderr: str) -> dict:
    """Streams of ffmpeg's description of an input: has_video, has_audio, width, height, fps."""
    video = re.search(
        r"Stream #0:\d+[^\n]*?: Video: (?![^\n]*attached pic)[^\n]*?, (\d{1,5})x(\d{1,5})\b[^\n]*", stderr
    )
    fps = re.search(r"([\d.]+) fps", video.group(0)) if video else None
    tbr = re.search(r"([\d.]+)k? tbr", video.group(0)) if video else None
    rate = float(fps.group(1)) if fps else (float(tbr.group(1)) if tbr else 0.0)
    return {
        "has_video": video is not None or re.search(r"Stream #0:\d+[^\n]*?: Video:", stderr) is not None,
        "has_audio": re.search(r"Stream #0:\d+[^\n]*?: Audio:", stderr) is not None,
        "width": int(video.group(1)) if video else 0,
        "height": int(video.group(2)) if video else 0,
        "fps": rate,
    }


def ffmpeg_error_line(stderr: str) -> str:
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    interesting = [
        line for line in lines if re.search(r"error|invalid|not found|failed|does not contain", line, re.I)
    ]
    return (interesting or lines or ["ffmpeg failed without a message"])[0][:300]


def probe_clip(path: str | Path, silence_rms: float = SILENCE_RMS, timeout_s: float = 120) -> dict:
    """Decode a clip once and describe it.

    Returns ``has_video``, ``has_audio``, ``width``, ``height`` (0 when the video stream
    states no picture size), ``fps``, ``video_seconds`` (decoded frames / fps),
    ``audio_seconds`` (decoded samples / rate), ``seconds`` (the smaller), ``rms`` (of the
    mono audio), ``silent`` (rms below ``silence_rms``) and ``error`` ('' when the file opened
    and decoded).
    """
    command = [
        ffmpeg_binary(), "-hide_banner", "-nostats", "-nostdin", "-threads", "1", "-i", str(path),
        "-map", "0:v:0?", "-f", "null", "-",
        "-map", "0:a:0?", "-ac", "1", "-ar", "8000", "-f", "f32le", "pipe:1",
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, timeout=timeout_s)
    stderr = result.stderr.decode("utf-8", errors="replace")
    info = {
        **parse_streams(stderr),
        "video_seconds": 0.0, "audio_seconds": 0.0, "seconds": 0.0, "rms": 0.0, "silent": True, "error": "",
    }  # fmt: skip
    if "Error opening input" in stderr or (
        result.returncode != 0 and not (info["has_video"] and info["has_audio"])
    ):
        info["error"] = "" if "does not contain any stream" in stderr else ffmpeg_error_line(stderr)
        return info
    if result.returncode != 0:
        info["error"] = ffmpeg_error_line(stderr)
    audio = np.frombuffer(result.stdout[: len(result.stdout) // 4 * 4], dtype=np.float32)
    frames = re.findall(r"frame=\s*(\d+)", stderr)
    if frames and info["fps"] > 0:
        info["video_seconds"] = int(frames[-1]) / info["fps"]
    info["audio_seconds"] = len(audio) / 8000
    info["seconds"] = min(info["video_seconds"], info["audio_seconds"])
    info["rms"] = float(np.sqrt(np.mean(np.square(audio, dtype=np.float64)))) if len(audio) else 0.0
    info["silent"] = info["rms"] < silence_rms
    return info


def coverage_tolerance(fps: float) -> float:
    """How much shorter than its segment a clip may be: :data:`COVERAGE_TOLERANCE_S` + one frame."""
    return COVERAGE_TOLERANCE_S + (1.0 / fps if fps > 0 else 0.0)


def check_probe(info: dict, requested_s: float) -> None:
    """Raise :class:`ClipFailure` unless the probe describes a clip that covers ``requested_s``."""
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
    if info["width"] == 0 or info["height"] == 0:
        raise ClipFailure("corrupt", "the video stream states no picture size")
    if info["error"]:
        raise ClipFailure("corrupt", info["error"])
    if info["seconds"] + coverage_tolerance(info["fps"]) < requested_s:
        raise ClipFailure(
            "truncated",
            f"{info['seconds']:.2f} s decoded (video {info['video_seconds']:.2f} s, "
            f"audio {info['audio_seconds']:.2f} s) of the {requested_s:.3f} s requested",
        )
    if info["silent"]:
        raise ClipFailure("no_audio", f"the audio is silent (RMS {info['rms']:.2e})")


# ----------------------------------------------------------------------------------------------
# Cache records


def source_key(segment) -> str:
    """What identifies the file a segment is cut from, where the source says (a video of a
    folder: its size and modification time); '' for a YouTube id or a ``local_dir`` video."""
    return str(getattr(segment, "source_key", "") or "")


def make_record(segment, clip: Path, info: dict, size: int, digest: str) -> dict:
    return {
        "ytid": str(segment.ytid), "start": float(segment.start), "end": float(segment.end),
        "bytes": int(size), "sha256": digest, "seconds": float(info["seconds"]),
        "video_seconds": float(info["video_seconds"]), "audio_seconds": float(info["audio_seconds"]),
        "fps": float(info["fps"]), "width": int(info["width"]), "height": int(info["height"]),
        "rms": float(info["rms"]), "file": clip.name, "source_key": source_key(segment),
    }  # fmt: skip


def write_record(clip: Path, record: dict) -> None:
    """Write the cache record of ``clip`` atomically (a failed write of ours: OutputWriteError)."""
    path = record_path(clip)
    temporary = path.with_name(f".{path.name}.tmp")
    try:
        with writing(path):
            temporary.write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
            os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def _read_record(clip: Path) -> dict | None:
    path = record_path(clip)
    try:
        record = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as error:
        log.warning("cache record %s is unreadable (%s): the clip is probed again", path, error)
        return None
    required = {"bytes": int, "sha256": str, "seconds": float, "fps": float, "start": float}
    if not isinstance(record, dict) or not all(
        isinstance(record.get(key), kind | int if kind is float else kind) for key, kind in required.items()
    ):
        log.warning("cache record %s lacks a field: the clip is probed again", path)
        return None
    return record


def cached_clip(cache_dir: str | Path, segment) -> dict | None:
    """The record of a valid cached clip of ``segment`` (ytid, start, end), or None.

    Valid: the file has the size and SHA-256 of its record and its probed duration covers
    ``end - start``, and it was cut from the version of the source file the segment names
    (:func:`source_key`). A clip without a record (an older cache, a job killed after the
    rename) is probed and, when valid, given one; unless its source is a file with a version,
    which the clip cannot tell: it is cut again. Nothing is deleted: a clip that fails is left
    for a new download to replace.
    """
    clip = clip_path(cache_dir, str(segment.ytid), float(segment.start))
    if not clip.is_file():
        return None
    requested = float(segment.end) - float(segment.start)
    size = clip.stat().st_size
    record = _read_record(clip)
    if record is not None:
        problem = ""
        if int(round(record["start"] * 1000)) != int(round(float(segment.start) * 1000)):
            problem = f"its record is for start {record['start']}"
        elif str(record.get("source_key", "")) != source_key(segment):
            problem = "it was cut from another version of the source file"
        elif record["bytes"] != size:
            problem = f"{size} bytes, {record['bytes']} recorded"
        elif file_sha256(clip) != record["sha256"]:
            problem = "its SHA-256 differs from the recorded one (rewritten since the download)"
        elif record["seconds"] + coverage_tolerance(record["fps"]) < requested:
            problem = f"it holds {record['seconds']:.2f} s, the segment asks for {requested:.3f} s"
        if not problem:
            return record
        log.warning("cached %s is not the clip recorded (%s): downloading it again", clip.name, problem)
        return None
    if source_key(segment):
        log.info("cached %s has no record of the file it was cut from: cutting it again", clip.name)
        return None
    try:
        info = probe_clip(clip)
        check_probe(info, requested)
    except ClipFailure as failure:
        log.info("cached %s has no record and fails the probe (%s): downloading it again", clip.name, failure)
        return None
    except subprocess.TimeoutExpired:
        log.info("cached %s has no record and its probe timed out: downloading it again", clip.name)
        return None
    record = make_record(segment, clip, info, size, file_sha256(clip))
    write_record(clip, record)
    return record


def verify_manifest_clips(manifest: pd.DataFrame, manifest_path: str | Path) -> None:
    """Check that every clip listed ``ok`` is still the file the manifest recorded.

    A clip removed, truncated or rewritten since its download (size or SHA-256 differ) makes
    the manifest untrue: the manifest is deleted, so that the next run of the workflow
    downloads the shard again (the download finds the damaged clip unlike its cache record and
    fetches it anew), and :class:`DamagedClipsError` names every such clip. Rows without a
    recorded checksum (manifests of older versions) are checked by size only.
    """
    rows = manifest[manifest["status"] == "ok"] if "status" in manifest.columns else manifest.iloc[:0]
    damaged = []
    for row in rows.itertuples(index=False):
        path = Path(str(row.path))
        recorded = str(getattr(row, "sha256", "") or "")
        if not path.is_file():
            damaged.append(f"{path} (missing)")
        elif path.stat().st_size != int(row.bytes):
            damaged.append(f"{path} ({path.stat().st_size} bytes, {int(row.bytes)} recorded)")
        elif recorded and file_sha256(path) != recorded:
            damaged.append(f"{path} (SHA-256 differs from the recorded one)")
    if not damaged:
        return
    Path(manifest_path).unlink(missing_ok=True)
    raise DamagedClipsError(
        f"{len(damaged)} clip(s) listed in {manifest_path} changed since they were downloaded: "
        f"{'; '.join(damaged[:10])}{' ...' if len(damaged) > 10 else ''}. That manifest was removed: "
        "run the workflow again and download_clips fetches them anew before the pairs are extracted."
    )
