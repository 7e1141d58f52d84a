"""Adapter of rule download_clips: one shard of the selection -> cached clips and a manifest."""

from _common import run, runtime, settings


def main(snakemake) -> None:
    from soundsup.config import build_settings
    from soundsup.download import DownloadConfig, download_job

    values = settings(snakemake, "download")
    if snakemake.input.videos:  # the synthetic world's videos, made by a rule of the DAG
        values["local_dir"] = snakemake.input.videos
    download_job(
        selection_path=snakemake.input.selection,
        shard=int(snakemake.wildcards.shard),
        config=build_settings(DownloadConfig, values),
        cache_dir=snakemake.params.cache_dir,
        folder_path=runtime(snakemake, "folder")["path"],
        manifest_path=snakemake.output.manifest,
    )


run(main, snakemake)  # noqa: F821
