"""Reading the per-shard arrays of the workflow without holding more than they take.

The pairs and features of a run live in one ``.npy`` file per shard (written by
:func:`soundsup.io.save_npy`), rows in the order of the shard's ``index.parquet``. At the
paper's scale the frames are 55,000 x 256 x 256 x 3 bytes = 10.8 GB, so nothing here
concatenates: :func:`concatenate_npy` reads the rows it is asked for straight into one
preallocated array (peak memory: that array plus one read buffer of ``block_bytes``), and
:class:`ShardFrames` indexes the frames of every shard as one array through memory maps
opened for each read, so a figure holds only the frames it shows.

The row order of everything that refers to pairs across shards (cluster labels, features) is
the shard order of the rules' input lists; :func:`read_aligned_labels` checks that a labels
file lines up with the pair indices and :func:`load_pretext_data` that each shard's frames
file has one row per row of its index.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

log = logging.getLogger(__name__)

BLOCK_BYTES = 64 * 2**20  # read buffer of concatenate_npy


class ShardError(ValueError):
    """A shard file is malformed or does not line up with the others; the message names it."""


@dataclass(frozen=True)
class NpyLayout:
    """Where the rows of a C-ordered ``.npy`` file lie: ``shape``, ``dtype``, data ``offset`` (bytes)."""

    path: Path
    shape: tuple[int, ...]
    dtype: np.dtype
    offset: int

    @property
    def row_bytes(self) -> int:
        return int(np.prod(self.shape[1:], dtype=np.int64)) * self.dtype.itemsize


def npy_layout(path: str | os.PathLike[str]) -> NpyLayout:
    """Read the header of ``path`` (no data); raise :class:`ShardError` if it is not a complete
    C-ordered array of at least one dimension."""
    path = Path(path)
    with open(path, "rb") as handle:
        try:
            version = np.lib.format.read_magic(handle)
            if version not in ((1, 0), (2, 0)):
                raise ValueError(f"format version {version}")
            if version == (1, 0):
                shape, fortran_order, dtype = np.lib.format.read_array_header_1_0(handle)
            else:
                shape, fortran_order, dtype = np.lib.format.read_array_header_2_0(handle)
        except ValueError as error:
            raise ShardError(f"{path}: not a .npy file ({error})") from error
        offset = handle.tell()
    if fortran_order or dtype.hasobject or not shape:
        raise ShardError(f"{path}: expected a C-ordered numeric array of rows, got {dtype} {shape}")
    layout = NpyLayout(path, tuple(int(n) for n in shape), dtype, offset)
    expected = offset + shape[0] * layout.row_bytes
    if path.stat().st_size < expected:
        raise ShardError(f"{path}: truncated ({path.stat().st_size} bytes, the header needs {expected})")
    return layout


def _shard_layouts(paths: Sequence[str | os.PathLike[str]]) -> list[NpyLayout]:
    layouts = [npy_layout(path) for path in paths]
    for layout in layouts[1:]:
        if layout.shape[1:] != layouts[0].shape[1:] or layout.dtype != layouts[0].dtype:
            raise ShardError(
                f"{layout.path} holds {layout.dtype} rows of {layout.shape[1:]}, but {layouts[0].path} "
                f"{layouts[0].dtype} rows of {layouts[0].shape[1:]}"
            )
    return layouts


def concatenate_npy(
    paths: Sequence[str | os.PathLike[str]],
    keep: Sequence[np.ndarray] | None = None,
    block_bytes: int = BLOCK_BYTES,
) -> np.ndarray:
    """The rows of the ``.npy`` files ``paths``, in order, in one new array ``(M, ...)``.

    ``keep`` (one bool mask per file, of its row count) selects rows; by default all. The rows
    are read from the files into the preallocated result through one reused buffer of about
    ``block_bytes`` (fully kept blocks straight into the result), so the peak memory is the
    result plus that buffer, never a second copy.
    """
    layouts = _shard_layouts(paths)
    if not layouts:
        raise ShardError("no .npy files to read")
    if keep is None:
        keep = [np.ones(layout.shape[0], dtype=bool) for layout in layouts]
    if len(keep) != len(layouts):
        raise ShardError(f"{len(keep)} row masks for {len(layouts)} files")
    for layout, mask in zip(layouts, keep, strict=True):
        if np.shape(mask) != (layout.shape[0],):
            raise ShardError(f"{layout.path} has {layout.shape[0]} rows, its mask {np.shape(mask)}")
    first = layouts[0]
    result = np.empty((sum(int(np.count_nonzero(mask)) for mask in keep), *first.shape[1:]), first.dtype)
    block_rows = max(1, block_bytes // max(1, first.row_bytes))
    buffer = np.empty(
        (min(block_rows, max(layout.shape[0] for layout in layouts)), *first.shape[1:]), first.dtype
    )
    filled = 0
    for layout, mask in zip(layouts, keep, strict=True):
        mask = np.asarray(mask, dtype=bool)
        with open(layout.path, "rb", buffering=0) as handle:
            for start in range(0, layout.shape[0], block_rows):
                rows = mask[start : start + block_rows]
                count = int(np.count_nonzero(rows))
                if count == 0:
                    continue
                handle.seek(layout.offset + start * layout.row_bytes)
                if count == len(rows):
                    _read_exactly(handle, result[filled : filled + count], layout.path)
                else:
                    _read_exactly(handle, buffer[: len(rows)], layout.path)
                    target = result[filled : filled + count]
                    # mode="clip" writes into the result directly ("raise" would buffer a copy)
                    np.take(buffer, np.flatnonzero(rows), axis=0, out=target, mode="clip")
                filled += count
    return result


def _read_exactly(handle, target: np.ndarray, path: Path) -> None:
    view = memoryview(target).cast("B")
    done = 0
    while done < len(view):
        got = handle.readinto(view[done:])
        if not got:
            raise ShardError(f"{path}: ended {len(view) - done} bytes early")
        done += got


def read_pair_indices(paths: Sequence[str | os.PathLike[str]]) -> pd.DataFrame:
    """The pair indices of the shards, in order, as one frame (pair_id, ytid, start, t, labels)."""
    return pd.concat([pd.read_parquet(path) for path in paths], ignore_index=True)


def read_aligned_labels(
    labels_path: str | os.PathLike[str], index_paths: Sequence[str | os.PathLike[str]]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The cluster labels (pair_id, cluster) and the pair indices, checked to be row for row the
    same pairs; raises :class:`ShardError` naming the labels file if not."""
    labels = pd.read_parquet(labels_path)
    pairs = read_pair_indices(index_paths)
    for name, frame in ((labels_path, labels), (", ".join(map(str, index_paths)), pairs)):
        missing = {"pair_id", "cluster" if frame is labels else "ytid"} - set(frame.columns)
        if missing:
            raise ShardError(f"{name}: no column {sorted(missing)}")
    if not np.array_equal(labels["pair_id"].to_numpy(dtype=object), pairs["pair_id"].to_numpy(dtype=object)):
        raise ShardError(
            f"{labels_path} ({len(labels)} rows) does not line up with the pair indices ({len(pairs)} rows) "
            "of its shards; rerun the clustering"
        )
    return labels, pairs


def _check_rows(frame_paths: Sequence, index_paths: Sequence, layouts: list[NpyLayout]) -> list[int]:
    """Rows per shard from the indices, checked against the frames files."""
    if len(frame_paths) != len(index_paths):
        raise ShardError(f"{len(frame_paths)} frames files for {len(index_paths)} pair indices")
    counts = []
    for index_path, layout in zip(index_paths, layouts, strict=True):
        rows = pq.ParquetFile(index_path).metadata.num_rows
        if rows != layout.shape[0]:
            raise ShardError(f"{layout.path} has {layout.shape[0]} frames but {index_path} {rows} pairs")
        counts.append(rows)
    return counts


@dataclass(frozen=True)
class PretextData:
    """The training data of the pretext task: the pairs that have a sound cluster.

    ``frames`` (M, S, S, 3) uint8, ``targets`` (M,) int64 cluster ids, ``groups`` (M,) object
    (the YouTube id of each pair, for the grouped validation split); ``n_pairs`` counts every
    pair of the shards, with or without a cluster.
    """

    frames: np.ndarray
    targets: np.ndarray
    groups: np.ndarray
    n_pairs: int


def load_pretext_data(
    labels_path: str | os.PathLike[str],
    index_paths: Sequence[str | os.PathLike[str]],
    frame_paths: Sequence[str | os.PathLike[str]],
    block_bytes: int = BLOCK_BYTES,
) -> PretextData:
    """Read the frames of the pairs with a cluster (label >= 0) into one preallocated array.

    Checks that the labels line up with the pair indices and each frames file with its index;
    peak memory is the kept frames once plus one read buffer (:func:`concatenate_npy`).
    """
    labels, pairs = read_aligned_labels(labels_path, index_paths)
    layouts = _shard_layouts(frame_paths)
    for layout in layouts:
        if len(layout.shape) != 4 or layout.shape[-1] != 3 or layout.dtype != np.uint8:
            raise ShardError(
                f"{layout.path}: frames must be (N, S, S, 3) uint8, got {layout.dtype} {layout.shape}"
            )
    counts = _check_rows(frame_paths, index_paths, layouts)
    clusters = labels["cluster"].to_numpy()
    keep = clusters >= 0
    edges = np.cumsum([0, *counts])
    frames = concatenate_npy(
        frame_paths, [keep[low:high] for low, high in zip(edges[:-1], edges[1:], strict=True)], block_bytes
    )
    log.info(
        "%d of %d pairs have a sound cluster: %.2f GB of frames", len(frames), len(keep), frames.nbytes / 1e9
    )
    return PretextData(
        frames=frames,
        targets=clusters[keep].astype(np.int64),
        groups=pairs["ytid"].to_numpy()[keep],
        n_pairs=len(keep),
    )


class ShardFrames:
    """The frames of many shard files as one read-only ``(N, S, S, 3)`` uint8 array.

    Nothing is read up front but the headers. Indexing with an int, a slice or an array of
    indices returns a new array of those rows, read through memory maps that are opened for the
    read and closed after it, so the process holds only the rows asked for.
    :meth:`subset` gives a lazy view of chosen rows.
    """

    def __init__(self, paths: Sequence[str | os.PathLike[str]], rows: np.ndarray | None = None) -> None:
        self._layouts = _shard_layouts(paths)
        if not self._layouts:
            raise ShardError("no frames files")
        for layout in self._layouts:
            if len(layout.shape) != 4 or layout.shape[-1] != 3 or layout.dtype != np.uint8:
                raise ShardError(
                    f"{layout.path}: frames must be (N, S, S, 3) uint8, got {layout.dtype} {layout.shape}"
                )
        self._starts = np.cumsum([0] + [layout.shape[0] for layout in self._layouts])
        total = int(self._starts[-1])
        self._rows = np.arange(total) if rows is None else np.asarray(rows, dtype=np.int64)
        if len(self._rows) and (self._rows.min() < 0 or self._rows.max() >= total):
            raise IndexError(f"rows outside [0, {total})")

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self._rows), *self._layouts[0].shape[1:])

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(np.uint8)

    @property
    def ndim(self) -> int:
        return 4

    def __len__(self) -> int:
        return len(self._rows)

    def subset(self, rows: np.ndarray) -> ShardFrames:
        """A lazy view of rows ``rows`` (int indices into this one)."""
        view = object.__new__(ShardFrames)
        view._layouts, view._starts = self._layouts, self._starts
        view._rows = self._rows[np.asarray(rows, dtype=np.int64)]
        return view

    def __getitem__(self, index) -> np.ndarray:
        if isinstance(index, (int, np.integer)):
            return self._read(self._rows[[index]])[0]
        return self._read(self._rows[index])

    def _read(self, rows: np.ndarray) -> np.ndarray:
        rows = np.atleast_1d(rows)
        result = np.empty((len(rows), *self._layouts[0].shape[1:]), np.uint8)
        shards = np.searchsorted(self._starts, rows, side="right") - 1
        for shard in np.unique(shards):
            layout = self._layouts[shard]
            where = np.flatnonzero(shards == shard)
            mapped = np.memmap(layout.path, np.uint8, "r", layout.offset, layout.shape)
            result[where] = mapped[rows[where] - self._starts[shard]]
            del mapped  # unmapped: the pages read leave the process
        return result


def aligned_frames(
    frame_paths: Sequence[str | os.PathLike[str]], index_paths: Sequence[str | os.PathLike[str]]
) -> ShardFrames:
    """:class:`ShardFrames` of ``frame_paths``, each file checked to hold one frame per pair of
    its shard's index (``index_paths``, in the same order); raises :class:`ShardError` if not."""
    frames = ShardFrames(frame_paths)
    _check_rows(frame_paths, index_paths, frames._layouts)
    return frames
