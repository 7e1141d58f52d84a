"""The frozen-feature evaluations at the paper's scale: liblinear on the pooled features as they
are against liblinear on the same features written in a basis of the trainval rows
(``soundsup.svm.row_space``, what ``train_svms`` does), measured in the same run on the same
data, and what one job of each evaluation of ``config.yaml`` costs.

    .venv/bin/python benchmarks/bench_svm.py [--images 5011] [--size 227] [--layer conv5]
        [--classes 2] [--baseline-costs 0.1 10 1000] [--threads 2] [--seed 0]

Data: a synthetic VOC world of ``--images`` trainval images (the demo's renderer, 128 px),
their features at ``--layer`` of a randomly initialised torchvision AlexNet (seeded) at
``--size`` px, pooled as the workflow pools them (conv5 at 227 px: 256 x 6 x 6 = 9,216
values), scaled to unit norm. Work, for ``--classes`` classes: one fit per cost of the
benchmark's grid (the schema's ``svm.costs``, 11 costs) on the training part of the first
cross-validation fold (2/3 of the images), with the schema's ``max_iter``, ``tol`` and class
weights; the plain representation only for ``--baseline-costs`` (its fits at large costs take
minutes). Both representations give the same SVM (the decision values are compared).

A ``train_svm`` job of ``config.yaml`` makes 20 classes x 11 costs x 3 folds fits on 2/3 of
trainval plus 20 on all of it; its CPU time is extrapolated from the measured fits (the mean
over the classes, per cost; a fit on all of trainval counted as 1.5 fold fits) plus the
measured basis (SVD). A low-shot job (sizes 1-96, 5 samples, 11 costs, 20 classes) is
extrapolated from one class's fits at every size and cost; a k-NN job from one layer measured.

``train_svms`` takes the basis only where it has fewer columns than the features have nonzero
values per row; the benchmark measures both in any case. Prints the extraction rate, the
nonzeros per row, per cost the fit times of both representations, the largest
difference of their decision values, then the extrapolations; the last line states the mean
time per fit of both on the baseline costs, their ratio, and the CPU minutes per job.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import yaml
from sklearn.model_selection import StratifiedKFold
from threadpoolctl import threadpool_limits

from soundsup.device import seed_everything
from soundsup.frozen import FeatureConfig, extract_features
from soundsup.models import build_model
from soundsup.svm import (
    SolverConfig,
    fit_svm,
    knn_scores,
    l2_normalize,
    lowshot_rng,
    lowshot_sample,
    row_space,
)
from soundsup.synthetic import SyntheticConfig, write_voc
from soundsup.voc import VOC_CLASSES, read_labels

SCHEMA = Path(__file__).resolve().parent.parent / "schemas" / "config.schema.yaml"
LOWSHOT_SIZES = (1, 2, 4, 8, 16, 32, 64, 96)
N_FOLDS, N_LOWSHOT_SAMPLES = 3, 5


def svm_defaults() -> dict:
    """``svm.*`` defaults of the config schema."""
    properties = yaml.safe_load(SCHEMA.read_text())["properties"]["svm"]["properties"]
    return {name: spec["default"] for name, spec in properties.items() if "default" in spec}


def features(images: int, size: int, layer: str, threads: int, seed: int, folder: Path):
    """(features (N, D) float32, labels (N, 20) int8, images per second of the extraction)."""
    world = SyntheticConfig(n_voc_trainval=images, n_voc_test=20, voc_image_size=128)
    with concurrent.futures.ThreadPoolExecutor(threads) as pool:
        write_voc(folder, world, seed, pool)
    ids, labels = read_labels(folder, "trainval")
    seed_everything(seed)
    model = build_model("alexnet", 1000)
    started = time.perf_counter()
    values = extract_features(
        model, "alexnet", folder, ids, size, FeatureConfig(precision="fp32"), torch.device("cpu"), threads
    )
    return values[layer], labels, len(ids) / (time.perf_counter() - started)


def cpu_seconds(function, *args):
    started = time.process_time()
    result = function(*args)
    return time.process_time() - started, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=5011)
    parser.add_argument("--size", type=int, default=227)
    parser.add_argument("--layer", default="conv5")
    parser.add_argument("--classes", type=int, default=2)
    parser.add_argument("--baseline-costs", type=float, nargs="+", default=[0.1, 10.0, 1000.0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    defaults = svm_defaults()
    solver = SolverConfig(
        costs=tuple(defaults["costs"]),
        max_iter=defaults["max_iter"],
        tol=defaults["tol"],
        positive_weight=defaults["positive_weight"],
    )
    with tempfile.TemporaryDirectory() as scratch:
        raw, labels, rate = features(
            args.images, args.size, args.layer, args.threads, args.seed, Path(scratch)
        )
    shape = f"{raw.shape[0]} images x {raw.shape[1]}"
    print(f"features: {shape} ({args.layer} at {args.size} px), {rate:.0f} images/s")
    x = l2_normalize(raw)
    with threadpool_limits(limits=args.threads):
        svd_seconds, (z, _) = cpu_seconds(row_space, x, x[:1], True)
        knn_seconds, _ = cpu_seconds(knn_scores, raw, labels, raw, defaults["knn_k"])
    nonzeros = np.count_nonzero(x) / len(x)
    taken = "taken" if min(x.shape) < nonzeros else "not taken"
    print(
        f"basis of the trainval rows: {z.shape[1]} columns against {nonzeros:.0f} nonzeros per row "
        f"({taken} by train_svms), {svd_seconds:.1f} CPU s"
    )
    # Classes by how many positives they have (the most and the fewest first).
    order = np.argsort(-(labels == 1).sum(axis=0))
    chosen = [int(order[i // 2] if i % 2 == 0 else order[-1 - i // 2]) for i in range(args.classes)]
    per_cost: dict[float, list[float]] = {cost: [] for cost in solver.costs}
    baseline: dict[float, list[float]] = {cost: [] for cost in args.baseline_costs}
    ours_on_baseline: dict[float, list[float]] = {cost: [] for cost in args.baseline_costs}
    worst = 0.0
    with threadpool_limits(limits=1):
        for c in chosen:
            y = np.where(labels[:, c] == 1, 1, -1)
            train, validation = next(StratifiedKFold(N_FOLDS).split(np.zeros(len(y)), y))
            for cost in solver.costs:
                seconds, (weights, bias, converged) = cpu_seconds(
                    fit_svm, z[train], y[train], cost, solver, 0
                )
                per_cost[cost].append(seconds)
                stopped = "" if converged else " (max_iter)"
                line = f"{VOC_CLASSES[c]:>12} C={cost:<7g} basis {seconds:7.2f} s{stopped}"
                if cost in baseline:
                    plain_seconds, (plain, plain_bias, _) = cpu_seconds(
                        fit_svm, x[train], y[train], cost, solver, 0
                    )
                    baseline[cost].append(plain_seconds)
                    ours_on_baseline[cost].append(seconds)
                    gap = np.abs(
                        (z[validation] @ weights + bias) - (x[validation] @ plain + plain_bias)
                    ).max()
                    worst = max(worst, float(gap))
                    line += f"   plain {plain_seconds:7.2f} s   largest decision difference {gap:.1e}"
                print(line, flush=True)
        lowshot = 0.0
        c = chosen[0]
        # The sizes every class has enough positives and negatives for (all eight on VOC 2007).
        positives, negatives = (labels == 1).sum(axis=0).min(), (labels == -1).sum(axis=0).min()
        supported = [size for size in LOWSHOT_SIZES if size <= positives and 19 * size <= negatives]
        for size in supported:
            draw = lowshot_sample(labels, size, 19, lowshot_rng(args.seed, 0, size))[:, c]
            rows = np.flatnonzero(draw != 0)
            for cost in solver.costs:
                lowshot += cpu_seconds(fit_svm, z[rows], draw[rows].astype(np.int64), cost, solver, 0)[0]
    fold_fits = sum(float(np.mean(times)) for times in per_cost.values())
    svm_job = 20 * N_FOLDS * fold_fits + 20 * 1.5 * fold_fits / len(solver.costs) + svd_seconds
    lowshot_job = 20 * N_LOWSHOT_SAMPLES * lowshot + svd_seconds
    plain = float(np.mean([t for times in baseline.values() for t in times]))
    ours = float(np.mean([t for times in ours_on_baseline.values() for t in times]))
    fits = f"20 classes x {len(solver.costs)} costs x {N_FOLDS} folds + 20 fits"
    print(f"train_svm job ({fits}): {svm_job / 60:.1f} CPU min")
    sizes = f"sizes {', '.join(map(str, supported))}, {N_LOWSHOT_SAMPLES} samples"
    print(f"train_lowshot_svm job ({sizes}): {lowshot_job / 60:.1f} CPU min")
    print(f"score_knn: {knn_seconds:.0f} CPU s per layer")
    print(
        f"bench_svm ({raw.shape[0]} images, {args.layer} {raw.shape[1]} dims): liblinear per fit "
        f"{ours:.2f} s in the trainval basis vs {plain:.2f} s on the features = {plain / ours:.1f}x "
        f"(decisions within {worst:.0e}); one train_svm job {svm_job / 60:.1f} CPU min, "
        f"one low-shot job {lowshot_job / 60:.1f} CPU min"
    )


if __name__ == "__main__":
    main()
