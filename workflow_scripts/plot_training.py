"""Adapter of rule plot_training: pretext validation accuracy per epoch, every model, and chance."""

from pathlib import Path

from _common import run


def main(snakemake) -> None:
    from soundsup.figures import plot_pretext_curves, read_history

    histories, n_clusters = {}, {}
    for path in snakemake.input.histories:
        feature, k, arch = Path(path).parts[-4:-1]  # results/pretext/{feature}/k{k}/{arch}/history.jsonl
        name = f"{feature}-{k}-{arch}"
        histories[name] = read_history(path)
        n_clusters[name] = int(k.removeprefix("k"))
    plot_pretext_curves(histories, snakemake.output[0], n_clusters=n_clusters)


run(main, snakemake)  # noqa: F821
