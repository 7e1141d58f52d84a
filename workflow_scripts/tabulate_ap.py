"""Adapter of rule tabulate_ap: every ap.csv -> table1 (mAP per model) and table2 (per class)."""

import itertools

from _common import run


def main(snakemake) -> None:
    import pandas as pd

    from soundsup.io import write_text
    from soundsup.tables import build_table1, build_table2, collect_ap, load_published

    combos = itertools.product(snakemake.params.models, snakemake.params.modes, snakemake.params.seeds)
    records = [(model, mode, seed, path) for (model, mode, seed), path in zip(combos, snakemake.input.ap, strict=True)]
    long = collect_ap(records)
    published = load_published()
    table1 = build_table1(long, published)
    table2 = pd.concat([build_table2(long, published, mode=mode) for mode in snakemake.params.modes], ignore_index=True)
    write_text(snakemake.output.table1, table1.round(2).to_csv(index=False))
    write_text(snakemake.output.table2, table2.round(2).to_csv(index=False))


run(main, snakemake)  # noqa: F821
