"""The paper's tables from the per-run AP files: mAP per model (table 1) and per class (table 2).

Inputs are the files the VOC stage writes, ``results/voc/{model}/{mode}/seed{seed}/ap.csv``
(columns ``class, ap, ap_voc07, n_pos, n_neg``; 20 rows in devkit order; AP in [0, 1]), with an
optional provenance sidecar ``ap.csv.meta.json``. Published numbers for comparison come from
the packaged ``soundsup/data/published.csv`` (percent, as the papers print them; see
``soundsup/data/PUBLISHED.md`` for where each number comes from).

Conventions:

- mAP is in percent (0-100). The tables' metric is the step AP (scikit-learn's
  ``average_precision_score``); the VOC2007 11-point AP is carried beside it (``*_voc07``).
- A run's mAP is the mean of its 20 class APs; a class whose AP is NaN (no positive test image)
  is left out of that mean and a warning is logged.
- Over seeds: mean, sample standard deviation (``ddof=1``) and count. The standard deviation of
  a single seed is NaN (undefined), not 0, so that one run never looks perfectly reproducible.
- Tables keep full precision in memory; :func:`write_table` rounds to two decimals.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Sequence
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd

from soundsup.io import atomic_path

log = logging.getLogger(__name__)

VOC_CLASSES: tuple[str, ...] = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train",
    "tvmonitor",
)  # fmt: skip
FEATURES: tuple[str, ...] = ("texture", "mfcc")
ARCHS: tuple[str, ...] = ("alexnet", "resnet18")
MODES: tuple[str, ...] = ("head", "all")
METRICS: tuple[str, ...] = ("ap", "ap_voc07")
PROVENANCE: tuple[str, ...] = ("git_commit", "config_hash", "n_pretext_pairs")
AP_COLUMNS: tuple[str, ...] = ("class", "ap", "ap_voc07", "n_pos", "n_neg")
PUBLISHED_COLUMNS: tuple[str, ...] = ("model", "mode", "metric", *VOC_CLASSES, "map", "citation", "note")
TABLE1_COLUMNS: tuple[str, ...] = (
    "model", "source", "init", "feature", "k", "arch",
    "head_map", "head_sd", "head_n", "all_map", "all_sd", "all_n",
    "head_map_voc07", "all_map_voc07", "n_pretext_pairs", "git_commit", "config_hash", "citation",
)  # fmt: skip
TABLE2_COLUMNS: tuple[str, ...] = ("model", "source", "mode", *VOC_CLASSES, "map")

_MODEL_PATTERN = re.compile(
    r"^(?:(?P<feature>texture|mfcc)-k(?P<k>[1-9][0-9]*)|(?P<init>random|imagenet))-(?P<arch>alexnet|resnet18)$"
)
_AP_PATH_PATTERN = re.compile(r"(?P<model>[^/]+)/(?P<mode>head|all)/seed(?P<seed>[0-9]+)/ap\.csv$")


class TableError(ValueError):
    """An input of the tables is malformed; the message names the file, row or key."""


def parse_model_name(name: str) -> dict:
    """Split ``{feature}-k{k}-{arch}``, ``random-{arch}`` or ``imagenet-{arch}`` into its parts.

    Returns ``{"model", "init", "feature", "k", "arch"}`` with ``init`` in sound|random|imagenet;
    ``feature`` and ``k`` are None for the baselines.
    """
    match = _MODEL_PATTERN.match(str(name))
    if match is None:
        raise TableError(
            f"bad model name {name!r}: expected '{{feature}}-k{{k}}-{{arch}}' (feature in {FEATURES}), "
            f"'random-{{arch}}' or 'imagenet-{{arch}}' with arch in {ARCHS}"
        )
    if match["init"] is not None:
        return {"model": name, "init": match["init"], "feature": None, "k": None, "arch": match["arch"]}
    return {
        "model": name,
        "init": "sound",
        "feature": match["feature"],
        "k": int(match["k"]),
        "arch": match["arch"],
    }


def records_from_paths(paths: Sequence[str | Path]) -> list[tuple[str, str, int, Path]]:
    """``(model, mode, seed, path)`` records from paths that end in ``{model}/{mode}/seed{seed}/ap.csv``."""
    records = []
    for path in paths:
        match = _AP_PATH_PATTERN.search(Path(path).as_posix())
        if match is None:
            raise TableError(
                f"{path}: not an AP file path of the form '{{model}}/{{mode}}/seed{{seed}}/ap.csv'"
            )
        records.append((match["model"], match["mode"], int(match["seed"]), Path(path)))
    return records


def _read_ap_file(path: Path) -> pd.DataFrame:
    """One run's AP file, checked: 20 rows in devkit order, AP values in [0, 1] or NaN."""
    if not path.is_file():
        raise FileNotFoundError(f"AP file not found: {path}")
    frame = pd.read_csv(path)
    missing = [column for column in AP_COLUMNS if column not in frame.columns]
    if missing:
        raise TableError(f"{path}: missing columns {missing} (expected {list(AP_COLUMNS)})")
    classes = tuple(frame["class"].astype(str).str.strip())
    if classes != VOC_CLASSES:
        raise TableError(f"{path}: classes must be the 20 VOC classes in devkit order, got {list(classes)}")
    for metric in METRICS:
        values = pd.to_numeric(frame[metric], errors="coerce")
        bad = frame[metric].notna() & values.isna() | (values < 0) | (values > 1)
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            raise TableError(
                f"{path}: row {row + 2} ({classes[row]}): {metric}={frame[metric].iloc[row]!r} not in [0, 1]"
            )
        frame[metric] = values.astype(float)
    return frame


def _read_provenance(path: Path) -> dict:
    """``git_commit``, ``config_hash``, ``n_pretext_pairs`` from ``<path>.meta.json`` (None when absent)."""
    meta_path = Path(f"{path}.meta.json")
    if not meta_path.is_file():
        return dict.fromkeys(PROVENANCE)
    try:
        meta = json.loads(meta_path.read_text())
    except json.JSONDecodeError as error:
        raise TableError(f"{meta_path}: not valid JSON ({error})") from error
    if not isinstance(meta, dict):
        raise TableError(f"{meta_path}: expected a JSON object")
    return {key: meta.get(key) for key in PROVENANCE}


def collect_ap(records: Sequence[tuple[str, str, int, str | Path]]) -> pd.DataFrame:
    """Stack the AP files of many runs into one long frame.

    ``records``: ``(model, mode, seed, path to ap.csv)``. Returns one row per run and class with
    columns ``model, mode, seed, class, ap, ap_voc07, git_commit, config_hash, n_pretext_pairs``
    (AP in [0, 1]; provenance from the meta sidecar, missing values as None).
    """
    frames, seen = [], set()
    for model, mode, seed, path in records:
        parse_model_name(model)
        if mode not in MODES:
            raise TableError(f"{path}: unknown fine-tuning mode {mode!r}; expected one of {MODES}")
        key = (model, mode, int(seed))
        if key in seen:
            raise TableError(f"{path}: run {key} appears twice in the records")
        seen.add(key)
        frame = _read_ap_file(Path(path))
        long = pd.DataFrame({"model": model, "mode": mode, "seed": int(seed), "class": list(VOC_CLASSES)})
        long["ap"] = frame["ap"].to_numpy()
        long["ap_voc07"] = frame["ap_voc07"].to_numpy()
        for column, value in _read_provenance(Path(path)).items():
            long[column] = pd.Series([value] * len(long), dtype=object)
        frames.append(long)
    if not frames:
        return pd.DataFrame(columns=["model", "mode", "seed", "class", *METRICS, *PROVENANCE])
    return pd.concat(frames, ignore_index=True)


def _sort_key(model: str) -> tuple:
    """Sound models by feature, arch, k; then random; then imagenet (each by arch)."""
    parts = parse_model_name(model)
    arch = ARCHS.index(parts["arch"])
    if parts["init"] == "sound":
        return (0, FEATURES.index(parts["feature"]), arch, parts["k"])
    return (1 if parts["init"] == "random" else 2, 0, arch, 0)


def _ordered(models) -> list[str]:
    return sorted(set(models), key=_sort_key)


def run_maps(long: pd.DataFrame) -> pd.DataFrame:
    """Per run (model, mode, seed): ``map`` and ``map_voc07`` in percent (mean over classes, NaN skipped)."""
    for (model, mode, seed), group in long.groupby(["model", "mode", "seed"]):
        missing = group.loc[group["ap"].isna(), "class"].tolist()
        if missing:
            log.warning("%s/%s/seed%s: AP undefined for %s; left out of its mAP", model, mode, seed, missing)
    runs = long.groupby(["model", "mode", "seed"], as_index=False)[list(METRICS)].mean()
    return runs.assign(map=100 * runs["ap"], map_voc07=100 * runs["ap_voc07"])[
        ["model", "mode", "seed", "map", "map_voc07"]
    ]


def _joined(values: pd.Series):
    """The single distinct value of a provenance column, or its distinct values joined by ';'."""
    distinct = sorted({str(value) for value in values if value is not None and not pd.isna(value)})
    if not distinct:
        return None
    if len(distinct) == 1:
        return values.dropna().iloc[0]
    return ";".join(distinct)


def _measured_table1(long: pd.DataFrame) -> pd.DataFrame:
    runs = run_maps(long)
    rows = []
    for model in _ordered(long["model"]):
        row = {"model": model, "source": "measured", **parse_model_name(model)}
        for mode in MODES:
            maps = runs.loc[(runs["model"] == model) & (runs["mode"] == mode)]
            row[f"{mode}_map"] = maps["map"].mean() if len(maps) else np.nan
            row[f"{mode}_sd"] = maps["map"].std(ddof=1) if len(maps) > 1 else np.nan
            row[f"{mode}_n"] = len(maps)
            row[f"{mode}_map_voc07"] = maps["map_voc07"].mean() if len(maps) else np.nan
        model_rows = long.loc[long["model"] == model]
        for column in PROVENANCE:
            row[column] = _joined(model_rows[column]) if column in model_rows else None
        row["citation"] = None
        rows.append(row)
    table = pd.DataFrame(rows, columns=list(TABLE1_COLUMNS))
    table["n_pretext_pairs"] = _integers_if_possible(table["n_pretext_pairs"])
    return table


def _integers_if_possible(values: pd.Series) -> pd.Series:
    """A nullable integer column when every present value is a whole number, else the values unchanged."""
    numbers = pd.to_numeric(values, errors="coerce")
    present = values.notna()
    if numbers[present].notna().all() and (numbers[present] % 1 == 0).all():
        return numbers.astype("Int64")
    return values


def _published_table1(published: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for model in _ordered(published["model"]):
        entries = published.loc[published["model"] == model]
        row = {"model": model, "source": "published", **parse_model_name(model)}
        for mode in MODES:
            step = entries.loc[(entries["mode"] == mode) & (entries["metric"] == "ap"), "map"].dropna()
            eleven = entries.loc[
                (entries["mode"] == mode) & (entries["metric"] == "ap_voc07"), "map"
            ].dropna()
            row[f"{mode}_map"] = step.iloc[0] if len(step) else np.nan
            row[f"{mode}_sd"] = np.nan
            row[f"{mode}_n"] = pd.NA
            row[f"{mode}_map_voc07"] = eleven.iloc[0] if len(eleven) else np.nan
        row.update(dict.fromkeys(PROVENANCE))
        row["citation"] = "; ".join(dict.fromkeys(entries["citation"].astype(str)))
        rows.append(row)
    return pd.DataFrame(rows, columns=list(TABLE1_COLUMNS))


def build_table1(long: pd.DataFrame, published: pd.DataFrame | None) -> pd.DataFrame:
    """One row per model: head and all mAP (percent) as mean, sd and n over seeds.

    Columns: :data:`TABLE1_COLUMNS`. Measured rows first (sound models by feature, arch, k; then
    random; then imagenet), then the published rows (``source='published'``, citation filled,
    sd, n and provenance empty).
    """
    measured = _measured_table1(long)
    parts = (
        [measured, _published_table1(published)] if published is not None and len(published) else [measured]
    )
    filled = [part for part in parts if len(part)]
    table = pd.concat(filled, ignore_index=True) if filled else measured
    for column in ("head_n", "all_n"):
        table[column] = table[column].astype("Int64")
    table["k"] = table["k"].astype("Int64")
    return table[list(TABLE1_COLUMNS)]


def build_table2(long: pd.DataFrame, published: pd.DataFrame | None, mode: str = "all") -> pd.DataFrame:
    """Per-class AP (percent) of every model fine-tuned in ``mode``, mean over seeds, and ``map``.

    Columns: :data:`TABLE2_COLUMNS`. ``map`` is the mean over seeds of each run's mAP. Measured
    rows first (same order as table 1), then the published rows of that mode whose metric is the
    step AP (rows quoted as 11-point AP are left out: the two metrics must not share a column).
    """
    if mode not in MODES:
        raise TableError(f"unknown fine-tuning mode {mode!r}; expected one of {MODES}")
    selected = long.loc[long["mode"] == mode]
    runs = run_maps(selected) if len(selected) else pd.DataFrame(columns=["model", "map"])
    rows = []
    for model in _ordered(selected["model"]):
        per_class = selected.loc[selected["model"] == model].groupby("class")["ap"].mean()
        row = {"model": model, "source": "measured", "mode": mode}
        row.update({name: 100 * per_class[name] for name in VOC_CLASSES})
        row["map"] = runs.loc[runs["model"] == model, "map"].mean()
        rows.append(row)
    if published is not None and len(published):
        quoted = published.loc[(published["mode"] == mode) & (published["metric"] == "ap")]
        skipped = published.loc[(published["mode"] == mode) & (published["metric"] != "ap"), "model"]
        if len(skipped):
            log.info("table 2 leaves out published 11-point AP rows of %s", sorted(set(skipped)))
        for model in _ordered(quoted["model"]):
            entry = quoted.loc[quoted["model"] == model].iloc[0]
            row = {"model": model, "source": "published", "mode": mode}
            row.update({name: entry[name] for name in VOC_CLASSES})
            row["map"] = entry["map"]
            rows.append(row)
    return pd.DataFrame(rows, columns=list(TABLE2_COLUMNS))


def load_published(path: str | Path | None = None) -> pd.DataFrame:
    """Published numbers (percent) with columns :data:`PUBLISHED_COLUMNS`, checked.

    ``path`` defaults to the packaged ``soundsup/data/published.csv``. Empty cells (numbers the
    sources do not give) are NaN. Where ``map`` is empty but all 20 classes are given, ``map`` is
    their mean.
    """
    source = (
        Path(path) if path is not None else Path(str(resources.files("soundsup") / "data" / "published.csv"))
    )
    if not source.is_file():
        raise FileNotFoundError(f"published results file not found: {source}")
    frame = pd.read_csv(
        source, dtype={"model": str, "mode": str, "metric": str, "citation": str, "note": str}
    )
    if tuple(frame.columns) != PUBLISHED_COLUMNS:
        raise TableError(f"{source}: columns must be {list(PUBLISHED_COLUMNS)}, got {list(frame.columns)}")
    for index, entry in frame.iterrows():
        where = f"{source}: row {index + 2}"
        try:
            parse_model_name(entry["model"])
        except TableError as error:
            raise TableError(f"{where}: {error}") from error
        if entry["mode"] not in MODES:
            raise TableError(f"{where}: mode {entry['mode']!r} not in {MODES}")
        if entry["metric"] not in METRICS:
            raise TableError(f"{where}: metric {entry['metric']!r} not in {METRICS}")
        if pd.isna(entry["citation"]) or not str(entry["citation"]).strip():
            raise TableError(f"{where}: citation is empty")
    numbers = [*VOC_CLASSES, "map"]
    for column in numbers:
        frame[column] = pd.to_numeric(frame[column], errors="raise").astype(float)
        out_of_range = (frame[column] < 0) | (frame[column] > 100)
        if out_of_range.any():
            row = int(np.flatnonzero(out_of_range.to_numpy())[0])
            raise TableError(f"{source}: row {row + 2}: {column}={frame[column].iloc[row]} not a percentage")
    complete = frame[list(VOC_CLASSES)].notna().all(axis=1) & frame["map"].isna()
    frame.loc[complete, "map"] = frame.loc[complete, list(VOC_CLASSES)].mean(axis=1)
    duplicated = frame.duplicated(["model", "mode", "metric"])
    if duplicated.any():
        row = int(np.flatnonzero(duplicated.to_numpy())[0])
        key = tuple(frame.iloc[row][["model", "mode", "metric"]])
        raise TableError(f"{source}: row {row + 2}: a second entry for {key}")
    return frame


def write_table(table: pd.DataFrame, path: str | Path, decimals: int = 2) -> None:
    """Write a table as CSV atomically, floats rounded to ``decimals``; missing values are empty cells."""
    rounded = table.copy()
    floats = rounded.select_dtypes(include="float").columns
    rounded[floats] = rounded[floats].round(decimals)
    with atomic_path(path) as tmp:
        rounded.to_csv(tmp, index=False)
