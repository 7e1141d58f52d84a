"""Adapter of rule extract_frozen_features: one model -> its pooled features at every layer,
for VOC trainval and test."""

import logging

from _common import run, settings


def main(snakemake) -> None:
    from soundsup.gpu import claim_gpu

    claim_gpu()  # a card of its own on a workstation; SLURM's choice is kept
    from soundsup.config import build_settings
    from soundsup.device import pick_device, seed_everything, set_threads
    from soundsup.finetune import backbone_from_spec
    from soundsup.frozen import FeatureConfig, extract_features
    from soundsup.io import write_meta
    from soundsup.svm import save_features
    from soundsup.voc import read_labels

    log = logging.getLogger("soundsup.rule.extract_frozen_features")
    set_threads(snakemake.threads)
    config = build_settings(FeatureConfig, settings(snakemake, "svm"))
    backbone, voc_root = snakemake.params.backbone, snakemake.params.voc_root
    seed_everything(snakemake.params.seed)  # the random baseline: the init of fine-tuning's seed 0
    model = backbone_from_spec(backbone, snakemake.input.model)
    device = pick_device(snakemake.config["device"])
    dims = {}
    for split in ("trainval", "test"):
        ids, _ = read_labels(voc_root, split)
        features = extract_features(
            model,
            backbone["arch"],
            voc_root,
            ids,
            snakemake.params.crop_size,
            config,
            device,
            snakemake.threads,
        )
        save_features(snakemake.output[split], ids, features)
        dims = {layer: int(values.shape[1]) for layer, values in features.items()}
        log.info("%s: %d images -> %s", split, len(ids), snakemake.output[split])
    write_meta(
        snakemake.output.trainval,
        {"svm": snakemake.params.svm, "backbone": backbone, "crop_size": snakemake.params.crop_size},
        seed=snakemake.params.seed,
        model=snakemake.wildcards.model,
        dims=dims,
        device=str(device),
    )


run(main, snakemake)  # noqa: F821
