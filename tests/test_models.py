"""The backbones: DeepCluster's batch-norm AlexNet, torchvision's variants, and the model file."""

from __future__ import annotations

import errno
import math

import pytest
import torch
from tmpfs import small_tmpfs
from torch import nn
from torchvision import models as tv_models

from soundsup.models import (
    BatchNormAlexNet,
    WriteError,
    build_model,
    conv_layers,
    head_modules,
    load_model,
    model_variant,
    output_layer,
    replace_head,
    save_checkpoint,
    save_torch,
    set_trainable,
    train_mode,
)


def test_alexnet_is_deepclusters_batch_norm_alexnet():
    torch.manual_seed(0)
    model = build_model("alexnet", 7, fc_width=4096)
    assert isinstance(model, BatchNormAlexNet) and model_variant(model) == ("alexnet", "batchnorm")
    kinds = [type(m).__name__ for m in model.features]
    block, pooled = ["Conv2d", "BatchNorm2d", "ReLU"], ["Conv2d", "BatchNorm2d", "ReLU", "MaxPool2d"]
    assert kinds == pooled * 2 + block * 2 + pooled
    convs = conv_layers(model)
    assert list(convs) == ["conv1", "conv2", "conv3", "conv4", "conv5"]
    assert [c.out_channels for c in convs.values()] == [96, 256, 384, 384, 256]
    assert [(c.kernel_size[0], c.stride[0], c.padding[0]) for c in convs.values()] == [
        (11, 4, 2), (5, 1, 2), (3, 1, 1), (3, 1, 1), (3, 1, 1),
    ]  # fmt: skip
    for conv in convs.values():  # N(0, sqrt(2 / (k^2 out_channels))), zero bias
        expected = math.sqrt(2 / (conv.kernel_size[0] ** 2 * conv.out_channels))
        assert conv.weight.std().item() == pytest.approx(expected, rel=0.05)
        assert abs(conv.weight.mean().item()) < 0.1 * expected and not conv.bias.any()
    linears = [m for m in model.classifier if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(9216, 4096), (4096, 4096), (4096, 7)]
    for linear in linears:
        assert linear.weight.std().item() == pytest.approx(0.01, rel=0.05) and not linear.bias.any()
    assert output_layer(model) is model.classifier[-1] is linears[-1]
    assert [type(m).__name__ for m in model.classifier] == [
        "Dropout", "Linear", "ReLU", "Dropout", "Linear", "ReLU", "Linear",
    ]  # fmt: skip


def test_alexnet_runs_at_227_and_small_crops():
    torch.manual_seed(0)
    model = build_model("alexnet", 5, fc_width=32).eval()
    pool5 = model.features(torch.randn(2, 3, 227, 227))
    assert pool5.shape == (2, 256, 6, 6)  # the adaptive pool is the identity at full size
    torch.testing.assert_close(model.avgpool(pool5), pool5)
    for size in (64, 96, 224):
        assert model(torch.randn(2, 3, size, size)).shape == (2, 5)


def test_torchvision_alexnet_only_on_request():
    plain = build_model("alexnet", 1000, variant="torchvision")
    assert type(plain) is tv_models.AlexNet and model_variant(plain) == ("alexnet", "torchvision")
    assert not any(isinstance(m, nn.BatchNorm2d) for m in plain.modules())
    plain.load_state_dict(tv_models.alexnet(weights=None).state_dict())  # what ImageNet weights fit
    assert list(conv_layers(plain)) == ["conv1", "conv2", "conv3", "conv4", "conv5"]
    assert build_model("alexnet", 3, 64, variant="torchvision").classifier[1].out_features == 64
    assert model_variant(build_model("resnet18", 3)) == ("resnet18", "torchvision")
    with pytest.raises(ValueError, match="unknown resnet18 variant 'batchnorm'"):
        build_model("resnet18", 3, variant="batchnorm")
    with pytest.raises(ValueError, match="unknown architecture 'vgg'"):
        build_model("vgg", 3)


def test_head_mode_trains_fc6_to_fc8_and_keeps_batch_norm_statistics():
    torch.manual_seed(0)
    model = build_model("alexnet", 4, fc_width=32)
    replace_head(model, 20)
    assert output_layer(model).out_features == 20 and model.classifier[-1].out_features == 20
    assert head_modules(model) == [model.classifier]
    trainable = set_trainable(model, "head")
    assert {id(p) for p in trainable} == {id(p) for p in model.classifier.parameters()}
    before = {k: v.clone() for k, v in model.features.state_dict().items()}
    train_mode(model, "head")
    assert not model.features.training and model.classifier.training
    model(torch.randn(4, 3, 64, 64)).sum().backward()
    after = model.features.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # running mean/var untouched
    train_mode(model, "all")
    model(torch.randn(4, 3, 64, 64))
    assert not torch.equal(before["1.running_mean"], model.features.state_dict()["1.running_mean"])


def test_model_file_records_the_variant_and_refuses_old_files(tmp_path):
    torch.manual_seed(0)
    model = build_model("alexnet", 6, fc_width=48)
    save_checkpoint(tmp_path / "bn.pt", model, "alexnet", 6, 48, val_acc=0.5)
    loaded, payload = load_model(tmp_path / "bn.pt")
    assert payload["variant"] == "batchnorm" and payload["val_acc"] == 0.5
    assert isinstance(loaded, BatchNormAlexNet)
    for key, value in model.state_dict().items():
        assert torch.equal(value, loaded.state_dict()[key]), key

    plain = build_model("alexnet", 6, 48, variant="torchvision")
    save_checkpoint(tmp_path / "plain.pt", plain, "alexnet", 6, 48)
    assert type(load_model(tmp_path / "plain.pt")[0]) is tv_models.AlexNet

    old = {"arch": "alexnet", "n_outputs": 6, "fc_width": 48, "state_dict": plain.state_dict()}
    torch.save(old, tmp_path / "old.pt")  # what the format before batch norm wrote
    with pytest.raises(ValueError, match=r"old\.pt: a model file of format 1.*without batch norm"):
        load_model(tmp_path / "old.pt")
    with pytest.raises(ValueError, match="the model is a alexnet, not a resnet18"):
        save_checkpoint(tmp_path / "x.pt", model, "resnet18", 6, 48)


def test_full_disk_names_the_file_and_keeps_the_old_one(tmp_path):
    payload = {"weights": torch.arange(2_000_000, dtype=torch.float32)}  # 8 MB
    with small_tmpfs(tmp_path / "disk", 12_000_000) as disk:
        save_torch(disk / "state.pt", payload, "training checkpoint")
        bigger = {"weights": torch.zeros(2_500_000)}  # 10 MB more do not fit beside the first
        with pytest.raises(WriteError) as caught:
            save_torch(disk / "state.pt", bigger, "training checkpoint")
        assert caught.value.errno == errno.ENOSPC
        message = str(caught.value)
        assert f"training checkpoint {disk / 'state.pt'}" in message and "ENOSPC" in message
        assert "MB free" in message
        assert [p.name for p in disk.iterdir()] == ["state.pt"]  # the partial temporary file is gone
        kept = torch.load(disk / "state.pt", weights_only=True)
        assert torch.equal(kept["weights"], payload["weights"])


def test_backbone_files_load_with_the_three_lines_the_readme_gives(tmp_path):
    import torchvision

    from soundsup.models import save_backbone

    torch.manual_seed(0)
    resnet, alexnet = build_model("resnet18", 8), build_model("alexnet", 8, fc_width=32)
    save_backbone(tmp_path / "resnet18.pth", resnet)
    save_backbone(tmp_path / "alexnet.pth", alexnet)
    assert not any(name.startswith("fc.") for name in torch.load(tmp_path / "resnet18.pth"))
    # The README's lines, for ResNet-18: torchvision's own definition, strict.
    model = torchvision.models.resnet18()
    model.fc = torch.nn.Identity()
    model.load_state_dict(torch.load(tmp_path / "resnet18.pth", weights_only=True), strict=True)
    # ... and for the batch-norm AlexNet: soundsup's definition, strict.
    trunk = build_model("alexnet", 1, fc_width=32)
    trunk.classifier[-1] = torch.nn.Identity()
    trunk.load_state_dict(torch.load(tmp_path / "alexnet.pth", weights_only=True), strict=True)
    x = torch.randn(2, 3, 64, 64)
    resnet.eval(), model.eval(), alexnet.eval(), trunk.eval()
    with torch.no_grad():
        features = torch.nn.Sequential(*list(resnet.children())[:-1])(x).flatten(1)
        torch.testing.assert_close(model(x), features)  # the same features as the trained trunk
        alexnet.classifier[-1] = torch.nn.Identity()
        torch.testing.assert_close(trunk(x), alexnet(x))


@pytest.mark.parametrize("source", ["backbone.pth", "torchvision", "model.pt", "DataParallel"])
def test_load_trunk_takes_the_checkpoint_formats_users_have(tmp_path, source):
    from soundsup.models import load_trunk, save_backbone

    torch.manual_seed(1)
    trained = build_model("resnet18", 8)
    path = tmp_path / "weights.pth"
    if source == "backbone.pth":
        save_backbone(path, trained)
    elif source == "torchvision":  # torchvision's file: every layer, its own 8-class fc
        torch.save(trained.state_dict(), path)
    elif source == "model.pt":
        torch.save({"state_dict": trained.state_dict(), "arch": "resnet18"}, path)
    else:
        torch.save({f"module.{k}": v for k, v in trained.state_dict().items()}, path)
    torch.manual_seed(2)
    model = load_trunk(build_model("resnet18", 1000), path)
    for key, value in trained.state_dict().items():
        if not key.startswith("fc."):
            assert torch.equal(model.state_dict()[key], value), key
    assert model.fc.out_features == 1000  # the output layer is the new network's


def test_load_trunk_names_the_file_and_what_does_not_fit(tmp_path):
    from soundsup.models import load_trunk, save_backbone

    save_backbone(tmp_path / "alexnet.pth", build_model("alexnet", 8, fc_width=32))
    with pytest.raises(
        ValueError,
        match=r"alexnet.pth: not the trunk of resnet18 \(torchvision\): missing bn1\.bias, bn1\.running_mean",
    ):
        load_trunk(build_model("resnet18", 1000), tmp_path / "alexnet.pth")
    with pytest.raises(
        ValueError, match=r"wrong shape classifier.1.weight \(32, 9216\) \(expected \(4096, 9216\)\)"
    ):
        load_trunk(build_model("alexnet", 1000, fc_width=4096), tmp_path / "alexnet.pth")
    with pytest.raises(ValueError, match=r"unexpected features\.1\.bias"):  # batch norm in a plain AlexNet
        load_trunk(build_model("alexnet", 1000, fc_width=32, variant="torchvision"), tmp_path / "alexnet.pth")
    (tmp_path / "text.pth").write_text("not a torch file")
    with pytest.raises(ValueError, match="text.pth: cannot be read as a torch state dict"):
        load_trunk(build_model("resnet18", 1000), tmp_path / "text.pth")
    torch.save({"epoch": 3}, tmp_path / "dict.pth")
    with pytest.raises(ValueError, match="dict.pth: not a state dict"):
        load_trunk(build_model("resnet18", 1000), tmp_path / "dict.pth")
