"""Adapter of rule train_pretext: frames + their sound clusters -> a CNN that predicts them."""

from _common import run, settings


def main(snakemake) -> None:
    from soundsup.gpu import claim_gpu

    claim_gpu()  # a card of its own on a workstation; SLURM's choice is kept
    from soundsup.config import build_settings
    from soundsup.device import pick_device, set_threads
    from soundsup.pretext import PretextConfig, train_pretext_job

    set_threads(snakemake.threads)
    train_pretext_job(
        labels_path=snakemake.input.labels,
        index_paths=snakemake.input.indices,
        frame_paths=snakemake.input.frames,
        feature=snakemake.wildcards.feature,
        arch=snakemake.wildcards.arch,
        n_clusters=int(snakemake.wildcards.k),
        config=build_settings(PretextConfig, settings(snakemake, "pretext")),
        config_slice=snakemake.params.pretext,
        seed=snakemake.params.seed,
        device=pick_device(snakemake.config["device"]),
        model_path=snakemake.output.model,
        history_path=snakemake.output.history,
        checkpoint_path=snakemake.params.checkpoint,
        backbone_path=snakemake.output.backbone,
    )


run(main, snakemake)  # noqa: F821
