"""Adapter of rule plot_clusters: frames grouped by their sound cluster (the paper's Figure 1)."""

from _common import run


def main(snakemake) -> None:
    from soundsup.figures import plot_clusters

    inputs = snakemake.input
    plot_clusters(
        inputs.labels, inputs.indices, inputs.frames, snakemake.output[0], seed=snakemake.params.seed
    )


run(main, snakemake)  # noqa: F821
