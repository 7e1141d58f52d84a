"""Does the pretext network learn under the paper's optimiser settings? Validation accuracy per epoch.

Trains train_pretext, exactly as the rule calls it, on the demo's frame/sound pairs (the
synthetic world of ``configs/demo.yaml``: its pairs and its k-means labels), for each
architecture, feature and optimiser setting asked for, and records every epoch's validation
accuracy and time. The settings compared:

- ``onecycle``: OneCycleLR to lr_max 0.01 (the paper's words), AdamW betas (0.95, 0.999),
  weight decay 0.01, gradient-norm clip 5 (the authors' code);
- ``constant``: the learning rate constant at 4e-4 with beta1 0.95 (what the authors' code
  ran: OneCycleLR(max_lr=0.01) built and never stepped), the same decay and clip;
- ``onecycle-0.002``: OneCycleLR to 0.002, the value the demo had to fall back to when its
  AlexNet had no batch norm.

The baseline is chance (1 / k, and the share of the largest cluster); the figure is the final
validation accuracy against it. The pairs come from ``--workdir`` (a folder where the demo's
upstream rules ran); when it holds none, the demo's rules are run there first (a few minutes
on two cores). Run:

    python benchmarks/bench_pretext_learning.py --workdir /tmp/pt-run
    python benchmarks/bench_pretext_learning.py --workdir /tmp/pt-run --settings onecycle --precision fp32
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import yaml

from soundsup.device import retain_freed_host_memory, set_threads
from soundsup.models import load_model
from soundsup.pretext import PretextConfig, eval_inputs, split_by_group, train_pretext

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "configs" / "demo.yaml"
SETTINGS = {
    "onecycle": {"schedule": "onecycle", "lr_max": 0.01},
    "constant": {"schedule": "constant", "lr_max": 0.0004},
    "onecycle-0.002": {"schedule": "onecycle", "lr_max": 0.002},
}
PAPER_OPTIMISER = {"betas": (0.95, 0.999), "weight_decay": 0.01, "clip_grad_norm": 5.0}


def ensure_pairs(workdir: Path, features: list[str], k: int, cores: int) -> None:
    """Run the demo's rules up to the k-means labels of ``features`` in ``workdir`` (if missing)."""
    targets = [f"results/clusters/{feature}/k{k}/labels.parquet" for feature in features]
    if all((workdir / target).exists() for target in targets):
        return
    command = [
        sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile"), "--directory",
        str(workdir), "--configfile", str(DEMO), "--cores", str(cores), *targets,
    ]  # fmt: skip
    subprocess.run(command, check=True, cwd=ROOT)


def load_pairs(workdir: Path, feature: str, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Frames (N, S, S, 3) uint8, clusters (N,) int64 and video ids (N,), as the rule reads them."""
    labels = pd.read_parquet(workdir / f"results/clusters/{feature}/k{k}/labels.parquet")
    shards = sorted((workdir / "results/pairs").glob("shard-*"), key=lambda p: int(p.name.split("-")[1]))
    pairs = pd.concat([pd.read_parquet(shard / "index.parquet") for shard in shards], ignore_index=True)
    if not labels["pair_id"].equals(pairs["pair_id"]):
        raise ValueError(f"{workdir}: labels and pair indices do not line up")
    frames = np.concatenate([np.load(shard / "frames.npy") for shard in shards])
    keep = labels["cluster"].to_numpy() >= 0
    return frames[keep], labels["cluster"].to_numpy()[keep].astype(np.int64), pairs["ytid"].to_numpy()[keep]


def dead_units(model_path: Path, frames: np.ndarray, config: PretextConfig) -> float | None:
    """Share of AlexNet's pool5 units (channel x position) that are zero on every frame given."""
    model, payload = load_model(model_path)
    if payload["arch"] != "alexnet":
        return None
    model.eval()
    with torch.no_grad():
        pool5 = torch.cat([model.features(eval_inputs(torch.from_numpy(chunk), config)) for chunk in
                           np.array_split(frames, max(1, len(frames) // 64))])  # fmt: skip
    return float((pool5 <= 0).all(dim=0).float().mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=None, help="where the demo's pairs are (or go)")
    parser.add_argument("--archs", nargs="+", default=["alexnet", "resnet18"])
    parser.add_argument("--features", nargs="+", default=["texture", "mfcc"])
    parser.add_argument("--k", type=int, default=8)
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    parser.add_argument("--epochs", type=int, default=None, help="default: the demo's")
    parser.add_argument("--precision", default="auto", choices=["auto", "bf16", "fp32"])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--output", type=Path, default=None, help="JSON with every epoch of every run")
    args = parser.parse_args()

    demo = yaml.safe_load(DEMO.read_text())
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="bench-pretext-"))
    ensure_pairs(workdir, args.features, args.k, cores=2)
    set_threads(args.threads)
    retain_freed_host_memory()
    sizes = {key: demo["pretext"][key] for key in ("epochs", "batch_size", "crop_size", "fc_width")}
    if args.epochs is not None:
        sizes["epochs"] = args.epochs
    runs = []
    for feature in args.features:
        frames, targets, groups = load_pairs(workdir, feature, args.k)
        majority = np.bincount(targets, minlength=args.k).max() / len(targets)
        for arch in args.archs:
            for name in args.settings:
                config = PretextConfig(
                    **sizes, **PAPER_OPTIMISER, **SETTINGS[name], precision=args.precision, log_every=0
                )
                with tempfile.TemporaryDirectory() as folder:
                    out = Path(folder)
                    metrics = train_pretext(
                        frames, targets, groups, arch, args.k, config, demo["seed"], torch.device("cpu"),
                        out / "model.pt", out / "history.jsonl", out / "checkpoint.pt",
                    )  # fmt: skip
                    history = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
                    is_val = split_by_group(groups, config.val_fraction, demo["seed"])
                    dead = dead_units(out / "model.pt", frames[is_val], config)
                run = {
                    "feature": feature, "arch": arch, "setting": name, "config": dataclasses.asdict(config),
                    "chance": 1 / args.k, "majority": float(majority), "n_train": metrics["n_train"],
                    "n_val": metrics["n_val"], "val_acc": [row["val_acc"] for row in history],
                    "train_acc": [row["train_acc"] for row in history],
                    "seconds_per_epoch": float(np.median([row["seconds"] for row in history])),
                    "dead_pool5_units": dead,
                }  # fmt: skip
                runs.append(run)
                accs = " ".join(f"{acc:.2f}" for acc in run["val_acc"])
                print(
                    f"{feature}-k{args.k} {arch:8s} {name:15s} {run['seconds_per_epoch']:.2f} s/epoch, "
                    f"train acc {run['train_acc'][-1]:.2f}, dead pool5 {dead}; val acc per epoch: {accs}",
                    flush=True,
                )
    if args.output is not None:
        args.output.write_text(json.dumps(runs, indent=1))
    for name in args.settings:
        chosen = [run for run in runs if run["setting"] == name]
        parts = []
        for arch in args.archs:
            finals = [run["val_acc"][-1] for run in chosen if run["arch"] == arch]
            low, high = min(finals), max(finals)
            parts.append(f"{arch} {low:.2f}-{high:.2f} (x{low * args.k:.1f}-{high * args.k:.1f})")
        print(
            f"{name} ({args.precision}): final validation accuracy {', '.join(parts)} "
            f"of chance 1/{args.k} = {1 / args.k:.3f}"
        )


if __name__ == "__main__":
    main()
