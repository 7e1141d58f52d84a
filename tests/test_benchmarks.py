"""The benchmarks stay runnable: each, at a toy size, ends with its summary line and ratios."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


def run_benchmark(name: str, *arguments: str) -> list[str]:
    result = subprocess.run(
        [sys.executable, str(BENCHMARKS / name), *arguments],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout.strip().splitlines()


def test_bench_train_measures_every_pipeline():
    lines = run_benchmark(
        "bench_train.py",
        *("--frames", "48", "--frame-size", "72", "--crop", "64", "--batch-size", "8"),
        *("--fc-width", "32", "--steps", "2", "--warmup", "1", "--rounds", "1", "--threads", "1"),
    )
    for pipeline in ("baseline", "soundsup", "soundsup data only", "soundsup step only"):
        assert any(re.match(rf"alexnet\s+{pipeline}\s+[\d.]+ img/s, data wait", line) for line in lines)
    summary = lines[-1]
    assert summary.startswith("bench_train (cpu, 64 px)")
    assert re.search(r"alexnet \d+ vs \d+ img/s = [\d.]+x \(data path [\d.]+x, step [\d.]+x\)", summary)


def test_bench_clusters_compares_both_backends():
    lines = run_benchmark(
        "bench_clusters.py", "--rows", "600", "--dims", "12", "--k", "3", "--n-init", "1", "--max-iter", "20"
    )
    assert any("sklearn" in line for line in lines) and any("faiss" in line for line in lines)
    assert re.search(r"faiss [\d.]+ s vs sklearn [\d.]+ s \([\d.]+x as fast\)", lines[-1])


def test_bench_svm_compares_both_representations():
    lines = run_benchmark(
        "bench_svm.py",
        *("--images", "120", "--size", "64", "--classes", "1"),
        *("--baseline-costs", "1", "--threads", "1"),
    )
    assert any(re.search(r"C=1\s+basis\s+[\d.]+ s.*plain\s+[\d.]+ s", line) for line in lines)
    assert re.search(r"= [\d.]+x \(decisions within [\d.e+-]+\); one train_svm job [\d.]+ CPU min", lines[-1])
