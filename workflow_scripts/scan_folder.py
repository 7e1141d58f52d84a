"""Adapter of rule scan_folder: the videos of one shard of a folder -> that shard's segments."""

from _common import run, runtime


def main(snakemake) -> None:
    from soundsup.config import build_settings
    from soundsup.folder import FolderConfig, scan_shard_job

    scan_shard_job(
        videos=snakemake.params.videos,
        config=build_settings(FolderConfig, {**snakemake.params.folder, **runtime(snakemake, "folder")}),
        min_duration_s=snakemake.params.min_duration_s,
        n_shards=snakemake.params.shards,
        shard=snakemake.wildcards.shard,
        threads=snakemake.threads,
        segments_path=snakemake.output.segments,
    )


run(main, snakemake)  # noqa: F821
