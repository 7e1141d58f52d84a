"""Adapter of rule extract_frozen_features: one model -> its pooled features at every layer,
for VOC trainval and test."""

from _common import run, settings


def main(snakemake) -> None:
    from soundsup.gpu import claim_gpu

    claim_gpu()  # a card of its own on a workstation; SLURM's choice is kept
    from soundsup.config import build_settings
    from soundsup.device import pick_device, set_threads
    from soundsup.frozen import FeatureConfig, extract_frozen_job

    set_threads(snakemake.threads)
    extract_frozen_job(
        backbone=snakemake.params.backbone,
        model_path=snakemake.input.model,
        voc_root=snakemake.params.voc_root,
        crop_size=snakemake.params.crop_size,
        config=build_settings(FeatureConfig, settings(snakemake, "svm")),
        device=pick_device(snakemake.config["device"]),
        n_threads=snakemake.threads,
        seed=snakemake.params.seed,
        trainval_path=snakemake.output.trainval,
        test_path=snakemake.output.test,
        config_slice=snakemake.params.svm,
        model_name=snakemake.wildcards.model,
    )


run(main, snakemake)  # noqa: F821
