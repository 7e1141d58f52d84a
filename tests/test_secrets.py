"""Secrets never touch the disk: the download rule through the real snakemake with a proxy
password and a cookies file, and then every byte under the working directory and everything
the console showed is searched for them.

The proxy is real (a loopback forward proxy that asks for Basic credentials), so the test also
proves that both yt-dlp and its ffmpeg fetch through it; the cookies file is real and must come
out of the run unchanged (yt-dlp writes its jar back unless told not to).
"""

from __future__ import annotations

import base64
import os
import signal
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml
from httpserver import MediaServer, ProxyServer
from test_download import make_clip
from workflow_helpers import REPO, SNAKEMAKE

PASSWORD = "pr0xy-S3cret-4f9d"
COOKIE = "c00kie-S3cret-77aa"
IDS = ["secretAAA01", "secretBBB02", "secretCCC03"]
WATER = "/m/0838f"


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    folder = tmp_path_factory.mktemp("media")
    for ytid in IDS:
        make_clip(folder / f"{ytid}.mp4", seconds=12.0)
    return folder


def write_world(folder: Path, server: MediaServer, ytids: list[str]) -> tuple[Path, Path]:
    """An AudioSet-format CSV of ``ytids``, a cookies file and a config that downloads them."""
    csv = folder / "segments.csv"
    header = [
        "# Segments csv created Sun Mar  5 10:54:31 2017",
        f"# num_ytids={len(ytids)}, num_segs={len(ytids)}, num_unique_labels=1, num_positive_labels=1",
        "# YTID, start_seconds, end_seconds, positive_labels",
    ]
    rows = [f'{ytid}, 1.000, 11.000, "{WATER}"' for ytid in ytids]
    csv.write_text("\n".join(header + rows) + "\n")
    cookies = folder / "cookies.txt"
    cookies.write_text(f"# Netscape HTTP Cookie File\n127.0.0.1\tFALSE\t/\tFALSE\t0\tsession\t{COOKIE}\n")
    config = {
        "shards": 1,
        "world": "audioset",
        "audioset": {
            "segments_csv": str(csv),
            "ontology_json": str(REPO / "tests/data/audioset/ontology.json"),
        },
        "select": {"n_segments": 0},
        "download": {
            "url_template": server.url("{ytid}.mp4"),
            "reencode": False,
            "retries": 0,
            "timeout_s": 30,
            "concurrency": 2,
            "max_failure_fraction": 1.0,
            "proxy_env": "SOUNDSUP_TEST_PROXY",
            "cookies": str(cookies),
        },
        "voc": {"download": False, "baselines": ["random"]},
    }
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path, cookies


def download(workdir: Path, configfile: Path, proxy_url: str, wait: bool = True):
    command = [
        SNAKEMAKE, "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir),
        "--configfile", str(configfile), "--cores", "2", "results/clips/shard-0.parquet",
    ]  # fmt: skip
    env = {**os.environ, "SOUNDSUP_TEST_PROXY": proxy_url}
    if not wait:
        return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, start_new_session=True)  # fmt: skip
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)


def assert_nowhere(secrets: list[str], folder: Path, console: str) -> None:
    """No secret in ``console`` nor in any file under ``folder`` (the .snakemake folder included)."""
    for secret in secrets:
        assert secret not in console, f"{secret!r} on the console"
    for path in folder.rglob("*"):
        if path.is_file() and not path.is_symlink():
            data = path.read_bytes()
            for secret in secrets:
                assert secret.encode() not in data, f"{secret!r} in {path.relative_to(folder)}"


def secrets_of(proxy_url: str) -> list[str]:
    user_password = proxy_url.split("//", 1)[1].split("@", 1)[0]
    return [user_password.split(":", 1)[1], base64.b64encode(user_password.encode()).decode(), COOKIE]


def test_a_proxy_password_and_cookies_reach_no_file_and_no_console(media, tmp_path):
    with MediaServer(media) as server, ProxyServer("soundsup", PASSWORD) as proxy:
        configfile, cookies = write_world(tmp_path, server, IDS)
        cookie_bytes, cookie_mtime = cookies.read_bytes(), cookies.stat().st_mtime_ns
        workdir = tmp_path / "run"
        result = download(workdir, configfile, proxy.url())
        console = result.stdout + result.stderr
        assert result.returncode == 0, console[-4000:]
        manifest = pd.read_parquet(workdir / "results" / "clips" / "shard-0.parquet")
        assert manifest["status"].tolist() == ["ok"] * len(IDS)
        accepted = [agent for _, _, ok, agent in proxy.requests if ok]
        # Both the extraction (yt-dlp) and the media transfer (its ffmpeg) went through the proxy.
        assert "ffmpeg" in accepted and any(agent != "ffmpeg" for agent in accepted), proxy.requests
    assert cookies.read_bytes() == cookie_bytes and cookies.stat().st_mtime_ns == cookie_mtime
    assert_nowhere(secrets_of(proxy.url()), workdir, console)


def test_a_refused_proxy_password_is_not_quoted_in_the_failures(media, tmp_path):
    wrong = "wr0ng-S3cret-0c1e"
    with MediaServer(media) as server, ProxyServer("soundsup", PASSWORD) as proxy:
        configfile, _ = write_world(tmp_path, server, IDS[:2])
        workdir = tmp_path / "run"
        result = download(workdir, configfile, proxy.url(password=wrong))
        console = result.stdout + result.stderr
        assert result.returncode == 0, console[-4000:]  # max_failure_fraction 1: failures recorded
        manifest = pd.read_parquet(workdir / "results" / "clips" / "shard-0.parquet")
        assert set(manifest["status"]) == {"failed"}
        assert manifest["message"].str.contains("407").all(), manifest["message"].tolist()
        assert proxy.requests and not any(ok for *_, ok, _ in proxy.requests)
    assert_nowhere(secrets_of(proxy.url(password=wrong)), workdir, console)


def test_a_job_killed_mid_download_leaves_no_secret_behind(media, tmp_path):
    with (
        MediaServer(media, {f"{IDS[0]}.mp4": ("stall", 60)}) as server,
        ProxyServer("soundsup", PASSWORD) as proxy,
    ):
        configfile, _ = write_world(tmp_path, server, IDS[:1])
        workdir = tmp_path / "run"
        running = download(workdir, configfile, proxy.url(), wait=False)
        deadline = time.monotonic() + 120
        while not any(ok for *_, ok, _ in proxy.requests) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert proxy.requests, "the job never reached the proxy"
        time.sleep(1.0)
        os.killpg(running.pid, signal.SIGKILL)
        console = running.communicate(timeout=60)[0]
    assert (workdir / ".snakemake").is_dir()
    assert_nowhere(secrets_of(proxy.url()), workdir, console)
