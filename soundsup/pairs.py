"""Frame/sound pairs: from each clip, the frame on screen at each window centre and the mono
audio around it.

One ffmpeg process per clip writes everything. For each pair time ``t`` an input seeked to the
keyframe at or before ``t`` (``-noaccurate_seek -ss t``: its timestamps count from ``t``) goes
through ``fps=1:start_time=0:round=up``, which passes on the last decoded frame whose timestamp
is at or before ``t`` (a frame's rounded-up time is <= 0 exactly when its time is), and
``trim=end_frame=1`` then ends that input; only that frame is scaled so its short side is
``frame_size``, centre-cropped to a square and written as raw rgb24. This is the frame on screen
at ``t`` on variable-frame-rate clips too, and across a gap in the video the frame shown before
it, never the first frame decoded after ``t``. One more, unseeked input gives the audio track
with all its channels, resampled to ``sample_rate`` float32 (a WAV stream on a pipe, whose
header gives the channel count), its start padded to the file's zero time
(``aresample=async=1:first_pts=0``) so that sample ``n`` is at time ``n / sample_rate`` of the
clip, the time base of the frame seeks too. The mono signal is the mean of the channels, as
``librosa.to_mono`` takes it, clipped to [-1, 1]: the same sound gives the same window from a
mono, stereo or 5.1 upload (ffmpeg's ``-ac 1`` mixes stereo as 0.707 (L + R), 3 dB louder than
the mono file and beyond 1 at full scale).

Pair times (:func:`pair_times`): ``n = min(per_clip, floor(duration / window_s))`` windows;
the clip is cut into ``n`` equal slots and each window is centred in its slot (a 10-s clip,
two windows: centres 2.5 and 7.5 s). Each window lies inside the clip and none overlap.
"""

from __future__ import annotations

import concurrent.futures
import logging
import math
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from soundsup.clips import DURATION_TOLERANCE_S, probe_clip, verify_manifest_clips
from soundsup.download import shard_was_skipped
from soundsup.ffmpeg import ffmpeg_binary
from soundsup.io import save_npy, write_meta, write_parquet
from soundsup.waves import silent_windows, window_rms

log = logging.getLogger(__name__)

PAIR_REASONS = ("missing", "unreadable", "no_video", "no_audio", "too_short", "silent")
INDEX_COLUMNS = ("pair_id", "ytid", "start", "t", "labels", "source_path")
FAILURE_COLUMNS = ("ytid", "start", "reason", "message", "source_path")


@dataclass(frozen=True)
class PairConfig:
    """Frame/audio pair extraction (config section ``pairs``); defaults are the paper's."""

    frame_size: int = 256
    sample_rate: int = 20000
    window_s: float = 3.75
    per_clip: int = 2
    silence_rms: float = 1e-4

    def __post_init__(self) -> None:
        if self.frame_size < 1 or self.sample_rate < 1 or self.per_clip < 1:
            raise ValueError("pairs: frame_size, sample_rate and per_clip must be >= 1")
        if not (math.isfinite(self.window_s) and self.window_s > 0) or self.silence_rms < 0:
            raise ValueError("pairs: window_s must be > 0 and silence_rms >= 0")

    @property
    def window_samples(self) -> int:
        """Samples per audio window: ``round(window_s * sample_rate)`` (75000 at 20 kHz)."""
        return int(round(self.window_s * self.sample_rate))


class PairError(Exception):
    """A clip gave no valid pair; ``reason`` is one of :data:`PAIR_REASONS`."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.message = message


def pair_times(duration: float, config: PairConfig) -> list[float]:
    """Frame times (seconds from the clip start) of the pairs of a clip of ``duration`` seconds.

    Up to ``per_clip`` evenly spaced, non-overlapping windows of ``window_s``, each centred in
    one of ``n`` equal slots of the clip; empty when the clip is shorter than one window.
    """
    window = config.window_s
    if not math.isfinite(duration) or duration + DURATION_TOLERANCE_S < window:
        return []
    count = max(1, min(config.per_clip, int((duration + DURATION_TOLERANCE_S) // window)))
    slot = duration / count
    low, high = window / 2, max(window / 2, duration - window / 2)
    return [round(min(max((index + 0.5) * slot, low), high), 6) for index in range(count)]


# The last frame at or before the seek point (timestamps count from it): fps keeps a frame
# while the next one's time, rounded up to whole seconds, is still <= 0; trim then ends the input.
ON_SCREEN = "fps=fps=1:start_time=0:round=up,trim=end_frame=1"


def _command(path: Path, times: list[float], config: PairConfig, folder: Path) -> list[str]:
    size = config.frame_size
    scale = f"scale=w='if(gte(iw,ih),-1,{size})':h='if(gte(iw,ih),{size},-1)',crop={size}:{size}"
    command = [ffmpeg_binary(), "-hide_banner", "-nostdin", "-loglevel", "error", "-filter_threads", "1"]
    for time_s in times:
        command += ["-threads", "1", "-noaccurate_seek", "-ss", f"{time_s:.6f}", "-i", str(path)]
    audio_end = max(times) + config.window_s / 2 + 1.0  # decode the audio no further than needed
    command += ["-threads", "1", "-t", f"{audio_end:.6f}", "-i", str(path)]
    for index in range(len(times)):
        command += ["-map", f"{index}:v:0", "-vf", f"{ON_SCREEN},{scale}", "-frames:v", "1"]
        command += ["-f", "rawvideo", "-pix_fmt", "rgb24", "-y", str(folder / f"frame{index}.rgb")]
    command += ["-map", f"{len(times)}:a:0", "-af", "aresample=async=1:first_pts=0"]
    command += ["-ar", str(config.sample_rate), "-c:a", "pcm_f32le", "-f", "wav", "pipe:1"]
    return command


def _wav_channels(data: bytes, sample_rate: int) -> np.ndarray:
    """Samples ``(T, C)`` float32 of the pcm_f32le WAV stream that ffmpeg writes on a pipe.

    The stream's data size field is unset (-1), so the data chunk runs to the end; a partial
    last sample frame is dropped. Empty input (ffmpeg wrote nothing) gives ``(0, 1)``.
    """
    if not data:
        return np.zeros((0, 1), np.float32)
    if data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise PairError("unreadable", f"ffmpeg's audio output is not a WAV stream: {data[:12]!r}")
    position, channels = 12, 0
    while position + 8 <= len(data):
        chunk, body = data[position : position + 4], position + 8
        size = int.from_bytes(data[position + 4 : body], "little")
        if chunk == b"fmt ":
            channels = int.from_bytes(data[body + 2 : body + 4], "little")
            rate = int.from_bytes(data[body + 4 : body + 8], "little")
            bits = int.from_bytes(data[body + 14 : body + 16], "little")
            if channels < 1 or rate != sample_rate or bits != 32:
                raise PairError(
                    "unreadable", f"ffmpeg wrote {channels} channels of {bits}-bit audio at {rate} Hz"
                )
        elif chunk == b"data":
            if not channels:
                raise PairError("unreadable", "ffmpeg's WAV stream has no format chunk before its data")
            count = (len(data) - body) // (4 * channels) * channels
            samples = np.frombuffer(data[body : body + 4 * count], dtype="<f4")
            return samples.reshape(-1, channels)
        position = body + size + (size & 1)
    raise PairError("unreadable", "ffmpeg's WAV stream has no data chunk")


def _to_mono(channels: np.ndarray) -> np.ndarray:
    """``(T, C)`` float samples -> ``(T,)`` float32: the mean of the channels, clipped to [-1, 1]."""
    mono = channels.mean(axis=1, dtype=np.float64) if channels.shape[1] > 1 else channels[:, 0]
    return np.clip(mono, -1.0, 1.0).astype(np.float32)


def _run(path: Path, times: list[float], config: PairConfig) -> tuple[list[np.ndarray | None], np.ndarray]:
    """Run the one ffmpeg process of a clip: a frame per time (None if none came) and the mono audio."""
    size = config.frame_size
    with tempfile.TemporaryDirectory(prefix="soundsup-pairs-") as folder:
        command = _command(path, times, config, Path(folder))
        result = subprocess.run(command, capture_output=True, timeout=120)
        stderr = result.stderr.decode("utf-8", errors="replace").strip()
        if result.returncode != 0:
            if "matches no streams" in stderr and f"'{len(times)}:a:0'" in stderr:
                raise PairError("no_audio", "the clip has no audio stream")
            if "matches no streams" in stderr and ":v:0'" in stderr:
                raise PairError("no_video", "the clip has no video stream")
            raise PairError("unreadable", f"ffmpeg exited with code {result.returncode}: {stderr[-300:]}")
        frames: list[np.ndarray | None] = []
        for index in range(len(times)):
            data = (Path(folder) / f"frame{index}.rgb").read_bytes()
            frames.append(
                np.frombuffer(data, np.uint8).reshape(size, size, 3) if len(data) == size * size * 3 else None
            )
    return frames, _to_mono(_wav_channels(result.stdout, config.sample_rate))


def _window(audio: np.ndarray, time_s: float, config: PairConfig) -> np.ndarray | None:
    """The audio window centred at ``time_s``; shifted by at most the duration tolerance to fit."""
    length = config.window_samples
    first = int(round((time_s - config.window_s / 2) * config.sample_rate))
    slack = int(round(DURATION_TOLERANCE_S * config.sample_rate))
    if first < 0:
        first = 0 if first >= -slack else -1
    if first + length > len(audio):
        first = len(audio) - length if first + length - len(audio) <= slack else -1
    if first < 0:
        return None
    return audio[first : first + length]


def _extract(
    path: Path, config: PairConfig, duration: float
) -> tuple[np.ndarray, np.ndarray, list[float], list[int]]:
    """Pairs of one clip: frames (P,S,S,3) uint8, audio (P,T) float32, their times and window numbers."""
    if not path.is_file():
        raise PairError("missing", f"no clip file {path}")
    times = pair_times(duration, config)
    if not times:
        raise PairError("too_short", f"{duration:.2f} s is shorter than one window of {config.window_s} s")
    frames, audio = _run(path, times, config)
    kept: tuple[list, list, list[float], list[int]] = ([], [], [], [])
    problems = []
    for number, (time_s, frame) in enumerate(zip(times, frames, strict=True)):
        window = _window(audio, time_s, config)
        if frame is None:
            problems.append(("too_short", f"no frame at {time_s:.3f} s"))
        elif window is None:
            problems.append(("too_short", f"audio ends at {len(audio) / config.sample_rate:.3f} s"))
        elif silent_windows(window[None], config.silence_rms)[0]:
            rms = window_rms(window[None])[0]
            problems.append(("silent", f"audio window at {time_s:.3f} s has RMS {rms:.2e}"))
        else:
            for bucket, value in zip(kept, (frame, window, time_s, number), strict=True):
                bucket.append(value)
    if not kept[0]:
        raise PairError(problems[0][0], "; ".join(message for _, message in problems))
    if problems:
        log.info("%s: %d of %d windows dropped: %s", path.name, len(problems), len(times), problems)
    return np.stack(kept[0]), np.stack(kept[1]).astype(np.float32), kept[2], kept[3]


def _empty_outputs(config: PairConfig) -> tuple[pd.DataFrame, np.ndarray, np.ndarray, pd.DataFrame]:
    size = config.frame_size
    index = pd.DataFrame(
        {column: pd.Series([], dtype=float if column in ("start", "t") else str) for column in INDEX_COLUMNS}
    )
    failures = pd.DataFrame(
        {column: pd.Series([], dtype=float if column == "start" else str) for column in FAILURE_COLUMNS}
    )
    return (
        index,
        np.zeros((0, size, size, 3), np.uint8),
        np.zeros((0, config.window_samples), np.float32),
        failures,
    )


def extract_shard(
    manifest: pd.DataFrame, config: PairConfig, threads: int = 1
) -> tuple[pd.DataFrame, np.ndarray, np.ndarray, pd.DataFrame]:
    """Pairs of every downloaded clip of a shard (rows with status 'ok'), ``threads`` clips at once.

    Returns ``index`` (pair_id = ``{ytid}_{start_ms}_{i}``, ytid, start, t = seconds from the
    clip start, labels, source_path = the video's path in its folder, '' for other sources),
    ``frames`` (N,S,S,3) uint8, ``audio`` (N,T) float32 (row ``k`` of each array belongs to row
    ``k`` of ``index``) and ``failures`` (ytid, start, reason, message, source_path).
    """
    empty_index, empty_frames, empty_audio, empty_failures = _empty_outputs(config)
    rows = manifest[manifest["status"] == "ok"] if "status" in manifest.columns else manifest
    rows = list(rows.itertuples(index=False))

    def one(row) -> tuple | PairError:
        path = Path(str(row.path))
        try:
            seconds = float(getattr(row, "seconds", 0.0) or 0.0)
            if not seconds > 0 and path.is_file():
                seconds = probe_clip(path)["seconds"]
            return _extract(path, config, seconds)
        except PairError as error:
            return error
        except (OSError, subprocess.SubprocessError) as error:
            return PairError("unreadable", f"{type(error).__name__}: {error}")

    index_rows: list[dict] = []
    frame_blocks, audio_blocks, failures = [empty_frames], [empty_audio], []
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        for done, (row, outcome) in enumerate(zip(rows, pool.map(one, rows), strict=True), start=1):
            if isinstance(outcome, PairError):
                failures.append(
                    {
                        "ytid": row.ytid,
                        "start": float(row.start),
                        "reason": outcome.reason,
                        "message": outcome.message,
                        "source_path": str(getattr(row, "source_path", "") or ""),
                    }
                )
            else:
                frames, audio, times, numbers = outcome
                index_rows += _index_rows(row, times, numbers)
                frame_blocks.append(frames)
                audio_blocks.append(audio)
            if done % 50 == 0 or done == len(rows):
                log.info(
                    "%d of %d clips: %d pairs, %d clips without a pair",
                    done,
                    len(rows),
                    len(index_rows),
                    len(failures),
                )
    index = pd.DataFrame(index_rows, columns=list(INDEX_COLUMNS)) if index_rows else empty_index
    failure_frame = pd.DataFrame(failures, columns=list(FAILURE_COLUMNS)) if failures else empty_failures
    return index, np.concatenate(frame_blocks), np.concatenate(audio_blocks), failure_frame


def _index_rows(row, times: list[float], numbers: list[int]) -> list[dict]:
    start_ms = int(round(float(row.start) * 1000))
    return [
        {"pair_id": f"{row.ytid}_{start_ms}_{number}", "ytid": str(row.ytid), "start": float(row.start),
         "t": float(time_s), "labels": str(getattr(row, "labels", "")),
         "source_path": str(getattr(row, "source_path", "") or "")}
        for time_s, number in zip(times, numbers, strict=True)
    ]  # fmt: skip


def extract_pairs_job(
    *,
    manifest_path: str | Path,
    config: PairConfig,
    config_slice: dict,
    threads: int,
    index_path: str | Path,
    frames_path: str | Path,
    audio_path: str | Path,
    failures_path: str | Path,
) -> pd.DataFrame:
    """Rule ``extract_pairs``: the clips of one shard's manifest -> frames, audio windows, their
    index and the clips that gave no pair (with their reasons).

    A shard the download skipped (``download.on_shard_failure: skip``) gives no pairs; every
    clip the manifest lists is checked against its cache record first
    (:func:`soundsup.clips.verify_manifest_clips`: a damaged one fails the job, naming it, and
    the next run fetches it again). The index is written last.
    """
    manifest = pd.read_parquet(manifest_path)
    if shard_was_skipped(manifest):
        log.warning("%s: the shard was skipped (too many failed clips): no pairs", manifest_path)
        manifest = manifest.iloc[0:0]
    verify_manifest_clips(manifest, manifest_path)
    index, frames, audio, failures = extract_shard(manifest, config, threads=threads)
    if not (len(index) == len(frames) == len(audio)):
        raise RuntimeError(f"index ({len(index)}), frames ({len(frames)}) and audio ({len(audio)}) disagree")
    for row in failures.itertuples():
        log.info("no pair from %s@%.3f: %s: %s", row.ytid, row.start, row.reason, row.message)
    n_clips = int((manifest["status"] == "ok").sum())
    log.info("%d pairs from %d clips, %d clips skipped", len(index), n_clips, len(failures))
    save_npy(frames_path, frames)
    save_npy(audio_path, audio)
    write_parquet(failures_path, failures)
    write_parquet(index_path, index)
    write_meta(index_path, config_slice, n_pairs=len(index))
    return index
