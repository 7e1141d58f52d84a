"""Adapter of rule cluster_kmeans: every shard's features of one kind -> k sound clusters."""

from _common import run


def main(snakemake) -> None:
    from soundsup.clusters import ClusterConfig, cluster_job

    cluster_job(
        feature_paths=snakemake.input.features,
        id_paths=snakemake.input.ids,
        index_paths=snakemake.input.indices,
        feature=snakemake.wildcards.feature,
        n_clusters=int(snakemake.wildcards.k),
        config=ClusterConfig(**snakemake.params.clusters),
        config_slice=snakemake.params.clusters,
        seed=snakemake.params.seed,
        labels_path=snakemake.output.labels,
        centroids_path=snakemake.output.centroids,
        summary_path=snakemake.output.summary,
    )


run(main, snakemake)  # noqa: F821
