"""The Snakemake workflow as a user drives it: lint, planning offline, conda envs."""

import collections
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from workflow_helpers import REPO, job_stats, local_rules, planned_jobs, rule_priorities, snakemake

RULE_FILES = sorted((REPO / "rules").glob("*.smk"))


@pytest.mark.parametrize("configfile", ["config.yaml", "configs/demo.yaml", "configs/test.yaml"])
def test_lint_is_clean(tmp_path, configfile):
    result = snakemake(tmp_path, REPO / configfile, "--lint", check=False)
    assert "Congratulations, your workflow is in a good condition!" in result.stdout + result.stderr, (
        result.stdout + result.stderr
    )


def test_paper_config_plans_the_full_dag_offline(tmp_path):
    # A dry run must plan every job without touching the network (nothing is fetched).
    jobs = planned_jobs(tmp_path, REPO / "config.yaml", "results/table2.csv")
    assert jobs["download_clips"] == 100 and jobs["extract_pairs"] == 100
    assert jobs["compute_texture"] == 100 and jobs["compute_mfcc"] == 100
    assert jobs["cluster_kmeans"] == 14  # 2 features x 7 k
    assert jobs["train_pretext"] == 28  # x 2 architectures
    assert jobs["finetune_voc"] == (28 + 2 + 2) * 2 * 3  # models x modes x seeds
    assert jobs["fetch_audioset_csv"] == 1 and jobs["fetch_voc07"] == 1
    assert not any(tmp_path.joinpath(name).exists() for name in ("resources", "results"))


def test_frozen_evaluations_cover_every_model_and_layer(tmp_path):
    # config.yaml: 28 sound models + random and ImageNet per architecture, 16 of each; every
    # AlexNet layer (8) and ResNet-18 stage (4) gets its SVMs, the last two of each low-shot ones.
    jobs = planned_jobs(tmp_path, REPO / "config.yaml", "results/svm_layers.csv", "results/svm_lowshot.csv")
    assert jobs["extract_frozen_features"] == 32 and jobs["score_knn"] == 32
    assert jobs["train_svm"] == 16 * 8 + 16 * 4 and jobs["train_lowshot_svm"] == 32 * 2
    assert jobs["fetch_imagenet_weights"] == 2 and "finetune_voc" not in jobs
    # the demo: texture at k 4 and 8 on AlexNet and at 8 on ResNet-18, MFCC at 8 on AlexNet,
    # random for each architecture; two SVM layers per model
    demo = planned_jobs(tmp_path, REPO / "configs" / "demo.yaml")
    assert demo["extract_frozen_features"] == 6 and demo["train_svm"] == 4 * 2 + 2 * 2
    assert demo["train_lowshot_svm"] == 6 and demo["tabulate_frozen"] == 1 and demo["plot_frozen"] == 1
    assert demo["cluster_kmeans"] == 3 and demo["train_pretext"] == 4 and demo["finetune_voc"] == 12


def test_demo_dag_has_every_stage(tmp_path):
    jobs = planned_jobs(tmp_path, REPO / "configs/demo.yaml")
    for rule in (
        "make_synthetic_world",
        "select_segments",
        "download_clips",
        "extract_pairs",
        "compute_texture",
        "compute_mfcc",
        "cluster_kmeans",
        "train_pretext",
        "finetune_voc",
        "tabulate_ap",
        "plot_results",
        "plot_clusters",
        "plot_activations",
        "plot_training",
        "report_dataset",
    ):
        assert jobs[rule] >= 1, rule
    assert "fetch_voc07" not in jobs and "fetch_audioset_csv" not in jobs


def test_a_wrong_config_key_stops_before_any_job(tmp_path):
    bad = tmp_path / "bad.yaml"
    config = yaml.safe_load((REPO / "configs/test.yaml").read_text())
    config["voc"]["iteratons"] = 5
    bad.write_text(yaml.safe_dump(config))
    result = snakemake(tmp_path, bad, "-n", check=False)
    assert result.returncode != 0
    assert "unknown config key voc.iteratons" in result.stdout + result.stderr
    assert not (tmp_path / "results").exists()


def conda_files():
    for rule_file in RULE_FILES:
        for match in re.finditer(r'conda:\s*\n\s*"([^"]+)"', rule_file.read_text()):
            yield rule_file, (rule_file.parent / match.group(1)).resolve()


def test_every_rule_names_an_existing_pinned_conda_env():
    text = "".join(path.read_text() for path in RULE_FILES)
    n_rules = len(re.findall(r"^\s*rule \w+:", text, flags=re.MULTILINE))
    envs = list(conda_files())
    assert len(envs) == n_rules, "every rule must name a conda env"
    for rule_file, env_path in envs:
        assert env_path.exists(), f"{rule_file.name}: {env_path} is missing"
        env = yaml.safe_load(env_path.read_text())
        for dependency in env["dependencies"]:
            items = dependency["pip"] if isinstance(dependency, dict) else [dependency]
            for item in items:
                if item != "pip":
                    assert re.search(r"==?\d", item), f"{env_path.name}: {item!r} is not pinned"


@pytest.mark.parametrize("configfile", ["config.yaml", "configs/demo.yaml", "configs/test.yaml"])
def test_the_rules_that_lead_to_a_pretext_model_go_first(tmp_path, configfile):
    # Everything downstream waits for a pretext model, so the rules it needs, and only those,
    # have a higher priority: on two cores the scheduler otherwise ran the random baselines
    # first (their jobs have the largest inputs) and the pretext models late.
    graph = snakemake(tmp_path, REPO / configfile, "--rulegraph").stdout
    names = dict(re.findall(r'^\s*(\d+)\[label = "(\w+)"', graph, re.M))
    parents = collections.defaultdict(set)
    for parent, child in re.findall(r"^\s*(\d+) -> (\d+)", graph, re.M):
        parents[names[child]].add(names[parent])
    chain, todo = set(), ["train_pretext"]
    while todo:
        rule = todo.pop()
        if rule not in chain:
            chain.add(rule)
            todo.extend(parents[rule])
    assert {"select_segments", "cluster_kmeans"} < chain and "finetune_voc" not in chain
    priorities = rule_priorities(tmp_path, REPO / configfile)
    planned = set(names.values())
    assert {rule for rule in planned if priorities[rule] > 0} == chain, priorities
    assert min(priorities[rule] for rule in chain) > max(priorities[rule] for rule in planned - chain)


@pytest.mark.skipif(shutil.which("dot") is None, reason="graphviz 'dot' is not installed (make system-deps)")
def test_rulegraph_renders_with_dot(tmp_path):
    import subprocess

    graph = snakemake(tmp_path, REPO / "configs/demo.yaml", "--rulegraph").stdout
    svg = subprocess.run(["dot", "-Tsvg"], input=graph, capture_output=True, text=True, check=True).stdout
    assert "<svg" in svg and "train_pretext" in svg and "finetune_voc" in svg


def test_readme_starts_with_the_two_commands():
    readme = (REPO / "README.md").read_text()
    commands = re.findall(r"^make \w+", readme, flags=re.MULTILINE)
    assert commands[:2] == ["make demo", "make test"]
    assert Path(REPO / ".ci" / "run").read_text().strip().endswith("exec make test")


def _readme_block(heading: str) -> list[str]:
    """The command lines (comments stripped) of the first code block under ``heading``."""
    readme = (REPO / "README.md").read_text()
    section = readme.split(f"## {heading}\n", 1)[1]
    block = section.split("```\n", 2)[1]
    return [line.split("#", 1)[0].strip() for line in block.splitlines() if line.split("#", 1)[0].strip()]


def test_the_papers_commands_run_as_written(tmp_path):
    # A copy of the tracked tree, the venv "activated" as the README says: every snakemake
    # line of the README plans its jobs (a dry run: the real ones fetch AudioSet and VOC).
    lines = _readme_block("The paper's experiment")
    assert lines[0] == "make venv && . .venv/bin/activate"
    tree = tmp_path / "clone"
    files = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True)
    for name in files.stdout.split():
        if (REPO / name).is_file():
            (tree / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, tree / name)
    env = {**os.environ, "PATH": f"{REPO / '.venv' / 'bin'}:{os.environ['PATH']}"}
    commands = [line for line in lines[1:] if line.startswith("snakemake ")]
    assert len(commands) == 3
    for command in commands:
        argv = command.split()
        if "-n" not in argv:
            argv.insert(1, "-n")
        result = subprocess.run(argv, cwd=tree, env=env, capture_output=True, text=True, timeout=600)
        output = result.stdout + result.stderr
        assert result.returncode == 0, f"{command}:\n{output[-4000:]}"
        jobs = job_stats(output)
        assert jobs["train_pretext"] == 28 and jobs["finetune_voc"] == 192, command
        assert len(output) < 20000, f"{command}: a dry run printed {len(output)} characters"
        assert not (tree / "results").exists() and not (tree / "resources").exists()


def test_rules_that_need_the_internet_run_where_snakemake_runs(tmp_path):
    # Compute nodes often have no internet: under SLURM these jobs stay on the submit host.
    rules, local = local_rules(tmp_path, REPO / "config.yaml")
    fetches = {"fetch_audioset_csv", "fetch_ontology", "fetch_voc07", "fetch_imagenet_weights"}
    assert fetches <= rules and local == fetches
    jobs = planned_jobs(tmp_path, REPO / "config.yaml", "results/table2.csv")
    assert jobs["fetch_imagenet_weights"] == 2  # the ImageNet rows read the fetched files


def test_downloads_can_stay_on_the_submit_host(tmp_path):
    # For clusters whose compute nodes cannot reach YouTube: download_clips becomes a localrule.
    config = tmp_path / "config.yaml"
    text = (REPO / "config.yaml").read_text()
    config.write_text(text.replace("  reencode: true\n", "  reencode: true\n  on_submit_host: true\n"))
    assert "download_clips" in local_rules(tmp_path, config)[1]
    assert planned_jobs(tmp_path, config, "results/table2.csv")["download_clips"] == 100
