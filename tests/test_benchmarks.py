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


def test_bench_memory_measures_both_loading_paths():
    lines = run_benchmark("bench_memory.py", "--gigabytes", "0.02", "--shards", "2", "--frame-size", "64")
    for path in ("imports only", "ours", "baseline"):
        assert any(re.match(rf"{path}\s+peak RSS\s+[\d.]+ GB = [\d.]+x the frames", line) for line in lines)
    assert re.match(r"RESULT bench_memory: [\d.]+ GB of frames; peak RSS ours [\d.]+ GB = [\d.]+x", lines[-1])


def test_bench_finetune_compares_the_loops_in_every_case():
    lines = run_benchmark(
        "bench_finetune.py",
        *("--images", "6", "--max-side", "80", "--crop", "64", "--batch-size", "4", "--fc-width", "16"),
        *("--iterations", "1", "--rounds", "1", "--threads", "1"),
    )
    for case in ("alexnet  head", "alexnet  all ", "resnet18 head", "resnet18 all "):
        for pipeline in ("per-image", "soundsup", "soundsup batched"):
            pattern = rf"{case} {pipeline}\s+[\d.]+ ms/it \(CPU\s+[\d.]+ ms; data path"
            assert any(re.match(pattern, line) for line in lines), (case, pipeline)
    summary = lines[-1]
    assert summary.startswith("bench_finetune (cpu, 64 px, batch 4)")
    comparisons = re.findall(r"\d+ -> \d+ ops/it \([\d.]+x fewer\), \d+ -> \d+ ms/it \([\d.]+x\)", summary)
    assert len(comparisons) == 8  # soundsup and the batched cutter, in each of the four cases


def test_bench_sources_measures_the_scan_planning_and_the_csv():
    lines = run_benchmark("bench_sources.py", "--videos", "50", "--shards", "2", "--rows", "500")
    assert any(
        re.match(r"scan of 50 videos: os.walk \+ lstat [\d.]+ s, folder_snapshot [\d.]+ s", line)
        for line in lines
    )
    assert re.match(
        r"RESULT bench_sources: scan [\d.]+ s for 50 videos = [\d.]+x os.walk; planning [+-][\d.]+ s; "
        r"VGGSound 500 rows read in [\d.]+ s = [\d.]+x pandas.read_csv unchecked",
        lines[-1],
    )


def test_bench_svm_compares_both_representations():
    lines = run_benchmark(
        "bench_svm.py",
        *("--images", "120", "--size", "64", "--classes", "1"),
        *("--baseline-costs", "1", "--threads", "1"),
    )
    assert any(re.search(r"C=1\s+basis\s+[\d.]+ s.*plain\s+[\d.]+ s", line) for line in lines)
    assert re.search(r"= [\d.]+x \(decisions within [\d.e+-]+\); one train_svm job [\d.]+ CPU min", lines[-1])
