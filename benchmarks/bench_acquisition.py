"""Acquisition speed: selection, download, local cuts and pair extraction, each against a naive baseline.

- selection: ``read_segments`` + ``select_segments`` on a generated AudioSet-format CSV
  (default 2,000,000 rows, the size of unbalanced_train) vs a csv-module loop doing the same
  checks and the Music/Speech filter row by row;
- download: ``download_shard`` (yt-dlp's Python API in a reused worker process) from a
  loopback HTTP server vs one ``yt-dlp`` command-line process per clip;
- rerun: checking a cached shard against its records (size + SHA-256) vs probing every clip
  (decoding it), as a cache without records must;
- deadline: how long a page that drips 1 KB/s holds a download with ``timeout_s=2``, vs an
  HTTP read with a 2-s socket timeout alone (which the drip never trips);
- local source: seconds per clip of ``download_shard(source=local)`` on the demo's clip
  (12 s, 128x96, 10 fps, H.264 + AAC);
- extraction: ``extract_shard`` on one core (one ffmpeg process per clip) vs separate ffmpeg
  calls for each frame and each audio window doing the same work (the frame on screen at the
  pair time, the mean of the two channels).

Run: ``python benchmarks/bench_acquisition.py [--rows N] [--clips N] [--width W --height H --fps F]``.
"""

from __future__ import annotations

import argparse
import csv
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from httpserver import MediaServer  # noqa: E402

from soundsup.audioset import MUSIC, SPEECH, SelectConfig, exclusively_under, read_segments, select_segments  # noqa: E402
from soundsup.clips import record_path  # noqa: E402
from soundsup.download import DownloadConfig, download_shard  # noqa: E402
from soundsup.ffmpeg import ffmpeg_binary, ffmpeg_on_path  # noqa: E402
from soundsup.pairs import ON_SCREEN, PairConfig, extract_shard, pair_times  # noqa: E402

ALPHABET = np.frombuffer(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-", np.uint8)


def label_pool() -> tuple[list[str], dict[str, dict]]:
    """527 eight-character label ids and an ontology: 150 under Music, 20 under Speech."""
    others = [f"/m/0{index:04x}" for index in range(525)]
    labels = [MUSIC, SPEECH, *others]
    nodes = {label: {"id": label, "name": label, "child_ids": []} for label in labels}
    nodes[MUSIC]["child_ids"] = others[:150]
    nodes[SPEECH]["child_ids"] = others[150:170]
    return labels, nodes


def digits(values: np.ndarray, width: int) -> np.ndarray:
    """Zero-padded decimal digits of non-negative integers as ASCII, shape (n, width)."""
    powers = 10 ** np.arange(width - 1, -1, -1)
    return ((values[:, None] // powers) % 10 + 48).astype(np.uint8)


def write_big_csv(path: Path, n_rows: int, seed: int = 0) -> None:
    """An AudioSet-format CSV of ``n_rows`` rows, built as fixed-width byte rows (vectorised)."""
    rng = np.random.default_rng(seed)
    labels, _ = label_pool()
    label_bytes = np.frombuffer("".join(labels).encode(), np.uint8).reshape(len(labels), 8)
    header = (
        "# Segments csv created Sun Mar  5 10:54:31 2017\n"
        f"# num_ytids={n_rows}, num_segs={n_rows}, num_unique_labels=527, num_positive_labels=0\n"
        "# YTID, start_seconds, end_seconds, positive_labels\n"
    )
    blocks = [header.encode()]
    for n_labels, count in zip((1, 2, 3), np.bincount(rng.integers(0, 3, n_rows), minlength=3), strict=True):
        start_ms = rng.integers(0, 890, count) * 1000 + rng.choice([0, 0, 0, 500], count)
        parts = [
            ALPHABET[rng.integers(0, 64, (count, 11))],
            np.frombuffer(b", ", np.uint8)[None].repeat(count, 0),
            digits(start_ms // 1000, 3),
            np.full((count, 1), 46, np.uint8),
            digits(start_ms % 1000, 3),
            np.frombuffer(b", ", np.uint8)[None].repeat(count, 0),
            digits(start_ms // 1000 + 10, 3),
            np.full((count, 1), 46, np.uint8),
            digits(start_ms % 1000, 3),
            np.frombuffer(b', "', np.uint8)[None].repeat(count, 0),
        ]
        picks = rng.integers(0, len(labels), (count, n_labels))
        for position in range(n_labels):
            if position:
                parts.append(np.full((count, 1), 44, np.uint8))
            parts.append(label_bytes[picks[:, position]])
        parts.append(np.frombuffer(b'"\n', np.uint8)[None].repeat(count, 0))
        blocks.append(np.concatenate(parts, axis=1).tobytes())
    path.write_bytes(b"".join(blocks))


def naive_selection(path: Path, ontology: dict, min_duration_s: float) -> int:
    """The obvious loop: csv module, per-row checks and per-row label filter."""
    excluded = exclusively_under(ontology, [MUSIC, SPEECH])
    pattern = re.compile(r"^[A-Za-z0-9_-]{11}$")
    rows = []
    with open(path, newline="") as handle:
        for row in csv.reader(handle, skipinitialspace=True):
            if not row or row[0].startswith("#") or len(row) != 4 or not pattern.match(row[0]):
                continue
            try:
                start, end = float(row[1]), float(row[2])
            except ValueError:
                continue
            labels = row[3].split(",")
            if (
                start < end
                and end - start >= min_duration_s
                and not all(label in excluded for label in labels)
            ):
                rows.append((row[0], start, end, row[3]))
    return len(pd.DataFrame(rows, columns=["ytid", "start", "end", "labels"]))


def bench_selection(n_rows: int, folder: Path) -> tuple[float, float]:
    path = folder / "segments.csv"
    began = time.perf_counter()
    write_big_csv(path, n_rows)
    print(
        f"selection: generated {n_rows:,} rows ({path.stat().st_size / 1e6:.0f} MB) "
        f"in {time.perf_counter() - began:.1f} s"
    )
    _, ontology = label_pool()
    began = time.perf_counter()
    segments, bad = read_segments(path)
    parsed = time.perf_counter() - began
    selected = select_segments(segments, ontology, SelectConfig(n_segments=27500), n_shards=100, seed=0)
    ours = time.perf_counter() - began
    began = time.perf_counter()
    n_naive = naive_selection(path, ontology, 3.75)
    naive = time.perf_counter() - began
    print(
        f"selection: ours {ours:.2f} s (parse {parsed:.2f} s, {len(segments):,} rows, {len(bad)} bad, "
        f"{len(selected):,} sampled); naive csv loop {naive:.2f} s ({n_naive:,} kept); {naive / ours:.1f}x"
    )
    return ours, naive


def make_clip(path: Path, width: int, height: int, fps: int, seconds: float = 12.0) -> None:
    command = [
        ffmpeg_binary(),
        "-hide_banner",
        "-loglevel",
        "error",
        "-y",
        "-f",
        "lavfi",
        "-i",
        f"testsrc2=size={width}x{height}:rate={fps}:duration={seconds}",
        "-f",
        "lavfi",
        "-i",
        f"sine=frequency=440:sample_rate=44100:duration={seconds}",
        "-af",
        "pan=stereo|c0=c0|c1=c0",  # stereo, as nearly every upload is
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-g",
        str(fps),
        "-pix_fmt",
        "yuv420p",
        "-c:a",
        "aac",
        "-shortest",
        str(path),
    ]
    subprocess.run(command, check=True, capture_output=True)


def clip_ids(count: int) -> list[str]:
    return [f"benchclip{index:02d}" for index in range(count)]


def segments_of(ids: list[str]) -> pd.DataFrame:
    return pd.DataFrame({"ytid": ids, "start": 1.0, "end": 11.0, "labels": "/m/0838f"})


def bench_download(server: MediaServer, ids: list[str], folder: Path) -> tuple[float, float, pd.DataFrame]:
    config = DownloadConfig(url_template=server.url("{ytid}.mp4"), concurrency=1, retries=0, reencode=False)
    began = time.perf_counter()
    manifest = download_shard(segments_of(ids), folder / "cache", config)
    ours = time.perf_counter() - began
    assert (manifest["status"] == "ok").all(), manifest[["ytid", "reason", "message"]]
    began = time.perf_counter()
    for ytid in ids:
        command = [
            sys.executable,
            "-m",
            "yt_dlp",
            "--quiet",
            "--no-warnings",
            "--download-sections",
            "*1-11",
            "-o",
            str(folder / "naive" / f"{ytid}.%(ext)s"),
            server.url(f"{ytid}.mp4"),
        ]
        subprocess.run(command, check=True, capture_output=True)
    naive = time.perf_counter() - began
    n = len(ids)
    print(
        f"download (loopback, stream copy, 1 worker): ours {n / ours:.2f} clips/s; "
        f"one yt-dlp process per clip {n / naive:.2f} clips/s; {naive / ours:.1f}x"
    )
    return ours, naive, manifest


def bench_rerun(server: MediaServer, ids: list[str], folder: Path) -> tuple[float, float]:
    """Seconds per clip of a rerun on a complete cache: with records, and without (probe)."""
    config = DownloadConfig(url_template=server.url("{ytid}.mp4"), concurrency=1, retries=0, reencode=False)
    n_requests = len(server.requests)
    began = time.perf_counter()
    download_shard(segments_of(ids), folder / "cache", config)
    ours = (time.perf_counter() - began) / len(ids)
    for clip in (folder / "cache").glob("*.mp4"):
        record_path(clip).unlink()
    began = time.perf_counter()
    download_shard(segments_of(ids), folder / "cache", config)
    probed = (time.perf_counter() - began) / len(ids)
    assert len(server.requests) == n_requests, "a rerun on a complete cache requested something"
    print(
        f"rerun on a cached shard: records {ours * 1000:.1f} ms/clip; probing each clip "
        f"{probed * 1000:.1f} ms/clip; {probed / ours:.1f}x"
    )
    return ours, probed


def bench_deadline(server: MediaServer, folder: Path, drip_s: float) -> tuple[float, float]:
    """Seconds a dripping page holds one download (timeout_s=2) vs a socket timeout of 2 s alone."""
    config = DownloadConfig(url_template=server.url("{ytid}.mp4"), timeout_s=2, retries=0, concurrency=1)
    began = time.perf_counter()
    manifest = download_shard(segments_of(["drippage000"]), folder / "drip", config)
    ours = time.perf_counter() - began
    assert manifest["reason"].tolist() == ["timeout"], manifest["message"].tolist()
    began = time.perf_counter()
    try:
        with urllib.request.urlopen(server.url("drippage000.mp4"), timeout=2) as response:
            while response.read(65536):
                pass
    except (TimeoutError, OSError):
        pass
    socket_only = time.perf_counter() - began
    print(
        f"deadline (a page dripping 1 KB/s for {drip_s:g} s, timeout_s=2): released after {ours:.1f} s "
        f"(worker start included); a 2-s socket timeout alone held it {socket_only:.1f} s"
    )
    return ours, socket_only


def naive_extraction(manifest: pd.DataFrame, config: PairConfig) -> int:
    """Separate ffmpeg calls per pair: one for the frame, one for the audio window (stereo clips)."""
    size, count = config.frame_size, 0
    scale = f"scale=w='if(gte(iw,ih),-1,{size})':h='if(gte(iw,ih),{size},-1)',crop={size}:{size}"
    for row in manifest.itertuples():
        for time_s in pair_times(row.seconds, config):
            base = [ffmpeg_binary(), "-hide_banner", "-loglevel", "error", "-nostdin"]
            frame = subprocess.run(
                [
                    *base,
                    "-noaccurate_seek",
                    "-ss",
                    str(time_s),
                    "-i",
                    row.path,
                    "-vf",
                    f"{ON_SCREEN},{scale}",
                    "-frames:v",
                    "1",
                    "-f",
                    "rawvideo",
                    "-pix_fmt",
                    "rgb24",
                    "pipe:1",
                ],
                capture_output=True,
            )
            audio = subprocess.run(
                [
                    *base,
                    "-ss",
                    str(time_s - config.window_s / 2),
                    "-t",
                    str(config.window_s),
                    "-i",
                    row.path,
                    "-af",
                    "pan=mono|c0=0.5*c0+0.5*c1",
                    "-ar",
                    str(config.sample_rate),
                    "-f",
                    "f32le",
                    "pipe:1",
                ],
                capture_output=True,
            )
            count += int(len(frame.stdout) == size * size * 3 and len(audio.stdout) > 0)
    return count


def bench_extraction(manifest: pd.DataFrame, frame_size: int) -> tuple[float, float, int]:
    """Seconds per pair, ours and naive, alternating clip by clip (fair under a changing load)."""
    config = PairConfig(frame_size=frame_size)
    ours = naive = 0.0
    n_ours = n_naive = n_failed = 0
    for position in range(len(manifest)):
        row = manifest.iloc[position : position + 1]
        began = time.perf_counter()
        index, _, _, failures = extract_shard(row, config, threads=1)
        ours += time.perf_counter() - began
        n_ours, n_failed = n_ours + len(index), n_failed + len(failures)
        began = time.perf_counter()
        n_naive += naive_extraction(row, config)
        naive += time.perf_counter() - began
    print(
        f"extraction (one core, {frame_size} px): ours {n_ours / ours:.1f} pairs/s, "
        f"{1e3 * ours / len(manifest):.0f} ms per clip ({n_ours} pairs, {n_failed} clips failed); "
        f"separate ffmpeg calls {n_naive / naive:.1f} pairs/s; "
        f"{(naive / n_naive) / (ours / n_ours):.1f}x"
    )
    return ours / n_ours, naive / n_naive, n_ours


def bench_local(videos: Path, ids: list[str], folder: Path, reencode: bool) -> float:
    config = DownloadConfig(
        source="local", local_dir=str(videos), concurrency=1, retries=0, reencode=reencode
    )
    began = time.perf_counter()
    manifest = download_shard(segments_of(ids), folder / f"local-{reencode}", config)
    seconds = (time.perf_counter() - began) / len(ids)
    assert (manifest["status"] == "ok").all(), manifest[["ytid", "reason", "message"]]
    print(f"local source ({'re-encode' if reencode else 'stream copy'}): {seconds:.3f} s/clip")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=2_000_000, help="rows of the generated segments CSV")
    parser.add_argument("--clips", type=int, default=24, help="clips downloaded and extracted")
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--height", type=int, default=96)
    parser.add_argument("--fps", type=int, default=10)
    parser.add_argument("--frame-size", type=int, default=256)
    parser.add_argument("--drip-s", type=float, default=20.0, help="how long the dripping page drips")
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    ffmpeg_on_path()
    folder = Path(tempfile.mkdtemp(prefix="bench-acquisition-"))
    try:
        select_ours, select_naive = bench_selection(args.rows, folder)
        videos = folder / "videos"
        videos.mkdir()
        ids = clip_ids(args.clips)
        make_clip(videos / f"{ids[0]}.mp4", args.width, args.height, args.fps)
        for ytid in ids[1:]:
            shutil.copyfile(videos / f"{ids[0]}.mp4", videos / f"{ytid}.mp4")
        with MediaServer(videos, {"drippage000.mp4": ("drip", 1000, args.drip_s)}) as server:
            download_ours, download_naive, manifest = bench_download(server, ids, folder)
            rerun_ours, rerun_probe = bench_rerun(server, ids, folder)
            deadline_ours, deadline_socket = bench_deadline(server, folder, args.drip_s)
        local_copy = bench_local(videos, ids, folder, reencode=False)
        bench_local(videos, ids[: max(1, len(ids) // 4)], folder, reencode=True)
        pair_ours, pair_naive, _ = bench_extraction(manifest, args.frame_size)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    n_pairs = 2 * len(ids)
    pipeline_ours = download_ours / n_pairs + pair_ours
    pipeline_naive = download_naive / n_pairs + pair_naive
    print(
        f"pipeline (download + extraction, one core): ours {1 / pipeline_ours:.1f} pairs/s; naive (a yt-dlp "
        f"process + separate ffmpeg calls per clip) {1 / pipeline_naive:.1f} pairs/s"
    )
    print(
        f"RESULT acquisition: selection of {args.rows:,} rows {select_ours:.1f} s "
        f"({select_naive / select_ours:.1f}x the csv loop); download {len(ids) / download_ours:.1f} clips/s "
        f"({download_naive / download_ours:.1f}x a yt-dlp process per clip); "
        f"rerun {rerun_ours * 1000:.1f} ms/clip ({rerun_probe / rerun_ours:.0f}x probing); "
        f"a dripping page released after {deadline_ours:.1f} s at timeout_s=2 "
        f"(socket timeout alone {deadline_socket:.0f} s); local {local_copy:.3f} s/clip; "
        f"extraction {1 / pair_ours:.1f} pairs/s, {2e3 * pair_ours:.0f} ms per 2-pair clip, on one core "
        f"({pair_naive / pair_ours:.1f}x separate ffmpeg "
        f"calls; {pipeline_naive / pipeline_ours:.1f}x the naive download + extraction)"
    )


if __name__ == "__main__":
    main()
