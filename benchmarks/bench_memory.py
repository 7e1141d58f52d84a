"""Peak host memory of loading the pretext training data, as a ratio to the frames' bytes.

Generates a few GB of shards like ``extract_pairs`` writes them (``frames.npy`` uint8
N x S x S x 3 per shard, ``index.parquet``) and a ``labels.parquet`` with about 5 % silent
pairs (cluster -1), then runs each way of loading in a fresh process and reads its peak
resident set (``os.wait4``):

- ours: what ``workflow_scripts/train_pretext.py`` calls, ``soundsup.shards.load_pretext_data``
  (one preallocated array filled from the files, only the rows with a cluster);
- baseline: the adapter's previous lines, ``pd.concat`` of the indices, ``np.concatenate`` of
  ``np.load`` of every shard, then the mask ``frames[keep]`` (both arrays stay alive, as they
  did through training);
- imports only: the interpreter with what the adapter imports (numpy, pandas, torch and
  torchvision: about 1 GB resident with a CUDA build of torch), the constant both pay.

Each path ends by handing the frames to torch as ``train_pretext`` does
(``torch.from_numpy(np.ascontiguousarray(frames))``, no copy).

    .venv/bin/python benchmarks/bench_memory.py [--gigabytes 4] [--frame-size 256] [--shards 20]

The generated files (``--gigabytes`` of frames) are written under ``--folder`` (default: the
system's temporary folder) and deleted at the end; the baseline needs about 2.3 times
``--gigabytes`` of free memory. The imports take about 1 GB whatever the size, so the ratio
of the peak to the frames approaches the share of frames kept (0.95) as the data grows.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

CHILD_SETUP = """
import sys
import numpy as np
import pandas as pd
import torch
# what the adapter imports before it loads
from soundsup.device import pick_device, retain_freed_host_memory, set_threads
from soundsup.gpu import claim_gpu
from soundsup.io import write_meta
from soundsup.pretext import PretextConfig, train_pretext
from soundsup.shards import load_pretext_data
folder = sys.argv[1]
n = int(sys.argv[2])
frame_paths = [f"{folder}/frames-{shard}.npy" for shard in range(n)]
index_paths = [f"{folder}/index-{shard}.parquet" for shard in range(n)]
labels_path = f"{folder}/labels.parquet"
"""

CHILDREN = {
    "imports only": "",
    "ours": """
data = load_pretext_data(labels_path, index_paths, frame_paths)
tensor = torch.from_numpy(np.ascontiguousarray(data.frames))
assert len(tensor) == len(data.targets) == len(data.groups)
""",
    "baseline": """
labels = pd.read_parquet(labels_path)
pairs = pd.concat([pd.read_parquet(path) for path in index_paths], ignore_index=True)
if not labels["pair_id"].equals(pairs["pair_id"]):
    raise ValueError("labels do not line up with the pair indices")
frames = np.concatenate([np.load(path) for path in frame_paths])
keep = labels["cluster"].to_numpy() >= 0
kept, targets = frames[keep], labels["cluster"].to_numpy()[keep].astype(np.int64)
groups = pairs["ytid"].to_numpy()[keep]
tensor = torch.from_numpy(np.ascontiguousarray(kept))
""",
}


def write_shards(folder: Path, n_shards: int, per_shard: int, side: int, silent: float, seed: int) -> int:
    """Shards of ``per_shard`` frames with varied content; returns the frames' total bytes."""
    rng = np.random.default_rng(seed)
    pattern = rng.integers(0, 256, (64, side, side, 3), dtype=np.uint8)
    ids = []
    for shard in range(n_shards):
        frames = np.empty((per_shard, side, side, 3), np.uint8)
        for start in range(0, per_shard, len(pattern)):
            block = frames[start : start + len(pattern)]
            np.add(pattern[: len(block)], np.uint8((shard * 7 + start) % 256), out=block)
        np.save(folder / f"frames-{shard}.npy", frames)
        pair_ids = [f"c{shard:03d}{row // 2:06d}_0_{row % 2}" for row in range(per_shard)]
        ytids = [pair_id.split("_")[0] for pair_id in pair_ids]
        pd.DataFrame({"pair_id": pair_ids, "ytid": ytids}).to_parquet(folder / f"index-{shard}.parquet")
        ids += pair_ids
    clusters = np.where(rng.random(len(ids)) < silent, -1, rng.integers(0, 15, len(ids)))
    pd.DataFrame({"pair_id": ids, "cluster": clusters}).to_parquet(folder / "labels.parquet")
    return n_shards * per_shard * side * side * 3


def peak_rss(code: str, folder: Path, n_shards: int) -> tuple[float, float]:
    """(peak RSS in bytes, seconds) of a fresh interpreter running ``CHILD_SETUP + code``."""
    began = time.perf_counter()
    with tempfile.TemporaryFile() as stderr:
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD_SETUP + code, str(folder), str(n_shards)],
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
        _, status, usage = os.wait4(child.pid, 0)
        if os.waitstatus_to_exitcode(status) != 0:
            stderr.seek(0)
            raise RuntimeError(stderr.read().decode(errors="replace")[-3000:])
    return usage.ru_maxrss * 1024.0, time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gigabytes", type=float, default=4.0, help="frames generated (GB, 1e9 bytes)")
    parser.add_argument("--frame-size", type=int, default=256)
    parser.add_argument("--shards", type=int, default=20)
    parser.add_argument("--silent", type=float, default=0.05, help="fraction of pairs without a cluster")
    parser.add_argument("--folder", default=tempfile.gettempdir())
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    frame_bytes = args.frame_size**2 * 3
    per_shard = max(1, int(args.gigabytes * 1e9 / frame_bytes / args.shards))
    needed = args.shards * per_shard * frame_bytes
    free = shutil.disk_usage(args.folder).free
    if free < 1.5 * needed:
        sys.exit(
            f"{args.folder} has {free / 1e9:.1f} GB free; {needed / 1e9:.1f} GB of shards need 1.5x that"
        )
    folder = Path(tempfile.mkdtemp(prefix="bench-memory-", dir=args.folder))
    try:
        began = time.perf_counter()
        total = write_shards(folder, args.shards, per_shard, args.frame_size, args.silent, args.seed)
        print(
            f"{args.shards} shards x {per_shard} frames of {args.frame_size} px = {total / 1e9:.2f} GB "
            f"of frames, written in {time.perf_counter() - began:.1f} s"
        )
        peaks = {}
        for name, code in CHILDREN.items():
            peaks[name], seconds = peak_rss(code, folder, args.shards)
            ratio = peaks[name] / total
            print(
                f"{name:13s} peak RSS {peaks[name] / 1e9:6.2f} GB = {ratio:.2f}x the frames ({seconds:.1f} s)"
            )
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    constant = peaks["imports only"]
    ours, baseline = peaks["ours"], peaks["baseline"]
    above_ours, above_baseline = (ours - constant) / total, (baseline - constant) / total
    print(
        f"above the {constant / 1e9:.2f} GB of the imports: ours {above_ours:.2f}x the frames, "
        f"baseline {above_baseline:.2f}x"
    )
    print(
        f"RESULT bench_memory: {total / 1e9:.2f} GB of frames; peak RSS ours {ours / 1e9:.2f} GB = "
        f"{ours / total:.2f}x the frames ({above_ours:.2f}x above the imports; target <= 1.2x), "
        f"concatenate + mask {baseline / 1e9:.2f} GB = {baseline / total:.2f}x ({above_baseline:.2f}x); "
        f"{baseline / ours:.1f}x less memory"
    )


if __name__ == "__main__":
    main()
