"""The synthetic world: real formats (AudioSet CSV, ontology, H.264/AAC mp4, VOC2007), fixtures,
determinism, and the coupling the demo rests on: a clip's sound predicts its scene."""

from __future__ import annotations

import json
import re
import subprocess
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from soundsup.ffmpeg import ffmpeg_binary
from soundsup.names import VOC_CLASSES
from soundsup.synthetic import SyntheticConfig, make_world
from soundsup.synthetic_scenes import SCENES, render_scene_image, synthesize_scene_audio

REPO = Path(__file__).resolve().parent.parent
TINY = SyntheticConfig(
    n_videos=14, video_width=96, video_height=64, fps=5, n_voc_trainval=40, n_voc_test=40, voc_image_size=96,
    n_missing=2, n_corrupt=1, n_silent=1, n_no_audio=1, n_music_speech=3, n_malformed_lines=2, n_short=2,
)  # fmt: skip
ROW = re.compile(r'^[A-Za-z0-9_-]{11}, \d+\.\d{3}, \d+\.\d{3}, "(/[mtg]/[0-9a-z_]+)(,/[mtg]/[0-9a-z_]+)*"$')
MUSIC, SPEECH = "/m/04rlf", "/m/09x0r"


def build(root: Path, seed: int) -> dict:
    paths = world_paths(root)
    paths["videos"].parent.mkdir(parents=True, exist_ok=True)
    (paths["videos"].parent / ".videos.tmp-stale").mkdir()  # left by a killed run
    summary = make_world(
        TINY, paths["csv"], paths["ontology"], paths["videos"], paths["voc"], seed=seed, threads=2
    )
    return {**paths, "summary": summary}


def world_paths(root: Path) -> dict[str, Path]:
    return {
        "csv": root / "audioset" / "synthetic_segments.csv",
        "ontology": root / "audioset" / "ontology.json",
        "videos": root / "synthetic" / "videos",
        "voc": root / "voc" / "VOCdevkit" / "VOC2007",
    }


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict:
    return build(tmp_path_factory.mktemp("world"), seed=7)


@pytest.fixture(scope="module")
def twin(tmp_path_factory) -> dict:
    return build(tmp_path_factory.mktemp("twin"), seed=7)


def probe(path: Path) -> str:
    """ffmpeg's description of a file (there is no ffprobe): the text of ``ffmpeg -i``."""
    result = subprocess.run(
        [ffmpeg_binary(), "-hide_banner", "-i", str(path)], capture_output=True, text=True
    )
    return result.stderr


def decode_audio(path: Path, sample_rate: int = 20000) -> np.ndarray:
    command = [
        ffmpeg_binary(),
        "-v",
        "error",
        "-i",
        str(path),
        "-ac",
        "1",
        "-ar",
        str(sample_rate),
        "-f",
        "f32le",
        "-",
    ]
    result = subprocess.run(command, capture_output=True, check=True)
    return np.frombuffer(result.stdout, dtype=np.float32)


def csv_rows(world: dict) -> list[str]:
    return world["csv"].read_text().splitlines()[3:]


def good_rows(world: dict) -> list[tuple[str, float, float, list[str]]]:
    rows = []
    for line in csv_rows(world):
        if ROW.match(line):
            ytid, start, end, labels = line.split(", ", 3)
            rows.append((ytid, float(start), float(end), labels.strip('"').split(",")))
    return rows


def good_videos(world: dict) -> list[str]:
    """Ids of the videos that should download and extract cleanly."""
    videos = world["summary"]["videos"]
    fixtures = set(videos["silent"] + videos["no_audio"] + videos["corrupt"] + videos["missing"])
    return sorted(ytid for ytid in world["summary"]["video_scenes"] if ytid not in fixtures)


def test_csv_has_the_audioset_header_and_row_format(world):
    lines = world["csv"].read_text().splitlines()
    assert re.fullmatch(r"# Segments csv created \w{3} \w{3} [ \d]\d \d\d:\d\d:\d\d \d{4}", lines[0])
    counts = re.fullmatch(
        r"# num_ytids=(\d+), num_segs=(\d+), num_unique_labels=(\d+), num_positive_labels=(\d+)", lines[1]
    )
    assert counts and lines[2] == "# YTID, start_seconds, end_seconds, positive_labels"
    rows = good_rows(world)
    assert int(counts[1]) == int(counts[2]) == len(rows)
    assert int(counts[3]) == len({label for row in rows for label in row[3]})
    assert int(counts[4]) == sum(len(row[3]) for row in rows)
    bad = [number for number, line in enumerate(lines, start=1) if number > 3 and not ROW.match(line)]
    assert bad == world["summary"]["malformed_lines"] and len(bad) == TINY.n_malformed_lines
    ids = [row[0] for row in rows]
    assert len(set(ids)) == len(ids) and any(ytid.startswith("-") for ytid in ids)


def test_segments_start_on_a_keyframe_inside_the_video(world):
    short = set(world["summary"]["videos"]["short"])
    for ytid, start, end, _ in good_rows(world):
        assert start == int(start) and start >= 1 and end <= TINY.video_seconds - 0.5
        assert end - start == (6.0 if ytid in short else 10.0)
    assert len(short) == TINY.n_short


def test_videos_are_h264_and_aac_of_the_configured_length(world):
    videos = world["summary"]["videos"]
    ok = [
        ytid
        for ytid, scene in world["summary"]["video_scenes"].items()
        if (world["videos"] / f"{ytid}.mp4").exists()
    ]
    ok = [ytid for ytid in ok if ytid not in videos["corrupt"] + videos["no_audio"]]
    assert len(ok) == TINY.n_videos + TINY.n_silent
    for ytid in ok:
        text = probe(world["videos"] / f"{ytid}.mp4")
        assert re.search(r"Video: h264 .*yuv420p.*96x64", text), text
        assert re.search(r"Audio: aac .*22050 Hz, mono", text), text
        duration = re.search(r"Duration: 00:00:(\d+\.\d+)", text)
        assert duration and abs(float(duration[1]) - TINY.video_seconds) < 0.15, text


def test_keyframes_fall_on_every_second(world):
    ytid = good_videos(world)[0]
    command = [
        ffmpeg_binary(),
        "-hide_banner",
        "-skip_frame",
        "nokey",
        "-i",
        str(world["videos"] / f"{ytid}.mp4"),
    ]
    result = subprocess.run([*command, "-vf", "showinfo", "-f", "null", "-"], capture_output=True, text=True)
    times = [float(value) for value in re.findall(r"pts_time:([\d.]+)", result.stderr)]
    assert times == [float(second) for second in range(int(TINY.video_seconds))]


def test_fixtures_fail_the_way_real_downloads_do(world):
    videos, directory = world["summary"]["videos"], world["videos"]
    assert len(videos["missing"]) == TINY.n_missing
    assert not any(
        (directory / f"{ytid}.mp4").exists() for ytid in videos["missing"] + videos["music_speech"]
    )
    for ytid in videos["corrupt"]:
        result = subprocess.run(
            [ffmpeg_binary(), "-v", "error", "-i", str(directory / f"{ytid}.mp4"), "-f", "null", "-"]
        )
        assert result.returncode != 0
    for ytid in videos["no_audio"]:
        text = probe(directory / f"{ytid}.mp4")
        assert "Video: h264" in text and "Audio:" not in text
    for ytid in videos["silent"]:
        audio = decode_audio(directory / f"{ytid}.mp4")
        assert len(audio) > 0 and np.abs(audio).max() < 1e-4
    for ytid in good_videos(world):
        audio = decode_audio(directory / f"{ytid}.mp4")
        assert 0.01 < np.abs(audio).max() < 1.0


def test_stale_staging_folders_are_cleared(world):
    assert not list(world["videos"].parent.glob(".videos.tmp-*"))
    assert not list(world["voc"].parent.glob(".VOC2007.tmp-*"))


def subtree(nodes: dict[str, dict], root: str) -> set[str]:
    found, stack = set(), [root]
    while stack:
        node = stack.pop()
        found.add(node)
        stack.extend(nodes[node]["child_ids"])
    return found


def test_ontology_is_in_audioset_format_and_covers_every_label(world):
    nodes = json.loads(world["ontology"].read_text())
    keys = {"id", "name", "description", "citation_uri", "positive_examples", "child_ids", "restrictions"}
    assert all(set(node) == keys for node in nodes)
    by_id = {node["id"]: node for node in nodes}
    assert by_id[MUSIC]["name"] == "Music" and by_id[SPEECH]["name"] == "Speech"
    assert all(child in by_id for node in nodes for child in node["child_ids"])
    labels = {label for row in good_rows(world) for label in row[3]}
    assert labels <= set(by_id)
    excluded = subtree(by_id, MUSIC) | subtree(by_id, SPEECH)
    music_speech = set(world["summary"]["videos"]["music_speech"])
    for ytid, _, _, row_labels in good_rows(world):
        assert (set(row_labels) <= excluded) == (ytid in music_speech)


def read_split(voc: Path, name: str) -> list[str]:
    return (voc / "ImageSets" / "Main" / f"{name}.txt").read_text().split()


def xml_labels(voc: Path, image_id: str) -> dict[str, int]:
    root = ElementTree.parse(voc / "Annotations" / f"{image_id}.xml").getroot()
    width, height = int(root.findtext("size/width")), int(root.findtext("size/height"))
    with Image.open(voc / "JPEGImages" / f"{image_id}.jpg") as image:
        assert image.size == (width, height) and image.mode == "RGB"
    assert root.findtext("filename") == f"{image_id}.jpg" and root.findtext("folder") == "VOC2007"
    labels: dict[str, int] = {}
    for item in root.iter("object"):
        name, difficult = item.findtext("name"), int(item.findtext("difficult"))
        assert name in VOC_CLASSES and difficult in (0, 1) and item.findtext("pose")
        assert int(item.findtext("truncated")) in (0, 1)
        box = [int(item.findtext(f"bndbox/{key}")) for key in ("xmin", "ymin", "xmax", "ymax")]
        assert 1 <= box[0] <= box[2] <= width and 1 <= box[1] <= box[3] <= height
        labels[name] = max(labels.get(name, 0), 1 - difficult)
    return labels


def test_voc_layout_is_complete_and_consistent(world):
    voc = world["voc"]
    trainval, test = read_split(voc, "trainval"), read_split(voc, "test")
    train, val = read_split(voc, "train"), read_split(voc, "val")
    assert len(trainval) == TINY.n_voc_trainval and len(test) == TINY.n_voc_test
    assert not set(trainval) & set(test) and sorted(train + val) == trainval and not set(train) & set(val)
    assert all(re.fullmatch(r"\d{6}", image_id) for image_id in trainval + test)
    expected = {image_id: xml_labels(voc, image_id) for image_id in trainval + test}
    zeros = 0
    for split, members in (("trainval", trainval), ("test", test), ("train", train), ("val", val)):
        for name in VOC_CLASSES:
            lines = (voc / "ImageSets" / "Main" / f"{name}_{split}.txt").read_text().splitlines()
            assert all(re.fullmatch(r"\d{6} (-1| 1| 0)", line) for line in lines)
            labels = dict((line[:6], int(line[6:])) for line in lines)
            assert list(labels) == members
            assert labels == {image_id: expected[image_id].get(name, -1) for image_id in members}
            zeros += sum(1 for value in labels.values() if value == 0)
            if split in ("trainval", "test"):
                assert sum(1 for value in labels.values() if value == 1) >= 1, (name, split)
    assert zeros > 0  # images whose only instances of a class are difficult


def test_same_seed_gives_the_same_world(world, twin, tmp_path):
    assert world["csv"].read_text() == twin["csv"].read_text()
    assert world["ontology"].read_text() == twin["ontology"].read_text()
    for path in sorted((world["voc"] / "ImageSets" / "Main").iterdir())[:30]:
        assert path.read_bytes() == (twin["voc"] / "ImageSets" / "Main" / path.name).read_bytes()
    for image_id in read_split(world["voc"], "test")[:10]:
        relative = Path("JPEGImages") / f"{image_id}.jpg"
        assert (world["voc"] / relative).read_bytes() == (twin["voc"] / relative).read_bytes()
    for ytid, *_ in good_rows(world)[:5]:
        if (world["videos"] / f"{ytid}.mp4").exists():
            assert (world["videos"] / f"{ytid}.mp4").read_bytes() == (
                twin["videos"] / f"{ytid}.mp4"
            ).read_bytes()


def test_a_scene_picture_moves_with_time_but_keeps_its_objects():
    scene = SCENES[1]
    first, objects = render_scene_image(scene, 128, 96, np.random.default_rng(3), t=0.0)
    again, _ = render_scene_image(scene, 128, 96, np.random.default_rng(3), t=0.0)
    later, later_objects = render_scene_image(scene, 128, 96, np.random.default_rng(3), t=5.0)
    assert first.dtype == np.uint8 and first.shape == (96, 128, 3)
    assert np.array_equal(first, again) and not np.array_equal(first, later)
    assert [item["class"] for item in objects] == [item["class"] for item in later_objects]
    assert {item["class"] for item in objects} <= set(scene.classes)


def band_energies(audio: np.ndarray, sample_rate: int, n_bands: int = 16, frame: int = 1024) -> np.ndarray:
    """Log energies in log-spaced bands 50 Hz - 9 kHz over ~50-ms frames: the mean spectral shape
    (level removed) and the spread over time of each band, float (2 * n_bands,)."""
    frames = audio[: len(audio) // frame * frame].reshape(-1, frame) * np.hanning(frame)
    power = np.abs(np.fft.rfft(frames, axis=1)) ** 2
    frequencies = np.fft.rfftfreq(frame, 1.0 / sample_rate)
    edges = np.geomspace(50.0, 9000.0, n_bands + 1)
    bands = [
        power[:, (frequencies >= low) & (frequencies < high)].sum(1)
        for low, high in zip(edges[:-1], edges[1:], strict=True)
    ]
    logs = np.log(np.stack(bands, axis=1) + 1e-9)
    shape = logs.mean(0)
    return np.concatenate([shape - shape.mean(), logs.std(0)])


def leave_one_group_out_accuracy(features: np.ndarray, scenes: np.ndarray, groups: np.ndarray) -> float:
    """Nearest-centroid accuracy, each group (a video) classified by centroids of the others."""
    correct = 0
    for group in np.unique(groups):
        held_out = groups == group
        names = np.unique(scenes[~held_out])
        centroids = np.stack([features[~held_out & (scenes == name)].mean(0) for name in names])
        distances = ((features[held_out, None, :] - centroids[None]) ** 2).sum(-1)
        correct += int((names[distances.argmin(1)] == scenes[held_out]).sum())
    return correct / len(scenes)


def test_sound_predicts_the_scene_in_the_encoded_videos(world):
    """Two 3.75-s windows per clip, decoded from the mp4 at 20 kHz, as the pairs stage does."""
    times = {row[0]: (row[1], row[2]) for row in good_rows(world)}
    features, scenes, groups = [], [], []
    for ytid in good_videos(world):
        audio = decode_audio(world["videos"] / f"{ytid}.mp4")
        start, end = times[ytid]
        for centre in (start + 1.875, end - 1.875):
            window = audio[int((centre - 1.875) * 20000) : int((centre + 1.875) * 20000)]
            features.append(band_energies(window, 20000))
            scenes.append(world["summary"]["video_scenes"][ytid])
            groups.append(ytid)
    assert len(set(scenes)) == len(SCENES)
    accuracy = leave_one_group_out_accuracy(np.array(features), np.array(scenes), np.array(groups))
    assert accuracy >= 0.8, accuracy  # chance is 1/7


def test_sound_predicts_the_scene_across_random_variations():
    features, scenes, groups = [], [], []
    for scene in SCENES:
        for draw in range(4):
            audio, _ = synthesize_scene_audio(
                scene, 3.75, 20000, np.random.default_rng([draw, len(scene.name)])
            )
            assert audio.dtype == np.float32 and 0.25 < np.abs(audio).max() < 1.0
            features.append(band_energies(audio, 20000))
            scenes.append(scene.name)
            groups.append(f"{scene.name}-{draw}")
    accuracy = leave_one_group_out_accuracy(np.array(features), np.array(scenes), np.array(groups))
    assert accuracy >= 0.9, accuracy


def test_config_defaults_match_the_schema_and_bad_sizes_are_refused():
    schema = yaml.safe_load((REPO / "schemas" / "config.schema.yaml").read_text())
    properties = schema["properties"]["synthetic"]["properties"]
    assert SyntheticConfig(**{key: spec["default"] for key, spec in properties.items()}) == SyntheticConfig()
    with pytest.raises(ValueError, match="even"):
        SyntheticConfig(video_width=127)
    with pytest.raises(ValueError, match="n_short"):
        SyntheticConfig(n_videos=2, n_short=3)


def test_the_make_synthetic_world_adapter_builds_the_world_of_its_params(world, tmp_path):
    """Rule make_synthetic_world with a stand-in job: the same config and seed give the world of
    :func:`make_world` itself, byte for byte, and its summary beside it."""
    import dataclasses

    from adapter_helpers import Job, run_adapter

    paths = world_paths(tmp_path / "resources")
    job = Job(
        input=Job(),
        output=Job(
            segments=str(paths["csv"]),
            ontology=str(paths["ontology"]),
            videos=str(paths["videos"]),
            voc=[str(paths["voc"] / "ImageSets" / "Main" / f"{split}.txt") for split in ("trainval", "test")],
            summary=str(tmp_path / "resources" / "synthetic" / "world.json"),
        ),
        params=Job(synthetic=dataclasses.asdict(TINY), voc_root=str(paths["voc"]), seed=7),
        wildcards=Job(),
        log=[str(tmp_path / "world.log")],
        rule="make_synthetic_world",
        threads=2,
    )
    run_adapter("make_synthetic_world", job)
    assert paths["csv"].read_bytes() == world["csv"].read_bytes()
    assert paths["ontology"].read_bytes() == world["ontology"].read_bytes()
    assert sorted(p.name for p in paths["videos"].iterdir()) == sorted(
        p.name for p in world["videos"].iterdir()
    )
    summary, expected = (
        json.loads(Path(job.output.summary).read_text()),
        json.loads(json.dumps(world["summary"])),
    )
    assert summary.pop("seconds") > 0 and summary == {
        key: value for key, value in expected.items() if key != "seconds"
    }
