"""What the folder and VGGSound sources cost before any clip is cut.

1. The folder scan that every Snakemake start makes in world folder (file metadata only):
   :func:`soundsup.folder.folder_snapshot` on a tree of N empty video files, against
   ``os.walk`` + ``lstat`` of the same tree (the floor of any scan), in the same run.
2. What those N videos add to planning: ``snakemake -n`` of a folder config over the tree,
   against the same config over a folder of one video.
3. Reading the VGGSound CSV: :func:`soundsup.vggsound.read_vggsound` (validation, quoting,
   line numbers) on R rows in the published format, against ``pandas.read_csv`` of the same
   file without any check, and :func:`select_vggsound` on the result.

Usage: python benchmarks/bench_sources.py [--videos 20000] [--shards 100] [--rows 200000]
"""

from __future__ import annotations

import argparse
import os
import random
import string
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import yaml

from soundsup.audioset import SelectConfig
from soundsup.folder import DEFAULT_EXTENSIONS, folder_snapshot
from soundsup.vggsound import VGGSoundConfig, read_vggsound, select_vggsound

REPO = Path(__file__).resolve().parent.parent
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))
EXCERPT = REPO / "tests" / "data" / "vggsound" / "vggsound_excerpt.csv"


def best_of(function, rounds: int = 3) -> float:
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return min(times)


def make_tree(root: Path, n_videos: int) -> None:
    per_folder = 100
    for index in range(n_videos):
        folder = root / f"folder {index // per_folder:04d}"
        if index % per_folder == 0:
            folder.mkdir(parents=True)
        (folder / f"video {index % per_folder:03d}.mp4").touch()


def walk_and_stat(root: Path) -> int:
    count = 0
    for directory, _, files in os.walk(root):
        for name in files:
            os.lstat(os.path.join(directory, name))
            count += 1
    return count


def plan_seconds(workdir: Path, folder: Path, shards: int) -> float:
    config = workdir / "config.yaml"
    config.write_text(yaml.safe_dump({"world": "folder", "shards": shards, "folder": {"path": str(folder)}}))
    command = [SNAKEMAKE, "results/dataset.csv", "-n", "--quiet", "rules", "--snakefile",
               str(REPO / "Snakefile"), "--directory", str(workdir), "--configfile", str(config)]  # fmt: skip
    start = time.perf_counter()
    subprocess.run(command, capture_output=True, text=True, check=True)
    return time.perf_counter() - start


def make_vggsound_csv(path: Path, n_rows: int) -> None:
    rows = [line.split(",", 1)[1] for line in EXCERPT.read_text().splitlines()]
    rng = random.Random(0)
    alphabet = string.ascii_letters + string.digits + "-_"
    with path.open("w") as handle:
        for index in range(n_rows):
            handle.write(
                "".join(rng.choice(alphabet) for _ in range(11)) + "," + rows[index % len(rows)] + "\n"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=20000)
    parser.add_argument("--shards", type=int, default=100)
    parser.add_argument("--rows", type=int, default=200000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-sources-") as scratch:
        scratch = Path(scratch)
        tree, single = scratch / "videos", scratch / "one video"
        make_tree(tree, args.videos)
        make_tree(single, 1)
        walk = best_of(lambda: walk_and_stat(tree))
        scan = best_of(lambda: folder_snapshot(tree, DEFAULT_EXTENSIONS, args.shards, "folders"))
        print(f"scan of {args.videos} videos: os.walk + lstat {walk:.3f} s, folder_snapshot {scan:.3f} s")
        (scratch / "run-one").mkdir()
        (scratch / "run-tree").mkdir()
        plan_one = min(plan_seconds(scratch / "run-one", single, args.shards) for _ in range(3))
        plan_tree = min(plan_seconds(scratch / "run-tree", tree, args.shards) for _ in range(3))
        print(
            f"snakemake -n, {args.shards} shards: one video {plan_one:.2f} s, "
            f"{args.videos} videos {plan_tree:.2f} s (best of 3)"
        )

        csv_path = scratch / "vggsound.csv"
        make_vggsound_csv(csv_path, args.rows)
        names = ["ytid", "start", "label", "split"]
        plain = best_of(
            lambda: pd.read_csv(csv_path, header=None, names=names, dtype=str, keep_default_na=False)
        )
        ours = best_of(lambda: read_vggsound(csv_path))
        segments, _ = read_vggsound(csv_path)
        select = SelectConfig(n_segments=min(33500, args.rows), exclude_labels=[])
        config = VGGSoundConfig(exclude_labels=("male speech, man speaking",))
        selecting = best_of(lambda: select_vggsound(segments, config, select, n_shards=args.shards, seed=0))
        print(f"VGGSound CSV, {args.rows} rows: pandas.read_csv {plain:.2f} s, read_vggsound {ours:.2f} s, "
              f"select_vggsound {selecting:.2f} s")  # fmt: skip
    print(
        f"RESULT bench_sources: scan {scan:.3f} s for {args.videos} videos = {scan / walk:.1f}x os.walk; "
        f"planning {plan_tree - plan_one:+.2f} s; VGGSound {args.rows} rows read in {ours:.2f} s "
        f"= {ours / plain:.1f}x pandas.read_csv unchecked"
    )


if __name__ == "__main__":
    main()
