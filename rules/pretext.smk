# The pretext task: a CNN predicts the sound cluster of a frame. GPU-tagged; resumes after
# preemption from the checkpoint beside its outputs (not an output itself, so it survives a
# failed job).


rule train_pretext:
    input:
        labels="results/clusters/{feature}/k{k}/labels.parquet",
        frames=shard_files("results/pairs/shard-{shard}/frames.npy"),
        indices=shard_files("results/pairs/shard-{shard}/index.parquet"),
    output:
        model="results/pretext/{feature}/k{k}/{arch}/model.pt",
        backbone="results/pretext/{feature}/k{k}/{arch}/backbone.pth",
        history="results/pretext/{feature}/k{k}/{arch}/history.jsonl",
        meta="results/pretext/{feature}/k{k}/{arch}/model.pt.meta.json",
    log:
        "logs/train_pretext/{feature}-k{k}-{arch}.log",
    benchmark:
        "results/benchmarks/train_pretext/{feature}-k{k}-{arch}.tsv"
    priority: PRETEXT_CHAIN
    conda:
        "../envs/torch.yaml"
    threads: config["pretext"]["threads"]
    resources:
        gpu=1,
        mem_mb=config["pretext"]["mem_mb"],
        runtime=pretext_runtime,
    params:
        pretext=pretext_params,
        checkpoint="results/pretext/{feature}/k{k}/{arch}/checkpoint.pt",
        seed=config["seed"],
    script:
        "../workflow_scripts/train_pretext.py"
