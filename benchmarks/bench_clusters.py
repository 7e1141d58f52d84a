"""k-means of ``cluster_features`` at the paper's scale: faiss against scikit-learn, measured in
the same run on the same data with the same settings.

    .venv/bin/python benchmarks/bench_clusters.py [--rows 55000] [--dims 502 3100] [--k 15 50]
        [--n-init 3] [--max-iter 300] [--seed 0]

The data are mixtures of Gaussians shaped like the real features: ``--rows`` rows (about
55,000 windows) in 502 dimensions (texture statistics) and 3100 (MFCC), with ``k`` known
components of unequal weight, as many as the clusters asked for. Both backends get exactly
the same work: the same rows, ``k``, ``n_init`` restarts and ``max_iter``, through
``cluster_features``; each uses every core the process may run on (set ``OMP_NUM_THREADS``
to use fewer). ``max_iter`` defaults to the config schema's ``clusters.max_iter`` (300);
``n_init`` defaults to 3 rather than the schema's ``clusters.n_init`` (10) so that the run
takes under three minutes on two quiet cores; the time grows in proportion to the restarts
and the ratio hardly depends on them (``--n-init 10``, the configured work, took 8 minutes:
faiss 154 s, scikit-learn 313 s).

Prints, per feature shape and ``k``, the seconds, the iterations of the kept restart, the
inertia (sum of squared distances of the standardised rows to their centre) and the NMI with
the known components, for each backend; then the time ratio and the inertia ratio (above 1:
faiss found a worse clustering). The last line states the total times, their ratio and the
range of the inertia ratios.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
import yaml
from sklearn.metrics import normalized_mutual_info_score

from soundsup.clusters import ClusterConfig, cluster_features

SCHEMA = Path(__file__).resolve().parent.parent / "schemas" / "config.schema.yaml"
FEATURES = {502: "texture", 3100: "mfcc"}


def schema_defaults() -> dict:
    """``clusters.*`` defaults of the config schema."""
    schema = yaml.safe_load(SCHEMA.read_text())
    properties = schema["properties"]["clusters"]["properties"]
    return {name: spec["default"] for name, spec in properties.items() if "default" in spec}


def gaussian_mixture(n_rows: int, n_dims: int, n_components: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(features (n_rows, n_dims) float32, components (n_rows,) int64) of a Gaussian mixture.

    Unit noise around centres drawn with a spread of 6 / sqrt(D) per dimension (so centres lie
    about 8.5 noise units apart whatever D), on scales and offsets that vary per dimension as
    raw features do, and component weights from a Dirichlet(2) draw.
    """
    rng = np.random.default_rng(seed)
    weights = rng.dirichlet(np.full(n_components, 2.0))
    components = rng.choice(n_components, size=n_rows, p=weights)
    centres = rng.normal(0.0, 6.0 / np.sqrt(n_dims), size=(n_components, n_dims)).astype(np.float32)
    features = rng.standard_normal((n_rows, n_dims), dtype=np.float32)
    features += centres[components]
    features *= rng.lognormal(0.0, 1.0, n_dims).astype(np.float32)
    features += rng.normal(0.0, 10.0, n_dims).astype(np.float32)
    return features, components


def run_backend(
    backend: str, features: np.ndarray, components: np.ndarray, k: int, settings: dict, seed: int
) -> dict:
    config = ClusterConfig(n_init=settings["n_init"], max_iter=settings["max_iter"], backend=backend)
    keep = np.ones(len(features), bool)
    start = time.perf_counter()
    result = cluster_features(features, keep, k, config, seed=seed)
    seconds = time.perf_counter() - start
    return {
        "seconds": seconds,
        "inertia": result.summary["inertia"],
        "n_iter": result.summary["n_iter"],
        "nmi": normalized_mutual_info_score(components, result.labels),
    }


def main() -> None:
    defaults = schema_defaults()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=55000)
    parser.add_argument("--dims", type=int, nargs="+", default=[502, 3100])
    parser.add_argument("--k", type=int, nargs="+", default=[15, 50])
    parser.add_argument("--n-init", type=int, default=3, help=f"schema default {defaults['n_init']}")
    parser.add_argument("--max-iter", type=int, default=defaults["max_iter"])
    parser.add_argument("--seed", type=int, default=0)
    arguments = parser.parse_args()
    settings = {"n_init": arguments.n_init, "max_iter": arguments.max_iter}
    threads = os.environ.get("OMP_NUM_THREADS", "unset")
    print(
        f"{arguments.rows} rows, n_init {arguments.n_init} (schema {defaults['n_init']}), "
        f"max_iter {arguments.max_iter} (schema {defaults['max_iter']}), "
        f"{len(os.sched_getaffinity(0))} cores, OMP_NUM_THREADS {threads}"
    )

    totals = {"sklearn": 0.0, "faiss": 0.0}
    inertia_ratios = []
    for n_dims in arguments.dims:
        for k in arguments.k:
            features, components = gaussian_mixture(arguments.rows, n_dims, k, arguments.seed)
            name = f"{FEATURES.get(n_dims, 'synthetic')} {arguments.rows}x{n_dims} k={k}"
            results = {}
            for backend in ("sklearn", "faiss"):
                results[backend] = run_backend(backend, features, components, k, settings, arguments.seed)
                totals[backend] += results[backend]["seconds"]
                r = results[backend]
                print(
                    f"{name:28s} {backend:8s} {r['seconds']:7.1f} s  {r['n_iter']:3d} iterations  "
                    f"inertia {r['inertia']:.6e}  NMI {r['nmi']:.4f}"
                )
            time_ratio = results["sklearn"]["seconds"] / results["faiss"]["seconds"]
            inertia_ratio = results["faiss"]["inertia"] / results["sklearn"]["inertia"]
            inertia_ratios.append(inertia_ratio)
            print(f"{name:28s} faiss {time_ratio:.2f}x as fast, inertia faiss/sklearn {inertia_ratio:.5f}")
    print(
        f"k-means, {arguments.rows} rows, n_init {arguments.n_init}, max_iter {arguments.max_iter}: "
        f"faiss {totals['faiss']:.1f} s vs sklearn {totals['sklearn']:.1f} s "
        f"({totals['sklearn'] / totals['faiss']:.2f}x as fast), "
        f"inertia faiss/sklearn {min(inertia_ratios):.5f} to {max(inertia_ratios):.5f}"
    )


if __name__ == "__main__":
    main()
