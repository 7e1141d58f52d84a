"""The jobs of the frozen-feature rules, each one call: VOC07 linear SVMs on one layer
(``train_svm``), low-shot SVMs on one layer (``train_lowshot_svm``) and k-NN on each layer
(``score_knn``), from the features of :func:`soundsup.frozen.extract_frozen_job`.

Each reads the VOC labels of both splits, checks that the features' image ids are theirs
(:func:`soundsup.svm.load_features` names the file otherwise), bounds the BLAS threads to the
job's, and writes its table atomically with the provenance beside it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from soundsup.io import write_meta, write_text
from soundsup.metrics import average_precision_table, mean_ap
from soundsup.svm import (
    KnnConfig,
    LowShotConfig,
    SolverConfig,
    SvmConfig,
    knn_scores,
    load_features,
    lowshot_svms,
    svm_ap_table,
    train_svms,
)
from soundsup.voc import read_labels

log = logging.getLogger(__name__)


def _layer_data(
    voc_root: str | Path, trainval_path: str | Path, test_path: str | Path, layer: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(train features, train labels, test features, test labels) of one layer."""
    train_ids, train_labels = read_labels(voc_root, "trainval")
    test_ids, test_labels = read_labels(voc_root, "test")
    train = load_features(trainval_path, layer, train_ids)
    test = load_features(test_path, layer, test_ids)
    return train, train_labels, test, test_labels


def train_svm_job(
    *,
    model: str,
    layer: str,
    voc_root: str | Path,
    trainval_path: str | Path,
    test_path: str | Path,
    solver: SolverConfig,
    config: SvmConfig,
    config_slice: Mapping[str, Any],
    seed: int,
    n_threads: int,
    ap_path: str | Path,
) -> pd.DataFrame:
    """Rule ``train_svm``: per-class test AP of the cross-validated linear SVMs on ``layer``."""
    from threadpoolctl import threadpool_limits

    train, train_labels, test, test_labels = _layer_data(voc_root, trainval_path, test_path, layer)
    with threadpool_limits(limits=n_threads):
        scores, summary = train_svms(train, train_labels, test, solver, config, seed, n_threads)
    table = svm_ap_table(test_labels, scores, summary)
    log.info("%s %s (%d dims): mAP %.2f", model, layer, train.shape[1], 100 * mean_ap(table))
    write_text(ap_path, table.to_csv(index=False))
    write_meta(
        ap_path,
        {"svm": dict(config_slice)},
        seed=seed,
        model=model,
        layer=layer,
        dims=int(train.shape[1]),
        costs=list(solver.costs),
        cv_ap_by_cost=dict(zip(summary["class"], summary["cv_ap_by_cost"], strict=True)),
    )
    return table


def train_lowshot_job(
    *,
    model: str,
    layer: str,
    voc_root: str | Path,
    trainval_path: str | Path,
    test_path: str | Path,
    solver: SolverConfig,
    config: LowShotConfig,
    config_slice: Mapping[str, Any],
    seed: int,
    n_threads: int,
    map_path: str | Path,
) -> pd.DataFrame:
    """Rule ``train_lowshot_svm``: test mAP of every (size, sample, cost) low-shot run on ``layer``."""
    from threadpoolctl import threadpool_limits

    train, train_labels, test, test_labels = _layer_data(voc_root, trainval_path, test_path, layer)
    with threadpool_limits(limits=n_threads):
        runs = lowshot_svms(train, train_labels, test, test_labels, solver, config, seed, n_threads)
    chosen = runs[runs["selected"]].groupby("positives")["map"].mean()
    log.info(
        "%s %s: low-shot mAP %s",
        model,
        layer,
        ", ".join(f"{size}: {value:.2f}" for size, value in chosen.items()),
    )
    write_text(map_path, runs.to_csv(index=False))
    write_meta(map_path, {"svm": dict(config_slice)}, seed=seed, model=model, layer=layer)
    return runs


def score_knn_job(
    *,
    model: str,
    layers: Sequence[str],
    voc_root: str | Path,
    trainval_path: str | Path,
    test_path: str | Path,
    config: KnnConfig,
    n_threads: int,
    ap_path: str | Path,
) -> pd.DataFrame:
    """Rule ``score_knn``: per-class test AP of k-NN scoring at each of ``layers``
    (columns ``layer, class, ap``)."""
    from threadpoolctl import threadpool_limits

    tables = []
    for layer in layers:
        train, train_labels, test, test_labels = _layer_data(voc_root, trainval_path, test_path, layer)
        with threadpool_limits(limits=n_threads):
            scores = knn_scores(train, train_labels, test, config.knn_k)
        table = average_precision_table(test_labels, scores)
        log.info("%s %s: %d-NN mAP %.2f", model, layer, config.knn_k, 100 * mean_ap(table))
        tables.append(table.assign(layer=layer))
    result = pd.concat(tables, ignore_index=True)
    result = result[["layer", *tables[0].columns[:-1]]]
    write_text(ap_path, result.to_csv(index=False))
    return result
