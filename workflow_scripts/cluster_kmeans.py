"""Adapter of rule cluster_kmeans: every shard's features of one kind -> k sound clusters."""

import logging

from _common import run


def main(snakemake) -> None:
    import pandas as pd

    from soundsup.clusters import ClusterConfig, cluster_features
    from soundsup.io import save_npy, write_json, write_meta, write_parquet
    from soundsup.shards import concatenate_npy

    log = logging.getLogger("soundsup.rule.cluster_kmeans")
    n_clusters = int(snakemake.wildcards.k)
    features = concatenate_npy(snakemake.input.features)  # one preallocated array, no second copy
    ids = pd.concat([pd.read_parquet(path) for path in snakemake.input.ids], ignore_index=True)
    pairs = pd.concat([pd.read_parquet(path) for path in snakemake.input.indices], ignore_index=True)
    if len(ids) != len(features) or not ids["pair_id"].equals(pairs["pair_id"]):
        raise ValueError("feature ids do not line up with the pair indices; rerun the feature rules")

    result = cluster_features(
        features,
        keep=~ids["silent"].to_numpy(),
        n_clusters=n_clusters,
        config=ClusterConfig(**snakemake.params.clusters),
        seed=snakemake.params.seed,
        label_sets=pairs["labels"].tolist(),
    )
    summary = {"feature": snakemake.wildcards.feature, "n_pairs": len(ids), **result.summary}
    log.info("k=%d: %s", n_clusters, summary)
    write_parquet(
        snakemake.output.labels, pd.DataFrame({"pair_id": ids["pair_id"], "cluster": result.labels})
    )
    save_npy(snakemake.output.centroids, result.centroids)
    write_json(snakemake.output.summary, summary)
    write_meta(
        snakemake.output.labels,
        {**snakemake.params.clusters, "k": n_clusters},
        seed=snakemake.params.seed,
        backend=summary["backend"],  # the one that ran ('auto' in the config resolves to it)
        backend_version=summary["backend_version"],
    )


run(main, snakemake)  # noqa: F821
