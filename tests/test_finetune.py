"""VOC fine-tuning: the protocol, the crops, learning, and a job that survives kills and full disks.

Training runs on tiny images where the class is the colour of a square; the crops are checked
against a per-image reference of philkr's sampling and PyTorch's antialiased resize, on real
photographs (scikit-learn's two sample JPEGs); resumption is checked by SIGKILLing the job's
real entry point in a subprocess, and full disks with a real, small tmpfs.
"""

import dataclasses
import errno
import importlib.util
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import sklearn.datasets
import torch
import torch.nn.functional as F
from event_files import tensorboard_scalars
from PIL import Image
from scipy import stats
from torchvision import models as tv_models

from soundsup.finetune import (
    FinetuneConfig,
    WeightsUnavailable,
    finetune_voc,
    hidden_layers,
    load_backbone,
    load_checkpoint,
    masked_bce,
    prepare_model,
    set_training_mode,
)
from soundsup.finetune_job import run_finetune_job
from soundsup.metrics import average_precision_table
from soundsup.models import build_model, conv_layers, output_layer, save_checkpoint
from soundsup.voc import VOC_CLASSES, pack_images
from soundsup.voc_crops import CropCutter, antialias_taps, sample_crops

REPO = Path(__file__).resolve().parent.parent
CPU = torch.device("cpu")
COLOURS = np.array([[220, 30, 30], [30, 200, 30], [40, 40, 230], [230, 220, 30]], dtype=np.uint8)
TINY = FinetuneConfig(
    iterations=100,
    batch_size=8,
    lr=0.02,
    lr_step=60,
    crop_size=64,
    scale_low=0.8,
    scale_high=1.2,
    test_augmentations=2,
    max_side=72,
    log_every=50,
)
MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


@pytest.fixture(autouse=True)
def one_thread():
    """Bit-exact comparisons need the same thread count in every run (the job sets its own)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def coloured_squares(n_images, rng, size=72, side=48):
    """Images (size, size, 3) with one square whose colour is the class (classes 0-3); labels (N, 20)."""
    images, labels = [], np.full((n_images, 20), -1, dtype=np.int8)
    for index in range(n_images):
        image = rng.integers(90, 150, (size, size, 3)).astype(np.uint8)
        top, left = rng.integers(0, size - side, 2)
        image[top : top + side, left : left + side] = COLOURS[index % 4]
        images.append(image)
        labels[index, index % 4] = 1
    labels[rng.random(labels.shape) < 0.05] = 0  # some "difficult" labels, masked out of the loss
    return images, labels


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    train_images, train_labels = coloured_squares(40, rng)
    test_images, test_labels = coloured_squares(20, rng)
    test_labels[:, :4] = np.where(test_labels[:, :4] == 0, -1, test_labels[:, :4])
    return train_images, train_labels, test_images, test_labels


@pytest.fixture(scope="module")
def photos():
    """scikit-learn's two sample photographs (427 x 640) and two cut-outs of other sizes."""
    folder = Path(sklearn.datasets.__file__).parent / "images"
    images = [np.array(Image.open(folder / name).convert("RGB")) for name in ("china.jpg", "flower.jpg")]
    return [*images, images[0][:300, :200].copy(), images[1][50:150, 20:400].copy()]


def random_alexnet(seed=0, fc_width=64):
    torch.manual_seed(seed)
    return load_backbone("random", "alexnet", fc_width, None, None)


def snapshot(model):
    return {name: tensor.detach().clone() for name, tensor in model.state_dict().items()}


# --- learning and freezing ------------------------------------------------------------


# "head" learns with the default protocol (fc6 and fc7 redrawn); "all" with fc6 and fc7 kept
# (reinit false): redrawn, it retrains a random trunk too and needs twice the steps (~2 min here).
LEARNING = {"head": TINY, "all": dataclasses.replace(TINY, reinit=False)}


@pytest.fixture(scope="module", params=["head", "all"])
def finetuned(request, data):
    train_images, train_labels, test_images, _ = data
    model = random_alexnet()
    before = snapshot(model)
    config = LEARNING[request.param]
    scores, history = finetune_voc(
        model, train_images, train_labels, test_images, request.param, config, 0, CPU
    )
    return request.param, before, model, scores, history


def test_learns_above_chance(finetuned, data):
    mode, _, _, scores, history = finetuned
    config = LEARNING[mode]
    test_labels = data[3]
    assert scores.shape == (20, 20) and scores.dtype == np.float32
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # classes 4-19 have no positive test image
        table = average_precision_table(test_labels, scores)
    # Chance: 5 positives in 20 images gives an AP near 0.3.
    assert table["ap"][:4].mean() > 0.55, (mode, table["ap"][:4].tolist())
    steps = list(range(config.log_every, config.iterations + 1, config.log_every))
    assert [record["iteration"] for record in history] == steps
    expected_lr = [config.lr * config.lr_gamma ** ((step - 1) // config.lr_step) for step in steps]
    assert [record["lr"] for record in history] == expected_lr
    assert history[-1]["loss"] < 20 * np.log(2)  # the loss at the start is 20 ln 2 per image


def test_head_mode_freezes_the_trunk_bit_for_bit(finetuned):
    mode, before, model, _, _ = finetuned
    after = model.state_dict()
    weights = {name for name, _ in model.named_parameters()}
    conv_names = [name for name in before if name.startswith("features.") and name in weights]
    statistics = [name for name in before if name.startswith("features.") and name not in weights]
    fc_names = [
        name for name in before if name.startswith("classifier.") and not name.startswith("classifier.6")
    ]
    assert conv_names and fc_names and statistics  # the batch-norm AlexNet's running statistics
    conv_same = [torch.equal(before[name], after[name]) for name in conv_names]
    assert all(not torch.equal(before[name], after[name]) for name in fc_names)
    assert all(conv_same) if mode == "head" else not any(conv_same)
    # voc.batchnorm: frozen (the default): the statistics never move, in either mode
    assert all(torch.equal(before[name], after[name]) for name in statistics)
    assert output_layer(model).out_features == 20


def test_seeded_runs_are_identical_on_cpu(data):
    train_images, train_labels, test_images, _ = data
    config = dataclasses.replace(TINY, iterations=6, log_every=3)
    runs = []
    for seed in (1, 1, 2):
        model = random_alexnet()
        global_state = torch.get_rng_state()
        runs.append(finetune_voc(model, train_images, train_labels, test_images, "all", config, seed, CPU))
        assert torch.equal(torch.get_rng_state(), global_state)  # dropout's forked generator is restored
    np.testing.assert_array_equal(runs[0][0], runs[1][0])
    assert [r["loss"] for r in runs[0][1]] == [r["loss"] for r in runs[1][1]]
    assert not np.array_equal(runs[0][0], runs[2][0])


def test_the_batched_crops_train_like_the_loop(data):
    """The two crop implementations differ by float rounding only: after 6 SGD steps the test
    scores of both agree to a small fraction of their spread (in fp32: under bf16 autocast a
    rounding flip of the input shows as one bf16 step, 2^-8, of a logit). The rounding grows
    over the steps by how the CPU's kernels sum: within 1e-4 of the spread on the AMD CPUs it was
    written on, 2.5e-4 on an AMX Xeon, so the bound is 1e-3 of the spread."""
    train_images, train_labels, test_images, _ = data
    config = dataclasses.replace(TINY, iterations=6, log_every=3, precision="fp32")
    loop, batched = (
        finetune_voc(
            random_alexnet(), train_images, train_labels, test_images, "all", config, 0, CPU, None, m
        )
        for m in ("loop", "batched")
    )
    np.testing.assert_allclose(loop[0], batched[0], atol=1e-3 * np.ptp(loop[0]))


def test_resnet_head_mode_keeps_batch_norm_statistics(data):
    train_images, train_labels, test_images, _ = data
    torch.manual_seed(0)
    model = load_backbone("random", "resnet18", 64, None, None)
    before = snapshot(model)
    config = dataclasses.replace(TINY, iterations=3, crop_size=32, log_every=1, test_augmentations=1)
    finetune_voc(model, train_images, train_labels, test_images[:4], "head", config, 0, CPU)
    after = model.state_dict()
    trunk = [name for name in before if not name.startswith("fc.")]
    assert any("running_mean" in name for name in trunk)
    assert all(torch.equal(before[name], after[name]) for name in trunk)
    assert model.fc.out_features == 20 and not torch.equal(before["fc.weight"][:20], after["fc.weight"])


@pytest.mark.parametrize("batchnorm", ["frozen", "train"])
def test_batch_norm_mode_in_all_mode(data, batchnorm):
    """frozen: running statistics untouched while the scale and shift train; train: both move."""
    train_images, train_labels, test_images, _ = data
    torch.manual_seed(0)
    model = load_backbone("random", "resnet18", 64, None, None)
    before = snapshot(model)
    config = dataclasses.replace(TINY, iterations=3, crop_size=32, test_augmentations=1, batchnorm=batchnorm)
    finetune_voc(model, train_images, train_labels, test_images[:4], "all", config, 0, CPU)
    after = model.state_dict()
    statistics = [name for name in before if name.endswith(("running_mean", "running_var"))]
    affine = [name for name in before if name.startswith("bn1.") and name.endswith(("weight", "bias"))]
    assert statistics and affine
    kept = [torch.equal(before[name], after[name]) for name in statistics]
    assert all(kept) if batchnorm == "frozen" else not any(kept)
    assert not any(torch.equal(before[name], after[name]) for name in affine)


# --- the protocol's starting network --------------------------------------------------


def batch_norm_alexnet(fc_width=64):
    """The pretext AlexNet (DeepCluster's, batch norm after every convolution)."""
    return build_model("alexnet", 7, fc_width)


def plain_alexnet(fc_width=64):
    """torchvision's AlexNet (no batch norm), the network of the ImageNet baseline."""
    return build_model("alexnet", 7, fc_width, variant="torchvision")


@pytest.mark.parametrize("make", [lambda: plain_alexnet(512), lambda: batch_norm_alexnet(512)])
def test_reinit_redraws_fc6_fc7_as_deepcluster(make):
    torch.manual_seed(0)
    model = make()
    before = snapshot(model)
    fc6, fc7 = hidden_layers(model)
    assert (fc6.in_features, fc7.in_features) == (256 * 6 * 6, 512)
    prepare_model(model, "head", FinetuneConfig(), torch.Generator().manual_seed(1))
    for layer in (fc6, fc7):
        assert abs(layer.weight.std().item() - 0.01) < 0.0005 and abs(layer.weight.mean().item()) < 0.0005
        assert torch.all(layer.bias == 0.1)
    head = output_layer(model)
    bound = 1 / np.sqrt(512)  # nn.Linear's default weights, DeepCluster's new top layer
    assert head.out_features == 20 and torch.all(head.bias == 0.1)
    assert head.weight.abs().max() <= bound and head.weight.abs().max() > 0.95 * bound
    features = [name for name in before if name.startswith("features.")]
    assert all(torch.equal(before[name], model.state_dict()[name]) for name in features)
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    assert trainable == {name for name, _ in model.named_parameters() if name.startswith("classifier.")}


def test_without_reinit_fc6_fc7_keep_their_pretext_weights():
    torch.manual_seed(0)
    model = batch_norm_alexnet(256)
    before = snapshot(model)
    prepare_model(model, "all", FinetuneConfig(reinit=False), torch.Generator().manual_seed(1))
    for name in ("classifier.1.weight", "classifier.1.bias", "classifier.4.weight", "classifier.4.bias"):
        assert torch.equal(before[name], model.state_dict()[name])
    head = output_layer(model)
    assert abs(head.weight.std().item() - 0.01) < 0.001 and torch.all(head.bias == 0)
    assert all(p.requires_grad for p in model.parameters())


def test_resnet_has_no_hidden_layers_only_a_new_output():
    torch.manual_seed(0)
    model = build_model("resnet18", 1000)
    before = snapshot(model)
    assert hidden_layers(model) == []
    prepare_model(model, "head", FinetuneConfig(), torch.Generator().manual_seed(1))
    assert model.fc.out_features == 20 and torch.all(model.fc.bias == 0.1)
    assert all(
        torch.equal(before[name], model.state_dict()[name]) for name in before if not name.startswith("fc.")
    )


def test_frozen_batch_norm_holds_in_both_modes():
    for mode, batchnorm in (("head", "train"), ("head", "frozen"), ("all", "frozen"), ("all", "train")):
        model = batch_norm_alexnet()
        prepare_model(model, mode, FinetuneConfig(batchnorm=batchnorm), torch.Generator().manual_seed(0))
        set_training_mode(model, mode, batchnorm)
        norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
        dropouts = [m for m in model.classifier if isinstance(m, torch.nn.Dropout)]
        assert len(norms) == 5 and all(m.training for m in dropouts)
        assert all(m.training == (mode == "all" and batchnorm == "train") for m in norms), (mode, batchnorm)


# --- crops ----------------------------------------------------------------------------


def reference_crops(shapes, crop_size, scale_low, scale_high, generator):
    """philkr's crops one image at a time, in Python floats (the per-image code this replaced)."""
    draws = torch.rand((len(shapes), 4), generator=generator, dtype=torch.float64).tolist()
    crops = []
    for (height, width), (scale_draw, top_draw, left_draw, mirror_draw) in zip(shapes, draws, strict=True):
        high = min(scale_high, height / crop_size, width / crop_size)
        low = min(scale_low, high)
        side = round(crop_size * (low + (high - low) * scale_draw))
        side = min(max(side, 1), height, width)
        top = min(int(top_draw * (height - side + 1)), height - side)
        left = min(int(left_draw * (width - side + 1)), width - side)
        crops.append((top, left, side, mirror_draw < 0.5))
    return crops


def as_tuples(crops):
    return list(zip(*(part.tolist() for part in crops), strict=True))


def test_crops_equal_the_per_image_reference():
    rng = np.random.default_rng(5)
    shapes = [(int(h), int(w)) for h, w in rng.integers(1, 520, (3000, 2))] + [(375, 500), (500, 375), (1, 1)]
    for crop_size, low, high in ((227, 0.5, 2.0), (64, 0.7, 1.5), (100, 1.0, 1.0)):
        heights, widths = np.array(shapes).T
        got = sample_crops(heights, widths, crop_size, low, high, torch.Generator().manual_seed(crop_size))
        expected = reference_crops(shapes, crop_size, low, high, torch.Generator().manual_seed(crop_size))
        assert as_tuples(got) == expected


def test_crop_distribution_is_philkrs():
    """On a 375 x 500 image at crop 227: the scale is U[0.5, 375/227], the offsets uniform over
    the positions where the crop fits, the mirror a fair coin (tested, not just bounded)."""
    n_draws, crop_size = 20000, 227
    heights, widths = np.full(n_draws, 375), np.full(n_draws, 500)
    crops = sample_crops(heights, widths, crop_size, 0.5, 2.0, torch.Generator().manual_seed(0))
    high = 375 / crop_size
    scales = crops.side / crop_size
    assert scales.min() >= 0.5 - 0.5 / crop_size and scales.max() <= high + 0.5 / crop_size
    # the side is rounded to an integer: jitter within its rounding cell before comparing to U[low, high]
    jitter = np.random.default_rng(1).uniform(-0.5, 0.5, n_draws) / crop_size
    low_inner, high_inner = 0.5 + 1 / crop_size, high - 1 / crop_size  # away from the two partial cells
    jittered = scales + jitter
    inner = jittered[(jittered > low_inner) & (jittered < high_inner)]
    assert stats.kstest(inner, stats.uniform(low_inner, high_inner - low_inner).cdf).pvalue > 1e-3
    top_fraction = (crops.top + np.random.default_rng(2).random(n_draws)) / (375 - crops.side + 1)
    left_fraction = (crops.left + np.random.default_rng(3).random(n_draws)) / (500 - crops.side + 1)
    assert stats.kstest(top_fraction, "uniform").pvalue > 1e-3
    assert stats.kstest(left_fraction, "uniform").pvalue > 1e-3
    assert stats.binomtest(int(crops.mirror.sum()), n_draws, 0.5).pvalue > 1e-3
    assert stats.pearsonr(crops.top, crops.mirror.astype(float)).pvalue > 1e-3  # the draws are independent


def test_crop_edge_cases():
    generator = torch.Generator().manual_seed(0)
    small = sample_crops(np.array([40, 120]), np.array([30, 90]), 100, 0.5, 2.0, generator)
    assert small.side[0] == 30  # smaller than scale_low * crop_size: its whole shorter side
    assert 50 <= small.side[1] <= 90  # s <= min(2, H/100, W/100)
    with pytest.raises(ValueError, match="at least 1 pixel"):
        sample_crops(np.array([0]), np.array([5]), 10, 0.5, 2.0, generator)


def reference_cut(image, crop, crop_size):
    """One crop (1, 3, c, c) in [0, 255] as the per-image code cut it: F.interpolate, then flip."""
    top, left, side, mirror = crop
    patch = torch.from_numpy(image)[top : top + side, left : left + side].permute(2, 0, 1)[None].float()
    if side != crop_size:
        patch = F.interpolate(
            patch, size=(crop_size, crop_size), mode="bilinear", align_corners=False, antialias=True
        )
    return patch.flip(-1) if mirror else patch


@pytest.mark.parametrize("crop_size", [227, 64])
def test_both_cutters_resize_like_interpolate_on_photographs(photos, crop_size):
    """The loop is the per-image code bit for bit; the batched cutter differs by float rounding:
    at most 0.01 of a grey level (0-255) on real photographs, up- and downscaled, mirrored."""
    packed = pack_images(photos)
    cutters = {
        method: CropCutter(torch.from_numpy(packed.pixels), packed.sizes, crop_size, 0.5, 2.0, CPU, method)
        for method in ("loop", "batched")
    }
    worst = 0.0
    for trial in range(12):
        rows = np.random.default_rng(trial).integers(0, len(photos), 16)
        batches = {m: cutter(rows, torch.Generator().manual_seed(trial)) for m, cutter in cutters.items()}
        sizes = packed.sizes[rows]
        crops = reference_crops(
            [tuple(s) for s in sizes.tolist()], crop_size, 0.5, 2.0, torch.Generator().manual_seed(trial)
        )
        expected = torch.cat(
            [reference_cut(photos[r], c, crop_size) for r, c in zip(rows, crops, strict=True)]
        )
        expected = (expected / 255 - MEAN) / STD
        assert torch.equal(batches["loop"][0], expected)
        assert torch.equal(batches["loop"][1], torch.from_numpy(rows))
        assert torch.equal(batches["batched"][1], torch.from_numpy(rows))
        worst = max(worst, ((batches["batched"][0] - expected) * STD * 255).abs().max().item())
    assert worst < 0.01


def test_cutter_known_inputs():
    """A crop of the output size is the pixels themselves; a mirrored one is flipped; a flat
    image stays flat at any scale (the weights are normalised within the crop)."""
    ramp = (np.arange(12 * 15 * 3) % 256).astype(np.uint8).reshape(12, 15, 3)
    flat = np.full((40, 50, 3), 77, np.uint8)
    packed = pack_images([ramp, flat])
    expected = (torch.from_numpy(ramp[1:9, 2:10]).permute(2, 0, 1)[None].float() / 255 - MEAN) / STD
    for method in ("loop", "batched"):
        cutter = CropCutter(torch.from_numpy(packed.pixels), packed.sizes, 8, 1.0, 1.0, CPU, method)
        for mirror in (False, True):
            crops = sample_crops(np.array([12]), np.array([15]), 8, 1.0, 1.0, torch.Generator())
            crops = crops._replace(top=np.array([1]), left=np.array([2]), mirror=np.array([mirror]))
            cut = cutter.cut_loop if method == "loop" else cutter.cut_batched
            batch = (cut(np.array([0]), crops)[0] / 255 - MEAN) / STD
            torch.testing.assert_close(batch, expected.flip(-1) if mirror else expected, atol=1e-5, rtol=0)
        flat_cutter = CropCutter(torch.from_numpy(packed.pixels), packed.sizes, 16, 0.5, 2.0, CPU, method)
        batch, _ = flat_cutter(np.array([1] * 8), torch.Generator().manual_seed(0))
        torch.testing.assert_close(batch * STD + MEAN, torch.full_like(batch, 77 / 255), atol=1e-5, rtol=0)


def test_antialias_taps_are_pytorchs():
    """Resizing a vector by the taps equals F.interpolate(antialias=True) on it, down and up."""
    rng = np.random.default_rng(0)
    for side, size in ((454, 227), (300, 227), (228, 227), (227, 227), (120, 227), (7, 64)):
        signal_1d = rng.random(side)
        index, weights = antialias_taps(np.array([side]), size)
        resized = (np.where(index[0] >= 0, signal_1d[np.maximum(index[0], 0)], 0) * weights[0]).sum(-1)
        expected = F.interpolate(
            torch.from_numpy(signal_1d)[None, None, None].float(),
            size=(1, size), mode="bilinear", align_corners=False, antialias=True,
        )[0, 0, 0].numpy()  # fmt: skip
        np.testing.assert_allclose(resized, expected, atol=3e-5)  # PyTorch computes its weights in float32
        np.testing.assert_allclose(weights[0].sum(-1), 1, atol=1e-6)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_on_cuda_a_training_step_never_waits_for_the_device(photos):
    """The batched cutter, labels on the device, the forward, backward, clipping and fused SGD
    of one iteration run without a single host-device synchronisation; and crop like the CPU."""
    from soundsup.finetune import EpochOrder, _forward, _optimizer
    from soundsup.voc_crops import place_pixels

    cuda = torch.device("cuda")
    packed = pack_images(photos)
    config = FinetuneConfig(batch_size=16)
    cutter = CropCutter(place_pixels(packed.pixels, cuda), packed.sizes, 227, 0.5, 2.0, cuda)
    assert cutter.method == "batched"
    reference = CropCutter(torch.from_numpy(packed.pixels), packed.sizes, 227, 0.5, 2.0, CPU, "loop")
    rows = EpochOrder(len(photos), 16, 0).rows(1)
    on_gpu, _ = cutter(rows, torch.Generator().manual_seed(3))
    on_cpu, _ = reference(rows, torch.Generator().manual_seed(3))
    assert ((on_gpu.cpu() - on_cpu) * STD * 255).abs().max() < 0.01
    labels = torch.from_numpy(np.ones((len(photos), 20), np.int8)).to(cuda)
    model = build_model("alexnet", 1000, 64)
    prepare_model(model, "all", config, torch.Generator().manual_seed(0))
    model.to(cuda, memory_format=torch.channels_last)
    optimizer = _optimizer(model, config)
    generator = torch.Generator().manual_seed(0)
    for iteration in (1, 2, 3):  # the first allocates (pinned blocks, cuBLAS workspaces)
        torch.cuda.set_sync_debug_mode("error" if iteration == 3 else "default")
        try:
            batch, rows_on_device = cutter(EpochOrder(len(photos), 16, 0).rows(iteration), generator)
            loss = masked_bce(_forward(model, batch, cuda, torch.bfloat16), labels[rows_on_device])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
            optimizer.step()
        finally:
            torch.cuda.set_sync_debug_mode("default")
    assert torch.isfinite(loss).item()


# --- small pieces ---------------------------------------------------------------------


def test_loss_masks_difficult_labels_and_divides_by_batch():
    logits = torch.tensor([[2.0, -1.0, 0.5], [0.0, 3.0, -2.0]], requires_grad=True)
    labels = torch.tensor([[1, -1, 0], [-1, 0, 1]], dtype=torch.int8)
    loss = masked_bce(logits, labels)
    sp = torch.nn.functional.softplus
    expected = (sp(-logits[0, 0]) + sp(logits[0, 1]) + sp(logits[1, 0]) + sp(-logits[1, 2])) / 2
    torch.testing.assert_close(loss, expected)
    loss.backward()
    assert logits.grad[0, 2] == 0 and logits.grad[1, 1] == 0


def test_config_defaults_are_the_protocol_and_keys_match():
    config = FinetuneConfig()
    assert (config.iterations, config.batch_size, config.lr, config.lr_step, config.lr_gamma) == (
        80000, 16, 0.001, 10000, 0.5,
    )  # fmt: skip
    assert (config.momentum, config.weight_decay, config.clip_grad_norm, config.bias_lr_mult) == (
        0.9, 1e-6, 10.0, 2.0,
    )  # fmt: skip
    assert (config.crop_size, config.scale_low, config.scale_high, config.test_augmentations) == (
        227, 0.5, 2.0, 10,
    )  # fmt: skip
    assert (config.reinit, config.batchnorm) == (True, "frozen")  # DeepCluster's eval_voc_classif
    assert FinetuneConfig(**dataclasses.asdict(config)) == config
    with pytest.raises(ValueError, match="voc.batch_size"):
        FinetuneConfig(batch_size=0)
    with pytest.raises(ValueError, match="scale_low"):
        FinetuneConfig(scale_low=2.5)
    with pytest.raises(ValueError, match="voc.batchnorm"):
        FinetuneConfig(batchnorm="eval")
    with pytest.raises(ValueError, match="voc.checkpoint_every"):
        FinetuneConfig(checkpoint_every=0)
    with pytest.raises(ValueError, match="voc.reinit"):
        FinetuneConfig(reinit="yes")


def test_schema_defaults_match_the_config_class():
    from soundsup.config import load_schema

    voc = load_schema(REPO / "schemas" / "config.schema.yaml")["properties"]["voc"]["properties"]
    for field in dataclasses.fields(FinetuneConfig):
        assert voc[field.name]["default"] == field.default, field.name
    assert voc["checkpoint_every"]["x-rerun"] is False


def test_bad_training_labels_are_refused(data):
    train_images, train_labels, test_images, _ = data
    with pytest.raises(ValueError, match="train_labels"):
        finetune_voc(random_alexnet(), train_images, train_labels[:5], test_images, "head", TINY, 0, CPU)
    with pytest.raises(ValueError, match="mode"):
        finetune_voc(random_alexnet(), train_images, train_labels, test_images, "fc7", TINY, 0, CPU)
    with pytest.raises(ValueError, match="image 1: expected an"):
        finetune_voc(random_alexnet(), [train_images[0], train_images[1][..., :2]], train_labels[:2],
                     test_images, "head", TINY, 0, CPU)  # fmt: skip


def test_backbones(tmp_path):
    torch.manual_seed(3)
    random_model = load_backbone("random", "alexnet", 32, None, None)
    assert output_layer(random_model).out_features == 1000 and random_model.classifier[1].out_features == 32

    pretext = build_model("alexnet", 7, 32)
    save_checkpoint(tmp_path / "model.pt", pretext, "alexnet", 7, 32)
    loaded = load_backbone("pretext", "alexnet", 4096, str(tmp_path / "model.pt"), None)
    assert torch.equal(conv_layers(loaded)["conv1"].weight, conv_layers(pretext)["conv1"].weight)
    with pytest.raises(ValueError, match="holds a alexnet, expected resnet18"):
        load_backbone("pretext", "resnet18", 4096, str(tmp_path / "model.pt"), None)
    with pytest.raises(FileNotFoundError, match="absent.pt"):
        load_backbone("pretext", "alexnet", 4096, str(tmp_path / "absent.pt"), None)

    imagenet = build_model("resnet18", 1000)
    torch.save(imagenet.state_dict(), tmp_path / "resnet18.pth")
    from_file = load_backbone("imagenet", "resnet18", 64, None, str(tmp_path / "resnet18.pth"))
    assert torch.equal(from_file.conv1.weight, imagenet.conv1.weight)
    with pytest.raises(WeightsUnavailable, match="missing.pth"):
        load_backbone("imagenet", "alexnet", 4096, None, str(tmp_path / "missing.pth"))
    with pytest.raises(WeightsUnavailable, match="null"):
        load_backbone("imagenet", "alexnet", 4096, None, None)
    with pytest.raises(ValueError, match="not a state dict"):
        load_backbone("imagenet", "alexnet", 4096, None, str(tmp_path / "resnet18.pth"))
    (tmp_path / "garbage.pth").write_bytes(b"<html>403</html>")
    with pytest.raises(ValueError, match="garbage.pth"):
        load_backbone("imagenet", "alexnet", 4096, None, str(tmp_path / "garbage.pth"))
    with pytest.raises(ValueError, match="backbone spec"):
        load_backbone("sound", "alexnet", 4096, None, None)
    assert isinstance(tv_models.alexnet(weights=None), tv_models.AlexNet)


# --- checkpoints: refused when foreign, resumed after a kill, kept when the disk is full --


def test_a_checkpoint_resumes_only_its_own_run(data, tmp_path, caplog):
    train_images, train_labels, test_images, _ = data
    config = dataclasses.replace(TINY, iterations=8, log_every=4, checkpoint_every=4)
    checkpoint = tmp_path / "checkpoint.pt"
    whole = finetune_voc(random_alexnet(), train_images, train_labels, test_images, "all", config, 0, CPU)
    first = finetune_voc(
        random_alexnet(), train_images, train_labels, test_images, "all", config, 0, CPU, checkpoint
    )
    assert torch.load(checkpoint, weights_only=True)["iteration"] == 8  # the caller removes it
    np.testing.assert_array_equal(first[0], whole[0])

    caplog.set_level("INFO", logger="soundsup.finetune")
    again = finetune_voc(
        random_alexnet(), train_images, train_labels, test_images, "all", config, 0, CPU, checkpoint
    )
    assert "resuming from" in caplog.text and "at iteration 8 of 8" in caplog.text
    np.testing.assert_array_equal(again[0], whole[0])
    assert again[1] == first[1]  # the history comes back with the state

    caplog.clear()
    other = dataclasses.replace(config, lr=0.03)
    changed = finetune_voc(
        random_alexnet(), train_images, train_labels, test_images, "all", other, 0, CPU, checkpoint
    )
    assert "a checkpoint of another run (differs in config)" in caplog.text
    fresh = finetune_voc(random_alexnet(), train_images, train_labels, test_images, "all", other, 0, CPU)
    np.testing.assert_array_equal(changed[0], fresh[0])
    caplog.clear()
    finetune_voc(
        random_alexnet(seed=9), train_images, train_labels, test_images, "all", other, 0, CPU, checkpoint
    )
    assert "differs in model_sha256" in caplog.text
    caplog.clear()
    checkpoint.write_bytes(b"not a checkpoint")
    finetune_voc(random_alexnet(), train_images, train_labels, test_images, "all", other, 0, CPU, checkpoint)
    assert "unreadable checkpoint" in caplog.text
    fingerprint = torch.load(checkpoint, weights_only=True)["fingerprint"]
    assert load_checkpoint(checkpoint, {**fingerprint, "seed": 1}) is None


def write_voc(root: Path, n_train=24, n_test=12, seed=0):
    """A VOC2007-layout folder of coloured-square JPEGs of varied sizes (class = colour)."""
    rng = np.random.default_rng(seed)
    main = root / "ImageSets" / "Main"
    main.mkdir(parents=True)
    (root / "JPEGImages").mkdir()
    for split, count in (("trainval", n_train), ("test", n_test)):
        ids = [f"{split[:2]}{index:04d}" for index in range(count)]
        images, labels = coloured_squares(count, rng, size=80, side=50)
        for image_id, image, index in zip(ids, images, range(count), strict=True):
            cropped = image[: 72 + index % 9, : 80 - index % 7]  # sizes vary: padding is exercised
            Image.fromarray(cropped).save(root / "JPEGImages" / f"{image_id}.jpg", quality=95)
        for column, name in enumerate(VOC_CLASSES):
            text = "".join(f"{i} {int(labels[row, column]):2d}\n" for row, i in enumerate(ids))
            (main / f"{name}_{split}.txt").write_text(text)
        (main / f"{split}.txt").write_text("".join(f"{i}\n" for i in ids))
    return root


JOB = textwrap.dedent(
    """
    import json, logging, sys
    import torch
    from soundsup.finetune import FinetuneConfig
    from soundsup.finetune_job import run_finetune_job

    voc_root, out, config = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    run_finetune_job(
        voc_root=voc_root, mode="all", seed=4, config=FinetuneConfig(**config),
        backbone={"init": "random", "arch": "alexnet", "fc_width": 32}, model_path=None,
        pretext_meta_path=None, scores_path=f"{out}/scores.npy", ap_path=f"{out}/ap.csv",
        checkpoint_path=f"{out}/checkpoint.pt", config_slice=config, model_name="random-alexnet",
        device=torch.device("cpu"), n_threads=1,
    )
    """
)
JOB_CONFIG = {
    "iterations": 120, "batch_size": 8, "lr": 0.01, "lr_step": 50, "crop_size": 64, "scale_low": 0.8,
    "scale_high": 1.2, "test_augmentations": 2, "max_side": 80, "log_every": 7, "checkpoint_every": 10,
}  # fmt: skip


def job(voc_root, out, config=JOB_CONFIG, **popen):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    command = [sys.executable, "-c", JOB, str(voc_root), str(out), json.dumps(config)]
    return subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True, **popen)


def test_a_killed_job_resumes_bit_identical(tmp_path):
    voc_root = write_voc(tmp_path / "VOC2007")
    killed, whole = tmp_path / "killed", tmp_path / "whole"
    killed.mkdir()
    process = job(voc_root, killed)
    try:
        deadline = time.monotonic() + 300
        while not (killed / "checkpoint.pt").exists():
            assert process.poll() is None, (
                f"the job ended before its first checkpoint:\n{process.stderr.read()}"
            )
            assert time.monotonic() < deadline, "no checkpoint within 300 s"
            time.sleep(0.005)
        process.send_signal(signal.SIGKILL)
    finally:
        process.wait()
        process.stderr.close()
    assert process.returncode == -signal.SIGKILL
    assert not (killed / "scores.npy").exists(), "the job finished before it could be killed"
    stopped_at = torch.load(killed / "checkpoint.pt", weights_only=True)["iteration"]
    assert 10 <= stopped_at < JOB_CONFIG["iterations"]
    (killed / ".checkpoint.abc123.tmp.pt").write_bytes(b"half a checkpoint")  # a write cut short

    resumed = job(voc_root, killed)
    _, log_text = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, log_text[-3000:]
    assert f"at iteration {stopped_at} of {JOB_CONFIG['iterations']}" in log_text
    assert not (killed / "checkpoint.pt").exists() and not list(killed.glob(".checkpoint.*"))
    uninterrupted = job(voc_root, whole)
    _, whole_log = uninterrupted.communicate(timeout=600)
    assert uninterrupted.returncode == 0, whole_log[-3000:]
    assert "resuming" not in whole_log

    np.testing.assert_array_equal(np.load(killed / "scores.npy"), np.load(whole / "scores.npy"))
    assert (killed / "ap.csv").read_bytes() == (whole / "ap.csv").read_bytes()
    histories = [json.loads((run / "ap.csv.meta.json").read_text())["history"] for run in (killed, whole)]
    assert [(h["iteration"], h["loss"]) for h in histories[0]] == [
        (h["iteration"], h["loss"]) for h in histories[1]
    ]


ETA = re.compile(r"ETA (\d+h\d\dm|\d+m\d\ds|\d+s)$")


@pytest.mark.filterwarnings("ignore:no positive test item")  # 4 of the 20 classes are used
def test_progress_lines_name_the_job_and_give_the_time_left(tmp_path, caplog):
    """A real job: every line of the fine-tuning and of the job starts with ``[model mode seed]``,
    every iteration line ends with the training's time left, 0 at the end."""
    voc_root = write_voc(tmp_path / "VOC2007", n_train=16, n_test=8)
    config = FinetuneConfig(**{**JOB_CONFIG, "iterations": 9, "log_every": 3})
    caplog.set_level("INFO", logger="soundsup")
    run_finetune_job(
        voc_root=voc_root, mode="head", seed=1, config=config, model_path=None, pretext_meta_path=None,
        backbone={"init": "random", "arch": "alexnet", "fc_width": 32}, config_slice={},
        model_name="random-alexnet", device=CPU, n_threads=1, scores_path=tmp_path / "scores.npy",
        ap_path=tmp_path / "ap.csv", checkpoint_path=tmp_path / "checkpoint.pt",
    )  # fmt: skip
    ours = ("soundsup.finetune", "soundsup.finetune_job")
    messages = [record.getMessage() for record in caplog.records if record.name in ours]
    assert len(messages) >= 6 and all(m.startswith("[random-alexnet head seed1] ") for m in messages)
    iterations = [m for m in messages if re.search(r"\] iteration \d+/9 ", m)]
    assert [re.search(r"iteration (\d+)/9", m)[1] for m in iterations] == ["3", "6", "9"]
    assert all(ETA.search(m) for m in iterations) and iterations[-1].endswith(" ETA 0s")
    assert any(re.search(r"\] mAP [\d.]+ \(step\)", m) for m in messages)
    assert not (tmp_path / "tensorboard").exists()  # no folder given, none made


JOB_WITH_TENSORBOARD = JOB.replace("n_threads=1,", "n_threads=1, tensorboard_dir=f'{out}/tensorboard',")


@pytest.mark.skipif(
    importlib.util.find_spec("tensorboard") is None, reason="tensorboard is not installed (an optional extra)"
)
def test_tensorboard_events_mirror_the_history_of_a_killed_and_resumed_job(tmp_path):
    """The job logs every 7 iterations and checkpoints every 10; SIGKILLed once its events pass
    its checkpoint, then run again, its folder holds each logged iteration once: the history."""
    voc_root = write_voc(tmp_path / "VOC2007")
    out = tmp_path / "job"
    out.mkdir()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    command = [sys.executable, "-c", JOB_WITH_TENSORBOARD, str(voc_root), str(out), json.dumps(JOB_CONFIG)]
    process = subprocess.Popen(command, env=env, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 300
        while 14 not in [step for step, _ in tensorboard_scalars(out / "tensorboard").get("loss", [])]:
            assert process.poll() is None, "the job ended before logging iteration 14"
            assert time.monotonic() < deadline, "no iteration 14 within 300 s"
            time.sleep(0.002)
        process.send_signal(signal.SIGKILL)
    finally:
        process.wait()
    assert process.returncode == -signal.SIGKILL and not (out / "ap.csv").exists()
    checkpointed = torch.load(out / "checkpoint.pt", weights_only=True)["iteration"]
    killed = [step for step, _ in tensorboard_scalars(out / "tensorboard")["loss"]]
    assert max(killed) > checkpointed  # the killed job wrote steps that its checkpoint does not hold

    resumed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"at iteration {checkpointed} of 120" in resumed.stderr
    history = json.loads((out / "ap.csv.meta.json").read_text())["history"]
    scalars = tensorboard_scalars(out / "tensorboard")
    assert set(scalars) == {"loss", "lr", "images_per_second"}
    steps = [*range(7, 120, 7), 120]
    assert [record["iteration"] for record in history] == steps
    for tag, points in scalars.items():
        assert [step for step, _ in points] == steps, tag  # each logged iteration once, in order
        np.testing.assert_allclose(
            [value for _, value in points], [record[tag] for record in history], rtol=1e-6
        )


@pytest.fixture()
def small_tmpfs(tmp_path):
    """A factory of real tmpfs mounts of a given size (root only), unmounted afterwards."""
    mounts = []

    def mount(size_bytes: int) -> Path:
        target = tmp_path / f"tmpfs{len(mounts)}"
        target.mkdir()
        result = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size_bytes}", "tmpfs", str(target)],
            capture_output=True,
            text=True,
        )
        if result.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs to fill ({result.stderr.strip()}): needs root")
        mounts.append(target)
        return target

    yield mount
    for target in mounts:
        subprocess.run(["umount", str(target)], check=True)


def fill(folder: Path) -> Path:
    """Write zeros into ``folder`` until its file system is full; return the ballast file."""
    ballast = folder / "ballast"
    with open(ballast, "wb", buffering=0) as handle:
        try:
            while True:
                handle.write(b"\0" * 4096)
        except OSError as error:
            assert error.errno == errno.ENOSPC
    return ballast


def test_a_full_disk_at_a_checkpoint_keeps_the_last_good_one(data, tmp_path, small_tmpfs):
    train_images, train_labels, test_images, _ = data
    config = dataclasses.replace(TINY, iterations=12, log_every=4, checkpoint_every=4)
    first = dataclasses.replace(config, iterations=4)
    finetune_voc(
        random_alexnet(), train_images, train_labels, test_images, "all", first, 0, CPU, tmp_path / "c.pt"
    )
    size = (tmp_path / "c.pt").stat().st_size
    disk = small_tmpfs(int(size * 1.5))  # room for one checkpoint, not for its successor beside it
    checkpoint = disk / "checkpoint.pt"
    with pytest.raises(
        OSError, match=re.escape(f"cannot write {checkpoint}: No space left on device (ENOSPC)")
    ) as error:
        finetune_voc(
            random_alexnet(), train_images, train_labels, test_images, "all", config, 0, CPU, checkpoint
        )
    assert error.value.errno == errno.ENOSPC
    assert sorted(path.name for path in disk.iterdir()) == ["checkpoint.pt"]  # no temporary file left
    assert torch.load(checkpoint, weights_only=True)["iteration"] == 4

    shutil.copy(checkpoint, tmp_path / "kept.pt")  # the run goes on where there is room
    resumed = finetune_voc(
        random_alexnet(), train_images, train_labels, test_images, "all", config, 0, CPU, tmp_path / "kept.pt"
    )
    whole = finetune_voc(random_alexnet(), train_images, train_labels, test_images, "all", config, 0, CPU)
    np.testing.assert_array_equal(resumed[0], whole[0])


@pytest.mark.filterwarnings("ignore:no positive test item")  # 4 of the 20 classes are used
def test_a_full_disk_at_the_outputs_names_them_and_keeps_the_checkpoint(tmp_path, small_tmpfs, caplog):
    voc_root = write_voc(tmp_path / "VOC2007", n_train=16, n_test=8)
    config = FinetuneConfig(**{**JOB_CONFIG, "iterations": 12, "checkpoint_every": 5})
    disk = small_tmpfs(256 * 1024)
    ballast = fill(disk)
    arguments = dict(
        voc_root=voc_root, mode="head", seed=1, config=config, model_path=None, pretext_meta_path=None,
        backbone={"init": "random", "arch": "alexnet", "fc_width": 32}, config_slice={},
        model_name="random-alexnet", device=CPU, n_threads=1,
    )  # fmt: skip
    checkpoint = tmp_path / "checkpoint.pt"
    scores = disk / "voc" / "scores.npy"
    with pytest.raises(OSError, match=re.escape(f"cannot write {scores}: No space left on device (ENOSPC)")):
        run_finetune_job(
            **arguments, scores_path=scores, ap_path=disk / "voc" / "ap.csv", checkpoint_path=checkpoint
        )
    assert torch.load(checkpoint, weights_only=True)["iteration"] == 12
    assert not list((disk / "voc").iterdir())

    ballast.unlink()
    caplog.set_level("INFO", logger="soundsup.finetune")
    run_finetune_job(
        **arguments, scores_path=scores, ap_path=disk / "voc" / "ap.csv", checkpoint_path=checkpoint
    )
    assert "at iteration 12 of 12" in caplog.text  # nothing trained again
    assert not checkpoint.exists()
    whole = tmp_path / "whole"
    run_finetune_job(
        **arguments,
        scores_path=whole / "scores.npy",
        ap_path=whole / "ap.csv",
        checkpoint_path=whole / "c.pt",
    )
    np.testing.assert_array_equal(np.load(scores), np.load(whole / "scores.npy"))
    assert (disk / "voc" / "ap.csv").read_bytes() == (whole / "ap.csv").read_bytes()


def test_the_finetune_voc_adapter_writes_ap_scores_and_provenance(tmp_path):
    """Rule finetune_voc with a stand-in job: the random baseline, head mode, seed 0."""
    import pandas as pd
    from adapter_helpers import Job, rule_params_of, run_adapter, workflow_config

    voc_root = write_voc(tmp_path / "VOC2007")
    config = workflow_config(
        voc={"iterations": 6, "batch_size": 4, "crop_size": 64, "max_side": 80, "test_augmentations": 1}
    )
    out = tmp_path / "voc" / "random-alexnet" / "head" / "seed0"
    job = Job(
        input=Job(model=[], meta=[]),
        output=Job(scores=str(out / "scores.npy"), ap=str(out / "ap.csv")),
        params=Job(
            voc_root=str(voc_root),
            backbone={"init": "random", "arch": "alexnet", "fc_width": 32},
            voc=rule_params_of(config, "voc"),
            checkpoint=str(out / "checkpoint.pt"),
        ),
        config=config,
        wildcards=Job(model="random-alexnet", mode="head", seed="0"),
        log=[str(tmp_path / "finetune.log")],
        rule="finetune_voc",
        threads=1,
    )
    run_adapter("finetune_voc", job)
    ap = pd.read_csv(out / "ap.csv")
    assert list(ap["class"]) == list(VOC_CLASSES) and ap["ap"].between(0, 1).all()
    assert np.load(out / "scores.npy").shape == (12, 20)  # the 12 test images
    meta = json.loads((out / "ap.csv.meta.json").read_text())
    assert meta["model"] == "random-alexnet" and meta["mode"] == "head" and meta["seed"] == 0
    assert not (out / "checkpoint.pt").exists() and not (out / "finetuned.pt").exists()
