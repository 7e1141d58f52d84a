"""SLURM for real: the profiles as Snakemake reads them, and workflows sent through ``sbatch``.

The ``slurm`` tests need the one-node localhost cluster of ``.ci/slurm-up`` (its state folder's
``env`` file tells where it is). As root with ``CI`` set they start it themselves and stop it
afterwards; with ``CI`` set and no cluster they fail; otherwise they skip, saying why.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from snakemake.profiles import ProfileConfigFileParser

REPO = Path(__file__).resolve().parent.parent
STATE = Path(os.environ.get("SOUNDSUP_SLURM_DIR", "/tmp/soundsup-slurm"))
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))
TOY = REPO / "tests" / "data" / "slurm_toy" / "Snakefile"
GPU_RULES = ("train_pretext", "finetune_voc")
# The plugin's line per sbatch; the log lies in .snakemake/slurm_logs/rule_<name>/[<wildcards>/]<id>.log
SUBMITTED = re.compile(r"Job \d+ has been submitted with SLURM jobid (\d+) \(log: \S*/rule_(\w+)/")


def read_profile(name: str) -> dict:
    """The profile's settings as Snakemake parses them (YTE rendered, resources as ``k=v``)."""
    with open(REPO / "profiles" / name / "config.yaml") as stream:
        return dict(ProfileConfigFileParser().parse(stream))


def resource_names(assignments: list[str]) -> dict[str, set[str]]:
    """``rule:name=value`` strings of --set-resources -> {rule: {name, ...}}."""
    names: dict[str, set[str]] = {}
    for assignment in assignments:
        rule, rest = assignment.split(":", 1)
        names.setdefault(rule, set()).add(rest.split("=", 1)[0])
    return names


@pytest.fixture
def no_site(monkeypatch, tmp_path):
    """Run from an empty folder, so that no profiles/slurm/site.yaml and no SBATCH_* apply."""
    for variable in ("SOUNDSUP_SLURM_SITE", "SBATCH_PARTITION", "SBATCH_ACCOUNT"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_users_profile_asks_one_gpu_and_no_site_values_by_default(no_site):
    profile = read_profile("slurm")
    assert profile["executor"] == "slurm" and profile["scheduler"] == "greedy"
    assert sorted(profile["default-resources"]) == ["mem_mb=2000", "runtime=120"]
    requested = resource_names(profile["set-resources"])
    for rule in GPU_RULES:
        assert f"{rule}:gpu=1" in profile["set-resources"]
        assert requested[rule] == {"gpu", "cpus_per_task"}  # never gres, never tasks; runtime: the rule's
        assert f"{rule}=4" in profile["set-threads"]


def test_site_file_and_environment_reach_the_resources(no_site, monkeypatch):
    site = no_site / "site.yaml"
    site.write_text(
        "partition: all\ngpu_partition: gpu\naccount: lab\nruntime: 30\ngpu_runtime: 90\n"
        "gpu_model: a100\ngpu_cpus: 8\nstatus_command: squeue\n"
    )
    monkeypatch.setenv("SOUNDSUP_SLURM_SITE", str(site))
    monkeypatch.setenv("SBATCH_ACCOUNT", "other")
    profile = read_profile("slurm")
    # Quoted, so that Snakemake's evaluation keeps `all` a string rather than the builtin.
    assert sorted(profile["default-resources"]) == [
        "mem_mb=2000",
        "runtime=30",
        "slurm_account='other'",
        "slurm_partition='all'",
    ]
    assert profile["slurm-status-command"] == "squeue"
    for rule in GPU_RULES:
        settings = ("gpu=1", "cpus_per_task=8", "runtime=90", "gpu_model='a100'", "slurm_partition='gpu'")
        for setting in settings:
            assert f"{rule}:{setting}" in profile["set-resources"]
        assert f"{rule}=8" in profile["set-threads"]


def test_unknown_site_setting_is_named(no_site, monkeypatch):
    site = no_site / "site.yaml"
    site.write_text("partiton: gpu\n")
    monkeypatch.setenv("SOUNDSUP_SLURM_SITE", str(site))
    with pytest.raises(Exception, match="partiton"):
        read_profile("slurm")


def test_ci_profile_keeps_every_setting_of_the_users_profile(no_site):
    users, ci = read_profile("slurm"), read_profile("slurm-ci")
    assert set(users) <= set(ci)
    for rule, names in resource_names(users["set-resources"]).items():
        assert names <= resource_names(ci["set-resources"])[rule]
    assert ci["slurm-status-command"] == "squeue" and ci["slurm-no-account"] == "True"
    min_job_age = re.search(r"^MinJobAge=(\d+)$", (REPO / ".ci/slurm/slurm.conf").read_text(), re.M)
    assert int(min_job_age.group(1)) >= 3 * int(ci["slurm-init-seconds-before-status-checks"])


def test_local_profile_needs_nothing_but_snakemake():
    # A YTE template would run Python in Snakemake's own interpreter, where a Snakemake from
    # conda or pipx has no soundsup: the profile is plain settings.
    text = (REPO / "profiles" / "local" / "config.yaml").read_text()
    assert "__use_yte__" not in text and "__definitions__" not in text
    assert read_profile("local")["resources"] == ["downloads=2"]


def test_both_profiles_cap_concurrent_downloads(no_site):
    for name in ("local", "slurm", "slurm-ci"):
        assert "downloads=2" in read_profile(name)["resources"], name
    rules = (REPO / "rules" / "acquire.smk").read_text()
    assert re.search(r"rule download_clips:(?:(?!\nrule ).)*downloads=1", rules, re.S)


# ---- a real cluster -----------------------------------------------------------------------


def read_env_file(path: Path) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)
    return {key.strip(): value.strip() for key, value in pairs}


def cluster_answers(env: dict[str, str]) -> bool:
    try:
        state = subprocess.run(
            ["sinfo", "-h", "-o", "%t"], env=env, capture_output=True, text=True, timeout=15
        ).stdout.split()
    except (OSError, subprocess.TimeoutExpired):
        return False
    return any(node.rstrip("*~#") in ("idle", "mix", "alloc") for node in state)


def unavailable(reason: str):
    if os.environ.get("CI"):
        pytest.fail(f"SLURM cluster not available in CI: {reason}")
    pytest.skip(f"no SLURM cluster: {reason} (start one with `sudo .ci/slurm-up`)")


@pytest.fixture(scope="module")
def cluster_env():
    """The environment of a running cluster (SLURM_CONF, ...); started here if root and in CI."""
    env_file = STATE / "env"
    base = {key: value for key, value in os.environ.items() if key != "CUDA_VISIBLE_DEVICES"}
    base["OMP_NUM_THREADS"] = "1"
    if env_file.is_file() and cluster_answers(env := {**base, **read_env_file(env_file)}):
        yield env
        return
    if not (os.environ.get("CI") and os.geteuid() == 0):
        unavailable(f"{env_file} is missing or the cluster it names does not answer sinfo")
    started = subprocess.run(
        ["timeout", "-k", "10", "1500", str(REPO / ".ci" / "slurm-up")],
        capture_output=True,
        text=True,
        env=base,
    )
    if started.returncode != 0:
        unavailable(f".ci/slurm-up failed ({started.returncode}):\n{started.stdout}\n{started.stderr}")
    try:
        yield {**base, **read_env_file(env_file)}
    finally:
        subprocess.run(["timeout", "-k", "10", "120", str(REPO / ".ci" / "slurm-down")], env=base)


def run_snakemake(env: dict[str, str], seconds: int, *arguments: str) -> str:
    """``snakemake --profile profiles/slurm-ci ...`` under ``timeout -k``; its output."""
    command = ["timeout", "-k", "10", str(seconds), SNAKEMAKE, "--profile", "profiles/slurm-ci", *arguments]
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"{' '.join(command)} exited {result.returncode}:\n{output[-12000:]}"
    return output


def slurm_job(env: dict[str, str], job_id: str) -> str:
    return subprocess.run(
        ["scontrol", "show", "job", job_id], env=env, capture_output=True, text=True, timeout=15
    ).stdout


@pytest.mark.slurm
def test_toy_workflow_goes_through_sbatch_and_its_gpu_job_runs_once(cluster_env, tmp_path):
    output = run_snakemake(cluster_env, 600, "--snakefile", str(TOY), "--directory", str(tmp_path))
    submitted = {rule: job for job, rule in SUBMITTED.findall(output)}
    assert set(submitted) == {"write_numbers", "square_numbers", "use_gpu", "summarize"}, output[-4000:]
    for rule, job_id in submitted.items():
        assert (tmp_path / "jobs" / f"{rule}.txt").read_text().split() == [job_id]
        assert "JobState=COMPLETED" in slurm_job(cluster_env, job_id)  # squeue/scontrol keep it 300 s
    gpu_job = slurm_job(cluster_env, submitted["use_gpu"])
    assert "TresPerJob=gres:gpu:1" in gpu_job and "NumTasks=1 " in gpu_job and "CPUs/Task=2" in gpu_job
    seen = dict(line.split("=", 1) for line in (tmp_path / "gpu.txt").read_text().split())
    assert seen["cuda_visible_devices"] in {"0", "1"}  # set by SLURM: exactly one of the two fake cards
    assert seen["threads"] == "2"
    assert (tmp_path / "runs" / "use_gpu.txt").read_text().split() == [submitted["use_gpu"]]  # ran once


@pytest.mark.slurm
@pytest.mark.slow
def test_tiny_workflow_through_slurm_writes_table1(cluster_env, tmp_path):
    output = run_snakemake(
        cluster_env,
        1800,
        "--configfile",
        "configs/test.yaml",
        "--directory",
        str(tmp_path),
        "--snakefile",
        str(REPO / "Snakefile"),
        "results/table1.csv",
    )
    rules = {rule for _, rule in SUBMITTED.findall(output)}
    assert set(GPU_RULES) <= rules, output[-4000:]
    # The shard rules went as job arrays: one submission per rule, a task per shard.
    jobs = subprocess.run(["squeue", "--states=all", "-h", "-o", "%i"], env=cluster_env,
                          capture_output=True, text=True, timeout=15).stdout.split()  # fmt: skip
    tasks = [job for job in jobs if re.fullmatch(r"\d+_\d+", job)]
    assert len({task.split("_")[0] for task in tasks}) >= 4 and len(tasks) >= 8, jobs
    table1 = pd.read_csv(tmp_path / "results" / "table1.csv")
    assert len(table1) > 0
