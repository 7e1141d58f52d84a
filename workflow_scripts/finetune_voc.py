"""Adapter of rule finetune_voc: one model, one mode, one seed -> per-class VOC 2007 AP."""

from pathlib import Path

from _common import run, settings


def main(snakemake) -> None:
    from soundsup.gpu import claim_gpu

    claim_gpu()  # a card of its own on a workstation; SLURM's choice is kept
    from soundsup.config import build_settings
    from soundsup.device import pick_device
    from soundsup.finetune import FinetuneConfig
    from soundsup.finetune_job import run_finetune_job

    params = snakemake.params
    run_finetune_job(
        voc_root=params.voc_root,
        mode=snakemake.wildcards.mode,
        seed=int(snakemake.wildcards.seed),
        config=build_settings(FinetuneConfig, settings(snakemake, "voc")),
        backbone=params.backbone,
        model_path=snakemake.input.model or None,
        pretext_meta_path=snakemake.input.meta or None,
        scores_path=snakemake.output.scores,
        ap_path=snakemake.output.ap,
        checkpoint_path=params.checkpoint,
        config_slice=params.voc,
        model_name=snakemake.wildcards.model,
        device=pick_device(snakemake.config["device"]),
        n_threads=snakemake.threads,
        tensorboard_dir=Path(snakemake.output.ap).parent / "tensorboard",  # when tensorboard is installed
        finetuned_path=getattr(snakemake.output, "finetuned", None),  # voc.keep_models
    )


run(main, snakemake)  # noqa: F821
