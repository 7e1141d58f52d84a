"""Frame/audio pairs: window placement, frame-audio alignment, the frame on screen at a time on a
variable-frame-rate clip, the downmix of any channel layout, shard assembly and its failures."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from soundsup.download import DownloadConfig, download_shard
from soundsup.ffmpeg import ffmpeg_binary
from soundsup.pairs import PairConfig, PairError, _extract, extract_shard, pair_times

FPS = 10
CLIP_FLASHES = (2.5, 7.5)  # clip times of the white flashes and the beeps: the pair times of 10 s
# Frame times of a variable-frame-rate clip: 10 fps, two irregular frames, a 5-s gap, irregular again.
VFR_TIMES = (
    *(round(0.1 * n, 2) for n in range(25)),
    *(2.47, 2.61, 7.61, 7.8, 8.0, 8.04, 8.4, 8.45, 9.0, 9.9),
    *(round(10 + 0.1 * n, 2) for n in range(21)),
)
RATE = 20000


def extract_clip(path, config, duration):
    """Frames, audio windows and frame times of one clip, as extract_shard cuts them."""
    frames, audio, times, _ = _extract(Path(path), config, float(duration))
    return frames, audio, times


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


def make_vfr_clip(path) -> None:
    """Frames only at :data:`VFR_TIMES`, each showing its own time: the top half has luma
    16 + 16 * whole seconds, the bottom half 16 + 2 * hundredths (lossless H.264 with B-frames)."""
    picks = "+".join(f"eq(n\\,{round(t * 100)})" for t in VFR_TIMES)
    lum = "if(lt(Y\\,H/2)\\,16+16*trunc(round(T*100)/100)\\,16+2*mod(round(T*100)\\,100))"
    video = f"color=s=64x48:r=100:d=12.1,format=yuv420p,select='{picks}',geq=lum='{lum}':cb=128:cr=128"
    command = [ffmpeg_binary(), "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i", video]
    command += ["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100:duration=12", "-fps_mode", "vfr"]
    command += ["-c:v", "libx264", "-preset", "ultrafast", "-qp", "0", "-bf", "2", "-g", "10", "-c:a", "aac"]
    subprocess.run([*command, str(path)], check=True, capture_output=True)


def shown_times(frames: np.ndarray) -> np.ndarray:
    """The time (s) that each (N, S, S, 3) rgb24 frame of :func:`make_vfr_clip` shows."""
    quarter = frames.shape[1] // 4
    luma = frames.astype(np.float64) * 219 / 255  # full-range rgb back to luma - 16
    whole = np.round(luma[:, :quarter].mean(axis=(1, 2, 3)) / 16)
    hundredths = np.round(luma[:, -quarter:].mean(axis=(1, 2, 3)) / 2)
    return np.round(whole + hundredths / 100, 2)


def encode_sound(path, channels: np.ndarray, rate: int, layout: str, codec: str) -> None:
    """A 12-s test-pattern video with ``channels`` (T, C) float in [-1, 1] as its sound track."""
    raw = path.with_suffix(".s16")
    raw.write_bytes(np.round(channels * 32767).astype("<i2").tobytes())
    command = [ffmpeg_binary(), "-hide_banner", "-loglevel", "error", "-y"]
    command += ["-f", "lavfi", "-i", "testsrc=size=64x48:rate=10:duration=12"]
    command += ["-f", "s16le", "-ar", str(rate), "-ch_layout", layout, "-i", str(raw)]
    command += ["-c:v", "libx264", "-preset", "ultrafast", "-g", str(FPS), "-pix_fmt", "yuv420p"]
    subprocess.run([*command, "-c:a", codec, "-shortest", str(path)], check=True, capture_output=True)
    raw.unlink()


def level_db(samples: np.ndarray) -> float:
    return float(10 * np.log10(np.mean(np.square(samples, dtype=np.float64))))


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


def test_the_frame_is_the_one_on_screen_at_the_pair_time_on_a_variable_frame_rate_clip(tmp_path):
    """The last frame whose time is at or before t: between irregular frames, on a frame, and
    across a 5-s gap, where the frame on screen is the one before the gap."""
    path = tmp_path / "vfr.mp4"
    make_vfr_clip(path)
    every_frame = subprocess.run(
        [ffmpeg_binary(), "-loglevel", "error", "-i", str(path), "-fps_mode", "passthrough",
         "-f", "rawvideo", "-pix_fmt", "rgb24", "pipe:1"],
        check=True, capture_output=True,
    ).stdout  # fmt: skip
    decoded = np.frombuffer(every_frame, np.uint8).reshape(-1, 48, 64, 3)
    assert shown_times(decoded).tolist() == list(VFR_TIMES)  # the clip is what it should be
    probes = (2.0, 2.05, 2.5, 2.6, 3.0, 5.0, 7.5, 7.61, 7.7, 8.0, 8.2, 8.42, 9.5, 9.95, 10.0)
    wrong = []
    for time_s in probes:  # one window centred at time_s: a clip of 2 * time_s seconds
        frames, _, times = extract_clip(path, PairConfig(frame_size=32, per_clip=1), duration=2 * time_s)
        expected = max(frame_time for frame_time in VFR_TIMES if frame_time <= time_s)
        assert times == [time_s]
        if shown_times(frames)[0] != expected:
            wrong.append((time_s, float(shown_times(frames)[0]), expected))
    assert not wrong, f"(pair time, frame taken, frame on screen): {wrong}"
    frames, _, times = extract_clip(path, PairConfig(frame_size=32), duration=10.0)
    assert times == [2.5, 7.5] and shown_times(frames).tolist() == [2.47, 2.61]


def test_mono_and_stereo_uploads_of_one_sound_give_the_same_windows(tmp_path):
    """One sound as mono AAC and as stereo AAC with L = R: equal windows to codec precision."""
    t = np.arange(12 * 44100) / 44100
    sound = 0.3 * np.sin(2 * np.pi * 440 * t) + 0.2 * np.sin(2 * np.pi * 1250 * t) * np.sin(2 * np.pi * 3 * t)
    encode_sound(tmp_path / "mono.mp4", sound[:, None], 44100, "mono", "aac")
    encode_sound(tmp_path / "stereo.mp4", np.stack([sound, sound], axis=1), 44100, "stereo", "aac")
    config = PairConfig(frame_size=16)
    _, mono, _ = extract_clip(tmp_path / "mono.mp4", config, duration=10.0)
    _, stereo, _ = extract_clip(tmp_path / "stereo.mp4", config, duration=10.0)
    assert mono.shape == stereo.shape == (2, 75000)
    assert abs(level_db(stereo) - level_db(mono)) < 0.05  # -ac 1 made the stereo one 3 dB louder
    difference = np.sqrt(np.mean(np.square(stereo - mono)) / np.mean(np.square(mono)))
    assert difference < 0.1  # AAC gives 0.04 here; -ac 1 gave 0.41


def test_any_layout_is_mixed_to_the_mean_of_its_channels(tmp_path):
    """5.1 PCM at the workflow's rate, a different sound in each channel: the window is their
    mean to float precision (ffmpeg's own 5.1 downmix weights channels and drops the LFE)."""
    t = np.arange(12 * RATE) / RATE
    channels = np.stack([0.3 * np.sin(2 * np.pi * hz * t) for hz in (200, 330, 510, 700, 60, 1100)], axis=1)
    channels[:, 0] += 0.5 * (t % 1 < 0.5)
    encode_sound(tmp_path / "surround.mkv", channels, RATE, "5.1", "pcm_s16le")
    _, windows, times = extract_clip(tmp_path / "surround.mkv", PairConfig(frame_size=16), duration=10.0)
    mean = (np.round(channels * 32767) / 32768).mean(axis=1)
    for window, time_s in zip(windows, times, strict=True):
        first = round((time_s - 1.875) * RATE)
        np.testing.assert_allclose(window, mean[first : first + 75000], rtol=0, atol=1e-6)


@pytest.mark.parametrize("codec", ["pcm_s16le", "aac"])
def test_a_full_scale_stereo_sound_stays_within_full_scale(tmp_path, codec):
    """A 0.99 square wave in both channels: the resampler overshoots past 1, the window never does."""
    t = np.arange(12 * 44100) / 44100
    square = 0.99 * np.sign(np.sin(2 * np.pi * 300 * t))
    encode_sound(tmp_path / f"loud.{'mkv' if codec == 'pcm_s16le' else 'mp4'}", np.stack([square, square], 1),
                 44100, "stereo", codec)  # fmt: skip
    _, windows, _ = extract_clip(next(tmp_path.glob("loud.*")), PairConfig(frame_size=16), duration=10.0)
    assert np.abs(windows).max() <= 1.0
    assert np.mean(np.abs(windows) > 0.9) > 0.5  # still the loud square wave


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
    assert list(index.columns) == ["pair_id", "ytid", "start", "t", "labels", "source_path"]
    assert index["source_path"].tolist() == ["", "", ""]  # clips of YouTube ids come from no folder
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
    alone_frames, alone_audio, times = extract_clip(
        manifest["path"].iloc[1], config, duration=manifest["seconds"].iloc[1]
    )
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
    assert list(index.columns) == ["pair_id", "ytid", "start", "t", "labels", "source_path"]
    assert list(failures.columns) == ["ytid", "start", "reason", "message", "source_path"]
    assert len(index) == 0 and len(failures) == 0
