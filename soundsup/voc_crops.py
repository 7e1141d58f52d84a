"""Random square crops of VOC images for a whole batch: sampled on the host, cut on the device.

The crops are philkr/voc-classification's (:func:`sample_crops`): per image, side =
round(crop_size * s) with s ~ U[scale_low, min(scale_high, H / crop_size, W / crop_size)] (an
image smaller than scale_low * crop_size gives its whole shorter side), placed uniformly over
the integer offsets where it fits, mirrored with probability 1/2. The draws come from an
explicit CPU ``torch.Generator`` (4 float64 numbers per image) and the arithmetic is float64
numpy on the host, so CPU and CUDA runs crop alike and a checkpoint needs only the generator.

Each crop is resized to crop_size x crop_size with PyTorch's antialiased bilinear filter, the
one of ``F.interpolate(mode="bilinear", antialias=True)`` (Pillow's): output pixel i of a
side-s crop averages the pixels of the crop around s / c * (i + 1/2) with triangle weights of
half-width max(1, s / c) pixels, normalised within the crop. :class:`CropCutter` has two
implementations of that filter, equal up to float rounding:

- ``loop``: ``F.interpolate`` on each crop (a view of its image). On a CPU the resampling
  arithmetic, not the dispatch of ops, is the cost, and PyTorch's separable kernel on the crop
  alone does the least of it.
- ``batched``: the same filter as two weight matrices per image, (crop_size, S) for the rows
  and for the columns, built on the device from the taps computed on the host, applied by two
  batched matmuls to one gathered S x S window per image (S: the largest side in the batch).
  About 40 dispatched ops per batch whatever its size (the loop: 7 per image), so that a GPU
  does not wait on per-image launches; on a CPU the dense matmuls cost 2-3x the loop.
  It relies on full-fp32 matmuls (PyTorch's default; with TF32 allowed the crops would be
  rounded to ~3 significant digits).

``auto`` picks ``batched`` on CUDA and ``loop`` elsewhere (benchmarks/bench_finetune.py
measures both). Nothing here reads a device tensor on the host, and host-to-device copies go
through pinned memory without blocking, so cutting a batch never synchronises with the GPU.
"""

from __future__ import annotations

import logging
import math
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from soundsup.augment import IMAGENET_MEAN, IMAGENET_STD

log = logging.getLogger(__name__)

METHODS = ("auto", "loop", "batched")


class Crops(NamedTuple):
    """Square crops of a batch (host arrays): ``top``, ``left``, ``side`` (B,) int64, ``mirror`` (B,) bool."""

    top: np.ndarray
    left: np.ndarray
    side: np.ndarray
    mirror: np.ndarray


def sample_crops(
    heights: np.ndarray,
    widths: np.ndarray,
    crop_size: int,
    scale_low: float,
    scale_high: float,
    generator: torch.Generator,
) -> Crops:
    """philkr's random square crops, one per image of height ``heights[i]`` and width ``widths[i]``.

    side = round(crop_size * s), s ~ U[scale_low, min(scale_high, H / crop_size, W / crop_size)]
    (when that maximum is below ``scale_low`` the interval collapses to it, and the side is
    clipped to [1, min(H, W)]); top ~ uniform over 0..H - side, left likewise; mirrored when a
    draw is below 1/2. Draws a (B, 4) float64 block from the CPU ``generator``.
    """
    heights = np.asarray(heights, dtype=np.int64)
    widths = np.asarray(widths, dtype=np.int64)
    if heights.shape != widths.shape or heights.ndim != 1:
        raise ValueError(f"heights {heights.shape} and widths {widths.shape} must be equal 1-d arrays")
    if len(heights) and min(heights.min(), widths.min()) < 1:
        raise ValueError("every image needs a height and a width of at least 1 pixel")
    draws = torch.rand((len(heights), 4), generator=generator, dtype=torch.float64).numpy()
    scale_draw, top_draw, left_draw, mirror_draw = draws.T
    high = np.minimum(np.minimum(scale_high, heights / crop_size), widths / crop_size)
    low = np.minimum(scale_low, high)
    side = np.round(crop_size * (low + (high - low) * scale_draw)).astype(np.int64)
    side = np.minimum(np.maximum(side, 1), np.minimum(heights, widths))
    top = np.minimum(np.floor(top_draw * (heights - side + 1)).astype(np.int64), heights - side)
    left = np.minimum(np.floor(left_draw * (widths - side + 1)).astype(np.int64), widths - side)
    return Crops(top, left, side, mirror_draw < 0.5)


def antialias_taps(side: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """PyTorch's antialiased bilinear weights for resizing a length ``side[b]`` to ``size``.

    For output pixel i: centre = s (i + 1/2) with s = side / size, support = max(s, 1), taps
    j = trunc(centre - support + 1/2) clipped to >= 0 up to trunc(centre + support + 1/2)
    clipped to <= side, weight max(0, 1 - |(j - centre + 1/2) / support|), normalised to sum 1
    (the formula of ATen's ``_compute_indices_min_size_weights_aa``). Returns ``index`` (B,
    size, K) int64 into [0, side) and ``weights`` (B, size, K) float32, K = 2 ceil(max
    support) + 1; taps a pixel does not use have index -1 and weight 0.
    """
    side = np.asarray(side, dtype=np.int64)
    scale = side / size
    support = np.maximum(scale, 1.0)
    n_taps = 2 * math.ceil(support.max()) + 1 if len(side) else 1
    centre = scale[:, None] * (np.arange(size) + 0.5)
    start = np.maximum(np.trunc(centre - support[:, None] + 0.5), 0).astype(np.int64)
    stop = np.minimum(np.trunc(centre + support[:, None] + 0.5).astype(np.int64), side[:, None])
    count = np.clip(stop - start, 0, n_taps)
    index = start[..., None] + np.arange(n_taps)
    used = np.arange(n_taps) < count[..., None]
    weights = np.maximum(1.0 - np.abs((index - centre[..., None] + 0.5) / support[:, None, None]), 0.0)
    weights = np.where(used, weights, 0.0)
    total = weights.sum(axis=-1, keepdims=True)
    weights = np.divide(weights, total, out=np.zeros_like(weights), where=total > 0)
    return np.where(used, index, -1), weights.astype(np.float32)


def _host_to_device(arrays: list[np.ndarray], device: torch.device) -> list[Tensor]:
    """numpy arrays (one dtype) as tensors on ``device``: on CUDA one pinned buffer, one
    non-blocking copy, then views; elsewhere the arrays themselves (no copy)."""
    if device.type != "cuda":
        return [torch.from_numpy(np.ascontiguousarray(array)) for array in arrays]
    flat = torch.from_numpy(np.concatenate([array.reshape(-1) for array in arrays])).pin_memory()
    on_device = flat.to(device, non_blocking=True)
    views, offset = [], 0
    for array in arrays:
        views.append(on_device[offset : offset + array.size].view(array.shape))
        offset += array.size
    return views


def place_pixels(pixels: np.ndarray, device: torch.device) -> Tensor | np.ndarray:
    """The packed images (N, H, W, 3) uint8 where the cutter reads them: on a CUDA device when
    they fit in half of its free memory, else host memory (a tensor sharing ``pixels`` on CPU,
    the array itself for a GPU that lacks room: each batch's window is then gathered on the host)."""
    if device.type != "cuda":
        return torch.from_numpy(pixels)
    free_bytes, _ = torch.cuda.mem_get_info(device)
    if pixels.nbytes <= free_bytes // 2:
        return torch.from_numpy(pixels).to(device)
    log.info("images (%.1f GB) stay in host memory; crop windows are copied per batch", pixels.nbytes / 1e9)
    return pixels


class CropCutter:
    """Random crops of images held in one padded uint8 array, cut as normalised batches.

    ``pixels``: from :func:`place_pixels` (N, H_max, W_max, 3) uint8; ``sizes`` (N, 2) int64
    (H_i, W_i). Calling it with ``rows`` (B,) int64 and a CPU generator returns the batch (B, 3,
    crop_size, crop_size) float32, ImageNet-normalised, and ``rows`` as a tensor on ``device``
    (to index labels there). ``method``: ``'loop'``, ``'batched'`` or ``'auto'`` (module doc).
    """

    def __init__(
        self,
        pixels: Tensor | np.ndarray,
        sizes: np.ndarray,
        crop_size: int,
        scale_low: float,
        scale_high: float,
        device: torch.device,
        method: str = "auto",
    ) -> None:
        if method not in METHODS:
            raise ValueError(f"unknown crop method {method!r}; expected one of {METHODS}")
        self.pixels = pixels
        self.sizes = np.asarray(sizes, dtype=np.int64)
        self.crop_size, self.scale_low, self.scale_high = crop_size, scale_low, scale_high
        self.device = device
        self.method = ("batched" if device.type == "cuda" else "loop") if method == "auto" else method
        # In place, in the order of the per-image transform ((x / 255 - mean) / std), which the
        # loop reproduces bit for bit; augment.normalize fuses it into one addcmul instead.
        self.mean = torch.tensor(IMAGENET_MEAN, device=device).view(1, 3, 1, 1)
        self.std = torch.tensor(IMAGENET_STD, device=device).view(1, 3, 1, 1)
        self._images: list[Tensor] = []  # per-image views for the loop, made once
        if isinstance(pixels, Tensor):
            self._images = [
                pixels[i, :height, :width] for i, (height, width) in enumerate(self.sizes.tolist())
            ]

    def __call__(self, rows: np.ndarray, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        rows = np.asarray(rows, dtype=np.int64)
        sizes = self.sizes[rows]
        crops = sample_crops(
            sizes[:, 0], sizes[:, 1], self.crop_size, self.scale_low, self.scale_high, generator
        )
        cut = self.cut_batched if self.method == "batched" else self.cut_loop
        batch, rows_on_device = cut(rows, crops)
        return batch.div_(255.0).sub_(self.mean).div_(self.std), rows_on_device

    def _patch(self, row: int, top: int, left: int, side: int) -> Tensor:
        """The crop (1, 3, side, side) uint8 of image ``row`` on the device (a view where possible)."""
        if not self._images:
            window = np.ascontiguousarray(self.pixels[row, top : top + side, left : left + side])
            return torch.from_numpy(window).to(self.device).permute(2, 0, 1).unsqueeze(0)
        return self._images[row][top : top + side, left : left + side].permute(2, 0, 1).unsqueeze(0)

    def cut_loop(self, rows: np.ndarray, crops: Crops) -> tuple[Tensor, Tensor]:
        """Crops (B, 3, c, c) float32 in [0, 255], one ``F.interpolate`` per image; and rows on the device."""
        patches = []
        for row, top, left, side, mirror in zip(
            rows.tolist(),
            crops.top.tolist(),
            crops.left.tolist(),
            crops.side.tolist(),
            crops.mirror.tolist(),
            strict=True,
        ):
            patch = self._patch(row, top, left, side).float()
            if side != self.crop_size:
                patch = F.interpolate(
                    patch, size=(self.crop_size,) * 2, mode="bilinear", align_corners=False, antialias=True
                )
            patches.append(patch.flip(-1) if mirror else patch)
        (rows_on_device,) = _host_to_device([rows], self.device)
        return torch.cat(patches), rows_on_device

    def cut_batched(self, rows: np.ndarray, crops: Crops) -> tuple[Tensor, Tensor]:
        """Crops (B, 3, c, c) float32 in [0, 255] in a few batched ops (module doc), rows on the device."""
        batch, size = len(rows), self.crop_size
        window = int(crops.side.max())
        offsets = np.arange(window)
        max_height, max_width = self.pixels.shape[1:3]
        ys = np.minimum(crops.top[:, None] + offsets, max_height - 1)
        xs = np.minimum(crops.left[:, None] + offsets, max_width - 1)
        y_index, y_weights = antialias_taps(crops.side, size)
        mirror = crops.mirror[:, None, None]
        x_index = np.where(mirror, y_index[:, ::-1], y_index)  # a mirrored crop's column i is column c-1-i
        x_weights = np.where(mirror, y_weights[:, ::-1], y_weights)
        # unused taps write their zero weight into a spare index ``window``, cut off below, so
        # that the indices of a row are distinct and the scatter is deterministic; the column
        # matrix is built transposed, (B, S, c), ready for the right-hand product
        y_index, x_index = (np.where(index < 0, window, index) for index in (y_index, x_index))
        x_index, x_weights = x_index.transpose(0, 2, 1), x_weights.transpose(0, 2, 1)
        rows_d, ys_d, xs_d, y_index_d, x_index_d = _host_to_device(
            [rows[:, None, None], ys[:, :, None], xs[:, None, :], y_index, x_index], self.device
        )
        y_weights_d, x_weights_d = _host_to_device([y_weights, x_weights], self.device)
        if isinstance(self.pixels, np.ndarray):
            (patches,) = _host_to_device(
                [self.pixels[rows[:, None, None], ys[:, :, None], xs[:, None, :]]], self.device
            )
        else:
            patches = self.pixels[rows_d, ys_d, xs_d]
        images = patches.permute(0, 3, 1, 2).float()  # (B, 3, S, S)
        row_matrix = torch.zeros((batch, size, window + 1), device=self.device).scatter_(
            2, y_index_d, y_weights_d
        )
        col_matrix = torch.zeros((batch, window + 1, size), device=self.device).scatter_(
            1, x_index_d, x_weights_d
        )
        crops_out = row_matrix[:, None, :, :window] @ images @ col_matrix[:, None, :window]
        rows_d = rows_d.view(-1)
        return crops_out, rows_d
