# Sound summaries per shard (texture statistics, MFCC) and k-means clusters over all shards.


rule compute_texture:
    input:
        index="results/pairs/shard-{shard}/index.parquet",
        audio="results/pairs/shard-{shard}/audio.npy",
    output:
        features="results/features/texture/shard-{shard}.npy",
        ids="results/features/texture/shard-{shard}.parquet",
    log:
        "logs/compute_texture/shard-{shard}.log",
    benchmark:
        "results/benchmarks/compute_texture/shard-{shard}.tsv"
    priority: PRETEXT_CHAIN
    conda:
        "../envs/audio.yaml"
    threads: 1
    resources:
        mem_mb=3000,
    params:
        texture=config["features"]["texture"],
        sample_rate=config["pairs"]["sample_rate"],
        silence_rms=config["pairs"]["silence_rms"],
    script:
        "../workflow_scripts/compute_texture.py"


rule compute_mfcc:
    input:
        index="results/pairs/shard-{shard}/index.parquet",
        audio="results/pairs/shard-{shard}/audio.npy",
    output:
        features="results/features/mfcc/shard-{shard}.npy",
        ids="results/features/mfcc/shard-{shard}.parquet",
    log:
        "logs/compute_mfcc/shard-{shard}.log",
    benchmark:
        "results/benchmarks/compute_mfcc/shard-{shard}.tsv"
    priority: PRETEXT_CHAIN
    conda:
        "../envs/audio.yaml"
    threads: 1
    resources:
        mem_mb=3000,
    params:
        mfcc=config["features"]["mfcc"],
        sample_rate=config["pairs"]["sample_rate"],
        silence_rms=config["pairs"]["silence_rms"],
    script:
        "../workflow_scripts/compute_mfcc.py"


rule cluster_kmeans:
    input:
        features=shard_files("results/features/{{feature}}/shard-{shard}.npy"),
        ids=shard_files("results/features/{{feature}}/shard-{shard}.parquet"),
        indices=shard_files("results/pairs/shard-{shard}/index.parquet"),
    output:
        labels="results/clusters/{feature}/k{k}/labels.parquet",
        centroids="results/clusters/{feature}/k{k}/centroids.npy",
        summary="results/clusters/{feature}/k{k}/summary.json",
    log:
        "logs/cluster_kmeans/{feature}-k{k}.log",
    benchmark:
        "results/benchmarks/cluster_kmeans/{feature}-k{k}.tsv"
    priority: PRETEXT_CHAIN
    conda:
        "../envs/torch.yaml"
    threads: config["clusters"]["threads"]
    resources:
        mem_mb=8000,
    params:
        clusters=params_of("clusters", exclude=("k", "per_feature")),  # k is the wildcard
        seed=config["seed"],
    script:
        "../workflow_scripts/cluster_kmeans.py"
