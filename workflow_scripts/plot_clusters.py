"""Adapter of rule plot_clusters: frames grouped by their sound cluster (the paper's Figure 1)."""

from _common import run


def main(snakemake) -> None:
    import numpy as np
    import pandas as pd

    from soundsup.figures import plot_cluster_montage

    labels = pd.read_parquet(snakemake.input.labels)
    pairs = pd.concat([pd.read_parquet(path) for path in snakemake.input.indices], ignore_index=True)
    if not labels["pair_id"].equals(pairs["pair_id"]):
        raise ValueError(f"{snakemake.input.labels} does not line up with the pair indices")
    frames = np.concatenate([np.load(path, mmap_mode="r") for path in snakemake.input.frames])
    plot_cluster_montage(
        frames, labels["cluster"].to_numpy(), snakemake.output[0], seed=snakemake.params.seed
    )


run(main, snakemake)  # noqa: F821
