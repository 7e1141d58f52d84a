"""Adapter of rule plot_results: table1 -> mAP vs k (of one feature), and texture vs MFCC."""

from _common import run


def main(snakemake) -> None:
    from soundsup.figures import plot_results

    plot_results(
        snakemake.input.table1,
        map_vs_k_path=snakemake.output.map_vs_k,
        features_path=snakemake.output.features,
        feature=snakemake.params.feature,
    )


run(main, snakemake)  # noqa: F821
