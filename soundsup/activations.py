"""Figure 2 of the paper: the frames that most excite chosen filters of a pretext network.

The only figure that runs a network, so the only figure module that imports torch: the
others (:mod:`soundsup.figures`) draw tables and frames and start without it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure
from torch import nn
from torch.nn import functional

from soundsup.augment import normalize
from soundsup.canvas import new_figure, save_png
from soundsup.figures import FigureError, _check_frames, _mosaic


def to_model_input(frames_uint8: np.ndarray, size: int) -> torch.Tensor:
    """(N, S, S, 3) uint8 frames -> (N, 3, size, size) float32, bilinear-resized, ImageNet-normalised."""
    _check_frames(frames_uint8, "frames_uint8")
    images = torch.from_numpy(np.ascontiguousarray(frames_uint8)).permute(0, 3, 1, 2).float() / 255.0
    if images.shape[-2:] != (size, size):
        images = functional.interpolate(
            images, size=(size, size), mode="bilinear", align_corners=False, antialias=True
        )
    return normalize(images)


class FrameInputs:
    """(N, S, S, 3) uint8 frames as the model input (N, 3, size, size) float32 of
    :func:`to_model_input`, converted one slice at a time, so that a pass over many frames
    holds one batch. ``frames``: an array, or :class:`soundsup.shards.ShardFrames`, which reads
    the rows of each slice from the shard files."""

    ndim = 4

    def __init__(self, frames, size: int) -> None:
        _check_frames(frames)
        self.frames = frames
        self.size = size

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return (len(self.frames), 3, self.size, self.size)

    def __len__(self) -> int:
        return len(self.frames)

    def __getitem__(self, index: slice) -> torch.Tensor:
        return to_model_input(np.asarray(self.frames[index]), self.size)


class _StopForward(Exception):
    """Raised by the hook once the watched layer has run, so the rest of the network is skipped."""


def max_activations(
    model: nn.Module, layer: nn.Module, images: torch.Tensor | FrameInputs, batch_size: int = 64
) -> np.ndarray:
    """Per image and channel, the spatial maximum of ``layer``'s output: (N, C) float32.

    ``images``: (N, 3, H, W) float, already normalised (a tensor, or :class:`FrameInputs`,
    converted a batch at a time). Runs on the device of ``model``'s parameters, in eval mode and
    without gradients; the model's mode is restored afterwards. The forward pass stops right
    after ``layer``.
    """
    if images.ndim != 4 or images.shape[1] != 3:
        raise FigureError(f"images must be (N, 3, H, W), got shape {tuple(images.shape)}")
    device = next(model.parameters()).device
    captured: list[torch.Tensor] = []

    def hook(_module, _inputs, output):
        captured.append(output.detach().float().amax(dim=(2, 3)).cpu())
        raise _StopForward

    was_training = model.training
    handle = layer.register_forward_hook(hook)
    model.eval()
    try:
        with torch.no_grad():
            for start in range(0, len(images), batch_size):
                try:
                    model(images[start : start + batch_size].to(device))
                except _StopForward:
                    continue
                raise FigureError("the given layer did not run in the model's forward pass")
    finally:
        handle.remove()
        model.train(was_training)
    return torch.cat(captured).numpy() if captured else np.zeros((0, 0), dtype=np.float32)


def strongest_images(
    activations: np.ndarray, filters: Sequence[int], top: int = 9
) -> tuple[dict[int, np.ndarray], dict[int, np.ndarray]]:
    """For each filter (a column of ``activations``, (N, C) from :func:`max_activations`), the
    indices of the ``top`` images with the highest activation, highest first (ties: lower index
    first), and those activations: two dicts filter -> (top,) int64 and (top,) float32."""
    n_channels = activations.shape[1]
    indices, values = {}, {}
    for index in filters:
        if not 0 <= int(index) < n_channels:
            raise FigureError(f"filter {index} out of range: the layer has {n_channels} channels")
        column = activations[:, int(index)]
        order = np.argsort(-column, kind="stable")[: min(top, len(column))].astype(np.int64)
        indices[int(index)], values[int(index)] = order, column[order].astype(np.float32)
    return indices, values


def most_selective_filters(activations: np.ndarray, n_filters: int = 6) -> list[int]:
    """The ``n_filters`` most selective columns of ``activations`` (N, C): highest variance across
    images (ties: lower index first). Deterministic for fixed inputs."""
    variance = activations.astype(np.float64).var(axis=0)
    order = np.argsort(-variance, kind="stable")
    return [int(index) for index in order[:n_filters]]


def top_activations(
    model: nn.Module,
    layer: nn.Module,
    images: torch.Tensor | FrameInputs,
    filters: Sequence[int],
    top: int = 9,
    batch_size: int = 64,
) -> dict[int, np.ndarray]:
    """For each filter (channel of ``layer``), the indices (top,) int64 of the ``top`` images
    with the highest spatial-max activation (:func:`strongest_images` of :func:`max_activations`)."""
    return strongest_images(max_activations(model, layer, images, batch_size), filters, top)[0]


def choose_filters(
    model: nn.Module,
    layer: nn.Module,
    images: torch.Tensor | FrameInputs,
    n_filters: int = 6,
    batch_size: int = 64,
) -> list[int]:
    """The ``n_filters`` most selective channels of ``layer`` (:func:`most_selective_filters` of
    :func:`max_activations`)."""
    return most_selective_filters(max_activations(model, layer, images, batch_size), n_filters)


def _activation_format(values: Sequence[np.ndarray]) -> str:
    """One format for every activation of a figure: three significant digits on the largest."""
    largest = max((float(np.abs(v).max()) for v in values if np.size(v)), default=1.0)
    decimals = min(3, max(0, 2 - math.floor(math.log10(largest)))) if largest > 0 else 2
    return f"{{:.{decimals}f}}"


def plot_top_activations(
    images_uint8: np.ndarray,
    top: Mapping[int, np.ndarray],
    path: str | Path,
    title: str,
    values: Mapping[int, np.ndarray],
) -> None:
    """Write :func:`top_activations_figure` as a PNG."""
    save_png(top_activations_figure(images_uint8, top, title, values), path)


def plot_activations(
    frames_paths: Sequence[str | Path],
    model_path: str | Path,
    path: str | Path,
    layer: str,
    n_filters: int,
    crop_size: int,
    model_name: str,
    max_images: int = 4000,
) -> None:
    """Figure 2 of a pretext model: the frames that most excite the ``n_filters`` most selective
    filters of ``layer``, from at most ``max_images`` frames of the shards (evenly spaced)."""
    from soundsup.models import conv_layers, load_model
    from soundsup.shards import ShardFrames

    frames = ShardFrames(frames_paths)  # memory-mapped: rows are read a batch at a time
    if len(frames) > max_images:
        frames = frames.subset(np.linspace(0, len(frames) - 1, max_images).astype(int))
    model, _ = load_model(model_path)
    model.eval()
    layers = conv_layers(model)
    if layer not in layers:
        raise KeyError(f"figures.activation_layer={layer!r}; this model has {sorted(layers)}")
    activations = max_activations(model, layers[layer], FrameInputs(frames, crop_size))
    filters = most_selective_filters(activations, n_filters=n_filters)
    top, values = strongest_images(activations, filters)
    title = f"{model_name} {layer}: top-activating frames"
    plot_top_activations(frames, top, path, title=title, values=values)


def top_activations_figure(
    images_uint8: np.ndarray, top: Mapping[int, np.ndarray], title: str, values: Mapping[int, np.ndarray]
) -> Figure:
    """Paper Fig. 2: for each filter in ``top``, a square grid (3x3 for 9) of its top images,
    each with its activation printed in its lower left corner.

    ``images_uint8``: (N, S, S, 3) uint8, indexed by the arrays in ``top`` (an array or
    :class:`soundsup.shards.ShardFrames`: only the frames shown are read); ``values``: per
    filter, the activations (top,) float of those images, as :func:`strongest_images` gives them.
    """
    _check_frames(images_uint8, "images_uint8")
    if not top:
        raise FigureError("no filters to show")
    count = max(len(indices) for indices in top.values())
    side = max(1, math.ceil(math.sqrt(count)))
    columns = min(3, len(top))
    rows = math.ceil(len(top) / columns)
    figure = new_figure(3.2 * columns, 3.4 * rows + 0.6)
    figure.suptitle(f"{title}\n(number on a frame: the filter's largest response in it)")
    height, width = images_uint8.shape[1:3]
    number = _activation_format([np.asarray(values.get(f, ()), dtype=float) for f in top])
    gutter = 2
    blank = np.full(images_uint8.shape[1:], 255, dtype=np.uint8)
    for panel, (filter_index, indices) in enumerate(top.items()):
        indices = np.asarray(indices, dtype=np.int64)
        if len(indices) and (indices.min() < 0 or indices.max() >= len(images_uint8)):
            raise FigureError(
                f"filter {filter_index}: image index out of range for {len(images_uint8)} images"
            )
        shown = np.asarray(values.get(filter_index, ()), dtype=float)
        if shown.shape != indices.shape:
            raise FigureError(
                f"filter {filter_index}: {len(indices)} images but {shown.size} activation values"
            )
        tiles = [images_uint8[index] for index in indices] + [blank] * (side * side - len(indices))
        axes = figure.add_subplot(rows, columns, panel + 1)
        axes.imshow(_mosaic(np.stack(tiles), side, gutter), interpolation="nearest")
        for rank, value in enumerate(shown):
            row, column = divmod(rank, side)
            axes.text(
                column * (width + gutter) + 0.04 * width,
                row * (height + gutter) + 0.96 * height,
                number.format(value),
                ha="left", va="bottom", fontsize=7, color="white",
                bbox={"boxstyle": "square,pad=0.15", "facecolor": "black", "alpha": 0.6, "linewidth": 0},
            )  # fmt: skip
        axes.set_title(f"filter {filter_index}", fontsize=10)
        axes.set_axis_off()
    return figure
