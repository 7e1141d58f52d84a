"""VOC fine-tuning iterations: soundsup's loop against the per-image loop it replaced.

Both run the finetune_voc rule's iteration on the same images (VOC-sized, 500 x 375 and
375 x 500) with the same model, protocol (fc6-fc8 redrawn, batch norm frozen), SGD step,
gradient clipping and autocast. They differ in the data path:

- ``per-image`` (the previous code, kept here verbatim as the baseline): the images as a list
  of tensors, each batch's crops drawn and cut one image at a time in Python (a slice, a float
  copy and ``F.interpolate`` per image, the mean/std tensors made per batch), the batch order
  a Python list, the labels indexed with it (a blocking host-to-device copy each step on CUDA).
- ``soundsup``: the images in one padded uint8 tensor on the device, crops sampled in numpy
  and cut by :class:`soundsup.voc_crops.CropCutter` (``auto``: ``F.interpolate`` per image on
  a CPU, the batched matmul cutter on CUDA), the order from ``EpochOrder``, labels on the device.
- ``soundsup batched`` (CPU runs only): the batched cutter that CUDA uses, run on the CPU, to
  show its op count and what it costs there.

Reported per (arch, mode): milliseconds per iteration (host wall time, synchronised with the
device at the end of each timed block, and the process's CPU time; the least disturbed of
interleaved rounds, as the machine may be shared), the data path alone (crops and labels, no
model) and the ops dispatched per iteration (a ``TorchDispatchMode``
counting every ATen op of one whole iteration, backward and optimizer included; on CUDA also
those that touch the GPU). Run:

    python benchmarks/bench_finetune.py                  # CPU, the paper's sizes (227 px, fc 4096)
    python benchmarks/bench_finetune.py --device cuda    # the same on a GPU
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor, nn
from torch.utils._python_dispatch import TorchDispatchMode

from soundsup.device import autocast_dtype, memory_format, retain_freed_host_memory, set_threads
from soundsup.finetune import (
    EpochOrder,
    FinetuneConfig,
    _forward,
    _optimizer,
    masked_bce,
    prepare_model,
    set_training_mode,
)
from soundsup.models import build_model
from soundsup.voc import pack_images
from soundsup.voc_crops import IMAGENET_MEAN, IMAGENET_STD, CropCutter, place_pixels

CASES = (("alexnet", "head"), ("alexnet", "all"), ("resnet18", "head"), ("resnet18", "all"))


def voc_like_images(n_images: int, max_side: int, seed: int) -> tuple[list[np.ndarray], np.ndarray]:
    """``n_images`` natural-looking RGB images, landscape and portrait at VOC's 4:3, longer side
    ``max_side``; labels (N, 20) in {1, -1, 0}."""
    rng = np.random.default_rng(seed)
    short = round(max_side * 0.75)
    images = []
    for index in range(n_images):
        height, width = (short, max_side) if index % 2 == 0 else (max_side, short)
        coarse = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)
        field = np.asarray(Image.fromarray(coarse).resize((width, height), Image.BICUBIC), np.float32)
        images.append(np.clip(field + rng.normal(0, 12, field.shape), 0, 255).astype(np.uint8))
    labels = rng.choice(np.array([1, -1, -1, -1, 0], np.int8), (n_images, 20))
    return images, labels


# --- the per-image data path soundsup had before (the baseline) ----------------------------


def old_sample_crops(shapes, config: FinetuneConfig, generator: torch.Generator):
    draws = torch.rand((len(shapes), 4), generator=generator, dtype=torch.float64).tolist()
    crops = []
    for (height, width), (scale_draw, top_draw, left_draw, mirror_draw) in zip(shapes, draws, strict=True):
        high = min(config.scale_high, height / config.crop_size, width / config.crop_size)
        low = min(config.scale_low, high)
        side = round(config.crop_size * (low + (high - low) * scale_draw))
        side = min(max(side, 1), height, width)
        top = min(int(top_draw * (height - side + 1)), height - side)
        left = min(int(left_draw * (width - side + 1)), width - side)
        crops.append((top, left, side, mirror_draw < 0.5))
    return crops


def old_crop_batch(images: Sequence[Tensor], crops, crop_size: int) -> Tensor:
    out = []
    for image, (top, left, side, mirror) in zip(images, crops, strict=True):
        patch = image[top : top + side, left : left + side].permute(2, 0, 1).unsqueeze(0).float()
        if side != crop_size:
            patch = F.interpolate(
                patch, size=(crop_size, crop_size), mode="bilinear", align_corners=False, antialias=True
            )
        out.append(patch.flip(-1) if mirror else patch)
    batch = torch.cat(out).div_(255.0)
    mean = torch.tensor(IMAGENET_MEAN, device=batch.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=batch.device).view(1, 3, 1, 1)
    return (batch - mean) / std


def old_batch_indices(n_items: int, batch_size: int, generator: torch.Generator) -> Iterator[list[int]]:
    pending: list[int] = []
    while True:
        while len(pending) < batch_size:
            pending.extend(torch.randperm(n_items, generator=generator).tolist())
        yield pending[:batch_size]
        pending = pending[batch_size:]


def per_image_batches(images, labels, config: FinetuneConfig, device: torch.device) -> Callable:
    tensors = [torch.from_numpy(image).to(device) for image in images]
    labels_on_device = torch.from_numpy(labels).to(device)
    shapes = [tuple(image.shape[:2]) for image in images]
    generator = torch.Generator().manual_seed(0)
    batches = old_batch_indices(len(tensors), config.batch_size, generator)

    def next_batch() -> tuple[Tensor, Tensor]:
        indices = next(batches)
        crops = old_sample_crops([shapes[i] for i in indices], config, generator)
        batch = old_crop_batch([tensors[i] for i in indices], crops, config.crop_size)
        return batch, labels_on_device[indices]

    return next_batch


# --- soundsup's data path -------------------------------------------------------------------


def soundsup_batches(images, labels, config: FinetuneConfig, device: torch.device, method: str) -> Callable:
    packed = pack_images(images)
    cutter = CropCutter(
        place_pixels(packed.pixels, device), packed.sizes,
        config.crop_size, config.scale_low, config.scale_high, device, method,
    )  # fmt: skip
    labels_on_device = torch.from_numpy(labels).to(device)
    order = EpochOrder(len(packed), config.batch_size, 0)
    generator = torch.Generator().manual_seed(0)
    state = {"iteration": 0}

    def next_batch() -> tuple[Tensor, Tensor]:
        state["iteration"] += 1
        batch, rows = cutter(order.rows(state["iteration"]), generator)
        return batch, labels_on_device[rows]

    return next_batch


# --- the shared step, the counting and the timing -------------------------------------------


def training_step(arch: str, mode: str, config: FinetuneConfig, fc_width: int, device: torch.device):
    """The rule's model (seeded), optimizer and step for (arch, mode): step(batch, labels) -> loss."""
    torch.manual_seed(0)
    model = build_model(arch, 1000, fc_width)
    prepare_model(model, mode, config, torch.Generator().manual_seed(0))
    amp = autocast_dtype(device, config.precision)
    model.to(device=device, memory_format=memory_format(device, amp))
    optimizer = _optimizer(model, config)
    trainable = [p for p in model.parameters() if p.requires_grad]
    set_training_mode(model, mode, config.batchnorm)

    def step(batch: Tensor, labels: Tensor) -> Tensor:
        loss = masked_bce(_forward(model, batch, device, amp), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(trainable, config.clip_grad_norm)
        optimizer.step()
        return loss.detach()

    return step


class OpCounter(TorchDispatchMode):
    """Counts the ATen ops dispatched inside it, and those with a tensor on a non-CPU device."""

    def __init__(self) -> None:
        super().__init__()
        self.total = self.on_device = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        result = func(*args, **(kwargs or {}))
        self.total += 1
        tensors = [
            t for t in torch.utils._pytree.tree_leaves((args, kwargs, result)) if isinstance(t, Tensor)
        ]
        self.on_device += any(t.device.type != "cpu" for t in tensors)
        return result


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def count_ops(next_batch: Callable, step: Callable | None) -> tuple[int, int]:
    with OpCounter() as counter:
        batch, labels = next_batch()
        if step is not None:
            step(batch, labels)
    return counter.total, counter.on_device


def time_block(
    next_batch: Callable, step: Callable | None, iterations: int, device: torch.device
) -> tuple[float, float]:
    """(wall, process CPU) milliseconds per iteration over ``iterations`` (the data path only
    when ``step`` is None)."""
    synchronize(device)
    start, start_cpu = time.perf_counter(), time.process_time()
    for _ in range(iterations):
        batch, labels = next_batch()
        if step is not None:
            step(batch, labels)
    synchronize(device)
    return 1000 * (time.perf_counter() - start) / iterations, 1000 * (
        time.process_time() - start_cpu
    ) / iterations


def measure_case(arch, mode, images, labels, config, arguments, device) -> dict[str, dict]:
    step = training_step(arch, mode, config, arguments.fc_width, device)
    pipelines = {"per-image": per_image_batches(images, labels, config, device)}
    pipelines["soundsup"] = soundsup_batches(images, labels, config, device, "auto")
    if device.type == "cpu":
        pipelines["soundsup batched"] = soundsup_batches(images, labels, config, device, "batched")
    timings = {name: {"ms": [], "cpu_ms": [], "data_ms": []} for name in pipelines}
    results = {}
    for name, next_batch in pipelines.items():
        time_block(next_batch, step, 1, device)  # warm-up: allocator, oneDNN/cuDNN plans
        results[name] = dict(zip(("ops", "device_ops"), count_ops(next_batch, step), strict=True))
        results[name]["data_ops"] = count_ops(next_batch, None)[0]
    for _ in range(arguments.rounds):  # interleaved, so that drifting load hits every pipeline alike
        for name, next_batch in pipelines.items():
            wall, cpu = time_block(next_batch, step, arguments.iterations, device)
            timings[name]["ms"].append(wall)
            timings[name]["cpu_ms"].append(cpu)
            timings[name]["data_ms"].append(time_block(next_batch, None, arguments.iterations, device)[0])
    for name, timing in timings.items():  # the least disturbed round (the machine may be shared)
        results[name].update({key: min(values) for key, values in timing.items()})
    return results


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--cases", nargs="+", default=[f"{a}-{m}" for a, m in CASES])
    parser.add_argument("--images", type=int, default=48)
    parser.add_argument("--max-side", type=int, default=500)
    parser.add_argument("--crop", type=int, default=227)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--fc-width", type=int, default=4096)
    parser.add_argument("--iterations", type=int, default=3, help="timed iterations per block")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--precision", default="auto", choices=("auto", "bf16", "fp32"))
    arguments = parser.parse_args()

    device = torch.device(arguments.device)
    set_threads(arguments.threads)
    retain_freed_host_memory()
    config = FinetuneConfig(
        crop_size=arguments.crop, batch_size=arguments.batch_size, precision=arguments.precision
    )
    images, labels = voc_like_images(arguments.images, arguments.max_side, seed=0)
    amp = autocast_dtype(device, config.precision)
    precision = "bf16 autocast" if amp else "fp32"
    print(
        f"{device}, {arguments.threads} threads, {precision}: {arguments.images} images of "
        f"{arguments.max_side} px, {arguments.crop}-px crops, batch {arguments.batch_size}, fc width "
        f"{arguments.fc_width}; {arguments.rounds} rounds of {arguments.iterations} iterations"
    )
    summary = []
    for case in arguments.cases:
        arch, mode = case.split("-")
        results = measure_case(arch, mode, images, labels, config, arguments, device)
        for name, result in results.items():
            on_device = f", {result['device_ops']} on the GPU" if device.type == "cuda" else ""
            print(
                f"{arch:8s} {mode:4s} {name:16s} {result['ms']:9.1f} ms/it (CPU {result['cpu_ms']:9.1f} ms; "
                f"data path {result['data_ms']:7.1f} ms, {result['data_ops']:4d} ops)  "
                f"{result['ops']:5d} ops/it{on_device}"
            )
        summary.append(f"{arch} {mode} " + compare(results["per-image"], results["soundsup"]))
        if "soundsup batched" in results:
            summary[-1] += (
                " (batched cutter: " + compare(results["per-image"], results["soundsup batched"]) + ")"
            )
    print(
        f"bench_finetune ({device}, {arguments.crop} px, batch {arguments.batch_size}): " + "; ".join(summary)
    )


def compare(before: dict, after: dict) -> str:
    return (
        f"{before['ops']} -> {after['ops']} ops/it ({before['ops'] / after['ops']:.1f}x fewer), "
        f"{before['ms']:.0f} -> {after['ms']:.0f} ms/it ({before['ms'] / after['ms']:.2f}x)"
    )


if __name__ == "__main__":
    main()
