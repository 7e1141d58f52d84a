"""download_shard through the real yt-dlp and ffmpeg, against a loopback HTTP server.

Test media are made at test time with ffmpeg's lavfi sources: 64x48, 10 fps, H.264 + AAC,
a keyframe every second, 12 s unless stated.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from adapter_helpers import Job, rule_params_of, run_adapter, workflow_config
from diskfull import fill, small_disk
from httpserver import MediaServer

from soundsup.clips import (
    DamagedClipsError,
    clip_path,
    file_sha256,
    probe_clip,
    record_path,
    verify_manifest_clips,
)
from soundsup.dataset_report import dataset_summary
from soundsup.download import (
    MANIFEST_COLUMNS,
    DownloadConfig,
    DownloadFailureError,
    check_failures,
    download_shard,
)
from soundsup.failures import REASONS, classify_error
from soundsup.fetchers import ytdlp_options
from soundsup.ffmpeg import ffmpeg_binary
from soundsup.io import OutputWriteError, write_parquet
from soundsup.pairs import PairConfig, extract_shard

REPO = Path(__file__).resolve().parent.parent
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
FASTSTART, TINY, DRIP, REDIRECT_FILE, REDIRECT_FFMPEG = (
    "faststart_0",
    "tiny_video0",
    "drip_page_0",
    "redirfile_0",
    "redirffmpeg",
)
FULL_DISK = tuple(f"fulldisk_{index:02d}" for index in range(6))


def make_clip(
    path,
    seconds: float = 12.0,
    audio: str | None = "sine=frequency=440:sample_rate=22050",
    size: str = "64x48",
    faststart: bool = False,
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
        f"testsrc=size={size}:rate=10:duration={seconds}",
    ]
    if audio:
        command += ["-f", "lavfi", "-i", f"{audio}:duration={seconds}"]
    command += ["-c:v", "libx264", "-preset", "ultrafast", "-g", "10", "-pix_fmt", "yuv420p"]
    command += ["-c:a", "aac", "-shortest"] if audio else []
    command += ["-movflags", "+faststart"] if faststart else []
    subprocess.run([*command, str(path)], check=True, capture_output=True)


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    root = tmp_path_factory.mktemp("media")
    for name in (GOOD, GOOD2, TRUNCATED, STALLED, TRICKLE, REDIRECT_FFMPEG, *FULL_DISK):
        make_clip(root / f"{name}.mp4")
    make_clip(root / f"{NO_AUDIO}.mp4", audio=None)
    make_clip(root / f"{SHORT}.mp4", seconds=3.0)
    make_clip(root / f"{SILENT}.mp4", audio="anullsrc=sample_rate=22050")
    make_clip(root / f"{FASTSTART}.mp4", faststart=True)
    make_clip(root / f"{TINY}.mp4", size="8x6")
    (root / f"{CORRUPT}.mp4").write_bytes(bytes(range(256)) * 120)
    return root


@pytest.fixture
def server(media):
    faststart_bytes = (media / f"{FASTSTART}.mp4").stat().st_size
    behaviours = {
        f"{MISSING}.mp4": ("status", 404),
        f"{LIMITED}.mp4": ("status", 429),
        f"{TRUNCATED}.mp4": ("truncate", 60000),
        f"{FASTSTART}.mp4": ("truncate", int(faststart_bytes * 0.6)),  # moov first: 60 % plays
        f"{STALLED}.mp4": ("stall", 30),
        f"{MUTE}.mp4": ("silent", 30),
        f"{TRICKLE}.mp4": ("trickle", 60),
        f"{DRIP}.mp4": ("drip", 1000, 60),
        f"{REDIRECT_FILE}.mp4": ("redirect", "file:///etc/passwd"),
        f"{REDIRECT_FFMPEG}.mp4": ("redirect_ffmpeg", (media / f"{GOOD}.mp4").as_uri()),
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


def requests_for(server, ytid: str, since: int = 0) -> int:
    return sum(1 for request in server.requests[since:] if request[1] == f"/{ytid}.mp4")


def test_good_clip_and_each_failure_reason(server, tmp_path):
    ids = (GOOD, MISSING, TRUNCATED, FASTSTART, NO_AUDIO, SHORT, SILENT, CORRUPT, TINY)
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
    assert good.sha256 == file_sha256(good.path)
    assert good.seconds == pytest.approx(10.0, abs=0.1)
    probe = probe_clip(good.path)
    assert probe["has_video"] and probe["has_audio"] and not probe["silent"]
    expected = {
        MISSING: "unavailable",
        TRUNCATED: "corrupt",
        FASTSTART: "truncated",  # a faststart mp4 cut mid-body plays: 6 s of the 10 s asked for
        NO_AUDIO: "no_audio",
        SHORT: "truncated",  # a 3-s source: the loopback host states no duration
        SILENT: "no_audio",
        CORRUPT: "corrupt",
    }
    assert {ytid: rows[ytid].reason for ytid in expected} == expected
    assert all(rows[ytid].status == "failed" and rows[ytid].path == "" for ytid in expected)
    assert "404" in rows[MISSING].message and "silent" in rows[SILENT].message
    assert "of the 10.000 s requested" in rows[FASTSTART].message
    # A video of 8x6 pixels is a video: judged by what it holds (here nothing is wrong).
    assert rows[TINY].status == "ok" and probe_clip(rows[TINY].path)["width"] == 8
    cached = sorted(path.name for path in (tmp_path / "cache").glob("*.mp4"))
    assert cached == [f"{GOOD}_1000.mp4", f"{TINY}_1000.mp4"]
    assert record_path(good.path).is_file() and record_path(rows[TINY].path).is_file()
    assert list((tmp_path / "cache" / ".partial").iterdir()) == []


def test_truncated_transfer_is_retried_and_never_cached(server, tmp_path):
    once = download_shard(segments(FASTSTART), tmp_path, config_for(server))
    per_attempt = requests_for(server, FASTSTART)
    before = len(server.requests)
    again = download_shard(segments(FASTSTART), tmp_path, config_for(server, retries=2))
    assert once["reason"].tolist() == again["reason"].tolist() == ["truncated"]
    assert per_attempt >= 1 and requests_for(server, FASTSTART, since=before) == 3 * per_attempt
    assert not clip_path(tmp_path, FASTSTART, 1.0).exists()
    assert not record_path(clip_path(tmp_path, FASTSTART, 1.0)).exists()


def test_reencoded_cut_starts_at_the_section(server, tmp_path):
    manifest = download_shard(segments(GOOD, start=1.5, end=7.5), tmp_path, config_for(server, reencode=True))
    row = manifest.iloc[0]
    assert row.status == "ok" and row.path.endswith(f"{GOOD}_1500.mp4")
    assert row.seconds == pytest.approx(6.0, abs=0.15)


def test_a_cached_clip_is_never_deleted(server, tmp_path):
    """Validity is the clip's own (it covers its segment); a later request cannot remove it."""
    cache = tmp_path / "cache"
    first = download_shard(segments(GOOD, start=1.0, end=7.0), cache, config_for(server))
    clip = Path(first["path"].iloc[0])
    assert first["status"].tolist() == ["ok"] and first["seconds"].iloc[0] == pytest.approx(6.0, abs=0.1)
    digest = file_sha256(clip)
    before = len(server.requests)
    assert download_shard(segments(GOOD, start=1.0, end=7.0), cache, config_for(server)).equals(first)
    assert len(server.requests) == before  # reused: no request
    # Asked for more than it holds, the clip is fetched again; the video is gone now: 404.
    server.behaviours[f"{GOOD}.mp4"] = ("status", 404)
    longer = download_shard(segments(GOOD, start=1.0, end=11.0), cache, config_for(server))
    assert longer["reason"].tolist() == ["unavailable"]
    assert clip.is_file() and file_sha256(clip) == digest and record_path(clip).is_file()
    assert download_shard(segments(GOOD, start=1.0, end=7.0), cache, config_for(server)).equals(first)


def test_stalls_and_silent_servers_time_out(server, tmp_path):
    config = config_for(server, timeout_s=2, concurrency=3)
    manifest = download_shard(segments(STALLED, MUTE, TRICKLE), tmp_path, config)
    assert manifest["reason"].tolist() == ["timeout", "timeout", "timeout"]
    assert "ffmpeg (pid" in manifest["message"].iloc[2] and "killed" in manifest["message"].iloc[2]


def _processes_naming(text: str, parent: int | None = None) -> list[int]:
    """Pids whose command line contains ``text`` (and whose parent is ``parent``, when given)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                named = text.encode() in (entry / "cmdline").read_bytes()
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            if named and (parent is None or ppid == parent):
                found.append(int(entry.name))
    return found


def _alive(pids: list[int]) -> list[int]:
    return [pid for pid in pids if Path(f"/proc/{pid}").exists()]


def test_timeout_bounds_the_whole_fetch(server, tmp_path):
    """A page that drips 1 KB/s for 60 s, a body that trickles: both released at the deadline."""
    config = config_for(server, timeout_s=3, concurrency=2)
    began = time.monotonic()
    manifest = download_shard(segments(DRIP, TRICKLE), tmp_path / "cache", config)
    elapsed = time.monotonic() - began
    assert manifest["reason"].tolist() == ["timeout", "timeout"]
    drip, trickle = manifest["message"].tolist()
    assert "yt-dlp was still extracting" in drip and "no ffmpeg had started" in drip, drip
    assert "ffmpeg (pid" in trickle and "yt-dlp and ffmpeg were killed" in trickle, trickle
    # Starting the two worker processes costs about a second; the servers would go on for 60 s.
    assert elapsed < 3 + 8, elapsed
    assert _processes_naming(str(tmp_path / "cache")) == []  # no ffmpeg or worker left behind


def test_a_killed_worker_fails_only_its_clip(server, tmp_path):
    killed = []

    def kill_the_worker_once_ffmpeg_runs() -> None:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not killed:
            for pid in _processes_naming("ytdlp_worker.py", parent=os.getpid()):  # ours only
                if _processes_naming(f"{TRICKLE}_1000", parent=pid):
                    os.kill(pid, signal.SIGKILL)
                    killed.append(pid)
            time.sleep(0.05)

    killer = threading.Thread(target=kill_the_worker_once_ffmpeg_runs)
    killer.start()
    manifest = download_shard(segments(TRICKLE, GOOD), tmp_path, config_for(server, concurrency=1))
    killer.join()
    assert killed
    assert manifest["status"].tolist() == ["failed", "ok"]
    assert manifest["reason"].iloc[0] == "other" and "worker ended" in manifest["message"].iloc[0]


def test_a_killed_job_leaves_no_worker_or_ffmpeg_behind(server, tmp_path):
    """Snakemake or SLURM kill the job's process: its workers follow within a second or two."""
    script = (
        "import sys, pandas as pd\n"
        "from soundsup.download import DownloadConfig, download_shard\n"
        f"config = DownloadConfig(url_template={server.url('{ytid}.mp4')!r}, timeout_s=60, retries=0)\n"
        f"segments = pd.DataFrame({{'ytid': [{TRICKLE!r}, {DRIP!r}], 'start': 1.0, 'end': 11.0}})\n"
        f"download_shard(segments, {str(tmp_path / 'cache')!r}, config)\n"
    )
    job = subprocess.Popen([sys.executable, "-c", script], env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        deadline = time.monotonic() + 30
        workers, ffmpeg = [], []
        while time.monotonic() < deadline and not (len(workers) == 2 and ffmpeg):
            time.sleep(0.1)
            workers = _processes_naming("ytdlp_worker.py", parent=job.pid)
            ffmpeg = [
                pid for worker in workers for pid in _processes_naming(f"{TRICKLE}_1000", parent=worker)
            ]
        assert len(workers) == 2 and ffmpeg  # both fetching, one of them in ffmpeg
    finally:
        job.kill()
        job.wait()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and _alive(workers + ffmpeg):
        time.sleep(0.1)
    assert _alive(workers + ffmpeg) == []


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
    # A killed run: one clip lost, one truncated, a partial left behind -> only those are fetched.
    (cache / f"{GOOD}_1000.mp4").unlink()
    damaged = cache / f"{GOOD2}_1000.mp4"
    damaged.write_bytes(damaged.read_bytes()[:5000])
    (cache / ".partial" / f"{GOOD}_1000.mp4.part").write_bytes(b"half")
    third = download_shard(segments(GOOD, GOOD2), cache, config)
    assert third["status"].tolist() == ["ok", "ok"] and third.equals(first)
    fetched = {request[1] for request in server.requests[n_requests:]}
    assert fetched == {f"/{GOOD}.mp4", f"/{GOOD2}.mp4"}
    assert list((cache / ".partial").iterdir()) == []


def flip_a_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def test_a_rewritten_clip_is_fetched_again_and_a_clip_without_record_is_kept(server, tmp_path):
    cache = tmp_path / "cache"
    first = download_shard(segments(GOOD, GOOD2), cache, config_for(server))
    flip_a_byte(Path(first["path"].iloc[1]))  # same size, other bytes
    record_path(first["path"].iloc[0]).unlink()  # a clip of an older cache, or a kill before its record
    before = len(server.requests)
    again = download_shard(segments(GOOD, GOOD2), cache, config_for(server))
    assert again.equals(first)
    assert requests_for(server, GOOD, since=before) == 0  # probed, valid, kept
    assert requests_for(server, GOOD2, since=before) > 0  # checksum differs: fetched again
    assert record_path(first["path"].iloc[0]).is_file()


def test_a_clip_damaged_after_the_manifest_is_caught_before_the_pairs(server, tmp_path):
    """extract_pairs' check: a damaged clip removes the manifest, the next download heals it."""
    cache, manifest_path = tmp_path / "cache", tmp_path / "results" / "shard-0.parquet"
    manifest = download_shard(segments(GOOD, GOOD2), cache, config_for(server))
    write_parquet(manifest_path, manifest)
    verify_manifest_clips(manifest, manifest_path)
    assert manifest_path.is_file()
    damaged = Path(manifest["path"].iloc[1])
    flip_a_byte(damaged)
    with pytest.raises(DamagedClipsError, match=rf"{damaged.name} \(SHA-256 differs") as caught:
        verify_manifest_clips(manifest, manifest_path)
    assert "run the workflow again" in str(caught.value)
    assert not manifest_path.exists()  # so the next run downloads the shard again
    healed = download_shard(segments(GOOD, GOOD2), cache, config_for(server))
    assert healed.equals(manifest)
    verify_manifest_clips(healed, manifest_path)
    index, frames, _, failures = extract_shard(healed, PairConfig(frame_size=16))
    assert failures.empty and len(index) == len(frames) == 4


def test_every_exception_of_one_clip_becomes_its_failure(server, tmp_path, media):
    assert not ytdlp_options(config_for(server)).get("enable_file_urls")
    ids = (REDIRECT_FILE, REDIRECT_FFMPEG, GOOD)
    manifest = download_shard(segments(*ids), tmp_path / "cache", config_for(server))
    rows = by_id(manifest)
    assert rows[GOOD].status == "ok"
    assert rows[REDIRECT_FILE].status == "failed" and "file:///etc/passwd" in rows[REDIRECT_FILE].message
    # ffmpeg is redirected to a good local clip: had it followed, the clip would be 'ok'.
    assert rows[REDIRECT_FFMPEG].status == "failed", rows[REDIRECT_FFMPEG].message
    assert not clip_path(tmp_path / "cache", REDIRECT_FFMPEG, 1.0).exists()
    # A template the config would refuse, slipped past it: each clip fails, the shard goes on.
    for template, error in (
        (server.url("{ytid}/{quality}.mp4"), "KeyError"),
        (server.url("{0}"), "IndexError"),
    ):
        config = config_for(server)
        object.__setattr__(config, "url_template", template)
        broken = download_shard(segments(GOOD, GOOD2), tmp_path / "other", config)
        assert broken["reason"].tolist() == ["other", "other"]
        assert all(message.startswith(error) for message in broken["message"])


@pytest.mark.parametrize(
    "template",
    [
        "https://www.youtube.com/watch?v={id}",
        "https://h.example/{ytid}/{quality}",
        "https://h.example/{0}",
        "https://h.example/{ytid!r}",
        "https://h.example/{ytid:>20}",
        "https://h.example/{ytid",
        "https://h.example/",
        "file:///srv/videos/{ytid}.mp4",
        "ftp://h.example/{ytid}.mp4",
        "//h.example/{ytid}",
        "http:///{ytid}",
    ],
)
def test_url_template_is_refused_by_the_config(template):
    with pytest.raises(ValueError, match="download.url_template"):
        DownloadConfig(url_template=template)


def test_url_template_accepts_http_urls_with_ytid():
    for template in ("http://127.0.0.1:8000/{ytid}.mp4", "https://h.example/watch?v={ytid}&t={{literal}}"):
        assert DownloadConfig(url_template=template).url_template == template


def test_invalid_segments_never_reach_a_request(server, tmp_path):
    frame = pd.DataFrame(
        {
            "ytid": ["../../etc/pw", GOOD, GOOD],
            "start": [0.0, float("nan"), 2e6],
            "end": [10.0, 10.0, 2e6 + 10],
            "labels": ["/m/x", "/m/x", "/m/x"],
        }
    )
    manifest = download_shard(frame, tmp_path, config_for(server))
    assert manifest["reason"].tolist() == ["other", "other", "other"]
    assert server.requests == []


def test_hls_failures_get_their_real_reason(tmp_path):
    root = tmp_path / "hls"
    root.mkdir()
    for name in ("hlsmissing0", "hlsgone0000", "hlsgood0000"):
        subprocess.run(
            [ffmpeg_binary(), "-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i",
             "testsrc=size=64x48:rate=10:duration=12", "-f", "lavfi", "-i",
             "sine=frequency=440:sample_rate=22050:duration=12", "-c:v", "libx264", "-preset", "ultrafast",
             "-g", "10", "-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest", "-f", "hls", "-hls_time", "2",
             "-hls_playlist_type", "vod", "-hls_segment_filename", str(root / f"{name}_%d.ts"),
             str(root / f"{name}.m3u8")],
            check=True, capture_output=True,
        )  # fmt: skip
    behaviours = {f"hlsmissing0_{index}.ts": ("status", 404) for index in (1, 2)}
    behaviours |= {f"hlsgone0000_{index}.ts": ("status", 503) for index in range(6)}
    with MediaServer(root, behaviours) as hls:
        config = DownloadConfig(url_template=hls.url("{ytid}.m3u8"), timeout_s=20, retries=0, reencode=False)
        manifest = download_shard(
            segments("hlsmissing0", "hlsgone0000", "hlsgood0000"), tmp_path / "c", config
        )
    assert manifest["status"].tolist() == ["failed", "failed", "ok"]
    missing, gone = manifest["message"].iloc[0], manifest["message"].iloc[1]
    assert manifest["reason"].tolist()[:2] == ["http_error", "http_error"], manifest["message"].tolist()
    assert "404" in missing and "of the 10.000 s requested" in missing
    assert "503" in gone


def test_local_source_uses_the_same_probe_cache_and_manifest(media, tmp_path):
    config = DownloadConfig(
        source="local", local_dir=str(media), timeout_s=20, retries=0, concurrency=2, reencode=False
    )
    ids = (GOOD, "notthere_00", NO_AUDIO, CORRUPT, SHORT)
    manifest = download_shard(segments(*ids), tmp_path / "cache", config)
    assert tuple(manifest.columns) == MANIFEST_COLUMNS
    assert manifest["reason"].tolist() == ["", "unavailable", "no_audio", "corrupt", "too_short"]
    assert "the video is 3.00 s long" in manifest["message"].iloc[4]
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


def run_download_adapter(
    server, selection: Path, manifest: Path, cache: Path, log: Path, **download: object
) -> None:
    """The rule's adapter, as Snakemake runs it, for shard 0 of ``selection``."""
    config = workflow_config(
        download={
            "source": "youtube",
            "url_template": server.url("{ytid}.mp4"),
            "reencode": False,
            "timeout_s": 20,
            "retries": 0,
            "backoff_s": 0.05,
            "concurrency": 2,
            **download,
        }
    )
    job = Job(
        input=Job(selection=str(selection), videos=[]),
        output=Job(manifest=str(manifest)),
        params=Job(download=rule_params_of(config, "download"), cache_dir=str(cache)),
        config=config,
        wildcards=Job(shard="0"),
        log=[str(log)],
        rule="download_clips",
        threads=1,
    )
    run_adapter("download_clips", job)


def assert_cache_holds_only_complete_clips(cache: Path) -> int:
    clips = sorted(cache.glob("*.mp4"))
    for clip in clips:
        info = probe_clip(clip)
        assert info["seconds"] == pytest.approx(10.0, abs=0.15) and not info["error"], clip
    assert not [path for path in (cache / ".partial").iterdir()]
    assert not [path.name for path in cache.iterdir() if path.name.endswith(".tmp")]
    return len(clips)


@pytest.mark.skipif(sys.platform != "linux", reason="mounts a tmpfs (Linux)")
def test_a_full_disk_fails_the_job_and_a_rerun_after_freeing_space_obtains_every_clip(server, tmp_path):
    selection = tmp_path / "selection.parquet"
    write_parquet(selection, segments(*FULL_DISK).assign(shard=0))
    manifest, log = tmp_path / "results" / "shard-0.parquet", tmp_path / "logs" / "shard-0.log"
    with small_disk(tmp_path / "disk", size="2m") as disk:
        cache = disk / "clips"
        filler = fill(disk, leave=100_000)  # less than one clip (about 145 KB)
        with pytest.raises(OutputWriteError) as caught:
            run_download_adapter(server, selection, manifest, cache, log)
        message = str(caught.value)
        assert "No space left on device" in message and "[ENOSPC]" in message and str(cache) in message
        assert "No space left on device" in log.read_text()
        assert not manifest.exists()  # nothing that looks finished
        assert assert_cache_holds_only_complete_clips(cache) < len(FULL_DISK)
        filler.unlink()
        run_download_adapter(server, selection, manifest, cache, log)
        rows = pd.read_parquet(manifest)
        assert rows["status"].tolist() == ["ok"] * len(FULL_DISK)
        assert assert_cache_holds_only_complete_clips(cache) == len(FULL_DISK)
        assert all(file_sha256(row.path) == row.sha256 for row in rows.itertuples())


@pytest.mark.skipif(sys.platform != "linux", reason="mounts a tmpfs (Linux)")
def test_a_manifest_that_cannot_be_written_fails_the_job_and_the_rerun_reuses_the_clips(server, tmp_path):
    selection = tmp_path / "selection.parquet"
    write_parquet(selection, segments(*FULL_DISK[:2]).assign(shard=0))
    cache, log = tmp_path / "clips", tmp_path / "shard-0.log"
    with small_disk(tmp_path / "results", size="64k") as results:
        manifest = results / "shard-0.parquet"
        filler = fill(results, leave=0)
        with pytest.raises(
            OutputWriteError, match=r"cannot write .*shard-0\.parquet: No space left on device"
        ):
            run_download_adapter(server, selection, manifest, cache, log)
        assert sorted(path.name for path in results.iterdir()) == ["filler"]  # no temporary file left
        filler.unlink()
        before = len(server.requests)
        run_download_adapter(server, selection, manifest, cache, log)
        assert pd.read_parquet(manifest)["status"].tolist() == ["ok", "ok"]
        assert len(server.requests) == before  # the clips came from the cache


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


def test_a_shard_past_the_bound_fails_or_is_skipped_and_named(server, tmp_path):
    from soundsup.tables import skipped_shards

    selection = tmp_path / "selection.parquet"
    write_parquet(selection, segments(GOOD, MISSING, NO_AUDIO).assign(shard=0))
    manifest, cache, log = tmp_path / "shard-0.parquet", tmp_path / "clips", tmp_path / "shard-0.log"
    with pytest.raises(DownloadFailureError, match=r"shard 0: 2 of 3 clips failed"):
        run_download_adapter(server, selection, manifest, cache, log, max_failure_fraction=0.5)
    assert not manifest.exists()  # a failed shard leaves nothing that looks finished
    run_download_adapter(
        server, selection, manifest, cache, log, max_failure_fraction=0.5, on_shard_failure="skip"
    )
    rows = pd.read_parquet(manifest)
    assert rows["shard_skipped"].all() and rows["status"].tolist() == ["ok", "failed", "failed"]
    assert "the run goes on without this shard" in log.read_text()
    # extract_pairs gives a skipped shard no pairs, the dataset report and the tables name it
    pairs = tmp_path / "pairs"
    job = Job(
        input=Job(manifest=str(manifest)),
        output=Job(**{name: str(pairs / f"{name}.{ext}") for name, ext in
                      (("index", "parquet"), ("frames", "npy"), ("audio", "npy"), ("failures", "parquet"))}),
        params=Job(pairs=workflow_config()["pairs"]),
        config=workflow_config(),
        wildcards=Job(shard="0"),
        log=[str(tmp_path / "pairs.log")],
        rule="extract_pairs",
        threads=1,
    )  # fmt: skip
    run_adapter("extract_pairs", job)
    assert len(pd.read_parquet(pairs / "index.parquet")) == 0 and np.load(pairs / "frames.npy").shape[0] == 0
    summary = dataset_summary(pd.read_parquet(selection), [rows], [pd.read_parquet(pairs / "index.parquet")])
    assert summary["skipped"].tolist() == [1, 1] and summary["pairs"].tolist() == [0, 0]
    assert skipped_shards(summary) == "1 of 1 (shard 0)"


def test_dataset_summary_counts_by_shard():
    selection = segments("a" * 11, "b" * 11, "c" * 11).assign(shard=[0, 0, 1])
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
    assert summary["skipped"].tolist() == [0, 0, 0]  # manifests from before the verdict column
    assert [column for column in summary.columns if column.startswith("failed_")] == [
        f"failed_{r}" for r in REASONS
    ]


def test_yt_dlp_finds_its_javascript_runtime(tmp_path):
    # YouTube extraction needs a JavaScript runtime (formats go missing without one): the
    # project installs deno and yt-dlp's challenge solver scripts, and yt-dlp must find both.
    import importlib.metadata

    import yt_dlp

    runtime = yt_dlp.YoutubeDL({"quiet": True})._js_runtimes["deno"]
    assert runtime is not None and runtime.info is not None and runtime.info.supported, runtime
    assert runtime.info.version == importlib.metadata.version("deno")
    answer = subprocess.run(
        [runtime.info.path, "eval", "console.log(6 * 7)"], capture_output=True, text=True, timeout=120,
        cwd=tmp_path, env={**os.environ, "DENO_DIR": str(tmp_path / "deno")},
    )  # fmt: skip
    assert answer.stdout.strip() == "42", answer.stderr
    assert importlib.metadata.version("yt-dlp-ejs") == "0.8.0"


def test_the_report_dataset_adapter_counts_every_shard_from_its_files(tmp_path):
    selection = segments("a" * 11, "b" * 11, "c" * 11).assign(shard=[0, 0, 1])
    write_parquet(tmp_path / "selection.parquet", selection)
    shards = {
        0: (
            {"ytid": ["a" * 11, "b" * 11], "status": ["ok", "failed"], "reason": ["", "no_audio"]},
            ["a" * 11] * 2,
            [],
        ),
        1: ({"ytid": ["c" * 11], "status": ["ok"], "reason": [""]}, [], ["c" * 11]),
    }
    inputs = {"manifests": [], "indices": [], "failures": []}
    for shard, (manifest, pairs, no_pairs) in shards.items():
        for name, frame in (
            ("manifests", pd.DataFrame(manifest)),
            ("indices", pd.DataFrame({"ytid": pd.Series(pairs, dtype=str)})),
            ("failures", pd.DataFrame({"ytid": pd.Series(no_pairs, dtype=str)})),
        ):
            write_parquet(tmp_path / f"{name}-{shard}.parquet", frame)
            inputs[name].append(str(tmp_path / f"{name}-{shard}.parquet"))
    job = Job(
        input=Job(selection=str(tmp_path / "selection.parquet"), **inputs),
        output=[str(tmp_path / "dataset.csv")],
        params=Job(),
        wildcards=Job(),
        log=[str(tmp_path / "report.log")],
        rule="report_dataset",
        threads=1,
    )
    run_adapter("report_dataset", job)
    report = pd.read_csv(tmp_path / "dataset.csv", dtype={"shard": str})
    assert report["shard"].tolist() == ["0", "1", "total"]
    assert report["requested"].tolist() == [2, 1, 3] and report["downloaded"].tolist() == [1, 1, 2]
    assert report["failed_no_audio"].tolist() == [1, 0, 1] and report["pairs"].tolist() == [2, 0, 2]
    assert report["no_pairs"].tolist() == [0, 1, 1] and report["skipped"].tolist() == [0, 0, 0]
