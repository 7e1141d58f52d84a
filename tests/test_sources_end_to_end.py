"""World folder and world vggsound through the real ``snakemake``, from the README's example
configs (only the paths and the sizes changed), up to the sound clusters and the dataset report.

folder: a temporary folder of videos in three containers and nested sub-folders, one corrupt,
one without sound; then what a change of the folder reruns. vggsound: a CSV in the published
format whose ids a loopback HTTP server serves, downloaded through the real yt-dlp.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml
from httpserver import MediaServer
from video_helpers import make_video
from workflow_helpers import REPO, planned_jobs, snakemake

from soundsup.folder import folder_id

pytestmark = pytest.mark.slow

TARGETS = ("results/clusters/texture/k2/summary.json", "results/dataset.csv")
SMALL = {
    "shards": 2,
    "pairs": {"frame_size": 32},
    "features": {"names": ["texture"]},
    "clusters": {"k": [2], "n_init": 1},
}


def example_config(name: str, destination: Path, **changes) -> Path:
    """The README's example config ``configs/{name}.yaml`` with the test's paths and sizes."""
    config = yaml.safe_load((REPO / "configs" / f"{name}.yaml").read_text())
    for key, value in {**SMALL, **changes}.items():
        if isinstance(value, dict) and isinstance(config.get(key), dict):
            config[key] = {**config[key], **value}
        else:
            config[key] = value
    destination.write_text(yaml.safe_dump(config, sort_keys=False))
    return destination


def manifests(workdir: Path) -> pd.DataFrame:
    return pd.concat(
        [pd.read_parquet(path) for path in sorted(workdir.glob("results/clips/shard-*.parquet"))]
    )


def pair_index(workdir: Path) -> pd.DataFrame:
    paths = sorted(workdir.glob("results/pairs/shard-*/index.parquet"))
    return pd.concat([pd.read_parquet(path) for path in paths], ignore_index=True)


# ----------------------------------------------------------------------------------------------
# A folder of one's own videos

GOOD_VIDEOS = {
    "birds/dawn chorus.mp4": 24,  # three segments: 0-10, 10-20, 20-24
    "birds/nest.mkv": 12,
    "city streets/traffic été.webm": 12,
    "city streets/night/bus.mp4": 11,
    "water/rain.mkv": 12,
    "water/waves.mp4": 12,
    "top level.mp4": 10,
}
SOUNDS = {"birds": "sine=frequency=2400", "city streets": "anoisesrc=color=brown:amplitude=0.4",
          "water": "anoisesrc=color=pink:amplitude=0.3"}  # fmt: skip


def make_library(root: Path) -> Path:
    for path, seconds in GOOD_VIDEOS.items():
        make_video(root / path, seconds=seconds, audio=SOUNDS.get(path.split("/")[0], "sine=frequency=440"))
    make_video(root / "water" / "silent film.mp4", seconds=12, audio=None)
    (root / "water" / "broken.mp4").write_bytes(bytes(range(256)) * 40)
    (root / "notes.txt").write_text("not a video\n")
    make_video(root / ".hidden.mp4", seconds=10)
    return root


def folder_config(path: Path, videos: Path) -> Path:
    download = {"concurrency": 2, "timeout_s": 60, "max_failure_fraction": 0.5}
    return example_config("example-folder", path, folder={"path": str(videos)}, download=download)


@pytest.fixture(scope="module")
def folder_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("folder-world")
    videos = make_library(root / "my videos")
    workdir = root / "run"
    workdir.mkdir()
    config = folder_config(root / "config.yaml", videos)
    snakemake(workdir, config, "--cores", "2", *TARGETS, timeout=900)
    return workdir, videos, config


def test_folder_selection_keeps_every_video_its_path_and_its_labels(folder_run):
    workdir, videos, _ = folder_run
    selection = pd.read_parquet(workdir / "results" / "segments" / "selection.parquet")
    expected = {*GOOD_VIDEOS, "water/silent film.mp4", "water/broken.mp4"}
    assert set(selection["source_path"]) == expected
    assert (selection["ytid"] == selection["source_path"].map(folder_id)).all()
    chorus = selection[selection["source_path"] == "birds/dawn chorus.mp4"]
    assert chorus[["start", "end"]].values.tolist() == [[0.0, 10.0], [10.0, 20.0], [20.0, 24.0]]
    labels = dict(zip(selection["source_path"], selection["labels"], strict=True))
    assert labels["city streets/night/bus.mp4"] == "city streets" and labels["top level.mp4"] == ""
    assert labels["birds/nest.mkv"] == "birds"


def test_folder_failures_are_rows_of_the_manifests_and_the_report(folder_run):
    workdir, _, _ = folder_run
    clips = manifests(workdir)
    failed = clips[clips["status"] != "ok"].set_index("source_path")["reason"].to_dict()
    assert failed == {"water/silent film.mp4": "no_audio", "water/broken.mp4": "corrupt"}
    assert (clips["status"] == "ok").sum() == 9
    total = pd.read_csv(workdir / "results" / "dataset.csv").iloc[-1]
    assert (total["requested"], total["downloaded"]) == (11, 9)
    assert (total["failed_no_audio"], total["failed_corrupt"]) == (1, 1)


def test_folder_pairs_and_clusters_name_their_videos(folder_run):
    workdir, videos, _ = folder_run
    index = pair_index(workdir)
    assert set(index["source_path"]) == set(GOOD_VIDEOS)
    assert all((videos / path).is_file() for path in index["source_path"])
    assert len(index) == 2 * 8 + 1  # two windows per 10-s segment, one in the 4-s remainder
    summary = pd.read_json(workdir / TARGETS[0], typ="series")
    assert summary["n_pairs"] == len(index) and summary["n_used"] > 0


def test_the_folder_workflow_lints_clean(folder_run):
    workdir, _, config = folder_run
    result = snakemake(workdir, config, "--lint", check=False)
    assert "Congratulations, your workflow is in a good condition!" in result.stdout + result.stderr


def test_what_a_change_of_the_folder_reruns(folder_run, tmp_path):
    finished, videos, _ = folder_run
    workdir, moved = tmp_path / "run", tmp_path / "moved videos"
    shutil.copytree(finished, workdir, symlinks=True)
    shutil.copytree(videos, moved)  # the same files (times kept) somewhere else
    config = folder_config(tmp_path / "config.yaml", moved)
    assert planned_jobs(workdir, config, *TARGETS) == {}  # folder.path changes no result

    os.utime(moved, ns=(10**18, 10**18))
    os.utime(moved / "birds", ns=(10**18, 10**18))
    assert planned_jobs(workdir, config, *TARGETS) == {}  # touching the folder reruns nothing

    waves = moved / "water" / "waves.mp4"
    stamp = waves.stat()
    os.utime(waves, ns=(stamp.st_atime_ns, stamp.st_mtime_ns + 10**9))  # a touched video: its shard
    touched = planned_jobs(workdir, config, *TARGETS)
    assert touched["scan_folder"] == 1 and touched["download_clips"] == 1 and touched["extract_pairs"] == 1
    os.utime(waves, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))
    assert planned_jobs(workdir, config, *TARGETS) == {}

    make_video(moved / "birds" / "owl.mkv", seconds=12, audio=SOUNDS["birds"])
    added = planned_jobs(workdir, config, *TARGETS)
    per_shard = ("scan_folder", "download_clips", "extract_pairs", "compute_texture")
    assert [added[rule] for rule in per_shard] == [1, 1, 1, 1]  # a new video: its shard only
    assert added["select_segments"] == 1 and added["cluster_kmeans"] == 1
    before = {
        path.name: path.stat().st_mtime_ns for path in (workdir / "results" / "clips").glob("*.parquet")
    }
    snakemake(workdir, config, "--cores", "2", *TARGETS, timeout=600)
    selection = pd.read_parquet(workdir / "results" / "segments" / "selection.parquet")
    owl_shard = int(selection.loc[selection["source_path"] == "birds/owl.mkv", "shard"].iloc[0])
    after = {path.name: path.stat().st_mtime_ns for path in (workdir / "results" / "clips").glob("*.parquet")}
    other = f"shard-{1 - owl_shard}.parquet"
    assert after[other] == before[other]  # the other shard's clips were not touched
    assert after[f"shard-{owl_shard}.parquet"] != before[f"shard-{owl_shard}.parquet"]
    assert "birds/owl.mkv" in set(pair_index(workdir)["source_path"])
    assert planned_jobs(workdir, config, *TARGETS) == {}

    (moved / "birds" / "elsewhere.mp4").symlink_to(finished / "results" / "dataset.csv")
    refused = snakemake(workdir, config, "-n", *TARGETS, check=False)
    assert refused.returncode != 0
    assert "birds/elsewhere.mp4 ->" in refused.stdout + refused.stderr
    assert "symbolic link" in refused.stdout + refused.stderr


# ----------------------------------------------------------------------------------------------
# VGGSound

VGGSOUND_ROWS = [
    "---g-f_I2yQ,1,people marching,test",
    "--0PQM4-hqg,2,waterfall burbling,train",
    '--9O4XZOge4,0,"female speech, woman speaking",train',  # excluded by the example config
    "--56QUhyDQM,3,playing tennis,train",
    '-0UuUoXQUoI,0,"bee, wasp, etc. buzzing",train',
    "zzbTaK7CXJY,1,wind noise,test",
    "zzgone00000,0,fire truck siren,train",  # not on the server: unavailable
    "zzbad,0,dog barking,train",  # not a YouTube id: a malformed line
]
SERVED = ["---g-f_I2yQ", "--0PQM4-hqg", "--9O4XZOge4", "--56QUhyDQM", "-0UuUoXQUoI", "zzbTaK7CXJY"]


@pytest.fixture(scope="module")
def vggsound_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("vggsound-world")
    media = root / "media"
    for index, ytid in enumerate(SERVED):
        make_video(media / f"{ytid}.mp4", seconds=14, audio=f"sine=frequency={300 + 150 * index}")
    csv_path = root / "vggsound.csv"
    csv_path.write_text("\n".join(VGGSOUND_ROWS) + "\n")
    workdir = root / "run"
    workdir.mkdir()
    with MediaServer(media) as server:
        download = {"url_template": server.url("{ytid}.mp4"), "concurrency": 2, "timeout_s": 60,
                    "retries": 0, "max_failure_fraction": 0.5}  # fmt: skip
        config = example_config(
            "example-vggsound", root / "config.yaml", vggsound={"csv": str(csv_path)}, download=download
        )
        snakemake(workdir, config, "--cores", "2", *TARGETS, timeout=900)
        requests = list(server.requests)
        yield workdir, config, requests


def test_vggsound_selection_reads_the_format_and_filters_by_label_text(vggsound_run):
    workdir, _, _ = vggsound_run
    selection = pd.read_parquet(workdir / "results" / "segments" / "selection.parquet")
    assert sorted(selection["ytid"]) == sorted({*SERVED, "zzgone00000"} - {"--9O4XZOge4"})
    rows = selection.set_index("ytid")
    assert rows.loc["-0UuUoXQUoI", "labels"] == "bee; wasp; etc. buzzing"
    assert (rows.loc["--56QUhyDQM", "start"], rows.loc["--56QUhyDQM", "end"]) == (3.0, 13.0)
    malformed = pd.read_csv(workdir / "results" / "segments" / "malformed_lines.csv")
    assert malformed["line"].tolist() == [8] and "'zzbad' is not 11 characters" in malformed["reason"].iloc[0]


def test_vggsound_clips_come_through_yt_dlp_and_failures_are_reported(vggsound_run):
    workdir, _, requests = vggsound_run
    clips = manifests(workdir).set_index("ytid")
    assert clips.loc["zzgone00000", "reason"] == "unavailable"
    assert (clips.drop(index="zzgone00000")["status"] == "ok").all()
    fetched = {path.strip("/").removesuffix(".mp4") for method, path, _ in requests if method == "GET"}
    assert fetched == set(SERVED) - {"--9O4XZOge4"} | {"zzgone00000"}
    total = pd.read_csv(workdir / "results" / "dataset.csv").iloc[-1]
    assert (total["requested"], total["downloaded"], total["failed_unavailable"]) == (6, 5, 1)
    index = pair_index(workdir)
    assert set(index["ytid"]) == set(SERVED) - {"--9O4XZOge4"} and (index["source_path"] == "").all()
    summary = pd.read_json(workdir / TARGETS[0], typ="series")
    assert summary["n_pairs"] == len(index) == 10


def test_vggsound_run_is_complete_and_lints_clean(vggsound_run):
    workdir, config, _ = vggsound_run
    assert planned_jobs(workdir, config, *TARGETS) == {}
    result = snakemake(workdir, config, "--lint", check=False)
    assert "Congratulations, your workflow is in a good condition!" in result.stdout + result.stderr
