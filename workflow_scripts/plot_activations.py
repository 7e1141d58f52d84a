"""Adapter of rule plot_activations: the frames that most excite chosen filters (Figure 2)."""

from _common import run


def main(snakemake) -> None:
    from soundsup.activations import plot_activations

    params = snakemake.params
    plot_activations(
        list(snakemake.input.frames),
        snakemake.input.model,
        snakemake.output[0],
        layer=params.layer,
        n_filters=params.n_filters,
        crop_size=params.crop_size,
        model_name=params.model,
    )


run(main, snakemake)  # noqa: F821
