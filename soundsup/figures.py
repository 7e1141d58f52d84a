"""The paper's figures: mAP against k, texture against MFCC, cluster montages (Fig. 1), the
images that most activate chosen filters (Fig. 2), and pretext training curves.

Every figure is a :class:`matplotlib.figure.Figure` on the canvas of :mod:`soundsup.canvas`
(Agg, no pyplot, written atomically as PNG, uncropped: ``figsize * DPI`` pixels). Table inputs
are the frames of :func:`soundsup.tables.build_table1` or the same table read back from its CSV.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

from soundsup.canvas import new_figure, save_png
from soundsup.names import ARCHS, FEATURES, MODES, ModelName

log = logging.getLogger(__name__)

_COLORS = {("alexnet", "head"): "tab:blue", ("alexnet", "all"): "tab:orange",
           ("resnet18", "head"): "tab:green", ("resnet18", "all"): "tab:red"}  # fmt: skip
_FEATURE_COLORS = {"texture": "tab:purple", "mfcc": "tab:olive"}


class FigureError(ValueError):
    """An input of a figure is malformed; the message names what is wrong."""


def _rows(table1: pd.DataFrame, source: str, init: str) -> pd.DataFrame:
    rows = table1.loc[(table1["source"] == source) & (table1["init"] == init)].copy()
    if init == "sound":
        rows["k"] = pd.to_numeric(rows["k"]).astype(int)
    return rows


def plot_results(
    table1_path: str | Path, map_vs_k_path: str | Path, features_path: str | Path, feature: str
) -> None:
    """The two figures of Table 1: mAP against k for ``feature``, and the features compared."""
    table1 = pd.read_csv(table1_path)
    plot_map_vs_k(table1, map_vs_k_path, feature=feature)
    plot_feature_comparison(table1, features_path)


def plot_map_vs_k(table1: pd.DataFrame, path: str | Path, feature: str = "texture") -> None:
    """Write :func:`map_vs_k_figure` of ``table1`` as a PNG."""
    save_png(map_vs_k_figure(table1, feature), path)


def map_vs_k_figure(table1: pd.DataFrame, feature: str = "texture") -> Figure:
    """VOC mAP against the number of clusters k for one sound ``feature``, measured rows only.

    One line per (arch, mode), lines nudged sideways a little (centred on k) so that points at
    the same k do not hide each other; an error bar (sd over seeds) only on a point measured
    with two seeds or more (``{mode}_n`` of table 1); the random-init network of the same
    (arch, mode) as a dashed horizontal line, in a band of +-1 sd when it has several seeds.
    Published rows (real VOC 2007 numbers, any method name) never share these axes: when
    ``table1`` has some, they get a panel of their own on the right (:func:`_published_panel`),
    13 x 5 inches in all instead of 7.5 x 5.
    """
    if feature not in FEATURES:
        raise FigureError(f"unknown feature {feature!r}; expected one of {FEATURES}")
    published = table1.loc[table1["source"] == "published"]
    published = published.loc[published["head_map"].notna() | published["all_map"].notna()]
    figure = new_figure(13.0 if len(published) else 7.5, 5.0)
    if len(published):  # two subfigures: each panel's layout (its legend, its labels) its own
        measured_side, published_side = figure.subfigures(1, 2, width_ratios=(7.5, 5.5))
        axes = measured_side.add_subplot()
        _published_panel(published_side.add_subplot(), published)
    else:
        axes = figure.add_subplot()
    sound = _rows(table1, "measured", "sound")
    sound = sound.loc[sound["feature"] == feature].sort_values("k")
    random = _rows(table1, "measured", "random")
    ks = sorted(set(sound["k"]))
    nudge = 0.012 * (max(ks) - min(ks)) if len(ks) > 1 else 0.05
    lines = {key: sound.loc[(sound["arch"] == key[0]) & sound[f"{key[1]}_map"].notna()] for key in _COLORS}
    lines = {key: line for key, line in lines.items() if len(line)}
    drawn = 0
    for series, ((arch, mode), line) in enumerate(lines.items()):
        color = _COLORS[(arch, mode)]
        x = line["k"] + (series - (len(lines) - 1) / 2) * nudge
        y = line[f"{mode}_map"]
        axes.plot(x, y, color=color, marker="o", label=f"{arch}, {mode} {_seed_count(line, mode)}")
        several = _several_seeds(line, mode)
        if several.any():
            sd = pd.to_numeric(line[f"{mode}_sd"])
            axes.errorbar(x[several], y[several], yerr=sd[several], fmt="none", ecolor=color, capsize=3)
        drawn += 1
    for (arch, mode), color in _COLORS.items():
        base = random.loc[(random["arch"] == arch) & random[f"{mode}_map"].notna()]
        if len(base):
            level = float(base[f"{mode}_map"].iloc[0])
            label = f"random init {arch}, {mode} {_seed_count(base.iloc[[0]], mode)}"
            axes.axhline(level, color=color, linestyle="--", linewidth=1.2, label=label)
            if _several_seeds(base, mode).iloc[0]:
                spread = float(base[f"{mode}_sd"].iloc[0])
                axes.axhspan(level - spread, level + spread, color=color, alpha=0.12, linewidth=0)
            drawn += 1
    if drawn == 0:
        message = f"no measured results for feature '{feature}'"
        axes.text(0.5, 0.5, message, ha="center", va="center", transform=axes.transAxes)
    if ks:
        axes.set_xticks(ks)
    if len(ks) == 1:  # one k: centre it rather than let the nudged points set the limits
        axes.set_xlim(ks[0] - 1, ks[0] + 1)
    axes.set_xlabel("number of sound clusters k")
    axes.set_ylabel("VOC 2007 mAP (%)")
    axes.set_title(f"Measured: mAP vs number of clusters ({feature} features)")
    axes.grid(alpha=0.3)
    if drawn:  # below the axes, where it covers no point
        axes.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=2, frameon=False)
    return figure


def _several_seeds(rows: pd.DataFrame, mode: str) -> pd.Series:
    """Which rows of table 1 have a spread over seeds in ``mode``: 2+ seeds (``{mode}_n``) and an sd."""
    n_seeds = pd.to_numeric(rows[f"{mode}_n"], errors="coerce").fillna(0)
    return (n_seeds >= 2) & pd.to_numeric(rows[f"{mode}_sd"], errors="coerce").notna()


def _seed_count(rows: pd.DataFrame, mode: str) -> str:
    """``(1 seed)``, ``(3 seeds)`` or ``(1-3 seeds)``: how many seeds the rows' ``mode`` means average."""
    counts = pd.to_numeric(rows[f"{mode}_n"], errors="coerce").dropna().astype(int)
    if not len(counts):
        return "(seeds unknown)"
    low, high = counts.min(), counts.max()
    if low == high:
        return f"({low} seed{'s' if low != 1 else ''})"
    return f"({low}-{high} seeds)"


def _published_label(row: pd.Series) -> str:
    """``method [n]`` from a published row: the method as printed, the citation's reference number."""
    method = str(row["method"]) if pd.notna(row.get("method")) else str(row.get("model"))
    match = re.match(r"\s*(\[\d+\])", str(row.get("citation", "")))
    return f"{method} {match[1]}" if match else method


def _published_panel(axes, published: pd.DataFrame) -> None:
    """Horizontal bars of published head and all mAP, one pair per method, in the table's order.

    A number the source does not print gets no bar and the words "not printed". Labels are the methods
    as printed with their reference numbers, so any method name works.
    """
    labels = [_published_label(row) for _, row in published.iterrows()]
    positions = np.arange(len(published))[::-1]
    height = 0.38
    for offset, mode, color in ((height / 2, "head", "0.55"), (-height / 2, "all", "0.2")):
        values = pd.to_numeric(published[f"{mode}_map"], errors="coerce").to_numpy()
        present = ~np.isnan(values)
        axes.barh(positions[present] + offset, values[present], height, color=color, label=mode)
        for y, value, shown in zip(positions + offset, values, present, strict=True):
            text = f"{value:g}" if shown else "not printed"
            axes.text((value if shown else 0) + 0.8, y, text, va="center", fontsize=6.5)
    axes.set_yticks(positions, labels, fontsize=7.5)
    axes.set_xlim(0, 100)
    axes.set_xlabel("mAP (%) as printed (AP definition not stated)")
    quoted_from = published["quoted_from"].dropna().unique() if "quoted_from" in published else []
    source = ", ".join(quoted_from) if len(quoted_from) else "published"
    axes.set_title(f"Published, real PASCAL VOC 2007\n({source})", fontsize=10)
    axes.grid(axis="x", alpha=0.3)
    axes.legend(fontsize=8, loc="lower right", title="fine-tuned", title_fontsize=8)


def _bar_panel(axes, sound: pd.DataFrame, random: pd.DataFrame, arch: str, mode: str) -> None:
    """Bars texture vs MFCC at each k for one (arch, mode), random baseline dashed; absent bars
    skipped; an error bar (sd over seeds) only on a bar of two seeds or more."""
    ks = sorted(set(sound["k"]))
    width = 0.8 / len(FEATURES)
    for index, feature in enumerate(FEATURES):
        rows = sound.loc[sound["feature"] == feature].set_index("k")
        present = [k for k in ks if k in rows.index]
        if not present:
            continue
        heights = np.array([rows.at[k, f"{mode}_map"] for k in present], dtype=float)
        offset = (index - (len(FEATURES) - 1) / 2) * width
        positions = np.array([ks.index(k) + offset for k in present])
        axes.bar(positions, heights, width, color=_FEATURE_COLORS[feature], label=feature)
        several = _several_seeds(rows.loc[present], mode).to_numpy()
        if several.any():
            errors = pd.to_numeric(rows.loc[present, f"{mode}_sd"]).to_numpy()[several]
            axes.errorbar(
                positions[several], heights[several], yerr=errors, fmt="none", ecolor="black", capsize=2
            )
    base = random.loc[random["arch"] == arch, f"{mode}_map"].dropna()
    if len(base):
        axes.axhline(base.iloc[0], color="black", linestyle="--", linewidth=1, label="random init")
    axes.set_xticks(np.arange(len(ks)), [str(k) for k in ks])
    axes.set_xlim(-0.6, len(ks) - 0.4)
    axes.set_xlabel("number of sound clusters k")
    axes.set_ylabel("VOC 2007 mAP (%)")
    axes.set_title(f"{arch}, {mode}")
    axes.grid(axis="y", alpha=0.3)


def plot_feature_comparison(table1: pd.DataFrame, path: str | Path) -> None:
    """Write :func:`feature_comparison_figure` of ``table1`` as a PNG."""
    save_png(feature_comparison_figure(table1), path)


def feature_comparison_figure(table1: pd.DataFrame) -> Figure:
    """Texture statistics vs MFCC: grouped bars (one per feature) at each k, one panel per (arch, mode)
    that has models of both features (of one feature only where no (arch, mode) has both)."""
    sound = _rows(table1, "measured", "sound")
    random = _rows(table1, "measured", "random")
    n_features = {
        (arch, mode): sound.loc[(sound["arch"] == arch) & sound[f"{mode}_map"].notna(), "feature"].nunique()
        for arch in ARCHS
        for mode in MODES
    }
    panels = [panel for panel, count in n_features.items() if count > 1]
    panels = panels or [panel for panel, count in n_features.items() if count]
    columns = 2 if len(panels) > 1 else 1
    rows = max(1, math.ceil(len(panels) / columns))
    figure = new_figure(5.5 * columns, 3.8 * rows + 0.4)
    figure.suptitle("Sound texture statistics vs MFCC as the pretext target (VOC 2007 mAP)")
    if not panels:
        axes = figure.add_subplot()
        axes.text(0.5, 0.5, "no measured sound-supervised models", ha="center", va="center")
        axes.set_axis_off()
    legend = {}
    for index, (arch, mode) in enumerate(panels):
        axes = figure.add_subplot(rows, columns, index + 1)
        subset = sound.loc[(sound["arch"] == arch) & sound[f"{mode}_map"].notna()]
        _bar_panel(axes, subset, random, arch, mode)
        legend.update(zip(*reversed(axes.get_legend_handles_labels()), strict=True))
    if legend:
        figure.legend(
            list(legend.values()), list(legend), loc="outside lower center", ncol=len(legend), fontsize=9
        )
    return figure


def _check_frames(frames: np.ndarray, name: str = "frames") -> None:
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise FigureError(f"{name} must be (N, S, S, 3) uint8, got shape {frames.shape} dtype {frames.dtype}")


def _mosaic(tiles: np.ndarray, columns: int, gutter: int = 2) -> np.ndarray:
    """Tile ``tiles`` (M, H, W, 3) uint8 into rows of ``columns`` on a white background."""
    count, height, width, _ = tiles.shape
    rows = max(1, math.ceil(count / columns))
    canvas = np.full(
        (rows * height + (rows - 1) * gutter, columns * width + (columns - 1) * gutter, 3),
        255,
        dtype=np.uint8,
    )
    for index in range(count):
        row, column = divmod(index, columns)
        top, left = row * (height + gutter), column * (width + gutter)
        canvas[top : top + height, left : left + width] = tiles[index]
    return canvas


def montage_rows(
    clusters: np.ndarray, per_cluster: int = 8, max_clusters: int = 12, seed: int = 0
) -> list[tuple[int, int, np.ndarray]]:
    """What the montage shows: ``(cluster id, cluster size, chosen frame indices)`` per row.

    Rows are the ``max_clusters`` largest clusters, largest first (ties: lower id first); each
    holds up to ``per_cluster`` frame indices drawn without replacement with
    ``numpy.random.default_rng(seed)``, sorted.
    """
    clusters = np.asarray(clusters)
    if clusters.ndim != 1 or len(clusters) == 0:
        raise FigureError(
            f"clusters must be a non-empty (N,) array of cluster ids, got shape {clusters.shape}"
        )
    ids, sizes = np.unique(clusters, return_counts=True)
    order = np.lexsort((ids, -sizes))[:max_clusters]
    rng = np.random.default_rng(seed)
    rows = []
    for cluster, size in zip(ids[order], sizes[order], strict=True):
        members = np.flatnonzero(clusters == cluster)
        chosen = np.sort(rng.choice(members, size=min(per_cluster, len(members)), replace=False))
        rows.append((cluster.item(), int(size), chosen))
    return rows


def plot_clusters(
    labels_path: str | Path,
    index_paths: Sequence[str | Path],
    frame_paths: Sequence[str | Path],
    path: str | Path,
    seed: int,
) -> None:
    """Rule ``plot_clusters``: Fig. 1 from the cluster labels and the shards' frames, read
    memory-mapped (each checked against its index): only the frames shown are read."""
    from soundsup.shards import aligned_frames, read_aligned_labels

    labels, _ = read_aligned_labels(labels_path, index_paths)
    frames = aligned_frames(frame_paths, index_paths)
    plot_cluster_montage(frames, labels["cluster"].to_numpy(), path, seed=seed)


def plot_cluster_montage(
    frames: np.ndarray,
    clusters: np.ndarray,
    path: str | Path,
    per_cluster: int = 8,
    max_clusters: int = 12,
    seed: int = 0,
) -> None:
    """Paper Fig. 1: one row per sound cluster (largest first), ``per_cluster`` random frames each.

    ``frames``: (N, S, S, 3) uint8, an array or :class:`soundsup.shards.ShardFrames` (only the
    frames shown are read); ``clusters``: (N,) integer cluster ids. The rows are those of
    :func:`montage_rows`; the row label gives the cluster id and its size.
    """
    _check_frames(frames)
    if np.shape(clusters) != (len(frames),):
        raise FigureError(
            f"clusters must have shape ({len(frames)},) to match frames, got {np.shape(clusters)}"
        )
    rows = montage_rows(clusters, per_cluster, max_clusters, seed)
    n_clusters = len(np.unique(clusters))
    side = frames.shape[1]
    gutter = max(2, side // 16)
    blank = np.full(frames.shape[1:], 255, dtype=np.uint8)
    tiles = [
        tile
        for _, _, chosen in rows
        for tile in [frames[index] for index in chosen] + [blank] * (per_cluster - len(chosen))
    ]
    figure = new_figure(1.0 + 0.9 * per_cluster, 0.7 + 0.9 * len(rows))
    axes = figure.add_subplot()
    axes.imshow(_mosaic(np.stack(tiles), per_cluster, gutter), interpolation="nearest")
    centres = [row * (side + gutter) + side / 2 for row in range(len(rows))]
    axes.set_yticks(centres, [f"cluster {cluster}\n(n={size})" for cluster, size, _ in rows])
    axes.set_xticks([])
    axes.tick_params(axis="y", length=0, labelsize=8)
    for spine in axes.spines.values():
        spine.set_visible(False)
    shown = f"{len(rows)} largest of {n_clusters}" if n_clusters > len(rows) else f"all {n_clusters}"
    axes.set_title(f"Frames grouped by sound cluster ({shown} clusters, {len(frames)} frames)")
    save_png(figure, path)


def read_history(path: str | Path) -> list[dict]:
    """The epochs of a ``history.jsonl`` (one JSON object per line; blank lines skipped)."""
    source = Path(path)
    if not source.is_file():
        raise FileNotFoundError(f"training history not found: {source}")
    epochs = []
    for number, line in enumerate(source.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            epochs.append(json.loads(line))
        except json.JSONDecodeError as error:
            raise FigureError(f"{source}: line {number} is not JSON ({error})") from error
    return epochs


def plot_pretext_curves(
    histories: Mapping[str, list[dict]], path: str | Path, n_clusters: Mapping[str, int]
) -> None:
    """Write :func:`pretext_curves_figure` as a PNG."""
    save_png(pretext_curves_figure(histories, n_clusters), path)


def plot_training(history_paths: Sequence[str | Path], models: Sequence[str], path: str | Path) -> None:
    """Rule ``plot_training``: the pretext curves of ``models`` (``{feature}-k{k}-{arch}``), whose
    ``history.jsonl`` files are ``history_paths``, in the same order."""
    if len(history_paths) != len(models):
        raise FigureError(f"{len(history_paths)} training histories for {len(models)} models")
    names = [ModelName.parse(model) for model in models]
    histories = {str(name): read_history(source) for name, source in zip(names, history_paths, strict=True)}
    plot_pretext_curves(histories, path, n_clusters={str(name): int(name.k) for name in names})


def pretext_curves_figure(histories: Mapping[str, list[dict]], n_clusters: Mapping[str, int]) -> Figure:
    """Pretext validation accuracy per epoch, one line per model (training accuracy dashed, same
    colour), and chance, 1/k, as a dash-dotted grey line for each distinct k, labelled.

    ``histories``: model name -> the epochs of its ``history.jsonl`` (keys ``epoch``,
    ``val_acc`` and, when present, ``train_acc``); ``n_clusters``: model name -> its k.
    """
    absent = [model for model in histories if model not in n_clusters]
    if absent:
        raise FigureError(f"no number of clusters k given for {absent}")
    bad = sorted({int(n_clusters[model]) for model in histories if int(n_clusters[model]) < 1})
    if bad:
        raise FigureError(f"number of clusters must be >= 1; got {bad}")
    figure = new_figure(7.5, 5.0)
    axes = figure.add_subplot()
    palette = matplotlib.colormaps["tab10" if len(histories) <= 10 else "tab20"]
    for index, (model, epochs) in enumerate(histories.items()):
        for number, entry in enumerate(epochs, start=1):
            missing = [key for key in ("epoch", "val_acc") if key not in entry]
            if missing:
                raise FigureError(f"history of {model}: entry {number} lacks {missing}")
        color = palette(index % palette.N)
        x = [entry["epoch"] for entry in epochs]
        axes.plot(
            x,
            [entry["val_acc"] for entry in epochs],
            color=color,
            marker="." if len(x) < 30 else None,
            label=model,
        )
        if all("train_acc" in entry for entry in epochs):
            axes.plot(x, [entry["train_acc"] for entry in epochs], color=color, linestyle="--", linewidth=0.9)
    if not histories:
        axes.text(0.5, 0.5, "no training histories", ha="center", va="center", transform=axes.transAxes)
    for k in sorted({int(n_clusters[model]) for model in histories}):
        axes.axhline(1 / k, color="0.35", linestyle="-.", linewidth=1.1, label=f"chance 1/{k} (k={k})")
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.set_xlabel("epoch")
    axes.set_ylabel("accuracy (predicting the sound cluster)")
    axes.set_title("Pretext training: accuracy per epoch")
    axes.grid(alpha=0.3)
    if histories:
        handles, labels = axes.get_legend_handles_labels()
        handles += [Line2D([], [], color="gray"), Line2D([], [], color="gray", linestyle="--")]
        labels += ["validation (solid)", "training (dashed)"]
        axes.legend(handles, labels, fontsize=8, ncol=2 if len(histories) > 8 else 1)
    return figure
