"""Adapter of rule extract_pairs: the clips of one shard -> frames, audio windows, their index."""

from _common import run


def main(snakemake) -> None:
    from soundsup.pairs import PairConfig, extract_pairs_job

    output = snakemake.output
    extract_pairs_job(
        manifest_path=snakemake.input.manifest,
        config=PairConfig(**snakemake.params.pairs),
        config_slice=snakemake.params.pairs,
        threads=snakemake.threads,
        index_path=output.index,
        frames_path=output.frames,
        audio_path=output.audio,
        failures_path=output.failures,
    )


run(main, snakemake)  # noqa: F821
