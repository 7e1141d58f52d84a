"""Sound clusters: k-means on z-scored features, silent rows dropped, degenerate input survives."""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
import tracemalloc
from dataclasses import replace

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

from soundsup.clusters import (
    ClusterConfig,
    _omp_threads,
    _standardizer,
    cluster_features,
    label_agreement,
    weighted_nmi,
)

CONFIG = ClusterConfig(n_init=3, backend="auto")
HAS_FAISS = importlib.util.find_spec("faiss") is not None


@pytest.fixture(params=["sklearn", "faiss"])
def backend(request) -> str:
    """Each backend in turn; the faiss runs are skipped where faiss is not installed."""
    if request.param == "faiss":
        pytest.importorskip("faiss")
    return request.param


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


def test_recovers_well_separated_blobs_and_centroids_in_original_space(backend):
    features, truth = blobs()
    keep = np.ones(len(features), bool)
    result = cluster_features(features, keep, 4, replace(CONFIG, backend=backend), seed=0)
    assert result.labels.dtype == np.int64 and result.labels.shape == truth.shape
    assert adjusted_rand_score(truth, result.labels) == 1.0
    assert result.centroids.shape == (4, 6) and result.centroids.dtype == np.float32
    for cluster in range(4):
        members = features[result.labels == cluster]
        np.testing.assert_allclose(result.centroids[cluster], members.mean(axis=0), rtol=1e-4, atol=1e-2)
    summary = result.summary
    assert summary["k"] == 4 and summary["n_used"] == 160 and summary["n_dropped"] == 0
    assert summary["n_nonempty"] == 4 and sorted(summary["sizes"]) == [40, 40, 40, 40]
    assert summary["backend"] == backend
    installed = importlib.import_module("faiss" if backend == "faiss" else "sklearn").__version__
    assert summary["backend_version"] == installed


def test_auto_is_faiss_when_installed_else_sklearn():
    features, _ = blobs(n_per_blob=10)
    result = cluster_features(features, np.ones(len(features), bool), 4, CONFIG, seed=0)
    assert result.summary["backend"] == ("faiss" if HAS_FAISS else "sklearn")


def test_auto_falls_back_and_faiss_fails_clearly_without_faiss(monkeypatch):
    monkeypatch.setitem(sys.modules, "faiss", None)  # `import faiss` now raises ImportError
    features, _ = blobs(n_per_blob=10)
    keep = np.ones(len(features), bool)
    assert cluster_features(features, keep, 4, CONFIG, seed=0).summary["backend"] == "sklearn"
    with pytest.raises(ImportError, match="backend is 'faiss' but the faiss package is not installed"):
        cluster_features(features, keep, 4, ClusterConfig(backend="faiss"), seed=0)


def test_standardizing_makes_no_float64_copy_of_the_features():
    """Mean and scale accumulated in float64 block by block: numpy's float64 std of a float32
    (N, D) matrix allocates a float64 (N, D) temporary, twice the matrix."""
    rng = np.random.default_rng(4)
    data = (rng.standard_normal((40000, 300)) * rng.uniform(0.1, 50, 300) + 7).astype(np.float32)
    data[:, 5] = 3.0  # a constant dimension keeps scale 1
    tracemalloc.start()
    mean, scale = _standardizer(data, standardize=True)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 0.15 * data.nbytes
    assert mean.dtype == scale.dtype == np.float32
    expected = data.std(axis=0, dtype=np.float64)
    expected[5] = 1.0
    np.testing.assert_allclose(mean, data.mean(axis=0, dtype=np.float64), rtol=1e-6)
    np.testing.assert_allclose(scale, expected, rtol=1e-6)


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


def test_deterministic_with_the_seed(backend):
    rng = np.random.default_rng(2)
    features = rng.normal(size=(300, 8)).astype(np.float32)  # no structure: the seed decides
    keep = np.ones(300, bool)
    config = ClusterConfig(n_init=2, backend=backend)
    first = cluster_features(features, keep, 7, config, seed=5)
    second = cluster_features(features, keep, 7, config, seed=5)
    other = cluster_features(features, keep, 7, replace(config, n_init=1, max_iter=1), seed=6)
    np.testing.assert_array_equal(first.labels, second.labels)
    np.testing.assert_array_equal(first.centroids, second.centroids)
    assert first.summary == second.summary
    assert not np.array_equal(first.labels, other.labels)


def test_silent_rows_dropped_to_minus_one_and_not_in_the_statistics(backend):
    features, truth = blobs(n_per_blob=20, n_blobs=3)
    keep = np.ones(len(features), bool)
    keep[::7] = False
    features[~keep] = 1e9  # silent rows' features must not influence anything
    result = cluster_features(features, keep, 3, replace(CONFIG, backend=backend), seed=0)
    assert (result.labels[~keep] == -1).all()
    assert (result.labels[keep] >= 0).all()
    assert adjusted_rand_score(truth[keep], result.labels[keep]) == 1.0
    assert result.summary["n_dropped"] == int((~keep).sum())
    assert sum(result.summary["sizes"]) == int(keep.sum())
    assert np.abs(result.centroids).max() < 1e6


def test_identical_rows_and_k_larger_than_n_do_not_crash(backend):
    config = replace(CONFIG, backend=backend)
    features = np.ones((10, 4), np.float32)  # zero variance everywhere
    result = cluster_features(features, np.ones(10, bool), 3, config, seed=0)
    assert result.summary["n_nonempty"] == 1
    assert result.summary["sizes"] == [10, 0, 0]
    np.testing.assert_array_equal(result.labels, np.zeros(10))
    np.testing.assert_allclose(result.centroids, np.ones((3, 4)))
    assert np.isfinite(result.summary["inertia"])

    few = np.arange(15, dtype=np.float32).reshape(5, 3)
    keep = np.array([True, True, False, True, True])
    result = cluster_features(few, keep, 8, config, seed=0)
    assert result.centroids.shape == (8, 3) and np.isfinite(result.centroids).all()
    assert result.summary["n_nonempty"] == 4 and result.summary["sizes"] == [1, 1, 1, 1, 0, 0, 0, 0]
    assert result.labels[2] == -1 and sorted(result.labels[keep]) == [0, 1, 2, 3]
    # each used row is its own centroid; empty clusters repeat centroid 0
    np.testing.assert_allclose(result.centroids[result.labels[keep]], few[keep], atol=1e-4)
    np.testing.assert_array_equal(result.centroids[4:], np.repeat(result.centroids[:1], 4, axis=0))


def test_duplicate_rows_leave_empty_clusters_reported(backend):
    features = np.repeat(np.array([[0.0, 0.0], [5.0, 5.0]], np.float32), 20, axis=0)
    result = cluster_features(features, np.ones(40, bool), 5, replace(CONFIG, backend=backend), seed=0)
    assert result.summary["n_nonempty"] == 2
    assert result.summary["sizes"][:2] == [20, 20] and result.summary["sizes"][2:] == [0, 0, 0]
    np.testing.assert_allclose(sorted(result.centroids[:2].tolist()), [[0.0, 0.0], [5.0, 5.0]], atol=1e-5)
    np.testing.assert_array_equal(result.centroids[2:], np.repeat(result.centroids[:1], 3, axis=0))


def gaussian_mixture(n_rows: int = 3000, n_dims: int = 20, n_components: int = 8, seed: int = 4):
    """Overlapping Gaussian components (float64): k-means has local optima to choose among."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 1.5, size=(n_components, n_dims))
    truth = rng.integers(0, n_components, n_rows)
    return centres[truth] + rng.normal(size=(n_rows, n_dims)), truth


def standardised_inertia(features: np.ndarray, labels: np.ndarray, centroids: np.ndarray) -> float:
    mean, std = features.mean(axis=0), features.std(axis=0)
    scaled, scaled_centroids = (features - mean) / std, (centroids - mean) / std
    return float(((scaled - scaled_centroids[labels]) ** 2).sum())


def test_faiss_matches_sklearn_partition_and_inertia_on_separated_blobs():
    pytest.importorskip("faiss")
    features, truth = blobs(n_per_blob=50, n_blobs=6, n_dims=12, seed=3)
    features = features.astype(np.float64)  # converted to float32 on the way in
    keep = np.ones(len(features), bool)
    results = {
        backend: cluster_features(features, keep, 6, replace(CONFIG, backend=backend), seed=1)
        for backend in ("sklearn", "faiss")
    }
    assert adjusted_rand_score(results["sklearn"].labels, results["faiss"].labels) == 1.0
    assert normalized_mutual_info_score(truth, results["faiss"].labels) == pytest.approx(1.0)
    assert results["faiss"].centroids.dtype == np.float32
    inertia = {backend: result.summary["inertia"] for backend, result in results.items()}
    assert inertia["faiss"] == pytest.approx(inertia["sklearn"], rel=1e-5)


def test_faiss_inertia_is_sklearns_definition_and_close_to_sklearns_optimum():
    pytest.importorskip("faiss")
    features, _ = gaussian_mixture()
    keep = np.ones(len(features), bool)
    config = ClusterConfig(n_init=5)
    faiss_result = cluster_features(features, keep, 8, replace(config, backend="faiss"), seed=0)
    sklearn_result = cluster_features(features, keep, 8, replace(config, backend="sklearn"), seed=0)
    for result in (faiss_result, sklearn_result):
        recomputed = standardised_inertia(features, result.labels, result.centroids)
        assert result.summary["inertia"] == pytest.approx(recomputed, rel=1e-4)
    assert faiss_result.summary["inertia"] == pytest.approx(sklearn_result.summary["inertia"], rel=0.01)
    assert normalized_mutual_info_score(sklearn_result.labels, faiss_result.labels) > 0.9


def test_faiss_keeps_the_best_restart_and_honours_max_iter():
    pytest.importorskip("faiss")
    features, _ = gaussian_mixture(seed=5)
    keep = np.ones(len(features), bool)
    config = ClusterConfig(backend="faiss")
    # the restarts' seeds for n_init = n are the first n of those for a larger n_init, so the
    # kept inertia can only fall as n_init grows; here the restarts find different optima
    inertias = [
        cluster_features(features, keep, 8, replace(config, n_init=n_init), seed=0).summary["inertia"]
        for n_init in range(1, 7)
    ]
    assert all(later <= earlier for earlier, later in zip(inertias, inertias[1:], strict=False))
    assert inertias[-1] < inertias[0]
    several = cluster_features(features, keep, 8, replace(config, n_init=6), seed=0)
    one_step = cluster_features(features, keep, 8, replace(config, n_init=1, max_iter=1), seed=0)
    assert one_step.summary["n_iter"] == 1
    assert 1 < several.summary["n_iter"] <= config.max_iter
    assert one_step.summary["inertia"] > several.summary["inertia"]


def test_faiss_uses_the_threads_the_process_is_given(monkeypatch):
    faiss = pytest.importorskip("faiss")
    calls: list[int] = []
    set_threads = faiss.omp_set_num_threads
    monkeypatch.setattr(faiss, "omp_set_num_threads", lambda n: (calls.append(n), set_threads(n)))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert _omp_threads() == 1
    before = faiss.omp_get_max_threads()
    features, _ = blobs(n_per_blob=10)
    cluster_features(features, np.ones(len(features), bool), 4, ClusterConfig(backend="faiss"), seed=0)
    assert calls == [1, before] and faiss.omp_get_max_threads() == before  # set for the call, restored
    monkeypatch.setenv("OMP_NUM_THREADS", "9999")
    assert _omp_threads() == len(os.sched_getaffinity(0))


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


def _cluster_job(tmp_path, ids_of_shard):
    """The cluster_kmeans adapter run with a stand-in job on two shards of three blobs each."""
    import pandas as pd
    from adapter_helpers import Job, run_adapter

    from soundsup.io import save_npy, write_parquet

    rng = np.random.default_rng(0)
    inputs = {"features": [], "ids": [], "indices": []}
    for shard in range(2):
        centres = np.repeat(np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]]), 4, axis=0)
        features = (centres + rng.normal(0, 0.3, centres.shape)).astype(np.float32)
        pair_ids = [f"s{shard}-{i}" for i in range(len(features))]
        silent = np.zeros(len(features), dtype=bool)
        silent[0] = True
        paths = {name: tmp_path / f"{name}-{shard}" for name in inputs}
        save_npy(paths["features"].with_suffix(".npy"), features)
        write_parquet(
            paths["ids"].with_suffix(".parquet"),
            pd.DataFrame({"pair_id": ids_of_shard(pair_ids), "silent": silent}),
        )
        write_parquet(
            paths["indices"].with_suffix(".parquet"),
            pd.DataFrame({"pair_id": pair_ids, "labels": ["/m/a"] * len(features)}),
        )
        inputs["features"].append(str(paths["features"].with_suffix(".npy")))
        inputs["ids"].append(str(paths["ids"].with_suffix(".parquet")))
        inputs["indices"].append(str(paths["indices"].with_suffix(".parquet")))
    out = tmp_path / "clusters"
    job = Job(
        input=Job(inputs),
        output=Job(
            labels=str(out / "labels.parquet"),
            centroids=str(out / "centroids.npy"),
            summary=str(out / "summary.json"),
        ),
        params=Job(clusters={"standardize": True, "n_init": 2, "max_iter": 50, "backend": "sklearn"}, seed=0),
        wildcards=Job(feature="texture", k="3"),
        log=[str(tmp_path / "cluster.log")],
        rule="cluster_kmeans",
        threads=1,
    )
    run_adapter("cluster_kmeans", job)
    return out


def test_cluster_adapter_writes_the_labels_of_every_pair_of_every_shard(tmp_path):
    import json

    import pandas as pd

    out = _cluster_job(tmp_path, lambda ids: ids)
    labels = pd.read_parquet(out / "labels.parquet")
    assert labels["pair_id"].tolist() == [f"s{s}-{i}" for s in range(2) for i in range(12)]
    clusters = labels["cluster"].to_numpy().reshape(2, 3, 4)
    assert (clusters[:, 0, 0] == -1).all()  # the silent windows take no part
    for blob in range(3):  # each blob is one cluster, across both shards
        assert len(set(clusters[:, blob].ravel()) - {-1}) == 1
    assert np.load(out / "centroids.npy").shape == (3, 2)
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["feature"], summary["n_pairs"], summary["n_dropped"], summary["k"]) == (
        "texture",
        24,
        2,
        3,
    )
    meta = json.loads((out / "labels.parquet.meta.json").read_text())
    assert meta["config"]["k"] == 3 and meta["backend"] == "sklearn"


def test_cluster_adapter_refuses_ids_that_do_not_line_up_with_the_pairs(tmp_path):
    from soundsup.shards import ShardError

    with pytest.raises(ShardError, match=r"do not line up with the pair indices .*indices-0\.parquet"):
        _cluster_job(tmp_path, lambda ids: ids[::-1])
    assert not (tmp_path / "clusters" / "labels.parquet").exists()
