"""Adapter of rule plot_activations: the frames that most excite chosen filters (Figure 2)."""

from _common import run

MAX_IMAGES = 4000


def main(snakemake) -> None:
    import numpy as np

    from soundsup.figures import (
        FrameInputs,
        max_activations,
        most_selective_filters,
        plot_top_activations,
        strongest_images,
    )
    from soundsup.models import conv_layers, load_model
    from soundsup.shards import ShardFrames

    frames = ShardFrames(snakemake.input.frames)  # memory-mapped: rows are read a batch at a time
    if len(frames) > MAX_IMAGES:
        frames = frames.subset(np.linspace(0, len(frames) - 1, MAX_IMAGES).astype(int))
    model, _ = load_model(snakemake.input.model)
    model.eval()
    layers = conv_layers(model)
    if snakemake.params.layer not in layers:
        raise KeyError(
            f"figures.activation_layer={snakemake.params.layer!r}; this model has {sorted(layers)}"
        )
    activations = max_activations(
        model, layers[snakemake.params.layer], FrameInputs(frames, snakemake.params.crop_size)
    )
    filters = most_selective_filters(activations, n_filters=snakemake.params.n_filters)
    top, values = strongest_images(activations, filters)
    title = f"{snakemake.params.model} {snakemake.params.layer}: top-activating frames"
    plot_top_activations(frames, top, snakemake.output[0], title=title, values=values)


run(main, snakemake)  # noqa: F821
