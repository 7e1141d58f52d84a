"""The paper's tables from the per-run AP files: mAP per model (table 1) and per class (table 2).

Inputs are the files the VOC stage writes, ``results/voc/{model}/{mode}/seed{seed}/ap.csv``
(columns ``class, ap, ap_voc07, n_pos, n_neg``; 20 rows in devkit order; AP in [0, 1]), with
their provenance sidecars ``ap.csv.meta.json``, and the clustering summaries
``results/clusters/{feature}/k{k}/summary.json`` (which k-means backend ran). Published
numbers come from the packaged ``soundsup/data/published.csv``: every number of Tables 1 and
2 of Mahadev & Lu (arXiv:1912.11659), in percent, as printed (``soundsup/data/PUBLISHED.md``
says where each comes from and where the paper disagrees with itself).

Measured and published rows are kept apart by ``source`` (``measured`` / ``published``). A
published row names its ``method`` as printed (free text), its ``citation`` (the paper's
reference number and authors), where it is ``quoted_from``, the fine-tuning ``mode``
(``head``, ``all``, or ``unstated``: Table 2 never says) and its ``ap_definition`` (``step``,
``voc07`` or ``unstated``: the paper never says which AP); ``model`` is the measured model it
compares with, where the paper pins one (else empty). Published numbers are real PASCAL VOC
2007 numbers; measured rows are whatever world the run used.

Conventions:

- mAP is in percent (0-100). The measured rows' metric is the step AP (scikit-learn's
  ``average_precision_score``, ``ap_definition=step``); the VOC2007 11-point AP is carried
  beside it (``*_voc07``).
- A run's mAP is the mean of its 20 class APs; a class whose AP is NaN (an AP file written
  before undefined classes were set to 0) is left out of that mean and a warning is logged.
- Over seeds: mean, sample standard deviation (``ddof=1``) and count. The standard deviation of
  a single seed is NaN (undefined), not 0, so that one run never looks perfectly reproducible.
- Tables keep full precision in memory; :func:`write_table` rounds to two decimals.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd

from soundsup.io import atomic_path
from soundsup.names import ARCHS, FEATURES, INITS, MODES, VOC_CLASSES, ModelName, ModelNameError

log = logging.getLogger(__name__)

METRICS: tuple[str, ...] = ("ap", "ap_voc07")
PROVENANCE: tuple[str, ...] = ("git_commit", "config_hash", "n_pretext_pairs")  # from ap.csv.meta.json
CLUSTER_BACKEND = "cluster_backend"  # from the clusters' summary.json: 'faiss' or 'sklearn'
AP_COLUMNS: tuple[str, ...] = ("class", "ap", "ap_voc07", "n_pos", "n_neg")
PUBLISHED_MODES: tuple[str, ...] = (*MODES, "unstated")
AP_DEFINITIONS: tuple[str, ...] = ("step", "voc07", "unstated")
PUBLISHED_TEXT: tuple[str, ...] = ("method", "citation", "quoted_from", "note")
PUBLISHED_COLUMNS: tuple[str, ...] = (
    "table", "method", "citation", "quoted_from", "model", "mode", "ap_definition",
    *VOC_CLASSES, "map", "note",
)  # fmt: skip
TABLE1_COLUMNS: tuple[str, ...] = (
    "model", "source", "init", "feature", "k", "arch",
    "head_map", "head_sd", "head_n", "all_map", "all_sd", "all_n",
    "head_map_voc07", "all_map_voc07", "ap_definition",
    "n_pretext_pairs", CLUSTER_BACKEND, "skipped_shards", "git_commit", "config_hash", *PUBLISHED_TEXT,
)  # fmt: skip
TABLE2_COLUMNS: tuple[str, ...] = (
    "model",
    "source",
    "mode",
    *VOC_CLASSES,
    "map",
    "ap_definition",
    *PUBLISHED_TEXT,
)

_ROUNDING = 1e-9  # AP files written before AP was clipped may exceed 1 by an ulp


class TableError(ValueError):
    """An input of the tables is malformed; the message names the file, row or key."""


def parse_model_name(name: str) -> dict:
    """The parts of a model's name (:class:`soundsup.names.ModelName`) as table columns:
    ``{"model", "init", "feature", "k", "arch"}``; ``feature`` and ``k`` are None but for sound
    models. A bad name raises :class:`TableError`."""
    try:
        return ModelName.parse(name).parts()
    except ModelNameError as error:
        raise TableError(str(error)) from None


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
        bad = frame[metric].notna() & values.isna() | (values < -_ROUNDING) | (values > 1 + _ROUNDING)
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            value = frame[metric].iloc[row]
            shown = repr(value) if isinstance(value, str) else value
            raise TableError(f"{path}: row {row + 2} ({classes[row]}): {metric}={shown} not in [0, 1]")
        rounded = (values < 0) | (values > 1)
        if rounded.any():
            log.info(
                "%s: %s of %s clipped to [0, 1] (rounding)",
                path,
                metric,
                [classes[i] for i in np.flatnonzero(rounded)],
            )
        frame[metric] = values.clip(0.0, 1.0).astype(float)
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


def read_cluster_backends(paths: Sequence[str | Path]) -> dict[tuple[str, int], str | None]:
    """``{(feature, k): backend}`` from clustering summaries (``summary.json``, which name their
    own feature and k).

    ``backend`` is the k-means implementation that ran with its version (``'faiss 1.9.0'``,
    ``'sklearn 1.5.2'``; the name alone where the summary gives no version; None, with a
    warning, where it does not say).
    """
    backends: dict[tuple[str, int], str | None] = {}
    for path in paths:
        if not Path(path).is_file():
            raise FileNotFoundError(f"clustering summary not found: {path}")
        try:
            summary = json.loads(Path(path).read_text())
        except json.JSONDecodeError as error:
            raise TableError(f"{path}: not valid JSON ({error})") from error
        if not isinstance(summary, dict):
            raise TableError(f"{path}: expected a JSON object")
        if not isinstance(summary.get("feature"), str) or not isinstance(summary.get("k"), int):
            raise TableError(f"{path}: a clustering summary names its 'feature' and integer 'k'")
        backend = summary.get("backend")
        if backend is None:
            log.warning("%s does not say which k-means backend ran", path)
        version = summary.get("backend_version")
        if backend is not None and version is not None:
            backend = f"{backend} {version}"
        backends[(summary["feature"], summary["k"])] = None if backend is None else str(backend)
    return backends


def collect_ap(
    records: Sequence[tuple[str, str, int, str | Path]], cluster_summaries: Sequence[str | Path] = ()
) -> pd.DataFrame:
    """Stack the AP files of many runs into one long frame.

    ``records``: ``(model, mode, seed, path to ap.csv)``; ``cluster_summaries``: the clustering
    ``summary.json`` files of the sound models. Returns one row per run and class with columns
    ``model, mode, seed, class, ap, ap_voc07, git_commit, config_hash, n_pretext_pairs,
    cluster_backend`` (AP in [0, 1]; provenance from the meta sidecar and the summary of the
    model's feature and k; missing values, and every baseline's backend, as None).
    """
    backends = read_cluster_backends(cluster_summaries)
    frames, seen = [], set()
    for model, mode, seed, path in records:
        parts = parse_model_name(model)
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
        provenance = _read_provenance(Path(path))
        provenance[CLUSTER_BACKEND] = backends.get((parts["feature"], parts["k"]))
        for column, value in provenance.items():
            long[column] = pd.Series([value] * len(long), dtype=object)
        frames.append(long)
    if not frames:
        return pd.DataFrame(
            columns=["model", "mode", "seed", "class", *METRICS, *PROVENANCE, CLUSTER_BACKEND]
        )
    return pd.concat(frames, ignore_index=True)


def _sort_key(model: str) -> tuple:
    """Sound models by feature, arch, k; then random, imagenet and outside checkpoints (by arch,
    then name)."""
    parts = parse_model_name(model)
    arch = ARCHS.index(parts["arch"])
    if parts["init"] == "sound":
        return (0, FEATURES.index(parts["feature"]), arch, parts["k"], "")
    return (INITS.index(parts["init"]), 0, arch, 0, model)


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
        for column in (*PROVENANCE, CLUSTER_BACKEND):
            row[column] = _joined(model_rows[column]) if column in model_rows else None
        row["ap_definition"] = "step"
        row.update(dict.fromkeys(PUBLISHED_TEXT))
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


def _model_parts(model) -> dict:
    """Model name parts of a published row (all None where it names no measured model)."""
    if model is None or pd.isna(model):
        return {"model": None, "init": None, "feature": None, "k": None, "arch": None}
    return parse_model_name(model)


def _joined_notes(entries: pd.DataFrame) -> str | None:
    """One note for a published method: the shared note, or each mode's note prefixed by its mode."""
    notes = {
        mode: note for mode, note in zip(entries["mode"], entries["note"], strict=True) if pd.notna(note)
    }
    if not notes:
        return None
    if len(set(notes.values())) == 1 and len(notes) == len(entries):
        return next(iter(notes.values()))
    return "; ".join(f"{mode}: {note}" for mode, note in notes.items())


def _published_table1(published: pd.DataFrame) -> pd.DataFrame:
    """One row per method of the paper's Table 1, in the paper's order."""
    quoted = published.loc[published["table"] == 1]
    rows = []
    for (method, citation), entries in quoted.groupby(["method", "citation"], sort=False):
        models = entries["model"].dropna()
        row = {"source": "published", **_model_parts(models.iloc[0] if len(models) else None)}
        for mode in MODES:
            of_mode = entries.loc[entries["mode"] == mode]
            step = of_mode.loc[of_mode["ap_definition"] != "voc07", "map"].dropna()
            eleven = of_mode.loc[of_mode["ap_definition"] == "voc07", "map"].dropna()
            row[f"{mode}_map"] = step.iloc[0] if len(step) else np.nan
            row[f"{mode}_sd"] = np.nan
            row[f"{mode}_n"] = pd.NA
            row[f"{mode}_map_voc07"] = eleven.iloc[0] if len(eleven) else np.nan
        row["ap_definition"] = "/".join(dict.fromkeys(entries["ap_definition"]))
        row.update(dict.fromkeys((*PROVENANCE, CLUSTER_BACKEND)))
        row.update(method=method, citation=citation, quoted_from=entries["quoted_from"].iloc[0])
        row["note"] = _joined_notes(entries)
        rows.append(row)
    return pd.DataFrame(rows, columns=list(TABLE1_COLUMNS))


def skipped_shards(dataset: pd.DataFrame | None) -> str | None:
    """``"k of n"`` (with the shards named) from a dataset report (``results/dataset.csv``):
    the shards that ``download.on_shard_failure: skip`` left out of the sound models' data."""
    if dataset is None or "skipped" not in dataset:
        return None
    shards = dataset[dataset["shard"].astype(str) != "total"]
    skipped = shards.loc[shards["skipped"].astype(int) > 0, "shard"].astype(str).tolist()
    named = f" (shard {', '.join(skipped)})" if skipped else ""
    return f"{len(skipped)} of {len(shards)}{named}"


def build_table1(
    long: pd.DataFrame, published: pd.DataFrame | None, dataset: pd.DataFrame | None = None
) -> pd.DataFrame:
    """One row per model: head and all mAP (percent) as mean, sd and n over seeds.

    ``dataset`` (the dataset report) gives the sound models' ``skipped_shards``.

    Columns: :data:`TABLE1_COLUMNS`. Measured rows first (sound models by feature, arch, k; then
    random; then imagenet), then one row per method of the paper's Table 1 in its order
    (``source='published'``: method, citation, ap_definition and note filled; sd, n and
    provenance empty; ``model`` only where the paper pins the model it compares with).
    """
    measured = _measured_table1(long)
    measured["skipped_shards"] = [
        skipped_shards(dataset) if init == "sound" else None for init in measured["init"]
    ]
    parts = (
        [measured, _published_table1(published)] if published is not None and len(published) else [measured]
    )
    filled = [part for part in parts if len(part)]
    table = pd.concat(filled, ignore_index=True) if filled else measured
    for column in ("head_n", "all_n"):
        table[column] = table[column].astype("Int64")
    table["k"] = table["k"].astype("Int64")
    return table[list(TABLE1_COLUMNS)]


def build_table2(
    long: pd.DataFrame, published: pd.DataFrame | None, modes: Sequence[str] = MODES
) -> pd.DataFrame:
    """Per-class AP (percent), mean over seeds, and ``map`` of every model fine-tuned in ``modes``.

    Columns: :data:`TABLE2_COLUMNS`. ``map`` is the mean over seeds of each run's mAP. Measured
    rows first, mode by mode (models in table 1's order), then every row of the paper's Table 2
    in its order, with the mode it states (``unstated``: Table 2 never says head or all) and, as
    ``map``, the mean of its printed per-class APs (Table 2 prints no mAP; its caption defines it
    so).
    """
    unknown = [mode for mode in modes if mode not in MODES]
    if unknown or isinstance(modes, str):
        raise TableError(f"unknown fine-tuning modes {modes!r}; expected a list of {MODES}")
    rows = []
    for mode in modes:
        selected = long.loc[long["mode"] == mode]
        runs = run_maps(selected) if len(selected) else pd.DataFrame(columns=["model", "map"])
        for model in _ordered(selected["model"]):
            per_class = selected.loc[selected["model"] == model].groupby("class")["ap"].mean()
            row = {"model": model, "source": "measured", "mode": mode, "ap_definition": "step"}
            row.update({name: 100 * per_class[name] for name in VOC_CLASSES})
            row["map"] = runs.loc[runs["model"] == model, "map"].mean()
            rows.append(row)
    if published is not None and len(published):
        for _, entry in published.loc[published["table"] == 2].iterrows():
            row = {"model": None if pd.isna(entry["model"]) else entry["model"], "source": "published"}
            row.update({column: entry[column] for column in ("mode", *VOC_CLASSES, "map", "ap_definition")})
            row.update(
                {column: None if pd.isna(entry[column]) else entry[column] for column in PUBLISHED_TEXT}
            )
            rows.append(row)
    return pd.DataFrame(rows, columns=list(TABLE2_COLUMNS))


def published_path() -> Path:
    """The packaged ``soundsup/data/published.csv`` (the file rule tabulate_ap declares)."""
    return Path(str(resources.files("soundsup") / "data" / "published.csv"))


def load_published(path: str | Path | None = None) -> pd.DataFrame:
    """Published numbers (percent) with columns :data:`PUBLISHED_COLUMNS`, checked.

    ``path`` defaults to the packaged ``soundsup/data/published.csv``: one row per (table of
    the paper, method, mode). Empty cells are numbers the paper does not print (its "-" in
    Table 1, and every per-class cell of Table 1) and become NaN. Where ``map`` is empty but all
    20 classes are given, ``map`` is their mean (Table 2's caption defines the mAP so). Text
    cells left empty (``model``, ``note``) become None.
    """
    source = Path(path) if path is not None else published_path()
    if not source.is_file():
        raise FileNotFoundError(f"published results file not found: {source}")
    text_columns = ("method", "citation", "quoted_from", "model", "mode", "ap_definition", "note")
    frame = pd.read_csv(
        source, dtype=dict.fromkeys(text_columns, str) | {"table": str}, keep_default_na=False
    )
    if tuple(frame.columns) != PUBLISHED_COLUMNS:
        raise TableError(f"{source}: columns must be {list(PUBLISHED_COLUMNS)}, got {list(frame.columns)}")
    for column in text_columns:
        frame[column] = pd.Series([value.strip() or None for value in frame[column]], dtype=object)
    for index, entry in frame.iterrows():
        _check_published_row(entry, f"{source}: row {index + 2}")
    frame["table"] = frame["table"].astype(int)
    numbers = [*VOC_CLASSES, "map"]
    for column in numbers:
        cells = frame[column].astype(str).str.strip()
        values = pd.to_numeric(cells.replace("", None), errors="coerce")
        bad = (cells != "") & values.isna() | (values < 0) | (values > 100)
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            raise TableError(
                f"{source}: row {row + 2}: {column}={cells.iloc[row]!r} is not a percentage "
                "(a number the paper does not print is an empty cell, explained in 'note')"
            )
        frame[column] = values.astype(float)
    complete = frame[list(VOC_CLASSES)].notna().all(axis=1) & frame["map"].isna()
    frame.loc[complete, "map"] = frame.loc[complete, list(VOC_CLASSES)].mean(axis=1)
    key = ["table", "method", "citation", "mode", "ap_definition"]
    duplicated = frame.duplicated(key)
    if duplicated.any():
        row = int(np.flatnonzero(duplicated.to_numpy())[0])
        raise TableError(f"{source}: row {row + 2}: a second entry for {tuple(frame.iloc[row][key])}")
    return frame


def _check_published_row(entry: pd.Series, where: str) -> None:
    """One row of published.csv: the table, the texts it must carry, its mode and AP definition."""
    if entry["table"] not in ("1", "2"):
        raise TableError(f"{where}: table {entry['table']!r} is not 1 or 2 (the tables of the paper)")
    for column in ("method", "citation", "quoted_from"):
        if pd.isna(entry[column]):
            raise TableError(f"{where}: {column} is empty")
    if not pd.isna(entry["model"]):
        try:
            parse_model_name(entry["model"])
        except TableError as error:
            raise TableError(f"{where}: {error}") from error
    allowed = MODES if entry["table"] == "1" else PUBLISHED_MODES  # Table 1's columns are head and all
    if entry["mode"] not in allowed:
        raise TableError(f"{where}: mode {entry['mode']!r} not in {allowed}")
    if entry["ap_definition"] not in AP_DEFINITIONS:
        raise TableError(f"{where}: ap_definition {entry['ap_definition']!r} not in {AP_DEFINITIONS}")


def write_table(table: pd.DataFrame, path: str | Path, decimals: int = 2) -> None:
    """Write a table as CSV atomically, floats rounded to ``decimals``; missing values are empty cells."""
    rounded = table.copy()
    floats = rounded.select_dtypes(include="float").columns
    rounded[floats] = rounded[floats].round(decimals)
    with atomic_path(path) as tmp:
        rounded.to_csv(tmp, index=False)


def tabulate(
    runs: Sequence[Sequence],
    ap_paths: Sequence[str | Path],
    cluster_summaries: Sequence[str | Path],
    published_path: str | Path,
    dataset_path: str | Path,
    table1_path: str | Path,
    table2_path: str | Path,
    modes: Sequence[str] = MODES,
) -> None:
    """Tables 1 and 2 of every run: ``runs`` are ``(model, mode, seed)`` in the order of
    ``ap_paths`` (each AP file's provenance sidecar ``<ap>.meta.json`` beside it)."""
    if len(runs) != len(ap_paths):
        raise TableError(f"{len(runs)} runs named for {len(ap_paths)} AP files")
    records = [
        (model, mode, int(seed), path) for (model, mode, seed), path in zip(runs, ap_paths, strict=True)
    ]
    long = collect_ap(records, cluster_summaries)
    published = load_published(published_path)
    dataset = pd.read_csv(dataset_path, dtype={"shard": str})
    write_table(build_table1(long, published, dataset), table1_path)
    write_table(build_table2(long, published, list(modes)), table2_path)
