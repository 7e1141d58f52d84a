"""Adapter of rule finetune_voc: one model, one mode, one seed -> per-class VOC 2007 AP."""

from _common import run


def main(snakemake) -> None:
    from soundsup.gpu import claim_gpu

    claim_gpu()  # a card of its own on a workstation; SLURM's choice is kept
    from soundsup.device import pick_device
    from soundsup.finetune import FinetuneConfig
    from soundsup.finetune_job import run_finetune_job

    params = snakemake.params
    config = FinetuneConfig(
        **params.voc, log_every=params.log_every, checkpoint_every=params.checkpoint_every
    )
    run_finetune_job(
        voc_root=params.voc_root,
        mode=snakemake.wildcards.mode,
        seed=int(snakemake.wildcards.seed),
        config=config,
        backbone=params.backbone,
        model_path=snakemake.input.model or None,
        pretext_meta_path=snakemake.input.meta or None,
        scores_path=snakemake.output.scores,
        ap_path=snakemake.output.ap,
        checkpoint_path=params.checkpoint,
        config_slice=params.voc,
        model_name=snakemake.wildcards.model,
        device=pick_device(),
        n_threads=snakemake.threads,
    )


run(main, snakemake)  # noqa: F821
