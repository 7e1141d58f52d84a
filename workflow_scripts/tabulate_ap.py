"""Adapter of rule tabulate_ap: every ap.csv (+ provenance, clustering summaries) -> table1, table2."""

from _common import run


def main(snakemake) -> None:
    from soundsup.tables import tabulate

    tabulate(
        runs=snakemake.params.runs,
        ap_paths=list(snakemake.input.ap),
        cluster_summaries=list(snakemake.input.clusters),
        published_path=snakemake.input.published,
        dataset_path=snakemake.input.dataset,
        table1_path=snakemake.output.table1,
        table2_path=snakemake.output.table2,
        modes=snakemake.params.modes,
    )


run(main, snakemake)  # noqa: F821
