# Tables and figures of the paper.


rule tabulate_ap:
    input:
        ap=ap_files(),
        meta=ap_files(suffix=".meta.json"),
        clusters=cluster_summaries(),
        published=PUBLISHED_CSV,
        dataset="results/dataset.csv",
    output:
        table1=report(
            "results/table1.csv", caption="../report/table1.rst", category="Tables"
        ),
        table2=report(
            "results/table2.csv", caption="../report/table2.rst", category="Tables"
        ),
    log:
        "logs/tabulate_ap.log",
    conda:
        "../envs/report.yaml"
    params:
        runs=RUNS,
        modes=MODES,
    script:
        "../workflow_scripts/tabulate_ap.py"


rule plot_results:
    input:
        table1="results/table1.csv",
    output:
        map_vs_k=report(
            "results/figures/map_vs_k.png",
            caption="../report/map_vs_k.rst",
            category="Figures",
        ),
        features=report(
            "results/figures/feature_comparison.png",
            caption="../report/feature_comparison.rst",
            category="Figures",
        ),
    log:
        "logs/plot_results.log",
    conda:
        "../envs/report.yaml"
    params:
        # the paper's Figure 3 is texture's; a config without texture plots its first feature
        feature="texture" if "texture" in FEATURES else FEATURES[0],
    script:
        "../workflow_scripts/plot_results.py"


rule plot_clusters:
    input:
        labels=f"results/clusters/{config['figures']['montage_feature']}/k{config['figures']['montage_k']}/labels.parquet",
        frames=shard_files("results/pairs/shard-{shard}/frames.npy"),
        indices=shard_files("results/pairs/shard-{shard}/index.parquet"),
    output:
        report(
            "results/figures/cluster_montage.png",
            caption="../report/cluster_montage.rst",
            category="Figures",
        ),
    log:
        "logs/plot_clusters.log",
    conda:
        "../envs/report.yaml"
    resources:
        mem_mb=4000,
    params:
        seed=config["seed"],
    script:
        "../workflow_scripts/plot_clusters.py"


rule plot_activations:
    input:
        model=pretext_model_path(config["figures"]["activation_model"]),
        frames=shard_files("results/pairs/shard-{shard}/frames.npy"),
    output:
        report(
            "results/figures/top_activations.png",
            caption="../report/top_activations.rst",
            category="Figures",
        ),
    log:
        "logs/plot_activations.log",
    conda:
        "../envs/torch.yaml"
    resources:
        mem_mb=4000,
    params:
        layer=config["figures"]["activation_layer"],
        n_filters=config["figures"]["activation_filters"],
        crop_size=pretext_section(
            config, model_spec(config["figures"]["activation_model"]).arch
        )["crop_size"],
        model=config["figures"]["activation_model"],
    script:
        "../workflow_scripts/plot_activations.py"


rule plot_training:
    input:
        histories=[
            pretext_file(name, "history.jsonl") for name in sound_model_names(config)
        ],
    output:
        report(
            "results/figures/pretext_curves.png",
            caption="../report/pretext_curves.rst",
            category="Figures",
        ),
    log:
        "logs/plot_training.log",
    conda:
        "../envs/report.yaml"
    params:
        models=sound_model_names(config),  # the names of the histories, in their order
    script:
        "../workflow_scripts/plot_training.py"
