"""Adapter of rule tabulate_ap: every ap.csv (+ provenance, clustering summaries) -> table1, table2."""

from _common import run


def main(snakemake) -> None:
    import pandas as pd

    from soundsup.tables import (
        build_table1,
        build_table2,
        collect_ap,
        load_published,
        records_from_paths,
        write_table,
    )

    # each ap.csv's provenance sidecar (snakemake.input.meta) is read beside it by collect_ap
    long = collect_ap(records_from_paths(list(snakemake.input.ap)), list(snakemake.input.clusters))
    published = load_published(snakemake.input.published)
    dataset = pd.read_csv(snakemake.input.dataset, dtype={"shard": str})
    write_table(build_table1(long, published, dataset), snakemake.output.table1)
    write_table(build_table2(long, published, list(snakemake.params.modes)), snakemake.output.table2)


run(main, snakemake)  # noqa: F821
