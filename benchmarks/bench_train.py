"""Training throughput: soundsup's data path against the conventional JPEG + PIL DataLoader.

Both pipelines train the same seeded model with the same optimizer, batch size, frame size and
crop size, on the same frames:

- soundsup: frames held as one uint8 tensor, batches gathered by index and augmented on the
  training device (soundsup.augment: random resized crop, flip, colour jitter, normalise);
- baseline: the frames written as JPEG files, read by torchvision ImageFolder with PIL
  transforms (RandomResizedCrop, RandomHorizontalFlip, ColorJitter, ToTensor, Normalize) in a
  DataLoader with worker processes.

Reports images/s and the share of step time spent waiting for data (with CUDA, measured with
synchronisation around the data part and the step). Run:

    python benchmarks/bench_train.py                 # CPU: AlexNet, 72-px frames, 64-px crops
    python benchmarks/bench_train.py --device cuda   # AlexNet and ResNet-18, 256 -> 224 px
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader
from torchvision import datasets, transforms

from soundsup.augment import IMAGENET_MEAN, IMAGENET_STD
from soundsup.device import memory_format, set_threads
from soundsup.models import build_model
from soundsup.pretext import PretextConfig, fetch_batch, place_frames, train_inputs, train_step

N_CLASSES = 10


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


def make_training(arch: str, config: PretextConfig, device: torch.device):
    """Seeded model, AdamW and a one-cycle schedule of a real run's length (the timed steps sit in
    its warm-up, as early steps of real training do: no divergence or denormal slow-down)."""
    total_steps = 10_000
    torch.manual_seed(0)
    model = build_model(arch, N_CLASSES, config.fc_width).to(device, memory_format=memory_format(device))
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr_max, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=config.lr_max, total_steps=total_steps)
    return model, optimizer, scheduler


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed_loop(next_batch, arch, config, device, warmup: int, steps: int) -> dict:
    """Run warmup + steps training steps; time the data part and the whole step."""
    model, optimizer, scheduler = make_training(arch, config, device)
    model.train()
    data_seconds, step_seconds = [], []
    for step in range(warmup + steps):
        synchronize(device)
        start = time.perf_counter()
        x, y = next_batch()
        synchronize(device)
        ready = time.perf_counter()
        loss, _ = train_step(model, x, y, optimizer, scheduler)
        loss.item()
        synchronize(device)
        if step >= warmup:
            data_seconds.append(ready - start)
            step_seconds.append(time.perf_counter() - start)
    total = sum(step_seconds)
    return {"images_per_s": steps * config.batch_size / total, "data_share": sum(data_seconds) / total}


def data_only_rate(next_batch, batch_size: int, device: torch.device, warmup: int, steps: int) -> float:
    """Images/s of the data path alone (batches produced and on the device, no model)."""
    for _ in range(warmup):
        next_batch()
    synchronize(device)
    start = time.perf_counter()
    for _ in range(steps):
        x, _ = next_batch()
    synchronize(device)
    return steps * batch_size / (time.perf_counter() - start)


def soundsup_pipeline(frames: np.ndarray, targets: np.ndarray, config: PretextConfig, device: torch.device):
    frames_tensor = place_frames(frames, device)
    targets_tensor = torch.as_tensor(targets, dtype=torch.int64).to(device)
    shuffle = torch.Generator().manual_seed(0)
    augment = torch.Generator().manual_seed(1)

    def next_batch():
        rows = torch.randperm(len(frames), generator=shuffle)[: config.batch_size]
        x = train_inputs(fetch_batch(frames_tensor, rows, device), config, augment)
        return x, targets_tensor[rows.to(device)]

    return next_batch


def baseline_pipeline(root: Path, config: PretextConfig, device: torch.device, workers: int):
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
        x = x.to(device, non_blocking=True).contiguous(memory_format=memory_format(device))
        return x, y.to(device, non_blocking=True)

    return next_batch


def compare(arch: str, args, device: torch.device, frames, targets, root: Path) -> tuple[float, float]:
    config = PretextConfig(
        batch_size=args.batch_size, crop_size=args.crop, fc_width=args.fc_width, compile=False, log_every=0
    )
    results = {"soundsup": [], "baseline": []}
    ours = soundsup_pipeline(frames, targets, config, device)
    theirs = baseline_pipeline(root, config, device, args.workers)
    for _ in range(args.rounds):  # interleaved, so that drifting machine load hits both
        results["soundsup"].append(timed_loop(ours, arch, config, device, args.warmup, args.steps))
        results["baseline"].append(timed_loop(theirs, arch, config, device, args.warmup, args.steps))
    rates = {}
    for name, runs in results.items():
        rate = statistics.median(run["images_per_s"] for run in runs)
        share = statistics.median(run["data_share"] for run in runs)
        rates[name] = rate
        each = ", ".join(f"{run['images_per_s']:.1f}" for run in runs)
        print(
            f"{arch:9s} {name:9s} {rate:8.1f} img/s training, data wait {100 * share:5.1f} % (rounds: {each})"
        )
    return rates["soundsup"], rates["baseline"]


def compare_data_only(args, device: torch.device, frames, targets, root: Path) -> tuple[float, float]:
    config = PretextConfig(batch_size=args.batch_size, crop_size=args.crop, log_every=0)
    ours = soundsup_pipeline(frames, targets, config, device)
    theirs = baseline_pipeline(root, config, device, args.workers)
    steps = 4 * args.steps
    rates = {"soundsup": [], "baseline": []}
    for _ in range(args.rounds):
        rates["soundsup"].append(data_only_rate(ours, args.batch_size, device, args.warmup, steps))
        rates["baseline"].append(data_only_rate(theirs, args.batch_size, device, args.warmup, steps))
    medians = {name: statistics.median(values) for name, values in rates.items()}
    for name, rate in medians.items():
        print(f"data only {name:9s} {rate:8.1f} img/s (no model)")
    return medians["soundsup"], medians["baseline"]


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
    parser.add_argument("--steps", type=int, default=None, help="timed steps per round; 10 (cpu), 40 (cuda)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument(
        "--workers", type=int, default=None, help="baseline DataLoader workers; 2 (cpu), 8 (cuda)"
    )
    parser.add_argument(
        "--threads", type=int, default=2, help="torch intra-op threads of the training process"
    )
    args = parser.parse_args()
    cuda = args.device == "cuda"
    if cuda and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device is available")
    defaults = {
        "archs": ["alexnet", "resnet18"] if cuda else ["alexnet"],
        "frames": 4096 if cuda else 1024,
        "frame_size": 256 if cuda else 72,
        "crop": 224 if cuda else 64,
        "batch_size": 256 if cuda else 64,
        "steps": 40 if cuda else 10,
        "workers": 8 if cuda else 2,
    }
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    set_threads(args.threads)
    device = torch.device(args.device)
    frames, targets = synthetic_frames(args.frames, args.frame_size, seed=0)
    print(
        f"{args.frames} frames of {args.frame_size} px -> {args.crop}-px crops, batch {args.batch_size}, "
        f"fc_width {args.fc_width}, {args.threads} threads, baseline workers {args.workers}, device {device}"
    )
    summary = []
    with tempfile.TemporaryDirectory(prefix="bench_train_") as folder:
        write_jpeg_folder(frames, targets, Path(folder))
        ours, theirs = compare_data_only(args, device, frames, targets, Path(folder))
        summary.append(f"data path alone {ours:.0f} vs {theirs:.0f} img/s = {ours / theirs:.2f}x")
        for arch in args.archs:
            ours, theirs = compare(arch, args, device, frames, targets, Path(folder))
            summary.append(f"{arch} {ours:.1f} vs {theirs:.1f} img/s = {ours / theirs:.2f}x")
    print(
        f"bench_train ({device}, {args.crop} px): in-memory uint8 + batched on-device augmentation vs "
        f"JPEG + PIL DataLoader: {'; '.join(summary)}"
    )


if __name__ == "__main__":
    main()
