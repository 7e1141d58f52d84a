"""Adapter of rules compute_texture and compute_mfcc: audio windows of a shard -> features."""

import logging

from _common import run


def main(snakemake) -> None:
    import numpy as np
    import pandas as pd

    from soundsup.device import set_threads
    from soundsup.io import save_npy, write_meta, write_parquet

    set_threads(snakemake.threads)  # the FFTs run through torch, which would take every core
    log = logging.getLogger(f"soundsup.rule.{snakemake.rule}")
    index = pd.read_parquet(snakemake.input.index)
    audio = np.load(snakemake.input.audio, mmap_mode="r")
    if len(index) != len(audio):
        raise ValueError(
            f"{snakemake.input.index} has {len(index)} rows but {snakemake.input.audio} {len(audio)}"
        )
    sample_rate = snakemake.params.sample_rate

    if snakemake.rule == "compute_texture":
        from soundsup.texture import TextureConfig, is_silent, texture_stats_batch

        settings = {
            **snakemake.params.texture,
            "corr_offsets": tuple(snakemake.params.texture["corr_offsets"]),
        }
        features = texture_stats_batch(np.asarray(audio), sample_rate, config=TextureConfig(**settings))
        silent = is_silent(features)
        config_slice = snakemake.params.texture
    else:
        from soundsup.mfcc import MfccConfig, mfcc_features

        features = mfcc_features(np.asarray(audio), sample_rate, MfccConfig(**snakemake.params.mfcc))
        rms = np.sqrt(np.mean(np.square(audio, dtype=np.float64), axis=1)) if len(audio) else np.zeros(0)
        silent = rms < snakemake.params.silence_rms
        config_slice = snakemake.params.mfcc

    log.info("%d windows -> features %s, %d silent", len(index), features.shape, int(silent.sum()))
    save_npy(snakemake.output.features, np.asarray(features, dtype=np.float32))
    write_parquet(snakemake.output.ids, pd.DataFrame({"pair_id": index["pair_id"], "silent": silent}))
    write_meta(snakemake.output.features, config_slice, sample_rate=sample_rate, n_windows=len(index))


run(main, snakemake)  # noqa: F821
