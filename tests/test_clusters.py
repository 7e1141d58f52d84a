"""Sound clusters: k-means on z-scored features, silent rows dropped, degenerate input survives."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

from soundsup.clusters import ClusterConfig, cluster_features, label_agreement, weighted_nmi

CONFIG = ClusterConfig(n_init=3, backend="auto")


def blobs(
    n_per_blob: int = 40, n_blobs: int = 4, n_dims: int = 6, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Well-separated Gaussian blobs, with one dimension on a scale 1000x the others."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(0, 10, size=(n_blobs, n_dims))
    truth = np.repeat(np.arange(n_blobs), n_per_blob)
    features = centers[truth] + rng.normal(0, 0.5, size=(len(truth), n_dims))
    features[:, 0] *= 1000.0
    return features.astype(np.float32), truth


def test_recovers_well_separated_blobs_and_centroids_in_original_space():
    features, truth = blobs()
    keep = np.ones(len(features), bool)
    result = cluster_features(features, keep, 4, CONFIG, seed=0)
    assert result.labels.dtype == np.int64 and result.labels.shape == truth.shape
    assert adjusted_rand_score(truth, result.labels) == 1.0
    assert result.centroids.shape == (4, 6) and result.centroids.dtype == np.float32
    for cluster in range(4):
        members = features[result.labels == cluster]
        np.testing.assert_allclose(result.centroids[cluster], members.mean(axis=0), rtol=1e-4, atol=1e-2)
    summary = result.summary
    assert summary["k"] == 4 and summary["n_used"] == 160 and summary["n_dropped"] == 0
    assert summary["n_nonempty"] == 4 and sorted(summary["sizes"]) == [40, 40, 40, 40]
    assert summary["backend"] == "sklearn"  # faiss is not installed: auto falls back


def test_standardize_matters_when_one_dimension_dominates():
    rng = np.random.default_rng(1)
    truth = np.repeat([0, 1], 50)
    informative = truth * 5.0 + rng.normal(0, 0.3, 100)
    loud_noise = rng.normal(0, 1000.0, 100)
    features = np.stack([informative, loud_noise], axis=1)
    keep = np.ones(100, bool)
    scaled = cluster_features(features, keep, 2, ClusterConfig(n_init=3), seed=0)
    raw = cluster_features(features, keep, 2, ClusterConfig(n_init=3, standardize=False), seed=0)
    assert adjusted_rand_score(truth, scaled.labels) > 0.9
    assert adjusted_rand_score(truth, raw.labels) < 0.5


def test_deterministic_with_the_seed():
    rng = np.random.default_rng(2)
    features = rng.normal(size=(300, 8)).astype(np.float32)  # no structure: the seed decides
    keep = np.ones(300, bool)
    first = cluster_features(features, keep, 7, ClusterConfig(n_init=2), seed=5)
    second = cluster_features(features, keep, 7, ClusterConfig(n_init=2), seed=5)
    other = cluster_features(features, keep, 7, ClusterConfig(n_init=1, max_iter=1), seed=6)
    np.testing.assert_array_equal(first.labels, second.labels)
    np.testing.assert_array_equal(first.centroids, second.centroids)
    assert first.summary == second.summary
    assert not np.array_equal(first.labels, other.labels)


def test_silent_rows_dropped_to_minus_one_and_not_in_the_statistics():
    features, truth = blobs(n_per_blob=20, n_blobs=3)
    keep = np.ones(len(features), bool)
    keep[::7] = False
    features[~keep] = 1e9  # silent rows' features must not influence anything
    result = cluster_features(features, keep, 3, CONFIG, seed=0)
    assert (result.labels[~keep] == -1).all()
    assert (result.labels[keep] >= 0).all()
    assert adjusted_rand_score(truth[keep], result.labels[keep]) == 1.0
    assert result.summary["n_dropped"] == int((~keep).sum())
    assert sum(result.summary["sizes"]) == int(keep.sum())
    assert np.abs(result.centroids).max() < 1e6


def test_identical_rows_and_k_larger_than_n_do_not_crash():
    features = np.ones((10, 4), np.float32)  # zero variance everywhere
    result = cluster_features(features, np.ones(10, bool), 3, CONFIG, seed=0)
    assert result.summary["n_nonempty"] == 1
    assert result.summary["sizes"] == [10, 0, 0]
    np.testing.assert_array_equal(result.labels, np.zeros(10))
    np.testing.assert_allclose(result.centroids, np.ones((3, 4)))
    assert np.isfinite(result.summary["inertia"])

    few = np.arange(15, dtype=np.float32).reshape(5, 3)
    keep = np.array([True, True, False, True, True])
    result = cluster_features(few, keep, 8, CONFIG, seed=0)
    assert result.centroids.shape == (8, 3) and np.isfinite(result.centroids).all()
    assert result.summary["n_nonempty"] == 4 and result.summary["sizes"] == [1, 1, 1, 1, 0, 0, 0, 0]
    assert result.labels[2] == -1 and sorted(result.labels[keep]) == [0, 1, 2, 3]
    # each used row is its own centroid; empty clusters repeat centroid 0
    np.testing.assert_allclose(result.centroids[result.labels[keep]], few[keep], atol=1e-4)
    np.testing.assert_array_equal(result.centroids[4:], np.repeat(result.centroids[:1], 4, axis=0))


def test_duplicate_rows_leave_empty_clusters_reported():
    features = np.repeat(np.array([[0.0, 0.0], [5.0, 5.0]], np.float32), 20, axis=0)
    result = cluster_features(features, np.ones(40, bool), 5, CONFIG, seed=0)
    assert result.summary["n_nonempty"] == 2
    assert result.summary["sizes"][:2] == [20, 20] and result.summary["sizes"][2:] == [0, 0, 0]


def test_label_agreement_nmi():
    features, truth = blobs(n_per_blob=10, n_blobs=3)
    names = np.array(["/m/water", "/m/wind", "/m/birds"])
    label_sets = [f"{names[t]},/m/extra{i % 2}" for i, t in enumerate(truth)]
    result = cluster_features(features, np.ones(30, bool), 3, CONFIG, seed=0, label_sets=label_sets)
    assert result.summary["nmi_first_label"] == pytest.approx(1.0)
    assert result.summary["nmi_label_set"] < 1.0  # the extra label splits each set in two
    assert 0.0 < result.summary["nmi_all_labels"] < 1.0


def test_weighted_nmi_equals_sklearn_for_single_labels():
    rng = np.random.default_rng(3)
    clusters = rng.integers(0, 5, 200)
    labels = [f"/m/{x}" for x in rng.integers(0, 4, 200)]
    expected = normalized_mutual_info_score(labels, clusters)
    assert weighted_nmi(clusters, labels, np.ones(200)) == pytest.approx(expected, abs=1e-12)
    agreement = label_agreement(clusters, labels)
    assert agreement["nmi_all_labels"] == pytest.approx(expected, abs=1e-12)
    assert agreement["nmi_first_label"] == pytest.approx(expected, abs=1e-12)


def test_bad_input_raises_clear_errors():
    features = np.zeros((4, 2), np.float32)
    with pytest.raises(ValueError, match="all 4 rows are marked silent"):
        cluster_features(features, np.zeros(4, bool), 2, CONFIG, seed=0)
    with pytest.raises(ValueError, match="keep must be a bool"):
        cluster_features(features, np.ones(3, bool), 2, CONFIG, seed=0)
    features[2, 1] = np.nan
    with pytest.raises(ValueError, match="first row 2"):
        cluster_features(features, np.ones(4, bool), 2, CONFIG, seed=0)
    with pytest.raises(ValueError, match="backend"):
        cluster_features(np.zeros((4, 2)), np.ones(4, bool), 2, ClusterConfig(backend="gpu"), seed=0)
    with pytest.raises(ImportError, match="faiss"):
        cluster_features(np.zeros((4, 2)), np.ones(4, bool), 2, ClusterConfig(backend="faiss"), seed=0)
