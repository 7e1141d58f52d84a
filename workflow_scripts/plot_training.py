"""Adapter of rule plot_training: every pretext model's history -> the training curves figure."""

from _common import run


def main(snakemake) -> None:
    from soundsup.figures import plot_training

    plot_training(snakemake.input.histories, snakemake.params.models, snakemake.output[0])


run(main, snakemake)  # noqa: F821
