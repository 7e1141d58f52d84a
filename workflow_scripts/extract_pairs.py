"""Adapter of rule extract_pairs: the clips of one shard -> frames, audio windows, their index."""

import logging

from _common import run


def main(snakemake) -> None:
    import pandas as pd

    from soundsup.clips import verify_manifest_clips
    from soundsup.download import shard_was_skipped
    from soundsup.io import save_npy, write_meta, write_parquet
    from soundsup.pairs import PairConfig, extract_shard

    log = logging.getLogger("soundsup.rule.extract_pairs")
    manifest = pd.read_parquet(snakemake.input.manifest)
    if shard_was_skipped(manifest):  # download.on_shard_failure: skip; the dataset report names it
        log.warning("%s: the shard was skipped (too many failed clips): no pairs", snakemake.input.manifest)
        manifest = manifest.iloc[0:0]
    verify_manifest_clips(manifest, snakemake.input.manifest)  # a damaged clip: the next run refetches
    config = PairConfig(**snakemake.params.pairs)
    index, frames, audio, failures = extract_shard(manifest, config, threads=snakemake.threads)
    if not (len(index) == len(frames) == len(audio)):
        raise RuntimeError(f"index ({len(index)}), frames ({len(frames)}) and audio ({len(audio)}) disagree")
    for row in failures.itertuples():
        log.info("no pair from %s@%.3f: %s: %s", row.ytid, row.start, row.reason, row.message)
    log.info(
        "%d pairs from %d clips, %d clips skipped",
        len(index),
        (manifest["status"] == "ok").sum(),
        len(failures),
    )
    save_npy(snakemake.output.frames, frames)
    save_npy(snakemake.output.audio, audio)
    write_parquet(snakemake.output.failures, failures)
    write_parquet(snakemake.output.index, index)
    write_meta(snakemake.output.index, snakemake.params.pairs, n_pairs=len(index))


run(main, snakemake)  # noqa: F821
