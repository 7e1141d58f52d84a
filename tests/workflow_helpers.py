"""Run the real ``snakemake`` command on this workflow and read what it planned."""

from __future__ import annotations

import collections
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parent.parent
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))


def snakemake(
    workdir: Path,
    configfile: Path,
    *args: str,
    timeout: int = 1500,
    check: bool = True,
    env: dict[str, str] | None = None,
):
    """Run snakemake on the repository's Snakefile in ``workdir``; return the CompletedProcess.
    ``env``: variables added to this process's environment."""
    command = [
        SNAKEMAKE,
        "--snakefile",
        str(REPO / "Snakefile"),
        "--directory",
        str(workdir),
        "--configfile",
        str(configfile),
        *args,
    ]
    environment = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=environment)
    if check and result.returncode != 0:
        raise AssertionError(
            f"snakemake failed ({result.returncode}): {' '.join(command)}\n"
            f"--- stdout ---\n{result.stdout[-6000:]}\n--- stderr ---\n{result.stderr[-10000:]}"
        )
    return result


def planned_jobs(workdir: Path, configfile: Path, *args: str) -> collections.Counter:
    """The jobs a dry run would execute, counted per rule (``all`` excluded); ``args`` are
    targets or further options (put options such as ``--config`` last)."""
    result = snakemake(workdir, configfile, "-n", "--nolock", *args)
    return job_stats(result.stdout + result.stderr)


def job_stats(text: str) -> collections.Counter:
    """The first "Job stats" table of Snakemake's output as {rule: count} (``all`` excluded);
    empty when there is nothing to be done."""
    table = re.search(r"^Job stats:\n\S+\s+count\n[- ]+\n(.*?)^total\s+\d+$", text, re.M | re.S)
    if table is None:
        if "Nothing to be done" not in text:
            raise AssertionError(f"no job stats in the output of snakemake:\n{text[-4000:]}")
        return collections.Counter()
    counts = collections.Counter(
        {rule: int(count) for rule, count in re.findall(r"^(\w+)\s+(\d+)$", table.group(1), re.M)}
    )
    counts.pop("all", None)
    return counts


def write_config(base: Path, destination: Path, **changes) -> Path:
    """Copy the YAML config ``base`` to ``destination`` with dotted-key ``changes`` applied."""
    config = yaml.safe_load(base.read_text())
    for dotted, value in changes.items():
        node = config
        *parents, leaf = dotted.split("__")
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value
    destination.write_text(yaml.safe_dump(config, sort_keys=False))
    return destination


def _loaded_workflow(workdir: Path, configfile: Path, read: Callable[[Any], Any]) -> Any:
    """``read(workflow)`` of the workflow under ``configfile``, loaded through Snakemake's own API."""
    from snakemake.api import SnakemakeApi
    from snakemake.settings.types import ConfigSettings, OutputSettings, ResourceSettings

    previous = Path.cwd()
    os.chdir(workdir)
    try:
        with SnakemakeApi(OutputSettings(quiet=True)) as api:
            workflow = api.workflow(
                resource_settings=ResourceSettings(),
                config_settings=ConfigSettings(configfiles=[configfile]),
                snakefile=REPO / "Snakefile",
                workdir=workdir,
            )._workflow
            return read(workflow)
    finally:
        os.chdir(previous)


def local_rules(workdir: Path, configfile: Path) -> tuple[set[str], set[str]]:
    """(every rule, the localrules) of the workflow under ``configfile`` (a dry run cannot
    tell: it prints every job as "rule")."""

    def read(workflow: Any) -> tuple[set[str], set[str]]:
        return {rule.name for rule in workflow.rules}, set(workflow._localrules)

    return _loaded_workflow(workdir, configfile, read)


def _priorities(workflow: Any) -> dict[str, int]:
    return {rule.name: rule.priority for rule in workflow.rules}


def rule_priorities(workdir: Path, configfile: Path) -> dict[str, int]:
    """{rule: its Snakemake priority} of the workflow under ``configfile``."""
    return _loaded_workflow(workdir, configfile, _priorities)
