"""Adapter of rule compute_mfcc: a shard's audio windows -> MFCCs."""

from _common import run


def main(snakemake) -> None:
    from soundsup.device import set_threads
    from soundsup.sound_features import compute_mfcc

    set_threads(snakemake.threads)  # the FFTs run through torch, which would take every core
    compute_mfcc(
        snakemake.input.index,
        snakemake.input.audio,
        features_path=snakemake.output.features,
        ids_path=snakemake.output.ids,
        mfcc=snakemake.params.mfcc,
        sample_rate=snakemake.params.sample_rate,
        silence_rms=snakemake.params.silence_rms,
    )


run(main, snakemake)  # noqa: F821
