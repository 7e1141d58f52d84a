"""Adapter of rules fetch_audioset_csv and fetch_ontology: one URL to one file, checksummed."""

from _common import run


def main(snakemake) -> None:
    from soundsup.fetch import fetch_url

    fetch_url(snakemake.params.url, snakemake.output[0], sha256=snakemake.params.sha256)


run(main, snakemake)  # noqa: F821
