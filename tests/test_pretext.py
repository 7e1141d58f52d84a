"""Pretext training: batched augmentation, grouped split, learning, exact resume after a kill."""

from __future__ import annotations

import errno
import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from event_files import tensorboard_scalars
from tmpfs import fill, small_tmpfs
from torchvision.transforms import v2

from soundsup.augment import (
    center_crop_resize,
    color_jitter,
    normalize,
    random_resized_crop_flip,
)
from soundsup.models import WriteError, load_model
from soundsup.pretext import (
    PretextConfig,
    build_training,
    split_by_group,
    steps_per_epoch,
    train_pretext,
    train_step,
)

CPU = torch.device("cpu")
COLOURS = np.array([[200, 60, 60], [60, 200, 60], [60, 60, 200]], np.uint8)


@pytest.fixture(autouse=True)
def one_thread():
    """Bit-exact comparisons need the same thread count in every run."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def coloured_frames(n: int, size: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Frames (n, size, size, 3) uint8 whose class (0-2) is their colour, plus noise; 2 per video."""
    rng = np.random.default_rng(seed)
    targets = rng.integers(0, 3, n)
    noise = rng.normal(0, 40, (n, size, size, 3))
    frames = np.clip(COLOURS[targets][:, None, None, :] + noise, 0, 255).astype(np.uint8)
    groups = np.array([f"video{i // 2:04d}" for i in range(n)])
    return frames, targets.astype(np.int64), groups


def ramp_images(batch: int, height: int, width: int) -> torch.Tensor:
    """uint8 (B, H, W, 3) whose value is the column index (a linear ramp left to right)."""
    ramp = torch.arange(width, dtype=torch.uint8).view(1, 1, width, 1)
    return ramp.expand(batch, height, width, 3).contiguous()


# --- augment ---------------------------------------------------------------------------


def test_random_resized_crop_flip_shapes_determinism_and_flips():
    images = ramp_images(200, 40, 48)
    first = random_resized_crop_flip(images, 24, 0.35, torch.Generator().manual_seed(0))
    again = random_resized_crop_flip(images, 24, 0.35, torch.Generator().manual_seed(0))
    other = random_resized_crop_flip(images, 24, 0.35, torch.Generator().manual_seed(1))
    assert first.shape == (200, 3, 24, 24) and first.dtype == torch.float32
    assert torch.equal(first, again) and not torch.equal(first, other)
    assert 0.0 <= first.min() and first.max() <= 47 / 255 + 1e-6
    slope = first[:, 0, 0, -1] - first[:, 0, 0, 0]  # ramp rises (kept) or falls (mirrored)
    assert (slope != 0).all()
    assert 70 < int((slope < 0).sum()) < 130
    span = slope.abs() * 255  # the crop width in source pixels, minus one output step
    assert span.min() > 0.35 * 40 * 0.7 and span.max() <= 48


def test_center_crop_resize_is_exact_at_unit_scale():
    images = torch.randint(0, 256, (3, 32, 32, 3), dtype=torch.uint8)
    crops = center_crop_resize(images, 28)  # side 0.875 * 32 = 28: a plain slice
    expected = images[:, 2:30, 2:30].permute(0, 3, 1, 2).float() / 255
    torch.testing.assert_close(crops, expected, rtol=0, atol=1e-6)


def test_color_jitter_keeps_range_and_grey_stays_grey():
    generator = torch.Generator().manual_seed(0)
    colourful = torch.rand(16, 3, 8, 8, generator=generator)
    grey = torch.rand(16, 1, 8, 8, generator=generator).expand(16, 3, 8, 8).contiguous()
    assert torch.equal(color_jitter(colourful, 0.0, generator), colourful)
    jittered = color_jitter(colourful, 0.4, torch.Generator().manual_seed(1))
    assert jittered.min() >= 0 and jittered.max() <= 1 and not torch.allclose(jittered, colourful)
    grey_out = color_jitter(grey, 0.4, torch.Generator().manual_seed(1))
    torch.testing.assert_close(grey_out[:, 0], grey_out[:, 1], atol=1e-6, rtol=0)
    torch.testing.assert_close(grey_out[:, 1], grey_out[:, 2], atol=1e-6, rtol=0)


def test_color_jitter_matches_torchvision_away_from_saturation():
    x = 0.3 + 0.4 * torch.rand(8, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    jittered = color_jitter(x, 0.2, torch.Generator().manual_seed(5))
    draws = torch.rand(24, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    factors = (0.8 + 0.4 * draws).view(3, 8)  # brightness, contrast, saturation per image
    for i in range(8):
        expected = v2.functional.adjust_brightness(x[i], factors[0, i].item())
        expected = v2.functional.adjust_contrast(expected, factors[1, i].item())
        expected = v2.functional.adjust_saturation(expected, factors[2, i].item())
        torch.testing.assert_close(jittered[i], expected, rtol=0, atol=1e-4)


def test_normalize_matches_torchvision():
    x = torch.rand(4, 3, 5, 5)
    reference = v2.Normalize(mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))(x)
    torch.testing.assert_close(normalize(x), reference)


def test_split_by_group_keeps_videos_together_and_is_seeded():
    groups = np.repeat([f"id{i:03d}" for i in range(50)], 2)
    is_val = split_by_group(groups, 0.1, seed=3)
    assert is_val.dtype == bool and is_val.sum() == 10
    for group in np.unique(groups):
        assert len(set(is_val[groups == group])) == 1
    np.testing.assert_array_equal(is_val, split_by_group(groups, 0.1, seed=3))
    assert not np.array_equal(is_val, split_by_group(groups, 0.1, seed=4))
    order = np.random.default_rng(0).permutation(len(groups))
    np.testing.assert_array_equal(split_by_group(groups[order], 0.1, seed=3), is_val[order])
    assert split_by_group(np.array(["a", "a", "b"]), 0.1, seed=0).sum() in (1, 2)
    assert not split_by_group(np.array(["a", "a"]), 0.1, seed=0).any()


# --- training --------------------------------------------------------------------------


def paths(folder: Path) -> dict:
    return {
        "model_path": folder / "model.pt",
        "history_path": folder / "history.jsonl",
        "checkpoint_path": folder / "checkpoint.pt",
    }


TINY = PretextConfig(epochs=2, batch_size=8, crop_size=32, fc_width=64, log_every=2, checkpoint_every=1)
TINY_ALEXNET = PretextConfig(
    epochs=2, batch_size=8, crop_size=64, fc_width=64, log_every=0, checkpoint_every=1
)
PAPER = PretextConfig()


def read_history(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.parametrize("arch", ["alexnet", "resnet18"])
def test_learns_colour_classes_under_the_paper_optimiser(tmp_path, arch):
    """The paper config's optimiser (schedule, lr, betas, decay, clipping) learns both networks."""
    frames, targets, groups = coloured_frames(96, 72, seed=0)
    config = PretextConfig(
        epochs=5, epoch_repeats=3, batch_size=16, crop_size=64, fc_width=64, val_fraction=0.25, log_every=0
    )
    optimiser = ("schedule", "lr_max", "betas", "weight_decay", "clip_grad_norm")
    assert all(getattr(config, key) == getattr(PAPER, key) for key in optimiser)
    meta = {"config_slice": {"arch": arch}, "seed": 0, "feature": "colour"}
    metrics = train_pretext(frames, targets, groups, arch, 3, config, 0, CPU, **paths(tmp_path), meta=meta)
    assert metrics["n_val"] == 24 and metrics["epochs"] == 5
    assert metrics["val_acc"] >= 0.7, metrics["val_acc"]  # chance is 1/3
    history = read_history(tmp_path / "history.jsonl")
    assert [row["epoch"] for row in history] == [1, 2, 3, 4, 5]
    expected = {"epoch", "loss", "train_acc", "val_loss", "val_acc", "lr", "images_per_s", "seconds"}
    assert expected <= set(history[0])
    model, payload = load_model(tmp_path / "model.pt")
    assert payload["arch"] == arch and payload["epochs"] == 5 and payload["val_acc"] == metrics["val_acc"]
    assert len(payload["history"]) == 5
    sidecar = json.loads((tmp_path / "model.pt.meta.json").read_text())
    assert sidecar["feature"] == "colour" and sidecar["metrics"]["val_acc"] == metrics["val_acc"]
    assert not (tmp_path / "checkpoint.pt").exists()


ETA = re.compile(r"ETA (\d+h\d\dm|\d+m\d\ds|\d+s)$")


def test_progress_lines_name_the_job_and_give_the_time_left(tmp_path, caplog):
    """A real run of 2 epochs x 3 steps, logged every 2 steps: every line it logs starts with the
    job's name, and each progress line (steps, epochs) ends with a remaining time, 0 at the end."""
    frames, targets, groups = coloured_frames(28, 32, seed=6)  # 24 training frames, batch 8
    caplog.set_level("INFO", logger="soundsup.pretext")
    train_pretext(
        frames,
        targets,
        groups,
        "resnet18",
        3,
        TINY,
        0,
        CPU,
        **paths(tmp_path),
        job_name="texture-k3-resnet18",
    )
    messages = [record.getMessage() for record in caplog.records if record.name == "soundsup.pretext"]
    assert messages and all(message.startswith("[texture-k3-resnet18] ") for message in messages)
    steps = [message for message in messages if " step " in message]
    epochs = [message for message in messages if " done, ETA " in message]
    assert [re.search(r"epoch (\d/\d) step (\d/\d)", m).groups() for m in steps] == [
        ("1/2", "2/3"), ("1/2", "3/3"), ("2/2", "2/3"), ("2/2", "3/3"),
    ]  # fmt: skip
    assert len(epochs) == 2 and all(ETA.search(message) for message in steps)
    assert re.search(r"epoch 1/2 done, ETA \S+: \{", epochs[0])  # then the epoch's JSON record
    assert steps[-1].endswith(" ETA 0s") and "epoch 2/2 done, ETA 0s: " in epochs[-1]

    caplog.clear()  # without a name, the job is named after what the call knows
    train_pretext(frames, targets, groups, "resnet18", 3, TINY, 5, CPU, **paths(tmp_path / "unnamed"))
    assert all(
        r.getMessage().startswith("[resnet18 k3 seed5] ")
        for r in caplog.records
        if r.name == "soundsup.pretext"
    )


def test_schedules_and_optimiser_settings(tmp_path):
    frames, targets, groups = coloured_frames(32, 32, seed=4)
    base = {**TINY.__dict__, "epochs": 4, "log_every": 0}
    constant = PretextConfig(**{**base, "schedule": "constant", "lr_max": 4e-4})
    train_pretext(frames, targets, groups, "resnet18", 3, constant, 0, CPU, **paths(tmp_path / "c"))
    assert [row["lr"] for row in read_history(tmp_path / "c" / "history.jsonl")] == [4e-4] * 4
    onecycle = PretextConfig(**{**base, "schedule": "onecycle", "lr_max": 0.01, "epoch_repeats": 3})
    train_pretext(frames, targets, groups, "resnet18", 3, onecycle, 0, CPU, **paths(tmp_path / "o"))
    lrs = [row["lr"] for row in read_history(tmp_path / "o" / "history.jsonl")]
    # 4 epochs of 3 x 28 frames / 8 = 10 steps: warm-up from 0.01 / 25 over 30 % of them to the
    # peak 0.01, cosine down to 0.01 / 25e4 at the last step (reached only if 40 steps were made)
    assert 4e-4 < lrs[0] and max(lrs) <= 0.01 and lrs[1] > lrs[2] > lrs[3]
    assert lrs[3] == pytest.approx(4e-8)
    model, optimizer, scheduler = build_training("alexnet", 3, PAPER, 100, 0, CPU)
    group = optimizer.param_groups[0]
    assert group["betas"][0] == 0.95 and group["weight_decay"] == 0.01
    assert steps_per_epoch(24, onecycle) == 9 and steps_per_epoch(24, TINY) == 3
    for bad in ({"schedule": "cosine"}, {"betas": (0.9,)}, {"clip_grad_norm": 0}, {"checkpoint_every": 0}):
        with pytest.raises(ValueError, match="pretext."):
            PretextConfig(**bad)


def test_clipping_bounds_the_gradient_norm():
    torch.manual_seed(0)
    config = PretextConfig(batch_size=4, crop_size=64, fc_width=16, precision="fp32")
    model, optimizer, scheduler = build_training("alexnet", 3, config, 10, 0, CPU)
    x, y = 50 * torch.randn(4, 3, 64, 64), torch.arange(4) % 3
    train_step(model, x, y, optimizer, scheduler, None, clip_grad_norm=1e-3)
    norm = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in model.parameters()]))
    assert norm.item() == pytest.approx(1e-3, rel=1e-3)


def assert_same_weights(path_a: Path, path_b: Path) -> None:
    state_a = torch.load(path_a, weights_only=False)["state_dict"]
    state_b = torch.load(path_b, weights_only=False)["state_dict"]
    assert state_a.keys() == state_b.keys()
    for name in state_a:
        assert torch.equal(state_a[name], state_b[name]), name


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_stop_after_epoch_then_resume_is_bit_identical(tmp_path, precision):
    frames, targets, groups = coloured_frames(32, 32, seed=1)
    config = PretextConfig(**{**TINY.__dict__, "precision": precision})
    train_pretext(frames, targets, groups, "resnet18", 3, config, 7, CPU, **paths(tmp_path / "whole"))

    stopped = train_pretext(
        frames,
        targets,
        groups,
        "resnet18",
        3,
        config,
        7,
        CPU,
        **paths(tmp_path / "parts"),
        stop_after_epoch=1,
    )
    assert stopped["stopped_early"] and stopped["epochs"] == 1
    assert (tmp_path / "parts" / "checkpoint.pt").exists() and not (tmp_path / "parts" / "model.pt").exists()
    assert len((tmp_path / "parts" / "history.jsonl").read_text().splitlines()) == 1
    final = train_pretext(frames, targets, groups, "resnet18", 3, config, 7, CPU, **paths(tmp_path / "parts"))
    assert final["epochs"] == 2 and not final["stopped_early"]
    assert_same_weights(tmp_path / "whole" / "model.pt", tmp_path / "parts" / "model.pt")


def test_checkpoint_every_resumes_from_the_last_checkpoint_bit_identically(tmp_path):
    frames, targets, groups = coloured_frames(32, 72, seed=5)
    config = PretextConfig(**{**TINY_ALEXNET.__dict__, "epochs": 5, "checkpoint_every": 2})
    train_pretext(frames, targets, groups, "alexnet", 3, config, 3, CPU, **paths(tmp_path / "whole"))
    every_epoch = PretextConfig(**{**config.__dict__, "checkpoint_every": 1})
    train_pretext(frames, targets, groups, "alexnet", 3, every_epoch, 3, CPU, **paths(tmp_path / "each"))
    assert_same_weights(tmp_path / "whole" / "model.pt", tmp_path / "each" / "model.pt")

    parts = tmp_path / "parts"
    for stop, checkpointed in ((1, None), (3, 2), (4, 4)):
        train_pretext(
            frames, targets, groups, "alexnet", 3, config, 3, CPU, **paths(parts), stop_after_epoch=stop
        )
        assert len(read_history(parts / "history.jsonl")) == stop
        if checkpointed is None:
            assert not (parts / "checkpoint.pt").exists()
        else:
            assert torch.load(parts / "checkpoint.pt", weights_only=False)["epoch"] == checkpointed
        if stop == 3:  # a kill after epoch 3: the next run repeats epoch 3 from the checkpoint of 2
            train_pretext(
                frames, targets, groups, "alexnet", 3, config, 3, CPU, **paths(parts), stop_after_epoch=3
            )
            assert torch.load(parts / "checkpoint.pt", weights_only=False)["epoch"] == 2
    assert sorted(p.name for p in parts.iterdir()) == ["checkpoint.pt", "history.jsonl"]  # only the latest
    other_period = PretextConfig(**{**config.__dict__, "checkpoint_every": 3})  # does not change results
    final = train_pretext(frames, targets, groups, "alexnet", 3, other_period, 3, CPU, **paths(parts))
    assert final["epochs"] == 5 and [row["epoch"] for row in read_history(parts / "history.jsonl")] == [
        1,
        2,
        3,
        4,
        5,
    ]
    assert_same_weights(tmp_path / "whole" / "model.pt", parts / "model.pt")


def test_checkpoint_of_another_config_is_not_resumed(tmp_path):
    frames, targets, groups = coloured_frames(32, 72, seed=2)
    other = PretextConfig(**{**TINY_ALEXNET.__dict__, "epochs": 5})
    train_pretext(
        frames, targets, groups, "alexnet", 3, other, 0, CPU, **paths(tmp_path / "a"), stop_after_epoch=1
    )
    train_pretext(frames, targets, groups, "alexnet", 3, TINY_ALEXNET, 0, CPU, **paths(tmp_path / "a"))
    train_pretext(frames, targets, groups, "alexnet", 3, TINY_ALEXNET, 0, CPU, **paths(tmp_path / "b"))
    assert_same_weights(tmp_path / "a" / "model.pt", tmp_path / "b" / "model.pt")


KILLED_RUN = textwrap.dedent(
    """
    import sys
    import numpy as np, torch
    from soundsup.pretext import PretextConfig, train_pretext
    torch.set_num_threads(1)
    data = np.load(sys.argv[1])
    folder = sys.argv[2]
    config = PretextConfig(epochs=6, batch_size=8, crop_size=64, fc_width=64, log_every=0, checkpoint_every=2)
    outputs = [folder + "/model.pt", folder + "/history.jsonl", folder + "/checkpoint.pt"]
    train_pretext(data["frames"], data["targets"], data["groups"], "alexnet", 3, config, 11,
                  torch.device("cpu"), *outputs)
    """
)


def history_lines(path: Path) -> int:
    try:
        return len(path.read_text().splitlines())
    except FileNotFoundError:
        return 0


def test_resume_after_sigkill_between_checkpoints_is_bit_identical(tmp_path):
    """Checkpoints every 2 epochs; killed after an odd epoch, the run resumes from the one before."""
    frames, targets, groups = coloured_frames(48, 72, seed=3)
    data_path = tmp_path / "data.npz"
    np.savez(data_path, frames=frames, targets=targets, groups=groups)
    killed = tmp_path / "killed"
    killed.mkdir()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    process = subprocess.Popen([sys.executable, "-c", KILLED_RUN, str(data_path), str(killed)], env=env)
    try:
        deadline = time.monotonic() + 120
        while history_lines(killed / "history.jsonl") < 3:  # epoch 3 done, its checkpoint not due
            assert process.poll() is None, "training subprocess ended before its third epoch"
            assert time.monotonic() < deadline, "no third epoch within 120 s"
            time.sleep(0.002)
        process.send_signal(signal.SIGKILL)
    finally:
        process.wait()
    assert process.returncode == -signal.SIGKILL
    assert not (killed / "model.pt").exists(), "the run finished before it could be killed"
    epoch = torch.load(killed / "checkpoint.pt", weights_only=False)["epoch"]
    assert epoch in (2, 4) and history_lines(killed / "history.jsonl") > epoch  # killed between checkpoints

    config = PretextConfig(epochs=6, batch_size=8, crop_size=64, fc_width=64, log_every=0, checkpoint_every=2)
    resumed = train_pretext(frames, targets, groups, "alexnet", 3, config, 11, CPU, **paths(killed))
    assert resumed["epochs"] == 6
    history = [json.loads(line) for line in (killed / "history.jsonl").read_text().splitlines()]
    assert [row["epoch"] for row in history] == list(range(1, 7))
    train_pretext(frames, targets, groups, "alexnet", 3, config, 11, CPU, **paths(tmp_path / "whole"))
    assert_same_weights(tmp_path / "whole" / "model.pt", killed / "model.pt")


def event_steps(folder: Path) -> list[int]:
    """The steps of ``val_acc`` in ``folder``'s event files ([] while there are none)."""
    return [step for step, _ in tensorboard_scalars(folder).get("val_acc", [])]


KILLED_WITH_TENSORBOARD = KILLED_RUN.replace(
    "*outputs)", "*outputs, tensorboard_dir=folder + '/tensorboard')"
)


@pytest.mark.skipif(
    importlib.util.find_spec("tensorboard") is None, reason="tensorboard is not installed (an optional extra)"
)
def test_tensorboard_events_mirror_the_history_across_a_kill_and_resume(tmp_path):
    """Killed (SIGKILL) after epoch 3 with the checkpoint of epoch 2, the run had written events up
    to epoch 3; resumed, the folder holds each epoch once, with the values of history.jsonl."""
    frames, targets, groups = coloured_frames(48, 72, seed=3)
    data_path = tmp_path / "data.npz"
    np.savez(data_path, frames=frames, targets=targets, groups=groups)
    folder = tmp_path / "run"
    folder.mkdir()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    process = subprocess.Popen(
        [sys.executable, "-c", KILLED_WITH_TENSORBOARD, str(data_path), str(folder)], env=env
    )
    try:
        deadline = time.monotonic() + 120
        while 3 not in event_steps(folder / "tensorboard"):  # epoch 3 done, its checkpoint not due
            assert process.poll() is None, "training subprocess ended before its third epoch"
            assert time.monotonic() < deadline, "no third epoch within 120 s"
            time.sleep(0.002)
        process.send_signal(signal.SIGKILL)
    finally:
        process.wait()
    assert process.returncode == -signal.SIGKILL and not (folder / "model.pt").exists()
    checkpointed = torch.load(folder / "checkpoint.pt", weights_only=False)["epoch"]
    killed = event_steps(folder / "tensorboard")
    assert killed == list(range(1, len(killed) + 1)) and len(killed) > checkpointed  # events past it

    config = PretextConfig(epochs=6, batch_size=8, crop_size=64, fc_width=64, log_every=0, checkpoint_every=2)
    train_pretext(
        frames,
        targets,
        groups,
        "alexnet",
        3,
        config,
        11,
        CPU,
        **paths(folder),
        tensorboard_dir=folder / "tensorboard",
    )
    history = read_history(folder / "history.jsonl")
    scalars = tensorboard_scalars(folder / "tensorboard")
    assert len(list((folder / "tensorboard").glob("events.out.tfevents.*"))) == 1  # the killed run's are gone
    assert set(scalars) == {"loss", "train_acc", "val_loss", "val_acc", "lr", "images_per_s", "seconds"}
    for tag, points in scalars.items():
        assert [step for step, _ in points] == [1, 2, 3, 4, 5, 6], tag  # each epoch once, in order
        np.testing.assert_allclose([value for _, value in points], [row[tag] for row in history], rtol=1e-6)

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    shown = EventAccumulator(str(folder / "tensorboard"))  # what TensorBoard itself reads
    shown.Reload()
    assert [event.step for event in shown.Scalars("val_acc")] == [1, 2, 3, 4, 5, 6]


def test_without_a_tensorboard_folder_nothing_is_written_beside_the_history(tmp_path):
    frames, targets, groups = coloured_frames(20, 32, seed=8)
    train_pretext(frames, targets, groups, "resnet18", 3, TINY, 0, CPU, **paths(tmp_path))
    assert sorted(path.name for path in tmp_path.iterdir()) == ["history.jsonl", "model.pt"]


# --- full disks ------------------------------------------------------------------------

SMALL = PretextConfig(epochs=3, batch_size=8, crop_size=64, fc_width=8, log_every=0, checkpoint_every=1)


def test_full_disk_at_a_checkpoint_names_it_and_keeps_the_last_good_one(tmp_path):
    frames, targets, groups = coloured_frames(24, 72, seed=6)
    reference = tmp_path / "reference"
    train_pretext(
        frames, targets, groups, "alexnet", 3, SMALL, 0, CPU, **paths(reference), stop_after_epoch=1
    )
    checkpoint_bytes = (reference / "checkpoint.pt").stat().st_size
    train_pretext(frames, targets, groups, "alexnet", 3, SMALL, 0, CPU, **paths(reference))

    # room for one checkpoint, not for the next one beside it (the old one stays until the rename)
    with small_tmpfs(tmp_path / "disk", int(1.5 * checkpoint_bytes)) as disk:
        with pytest.raises(WriteError) as caught:
            train_pretext(frames, targets, groups, "alexnet", 3, SMALL, 0, CPU, **paths(disk))
        message = str(caught.value)
        assert caught.value.errno == errno.ENOSPC
        assert f"training checkpoint {disk / 'checkpoint.pt'}" in message and "No space left" in message
        assert sorted(p.name for p in disk.iterdir()) == ["checkpoint.pt", "history.jsonl"]  # no partial file
        assert torch.load(disk / "checkpoint.pt", weights_only=False)["epoch"] == 1
        resumed = tmp_path / "resumed"
        resumed.mkdir()
        (resumed / "checkpoint.pt").write_bytes((disk / "checkpoint.pt").read_bytes())
    train_pretext(frames, targets, groups, "alexnet", 3, SMALL, 0, CPU, **paths(resumed))
    assert_same_weights(reference / "model.pt", resumed / "model.pt")


def test_full_disk_at_the_model_file_keeps_the_final_checkpoint(tmp_path):
    frames, targets, groups = coloured_frames(24, 72, seed=6)
    train_pretext(frames, targets, groups, "alexnet", 3, SMALL, 0, CPU, **paths(tmp_path / "reference"))
    run = paths(tmp_path / "run")
    with small_tmpfs(tmp_path / "disk", 1_000_000) as disk:  # the model file is ~15 MB
        with pytest.raises(WriteError, match=f"model file {disk / 'model.pt'} .ENOSPC"):
            train_pretext(
                frames,
                targets,
                groups,
                "alexnet",
                3,
                SMALL,
                0,
                CPU,
                **{**run, "model_path": disk / "model.pt"},
            )
        assert list(disk.iterdir()) == []
    assert torch.load(run["checkpoint_path"], weights_only=False)["epoch"] == 3  # nothing to train again
    history = read_history(run["history_path"])
    final = train_pretext(frames, targets, groups, "alexnet", 3, SMALL, 0, CPU, **run)
    assert final["epochs"] == 3 and read_history(run["history_path"]) == history
    assert_same_weights(tmp_path / "reference" / "model.pt", run["model_path"])
    assert not run["checkpoint_path"].exists()


def test_full_disk_at_the_history_names_it(tmp_path):
    frames, targets, groups = coloured_frames(24, 72, seed=6)
    with small_tmpfs(tmp_path / "disk", 64 * 1024) as disk:
        fill(disk, 0)
        run = {**paths(tmp_path / "run"), "history_path": disk / "history.jsonl"}
        with pytest.raises(WriteError, match=f"training history {disk / 'history.jsonl'} .ENOSPC"):
            train_pretext(frames, targets, groups, "alexnet", 3, SMALL, 0, CPU, **run)
        assert sorted(p.name for p in disk.iterdir()) == ["filler"]


def test_diverging_training_stops_with_a_clear_error(tmp_path):
    frames, targets, groups = coloured_frames(32, 32, seed=1)
    config = PretextConfig(**{**TINY.__dict__, "lr_max": 1e30, "clip_grad_norm": None, "precision": "fp32"})
    with pytest.raises(FloatingPointError, match=r"loss is nan in epoch 1 \(lr 1.00e\+30\)"):
        train_pretext(frames, targets, groups, "resnet18", 3, config, 0, CPU, **paths(tmp_path))
    assert not (tmp_path / "model.pt").exists()


def test_bad_input_names_the_problem(tmp_path):
    frames, targets, groups = coloured_frames(8, 32, seed=0)
    with pytest.raises(ValueError, match="row 3"):
        bad = targets.copy()
        bad[3] = 5
        train_pretext(frames, bad, groups, "resnet18", 3, TINY, 0, CPU, **paths(tmp_path))
    with pytest.raises(ValueError, match="uint8"):
        train_pretext(
            frames.astype(np.float32), targets, groups, "resnet18", 3, TINY, 0, CPU, **paths(tmp_path)
        )
    with pytest.raises(ValueError, match="unknown architecture"):
        train_pretext(frames, targets, groups, "vgg", 3, TINY, 0, CPU, **paths(tmp_path))
    with pytest.raises(ValueError, match="crop_size 32 is too small for alexnet"):
        train_pretext(frames, targets, groups, "alexnet", 3, TINY, 0, CPU, **paths(tmp_path))
    assert not any(tmp_path.iterdir())


def test_the_train_pretext_adapter_trains_on_every_shard_and_names_its_model(tmp_path):
    """Rule train_pretext with a stand-in job: the frames of two shards and their clusters (a
    silent pair has none) -> the model, its trunk, the history and the sidecar."""
    import pandas as pd
    from adapter_helpers import Job, rule_params_of, run_adapter, workflow_config

    from soundsup.io import save_npy, write_parquet

    frames, targets, groups = coloured_frames(48, 72, seed=1)
    targets[5] = -1  # a silent window: no cluster, no training frame
    inputs = {"frames": [], "indices": []}
    for shard, rows in enumerate((slice(0, 24), slice(24, 48))):
        save_npy(tmp_path / f"frames-{shard}.npy", frames[rows])
        index = pd.DataFrame({"pair_id": [f"p{i}" for i in range(48)][rows], "ytid": groups[rows]})
        write_parquet(tmp_path / f"index-{shard}.parquet", index)
        inputs["frames"].append(str(tmp_path / f"frames-{shard}.npy"))
        inputs["indices"].append(str(tmp_path / f"index-{shard}.parquet"))
    labels = tmp_path / "labels.parquet"
    write_parquet(labels, pd.DataFrame({"pair_id": [f"p{i}" for i in range(48)], "cluster": targets}))
    config = workflow_config(pretext={"epochs": 2, "batch_size": 8, "crop_size": 64, "fc_width": 32})
    out = tmp_path / "model"
    job = Job(
        input=Job(labels=str(labels), **inputs),
        output=Job(
            model=str(out / "model.pt"),
            backbone=str(out / "backbone.pth"),
            history=str(out / "history.jsonl"),
        ),
        params=Job(
            pretext=rule_params_of(config, "pretext", exclude=("arch", "per_arch", "per_feature")),
            checkpoint=str(out / "checkpoint.pt"),
            seed=0,
        ),
        config=config,
        wildcards=Job(feature="texture", k="3", arch="alexnet"),
        log=[str(tmp_path / "train.log")],
        rule="train_pretext",
        threads=1,
    )
    run_adapter("train_pretext", job)
    _, payload = load_model(out / "model.pt")
    assert payload["arch"] == "alexnet" and payload["epochs"] == 2 and len(payload["history"]) == 2
    sidecar = json.loads((out / "model.pt.meta.json").read_text())
    assert sidecar["feature"] == "texture" and sidecar["n_pretext_pairs"] == 47  # the silent pair is out
    assert sidecar["config"]["k"] == 3 and sidecar["config"]["arch"] == "alexnet"
    assert (out / "backbone.pth").is_file() and not (out / "checkpoint.pt").exists()
    assert "[texture-k3-alexnet]" in (tmp_path / "train.log").read_text()
