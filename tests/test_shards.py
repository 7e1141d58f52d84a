"""Shard arrays read without a second copy, checked against their indices, and the figure rules'
peak memory, which must not grow with the dataset."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from soundsup.models import build_model, save_checkpoint
from soundsup.shards import (
    ShardError,
    ShardFrames,
    aligned_frames,
    concatenate_npy,
    load_pretext_data,
    npy_layout,
)

REPO = Path(__file__).resolve().parent.parent


def write_shards(folder: Path, sizes: list[int], side: int = 8, seed: int = 0):
    """Frames files, pair indices and a labels file (some pairs silent: -1) for shards of ``sizes``."""
    rng = np.random.default_rng(seed)
    frame_paths, index_paths, blocks, ids = [], [], [], []
    for shard, size in enumerate(sizes):
        frames = rng.integers(0, 256, (size, side, side, 3), dtype=np.uint8)
        pair_ids = [f"clip{shard:02d}{row:04d}_0_{row % 2}" for row in range(size)]
        frame_paths.append(folder / f"frames-{shard}.npy")
        index_paths.append(folder / f"index-{shard}.parquet")
        np.save(frame_paths[-1], frames)
        pd.DataFrame(
            {"pair_id": pair_ids, "ytid": [f"clip{shard:02d}{row // 2:04d}" for row in range(size)]}
        ).to_parquet(index_paths[-1])
        blocks.append(frames)
        ids += pair_ids
    clusters = rng.integers(-1, 5, len(ids))
    labels_path = folder / "labels.parquet"
    pd.DataFrame({"pair_id": ids, "cluster": clusters}).to_parquet(labels_path)
    return frame_paths, index_paths, labels_path, np.concatenate(blocks), clusters


def test_concatenate_npy_reads_the_kept_rows_in_order(tmp_path):
    frame_paths, _, _, frames, _ = write_shards(tmp_path, [7, 0, 12, 5])
    np.testing.assert_array_equal(concatenate_npy(frame_paths), frames)
    rng = np.random.default_rng(1)
    masks = [rng.random(n) < 0.6 for n in (7, 0, 12, 5)]
    masks[2][:] = True  # a fully kept file, read straight into the result
    for block_bytes in (1, 3 * 8 * 8 * 3, 2**20):  # one row, three rows, everything per read
        kept = concatenate_npy(frame_paths, masks, block_bytes=block_bytes)
        np.testing.assert_array_equal(kept, frames[np.concatenate(masks)])
    features = tmp_path / "features.npy"
    np.save(features, rng.standard_normal((9, 4)).astype(np.float32))
    assert concatenate_npy([features, features]).dtype == np.float32


def test_shard_frames_index_like_the_concatenated_array(tmp_path):
    frame_paths, _, _, frames, _ = write_shards(tmp_path, [7, 0, 12, 5])
    view = ShardFrames(frame_paths)
    assert view.shape == frames.shape and view.dtype == np.uint8 and view.ndim == 4 and len(view) == 24
    np.testing.assert_array_equal(view[3], frames[3])
    np.testing.assert_array_equal(view[-1], frames[-1])
    np.testing.assert_array_equal(view[5:20], frames[5:20])
    rows = np.array([23, 0, 7, 7, 6, 19])
    np.testing.assert_array_equal(view[rows], frames[rows])
    subset = view.subset(rows)
    assert len(subset) == 6
    np.testing.assert_array_equal(subset[1:4], frames[rows[1:4]])
    np.testing.assert_array_equal(subset[0], frames[23])
    with pytest.raises(IndexError):
        view[24]


def test_pretext_data_is_the_frames_with_a_cluster(tmp_path):
    frame_paths, index_paths, labels_path, frames, clusters = write_shards(tmp_path, [7, 0, 12, 5])
    data = load_pretext_data(labels_path, index_paths, frame_paths, block_bytes=500)
    keep = clusters >= 0
    assert data.n_pairs == 24 and len(data.frames) == keep.sum()
    np.testing.assert_array_equal(data.frames, frames[keep])
    np.testing.assert_array_equal(data.targets, clusters[keep])
    assert data.targets.dtype == np.int64
    ytids = pd.concat([pd.read_parquet(path) for path in index_paths])["ytid"].to_numpy()
    assert data.groups.tolist() == ytids[keep].tolist()


def test_misaligned_or_broken_shards_are_named(tmp_path):
    frame_paths, index_paths, labels_path, _, _ = write_shards(tmp_path, [7, 4])
    no_clusters = tmp_path / "no_clusters.parquet"
    pd.read_parquet(labels_path)[["pair_id"]].to_parquet(no_clusters)
    with pytest.raises(ShardError, match=r"no_clusters.parquet: no column \['cluster'\]"):
        load_pretext_data(no_clusters, index_paths, frame_paths)
    with pytest.raises(ShardError, match="labels.parquet.*does not line up"):
        load_pretext_data(labels_path, index_paths[::-1], frame_paths[::-1])
    np.save(frame_paths[1], np.zeros((3, 8, 8, 3), np.uint8))  # one frame short of its index
    with pytest.raises(ShardError, match=r"frames-1.npy has 3 frames but .*index-1.parquet 4 pairs"):
        load_pretext_data(labels_path, index_paths, frame_paths)
    with pytest.raises(ShardError, match="frames-1.npy has 3 frames"):
        aligned_frames(frame_paths, index_paths)
    np.save(frame_paths[1], np.zeros((4, 9, 9, 3), np.uint8))
    with pytest.raises(ShardError, match=r"frames-1.npy holds uint8 rows of \(9, 9, 3\)"):
        ShardFrames(frame_paths)
    np.save(frame_paths[1], np.zeros((4, 8, 8, 3), np.float32))
    with pytest.raises(ShardError, match="frames-1.npy"):
        load_pretext_data(labels_path, index_paths, frame_paths)
    data = frame_paths[0].read_bytes()
    frame_paths[0].write_bytes(data[:-10])
    with pytest.raises(ShardError, match="frames-0.npy: truncated"):
        npy_layout(frame_paths[0])
    frame_paths[0].write_bytes(b"not an array")
    with pytest.raises(ShardError, match="frames-0.npy: not a .npy file"):
        concatenate_npy(frame_paths)
    fortran = tmp_path / "fortran.npy"
    np.save(fortran, np.asfortranarray(np.zeros((4, 3), np.float32)))
    with pytest.raises(ShardError, match="C-ordered"):
        npy_layout(fortran)


# -- peak memory of the figure rules ------------------------------------------------------------

SIDE = 128  # 49,152 bytes a frame
STAND_IN = """
import json, runpy, sys
sys.path.insert(0, sys.argv[1])
spec = json.loads(sys.argv[3])

class Files(list):
    def __init__(self, named):
        super().__init__(named.values())
        self.__dict__.update(named)

class Snakemake:
    def __init__(self, spec):
        self.input, self.output = Files(spec["input"]), Files(spec["output"])
        self.params, self.wildcards = Files(spec["params"]), Files({})
        self.log, self.threads, self.rule = [spec["log"]], 1, spec["rule"]

runpy.run_path(sys.argv[2], init_globals={"snakemake": Snakemake(spec)}, run_name="__main__")
"""


def sparse_frames(path: Path, n_frames: int) -> None:
    """A frames file of ``n_frames`` black frames that takes no disk space (a sparse file)."""
    with open(path, "wb") as handle:
        np.lib.format.write_array_header_1_0(
            handle, {"descr": "|u1", "fortran_order": False, "shape": (n_frames, SIDE, SIDE, 3)}
        )
        handle.truncate(handle.tell() + n_frames * SIDE * SIDE * 3)


def sparse_dataset(folder: Path, n_shards: int, per_shard: int) -> dict:
    folder.mkdir()
    frames, indices, ids = [], [], []
    for shard in range(n_shards):
        frames.append(str(folder / f"frames-{shard}.npy"))
        indices.append(str(folder / f"index-{shard}.parquet"))
        sparse_frames(Path(frames[-1]), per_shard)
        pair_ids = [f"s{shard:03d}r{row:06d}_0_0" for row in range(per_shard)]
        pd.DataFrame({"pair_id": pair_ids, "ytid": pair_ids}).to_parquet(indices[-1])
        ids += pair_ids
    labels = folder / "labels.parquet"
    clusters = np.random.default_rng(0).integers(-1, 4, len(ids))
    pd.DataFrame({"pair_id": ids, "cluster": clusters}).to_parquet(labels)
    return {"frames": frames, "indices": indices, "labels": str(labels)}


def peak_rss_mb(rule: str, adapter: str, spec: dict) -> float:
    """Run the real adapter with a stand-in ``snakemake`` in a child process; its peak RSS (MB)."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    arguments = [str(REPO / "workflow_scripts"), str(REPO / "workflow_scripts" / adapter), json.dumps(spec)]
    with open(spec["log"] + ".stderr", "w+b") as stderr:
        child = subprocess.Popen(
            [sys.executable, "-c", STAND_IN, *arguments], env=env, stdout=subprocess.DEVNULL, stderr=stderr
        )
        _, status, usage = os.wait4(child.pid, 0)  # the child's own resource usage
        child.returncode = os.waitstatus_to_exitcode(status)
        stderr.seek(0)
        assert child.returncode == 0, f"{rule} failed:\n{stderr.read().decode(errors='replace')[-3000:]}"
    assert Path(spec["output"]["figure"]).stat().st_size > 2000
    return usage.ru_maxrss / 1024


def test_figure_rules_peak_memory_does_not_grow_with_the_dataset(tmp_path):
    """5,000 and 20,000 frames (0.25 and 0.98 GB, sparse files): both figures read only the
    frames they use (the montage's, and the activation figure's sample of 4,000, a batch at a
    time), so the peak RSS stays the same; loading every frame added 0.74 GB."""
    model = tmp_path / "model.pt"
    save_checkpoint(model, build_model("alexnet", 4, fc_width=32), "alexnet", 4, 32)
    peaks = {}
    for name, n_shards in (("small", 2), ("large", 8)):
        data = sparse_dataset(tmp_path / name, n_shards, 2500)
        montage = {
            "rule": "plot_clusters",
            "input": {"labels": data["labels"], "frames": data["frames"], "indices": data["indices"]},
            "output": {"figure": str(tmp_path / f"{name}-montage.png")},
            "params": {"seed": 0},
            "log": str(tmp_path / f"{name}-montage.log"),
        }
        activations = {
            "rule": "plot_activations",
            "input": {"model": str(model), "frames": data["frames"]},
            "output": {"figure": str(tmp_path / f"{name}-activations.png")},
            "params": {"layer": "conv1", "n_filters": 2, "crop_size": 32, "model": "texture-k4-alexnet"},
            "log": str(tmp_path / f"{name}-activations.log"),
        }
        peaks[name] = (
            peak_rss_mb("plot_clusters", "plot_clusters.py", montage),
            peak_rss_mb("plot_activations", "plot_activations.py", activations),
        )
    for figure, small, large in zip(("montage", "activations"), *peaks.values(), strict=True):
        assert large < small + 60, (
            f"{figure}: peak RSS {small:.0f} MB at 5,000 frames, {large:.0f} MB at 20,000"
        )
