"""Adapter of rule train_pretext: frames + their sound clusters -> a CNN that predicts them."""

import logging
from pathlib import Path

from _common import run, settings


def main(snakemake) -> None:
    from soundsup.gpu import claim_gpu

    claim_gpu()  # a card of its own on a workstation; SLURM's choice is kept
    from soundsup.config import build_settings
    from soundsup.device import pick_device, retain_freed_host_memory, set_threads
    from soundsup.pretext import PretextConfig, train_pretext
    from soundsup.shards import load_pretext_data

    log = logging.getLogger("soundsup.rule.train_pretext")
    set_threads(snakemake.threads)
    retain_freed_host_memory()  # training re-allocates the same big buffers every step
    data = load_pretext_data(snakemake.input.labels, snakemake.input.indices, snakemake.input.frames)
    n_clusters = int(snakemake.wildcards.k)
    device = pick_device(snakemake.config["device"])
    log.info("%d of %d frames have a sound cluster; device %s", len(data.frames), data.n_pairs, device)

    config = build_settings(PretextConfig, settings(snakemake, "pretext"))
    wildcards = snakemake.wildcards
    train_pretext(
        data.frames,
        data.targets,
        data.groups,
        arch=snakemake.wildcards.arch,
        n_classes=n_clusters,
        config=config,
        seed=snakemake.params.seed,
        device=device,
        model_path=snakemake.output.model,
        history_path=snakemake.output.history,
        checkpoint_path=snakemake.params.checkpoint,
        backbone_path=snakemake.output.backbone,
        meta={
            "config_slice": {**snakemake.params.pretext, "arch": snakemake.wildcards.arch, "k": n_clusters},
            "seed": snakemake.params.seed,
            "feature": snakemake.wildcards.feature,
            "n_pretext_pairs": len(data.frames),
            "device": str(device),
        },
        job_name=f"{wildcards.feature}-k{wildcards.k}-{wildcards.arch}",
        tensorboard_dir=Path(snakemake.output.history).parent
        / "tensorboard",  # when tensorboard is installed
    )


run(main, snakemake)  # noqa: F821
