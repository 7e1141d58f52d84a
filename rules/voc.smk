# Downstream evaluation: fine-tune each model on VOC 2007 trainval, score the test set. GPU-tagged;
# resumes after preemption from the checkpoint beside its outputs (not an output itself, so it
# survives a failed job; the job removes it once the outputs are written).


# Runs where snakemake runs (localrules): compute nodes often have no internet.
localrules:
    fetch_imagenet_weights,


rule fetch_imagenet_weights:
    output:
        protected("resources/weights/imagenet-{arch}.pth"),
    log:
        "logs/fetch_imagenet_weights/{arch}.log",
    retries: 2
    conda:
        "../envs/acquire.yaml"
    params:
        url=lambda wildcards: TORCHVISION_IMAGENET_URLS[wildcards.arch],
        sha256=lambda wildcards: TORCHVISION_IMAGENET_URLS[wildcards.arch].rsplit(
            "-", 1
        )[1][:8],
    script:
        "../workflow_scripts/fetch_file.py"


rule finetune_voc:
    input:
        voc=VOC_READY,
        model=pretext_model,
        meta=pretext_meta,
        weights=backbone_weights,
    output:
        **KEPT_VOC_MODEL,
        ap="results/voc/{model}/{mode}/seed{seed}/ap.csv",
        meta="results/voc/{model}/{mode}/seed{seed}/ap.csv.meta.json",
        scores="results/voc/{model}/{mode}/seed{seed}/scores.npy",
    log:
        "logs/finetune_voc/{model}-{mode}-seed{seed}.log",
    benchmark:
        "results/benchmarks/finetune_voc/{model}-{mode}-seed{seed}.tsv"
    conda:
        "../envs/torch.yaml"
    threads: config["voc"]["threads"]
    resources:
        gpu=1,
        mem_mb=config["voc"]["mem_mb"],
        runtime=finetune_runtime,
    params:
        voc=voc_params,
        backbone=backbone_params,
        voc_root=lambda wildcards, input: voc_root_of(input.voc[0]),
        checkpoint="results/voc/{model}/{mode}/seed{seed}/checkpoint.pt",
    script:
        "../workflow_scripts/finetune_voc.py"
