"""Adapter of rule select_segments: the world's segments -> the selection, with shards."""

from _common import run


def main(snakemake) -> None:
    from soundsup.selection import select_job

    inputs = snakemake.input
    select_job(
        select=snakemake.params.select,
        shards=snakemake.params.shards,
        seed=snakemake.params.seed,
        source=getattr(snakemake.params, "source", None),  # absent for AudioSet-format CSVs
        selection_path=snakemake.output.selection,
        rejected_path=snakemake.output.rejected,
        segments_path=inputs.get("segments"),
        ontology_path=inputs.get("ontology"),
        shard_paths=list(inputs.get("shards", [])),
        labels_path=inputs.get("labels"),
    )


run(main, snakemake)  # noqa: F821
