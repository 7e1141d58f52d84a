"""The whole workflow through the real ``snakemake`` command on the tiny synthetic world.

One run (module fixture) feeds every test here: the tables and figures it wrote, what a
changed parameter makes Snakemake plan again, the HTML report.
"""

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from workflow_helpers import REPO, job_stats, planned_jobs, snakemake, write_config

from soundsup.names import VOC_CLASSES

pytestmark = pytest.mark.slow

TEST_CONFIG = REPO / "configs" / "test.yaml"


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("tiny-run")
    snakemake(workdir, TEST_CONFIG, "--cores", "2", "--scheduler", "greedy", timeout=1800)
    return workdir


def test_tables_hold_measured_and_published_rows(finished_run):
    table1 = pd.read_csv(finished_run / "results" / "table1.csv")
    measured = table1[table1["source"] == "measured"]
    assert sorted(measured["model"]) == ["mfcc-k3-alexnet", "random-alexnet", "texture-k3-alexnet"]
    for column in ("head_map", "all_map"):
        assert measured[column].between(0, 100).all()
    assert (table1["source"] == "published").any()
    assert measured["git_commit"].notna().all() and measured["config_hash"].notna().all()
    sound = measured[measured["model"] != "random-alexnet"]
    assert (sound["n_pretext_pairs"] > 0).all()

    table2 = pd.read_csv(finished_run / "results" / "table2.csv")
    assert list(table2.columns[3:23]) == list(VOC_CLASSES) and table2.columns[23] == "map"
    measured2 = table2[table2["source"] == "measured"]
    assert set(measured2["mode"]) == {"head", "all"} and len(measured2) == 6
    per_class_mean = measured2[list(VOC_CLASSES)].mean(axis=1)
    np.testing.assert_allclose(per_class_mean, measured2["map"], atol=0.02)


def test_frozen_feature_tables_hold_every_model(finished_run):
    models = ["texture-k3-alexnet", "mfcc-k3-alexnet", "random-alexnet"]
    layers = pd.read_csv(finished_run / "results" / "svm_layers.csv")
    assert list(layers["model"]) == models and list(layers.columns[3:]) == ["conv5", "best_layer", "best_map"]
    assert layers["conv5"].between(0, 100).all() and (layers["best_layer"] == "conv5").all()
    per_class = pd.read_csv(
        finished_run / "results" / "frozen" / "random-alexnet" / "svm" / "conv5" / "ap.csv"
    )
    assert len(per_class) == 20 and round(100 * per_class["ap"].mean(), 2) == pytest.approx(
        layers["conv5"][2]
    )
    lowshot = pd.read_csv(finished_run / "results" / "svm_lowshot.csv")
    assert (
        list(lowshot["model"]) == models
        and (lowshot["positives"] == 1).all()
        and (lowshot["n_samples"] == 2).all()
    )
    assert lowshot["map_mean"].between(0, 100).all() and lowshot["cost"].isin([0.1, 1.0, 10.0]).all()
    knn = pd.read_csv(finished_run / "results" / "knn_layers.csv")
    assert list(knn["model"]) == models and (knn["k"] == 20).all() and knn["conv5"].between(0, 100).all()


def test_figures_are_written(finished_run):
    for name in ("map_vs_k", "feature_comparison", "cluster_montage", "top_activations", "pretext_curves",
                 "svm_layers", "svm_lowshot"):  # fmt: skip
        figure = finished_run / "results" / "figures" / f"{name}.png"
        assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name


def test_dataset_report_tells_what_was_lost(finished_run):
    dataset = pd.read_csv(finished_run / "results" / "dataset.csv")
    total = dataset.iloc[-1]
    assert total["requested"] == total["downloaded"] + sum(
        total[column] for column in dataset.columns if column.startswith("failed_")
    )
    # The tiny world hides one missing video, one corrupt file and one without audio.
    assert total["failed_unavailable"] >= 1 and total["failed_corrupt"] >= 1 and total["failed_no_audio"] >= 1
    assert total["pairs"] > 0
    malformed = pd.read_csv(finished_run / "results" / "segments" / "malformed_lines.csv")
    assert len(malformed) == 1 and malformed["line"].iloc[0] > 3


def test_nothing_to_do_after_a_finished_run(finished_run):
    assert planned_jobs(finished_run, TEST_CONFIG) == {}


def frozen_jobs(n_models):
    """The frozen-feature jobs of ``n_models`` models (one layer each in the tiny config)."""
    jobs = ("extract_frozen_features", "train_svm", "train_lowshot_svm", "score_knn")
    return {**dict.fromkeys(jobs, n_models), "tabulate_frozen": 1, "plot_frozen": 1}


AFTER_PRETEXT = {
    "train_pretext": 2,
    "finetune_voc": 4,
    "tabulate_ap": 1,
    "plot_results": 1,
    "plot_activations": 1,
    "plot_training": 1,
    **frozen_jobs(2),
}


# Keys that change how a job runs, never what it computes: changing any one reruns nothing.
RUNTIME_CHANGES = {
    "download__timeout_s": 61,
    "download__retries": 1,
    "download__backoff_s": 0.5,
    "download__concurrency": 1,
    "download__rate_limit": "50M",
    "download__cookies": str(REPO / "tests" / "data" / "cookies.txt"),
    "download__proxy_env": "SOUNDSUP_TEST_PROXY",
    "download__max_failure_fraction": 0.9,
    "download__url_template": "https://mirror.example.org/v/{ytid}",
    "pretext__log_every": 1,
    "voc__log_every": 3,
    "clusters__threads": 1,
    "pretext__threads": 2,
    "voc__threads": 2,
    "pretext__mem_mb": 2500,
    "voc__mem_mb": 2500,
    "svm__threads": 2,
    "svm__batch_size": 16,
    "svm__mem_mb": 2500,
}


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"pretext__epochs": 3}, AFTER_PRETEXT),
        (
            {"clusters__k": [3, 4], "figures__montage_k": 3},
            {
                "cluster_kmeans": 2,
                "train_pretext": 2,
                "finetune_voc": 4,
                "tabulate_ap": 1,
                "plot_results": 1,
                "plot_training": 1,
                **frozen_jobs(2),
            },
        ),
        (
            {"features__texture": {"mod_norm": "mean2"}},
            {
                "compute_texture": 2,
                "cluster_kmeans": 1,
                "train_pretext": 1,
                "finetune_voc": 2,
                "tabulate_ap": 1,
                "plot_results": 1,
                "plot_clusters": 1,
                "plot_activations": 1,
                "plot_training": 1,
                **frozen_jobs(1),
            },
        ),
        ({"voc__iterations": 30}, {"finetune_voc": 6, "tabulate_ap": 1, "plot_results": 1}),
        ({"pretext__precision": "fp32"}, AFTER_PRETEXT),
        ({"svm__knn_k": 5}, {"score_knn": 3, "tabulate_frozen": 1, "plot_frozen": 1}),
        (
            {"svm__costs": [0.1, 1.0]},
            {"train_svm": 3, "train_lowshot_svm": 3, "tabulate_frozen": 1, "plot_frozen": 1},
        ),
        ({"svm__lowshot_samples": 3}, {"train_lowshot_svm": 3, "tabulate_frozen": 1, "plot_frozen": 1}),
        ({"svm__pooled_dims": 4000}, frozen_jobs(3)),
        # A new layer: its SVMs and the k-NN scores of the layers, no new features.
        (
            {"svm__layers": {"alexnet": ["conv5", "fc7"]}},
            {"train_svm": 3, "score_knn": 3, "tabulate_frozen": 1, "plot_frozen": 1},
        ),
        # An architecture's own value reruns only its models (the tiny config has AlexNet only).
        ({"pretext__per_arch": {"alexnet": {"epochs": 3}}}, AFTER_PRETEXT),
        ({"pretext__per_arch": {"resnet18": {"epochs": 3}}}, {}),
        ({"pretext__per_arch": {"alexnet": {"epochs": 2}}}, {}),  # the section's own value
        # voc keys of one architecture: only its fine-tunings (and, for the image size, its
        # frozen features and everything that reads them).
        (
            {"voc__per_arch": {"alexnet": {"iterations": 30}}},
            {"finetune_voc": 6, "tabulate_ap": 1, "plot_results": 1},
        ),
        (
            {"voc__per_arch": {"alexnet": {"crop_size": 72}}},
            {"finetune_voc": 6, "tabulate_ap": 1, "plot_results": 1, **frozen_jobs(3)},
        ),
        ({"voc__per_arch": {"resnet18": {"crop_size": 48}}}, {}),
        ({"voc__per_arch": {"alexnet": {"lr_step": 10}}}, {}),  # the section's own value
        # A feature's own k: only its clustering, models and what reads them; the others stay.
        (
            {"clusters__per_feature": {"mfcc": {"k": [4]}}},
            {
                "cluster_kmeans": 1,
                "train_pretext": 1,
                "finetune_voc": 2,
                "tabulate_ap": 1,
                "plot_results": 1,
                "plot_training": 1,
                **frozen_jobs(1),
            },
        ),
        ({"clusters__per_feature": {"mfcc": {"k": [3]}}}, {}),  # the section's own k
        ({"pretext__per_feature": {"mfcc": {"arch": ["alexnet"]}}}, {}),  # the section's own archs
        ({"pretext__per_arch": {"alexnet": {"k": [3]}}}, {}),  # the section's own k
        # Keeping the fine-tuned networks: each run is redone once to write its network.
        ({"voc__keep_models": True}, {"finetune_voc": 6, "tabulate_ap": 1, "plot_results": 1}),
        *[({key: value}, {}) for key, value in RUNTIME_CHANGES.items()],
    ],
    ids=[
        "pretext.epochs",
        "new k",
        "texture parameter",
        "voc parameter",
        "precision",
        "svm.knn_k",
        "svm.costs",
        "svm.lowshot_samples",
        "svm.pooled_dims",
        "svm.layers",
        "per_arch alexnet",
        "per_arch of an architecture not trained",
        "per_arch as the section",
        "voc per_arch iterations",
        "voc per_arch crop_size",
        "voc per_arch of an architecture not trained",
        "voc per_arch as the section",
        "per_feature k",
        "per_feature as the section",
        "per_feature archs as the section",
        "per_arch k as the section",
        "voc.keep_models",
        *[key.replace("__", ".") for key in RUNTIME_CHANGES],
    ],
)
def test_a_parameter_reruns_only_what_depends_on_it(finished_run, tmp_path, change, expected):
    changed = write_config(TEST_CONFIG, tmp_path / "changed.yaml", **change)
    assert dict(planned_jobs(finished_run, changed)) == expected


@pytest.mark.parametrize("change", [{"download__reencode": True}, {"download__max_height": 240}])
def test_a_change_of_what_is_fetched_refetches_into_its_own_cache(finished_run, tmp_path, change):
    changed = write_config(TEST_CONFIG, tmp_path / "changed.yaml", **change)
    jobs = planned_jobs(finished_run, changed)
    assert jobs["download_clips"] == 2 and jobs["extract_pairs"] == 2 and jobs["train_pretext"] == 2
    assert "select_segments" not in jobs and "make_synthetic_world" not in jobs
    # The clips cut the old way stay where they are: switching back finds them.
    assert any((finished_run / "resources" / "clips" / "360p-copy").glob("*.mp4"))


def _reordered(value, reverse):
    if isinstance(value, dict):
        return {key: _reordered(value[key], reverse) for key in sorted(value, reverse=reverse)}
    return value


def _config_variants(tmp_path):
    """The test config written five other ways with the same values."""
    import yaml

    from soundsup.config import validate_config

    original = yaml.safe_load(TEST_CONFIG.read_text())
    variants = {
        "sorted keys": yaml.safe_dump(original, sort_keys=True),
        "reversed keys": yaml.safe_dump(_reordered(original, True), sort_keys=False),
        "every default written out": yaml.safe_dump(
            validate_config(original, REPO / "schemas" / "config.schema.yaml"), sort_keys=False
        ),
        "numbers quoted": TEST_CONFIG.read_text()
        .replace("  lr: 0.01\n", '  lr: "0.01"\n')
        .replace("  iterations: 20\n", '  iterations: "20"\n'),
    }
    assert variants["numbers quoted"] != TEST_CONFIG.read_text()
    paths = {}
    for name, text in variants.items():
        paths[name] = tmp_path / (name.replace(" ", "-") + ".yaml")
        paths[name].write_text(text)
    return paths


def test_how_a_config_is_written_never_reruns_anything(finished_run, tmp_path):
    for name, path in _config_variants(tmp_path).items():
        assert dict(planned_jobs(finished_run, path)) == {}, name


def test_config_overrides_of_the_same_values_rerun_nothing(finished_run):
    same = ["voc={lr: 0.01, iterations: 20}", "pretext={epochs: 2, lr_max: 4e-4}", "shards=2"]
    assert dict(planned_jobs(finished_run, TEST_CONFIG, "--config", *same)) == {}
    changed = planned_jobs(finished_run, TEST_CONFIG, "--config", "voc={lr: 0.02}")
    assert dict(changed) == {"finetune_voc": 6, "tabulate_ap": 1, "plot_results": 1}


def test_editing_a_training_script_does_not_redownload(finished_run, tmp_path):
    # A copy of the workflow whose train_pretext adapter differs by one line.
    copy = tmp_path / "workflow"
    copy.mkdir()
    shutil.copy(REPO / "Snakefile", copy / "Snakefile")
    for name in ("rules", "workflow_scripts", "schemas", "report", "envs"):
        shutil.copytree(REPO / name, copy / name, ignore=shutil.ignore_patterns("__pycache__"))
    script = copy / "workflow_scripts" / "train_pretext.py"
    script.write_text(script.read_text() + "\n# edited\n")
    result = subprocess.run(
        [
            str(REPO / ".venv" / "bin" / "snakemake"),
            "-n",
            "--snakefile",
            str(copy / "Snakefile"),
            "--directory",
            str(finished_run),
            "--configfile",
            str(TEST_CONFIG),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    jobs = job_stats(result.stdout + result.stderr)
    assert jobs["train_pretext"] == 2
    for upstream in (
        "download_clips",
        "extract_pairs",
        "compute_texture",
        "cluster_kmeans",
        "make_synthetic_world",
    ):
        assert upstream not in jobs, upstream


def _job_intervals(logs: list) -> list[tuple[float, float]]:
    """(first, last) timestamps of each job log, in seconds."""
    import datetime

    intervals = []
    for log in logs:
        stamps = re.findall(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) ", log.read_text(), re.M)
        times = [datetime.datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f").timestamp() for stamp in stamps]
        intervals.append((times[0], times[-1]))
    return sorted(intervals)


@pytest.mark.parametrize(("cards", "overlap"), [("1", False), ("0", True)])
def test_a_workstation_runs_one_gpu_job_per_card(finished_run, tmp_path, cards, overlap):
    # Two one-thread training jobs on two cores: with one card they take turns, without a
    # card (they train on the CPU) they run side by side. No --resources on the command line.
    run = tmp_path / "run"
    shutil.copytree(finished_run, run, symlinks=True)
    env = {"SOUNDSUP_GPU_COUNT": cards, "SOUNDSUP_GPU_LOCK_DIR": str(tmp_path / "locks")}
    snakemake(run, TEST_CONFIG, "--cores", "2", "--set-threads", "train_pretext=1",
              "--forcerun", "train_pretext", "--until", "train_pretext", env=env)  # fmt: skip
    (first, first_end), (second, _) = _job_intervals(sorted((run / "logs" / "train_pretext").glob("*.log")))
    assert (second < first_end) is overlap, (first, first_end, second)


def test_a_pair_window_change_downloads_nothing(finished_run, tmp_path):
    """Cached clips are valid by their segment, not by the pairs cut from them."""
    changed = write_config(TEST_CONFIG, tmp_path / "changed.yaml", pairs__window_s=3.0)
    planned = planned_jobs(finished_run, changed)
    assert "download_clips" not in planned and planned["extract_pairs"] == 2, planned


def test_a_clip_damaged_after_download_is_fetched_again_on_the_next_run(finished_run, tmp_path):
    workdir = tmp_path / "run"
    shutil.copytree(finished_run, workdir, symlinks=True)
    manifest_path = workdir / "results" / "clips" / "shard-0.parquet"
    manifest = pd.read_parquet(manifest_path)
    row = manifest[manifest["status"] == "ok"].iloc[0]
    clip = workdir / row["path"]
    damaged = bytearray(clip.read_bytes())
    damaged[len(damaged) // 2] ^= 0xFF
    clip.write_bytes(bytes(damaged))
    target = "results/pairs/shard-0/index.parquet"
    assert not Path(row["path"]).is_absolute()  # the copy's own cache, not the finished run's
    forced = ("--cores", "1", target, "--forcerun", "extract_pairs")
    failed = snakemake(workdir, TEST_CONFIG, *forced, check=False)
    assert failed.returncode != 0
    log = (workdir / "logs" / "extract_pairs" / "shard-0.log").read_text()
    assert clip.name in log and "changed since they were downloaded" in log
    assert not manifest_path.exists()
    healed = snakemake(workdir, TEST_CONFIG, "--cores", "1", target)
    assert "rule download_clips:" in healed.stdout + healed.stderr
    again = pd.read_parquet(manifest_path)
    fixed = again[again["path"] == row["path"]].iloc[0]
    assert fixed["status"] == "ok" and fixed["sha256"] == row["sha256"]
    assert clip.read_bytes() != bytes(damaged)
    assert (workdir / target).is_file()


def test_an_outside_checkpoint_is_evaluated_under_its_own_name(finished_run, tmp_path):
    """voc.external: a backbone.pth that train_pretext wrote, given to the workflow as someone
    else's checkpoint, is fine-tuned and tabulated as 'mine-alexnet', and only its jobs run;
    with voc.keep_models its fine-tuned network is kept and loads into the architecture."""
    import torch

    from soundsup.models import build_model

    workdir = tmp_path / "run"
    shutil.copytree(finished_run, workdir, symlinks=True)
    weights = tmp_path / "theirs.pth"
    shutil.copy(workdir / "results/pretext/texture/k3/alexnet/backbone.pth", weights)
    external = {"mine": {"arch": "alexnet", "weights": str(weights), "fc_width": 64}}
    config = write_config(TEST_CONFIG, tmp_path / "external.yaml", voc__external=external)
    assert dict(planned_jobs(workdir, config)) == {
        "finetune_voc": 2, "tabulate_ap": 1, "plot_results": 1, **frozen_jobs(1),
    }  # fmt: skip
    snakemake(workdir, config, "--cores", "2")
    table1 = pd.read_csv(workdir / "results" / "table1.csv")
    row = table1[table1["model"] == "mine-alexnet"].iloc[0]
    assert row["init"] == "external" and row["arch"] == "alexnet" and row["source"] == "measured"
    assert 0 < row["head_map"] < 100 and 0 < row["all_map"] < 100
    table2 = pd.read_csv(workdir / "results" / "table2.csv")
    assert set(table2.loc[table2["model"] == "mine-alexnet", "mode"]) == {"head", "all"}
    assert "mine-alexnet" in set(pd.read_csv(workdir / "results" / "svm_layers.csv")["model"])
    # The network in the file is the one that was fine-tuned: its trunk started from the file.
    meta = json.loads((workdir / "results/voc/mine-alexnet/head/seed0/ap.csv.meta.json").read_text())
    assert meta["config"]["backbone"] == {"init": "external", "arch": "alexnet", "weights": str(weights),
                                "variant": "batchnorm", "fc_width": 64}  # fmt: skip
    # A checkpoint of another architecture stops the job with the file named.
    wrong = write_config(
        TEST_CONFIG, tmp_path / "wrong.yaml",
        voc__external={"theirs": {"arch": "alexnet", "weights": str(weights), "fc_width": 4096}},
    )  # fmt: skip
    failed = snakemake(
        workdir, wrong, "--cores", "1", "results/voc/theirs-alexnet/head/seed0/ap.csv", check=False
    )
    assert failed.returncode != 0
    log = (workdir / "logs" / "finetune_voc" / "theirs-alexnet-head-seed0.log").read_text()
    assert f"{weights}: not the trunk of alexnet (batchnorm): wrong shape classifier.1.weight" in log
    # voc.keep_models: the asked-for run writes its network, which loads strictly.
    kept = write_config(TEST_CONFIG, tmp_path / "kept.yaml", voc__external=external, voc__keep_models=True)
    target = "results/voc/mine-alexnet/head/seed0/finetuned.pt"
    assert dict(planned_jobs(workdir, kept, target)) == {"finetune_voc": 1}
    snakemake(workdir, kept, "--cores", "1", target)
    network = build_model("alexnet", 20, fc_width=64)
    network.load_state_dict(torch.load(workdir / target, weights_only=True), strict=True)
    trunk = torch.load(weights, weights_only=True)
    for name in ("features.0.weight", "features.1.running_mean"):  # "head": the trunk stays as loaded
        assert torch.equal(network.state_dict()[name], trunk[name]), name


@pytest.fixture(scope="module")
def html_report(finished_run):
    snakemake(finished_run, TEST_CONFIG, "--report", "results/report.html")
    return finished_run / "results" / "report.html"


def test_html_report_holds_tables_figures_and_dataset(html_report):
    html = html_report.read_text(errors="replace")
    for name in ("table1.csv", "table2.csv", "map_vs_k.png", "cluster_montage.png", "dataset.csv"):
        assert name in html, name
    assert "train_pretext" in html  # per-rule runtimes from the benchmark files


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--virtual-time-budget=15000",
]


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (make system-deps installs it)")
def test_html_report_renders_in_a_browser(html_report, tmp_path):
    profile = ["--user-data-dir=" + str(tmp_path / "profile")]
    dom = subprocess.run(
        [CHROMIUM, *CHROMIUM_FLAGS, *profile, "--dump-dom", html_report.as_uri()],
        capture_output=True,
        text=True,
        timeout=180,
    ).stdout
    # The report is a script-built page: these strings exist only once its code has run.
    assert "Tables" in dom and "Figures" in dom and "Dataset" in dom, dom[:2000]
    screenshot = tmp_path / "report.png"
    subprocess.run(
        [
            CHROMIUM,
            *CHROMIUM_FLAGS,
            *profile,
            f"--screenshot={screenshot}",
            "--window-size=1280,900",
            html_report.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
