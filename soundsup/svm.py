"""Linear evaluations of frozen features on VOC 2007: SVMs per class, low-shot SVMs, k-NN.

The protocol is the VOC07 benchmark of Goyal et al. 2019 as VISSL implements it
(``vissl/utils/svm_utils/svm_trainer.py``, ``svm_low_shot_trainer.py``,
``extra_scripts/create_low_shot_samples.py``); where this module differs, it says so.

Full SVMs (:func:`train_svms`), one per class: features scaled to unit L2 norm
(x / (||x|| + 1e-5)); scikit-learn's ``LinearSVC`` (liblinear, dual, squared hinge, L2
penalty, intercept scaling 1, class weights {+1: positive_weight, -1: 1}); for each cost of the
grid a ``cv_folds``-fold stratified cross-validation on trainval (scikit-learn's
``StratifiedKFold``, no shuffle: what the benchmark's ``cross_val_score`` does) scored by AP;
the class's cost is the one with the best mean fold AP (the first on ties); the SVM retrained on
all of trainval at that cost scores the test set. Trainval images labelled 0 (only difficult
objects) are negatives (the benchmark) or left out (``difficult='ignore'``). The benchmark fits
every cost on all of trainval; only the chosen one is fitted here (same result, fewer fits).
Folds without a positive to score, or without both labels to train on, are skipped; a class
without any scorable fold takes the grid's cost nearest 1 (in log scale), and a class without
positive (or negative) trainval images gets no SVM (score 0 for every test image): both are
logged and recorded.

Low-shot SVMs (:func:`lowshot_svms`): for each of ``lowshot_samples`` seeded samples and each
size n, every class draws n of its positive trainval images and ``lowshot_negative_ratio`` x n
of its negative ones (never one labelled 0), independently per class, sample and size (the
benchmark draws the same way, unseeded). Each class's SVM trains on its own draw, with every
cost of the grid, and scores the test set; the mAP of a (size, sample, cost) is the mean over
the classes. Each size reports, as the benchmark does, the cost whose mean mAP over the samples
is best: a choice made on test. ``lowshot_cost`` fixes one cost instead (nothing chosen on test).

k-NN (:func:`knn_scores`): cosine similarity to every trainval image; a test image's score for a
class is the sum of the similarities of its k nearest trainval images that are positives of the
class (difficult ones count as not positive).

Features come in the files of :func:`save_features`: an uncompressed ``.npz`` per split with
the image ids (``ids``) and one (N, D) float32 array per layer.

Test AP everywhere is :func:`soundsup.metrics.average_precision` (step AP, images labelled 0 left
out). Every liblinear fit is seeded (``random_state``); fits run in ``n_workers`` forked
processes (liblinear draws from one random generator per process, so threads would make the
results depend on scheduling), each limited to one BLAS thread. Where it is cheaper, trainval
and test features are first written in an orthonormal basis of the trainval rows
(:func:`row_space`): the same SVMs, up to rounding, at a fraction of the cost when there are
far fewer images than nonzero values per image.
"""

from __future__ import annotations

import logging
import math
import multiprocessing
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from soundsup.io import atomic_path
from soundsup.metrics import average_precision, average_precision_table
from soundsup.names import VOC_CLASSES

log = logging.getLogger(__name__)

DIFFICULT_MODES = ("negative", "ignore")
NORM_EPSILON = 1e-5  # the benchmark's x / (||x|| + 1e-5)
IDS_KEY = "ids"


@dataclass(frozen=True)
class SolverConfig:
    """The ``svm`` keys of every linear SVM (defaults: the benchmark's)."""

    costs: tuple[float, ...] = (0.01, 0.1, 1.0, 2.0, 5.0, 10.0, 15.0, 20.0, 50.0, 100.0, 1000.0)
    max_iter: int = 2000
    tol: float = 0.0001
    positive_weight: float = 2.0
    normalize: bool = True

    def __post_init__(self) -> None:
        if not self.costs or not all(cost > 0 for cost in self.costs):
            raise ValueError(f"svm.costs must be positive numbers; got {self.costs!r}")
        if len(set(self.costs)) != len(self.costs):
            raise ValueError(f"svm.costs lists a cost twice: {self.costs!r}")
        for name in ("max_iter", "tol", "positive_weight"):
            if not getattr(self, name) > 0:
                raise ValueError(f"svm.{name} must be positive; got {getattr(self, name)!r}")


@dataclass(frozen=True)
class SvmConfig:
    """The ``svm`` keys of the full (cross-validated) SVMs."""

    cv_folds: int = 3
    difficult: str = "negative"  # 'negative' | 'ignore'

    def __post_init__(self) -> None:
        if self.cv_folds < 2:
            raise ValueError(f"svm.cv_folds must be at least 2; got {self.cv_folds!r}")
        if self.difficult not in DIFFICULT_MODES:
            raise ValueError(f"svm.difficult must be one of {DIFFICULT_MODES}; got {self.difficult!r}")


@dataclass(frozen=True)
class LowShotConfig:
    """The ``svm`` keys of the low-shot SVMs (defaults: the benchmark's)."""

    lowshot_sizes: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64, 96)
    lowshot_samples: int = 5
    lowshot_negative_ratio: int = 19
    lowshot_cost: float | None = None

    def __post_init__(self) -> None:
        if not self.lowshot_sizes or not all(size >= 1 for size in self.lowshot_sizes):
            raise ValueError(f"svm.lowshot_sizes must be positive integers; got {self.lowshot_sizes!r}")
        for name in ("lowshot_samples", "lowshot_negative_ratio"):
            if not getattr(self, name) >= 1:
                raise ValueError(f"svm.{name} must be positive; got {getattr(self, name)!r}")
        if self.lowshot_cost is not None and not self.lowshot_cost > 0:
            raise ValueError(f"svm.lowshot_cost must be positive or null; got {self.lowshot_cost!r}")


@dataclass(frozen=True)
class KnnConfig:
    """The ``svm`` key of the k-NN classifier."""

    knn_k: int = 20

    def __post_init__(self) -> None:
        if self.knn_k < 1:
            raise ValueError(f"svm.knn_k must be positive; got {self.knn_k!r}")


# ---------------------------------------------------------------------------------------------
# feature files (written by the extraction, read by every evaluation)


def save_features(path: str | Path, ids: Sequence[str], features: Mapping[str, np.ndarray]) -> None:
    """Write ids and ``{layer: (N, D) float32}`` as one uncompressed ``.npz``, atomically."""
    for name, values in features.items():
        if name == IDS_KEY or values.ndim != 2 or len(values) != len(ids):
            raise ValueError(f"{path}: layer {name!r} must be ({len(ids)}, D); got {values.shape}")
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as handle:
            np.savez(handle, **{IDS_KEY: np.asarray(list(ids), dtype=str)}, **features)


def load_features(path: str | Path, layer: str, ids: Sequence[str] | None = None) -> np.ndarray:
    """The (N, D) float32 features of ``layer`` from a :func:`save_features` file. With ``ids``,
    the file's image ids must be exactly those, in that order (else a ValueError naming the file)."""
    try:
        archive = np.load(path, allow_pickle=False)
    except FileNotFoundError as error:
        raise FileNotFoundError(f"feature file {path} does not exist") from error
    except (OSError, ValueError) as error:
        raise ValueError(f"{path}: not a feature file ({error})") from error
    with archive:
        if IDS_KEY not in archive.files or layer not in archive.files:
            layers = [name for name in archive.files if name != IDS_KEY]
            raise ValueError(
                f"{path}: no {'ids' if IDS_KEY not in archive.files else layer!r}; layers {layers}"
            )
        stored = archive[IDS_KEY].tolist()
        if ids is not None and stored != list(ids):
            first = next((i for i, (a, b) in enumerate(zip(stored, ids, strict=False)) if a != b), None)
            where = f"first difference at row {first}" if first is not None else "lengths differ"
            raise ValueError(
                f"{path}: image ids differ from the VOC labels ({len(stored)} vs {len(ids)} images; {where})"
            )
        values = archive[layer]
    if values.ndim != 2 or values.dtype != np.float32 or not np.isfinite(values).all():
        raise ValueError(f"{path}: layer {layer} is not a finite (N, D) float32 array")
    return values


# ---------------------------------------------------------------------------------------------
# inputs


def _check_inputs(features: np.ndarray, labels: np.ndarray, name: str) -> None:
    if features.ndim != 2 or labels.ndim != 2 or len(features) != len(labels):
        raise ValueError(
            f"{name}: features (N, D) and labels (N, C) must have as many rows; "
            f"got {features.shape} and {labels.shape}"
        )
    if not np.isin(labels, (-1, 0, 1)).all():
        raise ValueError(f"{name}: labels must hold only 1, -1 and 0")
    if not np.isfinite(features).all():
        raise ValueError(f"{name}: features contain NaN or infinite values")


def l2_normalize(features: np.ndarray) -> np.ndarray:
    """(N, D) -> (N, D) float64, each row divided by (its L2 norm + 1e-5), as the benchmark."""
    values = np.asarray(features, dtype=np.float64)
    return values / (np.linalg.norm(values, axis=1, keepdims=True) + NORM_EPSILON)


def row_space(train: np.ndarray, test: np.ndarray, always: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """``train`` (N, D) and ``test`` (M, D) in an orthonormal basis of the span of the trainval
    rows, (N, R) and (M, R) float64 with R = rank <= min(N, D), when that makes liblinear's
    work smaller; else the inputs as float64.

    A linear SVM with an L2 penalty (and liblinear's bias, an appended constant feature) sees
    its data only through inner products, and its weights lie in the span of its training rows:
    in such a basis every inner product, hence every step of liblinear's dual coordinate descent
    (the same random order included), every weight vector (rotated) and every decision value, is
    the same up to rounding. liblinear stores the nonzero values of each row, so a step costs
    R values instead of the row's nonzeros: the basis is taken (``always``: in any case) when
    min(N, D) is below the mean number of nonzeros per row (features with many dead units are
    sparse, and stay as they are).
    """
    train = np.ascontiguousarray(train, dtype=np.float64)
    test = np.ascontiguousarray(test, dtype=np.float64)
    nonzeros = np.count_nonzero(train) / max(len(train), 1)
    if not always and min(train.shape) >= nonzeros:
        return train, test
    _, singular, basis = np.linalg.svd(train, full_matrices=False)
    rank = int((singular > singular[0] * max(train.shape) * np.finfo(np.float64).eps).sum())
    basis = basis[: max(rank, 1)].T
    return train @ basis, test @ basis


def _prepared(
    train_features: np.ndarray, test_features: np.ndarray, solver: SolverConfig
) -> tuple[np.ndarray, np.ndarray]:
    """The SVMs' inputs: rows scaled to unit norm (``normalize``), in :func:`row_space`."""
    if solver.normalize:
        train_features, test_features = l2_normalize(train_features), l2_normalize(test_features)
    return row_space(train_features, test_features)


# ---------------------------------------------------------------------------------------------
# one SVM, and fits in parallel

_SHARED: dict[str, Any] = {}  # read by the workers (forked after it is set)


def fit_svm(
    x: np.ndarray, y: np.ndarray, cost: float, solver: SolverConfig, seed: int
) -> tuple[np.ndarray, float, bool]:
    """One linear SVM on ``x`` (N, D) float64 and ``y`` (N,) in {1, -1}: (weights (D,), bias,
    whether liblinear converged within ``max_iter``)."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.svm import LinearSVC

    classifier = LinearSVC(
        C=cost,
        class_weight={1: solver.positive_weight, -1: 1.0},
        intercept_scaling=1.0,
        penalty="l2",
        loss="squared_hinge",
        dual=True,
        tol=solver.tol,
        max_iter=solver.max_iter,
        random_state=seed,
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        classifier.fit(x, y)
    converged = not any(issubclass(item.category, ConvergenceWarning) for item in caught)
    return classifier.coef_[0].copy(), float(classifier.intercept_[0]), converged


def _limit_blas() -> None:
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=1)


def _run(function: Callable[[tuple], Any], tasks: Sequence[tuple], shared: dict, n_workers: int) -> list:
    """``[function(task) for task in tasks]``, in ``n_workers`` forked processes when above 1;
    ``shared`` is what the workers read (module state, inherited by the fork, never pickled)."""
    global _SHARED
    _SHARED = shared
    try:
        if n_workers <= 1 or len(tasks) <= 1:
            return [function(task) for task in tasks]
        context = multiprocessing.get_context("fork")
        workers = min(n_workers, len(tasks))
        chunk = max(1, len(tasks) // (8 * workers))
        with ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=_limit_blas) as pool:
            return list(pool.map(function, tasks, chunksize=chunk))
    finally:
        _SHARED = {}


def _nearest_to_one(costs: Sequence[float]) -> float:
    return min(costs, key=lambda cost: (abs(math.log(cost)), cost))


# ---------------------------------------------------------------------------------------------
# full SVMs with cross-validated costs


def _training_rows(labels: np.ndarray, difficult: str) -> tuple[np.ndarray, np.ndarray]:
    """Rows of one class's trainval labels (N,) that train its SVM, and their targets in {1, -1}."""
    rows = np.flatnonzero(labels != 0) if difficult == "ignore" else np.arange(len(labels))
    return rows, np.where(labels[rows] == 1, 1, -1)


def _folds(targets: np.ndarray, n_folds: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Stratified folds (train, validation) of positions in ``targets``, scikit-learn's order."""
    from sklearn.model_selection import StratifiedKFold

    n_folds = min(n_folds, len(targets))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "the least populated class has only ..."
        return list(StratifiedKFold(n_splits=n_folds).split(np.zeros(len(targets)), targets))


def _cv_task(task: tuple[int, int, int]) -> tuple[float, bool]:
    """Validation AP of class ``c``, cost ``i``, fold ``f``."""
    c, i, f = task
    x, solver, seed = _SHARED["x"], _SHARED["solver"], _SHARED["seed"]
    rows, targets = _SHARED["rows"][c]
    train, validation = _SHARED["folds"][c][f]
    weights, bias, converged = fit_svm(x[rows[train]], targets[train], solver.costs[i], solver, seed)
    scores = x[rows[validation]] @ weights + bias
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return average_precision(targets[validation], scores), converged


def _final_task(task: tuple[int, float]) -> tuple[np.ndarray, bool]:
    """Test scores of class ``c`` from its SVM on all its trainval rows at ``cost``."""
    c, cost = task
    x, solver, seed = _SHARED["x"], _SHARED["solver"], _SHARED["seed"]
    rows, targets = _SHARED["rows"][c]
    weights, bias, converged = fit_svm(x[rows], targets, cost, solver, seed)
    return _SHARED["test"] @ weights + bias, converged


def train_svms(
    train_features: np.ndarray,
    train_labels: np.ndarray,
    test_features: np.ndarray,
    solver: SolverConfig,
    config: SvmConfig,
    seed: int,
    n_workers: int = 1,
) -> tuple[np.ndarray, pd.DataFrame]:
    """One cross-validated linear SVM per class; returns the test scores (N_test, C) float64 and
    one row per class: ``class, cost`` (chosen; NaN without an SVM), ``cv_ap`` (its mean fold AP;
    NaN when no fold could be scored), ``n_train_pos``, ``n_train_neg``, ``cv_ap_by_cost``
    (list, one mean fold AP per cost).

    ``train_features`` (N, D) / ``test_features`` (M, D) real; ``train_labels`` (N, C) in
    {1, -1, 0}. ``seed`` seeds every liblinear fit.
    """
    _check_inputs(train_features, train_labels, "trainval")
    if test_features.ndim != 2 or test_features.shape[1] != train_features.shape[1]:
        raise ValueError(f"test features {test_features.shape} do not match trainval {train_features.shape}")
    started = time.perf_counter()
    x, test = _prepared(train_features, test_features, solver)
    n_classes = train_labels.shape[1]
    rows = [_training_rows(train_labels[:, c], config.difficult) for c in range(n_classes)]
    trainable = [c for c in range(n_classes) if len(np.unique(rows[c][1])) == 2]
    folds = {c: _folds(rows[c][1], config.cv_folds) for c in trainable}
    tasks = [
        (c, i, f)
        for c in trainable
        for i in range(len(solver.costs))
        for f, (train, validation) in enumerate(folds[c])
        if len(np.unique(rows[c][1][train])) == 2 and (rows[c][1][validation] == 1).any()
    ]
    shared = {"x": x, "test": test, "rows": rows, "folds": folds, "solver": solver, "seed": seed}
    results = dict(zip(tasks, _run(_cv_task, tasks, shared, n_workers), strict=True))
    summary, final_tasks = [], []
    for c in range(n_classes):
        name = VOC_CLASSES[c] if n_classes == len(VOC_CLASSES) else str(c)
        targets = rows[c][1]
        by_cost = [
            float(np.mean(aps))
            if (aps := [results[key][0] for key in results if key[:2] == (c, i)])
            else np.nan
            for i in range(len(solver.costs))
        ]
        record = {
            "class": name,
            "n_train_pos": int((targets == 1).sum()),
            "n_train_neg": int((targets == -1).sum()),
        }
        if c not in trainable:
            log.warning("%s: no positive or no negative trainval image; no SVM, every test score 0", name)
            summary.append({**record, "cost": np.nan, "cv_ap": np.nan, "cv_ap_by_cost": by_cost})
            continue
        if np.isnan(by_cost).all():
            cost, cv_ap = _nearest_to_one(solver.costs), np.nan
            log.warning("%s: no fold can be scored (too few positives); cost %g taken", name, cost)
        else:
            best = int(np.nanargmax(by_cost))
            cost, cv_ap = solver.costs[best], by_cost[best]
        summary.append({**record, "cost": cost, "cv_ap": cv_ap, "cv_ap_by_cost": by_cost})
        final_tasks.append((c, cost))
    scores = np.zeros((len(test), n_classes), dtype=np.float64)
    finals = _run(_final_task, final_tasks, shared, n_workers)
    for (c, _), (column, _) in zip(final_tasks, finals, strict=True):
        scores[:, c] = column
    unconverged = sum(not converged for _, converged in [*results.values(), *finals])
    if unconverged:
        log.warning(
            "%d of %d SVM fits stopped at max_iter=%d",
            unconverged,
            len(results) + len(finals),
            solver.max_iter,
        )
    log.info(
        "%d classes, %d cross-validation fits and %d final fits on %s features in %.1f s",
        n_classes, len(tasks), len(finals), "x".join(map(str, train_features.shape)),
        time.perf_counter() - started,
    )  # fmt: skip
    return scores, pd.DataFrame(summary)


def svm_ap_table(test_labels: np.ndarray, scores: np.ndarray, summary: pd.DataFrame) -> pd.DataFrame:
    """Per-class test AP (:func:`~soundsup.metrics.average_precision_table`) beside each class's
    chosen cost and cross-validation AP."""
    table = average_precision_table(test_labels, scores)
    return table.assign(
        cost=summary["cost"].to_numpy(),
        cv_ap=summary["cv_ap"].to_numpy(),
        n_train_pos=summary["n_train_pos"].to_numpy(),
        n_train_neg=summary["n_train_neg"].to_numpy(),
    )


# ---------------------------------------------------------------------------------------------
# low-shot SVMs


def lowshot_sample(
    labels: np.ndarray, size: int, negative_ratio: int, rng: np.random.Generator
) -> np.ndarray:
    """One low-shot draw: (N, C) int8 with, in every column, ``size`` rows set to 1 (drawn from
    the class's positives) and ``negative_ratio * size`` set to -1 (drawn from its negatives), 0
    elsewhere; rows labelled 0 are never drawn. Classes draw in column order from ``rng``.
    Raises ValueError naming the class when it has too few positives or negatives."""
    sample = np.zeros(labels.shape, dtype=np.int8)
    for c in range(labels.shape[1]):
        name = VOC_CLASSES[c] if labels.shape[1] == len(VOC_CLASSES) else str(c)
        for value, count in ((1, size), (-1, negative_ratio * size)):
            pool = np.flatnonzero(labels[:, c] == value)
            if len(pool) < count:
                kind = "positive" if value == 1 else "negative"
                raise ValueError(
                    f"class {name} has {len(pool)} {kind} trainval images; a low-shot size of {size} "
                    f"needs {count} (svm.lowshot_sizes, svm.lowshot_negative_ratio)"
                )
            sample[rng.choice(pool, size=count, replace=False), c] = value
    return sample


def lowshot_rng(seed: int, sample: int, size: int) -> np.random.Generator:
    """The generator of low-shot sample ``sample`` (0-based) of size ``size``."""
    return np.random.default_rng([seed, sample, size])


def _lowshot_task(task: tuple[int, int, int, float]) -> float:
    """Test AP of class ``c`` from an SVM at ``cost`` on draw ``(size, sample)``."""
    size, sample, c, cost = task
    x, test, solver, seed = _SHARED["x"], _SHARED["test"], _SHARED["solver"], _SHARED["seed"]
    draw = _SHARED["draws"][(size, sample)][:, c]
    rows = np.flatnonzero(draw != 0)
    weights, bias, _ = fit_svm(x[rows], draw[rows].astype(np.int64), cost, solver, seed)
    return average_precision(_SHARED["test_labels"][:, c], test @ weights + bias)


def lowshot_svms(
    train_features: np.ndarray,
    train_labels: np.ndarray,
    test_features: np.ndarray,
    test_labels: np.ndarray,
    solver: SolverConfig,
    config: LowShotConfig,
    seed: int,
    n_workers: int = 1,
) -> pd.DataFrame:
    """Low-shot SVMs: one row per (size, sample, cost) with ``positives`` (the size),
    ``sample`` (1-based), ``cost``, ``map`` (percent, mean test AP over the classes) and
    ``selected`` (the cost reported for that size: the best mean over samples, or
    ``lowshot_cost``)."""
    _check_inputs(train_features, train_labels, "trainval")
    _check_inputs(test_features, test_labels, "test")
    started = time.perf_counter()
    x, test = _prepared(train_features, test_features, solver)
    costs = solver.costs if config.lowshot_cost is None else (config.lowshot_cost,)
    draws = {
        (size, sample): lowshot_sample(
            train_labels, size, config.lowshot_negative_ratio, lowshot_rng(seed, sample, size)
        )
        for size in config.lowshot_sizes
        for sample in range(config.lowshot_samples)
    }
    n_classes = train_labels.shape[1]
    tasks = [(size, sample, c, cost) for (size, sample) in draws for cost in costs for c in range(n_classes)]
    shared = {
        "x": x,
        "test": test,
        "test_labels": test_labels,
        "draws": draws,
        "solver": solver,
        "seed": seed,
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # AP of a class without test positives: 0, logged by metrics
        aps = _run(_lowshot_task, tasks, shared, n_workers)
    frame = pd.DataFrame(tasks, columns=["positives", "sample", "class", "cost"]).assign(ap=aps)
    runs = frame.groupby(["positives", "sample", "cost"], as_index=False)["ap"].mean()
    runs = runs.assign(sample=runs["sample"] + 1, map=100 * runs["ap"]).drop(columns="ap")
    best = runs.groupby(["positives", "cost"])["map"].mean().groupby(level="positives").idxmax()
    runs["selected"] = [
        (size, cost) in set(best.tolist()) for size, cost in zip(runs["positives"], runs["cost"], strict=True)
    ]
    log.info("%d low-shot SVM fits in %.1f s", len(tasks), time.perf_counter() - started)
    return runs[["positives", "sample", "cost", "map", "selected"]]


# ---------------------------------------------------------------------------------------------
# k-NN


def _unit_rows(features: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm, float64 (an all-zero row stays zero: similarity 0)."""
    values = np.asarray(features, dtype=np.float64)
    norms = np.linalg.norm(values, axis=1, keepdims=True)
    return values / np.where(norms > 0, norms, 1.0)


def knn_scores(
    train_features: np.ndarray, train_labels: np.ndarray, test_features: np.ndarray, k: int, chunk: int = 1024
) -> np.ndarray:
    """Cosine k-NN scores (M, C) float64: for each test row, the sum of the cosine similarities
    of its ``k`` most similar trainval rows that are positives (label 1) of each class."""
    _check_inputs(train_features, train_labels, "trainval")
    if test_features.ndim != 2 or test_features.shape[1] != train_features.shape[1]:
        raise ValueError(f"test features {test_features.shape} do not match trainval {train_features.shape}")
    k = min(k, len(train_features))
    train = _unit_rows(train_features)
    positive = (train_labels == 1).astype(np.float64)
    scores = np.empty((len(test_features), train_labels.shape[1]), dtype=np.float64)
    for start in range(0, len(test_features), chunk):
        similarity = _unit_rows(test_features[start : start + chunk]) @ train.T
        nearest = np.argpartition(-similarity, k - 1, axis=1)[:, :k]
        weights = np.take_along_axis(similarity, nearest, axis=1)
        scores[start : start + chunk] = np.einsum("mk,mkc->mc", weights, positive[nearest])
    return scores
