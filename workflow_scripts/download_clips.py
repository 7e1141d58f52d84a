"""Adapter of rule download_clips: one shard of segments -> cached clips + the shard manifest."""

import logging

from _common import run, runtime, settings


def main(snakemake) -> None:
    import pandas as pd

    from soundsup.config import build_settings
    from soundsup.download import DownloadConfig, download_shard, settle_shard
    from soundsup.io import write_parquet

    log = logging.getLogger("soundsup.rule.download_clips")
    shard = int(snakemake.wildcards.shard)
    selection = pd.read_parquet(snakemake.input.selection)
    segments = selection[selection["shard"] == shard].reset_index(drop=True)
    values = settings(snakemake, "download")
    if snakemake.input.videos:  # the synthetic world's videos, made by a rule of the DAG
        values["local_dir"] = snakemake.input.videos
    config = build_settings(DownloadConfig, values)
    # Segments with a source_path (world folder) are cut from the videos of folder.path (where
    # from, like download.local_dir: not a param, moving the folder reruns nothing).
    folder = runtime(snakemake, "folder")["path"] if "source_path" in segments.columns else None
    log.info("shard %d: %d segments, source %s", shard, len(segments), folder or config.source)

    manifest = download_shard(segments, snakemake.params.cache_dir, config, folder=folder)
    failed = manifest[manifest["status"] != "ok"]
    for reason, count in failed["reason"].value_counts().items():
        log.info("shard %d: %d failed (%s)", shard, count, reason)
    for row in failed.itertuples():
        where = f" ({row.source_path})" if row.source_path else ""
        log.info("failed %s@%.3f%s: %s: %s", row.ytid, row.start, where, row.reason, row.message)
    write_parquet(snakemake.output.manifest, settle_shard(manifest, config, name=f"shard {shard}"))


run(main, snakemake)  # noqa: F821
