"""Tables and figures of the frozen-feature evaluations (:mod:`soundsup.svm`).

Inputs are the files their rules write: per (model, layer) ``svm/{layer}/ap.csv`` (per-class
test AP of the cross-validated SVMs; columns ``class, ap, ...``, AP in [0, 1]) and
``lowshot/{layer}/map.csv`` (one row per size, sample and cost: ``positives, sample, cost, map,
selected``, mAP in percent), per model ``knn/ap.csv`` (``layer, class, ap, ...``). Models are
described by ``{model: {"arch": ..., "init": ...}}`` (the workflow's model list, in its order).

Tables (mAP in percent, the step AP of :mod:`soundsup.metrics`; rounded to two decimals when
written by :func:`soundsup.tables.write_table`; rows grouped by architecture, AlexNet then
ResNet-18, each group in the workflow's order):

- ``svm_layers``: one row per model, one column per layer (every layer of both architectures
  that any model has, in network order; empty where a model's architecture has no such layer),
  then ``best_layer`` and ``best_map``.
- ``svm_lowshot``: one row per (model, layer, positives per class): ``map_mean``, ``map_sd``
  (sample standard deviation over the samples; NaN for one sample) and ``n_samples`` at the
  reported cost, and that ``cost``.
- ``knn_layers``: as ``svm_layers``, for the k-NN classifier, with its ``k``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from soundsup.canvas import new_figure, save_png
from soundsup.config import FROZEN_LAYERS

log = logging.getLogger(__name__)

LAYER_ORDER: tuple[str, ...] = tuple(layer for layers in FROZEN_LAYERS.values() for layer in layers)
LOWSHOT_COLUMNS = ("positives", "sample", "cost", "map", "selected")
LOWSHOT_TABLE_COLUMNS = (
    "model", "arch", "init", "layer", "positives", "map_mean", "map_sd", "n_samples", "cost",
)  # fmt: skip
ARCH_TITLES = {"alexnet": "AlexNet", "resnet18": "ResNet-18"}


class FrozenTableError(ValueError):
    """An input of the frozen-feature tables is malformed; the message names the file."""


def _read(path: str | Path, columns: Sequence[str]) -> pd.DataFrame:
    try:
        frame = pd.read_csv(path)
    except (OSError, ValueError, pd.errors.ParserError) as error:
        raise FrozenTableError(f"{path}: cannot be read as CSV ({error})") from error
    missing = [column for column in columns if column not in frame.columns]
    if missing:
        raise FrozenTableError(f"{path}: lacks column(s) {', '.join(missing)}")
    if frame.empty:
        raise FrozenTableError(f"{path}: no rows")
    return frame


def _map_of(frame: pd.DataFrame, path: str | Path) -> float:
    values = pd.to_numeric(frame["ap"], errors="coerce")
    if values.isna().any() or not values.between(0, 1).all():
        raise FrozenTableError(f"{path}: AP must be numbers in [0, 1]")
    return 100 * float(values.mean())


def _in_order(models: Mapping[str, Mapping[str, str]]) -> list[str]:
    """The models grouped by architecture (in :data:`FROZEN_LAYERS` order), each group in the
    given order."""
    archs = list(FROZEN_LAYERS)
    rank = {model: (archs.index(spec["arch"]) if spec["arch"] in archs else len(archs), index)
            for index, (model, spec) in enumerate(models.items())}  # fmt: skip
    return sorted(models, key=rank.__getitem__)


def _wide(maps: Mapping[tuple[str, str], float], models: Mapping[str, Mapping[str, str]]) -> pd.DataFrame:
    layers = [layer for layer in LAYER_ORDER if any(key[1] == layer for key in maps)]
    rows = []
    for model in _in_order(models):
        spec = models[model]
        row = {"model": model, "arch": spec["arch"], "init": spec["init"]}
        row.update({layer: maps.get((model, layer), np.nan) for layer in layers})
        measured = {layer: row[layer] for layer in layers if not np.isnan(row[layer])}
        best = max(measured, key=measured.get) if measured else None
        row.update(best_layer=best, best_map=measured[best] if best else np.nan)
        rows.append(row)
    return pd.DataFrame(rows, columns=["model", "arch", "init", *layers, "best_layer", "best_map"])


def svm_layers_table(
    files: Mapping[tuple[str, str], str | Path], models: Mapping[str, Mapping[str, str]]
) -> pd.DataFrame:
    """The ``svm_layers`` table from ``{(model, layer): ap.csv}``."""
    maps = {key: _map_of(_read(path, ("class", "ap")), path) for key, path in files.items()}
    return _wide(maps, models)


def knn_table(
    files: Mapping[str, str | Path], models: Mapping[str, Mapping[str, str]], k: int
) -> pd.DataFrame:
    """The ``knn_layers`` table from ``{model: knn/ap.csv}`` (columns ``layer, class, ap``)."""
    maps = {}
    for model, path in files.items():
        frame = _read(path, ("layer", "class", "ap"))
        for layer, rows in frame.groupby("layer", sort=False):
            maps[(model, str(layer))] = _map_of(rows, path)
    table = _wide(maps, models)
    table.insert(3, "k", k)
    return table


def lowshot_table(
    files: Mapping[tuple[str, str], str | Path], models: Mapping[str, Mapping[str, str]]
) -> pd.DataFrame:
    """The ``svm_lowshot`` table from ``{(model, layer): map.csv}``."""
    rows = []
    for (model, layer), path in files.items():
        frame = _read(path, LOWSHOT_COLUMNS)
        selected = frame[frame["selected"].astype(str).str.lower() == "true"]
        if selected.empty or selected.groupby("positives")["cost"].nunique().gt(1).any():
            raise FrozenTableError(f"{path}: needs exactly one selected cost per size")
        for positives, group in selected.groupby("positives"):
            maps = pd.to_numeric(group["map"], errors="coerce")
            if maps.isna().any():
                raise FrozenTableError(f"{path}: mAP of size {positives} is not a number")
            rows.append(
                {
                    "model": model,
                    "arch": models[model]["arch"],
                    "init": models[model]["init"],
                    "layer": layer,
                    "positives": int(positives),
                    "map_mean": float(maps.mean()),
                    "map_sd": float(maps.std(ddof=1)) if len(maps) > 1 else np.nan,
                    "n_samples": len(maps),
                    "cost": float(group["cost"].iloc[0]),
                }
            )
    order = {model: index for index, model in enumerate(_in_order(models))}
    table = pd.DataFrame(rows, columns=list(LOWSHOT_TABLE_COLUMNS))
    if table.empty:
        return table
    table["_order"] = table["model"].map(order)
    table["_layer"] = table["layer"].map(LAYER_ORDER.index)
    return (
        table.sort_values(["_order", "_layer", "positives"])
        .drop(columns=["_order", "_layer"])
        .reset_index(drop=True)
    )


# ---------------------------------------------------------------------------------------------
# figures


def read_table(path: str | Path) -> pd.DataFrame:
    """A table written by :func:`soundsup.tables.write_table` (an empty table keeps its columns)."""
    try:
        return pd.read_csv(path)
    except (OSError, ValueError, pd.errors.ParserError) as error:
        raise FrozenTableError(f"{path}: cannot be read as CSV ({error})") from error


def _styles(table: pd.DataFrame) -> dict[str, dict]:
    """Line style per model: sound-pretrained (and other) models in colours, random grey dashed,
    ImageNet black."""
    from matplotlib import colormaps

    palette = colormaps["tab10"].colors + colormaps["Dark2"].colors
    styles, colour = {}, 0
    for model, init in dict(zip(table["model"], table["init"], strict=True)).items():
        if init == "random":
            styles[model] = {"color": "0.45", "linestyle": "--", "marker": "s"}
        elif init == "imagenet":
            styles[model] = {"color": "black", "linestyle": "-", "marker": "D"}
        else:
            styles[model] = {"color": palette[colour % len(palette)], "linestyle": "-", "marker": "o"}
            colour += 1
    return styles


def plot_svm_layers(
    table: pd.DataFrame, path: str | Path, title: str = "linear SVM on frozen features"
) -> None:
    """mAP by layer, one line per model, one panel per architecture (the ``svm_layers`` table)."""
    archs = [arch for arch in FROZEN_LAYERS if (table["arch"] == arch).any()]
    if not archs:
        raise FrozenTableError("the svm_layers table has no model of a known architecture")
    styles = _styles(table)
    figure = new_figure(5.2 * len(archs), 4.6)
    for axes, arch in zip(
        np.atleast_1d(figure.subplots(1, len(archs), squeeze=False)[0]), archs, strict=True
    ):
        layers = [layer for layer in FROZEN_LAYERS[arch] if layer in table.columns]
        for _, row in table[table["arch"] == arch].iterrows():
            values = pd.to_numeric(row[layers], errors="coerce").to_numpy(dtype=float)
            axes.plot(range(len(layers)), values, label=row["model"], **styles[row["model"]])
        axes.set_xticks(range(len(layers)), layers)
        axes.set_xlabel("layer")
        axes.set_ylabel("VOC07 test mAP (%)")
        axes.set_title(f"{ARCH_TITLES[arch]}: {title}")
        axes.grid(alpha=0.3)
        axes.legend(fontsize=7, loc="best")
    save_png(figure, path)


def plot_lowshot(table: pd.DataFrame, path: str | Path) -> None:
    """mAP against positives per class (log scale), mean and sd over the samples, one line per
    model, one panel per (architecture, layer) (the ``svm_lowshot`` table)."""
    if table.empty:  # svm.lowshot_layers names no layer: say so on the figure
        figure = new_figure(5.0, 2.0)
        figure.text(0.5, 0.5, "no low-shot layers (svm.lowshot_layers is empty)", ha="center", va="center")
        save_png(figure, path)
        return
    panels = [
        (arch, layer)
        for arch in FROZEN_LAYERS
        for layer in FROZEN_LAYERS[arch]
        if ((table["arch"] == arch) & (table["layer"] == layer)).any()
    ]
    styles = _styles(table.drop_duplicates("model"))
    columns = min(len(panels), 4)
    n_rows = -(-len(panels) // columns)
    figure = new_figure(4.6 * columns, 4.0 * n_rows)
    grid = figure.subplots(n_rows, columns, squeeze=False)
    for index, (arch, layer) in enumerate(panels):
        axes = grid[index // columns][index % columns]
        rows = table[(table["arch"] == arch) & (table["layer"] == layer)]
        for model, group in rows.groupby("model", sort=False):
            sd = group["map_sd"].fillna(0.0)
            axes.errorbar(
                group["positives"], group["map_mean"], yerr=sd, capsize=2, label=model, **styles[model]
            )
        sizes = sorted(rows["positives"].unique())
        axes.set_xscale("log", base=2)
        axes.set_xticks(sizes, [str(size) for size in sizes])
        axes.set_xlabel("positive images per class")
        axes.set_ylabel("VOC07 test mAP (%)")
        axes.set_title(f"{ARCH_TITLES[arch]} {layer}: low-shot SVM")
        axes.grid(alpha=0.3)
        axes.legend(fontsize=7, loc="best")
    for index in range(len(panels), n_rows * columns):
        grid[index // columns][index % columns].set_visible(False)
    save_png(figure, path)


def tabulate_frozen(
    *,
    svm_paths: Sequence[str | Path],
    svm_runs: Sequence[Sequence[str]],
    lowshot_paths: Sequence[str | Path],
    lowshot_runs: Sequence[Sequence[str]],
    knn_paths: Sequence[str | Path],
    models: Mapping[str, Mapping[str, str]],
    knn_k: int,
    svm_table_path: str | Path,
    lowshot_table_path: str | Path,
    knn_table_path: str | Path,
) -> None:
    """Rule ``tabulate_frozen``: the three tables from every job's file. ``svm_runs`` and
    ``lowshot_runs`` are the ``[model, layer]`` of each file, in order; ``knn_paths`` follow
    ``models``."""
    from soundsup.tables import write_table

    def keyed(
        paths: Sequence[str | Path], runs: Sequence[Sequence[str]]
    ) -> dict[tuple[str, str], str | Path]:
        if len(paths) != len(runs):
            raise FrozenTableError(f"{len(paths)} files for {len(runs)} (model, layer) runs")
        return {(str(model), str(layer)): path for (model, layer), path in zip(runs, paths, strict=True)}

    if len(knn_paths) != len(models):
        raise FrozenTableError(f"{len(knn_paths)} k-NN files for {len(models)} models")
    write_table(svm_layers_table(keyed(svm_paths, svm_runs), models), svm_table_path)
    write_table(lowshot_table(keyed(lowshot_paths, lowshot_runs), models), lowshot_table_path)
    write_table(knn_table(dict(zip(models, knn_paths, strict=True)), models, knn_k), knn_table_path)


def plot_frozen(
    svm_table_path: str | Path, lowshot_table_path: str | Path, svm_png: str | Path, lowshot_png: str | Path
) -> None:
    """Rule ``plot_frozen``: the SVM-by-layer and low-shot figures from their tables."""
    plot_svm_layers(read_table(svm_table_path), svm_png)
    plot_lowshot(read_table(lowshot_table_path), lowshot_png)
