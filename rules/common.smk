# Config validation, wildcard constraints, the lists of jobs, and input functions.
# No rules here.
from importlib import resources
from pathlib import Path

from soundsup.config import (
    FROZEN_LAYERS,
    TORCHVISION_IMAGENET_URLS,
    frozen_layers,
    load_schema,
    pretext_section,
    rule_params,
    validate_config,
    voc_section,
)
from soundsup.names import ModelName, model_names, sound_model_names, wildcard_pattern
from soundsup.estimate import finetune_minutes, n_frames, pretext_minutes
from soundsup.gpu import visible_gpu_count

SCHEMA_PATH = Path(workflow.basedir) / "schemas" / "config.schema.yaml"
SCHEMA = load_schema(SCHEMA_PATH)
# The validated config is canonical (sorted keys, numbers of their schema type), so the params
# below print the same for the same values however the config was written.
_canonical_config = validate_config(config, SCHEMA_PATH)
config.clear()
config.update(_canonical_config)

# A workstation runs at most one GPU job per card at once unless --resources gpu=N says
# otherwise (each job then locks a card of its own, soundsup/gpu.py). Without cards the
# training jobs run on the CPU and share the cores like any other job. Under SLURM the
# scheduler hands out the cards.
if (
    workflow.local_exec
    and "gpu" not in workflow.global_resources
    and visible_gpu_count()
):
    workflow.register_resource("gpu", visible_gpu_count())

SHARDS = list(range(config["shards"]))
# The chain from the segments to the pretext models is the DAG's critical path: everything
# downstream waits for a model, so its jobs go first whenever a core is free (the scheduler
# otherwise prefers the jobs with the largest inputs, such as the random baselines' VOC runs).
PRETEXT_CHAIN = 10
FEATURES = config["features"]["names"]
ARCHS = config["pretext"]["arch"]
MODES = config["voc"]["modes"]
SEEDS = config["voc"]["seeds"]
# outside checkpoints: {name: {arch, weights, ...}}
EXTERNAL = config["voc"]["external"]
MODELS = model_names(config)
WORLD = config["world"]
SYNTHETIC = WORLD == "synthetic"
VOC_ROOT = config["voc"]["root"]
VOC_READY = [
    f"{VOC_ROOT}/ImageSets/Main/trainval.txt",
    f"{VOC_ROOT}/ImageSets/Main/test.txt",
]

TABLES = ["results/table1.csv", "results/table2.csv"]
# The paper's numbers, packaged with soundsup (soundsup.tables.published_path, without
# importing pandas into every Snakemake start).
PUBLISHED_CSV = str(resources.files("soundsup") / "data" / "published.csv")
FIGURES = [
    "results/figures/map_vs_k.png",
    "results/figures/feature_comparison.png",
    "results/figures/cluster_montage.png",
    "results/figures/top_activations.png",
    "results/figures/pretext_curves.png",
]


wildcard_constraints:
    shard=r"\d+",
    feature="|".join(FEATURES),
    k=r"\d+",
    arch="alexnet|resnet18",
    mode="head|all",
    seed=r"\d+",
    model=wildcard_pattern(external=EXTERNAL),
    layer="|".join(layer for layers in FROZEN_LAYERS.values() for layer in layers),


def voc_root_of(marker):
    """The VOC2007 folder of a file under ImageSets/Main (where the readiness markers live)."""
    return str(Path(marker).parents[2])


def segments_csv():
    """The AudioSet-format segments CSV the selection reads."""
    if SYNTHETIC:
        return "resources/audioset/synthetic_segments.csv"
    return (
        config["audioset"]["segments_csv"]
        or f"resources/audioset/{config['audioset']['split']}_segments.csv"
    )


def ontology_json():
    if SYNTHETIC:
        return "resources/audioset/ontology.json"
    return config["audioset"]["ontology_json"] or "resources/audioset/ontology.json"


def folder_labels_csv():
    """The labels CSV of world folder (a rule input), or nothing (no labels, or sub-folder names)."""
    labels = config["folder"]["labels"]
    return [] if labels in (None, "folders") else labels


# World folder: the folder is scanned (file metadata only) when the workflow starts, and each
# shard's scan_folder job gets the list of its videos (path, size, time, labels) as a param: a
# shard's segments and clips are made again exactly when one of its videos changed, so adding
# a video reruns one shard and touching the folder reruns nothing (soundsup/folder.py).
if WORLD == "folder":
    from soundsup.folder import folder_snapshot

    FOLDER = folder_snapshot(
        config["folder"]["path"],
        config["folder"]["extensions"],
        config["shards"],
        config["folder"]["labels"],
        work_dir=Path.cwd(),
    )


def folder_videos(wildcards):
    """The videos of a shard of the folder, as listed when the workflow started."""
    return FOLDER.shards[int(wildcards.shard)]


def selection_inputs(wildcards):
    """The files the selection reads: an AudioSet-format CSV and its ontology, the VGGSound CSV,
    or the segments of every shard of a folder (and its labels CSV)."""
    if WORLD == "folder":
        shards = shard_files("results/segments/shard-{shard}.parquet")
        labels = folder_labels_csv()
        return {"shards": shards, **({"labels": labels} if labels else {})}
    if WORLD == "vggsound":
        return {"segments": config["vggsound"]["csv"]}
    return {"segments": segments_csv(), "ontology": ontology_json()}


def selection_source_params():
    """select_segments' params that name a source other than AudioSet (none for AudioSet and
    the synthetic world, whose params stay as they were)."""
    if WORLD == "folder":
        return {"source": {"world": "folder"}}
    if WORLD == "vggsound":
        return {"source": {"world": "vggsound", "vggsound": params_of("vggsound")}}
    return {}


def download_selection(wildcards):
    """The selection a shard's download reads: the whole one, or in world folder its shard's."""
    if WORLD == "folder":
        return f"results/segments/shard-{wildcards.shard}.parquet"
    return "results/segments/selection.parquet"


def local_videos():
    """The synthetic world's videos (an output of make_synthetic_world), else nothing: a user's
    download.local_dir is a source like YouTube, read by the adapter, not a rerun trigger.
    """
    if SYNTHETIC:
        return "resources/synthetic/videos"
    return []


def params_of(section, exclude=()):
    """The part of a config section (dotted) that shapes a rule's results: every key except
    those the schema marks x-rerun false (adapters read those from the config) and ``exclude``
    (keys the rule does not use). Changing anything else reruns the rule."""
    return rule_params(config, SCHEMA, section, exclude)


def pretext_params(wildcards):
    """train_pretext's params: the pretext keys that shape its model, as its architecture sees
    them (pretext.per_arch), so an architecture's override reruns only its own models.
    """
    resolved = {**config, "pretext": pretext_section(config, wildcards.arch)}
    return rule_params(resolved, SCHEMA, "pretext", exclude=("arch",))


def clip_cache():
    """The cache folder of clips cut one way: max height and cut (re-encoded or stream copy)
    shape the bytes of a clip, so each combination has a folder of its own and switching
    back finds the old clips again."""
    download = config["download"]
    cut = "reencode" if download["reencode"] else "copy"
    return f"resources/clips/{download['max_height']}p-{cut}"


def shard_files(pattern):
    return expand(pattern, shard=SHARDS)


def model_spec(model):
    """The parts of a model's name (soundsup.names.ModelName): init, feature, k, arch, name."""
    return ModelName.parse(model)


def pretext_file(model, name):
    """File ``name`` of a sound model's pretext training (an empty list for baselines)."""
    spec = model_spec(model)
    if spec.init != "sound":
        return []
    return f"results/pretext/{spec.feature}/k{spec.k}/{spec.arch}/{name}"


def pretext_model_path(model):
    """The pretext model file of a sound model (an empty list for baselines)."""
    return pretext_file(model, "model.pt")


def pretext_model(wildcards):
    return pretext_model_path(wildcards.model)


def pretext_meta(wildcards):
    path = pretext_model_path(wildcards.model)
    return f"{path}.meta.json" if path else []


def backbone_params(wildcards):
    """What the fine-tuning job needs to build its starting network (and nothing else)."""
    spec = model_spec(wildcards.model)
    params = {"init": spec.init, "arch": spec.arch}
    if spec.init == "random":
        params["fc_width"] = config["pretext"]["fc_width"]
    if spec.init == "imagenet":
        params["weights"] = imagenet_weights_path(spec.arch)
    if spec.init == "external":
        entry = EXTERNAL[spec.name]
        params["weights"] = entry["weights"]
        if spec.arch == "alexnet":
            params.update(variant=entry["variant"], fc_width=entry["fc_width"])
    return params


def imagenet_weights_path(arch):
    """The state-dict file of an ImageNet backbone: a local file named in the config, or
    torchvision's, fetched by the rule fetch_imagenet_weights."""
    weights = config["voc"]["imagenet_weights"][arch]
    return (
        f"resources/weights/imagenet-{arch}.pth"
        if weights == "torchvision"
        else weights
    )


def backbone_weights(wildcards):
    """The weights file a baseline starts from (ImageNet's, or a voc.external checkpoint);
    nothing for sound models (their model.pt is the input ``model``) and random ones."""
    spec = model_spec(wildcards.model)
    if spec.init == "imagenet":
        return imagenet_weights_path(spec.arch)
    if spec.init == "external":
        return EXTERNAL[spec.name]["weights"]
    return []


# A fine-tuned network is an output only where voc.keep_models asks for it, and then a target
# of the default run too (Snakemake redoes a finished job only for a missing file it was asked for).
KEPT_VOC_MODEL = (
    {"finetuned": "results/voc/{model}/{mode}/seed{seed}/finetuned.pt"}
    if config["voc"]["keep_models"]
    else {}
)


# Every fine-tuning run (model, mode, seed), in the order of ap_files: tabulate_ap gets them as
# params beside the files, so no name is parsed back out of a path.
RUNS = [[model, mode, seed] for model in MODELS for mode in MODES for seed in SEEDS]


def kept_voc_models():
    """Every run's finetuned.pt where voc.keep_models is on (else nothing)."""
    if not KEPT_VOC_MODEL:
        return []
    return [
        f"results/voc/{model}/{mode}/seed{seed}/finetuned.pt"
        for model, mode, seed in RUNS
    ]


def ap_files(wildcards=None, suffix=""):
    """Every run's AP file (``suffix=".meta.json"``: their provenance sidecars), as RUNS."""
    return [
        f"results/voc/{model}/{mode}/seed{seed}/ap.csv{suffix}"
        for model, mode, seed in RUNS
    ]


def cluster_summaries(wildcards=None):
    """The clustering summary of every sound model's feature and k (which backend ran)."""
    specs = [model_spec(model) for model in MODELS]
    pairs = dict.fromkeys((s.feature, s.k) for s in specs if s.init == "sound")
    return [f"results/clusters/{feature}/k{k}/summary.json" for feature, k in pairs]


# voc keys that fine-tuning itself does not read: where VOC comes from, and which jobs exist.
VOC_KEYS_NOT_FINETUNING = (
    "root",
    "download",
    "trainval_url",
    "test_url",
    "trainval_sha256",
    "test_sha256",
    "modes",
    "seeds",
    "baselines",
    "imagenet_weights",
    "external",
)


def voc_params(wildcards):
    """finetune_voc's params: the voc keys that shape its run, as its model's architecture sees
    them (voc.per_arch), so an architecture's override reruns only its own models."""
    arch = model_spec(wildcards.model).arch
    resolved = {**config, "voc": voc_section(config, arch)}
    return rule_params(resolved, SCHEMA, "voc", exclude=VOC_KEYS_NOT_FINETUNING)


def voc_crop_size(wildcards):
    """The image size of a model's frozen-feature extraction: its architecture's voc.crop_size."""
    return voc_section(config, model_spec(wildcards.model).arch)["crop_size"]


def pretext_runtime(wildcards, input, attempt):
    """Minutes a train_pretext job asks for: from the frames it will read when they exist
    (Snakemake evaluates this again when the job is ready), else from the selection size.
    """
    frames = [Path(path) for path in input.frames]
    if frames and all(path.exists() for path in frames):
        n_pairs = n_frames(
            sum(path.stat().st_size for path in frames), config["pairs"]["frame_size"]
        )
    else:
        n_pairs = config["select"]["n_segments"] * config["pairs"]["per_clip"]
    return pretext_minutes(n_pairs, wildcards.arch, config, attempt)


def finetune_runtime(wildcards, attempt):
    """Minutes a finetune_voc job asks for: iterations and test crops over the assumed rate."""
    return finetune_minutes(model_spec(wildcards.model).arch, config, attempt=attempt)


# ---------------------------------------------------------------------------------------------
# frozen-feature evaluations (rules/evaluate.smk): every model of MODELS, its architecture's layers

FROZEN_TABLES = [
    "results/svm_layers.csv",
    "results/svm_lowshot.csv",
    "results/knn_layers.csv",
]
FROZEN_FIGURES = ["results/figures/svm_layers.png", "results/figures/svm_lowshot.png"]
# The svm keys each evaluation reads (params_of keeps only those: a change reruns only its users).
SVM_SOLVER_KEYS = ("costs", "max_iter", "tol", "positive_weight", "normalize")
SVM_KEYS = {
    "extract": ("pooled_dims", "precision"),
    "svm": (*SVM_SOLVER_KEYS, "cv_folds", "difficult"),
    "lowshot": (
        *SVM_SOLVER_KEYS,
        "lowshot_sizes",
        "lowshot_samples",
        "lowshot_negative_ratio",
        "lowshot_cost",
    ),
    "knn": ("knn_k",),
}


def svm_params(evaluation):
    """The svm keys that shape one evaluation's results (``SVM_KEYS[evaluation]``)."""
    used = SVM_KEYS[evaluation]
    return params_of("svm", exclude=[key for key in config["svm"] if key not in used])


def model_layers(model, key="layers"):
    """The layers of a model's architecture that svm.<key> names, in network order."""
    return frozen_layers(config, model_spec(model).arch, key)


def frozen_features(wildcards):
    return {
        split: f"results/frozen/{wildcards.model}/features/{split}.npz"
        for split in ("trainval", "test")
    }


def frozen_runs(layers_key="layers"):
    """[model, layer] of every SVM (``layers``) or low-shot (``lowshot_layers``) job, in the
    order of its files: the tables get them as params, never from the paths."""
    return [
        [model, layer] for model in MODELS for layer in model_layers(model, layers_key)
    ]


def svm_files(wildcards=None):
    return [
        f"results/frozen/{model}/svm/{layer}/ap.csv" for model, layer in frozen_runs()
    ]


def lowshot_files(wildcards=None):
    return [
        f"results/frozen/{model}/lowshot/{layer}/map.csv"
        for model, layer in frozen_runs("lowshot_layers")
    ]


def knn_files(wildcards=None):
    return [f"results/frozen/{model}/knn/ap.csv" for model in MODELS]


def frozen_models():
    """{model: {"arch", "init"}} of every model, in the order of MODELS (the tables' rows)."""
    return {
        model: {key: getattr(model_spec(model), key) for key in ("arch", "init")}
        for model in MODELS
    }
