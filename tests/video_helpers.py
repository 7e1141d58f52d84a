"""Test videos made with ffmpeg's lavfi sources, in the containers and codecs people keep."""

from __future__ import annotations

import subprocess
from pathlib import Path

from soundsup.ffmpeg import ffmpeg_binary

# container -> (video codec options, audio codec options)
CODECS = {
    "mp4": (["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"], ["-c:a", "aac"]),
    "mov": (["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"], ["-c:a", "aac"]),
    "mkv": (["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"], ["-c:a", "libopus"]),
    "webm": (
        ["-c:v", "libvpx", "-deadline", "realtime", "-cpu-used", "8", "-b:v", "200k"],
        ["-c:a", "libopus"],
    ),
    "avi": (["-c:v", "mpeg4", "-q:v", "5"], ["-c:a", "libmp3lame"]),
}


def make_video(
    path: str | Path,
    seconds: float = 12.0,
    audio: str | None = "sine=frequency=440",
    video: bool = True,
    size: str = "64x48",
    container: str | None = None,
) -> Path:
    """Write a test video (10 fps, a keyframe every second) to ``path``; its container follows
    the suffix unless ``container`` names one (e.g. ``"webm"`` to a pipe-less ``.bin``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    kind = container or path.suffix.lstrip(".").lower()
    video_codec, audio_codec = CODECS[kind]
    command = [ffmpeg_binary(), "-hide_banner", "-loglevel", "error", "-y"]
    if video:
        command += ["-f", "lavfi", "-i", f"testsrc=size={size}:rate=10:duration={seconds}"]
    if audio:
        command += ["-f", "lavfi", "-i", f"{audio}:duration={seconds}"]
    command += (video_codec + ["-g", "10"] if video else []) + (audio_codec if audio else [])
    command += ["-f", {"mkv": "matroska"}.get(kind, kind), str(path)]
    subprocess.run(command, check=True, capture_output=True)
    return path


def make_unseekable_webm(path: str | Path, seconds: float = 12.0) -> Path:
    """A WebM written to a pipe, as browsers record them: its container states no duration."""
    command = [
        ffmpeg_binary(), "-hide_banner", "-loglevel", "error",
        "-f", "lavfi", "-i", f"testsrc=size=64x48:rate=10:duration={seconds}",
        "-f", "lavfi", "-i", f"sine=frequency=330:duration={seconds}",
        *CODECS["webm"][0], *CODECS["webm"][1], "-f", "webm", "pipe:1",
    ]  # fmt: skip
    Path(path).write_bytes(subprocess.run(command, check=True, capture_output=True).stdout)
    return Path(path)
