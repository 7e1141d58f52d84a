"""Adapter of rule scan_folder: the videos of one shard of a folder -> that shard's segments."""

import logging

from _common import run, runtime


def main(snakemake) -> None:
    from soundsup.config import build_settings
    from soundsup.folder import FolderConfig, select_shard
    from soundsup.io import write_parquet

    log = logging.getLogger("soundsup.rule.scan_folder")
    config = build_settings(FolderConfig, {**snakemake.params.folder, **runtime(snakemake, "folder")})
    videos = snakemake.params.videos
    log.info("shard %s: %d videos of %s", snakemake.wildcards.shard, len(videos), config.path)
    segments = select_shard(
        videos,
        config,
        min_duration_s=snakemake.params.min_duration_s,
        n_shards=snakemake.params.shards,
        threads=snakemake.threads,
    )
    for row in segments[segments["scan_reason"] != ""].itertuples():
        log.info("no segment from %s: %s: %s", row.source_path, row.scan_reason, row.scan_message)
    log.info("%d segments from %d videos", (segments["scan_reason"] == "").sum(), len(videos))
    write_parquet(snakemake.output.segments, segments)


run(main, snakemake)  # noqa: F821
