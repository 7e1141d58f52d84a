"""Adapter of rule plot_clusters: frames grouped by their sound cluster (the paper's Figure 1)."""

from _common import run


def main(snakemake) -> None:
    from soundsup.figures import plot_cluster_montage
    from soundsup.shards import aligned_frames, read_aligned_labels

    labels, _ = read_aligned_labels(snakemake.input.labels, snakemake.input.indices)
    # memory-mapped, each shard checked against its index: only the frames shown are read
    frames = aligned_frames(snakemake.input.frames, snakemake.input.indices)
    plot_cluster_montage(
        frames, labels["cluster"].to_numpy(), snakemake.output[0], seed=snakemake.params.seed
    )


run(main, snakemake)  # noqa: F821
