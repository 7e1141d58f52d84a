"""The dataset report: per shard, how many clips were asked for, obtained, failed (by reason),
skipped and paired (rule ``report_dataset``, ``results/dataset/report.csv``)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from soundsup.download import empty_manifest, shard_was_skipped
from soundsup.failures import REASONS


def dataset_summary(
    selection: pd.DataFrame,
    manifests: list[pd.DataFrame],
    pair_indices: list[pd.DataFrame],
    pair_failures: list[pd.DataFrame] | None = None,
) -> pd.DataFrame:
    """One row per shard and a ``total`` row: requested, downloaded, failed_<reason>, pairs,
    skipped (1 for a shard that ``download.on_shard_failure: skip`` left out, see
    :func:`settle_shard`).

    The shard of a manifest or index row is looked up by its id in ``selection``.
    ``pair_failures`` (optional) adds ``no_pairs``: downloaded clips that gave no pair.
    """
    shard_of_id = dict(zip(selection["ytid"].astype(str), selection["shard"].astype(int), strict=True))
    shards = sorted(selection["shard"].astype(int).unique())
    manifest = pd.concat([empty_manifest(), *manifests], ignore_index=True)
    index = pd.concat([pd.DataFrame({"ytid": pd.Series([], dtype=str)}), *pair_indices], ignore_index=True)
    shard_column = {"manifest": manifest["ytid"].map(shard_of_id), "index": index["ytid"].map(shard_of_id)}
    rows = []
    for shard in shards:
        clips = manifest[shard_column["manifest"] == shard]
        row = {
            "shard": str(shard),
            "requested": int((selection["shard"] == shard).sum()),
            "downloaded": int((clips["status"] == "ok").sum()),
        }
        failed = clips[clips["status"] != "ok"]["reason"]
        row.update({f"failed_{reason}": int((failed == reason).sum()) for reason in REASONS})
        row["pairs"] = int((shard_column["index"] == shard).sum())
        row["skipped"] = int(shard_was_skipped(clips))
        rows.append(row)
    if pair_failures is not None:
        failures = pd.concat(
            [pd.DataFrame({"ytid": pd.Series([], dtype=str)}), *pair_failures], ignore_index=True
        )
        by_shard = failures["ytid"].map(shard_of_id)
        for row in rows:
            row["no_pairs"] = int((by_shard == int(row["shard"])).sum())
    summary = pd.DataFrame(rows, columns=_summary_columns(pair_failures is not None))
    total = {column: int(summary[column].sum()) for column in summary.columns if column != "shard"}
    return pd.concat([summary, pd.DataFrame([{"shard": "total", **total}])], ignore_index=True)


def _summary_columns(with_no_pairs: bool) -> list[str]:
    columns = [
        "shard",
        "requested",
        "downloaded",
        *(f"failed_{reason}" for reason in REASONS),
        "pairs",
        "skipped",
    ]
    return [*columns, "no_pairs"] if with_no_pairs else columns


def write_dataset_report(
    selection_path: str | Path,
    manifest_paths: Sequence[str | Path],
    index_paths: Sequence[str | Path],
    failure_paths: Sequence[str | Path],
    report_path: str | Path,
) -> pd.DataFrame:
    """Rule ``report_dataset``: :func:`dataset_summary` of the files of every shard, written as CSV."""
    from soundsup.io import write_text

    def read(paths: Sequence[str | Path]) -> list[pd.DataFrame]:
        return [pd.read_parquet(path) for path in paths]

    summary = dataset_summary(
        pd.read_parquet(selection_path), read(manifest_paths), read(index_paths), read(failure_paths)
    )
    write_text(report_path, summary.to_csv(index=False))
    return summary
