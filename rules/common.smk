# Config validation, wildcard constraints, the lists of jobs, and input functions.
# No rules here.
from pathlib import Path

from soundsup.config import model_names, validate_config

config.update(
    validate_config(config, Path(workflow.basedir) / "schemas" / "config.schema.yaml")
)

SHARDS = list(range(config["shards"]))
FEATURES = config["features"]["names"]
KS = config["clusters"]["k"]
ARCHS = config["pretext"]["arch"]
MODES = config["voc"]["modes"]
SEEDS = config["voc"]["seeds"]
MODELS = model_names(config)
SYNTHETIC = config["world"] == "synthetic"
VOC_ROOT = config["voc"]["root"]
VOC_READY = [
    f"{VOC_ROOT}/ImageSets/Main/trainval.txt",
    f"{VOC_ROOT}/ImageSets/Main/test.txt",
]

TABLES = ["results/table1.csv", "results/table2.csv"]
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
    model=r"(texture|mfcc)-k\d+-(alexnet|resnet18)|(random|imagenet)-(alexnet|resnet18)",


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


def local_videos():
    """The folder of full-length videos that download.source=local reads (else nothing)."""
    if SYNTHETIC:
        return "resources/synthetic/videos"
    if config["download"]["source"] == "local":
        return config["download"]["local_dir"]
    return []


def shard_files(pattern):
    return expand(pattern, shard=SHARDS)


def stage_config(section, drop=()):
    """A config section minus the keys that do not change results (so they trigger no rerun)."""
    return {key: value for key, value in config[section].items() if key not in drop}


def model_spec(model):
    """Split a model name into its parts: init (sound|random|imagenet), feature, k, arch."""
    parts = model.split("-")
    if parts[0] in ("random", "imagenet"):
        return {"init": parts[0], "feature": None, "k": None, "arch": parts[1]}
    return {
        "init": "sound",
        "feature": parts[0],
        "k": int(parts[1][1:]),
        "arch": parts[2],
    }


def pretext_model_path(model):
    """The pretext model file of a sound model (an empty list for baselines)."""
    spec = model_spec(model)
    if spec["init"] != "sound":
        return []
    return f"results/pretext/{spec['feature']}/k{spec['k']}/{spec['arch']}/model.pt"


def pretext_model(wildcards):
    return pretext_model_path(wildcards.model)


def pretext_meta(wildcards):
    path = pretext_model_path(wildcards.model)
    return f"{path}.meta.json" if path else []


def backbone_params(wildcards):
    """What the fine-tuning job needs to build its starting network (and nothing else)."""
    spec = model_spec(wildcards.model)
    params = {"init": spec["init"], "arch": spec["arch"]}
    if spec["init"] == "random":
        params["fc_width"] = config["pretext"]["fc_width"]
    if spec["init"] == "imagenet":
        params["weights"] = config["voc"]["imagenet_weights"][spec["arch"]]
    return params


def ap_files(wildcards=None):
    return expand(
        "results/voc/{model}/{mode}/seed{seed}/ap.csv",
        model=MODELS,
        mode=MODES,
        seed=SEEDS,
    )


FINETUNE_KEYS_NOT_RESULTS = (
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
    "log_every",
    "checkpoint_every",
    "threads",
    "mem_mb",
)
