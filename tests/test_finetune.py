"""VOC fine-tuning on tiny images where the class is the colour of a square."""

import dataclasses
import warnings

import numpy as np
import pytest
import torch

from soundsup.finetune import (
    FinetuneConfig,
    WeightsUnavailable,
    crop_batch,
    finetune_voc,
    load_backbone,
    masked_bce,
    sample_crops,
)
from soundsup.metrics import average_precision_table
from soundsup.models import build_model, conv_layers, output_layer, save_checkpoint

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


def random_alexnet(seed=0):
    torch.manual_seed(seed)
    return load_backbone("random", "alexnet", 64, None, None)


def snapshot(model):
    return {name: tensor.detach().clone() for name, tensor in model.state_dict().items()}


@pytest.fixture(scope="module", params=["head", "all"])
def finetuned(request, data):
    train_images, train_labels, test_images, _ = data
    model = random_alexnet()
    before = snapshot(model)
    scores, history = finetune_voc(
        model, train_images, train_labels, test_images, request.param, TINY, 0, CPU
    )
    return request.param, before, model, scores, history


def test_learns_above_chance(finetuned, data):
    mode, _, _, scores, history = finetuned
    test_labels = data[3]
    assert scores.shape == (20, 20) and scores.dtype == np.float32
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # classes 4-19 have no positive test image
        table = average_precision_table(test_labels, scores)
    # Chance: 5 positives in 20 images gives an AP near 0.3.
    assert table["ap"][:4].mean() > 0.55, (mode, table["ap"][:4].tolist())
    assert [record["iteration"] for record in history] == [50, 100]
    assert [record["lr"] for record in history] == [TINY.lr, TINY.lr * TINY.lr_gamma]  # stepped at 61
    assert history[-1]["loss"] < 20 * np.log(2)  # the loss at the start is 20 ln 2 per image


def test_head_mode_freezes_the_trunk_bit_for_bit(finetuned):
    mode, before, model, _, _ = finetuned
    after = model.state_dict()
    conv_names = [name for name in before if name.startswith("features.")]
    fc_names = [
        name for name in before if name.startswith("classifier.") and not name.startswith("classifier.6")
    ]
    assert conv_names and fc_names
    conv_same = [torch.equal(before[name], after[name]) for name in conv_names]
    assert all(not torch.equal(before[name], after[name]) for name in fc_names)
    assert all(conv_same) if mode == "head" else not any(conv_same)
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


def test_crops_follow_the_protocol():
    config = FinetuneConfig(crop_size=100, scale_low=0.5, scale_high=2.0)
    generator = torch.Generator().manual_seed(0)
    shapes = [(375, 500)] * 2000 + [(120, 90)] * 50 + [(40, 30)] * 5
    crops = sample_crops(shapes, config, generator)
    sides = np.array([side for _, _, side, _ in crops[:2000]])
    assert sides.min() >= 50 and sides.max() <= 200 and sides.max() > 190 and sides.min() < 55
    for (height, width), (top, left, side, _) in zip(shapes, crops, strict=True):
        assert 0 <= top <= height - side and 0 <= left <= width - side
    # s <= min(2, H/100, W/100): a 120 x 90 image allows at most a side of 90.
    assert all(50 <= side <= 90 for _, _, side, _ in crops[2000:2050])
    # An image smaller than scale_low * crop_size: its whole shorter side.
    assert all(side == 30 for _, _, side, _ in crops[2050:])
    mirrored = np.mean([mirror for *_, mirror in crops])
    assert 0.45 < mirrored < 0.55
    again = sample_crops(shapes, config, torch.Generator().manual_seed(0))
    assert again == crops


def test_crop_batch_cuts_mirrors_and_normalises():
    image = torch.arange(10 * 12 * 3, dtype=torch.int64).remainder(256).to(torch.uint8).view(10, 12, 3)
    batch = crop_batch([image, image], [(1, 2, 8, False), (1, 2, 8, True)], crop_size=8)
    assert batch.shape == (2, 3, 8, 8) and batch.dtype == torch.float32
    patch = image[1:9, 2:10].permute(2, 0, 1).float() / 255
    mean = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)
    torch.testing.assert_close(batch[0], (patch - mean) / std)
    torch.testing.assert_close(batch[1], batch[0].flip(-1))
    resized = crop_batch([image], [(0, 0, 10, False)], crop_size=5)
    assert resized.shape == (1, 3, 5, 5)


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
        0.9,
        1e-6,
        10.0,
        2.0,
    )
    assert (config.crop_size, config.scale_low, config.scale_high, config.test_augmentations) == (
        227,
        0.5,
        2.0,
        10,
    )
    assert FinetuneConfig(**dataclasses.asdict(config)) == config
    with pytest.raises(ValueError, match="voc.batch_size"):
        FinetuneConfig(batch_size=0)
    with pytest.raises(ValueError, match="scale_low"):
        FinetuneConfig(scale_low=2.5)


def test_bad_training_labels_are_refused(data):
    train_images, train_labels, test_images, _ = data
    with pytest.raises(ValueError, match="train_labels"):
        finetune_voc(random_alexnet(), train_images, train_labels[:5], test_images, "head", TINY, 0, CPU)
    with pytest.raises(ValueError, match="mode"):
        finetune_voc(random_alexnet(), train_images, train_labels, test_images, "fc7", TINY, 0, CPU)


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
