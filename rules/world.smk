# Where the data comes from: the real AudioSet metadata and VOC 2007 (paper), or the embedded
# synthetic world (demo), which writes the same formats with real codecs. World folder (one's
# own videos) and vggsound (its CSV) have no metadata to fetch; they use the real VOC 2007.

if SYNTHETIC:

    rule make_synthetic_world:
        output:
            segments="resources/audioset/synthetic_segments.csv",
            ontology="resources/audioset/ontology.json",
            videos=directory("resources/synthetic/videos"),
            voc=VOC_READY,
            summary="resources/synthetic/world.json",
        log:
            "logs/make_synthetic_world.log",
        benchmark:
            "results/benchmarks/make_synthetic_world.tsv"
        priority: PRETEXT_CHAIN
        conda:
            "../envs/media.yaml"
        threads: 2
        params:
            synthetic=config["synthetic"],
            voc_root=lambda wildcards, output: voc_root_of(output.voc[0]),
            seed=config["seed"],
        script:
            "../workflow_scripts/make_synthetic_world.py"

else:

    if WORLD == "audioset":

        # Runs where snakemake runs (localrules): compute nodes often have no internet.
        localrules:
            fetch_audioset_csv,
            fetch_ontology,

        rule fetch_audioset_csv:
            output:
                protected("resources/audioset/{split}_segments.csv"),
            log:
                "logs/fetch_audioset_csv/{split}.log",
            wildcard_constraints:
                split="eval|balanced_train|unbalanced_train",
            retries: 2
            priority: PRETEXT_CHAIN
            conda:
                "../envs/acquire.yaml"
            params:
                url=lambda wc: config["audioset"]["segments_url"].format(split=wc.split),
                sha256=config["audioset"]["segments_sha256"],
            script:
                "../workflow_scripts/fetch_file.py"

        rule fetch_ontology:
            output:
                protected("resources/audioset/ontology.json"),
            log:
                "logs/fetch_ontology.log",
            retries: 2
            priority: PRETEXT_CHAIN
            conda:
                "../envs/acquire.yaml"
            params:
                url=config["audioset"]["ontology_url"],
                sha256=None,
            script:
                "../workflow_scripts/fetch_file.py"

    # World folder and vggsound evaluate on the real VOC 2007 too.
    if config["voc"]["download"]:

        localrules:
            fetch_voc07,

        rule fetch_voc07:
            output:
                voc=VOC_READY,
            log:
                "logs/fetch_voc07.log",
            retries: 2
            conda:
                "../envs/acquire.yaml"
            params:
                urls=[config["voc"]["trainval_url"], config["voc"]["test_url"]],
                sha256=[config["voc"]["trainval_sha256"], config["voc"]["test_sha256"]],
                voc_root=lambda wildcards, output: voc_root_of(output.voc[0]),
                tar_dir="resources/voc/tar",
            script:
                "../workflow_scripts/fetch_voc07.py"
