"""Sound clusters: k-means on per-pair sound features, the targets of the pretext task.

Silent windows are dropped (label -1). Features are z-scored per dimension (a zero-variance
dimension is left centred but unscaled), then clustered by k-means with a fixed seed and
``n_init`` restarts; the best restart (lowest inertia) wins. Centroids are returned in the
original feature space.

k-means runs in scikit-learn or faiss (``clusters.backend``), the same way in both: k-means++
seeding on every row, ``n_init`` restarts drawn from the seed, at most ``max_iter`` Lloyd
iterations, labels from the final centres, and the inertia (sum of squared distances of the
standardised rows to their centre) computed by one function. 'auto' is faiss when it is
installed, else scikit-learn: at the paper's scale (55,000 rows of 502 or 3100 dimensions,
k = 15 or 50, 10 restarts) faiss took half the time on two cores (0.9x as fast for texture at
k = 15, 2.4x for MFCC at k = 50) for an inertia within 0.03% of scikit-learn's
(``benchmarks/bench_clusters.py``). On cores that other busy processes share, faiss slows
down more than scikit-learn. The two backends do not give the same clusters for the same
seed; each is deterministic for a fixed seed.

The backend that ran and its version are recorded in the summary (``backend``,
``backend_version``) and reach the tables' provenance.

Degenerate inputs do not crash: when ``n_clusters`` exceeds the number of kept rows, k-means
runs with as many clusters as rows and the remaining clusters stay empty; duplicate rows may
also leave clusters empty. Clusters are numbered by decreasing size, so
empty ones come last; they have size 0 and a centroid equal to centroid 0 (so a
nearest-centroid assignment, which breaks ties towards the lower index, never picks them);
``summary['n_nonempty']`` says how many clusters hold rows.

Agreement with AudioSet labels (``label_sets``: one comma-separated label string per row) is
reported as normalised mutual information (arithmetic normalisation, as scikit-learn's
default), three ways:

- ``nmi_first_label``: clusters vs the row's first label (the paper's single-label view);
- ``nmi_label_set``: clusters vs the exact label set as one category (sorted, joined);
- ``nmi_all_labels``: clusters vs every label, each row spreading a weight of 1/m over its m
  labels in the joint cluster-label distribution (equals ``nmi_first_label`` when every row
  has one label).
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from sklearn.metrics import normalized_mutual_info_score

log = logging.getLogger(__name__)

BACKENDS = ("auto", "sklearn", "faiss")


@dataclass(frozen=True)
class ClusterConfig:
    """Clustering settings (config keys ``clusters.*``; ``k`` comes from the rule's wildcard)."""

    standardize: bool = True
    n_init: int = 10
    max_iter: int = 300
    backend: str = "auto"  # 'sklearn' | 'faiss' | 'auto' (faiss when installed: faster; else sklearn)


@dataclass
class ClusterResult:
    """``labels``: (N,) int64, -1 for dropped rows; ``centroids``: (k, D) float32, original space."""

    labels: np.ndarray
    centroids: np.ndarray
    summary: dict = field(default_factory=dict)


def cluster_features(
    features: np.ndarray,
    keep: np.ndarray,
    n_clusters: int,
    config: ClusterConfig,
    seed: int,
    label_sets: Sequence[str] | None = None,
) -> ClusterResult:
    """Cluster the kept rows of ``features`` (N, D) float into ``n_clusters`` groups.

    ``keep`` (N,) bool marks the rows to cluster (False = a silent window: label -1).
    ``label_sets`` (N strings, optional) are AudioSet label lists for the NMI figures.
    """
    features, keep = _check_inputs(features, keep, n_clusters, config, label_sets)
    data = np.ascontiguousarray(features[keep], dtype=np.float32)
    n_used = len(data)
    if n_used == 0:
        raise ValueError(f"no rows to cluster: all {len(keep)} rows are marked silent (keep is all False)")
    mean, scale = _standardizer(data, config.standardize)
    data -= mean
    data /= scale

    n_fit = min(n_clusters, n_used)
    backend = _resolve_backend(config.backend)
    kmeans = _kmeans_faiss if backend == "faiss" else _kmeans_sklearn
    centers, used_labels, inertia, n_iter = kmeans(data, n_fit, config, seed)

    used_labels, centroids, sizes = _order_by_size(used_labels, centers, n_clusters)
    centroids = (centroids * scale + mean).astype(np.float32)

    labels = np.full(len(keep), -1, dtype=np.int64)
    labels[keep] = used_labels
    summary = {
        "k": int(n_clusters),
        "n_used": int(n_used),
        "n_dropped": int(len(keep) - n_used),
        "n_nonempty": int((sizes > 0).sum()),
        "sizes": [int(size) for size in sizes],
        "inertia": float(inertia),
        "backend": backend,
        "backend_version": _backend_version(backend),
        "standardize": bool(config.standardize),
        "n_init": int(config.n_init),
        "n_iter": n_iter,
        "seed": int(seed),
    }
    if label_sets is not None:
        kept_sets = [label_sets[i] for i in np.flatnonzero(keep)]
        summary.update(label_agreement(used_labels, kept_sets))
    if summary["n_nonempty"] < n_clusters:
        log.warning("k=%d: only %d non-empty clusters", n_clusters, summary["n_nonempty"])
    return ClusterResult(labels=labels, centroids=centroids, summary=summary)


def _order_by_size(
    labels: np.ndarray, centers: np.ndarray, n_clusters: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Renumber clusters by decreasing size (ties: lower index first), empty clusters last.

    Returns (labels (N,) int64, centroids (n_clusters, D), sizes (n_clusters,) int64); an empty
    cluster's centroid is a copy of centroid 0.
    """
    padded = np.repeat(centers[:1], n_clusters, axis=0)
    padded[: len(centers)] = centers
    sizes = np.bincount(labels, minlength=n_clusters)
    order = np.lexsort((np.arange(n_clusters), -sizes))
    new_index = np.empty(n_clusters, dtype=np.int64)
    new_index[order] = np.arange(n_clusters)
    centroids = padded[order]
    sizes = sizes[order]
    centroids[sizes == 0] = centroids[0]
    return new_index[labels], centroids, sizes


def _check_inputs(
    features: np.ndarray,
    keep: np.ndarray,
    n_clusters: int,
    config: ClusterConfig,
    label_sets: Sequence[str] | None,
) -> tuple[np.ndarray, np.ndarray]:
    features = np.asarray(features)
    keep = np.asarray(keep)
    if features.ndim != 2:
        raise ValueError(f"features must be 2-D (N, D); got shape {features.shape}")
    if keep.shape != (len(features),) or keep.dtype != np.bool_:
        raise ValueError(
            f"keep must be a bool array of shape ({len(features)},); got {keep.dtype} {keep.shape}"
        )
    if int(n_clusters) < 1:
        raise ValueError(f"n_clusters must be >= 1; got {n_clusters}")
    if config.n_init < 1 or config.max_iter < 1:
        raise ValueError(f"clusters.n_init and clusters.max_iter must be >= 1; got {config}")
    if config.backend not in BACKENDS:
        raise ValueError(f"unknown clusters.backend {config.backend!r}; expected one of {BACKENDS}")
    if label_sets is not None and len(label_sets) != len(features):
        raise ValueError(f"label_sets has {len(label_sets)} entries for {len(features)} feature rows")
    finite = np.isfinite(features).all(axis=1)
    bad = np.flatnonzero(keep & ~finite)
    if len(bad):
        raise ValueError(f"features contain NaN or infinity in {len(bad)} kept rows, first row {bad[0]}")
    return features, keep


def _standardizer(
    data: np.ndarray, standardize: bool, block_rows: int = 1024
) -> tuple[np.ndarray, np.ndarray]:
    """Per-dimension mean and scale (D,) float32; scale 1 where the variance is zero or off.

    Accumulated in float64 over blocks of ``block_rows`` rows (``ndarray.std`` with a float64
    dtype would make a float64 copy of the whole (N, D) matrix); the two-pass variance.
    """
    n_dims = data.shape[1]
    if not standardize:
        return np.zeros(n_dims, np.float32), np.ones(n_dims, np.float32)
    mean = data.mean(axis=0, dtype=np.float64)  # a buffered reduction: no (N, D) temporary
    squares = np.zeros(n_dims)
    for start in range(0, len(data), block_rows):
        deviation = data[start : start + block_rows] - mean  # (block_rows, D) float64
        squares += np.einsum("ij,ij->j", deviation, deviation)
    std = np.sqrt(squares / len(data))
    tiny = std <= 1e-12 * np.maximum(1.0, np.abs(mean))
    std[tiny] = 1.0
    return mean.astype(np.float32), std.astype(np.float32)


def _resolve_backend(backend: str) -> str:
    """'sklearn' or 'faiss'; 'auto' is faiss when it imports (faster at equal inertia, measured by
    benchmarks/bench_clusters.py), else sklearn."""
    if backend == "sklearn":
        return "sklearn"
    try:
        import faiss  # noqa: F401
    except ImportError as error:
        if backend == "faiss":
            raise ImportError("clusters.backend is 'faiss' but the faiss package is not installed") from error
        return "sklearn"
    return "faiss"


def _backend_version(backend: str) -> str:
    """The installed version of the k-means implementation that ran ('faiss' or 'sklearn')."""
    if backend == "faiss":
        import faiss

        return str(faiss.__version__)
    import sklearn

    return str(sklearn.__version__)


def _kmeans_sklearn(
    data: np.ndarray, n_clusters: int, config: ClusterConfig, seed: int
) -> tuple[np.ndarray, np.ndarray, float, int]:
    """(centers (k, D) float32, labels (N,) int64, inertia, iterations) from scikit-learn's k-means."""
    from sklearn.cluster import KMeans
    from sklearn.exceptions import ConvergenceWarning

    model = KMeans(n_clusters=n_clusters, n_init=config.n_init, max_iter=config.max_iter, random_state=seed)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        model.fit(data)
    for warning in caught:
        log.warning("k-means: %s", warning.message)
    centers = model.cluster_centers_.astype(np.float32)
    labels = model.labels_.astype(np.int64)
    return centers, labels, _inertia(data, centers, labels), int(model.n_iter_)


def _kmeans_faiss(
    data: np.ndarray, n_clusters: int, config: ClusterConfig, seed: int
) -> tuple[np.ndarray, np.ndarray, float, int]:
    """(centers (k, D) float32, labels (N,) int64, inertia, iterations) from faiss' k-means.

    Does what the scikit-learn path does: ``n_init`` restarts whose seeds are drawn from
    ``seed``, each seeded by k-means++ on every row (faiss' default would train on a sample of
    256 rows per cluster) and run for at most ``max_iter`` Lloyd iterations (faiss stops when the
    objective no longer changes, scikit-learn also when the centres move less than its ``tol``).
    Labels are the nearest final centre; the restart with the lowest inertia (``_inertia``)
    wins, the first on ties. faiss runs on ``_omp_threads()`` threads.
    """
    import faiss

    n_rows, n_dims = data.shape
    parameters = faiss.ClusteringParameters()
    parameters.niter = config.max_iter
    parameters.init_method = faiss.ClusteringInitMethod_KMEANS_PLUS_PLUS
    parameters.max_points_per_centroid = n_rows  # never subsample
    parameters.min_points_per_centroid = 1  # no "please provide more points" on stderr
    parameters.check_input_data_for_NaNs = False  # _check_inputs did
    restart_seeds = np.random.default_rng(seed).integers(0, 2**31 - 1, size=config.n_init)
    best: tuple[np.ndarray, np.ndarray, float, int] | None = None
    threads_before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(_omp_threads())
    try:
        for restart_seed in restart_seeds:
            parameters.seed = int(restart_seed)
            clustering = faiss.Clustering(n_dims, n_clusters, parameters)
            clustering.train(data, faiss.IndexFlatL2(n_dims))
            centers = faiss.vector_float_to_array(clustering.centroids).reshape(n_clusters, n_dims)
            labels = _nearest_faiss(data, centers)
            stats = clustering.iteration_stats
            n_iter = int(stats.size())
            if stats.at(n_iter - 1).nsplit > 0:
                # the last iteration refilled an empty cluster with a copy of a large one, both
                # centres nudged by 1/1024: make the centres their rows' means again
                centers = _member_means(data, labels, centers)
                labels = _nearest_faiss(data, centers)
            inertia = _inertia(data, centers, labels)
            if best is None or inertia < best[2]:
                best = (centers.astype(np.float32), labels, inertia, n_iter)
    finally:
        faiss.omp_set_num_threads(threads_before)
    return best


def _nearest_faiss(data: np.ndarray, centers: np.ndarray) -> np.ndarray:
    """Index (N,) int64 of the nearest of ``centers`` (k, D) float32 for each row of ``data``."""
    import faiss

    index = faiss.IndexFlatL2(centers.shape[1])
    index.add(np.ascontiguousarray(centers, dtype=np.float32))
    return index.search(data, 1)[1][:, 0].astype(np.int64)


def _member_means(data: np.ndarray, labels: np.ndarray, centers: np.ndarray) -> np.ndarray:
    """``centers`` (k, D) with each non-empty cluster's centre replaced by its rows' mean."""
    means = centers.copy()
    for cluster in np.unique(labels):
        means[cluster] = data[labels == cluster].mean(axis=0, dtype=np.float64)
    return means


def _omp_threads() -> int:
    """Threads this process is given: ``OMP_NUM_THREADS`` (Snakemake sets it to the rule's
    ``threads``), at most the CPUs the process may run on (its affinity, read at each call)."""
    available = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    requested = os.environ.get("OMP_NUM_THREADS", "").split(",")[0].strip()
    if requested.isdigit() and int(requested) > 0:
        return min(int(requested), available)
    return available


def _inertia(data: np.ndarray, centers: np.ndarray, labels: np.ndarray, block_rows: int = 4096) -> float:
    """Sum of squared distances of ``data`` (N, D) rows to their centre ``centers[labels]``,
    from the differences (not the expanded dot product), accumulated in float64."""
    total = 0.0
    for start in range(0, len(data), block_rows):
        difference = data[start : start + block_rows] - centers[labels[start : start + block_rows]]
        total += float(np.einsum("ij,ij->", difference, difference, dtype=np.float64))
    return total


def _split_labels(label_set: str) -> list[str]:
    labels = [label.strip().strip('"').strip() for label in str(label_set).split(",")]
    labels = [label for label in labels if label]
    return labels or ["<none>"]


def label_agreement(cluster_labels: np.ndarray, label_sets: Sequence[str]) -> dict:
    """NMI between clusters (N,) int and AudioSet label strings (N,), three ways (module doc)."""
    split = [_split_labels(label_set) for label_set in label_sets]
    first = [labels[0] for labels in split]
    whole = [",".join(sorted(labels)) for labels in split]
    rows = np.repeat(np.arange(len(split)), [len(labels) for labels in split])
    flat = [label for labels in split for label in labels]
    weights = np.repeat([1.0 / len(labels) for labels in split], [len(labels) for labels in split])
    return {
        "nmi_first_label": float(normalized_mutual_info_score(first, cluster_labels)),
        "nmi_label_set": float(normalized_mutual_info_score(whole, cluster_labels)),
        "nmi_all_labels": weighted_nmi(np.asarray(cluster_labels)[rows], flat, weights),
        "n_distinct_first_labels": len(set(first)),
    }


def weighted_nmi(clusters: np.ndarray, labels: Sequence[str], weights: np.ndarray) -> float:
    """NMI (arithmetic mean of entropies) of the weighted joint distribution of (cluster, label)."""
    _, cluster_index = np.unique(np.asarray(clusters), return_inverse=True)
    _, label_index = np.unique(np.asarray(labels), return_inverse=True)
    joint = np.zeros((cluster_index.max() + 1, label_index.max() + 1))
    np.add.at(joint, (cluster_index, label_index), weights)
    joint /= joint.sum()
    p_cluster, p_label = joint.sum(axis=1), joint.sum(axis=0)
    entropy_cluster = -np.sum(p_cluster * np.log(p_cluster))
    entropy_label = -np.sum(p_label * np.log(p_label))
    nonzero = joint > 0
    outer = np.outer(p_cluster, p_label)
    mutual = float(np.sum(joint[nonzero] * np.log(joint[nonzero] / outer[nonzero])))
    normaliser = (entropy_cluster + entropy_label) / 2
    if normaliser <= 0:
        return 1.0
    return float(max(0.0, mutual / normaliser))


def cluster_job(
    *,
    feature_paths: Sequence[str | os.PathLike[str]],
    id_paths: Sequence[str | os.PathLike[str]],
    index_paths: Sequence[str | os.PathLike[str]],
    feature: str,
    n_clusters: int,
    config: ClusterConfig,
    config_slice: dict,
    seed: int,
    labels_path: str | os.PathLike[str],
    centroids_path: str | os.PathLike[str],
    summary_path: str | os.PathLike[str],
) -> ClusterResult:
    """Rule ``cluster_kmeans``: every shard's features of one kind -> ``n_clusters`` clusters.

    The features of the shards are read into one preallocated array (no second copy); their
    ids must be, row for row, the pairs of the shards' indices (:class:`soundsup.shards.ShardError`
    naming the files otherwise). Silent windows take no part and get cluster -1. Writes the
    labels (``pair_id``, ``cluster``) with their provenance, the centroids and the summary.
    """
    import pandas as pd

    from soundsup.io import save_npy, write_json, write_meta, write_parquet
    from soundsup.shards import ShardError, concatenate_npy, read_pair_indices

    features = concatenate_npy(feature_paths)
    ids = read_pair_indices(id_paths)
    pairs = read_pair_indices(index_paths)
    if len(ids) != len(features) or not ids["pair_id"].equals(pairs["pair_id"]):
        raise ShardError(
            f"the feature ids ({len(ids)} rows, {len(features)} feature rows) do not line up with the "
            f"pair indices ({len(pairs)} rows) of {', '.join(map(str, index_paths))}; rerun the feature rules"
        )
    result = cluster_features(
        features,
        keep=~ids["silent"].to_numpy(),
        n_clusters=n_clusters,
        config=config,
        seed=seed,
        label_sets=pairs["labels"].tolist(),
    )
    summary = {"feature": feature, "n_pairs": len(ids), **result.summary}
    log.info("k=%d: %s", n_clusters, summary)
    write_parquet(labels_path, pd.DataFrame({"pair_id": ids["pair_id"], "cluster": result.labels}))
    save_npy(centroids_path, result.centroids)
    write_json(summary_path, summary)
    write_meta(
        labels_path,
        {**config_slice, "k": n_clusters},
        seed=seed,
        backend=summary["backend"],  # the one that ran ('auto' in the config resolves to it)
        backend_version=summary["backend_version"],
    )
    return result
