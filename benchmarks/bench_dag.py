"""How long Snakemake takes to plan the paper's DAG, and which scheduler to run it with.

1. ``snakemake -n`` on the full paper config (both features, every k, both architectures,
   every seed) at 10, 50, 100 and 200 shards: seconds and jobs (target: under 10 s at 200).
2. The scheduler: a flat workflow of N trivial jobs run for real with the default (ILP)
   scheduler and with ``--scheduler greedy``, in the same run; the ratio is what the profiles'
   ``scheduler: greedy`` rests on.

Usage: python benchmarks/bench_dag.py [--shards 10 50 100 200] [--jobs 600]
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))


def plan(workdir: Path, configfile: Path) -> tuple[float, int]:
    command = [
        SNAKEMAKE,
        "-n",
        "--snakefile",
        str(REPO / "Snakefile"),
        "--directory",
        str(workdir),
        "--configfile",
        str(configfile),
        "--quiet",
        "rules",
    ]
    start = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, check=True)
    seconds = time.perf_counter() - start
    total = re.search(r"^total\s+(\d+)", result.stdout + result.stderr, flags=re.MULTILINE)
    return seconds, int(total.group(1)) if total else -1


def run_flat(workdir: Path, n_jobs: int, scheduler: str) -> float:
    snakefile = workdir / "Snakefile"
    snakefile.write_text(
        f"rule all:\n    input: expand('out/{{i}}.txt', i=range({n_jobs}))\n\n"
        "rule touch_one:\n    output: 'out/{i}.txt'\n    shell: 'touch {output}'\n"
    )
    command = [
        SNAKEMAKE,
        "--snakefile",
        str(snakefile),
        "--directory",
        str(workdir),
        "--cores",
        "2",
        "--quiet",
        "all",
        "--scheduler",
        scheduler,
    ]
    start = time.perf_counter()
    subprocess.run(command, capture_output=True, text=True, check=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--shards", type=int, nargs="+", default=[10, 50, 100, 200])
    parser.add_argument("--jobs", type=int, default=600, help="jobs of the flat scheduler workflow")
    args = parser.parse_args()

    paper = yaml.safe_load((REPO / "config.yaml").read_text())
    timings = {}
    with tempfile.TemporaryDirectory() as tmp:
        for shards in args.shards:
            configfile = Path(tmp) / f"paper-{shards}.yaml"
            configfile.write_text(yaml.safe_dump({**paper, "shards": shards}))
            workdir = Path(tmp) / f"plan-{shards}"
            workdir.mkdir()
            seconds, jobs = plan(workdir, configfile)
            timings[shards] = (seconds, jobs)
            print(
                f"plan paper DAG, {shards:4d} shards: {jobs:6d} jobs in {seconds:6.2f} s "
                f"({1000 * seconds / max(jobs, 1):.2f} ms/job)"
            )
        scheduler_seconds = {}
        for scheduler in ("ilp", "greedy"):
            workdir = Path(tmp) / f"flat-{scheduler}"
            workdir.mkdir()
            seconds = run_flat(workdir, args.jobs, scheduler)
            scheduler_seconds[scheduler] = seconds
            print(
                f"run {args.jobs} trivial jobs, scheduler {scheduler:6s}: {seconds:6.1f} s "
                f"({1000 * seconds / args.jobs:.1f} ms/job)"
            )
    smallest, largest = min(timings), max(timings)
    growth = timings[largest][0] / timings[smallest][0]
    ratio = scheduler_seconds["ilp"] / scheduler_seconds["greedy"]
    plan_seconds, plan_jobs = timings[largest]
    print(
        f"RESULT: paper DAG at {largest} shards plans {plan_jobs} jobs in {plan_seconds:.1f} s "
        f"(target < 10 s; x{growth:.1f} from {smallest} shards); "
        f"greedy scheduler {ratio:.1f}x faster than ILP on {args.jobs} jobs"
    )


if __name__ == "__main__":
    main()
