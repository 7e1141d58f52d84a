"""Adapter of rule select_segments: parse the AudioSet CSV, filter by ontology, sample, shard."""

import logging

from _common import run


def main(snakemake) -> None:
    import pandas as pd

    from soundsup.audioset import SelectConfig, load_ontology, read_segments, select_segments
    from soundsup.io import write_meta, write_parquet, write_text

    log = logging.getLogger("soundsup.rule.select_segments")
    segments, bad_lines = read_segments(snakemake.input.segments)
    for line_number, text, reason in bad_lines:
        log.warning("%s line %d skipped (%s): %r", snakemake.input.segments, line_number, reason, text[:200])
    bad = pd.DataFrame(bad_lines, columns=["line", "text", "reason"])
    write_text(snakemake.output.rejected, bad.to_csv(index=False))

    ontology = load_ontology(snakemake.input.ontology)
    select = dict(snakemake.params.select)
    selection = select_segments(
        segments,
        ontology,
        SelectConfig(**select),
        n_shards=snakemake.params.shards,
        seed=snakemake.params.seed,
    )
    write_parquet(snakemake.output.selection, selection)
    write_meta(
        snakemake.output.selection,
        {"select": select, "shards": snakemake.params.shards},
        seed=snakemake.params.seed,
        n_rows_read=len(segments),
        n_malformed_lines=len(bad_lines),
        num_segs_header=segments.attrs.get("num_segs_header"),
        n_data_lines=segments.attrs.get("n_data_lines"),
        n_selected=len(selection),
    )


run(main, snakemake)  # noqa: F821
