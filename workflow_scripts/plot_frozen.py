"""Adapter of rule plot_frozen: svm_layers and svm_lowshot tables -> mAP by layer, mAP by
positives per class."""

from _common import run


def main(snakemake) -> None:
    from soundsup.frozen_report import plot_lowshot, plot_svm_layers, read_table

    plot_svm_layers(read_table(snakemake.input.svm), snakemake.output.svm)
    plot_lowshot(read_table(snakemake.input.lowshot), snakemake.output.lowshot)


run(main, snakemake)  # noqa: F821
