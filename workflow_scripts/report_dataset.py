"""Adapter of rule report_dataset: requested, downloaded, failed by reason, pairs obtained."""

from _common import run


def main(snakemake) -> None:
    import pandas as pd

    from soundsup.dataset_report import dataset_summary
    from soundsup.io import write_text

    selection = pd.read_parquet(snakemake.input.selection)
    manifests = [pd.read_parquet(path) for path in snakemake.input.manifests]
    indices = [pd.read_parquet(path) for path in snakemake.input.indices]
    failures = [pd.read_parquet(path) for path in snakemake.input.failures]
    summary = dataset_summary(selection, manifests, indices, failures)
    write_text(snakemake.output[0], summary.to_csv(index=False))


run(main, snakemake)  # noqa: F821
