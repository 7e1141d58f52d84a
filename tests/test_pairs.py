"""Frame/audio pairs: window placement, frame-audio alignment, shard assembly and its failures."""

from __future__ import annotations

import subprocess

import numpy as np
import pandas as pd
import pytest

from soundsup.download import DownloadConfig, download_shard
from soundsup.ffmpeg import ffmpeg_binary
from soundsup.pairs import PairConfig, PairError, extract_clip, extract_shard, pair_times

FPS = 10
CLIP_FLASHES = (2.5, 7.5)  # clip times of the white flashes and the beeps: the pair times of 10 s


def encode(path, video: str, audio: str | None) -> None:
    """Encode lavfi sources (complete source strings) to H.264 + AAC, a keyframe per second."""
    command = [ffmpeg_binary(), "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i", video]
    if audio:
        command += ["-f", "lavfi", "-i", audio]
    command += ["-c:v", "libx264", "-preset", "ultrafast", "-g", str(FPS), "-pix_fmt", "yuv420p"]
    command += ["-c:a", "aac", "-shortest"] if audio else []
    subprocess.run([*command, str(path)], check=True, capture_output=True)


def make_flash_beep_clip(path, flashes: tuple[float, ...], seconds: float = 12.0) -> None:
    """Grey level rises by frame; frames at ``flashes`` are white; 1 kHz beeps start at ``flashes``."""
    frames = [round(t * FPS) for t in flashes]
    is_flash = "+".join(f"eq(N\\,{n})" for n in frames)
    video = (
        f"color=c=black:s=64x48:r={FPS}:d={seconds},format=gray,"
        f"geq=lum='if({is_flash}\\,255\\,16+2*N)',format=yuv420p"
    )
    beeps = "+".join(f"between(t\\,{t}\\,{t + 0.1})" for t in flashes)
    audio = f"aevalsrc=exprs='0.5*sin(2*PI*1000*t)*({beeps})+0.01*sin(2*PI*300*t)':s=22050:d={seconds}"
    encode(path, video, audio)


def frame_means(path) -> np.ndarray:
    """Mean RGB level of every frame of a clip (decoded by ffmpeg), frame n at n / FPS."""
    command = [
        ffmpeg_binary(),
        "-hide_banner",
        "-loglevel",
        "error",
        "-i",
        str(path),
        "-f",
        "rawvideo",
        "-pix_fmt",
        "rgb24",
        "pipe:1",
    ]
    data = subprocess.run(command, check=True, capture_output=True).stdout
    return np.frombuffer(data, np.uint8).reshape(-1, 48 * 64 * 3).mean(axis=1)


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    root = tmp_path_factory.mktemp("videos")
    for name, start in (("flashbeep_0", 1.0), ("flashbeep_1", 1.3)):
        make_flash_beep_clip(root / f"{name}.mp4", tuple(start + t for t in CLIP_FLASHES))
    encode(
        root / "silentclip0.mp4",
        "testsrc=size=64x48:rate=10:duration=12",
        "anullsrc=sample_rate=22050:duration=12",
    )
    encode(root / "six_seconds.mp4", "testsrc=size=64x48:rate=10:duration=6", "sine=frequency=500:duration=6")
    encode(root / "videoonly00.mp4", "testsrc=size=64x48:rate=10:duration=12", None)
    return root


def test_pair_times_rule():
    config = PairConfig()
    assert pair_times(10.0, config) == [2.5, 7.5]
    assert pair_times(9.99, config) == pytest.approx([2.4975, 7.4925])
    assert pair_times(7.5, config) == [1.875, 5.625]  # two windows that just touch
    assert pair_times(6.0, config) == [3.0]  # two would overlap: one, centred
    assert pair_times(3.75, config) == [1.875]
    assert pair_times(3.0, config) == []
    assert pair_times(12.0, PairConfig(per_clip=3)) == [2.0, 6.0, 10.0]
    assert (
        PairConfig().window_samples == 75000
        and PairConfig(sample_rate=16000, window_s=1.0).window_samples == 16000
    )
    for duration in (3.75, 5.0, 7.5, 10.0, 11.3):
        times = pair_times(duration, config)
        edges = [(t - 1.875, t + 1.875) for t in times]
        assert all(low >= -1e-9 and high <= duration + 1e-9 for low, high in edges)
        assert all(edges[i][1] <= edges[i + 1][0] + 1e-9 for i in range(len(edges) - 1))


@pytest.mark.parametrize(
    ("ytid", "start", "reencode"), [("flashbeep_0", 1.0, False), ("flashbeep_1", 1.3, True)]
)
def test_frame_and_audio_window_agree_through_cut_and_extraction(videos, tmp_path, ytid, start, reencode):
    """A flash and a beep at the same instant: the frame is the flash, the beep is at the window centre.

    Stream copy cuts on a keyframe (1.0 s); re-encoding cuts between keyframes (1.3 s).
    """
    config = DownloadConfig(
        source="local", local_dir=str(videos), retries=0, concurrency=1, reencode=reencode
    )
    segment = pd.DataFrame({"ytid": [ytid], "start": [start], "end": [start + 10.0], "labels": ["/m/x"]})
    manifest = download_shard(segment, tmp_path, config)
    assert manifest["status"].tolist() == ["ok"]
    pairs = PairConfig(frame_size=32)
    index, frames, audio, failures = extract_shard(manifest, pairs)
    assert failures.empty and len(index) == len(frames) == len(audio) == 2
    assert index["t"].tolist() == pytest.approx(CLIP_FLASHES)
    means = frame_means(manifest["path"].iloc[0])
    one_frame = 1 / FPS
    for frame, window, time_s in zip(frames, audio, index["t"], strict=True):
        near = np.arange(round((time_s - 1) * FPS), round((time_s + 1) * FPS))
        frame_time = near[np.argmin(np.abs(means[near] - frame.mean()))] / FPS
        onset = np.flatnonzero(np.abs(window) > 0.1)[0]
        beep_time = time_s - pairs.window_s / 2 + onset / pairs.sample_rate
        assert frame.mean() > 250  # the white flash itself
        assert abs(frame_time - time_s) <= one_frame
        assert abs(beep_time - time_s) <= one_frame
        assert abs(beep_time - frame_time) <= one_frame


def test_extract_shard_keeps_index_and_arrays_in_line(videos, tmp_path):
    config = DownloadConfig(source="local", local_dir=str(videos), retries=0, concurrency=2, reencode=False)
    ids = ["flashbeep_0", "six_seconds", "videoonly00"]
    ends = [10.0, 6.0, 10.0]  # a 6-s segment of the 6-s video: a clip must cover its segment
    segment = pd.DataFrame({"ytid": ids, "start": 0.0, "end": ends, "labels": ["/m/a", "/m/b", "/m/c"]})
    manifest = download_shard(segment, tmp_path, config)
    assert manifest["status"].tolist() == ["ok", "ok", "failed"]
    silent = {
        "ytid": "silentclip0",
        "start": 0.0,
        "end": 10.0,
        "labels": "/m/d",
        "status": "ok",
        "reason": "",
        "message": "",
        "path": str(videos / "silentclip0.mp4"),
        "bytes": 1,
        "seconds": 12.0,
    }
    missing = {**silent, "ytid": "missingclip", "path": str(tmp_path / "gone.mp4")}
    manifest = pd.concat([manifest, pd.DataFrame([silent, missing])], ignore_index=True)
    config = PairConfig(frame_size=40)
    index, frames, audio, failures = extract_shard(manifest, config, threads=2)
    assert list(index.columns) == ["pair_id", "ytid", "start", "t", "labels"]
    assert index["pair_id"].tolist() == ["flashbeep_0_0_0", "flashbeep_0_0_1", "six_seconds_0_0"]
    assert index["t"].tolist() == pytest.approx([2.5, 7.5, 3.0])
    assert index["labels"].tolist() == ["/m/a", "/m/a", "/m/b"]
    assert frames.shape == (3, 40, 40, 3) and frames.dtype == np.uint8
    assert audio.shape == (3, 75000) and audio.dtype == np.float32
    assert dict(zip(failures["ytid"], failures["reason"], strict=True)) == {
        "silentclip0": "silent",
        "missingclip": "missing",
    }
    # Row k of the arrays is pair k: recompute one clip alone and compare.
    alone_frames, alone_audio, times = extract_clip(manifest["path"].iloc[1], config)
    assert times == [3.0]
    np.testing.assert_array_equal(alone_frames[0], frames[2])
    np.testing.assert_array_equal(alone_audio[0], audio[2])


def test_unusable_clips_raise_with_reason(videos):
    with pytest.raises(PairError) as caught:
        extract_clip(videos / "videoonly00.mp4", PairConfig(frame_size=16), duration=12.0)
    assert caught.value.reason == "no_audio"
    with pytest.raises(PairError) as caught:
        extract_clip(videos / "six_seconds.mp4", PairConfig(frame_size=16), duration=3.0)
    assert caught.value.reason == "too_short"


def test_empty_shard_has_zero_length_arrays_with_trailing_shapes():
    manifest = pd.DataFrame(
        {
            "ytid": ["aaaaaaaaaaa"],
            "start": [0.0],
            "end": [10.0],
            "labels": ["/m/x"],
            "status": ["failed"],
            "reason": ["timeout"],
            "message": [""],
            "path": [""],
            "bytes": [0],
            "seconds": [0.0],
        }
    )
    index, frames, audio, failures = extract_shard(manifest, PairConfig(frame_size=24))
    assert frames.shape == (0, 24, 24, 3) and frames.dtype == np.uint8
    assert audio.shape == (0, 75000) and audio.dtype == np.float32
    assert list(index.columns) == ["pair_id", "ytid", "start", "t", "labels"] and len(index) == 0
    assert list(failures.columns) == ["ytid", "start", "reason", "message"] and len(failures) == 0
