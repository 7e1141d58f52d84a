"""download_shard through the real yt-dlp and ffmpeg, against a loopback HTTP server.

Test media are made at test time with ffmpeg's lavfi sources: 64x48, 10 fps, H.264 + AAC,
a keyframe every second, 12 s unless stated.
"""

from __future__ import annotations

import subprocess

import pandas as pd
import pytest
from httpserver import MediaServer

from soundsup.download import (
    MANIFEST_COLUMNS,
    REASONS,
    DownloadConfig,
    DownloadFailureError,
    check_failures,
    classify_error,
    clip_path,
    dataset_summary,
    download_shard,
    probe_clip,
)
from soundsup.ffmpeg import ffmpeg_binary

GOOD, GOOD2, NO_AUDIO, SHORT, SILENT, CORRUPT = (
    "good-clip_A",
    "-goodclipB2",
    "noaudio_000",
    "short_clip0",
    "silentaudio",
    "corrupt_000",
)
MISSING, TRUNCATED, STALLED, MUTE, TRICKLE, LIMITED = (
    "missing_404",
    "truncated00",
    "stalled_000",
    "mute_server",
    "trickle_000",
    "ratelimited",
)


def make_clip(
    path, seconds: float = 12.0, audio: str | None = "sine=frequency=440:sample_rate=22050"
) -> None:
    command = [
        ffmpeg_binary(),
        "-hide_banner",
        "-loglevel",
        "error",
        "-y",
        "-f",
        "lavfi",
        "-i",
        f"testsrc=size=64x48:rate=10:duration={seconds}",
    ]
    if audio:
        command += ["-f", "lavfi", "-i", f"{audio}:duration={seconds}"]
    command += ["-c:v", "libx264", "-preset", "ultrafast", "-g", "10", "-pix_fmt", "yuv420p"]
    command += ["-c:a", "aac", "-shortest"] if audio else []
    subprocess.run([*command, str(path)], check=True, capture_output=True)


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    root = tmp_path_factory.mktemp("media")
    for name in (GOOD, GOOD2, TRUNCATED, STALLED, TRICKLE):
        make_clip(root / f"{name}.mp4")
    make_clip(root / f"{NO_AUDIO}.mp4", audio=None)
    make_clip(root / f"{SHORT}.mp4", seconds=3.0)
    make_clip(root / f"{SILENT}.mp4", audio="anullsrc=sample_rate=22050")
    (root / f"{CORRUPT}.mp4").write_bytes(bytes(range(256)) * 120)
    return root


@pytest.fixture
def server(media):
    behaviours = {
        f"{MISSING}.mp4": ("status", 404),
        f"{LIMITED}.mp4": ("status", 429),
        f"{TRUNCATED}.mp4": ("truncate", 60000),
        f"{STALLED}.mp4": ("stall", 30),
        f"{MUTE}.mp4": ("silent", 30),
        f"{TRICKLE}.mp4": ("trickle", 30),
    }
    with MediaServer(media, behaviours) as running:
        yield running


def segments(*ytids: str, start: float = 1.0, end: float = 11.0) -> pd.DataFrame:
    return pd.DataFrame({"ytid": list(ytids), "start": start, "end": end, "labels": "/m/0838f"})


def config_for(server, **overrides) -> DownloadConfig:
    settings = {
        "url_template": server.url("{ytid}.mp4"),
        "timeout_s": 20,
        "retries": 0,
        "backoff_s": 0.05,
        "concurrency": 2,
        "reencode": False,
    } | overrides
    return DownloadConfig(**settings)


def by_id(manifest: pd.DataFrame) -> dict:
    return {row.ytid: row for row in manifest.itertuples()}


def test_good_clip_and_each_failure_reason(server, tmp_path):
    ids = (GOOD, MISSING, TRUNCATED, NO_AUDIO, SHORT, SILENT, CORRUPT)
    manifest = download_shard(segments(*ids), tmp_path / "cache", config_for(server, concurrency=3))
    assert tuple(manifest.columns) == MANIFEST_COLUMNS
    assert manifest["ytid"].tolist() == list(ids)
    rows = by_id(manifest)
    good = rows[GOOD]
    assert (good.status, good.reason, good.message) == ("ok", "", "")
    assert good.path == str(clip_path(tmp_path / "cache", GOOD, 1.0)) and good.path.endswith(
        f"{GOOD}_1000.mp4"
    )
    assert good.bytes == (tmp_path / "cache" / f"{GOOD}_1000.mp4").stat().st_size
    assert good.seconds == pytest.approx(10.0, abs=0.1)
    probe = probe_clip(good.path)
    assert probe["has_video"] and probe["has_audio"] and not probe["silent"]
    expected = {
        MISSING: "unavailable",
        TRUNCATED: "corrupt",
        NO_AUDIO: "no_audio",
        SHORT: "too_short",
        SILENT: "no_audio",
        CORRUPT: "corrupt",
    }
    assert {ytid: rows[ytid].reason for ytid in expected} == expected
    assert all(rows[ytid].status == "failed" and rows[ytid].path == "" for ytid in expected)
    assert "404" in rows[MISSING].message and "silent" in rows[SILENT].message
    assert sorted(path.name for path in (tmp_path / "cache").glob("*.mp4")) == [f"{GOOD}_1000.mp4"]
    assert list((tmp_path / "cache" / ".partial").iterdir()) == []


def test_reencoded_cut_starts_at_the_section(server, tmp_path):
    manifest = download_shard(segments(GOOD, start=1.5, end=7.5), tmp_path, config_for(server, reencode=True))
    row = manifest.iloc[0]
    assert row.status == "ok" and row.path.endswith(f"{GOOD}_1500.mp4")
    assert row.seconds == pytest.approx(6.0, abs=0.15)


def test_stalls_and_silent_servers_time_out(server, tmp_path):
    config = config_for(server, timeout_s=2, concurrency=3)
    manifest = download_shard(segments(STALLED, MUTE, TRICKLE), tmp_path, config)
    assert manifest["reason"].tolist() == ["timeout", "timeout", "timeout"]
    assert "ffmpeg killed" in manifest["message"].iloc[2]  # the outer deadline, not -rw_timeout


def test_rate_limit_is_retried_after_a_shared_pause(server, tmp_path):
    manifest = download_shard(segments(LIMITED), tmp_path, config_for(server, retries=1))
    assert manifest["reason"].tolist() == ["rate_limited"]
    assert sum(1 for request in server.requests if request[1] == f"/{LIMITED}.mp4") == 2


def test_rerun_resumes_from_the_cache_without_requests(server, tmp_path):
    cache = tmp_path / "cache"
    config = config_for(server)
    first = download_shard(segments(GOOD, GOOD2), cache, config)
    assert first["status"].tolist() == ["ok", "ok"]
    n_requests = len(server.requests)
    second = download_shard(segments(GOOD, GOOD2), cache, config)
    assert len(server.requests) == n_requests
    assert second.equals(first)
    # A killed run: one clip lost, one damaged, a partial left behind -> only those are fetched.
    (cache / f"{GOOD}_1000.mp4").unlink()
    damaged = cache / f"{GOOD2}_1000.mp4"
    damaged.write_bytes(damaged.read_bytes()[:5000])
    (cache / ".partial" / f"{GOOD}_1000.mp4.part").write_bytes(b"half")
    third = download_shard(segments(GOOD, GOOD2), cache, config)
    assert third["status"].tolist() == ["ok", "ok"] and third.equals(first)
    fetched = {request[1] for request in server.requests[n_requests:]}
    assert fetched == {f"/{GOOD}.mp4", f"/{GOOD2}.mp4"}
    assert list((cache / ".partial").iterdir()) == []


def test_invalid_segments_never_reach_a_request(server, tmp_path):
    frame = pd.DataFrame(
        {
            "ytid": ["../../etc/pw", GOOD],
            "start": [0.0, float("nan")],
            "end": [10.0, 10.0],
            "labels": ["/m/x", "/m/x"],
        }
    )
    manifest = download_shard(frame, tmp_path, config_for(server))
    assert manifest["reason"].tolist() == ["other", "other"]
    assert server.requests == []


def test_local_source_uses_the_same_probe_cache_and_manifest(media, tmp_path):
    config = DownloadConfig(
        source="local", local_dir=str(media), timeout_s=20, retries=0, concurrency=2, reencode=False
    )
    ids = (GOOD, "notthere_00", NO_AUDIO, CORRUPT, SHORT)
    manifest = download_shard(segments(*ids), tmp_path / "cache", config)
    assert tuple(manifest.columns) == MANIFEST_COLUMNS
    assert manifest["reason"].tolist() == ["", "unavailable", "no_audio", "corrupt", "too_short"]
    assert manifest["seconds"].iloc[0] == pytest.approx(10.0, abs=0.1)
    again = download_shard(segments(*ids), tmp_path / "cache", config)
    assert again.iloc[0].equals(manifest.iloc[0])
    with pytest.raises(ValueError, match="local_dir"):
        DownloadConfig(source="local")


def test_failure_fraction_bound(server, tmp_path):
    manifest = download_shard(segments(GOOD, MISSING, NO_AUDIO), tmp_path, config_for(server))
    check_failures(manifest, 0.7, name="shard 3")
    bound = r"shard 3: 2 of 3 clips failed \(66\.7% > the bound 50\.0%\)"
    with pytest.raises(DownloadFailureError, match=bound) as caught:
        check_failures(manifest, 0.5, name="shard 3")
    assert "unavailable 1" in str(caught.value) and "no_audio 1" in str(caught.value)
    check_failures(manifest.iloc[:0], 0.0, name="empty")


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        ("[youtube] abc: Private video. Sign in if you've been granted access to this video", "private"),
        ("[youtube] abc: Video unavailable. This video is no longer available", "unavailable"),
        ("[youtube] abc: The uploader has not made this video available in your country", "geo_blocked"),
        (
            "[youtube] abc: Sign in to confirm your age. This video may be inappropriate for some users.",
            "age_restricted",
        ),
        ("[youtube] abc: Sign in to confirm you\u2019re not a bot. Use --cookies-from-browser", "bot_check"),
        ("[youtube] abc: Sign in to confirm you're not a bot", "bot_check"),
        ("Unable to download webpage: HTTP Error 429: Too Many Requests", "rate_limited"),
        ("Unable to download webpage: HTTP Error 410: Gone", "unavailable"),
        ("Unable to download webpage: HTTP Error 503: Service Unavailable", "http_error"),
        ("Unable to download webpage: Read timed out. (read timeout=2.0)", "timeout"),
        ("ffmpeg exited with code 183", "corrupt"),
        ("Requested format is not available", "other"),
    ],
)
def test_classify_error(message, reason):
    assert classify_error(message) == reason
    assert reason in REASONS


def test_dataset_summary_counts_by_shard():
    selection = pd.DataFrame(
        {
            "ytid": ["a" * 11, "b" * 11, "c" * 11],
            "start": 0.0,
            "end": 10.0,
            "labels": "/m/x",
            "shard": [0, 0, 1],
        }
    )
    manifests = [
        pd.DataFrame({"ytid": ["a" * 11, "b" * 11], "status": ["ok", "failed"], "reason": ["", "timeout"]}),
        pd.DataFrame({"ytid": ["c" * 11], "status": ["ok"], "reason": [""]}),
    ]
    indices = [pd.DataFrame({"ytid": ["a" * 11, "a" * 11]}), pd.DataFrame({"ytid": ["c" * 11]})]
    summary = dataset_summary(selection, manifests, indices)
    assert summary["shard"].tolist() == ["0", "1", "total"]
    assert summary["requested"].tolist() == [2, 1, 3]
    assert summary["downloaded"].tolist() == [1, 1, 2]
    assert summary["failed_timeout"].tolist() == [1, 0, 1]
    assert summary["pairs"].tolist() == [2, 1, 3]
    assert [column for column in summary.columns if column.startswith("failed_")] == [
        f"failed_{r}" for r in REASONS
    ]
