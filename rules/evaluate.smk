# Frozen-feature evaluations (Goyal et al. 2019, VOC07): features of every layer of every model,
# linear SVMs per layer, low-shot SVMs and k-NN on them; tables and figures.


rule extract_frozen_features:
    input:
        voc=VOC_READY,
        model=pretext_model,
        weights=backbone_weights,
    output:
        trainval="results/frozen/{model}/features/trainval.npz",
        test="results/frozen/{model}/features/test.npz",
        meta="results/frozen/{model}/features/trainval.npz.meta.json",
    log:
        "logs/extract_frozen_features/{model}.log",
    benchmark:
        "results/benchmarks/extract_frozen_features/{model}.tsv"
    conda:
        "../envs/torch.yaml"
    threads: config["svm"]["threads"]
    resources:
        gpu=1,
        mem_mb=config["svm"]["mem_mb"],
    params:
        svm=svm_params("extract"),
        backbone=backbone_params,
        crop_size=voc_crop_size,
        seed=config["seed"],
        voc_root=lambda wildcards, input: voc_root_of(input.voc[0]),
    script:
        "../workflow_scripts/extract_frozen_features.py"


rule train_svm:
    input:
        unpack(frozen_features),
        voc=VOC_READY,
    output:
        ap="results/frozen/{model}/svm/{layer}/ap.csv",
        meta="results/frozen/{model}/svm/{layer}/ap.csv.meta.json",
    log:
        "logs/train_svm/{model}-{layer}.log",
    benchmark:
        "results/benchmarks/train_svm/{model}-{layer}.tsv"
    conda:
        "../envs/torch.yaml"
    threads: config["svm"]["threads"]
    resources:
        mem_mb=config["svm"]["mem_mb"],
    params:
        svm=svm_params("svm"),
        seed=config["seed"],
        voc_root=lambda wildcards, input: voc_root_of(input.voc[0]),
    script:
        "../workflow_scripts/train_svm.py"


rule train_lowshot_svm:
    input:
        unpack(frozen_features),
        voc=VOC_READY,
    output:
        map="results/frozen/{model}/lowshot/{layer}/map.csv",
        meta="results/frozen/{model}/lowshot/{layer}/map.csv.meta.json",
    log:
        "logs/train_lowshot_svm/{model}-{layer}.log",
    benchmark:
        "results/benchmarks/train_lowshot_svm/{model}-{layer}.tsv"
    conda:
        "../envs/torch.yaml"
    threads: config["svm"]["threads"]
    resources:
        mem_mb=config["svm"]["mem_mb"],
    params:
        svm=svm_params("lowshot"),
        seed=config["seed"],
        voc_root=lambda wildcards, input: voc_root_of(input.voc[0]),
    script:
        "../workflow_scripts/train_lowshot_svm.py"


rule score_knn:
    input:
        unpack(frozen_features),
        voc=VOC_READY,
    output:
        ap="results/frozen/{model}/knn/ap.csv",
    log:
        "logs/score_knn/{model}.log",
    benchmark:
        "results/benchmarks/score_knn/{model}.tsv"
    conda:
        "../envs/torch.yaml"
    threads: config["svm"]["threads"]
    resources:
        mem_mb=config["svm"]["mem_mb"],
    params:
        svm=svm_params("knn"),
        layers=lambda wildcards: model_layers(wildcards.model),
        voc_root=lambda wildcards, input: voc_root_of(input.voc[0]),
    script:
        "../workflow_scripts/score_knn.py"


rule tabulate_frozen:
    input:
        svm=svm_files(),
        lowshot=lowshot_files(),
        knn=knn_files(),
    output:
        svm=report(
            "results/svm_layers.csv",
            caption="../report/svm_layers.rst",
            category="Tables",
        ),
        lowshot=report(
            "results/svm_lowshot.csv",
            caption="../report/svm_lowshot.rst",
            category="Tables",
        ),
        knn=report(
            "results/knn_layers.csv",
            caption="../report/knn_layers.rst",
            category="Tables",
        ),
    log:
        "logs/tabulate_frozen.log",
    conda:
        "../envs/report.yaml"
    params:
        models=frozen_models(),
        svm_runs=frozen_runs(),  # [model, layer] of each svm file, in order
        lowshot_runs=frozen_runs("lowshot_layers"),
        knn_k=config["svm"]["knn_k"],
    script:
        "../workflow_scripts/tabulate_frozen.py"


rule plot_frozen:
    input:
        svm="results/svm_layers.csv",
        lowshot="results/svm_lowshot.csv",
    output:
        svm=report(
            "results/figures/svm_layers.png",
            caption="../report/svm_layers_figure.rst",
            category="Figures",
        ),
        lowshot=report(
            "results/figures/svm_lowshot.png",
            caption="../report/svm_lowshot_figure.rst",
            category="Figures",
        ),
    log:
        "logs/plot_frozen.log",
    conda:
        "../envs/report.yaml"
    script:
        "../workflow_scripts/plot_frozen.py"
