# Downstream evaluation: fine-tune each model on VOC 2007 trainval, score the test set. GPU-tagged;
# resumes after preemption from the checkpoint beside its outputs (not an output itself, so it
# survives a failed job; the job removes it once the outputs are written).


rule finetune_voc:
    input:
        voc=VOC_READY,
        model=pretext_model,
        meta=pretext_meta,
    output:
        ap="results/voc/{model}/{mode}/seed{seed}/ap.csv",
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
        checkpoint_every=config["voc"]["checkpoint_every"],
        checkpoint="results/voc/{model}/{mode}/seed{seed}/checkpoint.pt",
    script:
        "../workflow_scripts/finetune_voc.py"
