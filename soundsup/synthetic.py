"""The synthetic world: the demo's AudioSet CSV, ontology, mp4 videos and VOC2007 dataset.

Everything is written with real codecs and real file formats, so the workflow runs the same code
on it as on the real data: an AudioSet segments CSV (three ``#`` lines, ``", "`` separators,
quoted label lists, 11-character ids), an ontology.json subset with real AudioSet ids, one
H.264 + AAC mp4 per video (a keyframe every second) and a VOC2007 layout (JPEGImages,
Annotations XML, ImageSets/Main label files with 1 / -1 / 0). Scenes (:mod:`soundsup.synthetic_scenes`)
tie each clip's sound texture to the objects in its frames, and the VOC images are drawn by the
same renderer, so features learned by predicting sound help recognise the VOC classes.

Robustness fixtures are part of the world: rows whose video does not exist, a truncated
(corrupt) mp4, a silent video, a video without an audio stream, Music/Speech-only segments (no
video: selection must drop them), segments shorter than 10 s and malformed CSV lines.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import logging
import multiprocessing
import os
import shutil
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from soundsup.audioset import segments_csv_header, segments_csv_row
from soundsup.ffmpeg import ffmpeg_binary
from soundsup.io import write_json, write_text
from soundsup.names import VOC_CLASSES
from soundsup.synthetic_scenes import (
    SCENES,
    Scene,
    draw_layout,
    sample_layout,
    synthesize_scene_audio,
)

log = logging.getLogger(__name__)

ID_ALPHABET = np.array(list("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-"))
# Streams of the seed sequence, so that each part of the world draws independent numbers.
_PLAN, _VIDEO, _VOC = 1, 2, 3


@dataclass(frozen=True)
class SyntheticConfig:
    """Size of the synthetic world (the config keys of ``synthetic:``)."""

    n_videos: int = 300
    video_width: int = 128
    video_height: int = 96
    fps: int = 10
    video_seconds: float = 12.0
    audio_sample_rate: int = 22050
    n_voc_trainval: int = 400
    n_voc_test: int = 400
    voc_image_size: int = 128
    n_missing: int = 3
    n_corrupt: int = 1
    n_silent: int = 1
    n_no_audio: int = 1
    n_music_speech: int = 6
    n_malformed_lines: int = 1
    n_short: int = 4

    def __post_init__(self) -> None:
        if self.video_width % 2 or self.video_height % 2 or min(self.video_width, self.video_height) < 16:
            raise ValueError(
                f"synthetic.video_width/video_height must be even and >= 16 (yuv420p), "
                f"got {self.video_width}x{self.video_height}"
            )
        if self.video_seconds < 4:
            raise ValueError(f"synthetic.video_seconds must be >= 4, got {self.video_seconds}")
        if self.n_videos < 1 or self.fps < 1 or self.audio_sample_rate < 8000:
            raise ValueError("synthetic.n_videos and fps must be >= 1 and audio_sample_rate >= 8000")
        if self.n_short > self.n_videos:
            raise ValueError(f"synthetic.n_short ({self.n_short}) exceeds n_videos ({self.n_videos})")
        if min(self.n_voc_trainval, self.n_voc_test) < 1 or self.voc_image_size < 32:
            raise ValueError("synthetic.n_voc_trainval/n_voc_test must be >= 1 and voc_image_size >= 32")
        counts = (self.n_missing, self.n_corrupt, self.n_silent, self.n_no_audio, self.n_music_speech)
        if min(*counts, self.n_malformed_lines, self.n_short) < 0:
            raise ValueError("synthetic fixture counts must be >= 0")


@dataclass(frozen=True)
class Segment:
    """One CSV row of the world and what stands behind it.

    ``kind`` is ``ok`` (a good video; ``short`` marks a segment shorter than 10 s), ``silent``,
    ``no_audio``, ``corrupt`` (a video exists), ``missing`` or ``music_speech`` (no video).
    """

    ytid: str
    start: float
    end: float
    labels: tuple[str, ...]
    kind: str
    scene: str | None
    seed: int
    short: bool = False

    @property
    def has_video(self) -> bool:
        return self.kind in ("ok", "silent", "no_audio", "corrupt")


def _youtube_ids(count: int, rng: np.random.Generator) -> list[str]:
    """``count`` distinct 11-character ids over [A-Za-z0-9_-]; every eighth starts with '-'."""
    ids: list[str] = []
    seen: set[str] = set()
    while len(ids) < count:
        ytid = "".join(rng.choice(ID_ALPHABET, size=11))
        if len(ids) % 8 == 0:
            ytid = "-" + ytid[1:]
        if ytid.lower() not in seen:  # distinct even on case-insensitive file systems
            seen.add(ytid.lower())
            ids.append(ytid)
    return ids


def _segment_times(config: SyntheticConfig, short: bool, rng: np.random.Generator) -> tuple[float, float]:
    """Integer start >= 1 (a keyframe) and end inside the video, with 0.5 s to spare."""
    usable = config.video_seconds - 0.5
    length = min(6.0 if short else 10.0, np.floor(usable) - 1.0)
    latest_start = int(np.floor(usable - length))
    start = float(rng.integers(1, max(1, latest_start) + 1))
    return start, start + length


def plan_world(config: SyntheticConfig, seed: int) -> list[Segment]:
    """Every CSV row of the world, in file order (deterministic in ``seed``)."""
    rng = np.random.default_rng([seed, _PLAN])
    kinds = (
        ["ok"] * config.n_videos
        + ["silent"] * config.n_silent
        + ["no_audio"] * config.n_no_audio
        + ["corrupt"] * config.n_corrupt
        + ["missing"] * config.n_missing
        + ["music_speech"] * config.n_music_speech
    )
    ids = _youtube_ids(len(kinds), rng)
    scene_order = rng.permutation(len(SCENES))
    short_videos = set(rng.choice(config.n_videos, size=config.n_short, replace=False).tolist())
    segments = []
    for index, (kind, ytid) in enumerate(zip(kinds, ids, strict=True)):
        video_seed = int(rng.integers(2**63))
        short = kind == "ok" and index in short_videos
        start, end = _segment_times(config, short, rng)
        if kind == "music_speech":
            labels = MUSIC_SPEECH_LABEL_SETS[index % len(MUSIC_SPEECH_LABEL_SETS)]
            segments.append(Segment(ytid, start, end, labels, kind, None, video_seed))
            continue
        scene = SCENES[scene_order[index % len(SCENES)]]
        segments.append(Segment(ytid, start, end, scene.labels, kind, scene.name, video_seed, short))
    return [segments[i] for i in rng.permutation(len(segments))]


def _malformed_line(number: int, rng: np.random.Generator) -> str:
    ytid = "".join(rng.choice(ID_ALPHABET[:62], size=11))
    if number % 2 == 0:
        return f'{ytid}, 30.000, "/m/0838f"'  # a missing field
    return f'{ytid}, thirty, 40.000, "/m/0838f"'  # a time that is not a number


def segments_csv_text(segments: list[Segment], n_malformed: int, seed: int) -> tuple[str, list[int]]:
    """The AudioSet-format CSV text of ``segments`` and the 1-based line numbers of malformed rows."""
    rng = np.random.default_rng([seed, _PLAN, 1])
    labels = [label for segment in segments for label in segment.labels]
    header = segments_csv_header(len({s.ytid for s in segments}), len(segments), labels)
    rows = [segments_csv_row(s.ytid, s.start, s.end, ",".join(s.labels)) for s in segments]
    positions = sorted(rng.choice(len(rows) + 1, size=n_malformed, replace=True).tolist(), reverse=True)
    for number, position in enumerate(positions):
        rows.insert(position, _malformed_line(number, rng))
    malformed = [len(header) + 1 + index for index, row in enumerate(rows) if not _well_formed(row)]
    return "\n".join(header + rows) + "\n", malformed


def _well_formed(row: str) -> bool:
    fields = row.split(", ", 3)
    if len(fields) != 4:
        return False
    try:
        float(fields[1]), float(fields[2])
    except ValueError:
        return False
    return True


# --------------------------------------------------------------------------------------------
# Ontology: a subset of the real AudioSet ontology. Every id and name is the real one; a node's
# child_ids are its real children restricted to the nodes kept here.

_ONTOLOGY: tuple[tuple[str, str, tuple[str, ...], tuple[str, ...]], ...] = (
    ("/m/0dgw9r", "Human sounds", ("/m/09l8g",), ("abstract",)),
    ("/m/09l8g", "Human voice", ("/m/09x0r",), ("abstract",)),
    ("/m/09x0r", "Speech", ("/m/05zppz", "/m/02zsn", "/m/01h8n0"), ()),
    ("/m/05zppz", "Male speech, man speaking", (), ()),
    ("/m/02zsn", "Female speech, woman speaking", (), ()),
    ("/m/01h8n0", "Conversation", (), ()),
    ("/m/03qtwd", "Crowd", (), ()),
    ("/m/07qfr4h", "Hubbub, speech noise, speech babble", (), ()),
    ("/m/020bb7", "Bird vocalization, bird call, bird song", (), ()),
    ("/m/04rlf", "Music", ("/m/04szw", "/m/0kpv1t"), ()),
    ("/m/04szw", "Musical instrument", ("/m/05148p4",), ()),
    ("/m/05148p4", "Keyboard (musical)", ("/m/05r5c",), ()),
    ("/m/05r5c", "Piano", (), ()),
    ("/m/0kpv1t", "Music genre", ("/m/064t9",), ("abstract",)),
    ("/m/064t9", "Pop music", (), ()),
    ("/m/059j3w", "Natural sounds", ("/m/03m9d0z", "/m/0838f"), ("blacklist",)),
    ("/m/03m9d0z", "Wind", ("/m/09t49",), ()),
    ("/m/09t49", "Rustling leaves", (), ()),
    ("/m/0838f", "Water", ("/m/06mb1", "/m/0j6m2"), ()),
    ("/m/06mb1", "Rain", ("/t/dd00038",), ()),
    ("/t/dd00038", "Rain on surface", (), ()),
    ("/m/0j6m2", "Stream", (), ()),
    ("/m/0912c9", "Vehicle horn, car horn, honking", (), ()),
    ("/m/0btp2", "Traffic noise, roadway noise", (), ()),
    ("/t/dd00077", "Mechanisms", (), ()),
    ("/m/07rcgpl", "Hum", (), ()),
    ("/t/dd00128", "Outside, urban or manmade", (), ()),
    ("/t/dd00129", "Outside, rural or natural", (), ()),
)

# Label sets of the segments that selection must drop: every label within Music or Speech.
MUSIC_SPEECH_LABEL_SETS: tuple[tuple[str, ...], ...] = (
    ("/m/04rlf",),
    ("/m/09x0r",),
    ("/m/04rlf", "/m/064t9"),
    ("/m/09x0r", "/m/05zppz"),
    ("/m/04rlf", "/m/05r5c"),
    ("/m/09x0r", "/m/04rlf", "/m/02zsn"),
)


def ontology_nodes() -> list[dict]:
    """The world's ontology.json content: AudioSet-format nodes (id, name, ..., child_ids, restrictions)."""
    return [
        {
            "id": node_id,
            "name": name,
            "description": "",
            "citation_uri": "",
            "positive_examples": [],
            "child_ids": list(children),
            "restrictions": list(restrictions),
        }
        for node_id, name, children, restrictions in _ONTOLOGY
    ]


# --------------------------------------------------------------------------------------------
# VOC2007


def _voc_xml(image_id: str, width: int, height: int, objects: list[dict]) -> str:
    lines = [
        "<annotation>", "\t<folder>VOC2007</folder>", f"\t<filename>{image_id}.jpg</filename>",
        "\t<source>", "\t\t<database>The soundsup synthetic VOC2007 Database</database>",
        "\t\t<annotation>soundsup synthetic world</annotation>", "\t\t<image>rendered</image>", "\t</source>",
        "\t<size>", f"\t\t<width>{width}</width>", f"\t\t<height>{height}</height>", "\t\t<depth>3</depth>",
        "\t</size>", "\t<segmented>0</segmented>",
    ]  # fmt: skip
    for item in objects:
        xmin, ymin, xmax, ymax = item["bbox"]
        lines += [
            "\t<object>", f"\t\t<name>{item['class']}</name>", f"\t\t<pose>{item['pose']}</pose>",
            f"\t\t<truncated>{int(item['truncated'])}</truncated>",
            f"\t\t<difficult>{int(item['difficult'])}</difficult>", "\t\t<bndbox>",
            f"\t\t\t<xmin>{xmin}</xmin>", f"\t\t\t<ymin>{ymin}</ymin>", f"\t\t\t<xmax>{xmax}</xmax>",
            f"\t\t\t<ymax>{ymax}</ymax>", "\t\t</bndbox>", "\t</object>",
        ]  # fmt: skip
    return "\n".join(lines + ["</annotation>"]) + "\n"


def _make_voc_image(
    root: Path, image_id: str, scene: Scene, primary: str, image_seed: int, size: int
) -> list[dict]:
    rng = np.random.default_rng([image_seed, _VOC])
    short_side = int(round(size * rng.uniform(0.72, 1.0)))
    width, height = (size, short_side) if rng.uniform() < 0.75 else (short_side, size)
    layout = sample_layout(scene, width, height, rng, primary_class=primary)
    image, objects = draw_layout(layout, 0.0)
    Image.fromarray(image).save(root / "JPEGImages" / f"{image_id}.jpg", quality=90)
    (root / "Annotations" / f"{image_id}.xml").write_text(_voc_xml(image_id, width, height, objects))
    return objects


def _image_labels(objects: list[dict]) -> dict[str, int]:
    """VOC image labels: 1 if a non-difficult instance, 0 if only difficult ones, else absent (-1)."""
    labels: dict[str, int] = {}
    for item in objects:
        labels[item["class"]] = max(labels.get(item["class"], 0), 0 if item["difficult"] else 1)
    return labels


def _assign_scenes(ids: list[str], rng: np.random.Generator) -> dict[str, tuple[Scene, str]]:
    """Scenes in turn over a shuffled split, each image with a primary class cycling in its scene."""
    order = rng.permutation(len(ids))
    assigned = {}
    for rank, index in enumerate(order):
        scene = SCENES[rank % len(SCENES)]
        assigned[ids[index]] = (scene, scene.classes[(rank // len(SCENES)) % len(scene.classes)])
    return assigned


def write_voc(root: Path, config: SyntheticConfig, seed: int, pool: concurrent.futures.Executor) -> dict:
    """Write a VOC2007 layout under ``root`` and return its counts (images, class positives)."""
    rng = np.random.default_rng([seed, _VOC])
    n_total = config.n_voc_trainval + config.n_voc_test
    ids = [f"{number:06d}" for number in range(1, n_total + 1)]
    in_trainval = rng.permutation(n_total) < config.n_voc_trainval
    splits = {"trainval": [i for i, keep in zip(ids, in_trainval, strict=True) if keep]}
    splits["test"] = [i for i, keep in zip(ids, in_trainval, strict=True) if not keep]
    in_train = rng.permutation(len(splits["trainval"])) < (len(splits["trainval"]) + 1) // 2
    splits["train"] = [i for i, keep in zip(splits["trainval"], in_train, strict=True) if keep]
    splits["val"] = [i for i, keep in zip(splits["trainval"], in_train, strict=True) if not keep]
    assigned = {**_assign_scenes(splits["trainval"], rng), **_assign_scenes(splits["test"], rng)}
    seeds = dict(zip(ids, rng.integers(2**63, size=n_total).tolist(), strict=True))
    for folder in ("JPEGImages", "Annotations", "ImageSets/Main"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    jobs = {
        image_id: pool.submit(
            _make_voc_image, root, image_id, *assigned[image_id], seeds[image_id], config.voc_image_size
        )
        for image_id in ids
    }
    labels = {image_id: _image_labels(job.result()) for image_id, job in jobs.items()}
    main = root / "ImageSets" / "Main"
    for split in ("train", "val", "trainval", "test"):
        for name in VOC_CLASSES:
            rows = [f"{image_id} {labels[image_id].get(name, -1):2d}" for image_id in splits[split]]
            (main / f"{name}_{split}.txt").write_text("\n".join(rows) + "\n")
    for split in ("train", "val", "trainval", "test"):  # the split lists (readiness markers) last
        (main / f"{split}.txt").write_text("\n".join(splits[split]) + "\n")
    return {
        "n_images": n_total,
        "splits": {split: len(members) for split, members in splits.items()},
        "class_counts": {split: _class_counts(labels, splits[split]) for split in ("trainval", "test")},
    }


def _class_counts(labels: dict[str, dict[str, int]], members: list[str]) -> dict[str, dict[str, int]]:
    return {
        name: {
            "positive": sum(1 for i in members if labels[i].get(name) == 1),
            "difficult_only": sum(1 for i in members if labels[i].get(name) == 0),
        }
        for name in VOC_CLASSES
    }


# --------------------------------------------------------------------------------------------
# Videos


def _ffmpeg_command(path: Path, config: SyntheticConfig, audio_fd: int | None) -> list[str]:
    command = [
        ffmpeg_binary(), "-nostdin", "-hide_banner", "-loglevel", "error", "-y",
        "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{config.video_width}x{config.video_height}",
        "-r", str(config.fps), "-i", "pipe:0",
    ]  # fmt: skip
    if audio_fd is not None:
        command += ["-f", "f32le", "-ar", str(config.audio_sample_rate), "-ac", "1", "-i", f"pipe:{audio_fd}"]
    command += ["-map", "0:v"] + (["-map", "1:a"] if audio_fd is not None else [])
    command += [
        "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-threads", "1",
        "-g", str(config.fps), "-keyint_min", str(config.fps), "-sc_threshold", "0",
    ]  # fmt: skip
    command += ["-c:a", "aac", "-aac_coder", "fast", "-b:a", "96k"] if audio_fd is not None else ["-an"]
    command += [
        "-fflags",
        "+bitexact",
        "-flags:v",
        "+bitexact",
        "-flags:a",
        "+bitexact",
        "-map_metadata",
        "-1",
    ]
    return command + [str(path)]


def encode_video(path: Path, frames: np.ndarray, audio: np.ndarray | None, config: SyntheticConfig) -> None:
    """Encode uint8 frames (n, H, W, 3) and float32 mono audio (samples,) into one mp4.

    One ffmpeg process reads the frames on stdin and the audio on a second pipe (an inherited
    descriptor, same number in the child); ``audio=None`` writes a video without an audio stream.
    """
    if audio is None:
        command = _ffmpeg_command(path, config, None)
        result = subprocess.run(command, input=frames.tobytes(), capture_output=True, timeout=300)
        _check_ffmpeg(result.returncode, result.stderr, path)
        return
    read_end, write_end = os.pipe()
    command = _ffmpeg_command(path, config, read_end)
    try:
        process = subprocess.Popen(
            command,
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            pass_fds=(read_end,),
        )
    finally:
        os.close(read_end)
    writer = threading.Thread(target=_write_all, args=(write_end, audio.astype("<f4").tobytes()), daemon=True)
    writer.start()
    try:
        _, stderr = process.communicate(input=frames.tobytes(), timeout=300)
    finally:
        writer.join(timeout=60)
    _check_ffmpeg(process.returncode, stderr, path)


def _write_all(fd: int, payload: bytes) -> None:
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
    except BrokenPipeError:
        log.warning("ffmpeg closed its audio pipe early")


def _check_ffmpeg(returncode: int, stderr: bytes, path: Path) -> None:
    if returncode != 0:
        message = stderr.decode(errors="replace").strip()[-2000:]
        raise RuntimeError(f"ffmpeg failed ({returncode}) writing {path}: {message}")


def render_video(segment: Segment, config: SyntheticConfig) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """Frames uint8 (n, H, W, 3), audio float32 (samples,) and extra labels of one video."""
    rng = np.random.default_rng([segment.seed, _VIDEO])
    n_frames = int(round(config.video_seconds * config.fps))
    layout = sample_layout(segment.scene, config.video_width, config.video_height, rng)
    frames = np.stack([draw_layout(layout, index / config.fps)[0] for index in range(n_frames)])
    audio, extra = synthesize_scene_audio(segment.scene, n_frames / config.fps, config.audio_sample_rate, rng)
    if segment.kind == "silent":
        audio = np.zeros_like(audio)
    return frames, audio, extra


def _make_video(segment: Segment, config: SyntheticConfig, videos_dir: Path) -> tuple[str, tuple[str, ...]]:
    frames, audio, extra = render_video(segment, config)
    path = videos_dir / f"{segment.ytid}.mp4"
    encode_video(path, frames, None if segment.kind == "no_audio" else audio, config)
    if segment.kind == "corrupt":  # cut before the index (moov) at the end: undecodable
        with open(path, "r+b") as handle:
            handle.truncate(max(64, int(path.stat().st_size * 0.4)))
    return segment.ytid, extra


# --------------------------------------------------------------------------------------------
# The whole world


def _executor(workers: int) -> concurrent.futures.Executor:
    """``workers`` processes (forked: rendering is Python, threads would queue on the GIL), or
    the calling process alone when ``workers`` <= 1. Each worker runs its own ffmpeg encodes."""
    if workers <= 1:
        return concurrent.futures.ThreadPoolExecutor(max_workers=1)
    return concurrent.futures.ProcessPoolExecutor(
        max_workers=workers, mp_context=multiprocessing.get_context("fork")
    )


def _staging_dir(target: Path) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    for stale in target.parent.glob(f".{target.name}.tmp-*"):
        shutil.rmtree(stale, ignore_errors=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    staging.chmod(0o755)  # mkdtemp makes it private; the result is an ordinary shared folder
    return staging


def _move_into_place(staging: Path, target: Path) -> None:
    if target.is_symlink() or target.is_file():
        target.unlink()
    elif target.exists():
        shutil.rmtree(target)
    os.replace(staging, target)


def _with_extra_labels(segments: list[Segment], extra: dict[str, tuple[str, ...]]) -> list[Segment]:
    return [
        dataclasses.replace(s, labels=s.labels + extra[s.ytid]) if extra.get(s.ytid) else s for s in segments
    ]


def make_world(
    config: SyntheticConfig,
    segments_csv: str | os.PathLike[str],
    ontology_json: str | os.PathLike[str],
    videos_dir: str | os.PathLike[str],
    voc_root: str | os.PathLike[str],
    seed: int,
    threads: int = 1,
) -> dict:
    """Write the whole synthetic world and return its summary (counts per scene and class).

    Videos and VOC are built in hidden staging folders and renamed into place; the ontology and
    then the CSV are written last (atomically), so a killed run never leaves a world that looks
    complete. ``threads`` workers render and encode at once (each encode one ffmpeg process).
    """
    started = time.perf_counter()
    videos_dir, voc_root = Path(videos_dir), Path(voc_root)
    segments = plan_world(config, seed)
    video_staging, voc_staging = _staging_dir(videos_dir), _staging_dir(voc_root)
    try:
        with _executor(threads) as pool:
            jobs = [pool.submit(_make_video, s, config, video_staging) for s in segments if s.has_video]
            extra = dict(job.result() for job in jobs)
            encoded = time.perf_counter()
            log.info("encoded %d videos in %.1f s", len(jobs), encoded - started)
            voc_summary = write_voc(voc_staging, config, seed, pool)
            log.info("wrote %d VOC images in %.1f s", voc_summary["n_images"], time.perf_counter() - encoded)
        _move_into_place(video_staging, videos_dir)
        _move_into_place(voc_staging, voc_root)
    except BaseException:
        shutil.rmtree(video_staging, ignore_errors=True)
        shutil.rmtree(voc_staging, ignore_errors=True)
        raise
    segments = _with_extra_labels(segments, extra)
    write_json(ontology_json, ontology_nodes())
    text, malformed = segments_csv_text(segments, config.n_malformed_lines, seed)
    write_text(segments_csv, text)
    summary = _summary(config, seed, segments, malformed, voc_summary)
    summary["seconds"] = round(time.perf_counter() - started, 2)
    log.info("synthetic world ready in %.1f s: %s", summary["seconds"], summary["videos"])
    return summary


def _summary(
    config: SyntheticConfig, seed: int, segments: list[Segment], malformed: list[int], voc: dict
) -> dict:
    def ids(kind: str) -> list[str]:
        return sorted(s.ytid for s in segments if s.kind == kind)

    good = [s for s in segments if s.kind == "ok"]
    return {
        "seed": seed,
        "config": dataclasses.asdict(config),
        "scenes": [_scene_entry(scene, good) for scene in SCENES],
        "videos": {
            "ok": len(good),
            "short": sorted(s.ytid for s in good if s.short),
            "silent": ids("silent"),
            "no_audio": ids("no_audio"),
            "corrupt": ids("corrupt"),
            "missing": ids("missing"),
            "music_speech": ids("music_speech"),
        },
        "malformed_lines": malformed,
        "video_scenes": {s.ytid: s.scene for s in segments if s.scene is not None},
        "voc": voc,
    }


def _scene_entry(scene: Scene, good: list[Segment]) -> dict:
    return {
        "name": scene.name,
        "sound": scene.sound,
        "labels": list(scene.labels),
        "classes": list(scene.classes),
        "n_videos": sum(1 for s in good if s.scene == scene.name),
    }


__all__ = ["SCENES", "VOC_CLASSES", "SyntheticConfig", "Segment", "make_world", "plan_world", "render_video"]
