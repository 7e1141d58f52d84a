"""Adapter of rule train_pretext: frames + their sound clusters -> a CNN that predicts them."""

import logging

from _common import run


def main(snakemake) -> None:
    from soundsup.gpu import claim_gpu

    claim_gpu()  # a card of its own on a workstation; SLURM's choice is kept
    import numpy as np
    import pandas as pd

    from soundsup.device import pick_device, retain_freed_host_memory, set_threads
    from soundsup.pretext import PretextConfig, train_pretext

    log = logging.getLogger("soundsup.rule.train_pretext")
    set_threads(snakemake.threads)
    retain_freed_host_memory()  # training re-allocates the same big buffers every step
    labels = pd.read_parquet(snakemake.input.labels)
    pairs = pd.concat([pd.read_parquet(path) for path in snakemake.input.indices], ignore_index=True)
    if not labels["pair_id"].equals(pairs["pair_id"]):
        raise ValueError(f"{snakemake.input.labels} does not line up with the pair indices")
    frames = np.concatenate([np.load(path) for path in snakemake.input.frames])
    keep = labels["cluster"].to_numpy() >= 0
    n_clusters = int(snakemake.wildcards.k)
    device = pick_device()
    log.info("%d of %d frames have a sound cluster; device %s", keep.sum(), len(keep), device)

    config = PretextConfig(
        **snakemake.params.pretext,
        log_every=snakemake.params.log_every,
        checkpoint_every=snakemake.params.checkpoint_every,
    )
    train_pretext(
        frames[keep],
        labels["cluster"].to_numpy()[keep].astype(np.int64),
        pairs["ytid"].to_numpy()[keep],
        arch=snakemake.wildcards.arch,
        n_classes=n_clusters,
        config=config,
        seed=snakemake.params.seed,
        device=device,
        model_path=snakemake.output.model,
        history_path=snakemake.output.history,
        checkpoint_path=snakemake.params.checkpoint,
        meta={
            "config_slice": {**snakemake.params.pretext, "arch": snakemake.wildcards.arch, "k": n_clusters},
            "seed": snakemake.params.seed,
            "feature": snakemake.wildcards.feature,
            "n_pretext_pairs": int(keep.sum()),
            "device": str(device),
        },
    )


run(main, snakemake)  # noqa: F821
