"""Adapter of rule compute_texture: a shard's audio windows -> sound-texture statistics."""

from _common import run


def main(snakemake) -> None:
    from soundsup.device import set_threads
    from soundsup.sound_features import compute_texture

    set_threads(snakemake.threads)  # the FFTs run through torch, which would take every core
    compute_texture(
        snakemake.input.index,
        snakemake.input.audio,
        features_path=snakemake.output.features,
        ids_path=snakemake.output.ids,
        texture=snakemake.params.texture,
        sample_rate=snakemake.params.sample_rate,
        silence_rms=snakemake.params.silence_rms,
    )


run(main, snakemake)  # noqa: F821
