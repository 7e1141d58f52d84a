"""A folder of one's own videos as a source: ids, scanning, probing, segments, labels, cutting.

Every video here is made at test time by the real ffmpeg (tests/video_helpers.py) in the
containers people keep: mp4, mov, mkv, webm, avi.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import unicodedata
from pathlib import Path

import pandas as pd
import pytest
from video_helpers import make_unseekable_webm, make_video

from soundsup.audioset import ID_PATTERN
from soundsup.clips import file_sha256, record_path
from soundsup.download import DownloadConfig, download_shard
from soundsup.ffmpeg import ffmpeg_binary
from soundsup.folder import (
    DEFAULT_EXTENSIONS,
    FolderConfig,
    FolderError,
    check_relative_path,
    file_segments,
    folder_id,
    folder_label,
    folder_snapshot,
    gather_selection,
    label_text,
    probe_video,
    read_labels_csv,
    scan_folder,
    select_shard,
)
from soundsup.pairs import PairConfig, extract_shard


def all_listed(folder: Path, labels: str | None = None) -> list[list]:
    """Every video of ``folder`` as the workflow lists it for one shard."""
    return folder_snapshot(folder, DEFAULT_EXTENSIONS, 1, labels).shards[0]


def segments_of(folder: Path, **config) -> pd.DataFrame:
    settings = FolderConfig(path=str(folder), **config)
    return select_shard(all_listed(folder, settings.labels), settings, min_duration_s=3.75, n_shards=1)


# ----------------------------------------------------------------------------------------------
# Ids


def test_ids_are_stable_across_versions():
    # The clip cache and the shards are keyed by these ids: they must never change.
    assert folder_id("birds/dawn chorus.mp4") == "f6v506j7cn5"
    assert folder_id("a.mp4") == "v4kxi650hab"


NASTY_PATHS = [
    "a.mp4", "A.mp4", "a b.mp4", " a.mp4", "a.mp4 ", "-rf.mp4", "--help.mp4", "$(rm -rf ~).mp4",
    "a;b|c&d.mp4", "quote'\"s.mp4", "new\nline.mp4", "tab\t.mp4", "back\\slash.mp4", "file:x.mp4",
    "concat:a.mp4|b.mp4", "日本語/動画.mkv", unicodedata.normalize("NFC", "été.mp4"),
    unicodedata.normalize("NFD", "été.mp4"), "..a/b..mp4", "...mp4", "a/b/c/d/e.webm", "a b/c d.mov",
]  # fmt: skip


def test_ids_are_safe_and_distinct_for_any_path():
    ids = [folder_id(path) for path in NASTY_PATHS]
    assert len(set(ids)) == len(NASTY_PATHS)
    for path, video_id in zip(NASTY_PATHS, ids, strict=True):
        assert ID_PATTERN.match(video_id) and video_id.isalnum() and video_id == video_id.lower(), path
    rng = random.Random(0)
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789 _-./éü日"
    paths = {
        "/".join(
            part
            for part in "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 30))).split("/")
            if part
        )
        for _ in range(30000)
    }
    paths = {path for path in paths if path and not any(part in (".", "..") for part in path.split("/"))}
    assert len({folder_id(path) for path in paths}) == len(paths)


@pytest.mark.parametrize(
    "path", ["", "/etc/passwd", "../x.mp4", "a/../b.mp4", "a/..", "a//b.mp4", "a/", ".", "./a.mp4", "a\x00b"]
)
def test_paths_that_leave_the_folder_are_refused(path):
    with pytest.raises(ValueError):
        check_relative_path(path)
    with pytest.raises(ValueError):
        folder_id(path)


# ----------------------------------------------------------------------------------------------
# Scanning


@pytest.fixture(scope="module")
def library(tmp_path_factory) -> Path:
    """A folder of videos in five containers, nested, with the oddities a real one has."""
    root = tmp_path_factory.mktemp("library")
    make_video(root / "birds" / "dawn chorus.mp4", seconds=24, audio="sine=frequency=660")
    make_video(root / "birds" / "nest (2).mkv", seconds=12)
    make_video(root / "city, streets" / "traffic été.webm", seconds=12, audio="anoisesrc=amplitude=0.3")
    make_video(root / "city, streets" / "night" / "bus.mov", seconds=11)
    make_video(root / "water" / "rain.avi", seconds=12, audio="anoisesrc=color=pink:amplitude=0.3")
    make_video(root / "top level.MP4", seconds=10, container="mp4")
    make_video(root / "water" / "silent film.mp4", audio=None)
    make_video(root / "water" / "radio.mp4", video=False)
    make_video(root / "water" / "blink.mp4", seconds=2)
    (root / "water" / "broken.mp4").write_bytes(bytes(range(256)) * 40)
    (root / "water" / "empty.mkv").write_bytes(b"")
    (root / "notes.txt").write_text("not a video\n")
    (root / "birds" / "cover.jpg").write_bytes(b"\xff\xd8\xff")
    make_video(root / ".hidden.mp4", seconds=10)
    make_video(root / ".trash" / "old.mp4", seconds=10)
    return root


VIDEOS = [
    "birds/dawn chorus.mp4", "birds/nest (2).mkv", "city, streets/night/bus.mov",
    "city, streets/traffic été.webm", "top level.MP4", "water/blink.mp4", "water/broken.mp4",
    "water/empty.mkv", "water/radio.mp4", "water/rain.avi", "water/silent film.mp4",
]  # fmt: skip


def test_scan_is_recursive_and_keeps_only_videos(library):
    scan = scan_folder(library)
    assert [video.path for video in scan.videos] == VIDEOS
    assert scan.n_ignored == 2 and set(scan.ignored_examples) == {"notes.txt", "birds/cover.jpg"}
    sizes = {video.path: video.size for video in scan.videos}
    assert (
        sizes["water/empty.mkv"] == 0
        and sizes["birds/dawn chorus.mp4"] == (library / VIDEOS[0]).stat().st_size
    )
    only_mkv = scan_folder(library, ["MKV"])
    assert [video.path for video in only_mkv.videos] == ["birds/nest (2).mkv", "water/empty.mkv"]


def test_a_missing_folder_or_one_without_videos_is_named(tmp_path):
    with pytest.raises(FolderError, match="nowhere"):
        scan_folder(tmp_path / "nowhere")
    (tmp_path / "file.mp4").write_bytes(b"")
    with pytest.raises(FolderError, match="is not a folder"):
        scan_folder(tmp_path / "file.mp4")
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "a.jpg").write_bytes(b"")
    with pytest.raises(FolderError, match=r"holds no video.*1 other files, e\.g\. \['a\.jpg'\]"):
        folder_snapshot(tmp_path / "photos", DEFAULT_EXTENSIONS, 2)


def test_links_special_files_and_odd_names_are_refused_by_name(tmp_path):
    outside = make_video(tmp_path / "outside" / "secret.mp4", seconds=4)
    root = tmp_path / "videos"
    make_video(root / "fine.mp4", seconds=4)
    (root / "sub").mkdir()
    (root / "link.mp4").symlink_to(outside)
    (root / "linked folder").symlink_to(outside.parent, target_is_directory=True)
    (root / "readme.txt").symlink_to("/etc/hostname")  # not a video: ignored, not followed
    os.mkfifo(root / "sub" / "pipe.mkv")
    with open(os.fsencode(root) + b"/bad\xffname.mp4", "wb") as handle:
        handle.write(b"x")
    with pytest.raises(FolderError) as caught:
        scan_folder(root)
    message = str(caught.value)
    assert f"link.mp4 -> {outside}" in message and f"linked folder -> {outside.parent}" in message
    assert "symbolic link" in message and "sub/pipe.mkv: not a regular file" in message
    assert "not UTF-8" in message and "readme.txt" not in message and "fine.mp4" not in message
    # The root itself may be a link: the folder the user named is the boundary.
    for name in ("link.mp4", "linked folder", "sub/pipe.mkv"):
        (root / name).unlink()
    os.unlink(os.fsencode(root) + b"/bad\xffname.mp4")
    (tmp_path / "alias").symlink_to(root, target_is_directory=True)
    assert [video.path for video in scan_folder(tmp_path / "alias").videos] == ["fine.mp4"]


def test_the_workflow_s_own_folders_are_never_videos(tmp_path):
    # Running the workflow inside the video folder must not feed its cached clips back as videos.
    root = tmp_path / "videos"
    make_video(root / "mine.mp4", seconds=4)
    for name in ("resources/clips/360p-reencode/abc_0.mp4", "results/x.mp4", "run/resources/clips/c.mp4"):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(b"clip")
    listed = folder_snapshot(root, DEFAULT_EXTENSIONS, 1, work_dir=root).shards[0]
    assert [entry[0] for entry in listed] == ["mine.mp4", "run/resources/clips/c.mp4"]
    inside = folder_snapshot(root, DEFAULT_EXTENSIONS, 1, work_dir=root / "run").shards[0]
    assert [entry[0] for entry in inside] == [
        "mine.mp4",
        "resources/clips/360p-reencode/abc_0.mp4",
        "results/x.mp4",
    ]
    assert len(scan_folder(root).videos) == 4  # a plain scan skips nothing


# ----------------------------------------------------------------------------------------------
# Probing, segments, failures


@pytest.mark.parametrize(
    ("seconds", "segment_s", "max_segments", "expected"),
    [
        (24.0, 10.0, 30, [(0, 10), (10, 20), (20, 24)]),
        (22.5, 10.0, 30, [(0, 10), (10, 20)]),  # a 2.5-s remainder is shorter than 3.75 s
        (10.0, 10.0, 30, [(0, 10)]),
        (10.01, 10.0, 30, [(0, 10)]),
        (5.0, 10.0, 30, [(0, 5)]),
        (3.75, 10.0, 30, [(0, 3.75)]),
        (3.7, 10.0, 30, []),
        (100.0, 10.0, 4, [(0, 10), (30, 40), (60, 70), (90, 100)]),
        (3600.0, 10.0, 2, [(0, 10), (3590, 3600)]),
        (25.0, 7.5, 30, [(0, 7.5), (7.5, 15), (15, 22.5)]),
        (12.3456, 10.0, 30, [(0, 10)]),
        (17.89, 10.0, 30, [(0, 10), (10, 17.89)]),
    ],
)
def test_file_segments(seconds, segment_s, max_segments, expected):
    assert file_segments(seconds, segment_s, 3.75, max_segments) == [
        tuple(map(float, pair)) for pair in expected
    ]


def test_every_container_is_probed_and_cut_into_segments(library):
    selection = segments_of(library, labels="folders")
    good = selection[selection["scan_reason"] == ""]
    by_path = good.groupby("source_path")[["start", "end"]].apply(lambda frame: frame.values.tolist())
    assert by_path["birds/dawn chorus.mp4"] == [[0.0, 10.0], [10.0, 20.0], [20.0, 24.0]]
    for path in ("birds/nest (2).mkv", "city, streets/traffic été.webm", "city, streets/night/bus.mov",
                 "water/rain.avi", "top level.MP4"):  # fmt: skip
        assert by_path[path] == [[0.0, 10.0]], path
    assert set(selection["ytid"]) == {folder_id(path) for path in VIDEOS}
    assert (selection["ytid"] == selection["source_path"].map(folder_id)).all()
    labels = dict(zip(selection["source_path"], selection["labels"], strict=True))
    assert labels["birds/nest (2).mkv"] == "birds" and labels["top level.MP4"] == ""
    # The first-level folder, its comma written ';'.
    assert labels["city, streets/night/bus.mov"] == "city; streets"
    keys = {video.path: video.key for video in scan_folder(library).videos}
    assert (selection["source_key"] == selection["source_path"].map(keys)).all()


def test_videos_that_give_no_segment_carry_the_manifest_reasons(library):
    selection = segments_of(library)
    failed = selection[selection["scan_reason"] != ""].set_index("source_path")
    assert failed["scan_reason"].to_dict() == {
        "water/blink.mp4": "too_short",
        "water/broken.mp4": "corrupt",
        "water/empty.mkv": "corrupt",
        "water/radio.mp4": "no_video",
        "water/silent film.mp4": "no_audio",
    }
    assert "2.00 s long" in failed.loc["water/blink.mp4", "scan_message"]
    assert failed["scan_message"].str.len().gt(0).all()


def test_a_container_without_duration_is_timed_by_decoding(tmp_path):
    video = make_unseekable_webm(tmp_path / "recorded.webm", seconds=12)
    header = subprocess.run(
        [ffmpeg_binary(), "-hide_banner", "-i", str(video)], capture_output=True, text=True
    )
    assert "Duration: N/A" in header.stderr
    info = probe_video(video)
    assert info["seconds"] == pytest.approx(12.0, abs=0.05) and info["has_audio"] and info["has_video"]
    assert segments_of(tmp_path)[["start", "end"]].values.tolist() == [[0.0, 10.0]]


def test_cover_art_is_no_video(tmp_path):
    song = tmp_path / "song with cover.mp4"
    command = [
        ffmpeg_binary(), "-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i", "sine=duration=8",
        "-f", "lavfi", "-i", "color=red:size=32x32", "-map", "0:a", "-map", "1:v", "-frames:v", "1",
        "-c:a", "aac", "-c:v", "mjpeg", "-disposition:v:0", "attached_pic", str(song),
    ]  # fmt: skip
    subprocess.run(command, check=True, capture_output=True)
    assert (
        "attached pic"
        in subprocess.run([ffmpeg_binary(), "-i", str(song)], capture_output=True, text=True).stderr
    )
    assert segments_of(tmp_path)["scan_reason"].tolist() == ["no_video"]


def test_a_probe_past_its_timeout_is_a_timeout(library):
    settings = FolderConfig(path=str(library), probe_timeout_s=1e-4)
    listed = [entry for entry in all_listed(library) if entry[0] == "birds/nest (2).mkv"]
    selection = select_shard(listed, settings, min_duration_s=3.75, n_shards=1)
    assert selection["scan_reason"].tolist() == ["timeout"]


# ----------------------------------------------------------------------------------------------
# Labels


def test_labels_from_folders():
    assert folder_label("birds/a.mp4") == "birds"
    assert folder_label("birds/deep/er/a.mp4") == "birds"
    assert folder_label("a.mp4") == ""
    assert folder_label("  dogs ,  barking /a.mp4") == "dogs; barking"
    assert label_text("male speech, man speaking") == "male speech; man speaking"


def test_labels_from_a_csv(library, tmp_path):
    csv_path = tmp_path / "labels.csv"
    csv_path.write_bytes(
        "\ufeffnote,labels,path\r\n"
        'a,"bird, song ,bird",birds/dawn chorus.mp4\r\n'
        "b,rain,water/rain.avi\r\n"
        "c,x,../outside.mp4\r\n"
        "d,x,/etc/passwd\r\n"
        "e,x,birds/missing.mp4\r\n"
        "f,again,water/rain.avi\r\n"
        "g,x,birds\\nest (2).mkv\r\n"
        "\r\n"
        "h\r\n"
        ",,top level.MP4\r\n".encode()
    )
    labels, rejected = read_labels_csv(csv_path, VIDEOS)
    assert labels == {"birds/dawn chorus.mp4": "bird,song", "water/rain.avi": "rain", "top level.MP4": ""}
    reasons = {line: reason for line, _, reason in rejected}
    assert sorted(reasons) == [4, 5, 6, 7, 8, 10]
    assert "'..'" in reasons[4] and "absolute" in reasons[5] and "not a video of the folder" in reasons[6]
    assert "listed twice (first at line 3)" in reasons[7] and "write '/' between folders" in reasons[8]
    assert "found 1 fields" in reasons[10]
    selection = segments_of(library, labels=str(csv_path))
    assert selection.set_index("source_path").loc["water/rain.avi", "labels"] == "rain"
    gathered, rejected_again, counts = gather_selection([selection], csv_path)
    assert [line for line, _, _ in rejected_again] == [4, 5, 6, 7, 8, 10]
    assert counts["rejected_label_rows"] == 6


@pytest.mark.parametrize(
    ("content", "match"),
    [(b"file,label\nx.mp4,a\n", "naming the columns 'path' and 'labels'"), (b"\xff\xfe\x00p", "not UTF-8")],
)
def test_a_labels_file_that_is_not_such_a_csv_is_named(tmp_path, content, match):
    path = tmp_path / "labels.csv"
    path.write_bytes(content)
    with pytest.raises(FolderError, match=match):
        read_labels_csv(path, [])
    with pytest.raises(FolderError, match="no such file"):
        read_labels_csv(tmp_path / "absent.csv", [])


# ----------------------------------------------------------------------------------------------
# What a change of the folder means


def test_a_shard_listing_changes_only_with_its_own_videos(tmp_path):
    root = tmp_path / "videos"
    for index in range(12):
        (root / f"group{index % 3}").mkdir(parents=True, exist_ok=True)
        (root / f"group{index % 3}" / f"v{index}.mp4").write_bytes(b"x" * index)
    before = folder_snapshot(root, DEFAULT_EXTENSIONS, 4, "folders")
    assert before.n_videos == 12
    os.utime(root, ns=(1, 1))  # touching the folder (and a sub-folder) changes nothing
    os.utime(root / "group1", ns=(1, 1))
    assert folder_snapshot(root, DEFAULT_EXTENSIONS, 4, "folders") == before

    (root / "group2" / "new.mp4").write_bytes(b"new")
    added = folder_snapshot(root, DEFAULT_EXTENSIONS, 4, "folders")
    changed = [shard for shard in range(4) if added.shards[shard] != before.shards[shard]]
    assert len(changed) == 1
    assert ["group2/new.mp4", 3] in [entry[:2] for entry in added.shards[changed[0]]]
    assert ["group2/new.mp4", 3] not in [entry[:2] for entry in before.shards[changed[0]]]

    target = root / "group0" / "v3.mp4"
    os.utime(target, ns=(2_000_000_000, 2_000_000_000))  # touching a video changes its shard only
    touched = folder_snapshot(root, DEFAULT_EXTENSIONS, 4, "folders")
    assert sum(touched.shards[shard] != added.shards[shard] for shard in range(4)) == 1

    moved = tmp_path / "elsewhere"
    shutil.move(root, moved)  # where the folder lies is no part of it
    assert folder_snapshot(moved, DEFAULT_EXTENSIONS, 4, "folders") == touched


# ----------------------------------------------------------------------------------------------
# Cutting the segments: the download step of world folder


def folder_download_config(**overrides) -> DownloadConfig:
    return DownloadConfig(**({"timeout_s": 60, "retries": 0, "concurrency": 2, "max_height": 40} | overrides))


@pytest.mark.parametrize("reencode", [True, False])
def test_every_container_is_cut_to_an_mp4_clip_and_failures_land_in_the_manifest(library, tmp_path, reencode):
    selection = segments_of(library, labels="folders")
    config = folder_download_config(reencode=reencode)
    manifest = download_shard(selection, tmp_path / "cache", config, folder=library)
    assert manifest["source_path"].tolist() == selection["source_path"].tolist()
    failed = manifest[manifest["status"] != "ok"].set_index("source_path")["reason"].to_dict()
    assert failed == {
        "water/blink.mp4": "too_short", "water/broken.mp4": "corrupt", "water/empty.mkv": "corrupt",
        "water/radio.mp4": "no_video", "water/silent film.mp4": "no_audio",
    }  # fmt: skip
    ok = manifest[manifest["status"] == "ok"]
    assert len(ok) == 8 and (ok["seconds"] >= ok["end"] - ok["start"] - 0.2).all()
    keys = selection.set_index(["ytid", "start"])["source_key"]
    for row in ok.itertuples():
        record = json.loads(record_path(row.path).read_text())
        assert record["source_key"] == keys.loc[(row.ytid, row.start)]
        scaled = reencode or row.source_path.endswith(".webm")  # VP8 does not fit a stream copy to mp4
        assert record["height"] == (40 if scaled else 48), row.source_path
    index, frames, audio, failures = extract_shard(manifest, PairConfig(frame_size=32))
    assert len(failures) == 0 and len(index) == len(frames) == len(audio) >= 8
    assert set(index["source_path"]) == set(ok["source_path"])
    assert (index["labels"] == index["source_path"].map(folder_label)).all()


def test_a_changed_video_is_cut_again_and_an_unchanged_one_is_not(tmp_path):
    root = tmp_path / "videos"
    make_video(root / "a.mp4", seconds=11, audio="sine=frequency=300")
    make_video(root / "b.mkv", seconds=11, audio="sine=frequency=500")
    config, cache = folder_download_config(), tmp_path / "cache"
    first = download_shard(segments_of(root), cache, config, folder=root)
    clips = {row.source_path: Path(row.path) for row in first.itertuples()}
    stamps = {path: clip.stat().st_mtime_ns for path, clip in clips.items()}

    again = download_shard(segments_of(root), cache, config, folder=root)
    assert again["sha256"].tolist() == first["sha256"].tolist()
    assert {path: clip.stat().st_mtime_ns for path, clip in clips.items()} == stamps  # served from the cache

    make_video(root / "a.mp4", seconds=11, audio="sine=frequency=900")  # same path, new content
    changed = download_shard(segments_of(root), cache, config, folder=root).set_index("source_path")
    first = first.set_index("source_path")
    assert changed.loc["a.mp4", "sha256"] != first.loc["a.mp4", "sha256"]
    assert changed.loc["b.mkv", "sha256"] == first.loc["b.mkv", "sha256"]
    assert clips["b.mkv"].stat().st_mtime_ns == stamps["b.mkv"]
    assert file_sha256(clips["a.mp4"]) == changed.loc["a.mp4", "sha256"]


def test_a_video_replaced_by_a_link_or_removed_after_the_scan_is_refused(tmp_path):
    root = tmp_path / "videos"
    make_video(root / "a.mp4", seconds=5)
    make_video(root / "b.mp4", seconds=5)
    outside = make_video(tmp_path / "outside.mp4", seconds=5)
    listed = all_listed(root)
    selection = select_shard(listed, FolderConfig(path=str(root)), min_duration_s=3.75, n_shards=1)
    (root / "a.mp4").unlink()
    (root / "a.mp4").symlink_to(outside)
    (root / "b.mp4").unlink()
    manifest = download_shard(selection, tmp_path / "cache", folder_download_config(), folder=root)
    rows = manifest.set_index("source_path")
    assert rows.loc["a.mp4", "reason"] == "other" and "refused" in rows.loc["a.mp4", "message"]
    assert rows.loc["b.mp4", "reason"] == "unavailable"
    rescanned = select_shard(listed, FolderConfig(path=str(root)), min_duration_s=3.75, n_shards=1)
    reasons = rescanned.set_index("source_path")["scan_reason"].to_dict()
    assert reasons == {"a.mp4": "other", "b.mp4": "unavailable"}


def test_the_scan_folder_adapter_writes_the_segments_of_its_shard(tmp_path):
    """Rule scan_folder with a stand-in job: a playable video gives its segments, a file that is
    no video its reason, both logged; the same rows as select_shard gives."""
    from adapter_helpers import Job, rule_params_of, run_adapter, workflow_config

    root = tmp_path / "videos"
    make_video(root / "a.mp4", seconds=9)
    (root / "b.mp4").write_bytes(b"not a video")
    config = workflow_config(world="folder", folder={"path": str(root)}, shards=1)
    listed = all_listed(root)
    job = Job(
        input=Job(),
        output=Job(segments=str(tmp_path / "shard-0.parquet")),
        params=Job(
            videos=listed,
            folder=rule_params_of(config, "folder"),
            min_duration_s=config["select"]["min_duration_s"],
            shards=1,
        ),
        config=config,
        wildcards=Job(shard="0"),
        log=[str(tmp_path / "scan.log")],
        rule="scan_folder",
        threads=1,
    )
    run_adapter("scan_folder", job)
    segments = pd.read_parquet(tmp_path / "shard-0.parquet")
    expected = select_shard(listed, FolderConfig(path=str(root)), min_duration_s=3.75, n_shards=1)
    messages = segments.pop("scan_message")  # ffmpeg's messages hold its objects' addresses
    assert "moov atom not found" in messages[segments["source_path"] == "b.mp4"].item()
    pd.testing.assert_frame_equal(
        segments, expected.drop(columns="scan_message").reset_index(drop=True), check_dtype=False
    )
    assert set(segments.loc[segments["scan_reason"] == "", "source_path"]) == {"a.mp4"}
    assert segments.loc[segments["source_path"] == "b.mp4", "scan_reason"].item() != ""
    log = (tmp_path / "scan.log").read_text()
    assert "no segment from b.mp4" in log and "2 videos" in log
