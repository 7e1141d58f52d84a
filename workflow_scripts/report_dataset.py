"""Adapter of rule report_dataset: requested, downloaded, failed by reason, pairs obtained."""

from _common import run


def main(snakemake) -> None:
    from soundsup.dataset_report import write_dataset_report

    inputs = snakemake.input
    write_dataset_report(
        inputs.selection, inputs.manifests, inputs.indices, inputs.failures, snakemake.output[0]
    )


run(main, snakemake)  # noqa: F821
