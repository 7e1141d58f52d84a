"""Adapter of rule plot_training: pretext validation accuracy per epoch, every model."""

import json
from pathlib import Path

from _common import run


def main(snakemake) -> None:
    from soundsup.figures import plot_pretext_curves

    histories = {}
    for path in snakemake.input.histories:
        feature, k, arch = Path(path).parts[-4:-1]
        lines = Path(path).read_text().splitlines()
        histories[f"{feature}-{k}-{arch}"] = [json.loads(line) for line in lines if line.strip()]
    plot_pretext_curves(histories, snakemake.output[0])


run(main, snakemake)  # noqa: F821
