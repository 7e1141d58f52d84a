# Downstream evaluation: fine-tune each model on VOC 2007 trainval, score the test set.


rule finetune_voc:
    input:
        voc=VOC_READY,
        model=pretext_model,
        meta=pretext_meta,
    output:
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
        runtime=12 * 60,
    params:
        voc=stage_config("voc", drop=FINETUNE_KEYS_NOT_RESULTS),
        backbone=backbone_params,
        voc_root=lambda wildcards, input: voc_root_of(input.voc[0]),
        log_every=config["voc"]["log_every"],
    script:
        "../workflow_scripts/finetune_voc.py"
