"""Adapter of rule tabulate_ap: every ap.csv -> table1 (mAP per model) and table2 (per class)."""

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

    long = collect_ap(records_from_paths(snakemake.input.ap))
    published = load_published()
    table2 = pd.concat(
        [build_table2(long, published, mode=mode) for mode in snakemake.params.modes], ignore_index=True
    )
    write_table(build_table1(long, published), snakemake.output.table1)
    write_table(table2, snakemake.output.table2)


run(main, snakemake)  # noqa: F821
