"""Training throughput: soundsup's pretext pipeline against the conventional one.

Both train the same seeded AlexNet (or ResNet-18) with AdamW and a one-cycle schedule, at the
same batch size, frame size and crop size, on the same frames. Each pipeline is two choices:

- data path. ``memory`` (soundsup): the frames held as one uint8 tensor, batches gathered by
  index and augmented on the training device (soundsup.augment: random resized crop, flip,
  colour jitter, normalise). ``jpeg`` (conventional): the frames written as JPEG files, read by
  torchvision ImageFolder with PIL transforms (RandomResizedCrop, RandomHorizontalFlip,
  ColorJitter, ToTensor, Normalize) in a DataLoader with worker processes.
- training step. ``soundsup``: soundsup.pretext.build_training and train_step as the
  train_pretext rule runs them: fused AdamW, bf16 autocast and channels-last where the
  hardware multiplies bf16 natively (soundsup.device.autocast_dtype), glibc malloc told to
  keep freed memory (soundsup.device.retain_freed_host_memory). ``conventional``: the default
  fp32 loop (torch.optim.AdamW with its defaults, contiguous tensors, default allocator).

The whole comparison is soundsup (memory + soundsup step) against the baseline (jpeg +
conventional step); the two mixed pipelines show what each half contributes, and the data
paths are also timed alone (no model). Every pipeline runs in a process of its own (the
allocator setting is process-wide), rounds interleaved so that drifting load hits all alike.
Reported: training images/s and the share of step time spent waiting for data (with CUDA,
measured with synchronisation around the data part and the step). Run:

    python benchmarks/bench_train.py                 # CPU: AlexNet, 72-px frames, 64-px crops
    python benchmarks/bench_train.py --device cuda   # AlexNet and ResNet-18, 256 -> 224 px
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader
from torchvision import datasets, transforms

from soundsup.augment import IMAGENET_MEAN, IMAGENET_STD
from soundsup.device import autocast_dtype, memory_format, retain_freed_host_memory, set_threads
from soundsup.models import build_model
from soundsup.pretext import (
    PretextConfig,
    build_training,
    fetch_batch,
    place_frames,
    train_inputs,
    train_step,
)

N_CLASSES = 10
TOTAL_STEPS = 10_000  # a real run's schedule: the timed steps sit in its warm-up
# (name, data path, training step); step None times the data path alone
PIPELINES = (
    ("baseline", "jpeg", "conventional"),
    ("soundsup", "memory", "soundsup"),
    ("soundsup data only", "memory", "conventional"),
    ("soundsup step only", "jpeg", "soundsup"),
    ("data: memory", "memory", None),
    ("data: jpeg", "jpeg", None),
)


def synthetic_frames(n_frames: int, size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(n, size, size, 3) uint8 natural-looking frames (smooth colour fields + grain), targets (n,)."""
    rng = np.random.default_rng(seed)
    frames = np.empty((n_frames, size, size, 3), np.uint8)
    for i in range(n_frames):
        coarse = rng.integers(0, 256, (6, 6, 3), dtype=np.uint8)
        field = np.asarray(Image.fromarray(coarse).resize((size, size), Image.BICUBIC), np.float32)
        frames[i] = np.clip(field + rng.normal(0, 12, field.shape), 0, 255).astype(np.uint8)
    return frames, rng.integers(0, N_CLASSES, n_frames)


def write_jpeg_folder(frames: np.ndarray, targets: np.ndarray, root: Path) -> None:
    """ImageFolder layout root/class_k/i.jpg, JPEG quality 90."""
    for i, (frame, target) in enumerate(zip(frames, targets, strict=True)):
        folder = root / f"class_{target:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(frame).save(folder / f"{i:06d}.jpg", quality=90)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# --- the two training steps ---------------------------------------------------------------


def soundsup_step(arch: str, config: PretextConfig, device: torch.device):
    """The train_pretext rule's model, optimizer, schedule and step."""
    retain_freed_host_memory()
    amp = autocast_dtype(device, config.precision)
    model, optimizer, scheduler = build_training(arch, N_CLASSES, config, TOTAL_STEPS, 0, device)
    model.train()

    def step(x, y):
        loss, _ = train_step(model, x, y, optimizer, scheduler, amp, config.clip_grad_norm)
        return loss

    return step, amp


def conventional_step(arch: str, config: PretextConfig, device: torch.device):
    """The textbook loop: fp32, default AdamW, the default memory format and allocator."""
    torch.manual_seed(0)
    model = build_model(arch, N_CLASSES, config.fc_width).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr_max, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=config.lr_max, total_steps=TOTAL_STEPS)
    model.train()

    def step(x, y):
        loss = torch.nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if config.clip_grad_norm is not None:  # the same clipping as the rule's step
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.clip_grad_norm)
        optimizer.step()
        scheduler.step()
        return loss

    return step, None


# --- the two data paths -------------------------------------------------------------------


def memory_batches(frames: np.ndarray, targets: np.ndarray, config, device, amp):
    frames_tensor = place_frames(frames, device)
    targets_tensor = torch.as_tensor(targets, dtype=torch.int64).to(device)
    shuffle = torch.Generator().manual_seed(0)
    augment = torch.Generator().manual_seed(1)

    def next_batch():
        rows = torch.randperm(len(frames), generator=shuffle)[: config.batch_size]
        x = train_inputs(fetch_batch(frames_tensor, rows, device), config, augment, amp)
        return x, targets_tensor[rows.to(device)]

    return next_batch


def jpeg_batches(root: Path, config: PretextConfig, device: torch.device, layout, workers: int):
    transform = transforms.Compose(
        [
            transforms.RandomResizedCrop(config.crop_size, scale=(config.min_scale, 1.0)),
            transforms.RandomHorizontalFlip(),
            transforms.ColorJitter(config.color_jitter, config.color_jitter, config.color_jitter),
            transforms.ToTensor(),
            transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD),
        ]
    )
    loader = DataLoader(
        datasets.ImageFolder(str(root), transform=transform),
        batch_size=config.batch_size,
        shuffle=True,
        drop_last=True,
        num_workers=workers,
        pin_memory=device.type == "cuda",
        persistent_workers=workers > 0,
        generator=torch.Generator().manual_seed(0),
    )
    state = {"iterator": iter(loader)}

    def next_batch():
        try:
            x, y = next(state["iterator"])
        except StopIteration:
            state["iterator"] = iter(loader)
            x, y = next(state["iterator"])
        x = x.to(device, non_blocking=True).contiguous(memory_format=layout)
        return x, y.to(device, non_blocking=True)

    return next_batch


# --- one pipeline, in its own process -------------------------------------------------------


def timed_training(next_batch, step, device: torch.device, batch_size: int, warmup: int, steps: int) -> dict:
    """Run warmup + steps training steps; time the data part and the whole step."""
    data_seconds, step_seconds = [], []
    for index in range(warmup + steps):
        synchronize(device)
        start = time.perf_counter()
        x, y = next_batch()
        synchronize(device)
        ready = time.perf_counter()
        step(x, y).item()
        synchronize(device)
        if index >= warmup:
            data_seconds.append(ready - start)
            step_seconds.append(time.perf_counter() - start)
    total = sum(step_seconds)
    return {"images_per_s": steps * batch_size / total, "data_share": sum(data_seconds) / total}


def timed_data(next_batch, device: torch.device, batch_size: int, warmup: int, steps: int) -> dict:
    """Images/s of the data path alone (batches produced and on the device, no model)."""
    for _ in range(warmup):
        next_batch()
    synchronize(device)
    start = time.perf_counter()
    for _ in range(steps):
        next_batch()
    synchronize(device)
    return {"images_per_s": steps * batch_size / (time.perf_counter() - start), "data_share": 1.0}


def run_pipeline(args) -> dict:
    """The --pipeline mode: time one (data path, step) on the frames under --root."""
    set_threads(args.threads)
    device = torch.device(args.device)
    config = PretextConfig(
        batch_size=args.batch_size, crop_size=args.crop, fc_width=args.fc_width, log_every=0
    )
    data, step_kind = args.pipeline
    step, amp = None, None
    if step_kind == "soundsup":
        step, amp = soundsup_step(args.arch, config, device)
    elif step_kind == "conventional":
        step, amp = conventional_step(args.arch, config, device)
    root = Path(args.root)
    if data == "memory":
        next_batch = memory_batches(
            np.load(root / "frames.npy"), np.load(root / "targets.npy"), config, device, amp
        )
    else:
        layout = memory_format(device, amp) if step_kind == "soundsup" else torch.contiguous_format
        next_batch = jpeg_batches(root / "jpeg", config, device, layout, args.workers)
    if step is None:
        return timed_data(next_batch, device, args.batch_size, args.warmup, 4 * args.steps)
    return timed_training(next_batch, step, device, args.batch_size, args.warmup, args.steps)


def spawn(args, root: Path, arch: str, data: str, step: str | None) -> dict:
    command = [sys.executable, __file__, "--pipeline", data, str(step), "--arch", arch, "--root", str(root)]
    for name in ("device", "crop", "batch_size", "fc_width", "steps", "warmup", "workers", "threads"):
        command += [f"--{name.replace('_', '-')}", str(getattr(args, name))]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"{data}/{step} ({arch}) failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def compare(args, root: Path, arch: str) -> dict[str, float]:
    """Median images/s of every pipeline (data-only pipelines once, with the first arch)."""
    pipelines = [p for p in PIPELINES if p[2] is not None or arch == args.archs[0]]
    runs: dict[str, list[dict]] = {name: [] for name, _, _ in pipelines}
    for _ in range(args.rounds):
        for name, data, step in pipelines:
            runs[name].append(spawn(args, root, arch, data, step))
    rates = {}
    for name, results in runs.items():
        rates[name] = statistics.median(run["images_per_s"] for run in results)
        share = statistics.median(run["data_share"] for run in results)
        each = ", ".join(f"{run['images_per_s']:.1f}" for run in results)
        wait = "" if name.startswith("data:") else f", data wait {100 * share:5.1f} %"
        print(f"{arch:9s} {name:19s} {rates[name]:8.1f} img/s{wait} (rounds: {each})", flush=True)
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument(
        "--archs", nargs="+", default=None, help="default: alexnet (cpu), alexnet resnet18 (cuda)"
    )
    parser.add_argument("--frames", type=int, default=None, help="default 1024 (cpu), 4096 (cuda)")
    parser.add_argument(
        "--frame-size", type=int, default=None, help="stored frame side; 72 (cpu), 256 (cuda)"
    )
    parser.add_argument("--crop", type=int, default=None, help="crop side; 64 (cpu), 224 (cuda)")
    parser.add_argument("--batch-size", type=int, default=None, help="default 64 (cpu), 256 (cuda)")
    parser.add_argument("--fc-width", type=int, default=4096)
    parser.add_argument("--steps", type=int, default=None, help="timed steps per round; 12 (cpu), 40 (cuda)")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--workers", type=int, default=None, help="baseline DataLoader workers; 2 (cpu), 8 (cuda)"
    )
    parser.add_argument(
        "--threads", type=int, default=2, help="torch intra-op threads of the training process"
    )
    parser.add_argument("--pipeline", nargs=2, metavar=("DATA", "STEP"), help=argparse.SUPPRESS)
    parser.add_argument("--arch", help=argparse.SUPPRESS)
    parser.add_argument("--root", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.pipeline:  # a child process: one pipeline, its figures as the last line
        args.pipeline[1] = None if args.pipeline[1] == "None" else args.pipeline[1]
        print(json.dumps(run_pipeline(args)))
        return
    cuda = args.device == "cuda"
    if cuda and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device is available")
    defaults = {
        "archs": ["alexnet", "resnet18"] if cuda else ["alexnet"],
        "frames": 4096 if cuda else 1024,
        "frame_size": 256 if cuda else 72,
        "crop": 224 if cuda else 64,
        "batch_size": 256 if cuda else 64,
        "steps": 40 if cuda else 12,
        "workers": 8 if cuda else 2,
    }
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    device = torch.device(args.device)
    amp = autocast_dtype(device, PretextConfig().precision)
    print(
        f"{args.frames} frames of {args.frame_size} px -> {args.crop}-px crops, batch {args.batch_size}, "
        f"fc_width {args.fc_width}, {args.threads} threads, baseline workers {args.workers}, "
        f"device {device}, soundsup step in {'bf16 autocast' if amp else 'fp32'}"
    )
    summary = []
    with tempfile.TemporaryDirectory(prefix="bench_train_") as folder:
        root = Path(folder)
        frames, targets = synthetic_frames(args.frames, args.frame_size, seed=0)
        np.save(root / "frames.npy", frames)
        np.save(root / "targets.npy", targets)
        write_jpeg_folder(frames, targets, root / "jpeg")
        for arch in args.archs:
            rates = compare(args, root, arch)
            if "data: memory" in rates:
                ratio = rates["data: memory"] / rates["data: jpeg"]
                summary.append(f"data path alone {ratio:.2f}x")
            ours, theirs = rates["soundsup"], rates["baseline"]
            data_half = rates["soundsup data only"] / theirs
            step_half = rates["soundsup step only"] / theirs
            summary.append(
                f"{arch} {ours:.0f} vs {theirs:.0f} img/s = {ours / theirs:.2f}x "
                f"(data path {data_half:.2f}x, step {step_half:.2f}x)"
            )
    print(
        f"bench_train ({device}, {args.crop} px): soundsup vs JPEG + PIL DataLoader + fp32 loop: "
        + "; ".join(summary)
    )


if __name__ == "__main__":
    main()
