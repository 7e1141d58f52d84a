"""Adapter of rule plot_results: table1 -> mAP vs k, and texture vs MFCC."""

from _common import run


def main(snakemake) -> None:
    import pandas as pd

    from soundsup.figures import plot_feature_comparison, plot_map_vs_k

    table1 = pd.read_csv(snakemake.input.table1)
    plot_map_vs_k(table1, snakemake.output.map_vs_k, feature="texture")
    plot_feature_comparison(table1, snakemake.output.features)


run(main, snakemake)  # noqa: F821
