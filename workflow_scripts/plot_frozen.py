"""Adapter of rule plot_frozen: svm_layers and svm_lowshot tables -> mAP by layer, mAP by
positives per class."""

from _common import run


def main(snakemake) -> None:
    from soundsup.frozen_report import plot_frozen

    inputs, outputs = snakemake.input, snakemake.output
    plot_frozen(inputs.svm, inputs.lowshot, outputs.svm, outputs.lowshot)


run(main, snakemake)  # noqa: F821
