"""Sound clusters: k-means on per-pair sound features, the targets of the pretext task.

Silent windows are dropped (label -1). Features are z-scored per dimension (a zero-variance
dimension is left centred but unscaled), then clustered by k-means with a fixed seed and
``n_init`` restarts; the best restart (lowest inertia) wins. Centroids are returned in the
original feature space.

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
    backend: str = "auto"  # 'sklearn' | 'faiss' | 'auto' (faiss when importable, else sklearn)


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
    if backend == "faiss":
        centers, used_labels, inertia = _kmeans_faiss(data, n_fit, config, seed)
    else:
        centers, used_labels, inertia = _kmeans_sklearn(data, n_fit, config, seed)

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
        "standardize": bool(config.standardize),
        "n_init": int(config.n_init),
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


def _standardizer(data: np.ndarray, standardize: bool) -> tuple[np.ndarray, np.ndarray]:
    """Per-dimension mean and scale (D,) float32; scale 1 where the variance is zero or off."""
    n_dims = data.shape[1]
    if not standardize:
        return np.zeros(n_dims, np.float32), np.ones(n_dims, np.float32)
    mean = data.mean(axis=0, dtype=np.float64)
    std = data.std(axis=0, dtype=np.float64)
    tiny = std <= 1e-12 * np.maximum(1.0, np.abs(mean))
    std[tiny] = 1.0
    return mean.astype(np.float32), std.astype(np.float32)


def _resolve_backend(backend: str) -> str:
    if backend == "sklearn":
        return "sklearn"
    try:
        import faiss  # noqa: F401
    except ImportError as error:
        if backend == "faiss":
            raise ImportError("clusters.backend is 'faiss' but the faiss package is not installed") from error
        return "sklearn"
    return "faiss"


def _kmeans_sklearn(
    data: np.ndarray, n_clusters: int, config: ClusterConfig, seed: int
) -> tuple[np.ndarray, np.ndarray, float]:
    """(centers (k, D) float32, labels (N,) int64, inertia) from scikit-learn's k-means."""
    from sklearn.cluster import KMeans
    from sklearn.exceptions import ConvergenceWarning

    model = KMeans(n_clusters=n_clusters, n_init=config.n_init, max_iter=config.max_iter, random_state=seed)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        model.fit(data)
    for warning in caught:
        log.warning("k-means: %s", warning.message)
    centers = model.cluster_centers_.astype(np.float32)
    return centers, model.labels_.astype(np.int64), float(model.inertia_)


def _kmeans_faiss(
    data: np.ndarray, n_clusters: int, config: ClusterConfig, seed: int
) -> tuple[np.ndarray, np.ndarray, float]:
    """(centers (k, D) float32, labels (N,) int64, inertia) from faiss' k-means."""
    import faiss

    kmeans = faiss.Kmeans(
        data.shape[1], n_clusters, niter=config.max_iter, nredo=config.n_init, seed=seed, verbose=False
    )
    kmeans.train(data)
    distances, assignment = kmeans.index.search(data, 1)
    return kmeans.centroids.astype(np.float32), assignment[:, 0].astype(np.int64), float(distances.sum())


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
