# Selection -> download (one job per shard) -> frame/audio pairs (per shard) -> dataset report.


if WORLD == "folder":

    # The videos of one shard of the folder, probed and cut into segments (soundsup/folder.py).
    rule scan_folder:
        output:
            segments="results/segments/shard-{shard}.parquet",
        log:
            "logs/scan_folder/shard-{shard}.log",
        benchmark:
            "results/benchmarks/scan_folder/shard-{shard}.tsv"
        priority: PRETEXT_CHAIN
        conda:
            "../envs/acquire.yaml"
        threads: 2
        params:
            videos=folder_videos,
            folder=params_of("folder"),
            min_duration_s=config["select"]["min_duration_s"],
            shards=config["shards"],
        script:
            "../workflow_scripts/scan_folder.py"


# The segments of the world: an AudioSet-format CSV filtered by the ontology, the VGGSound CSV
# filtered by split and label text, or the segments of a folder's shards gathered.
rule select_segments:
    input:
        unpack(selection_inputs),
    output:
        selection="results/segments/selection.parquet",
        rejected="results/segments/malformed_lines.csv",
    log:
        "logs/select_segments.log",
    benchmark:
        "results/benchmarks/select_segments.tsv"
    priority: PRETEXT_CHAIN
    conda:
        "../envs/acquire.yaml"
    resources:
        mem_mb=4000,
    params:
        **selection_source_params(),
        select=config["select"],
        shards=config["shards"],
        seed=config["seed"],
    script:
        "../workflow_scripts/select_segments.py"


# What is fetched is the selection and the cut (max_height, reencode: the cache folder); where
# from and how (source, url_template, local_dir, folder.path, concurrency, timeouts, retries,
# rate limit, cookies, proxy) are x-rerun false in the schema: the adapter reads them from the
# config. World folder: each shard reads its own segments (scan_folder), not the selection.
# Nothing of the pairs section reaches this rule: a cached clip is valid when it covers its
# segment, whatever the pair window.
if config["download"]["on_submit_host"]:

    localrules:
        download_clips,


rule download_clips:
    input:
        selection=download_selection,
        videos=local_videos(),
    output:
        manifest="results/clips/shard-{shard}.parquet",
    log:
        "logs/download_clips/shard-{shard}.log",
    benchmark:
        "results/benchmarks/download_clips/shard-{shard}.tsv"
    priority: PRETEXT_CHAIN
    conda:
        "../envs/acquire.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        downloads=1,
    params:
        download=params_of("download"),
        cache_dir=clip_cache(),
    script:
        "../workflow_scripts/download_clips.py"


rule extract_pairs:
    input:
        manifest="results/clips/shard-{shard}.parquet",
    output:
        index="results/pairs/shard-{shard}/index.parquet",
        frames="results/pairs/shard-{shard}/frames.npy",
        audio="results/pairs/shard-{shard}/audio.npy",
        failures="results/pairs/shard-{shard}/failures.parquet",
    log:
        "logs/extract_pairs/shard-{shard}.log",
    benchmark:
        "results/benchmarks/extract_pairs/shard-{shard}.tsv"
    priority: PRETEXT_CHAIN
    conda:
        "../envs/acquire.yaml"
    threads: 1
    resources:
        mem_mb=2000,
    params:
        pairs=config["pairs"],
    script:
        "../workflow_scripts/extract_pairs.py"


rule report_dataset:
    input:
        selection="results/segments/selection.parquet",
        manifests=shard_files("results/clips/shard-{shard}.parquet"),
        indices=shard_files("results/pairs/shard-{shard}/index.parquet"),
        failures=shard_files("results/pairs/shard-{shard}/failures.parquet"),
    output:
        report(
            "results/dataset.csv",
            caption="../report/dataset.rst",
            category="Dataset",
        ),
    log:
        "logs/report_dataset.log",
    conda:
        "../envs/acquire.yaml"
    script:
        "../workflow_scripts/report_dataset.py"
