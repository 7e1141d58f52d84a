"""Frozen-feature evaluations: the SVM protocol on data with a known answer, low-shot sampling,
k-NN, the pooling of every layer, the feature files, the tables and figures, the adapters."""

import concurrent.futures
import dataclasses
import json
import logging
import runpy
import sys
import types
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from torch import nn
from torch.nn import functional

from soundsup.config import FROZEN_LAYERS, frozen_layers, rule_params, validate_config
from soundsup.frozen import layer_features, layer_modules, pooled_grid, prepare_images
from soundsup.frozen_report import (
    FrozenTableError,
    knn_table,
    lowshot_table,
    plot_lowshot,
    plot_svm_layers,
    svm_layers_table,
)
from soundsup.metrics import average_precision_table
from soundsup.models import build_model
from soundsup.svm import (
    LowShotConfig,
    SolverConfig,
    SvmConfig,
    fit_svm,
    knn_scores,
    l2_normalize,
    load_features,
    lowshot_rng,
    lowshot_sample,
    lowshot_svms,
    row_space,
    save_features,
    svm_ap_table,
    train_svms,
)

REPO = Path(__file__).resolve().parent.parent
SCHEMA = REPO / "schemas" / "config.schema.yaml"
SMALL_GRID = SolverConfig(costs=(0.1, 1.0, 10.0))
N_CLASSES = 20


def class_features(labels, rng, dims=80, signal=1.0, noise=0.3):
    """Non-negative features in which class c raises dimensions 2c and 2c+1 of its positives
    above every other image's (noise U[0, noise) elsewhere): linearly separable classes."""
    x = rng.uniform(0.0, noise, (len(labels), dims))
    for c in range(labels.shape[1]):
        x[labels[:, c] == 1, 2 * c : 2 * c + 2] += signal
    return x.astype(np.float32)


def random_labels(n, rng, prevalence=0.3, difficult=0.03):
    labels = np.where(rng.random((n, N_CLASSES)) < prevalence, 1, -1).astype(np.int8)
    labels[:N_CLASSES] = -1
    labels[np.arange(N_CLASSES), np.arange(N_CLASSES)] = 1  # every class has a positive
    labels[rng.random(labels.shape) < difficult] = 0
    return labels


@pytest.fixture(scope="module")
def separable():
    rng = np.random.default_rng(0)
    train_labels, test_labels = random_labels(240, rng), random_labels(200, rng)
    return class_features(train_labels, rng), train_labels, class_features(test_labels, rng), test_labels


# ---------------------------------------------------------------------------------------------
# full SVMs


def test_separable_features_give_ap_one(separable):
    train, train_labels, test, test_labels = separable
    scores, summary = train_svms(train, train_labels, test, SMALL_GRID, SvmConfig(), seed=0)
    table = svm_ap_table(test_labels, scores, summary)
    assert table["ap"].min() == pytest.approx(1.0, abs=1e-12)  # perfect ranking, up to rounding
    assert table["ap_voc07"].min() == pytest.approx(1.0, abs=1e-12)
    assert list(table["class"][:3]) == ["aeroplane", "bicycle", "bird"]
    assert table["cost"].isin(SMALL_GRID.costs).all() and table["cv_ap"].between(0.9, 1).all()
    # Difficult test images are left out of AP: give them the highest scores, nothing changes.
    cheat = np.where(test_labels == 0, scores.max() + 1, scores)
    assert average_precision_table(test_labels, cheat)["ap"].min() == pytest.approx(1.0, abs=1e-12)


def test_shuffled_labels_give_chance(separable):
    train, train_labels, test, test_labels = separable
    shuffled = train_labels[np.random.default_rng(1).permutation(len(train_labels))]
    scores, summary = train_svms(train, shuffled, test, SMALL_GRID, SvmConfig(), seed=0)
    table = svm_ap_table(test_labels, scores, summary)
    prevalence = (table["n_pos"] / (table["n_pos"] + table["n_neg"])).mean()
    assert abs(table["ap"].mean() - prevalence) < 0.05, (table["ap"].mean(), prevalence)
    assert table["ap"].max() < 0.6


def overlapping_classes(seed=3, n=150, dims=40):
    """One class whose positives differ from the negatives by a small shift: the cost matters."""
    rng = np.random.default_rng(seed)
    labels = np.where(rng.random((n, 1)) < 0.35, 1, -1).astype(np.int8)
    x = rng.normal(size=(n, dims)) + 0.35 * (labels == 1)
    return x, labels


def test_cross_validation_is_the_benchmarks_and_picks_its_best_cost():
    # The benchmark scores each cost with cross_val_score(LinearSVC(...), X, y, cv=3,
    # scoring="average_precision") on the normalised features: the same numbers must come out.
    from sklearn.model_selection import cross_val_score
    from sklearn.svm import LinearSVC

    x, labels = overlapping_classes()
    solver = SolverConfig(costs=(0.001, 0.01, 0.1, 1.0, 10.0, 100.0))
    _, summary = train_svms(x, labels, x[:10], solver, SvmConfig(), seed=0)
    ours = np.array(summary["cv_ap_by_cost"][0])
    expected = [
        cross_val_score(
            LinearSVC(C=cost, class_weight={1: 2, -1: 1}, dual=True, max_iter=2000, random_state=0),
            l2_normalize(x),
            labels[:, 0],
            cv=3,
            scoring="average_precision",
        ).mean()
        for cost in solver.costs
    ]
    np.testing.assert_allclose(ours, expected, atol=1e-9)
    assert np.ptp(ours) > 0.02  # the costs differ, so the choice means something
    assert summary["cost"][0] == solver.costs[int(np.argmax(ours))]
    assert summary["cv_ap"][0] == pytest.approx(ours.max())
    # A grid of that one cost gives the same SVM; a grid without it chooses another.
    best = summary["cost"][0]
    _, alone = train_svms(x, labels, x[:10], dataclasses.replace(solver, costs=(best,)), SvmConfig(), 0)
    assert alone["cost"][0] == best and alone["cv_ap"][0] == pytest.approx(ours.max())
    others = tuple(cost for cost in solver.costs if cost != best)
    _, without = train_svms(x, labels, x[:10], dataclasses.replace(solver, costs=others), SvmConfig(), 0)
    assert without["cost"][0] != best


def test_row_space_gives_the_same_svm():
    rng = np.random.default_rng(4)
    x = l2_normalize(np.abs(rng.normal(size=(60, 500))))
    test = l2_normalize(np.abs(rng.normal(size=(30, 500))))
    y = np.where(rng.random(60) < 0.4, 1, -1)
    z, z_test = row_space(x, test)
    assert z.shape == (60, 60) and z_test.shape == (30, 60)
    np.testing.assert_allclose(z @ z.T, x @ x.T, atol=1e-10)
    for cost in (0.01, 1.0, 100.0):
        weights, bias, _ = fit_svm(x, y, cost, SolverConfig(), seed=0)
        rotated, rotated_bias, _ = fit_svm(z, y, cost, SolverConfig(), seed=0)
        np.testing.assert_allclose(z_test @ rotated + rotated_bias, test @ weights + bias, atol=1e-6)
    tall = rng.normal(size=(50, 8))
    assert row_space(tall, tall[:3])[0].shape == (50, 8)  # more images than dimensions: unchanged
    sparse = x * (rng.random(x.shape) < 0.1)  # ~50 nonzeros per row, 60 images: as it is
    np.testing.assert_array_equal(row_space(sparse, test)[0], sparse)


def test_parallel_fits_give_the_same_result(separable):
    train, train_labels, test, _ = separable
    labels = train_labels.copy()
    labels[np.random.default_rng(2).random(labels.shape) < 0.2] *= -1  # noisy: liblinear works for it
    labels[labels == 0] = -1
    one = train_svms(train, labels, test, SMALL_GRID, SvmConfig(), seed=0, n_workers=1)
    two = train_svms(train, labels, test, SMALL_GRID, SvmConfig(), seed=0, n_workers=2)
    np.testing.assert_array_equal(one[0], two[0])
    pd.testing.assert_frame_equal(one[1], two[1])


def test_difficult_images_are_negatives_or_left_out(separable):
    train, train_labels, test, _ = separable
    _, negative = train_svms(train, train_labels, test, SMALL_GRID, SvmConfig(difficult="negative"), 0)
    _, ignore = train_svms(train, train_labels, test, SMALL_GRID, SvmConfig(difficult="ignore"), 0)
    difficult = (train_labels == 0).sum(axis=0)
    assert (negative["n_train_neg"] - ignore["n_train_neg"] == difficult).all()
    assert (negative["n_train_pos"] == ignore["n_train_pos"]).all()


def test_classes_without_positives_or_scorable_folds_are_recorded(separable, caplog):
    train, train_labels, test, test_labels = separable
    labels = train_labels.copy()
    labels[:, 0] = -1  # aeroplane: no positive trainval image
    labels[:, 1] = -1
    labels[0, 1] = 1  # bicycle: one, so no validation fold has a positive to score
    scores, summary = train_svms(train, labels, test, SMALL_GRID, SvmConfig(), seed=0)
    assert np.isnan(summary["cost"][0]) and (scores[:, 0] == 0).all()
    assert summary["cost"][1] == 1.0 and np.isnan(summary["cv_ap"][1])  # the grid's cost nearest 1
    assert "aeroplane: no positive" in caplog.text and "bicycle: no fold can be scored" in caplog.text
    table = svm_ap_table(test_labels, scores, summary)
    assert table["ap"][2:].min() == pytest.approx(1.0, abs=1e-12)


def test_bad_svm_inputs_are_refused(separable):
    train, train_labels, test, _ = separable
    with pytest.raises(ValueError, match="as many rows"):
        train_svms(train[:-1], train_labels, test, SMALL_GRID, SvmConfig(), 0)
    bad = train.copy()
    bad[3, 4] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        train_svms(bad, train_labels, test, SMALL_GRID, SvmConfig(), 0)
    with pytest.raises(ValueError, match="do not match"):
        train_svms(train, train_labels, test[:, :-1], SMALL_GRID, SvmConfig(), 0)
    with pytest.raises(ValueError, match="svm.costs"):
        SolverConfig(costs=(1.0, -1.0))
    with pytest.raises(ValueError, match="svm.difficult"):
        SvmConfig(difficult="positive")


# ---------------------------------------------------------------------------------------------
# low-shot


def test_lowshot_sample_draws_exactly_n_positives_per_class(separable):
    _, labels, _, _ = separable
    for size in (1, 2, 4):
        sample = lowshot_sample(labels, size, 5, lowshot_rng(0, 0, size))
        assert ((sample == 1).sum(axis=0) == size).all()
        assert ((sample == -1).sum(axis=0) == 5 * size).all()
        assert (labels[sample == 1] == 1).all() and (labels[sample == -1] == -1).all()
        assert not (sample[labels == 0] != 0).any()  # a difficult image is never drawn
    same = lowshot_sample(labels, 4, 5, lowshot_rng(0, 0, 4))
    np.testing.assert_array_equal(same, lowshot_sample(labels, 4, 5, lowshot_rng(0, 0, 4)))
    assert (same != lowshot_sample(labels, 4, 5, lowshot_rng(0, 1, 4))).any()
    assert (same != lowshot_sample(labels, 4, 5, lowshot_rng(1, 0, 4))).any()


def test_lowshot_sample_names_the_class_that_lacks_images(separable):
    _, labels, _, _ = separable
    few = labels.copy()
    few[:, 7] = np.where(few[:, 7] == 1, -1, few[:, 7])
    few[:3, 7] = 1
    with pytest.raises(ValueError, match="class cat has 3 positive trainval images; a low-shot size of 4"):
        lowshot_sample(few, 4, 1, lowshot_rng(0, 0, 4))
    with pytest.raises(ValueError, match="negative trainval images"):
        lowshot_sample(labels, 8, 100, lowshot_rng(0, 0, 8))


def test_lowshot_svms_report_one_cost_per_size(separable):
    train, train_labels, test, test_labels = separable
    config = LowShotConfig(lowshot_sizes=(1, 4), lowshot_samples=2, lowshot_negative_ratio=5)
    runs = lowshot_svms(train, train_labels, test, test_labels, SMALL_GRID, config, seed=0)
    assert len(runs) == 2 * 2 * 3 and set(runs["sample"]) == {1, 2}
    selected = runs[runs["selected"]]
    assert len(selected) == 4 and selected.groupby("positives")["cost"].nunique().eq(1).all()
    means = runs.groupby(["positives", "cost"])["map"].mean()
    for size, group in selected.groupby("positives"):
        assert means[size].max() == pytest.approx(means[(size, group["cost"].iloc[0])])
    by_size = selected.groupby("positives")["map"].mean()
    assert by_size[4] > 90.0 and by_size[4] > by_size[1] + 5  # separable classes: more positives, better
    fixed = dataclasses.replace(config, lowshot_cost=10.0)
    runs = lowshot_svms(train, train_labels, test, test_labels, SMALL_GRID, fixed, seed=0)
    assert set(runs["cost"]) == {10.0} and runs["selected"].all() and len(runs) == 4


# ---------------------------------------------------------------------------------------------
# k-NN


def test_knn_scores_sum_the_similarities_of_positive_neighbours():
    train = np.array([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0], [-1.0, 0.0]])
    labels = np.array([[1, -1], [0, 1], [-1, 1], [1, 1]], dtype=np.int8)
    test = np.array([[2.0, 0.0], [0.0, 3.0]])
    scores = knn_scores(train, labels, test, k=2)
    # test 0: neighbours 0 (cos 1) and 1 (cos 0.8); test 1: neighbours 2 (cos 1) and 1 (cos 0.6)
    np.testing.assert_allclose(scores, [[1.0, 0.8], [0.0, 1.6]], atol=1e-5)


def clusters(n_per_class, rng):
    """One class per image, 30 images per class around the class's own direction."""
    classes = np.repeat(np.arange(N_CLASSES), n_per_class)
    labels = np.full((len(classes), N_CLASSES), -1, dtype=np.int8)
    labels[np.arange(len(classes)), classes] = 1
    return np.eye(N_CLASSES)[classes] + rng.uniform(0, 0.3, (len(classes), N_CLASSES)), labels


def test_knn_on_clusters_gives_ap_one_and_on_shuffled_labels_chance():
    rng = np.random.default_rng(5)
    (train, train_labels), (test, test_labels) = clusters(30, rng), clusters(10, rng)
    table = average_precision_table(test_labels, knn_scores(train, train_labels, test, k=20))
    assert table["ap"].min() == pytest.approx(1.0, abs=1e-12)
    shuffled = train_labels[rng.permutation(len(train_labels))]
    chance = average_precision_table(test_labels, knn_scores(train, shuffled, test, k=20))
    assert abs(chance["ap"].mean() - 1 / N_CLASSES) < 0.05


# ---------------------------------------------------------------------------------------------
# pooled features of every layer


def test_pooled_grids_are_the_benchmarks_at_224_px():
    # VISSL's AvgPool2d kernels at 224 px give these grids (DeepCluster AlexNet: conv1 55 px
    # k19/s4 -> 10, conv2 27 px k12/s3 -> 6, conv3-4 13 px k9 -> 5, conv5 13 px k8 -> 6;
    # ResNet-50: conv1 112 px k10/s10/p4 -> 12, res2 56 px k16/s8 -> 6, res3 28 px k13/s5 -> 4,
    # res4 14 px k8/s3 -> 3, res5 7 px k6 -> 2).
    alexnet = [(96, 55), (256, 27), (384, 13), (384, 13), (256, 13)]
    assert [pooled_grid(c, h, h, 9000)[0] for c, h in alexnet] == [10, 6, 5, 5, 6]
    resnet50 = [(64, 112), (256, 56), (512, 28), (1024, 14), (2048, 7)]
    assert [pooled_grid(c, h, h, 9000)[0] for c, h in resnet50] == [12, 6, 4, 3, 2]
    assert pooled_grid(256, 1, 1, 9000) == (1, 1) and pooled_grid(64, 5, 9, 9000) == (5, 9)
    assert pooled_grid(100000, 7, 7, 9000) == (1, 1)


@pytest.mark.parametrize(
    ("arch", "size", "dims"),
    [
        ("alexnet", 227, [9600, 9216, 9600, 9600, 9216, 9216, 32, 32]),  # Goyal et al.'s AlexNet dims
        ("resnet18", 224, [9216, 8192, 9216, 8192]),
        ("alexnet", 64, [9600, 9216, 3456, 3456, 2304, 256, 32, 32]),
        ("resnet18", 64, [9216, 8192, 4096, 2048]),
    ],
)
def test_pooled_dimensions_per_layer(arch, size, dims):
    torch.manual_seed(0)
    model = build_model(arch, 10, fc_width=32).eval()
    features = layer_features(model, arch, torch.randn(3, 3, size, size), 9000)
    assert list(features) == list(FROZEN_LAYERS[arch])
    assert [values.shape for values in features.values()] == [(3, d) for d in dims]
    assert all(values.dtype == torch.float32 and (values >= 0).all() for values in features.values())


def test_layers_are_read_after_their_relu_and_dropout_is_off():
    torch.manual_seed(1)
    model = build_model("alexnet", 10, fc_width=32, variant="torchvision").eval()  # the ImageNet AlexNet
    x = torch.randn(2, 3, 80, 80)
    features = layer_features(model, "alexnet", x, 9000)
    with torch.no_grad():
        conv2 = model.features[:5](x)  # conv1, relu, pool, conv2, relu
        pool5 = model.features(x)
        fc7 = model.classifier[:6](torch.flatten(model.avgpool(pool5), 1))
    torch.testing.assert_close(features["conv2"], functional.adaptive_avg_pool2d(conv2, (7, 7)).flatten(1))
    torch.testing.assert_close(features["pool5"], pool5.flatten(1))
    torch.testing.assert_close(features["fc7"], fc7)
    torch.testing.assert_close(layer_features(model, "alexnet", x, 9000)["fc7"], fc7)  # no dropout


def batch_norm_alexnet():
    """The pretext AlexNet (DeepCluster's: batch norm after every convolution), its batch-norm
    statistics and scales moved off their initial values so that reading before them shows."""
    model = build_model("alexnet", 10, fc_width=32)
    for module in model.features:
        if isinstance(module, nn.BatchNorm2d):
            nn.init.uniform_(module.running_mean, -0.5, 0.5)
            nn.init.uniform_(module.weight, 0.5, 1.5)
    return model.eval()


def test_a_batch_norm_alexnet_is_read_after_batch_norm_and_relu():
    model = batch_norm_alexnet()
    x = torch.randn(2, 3, 96, 96)
    features = layer_features(model, "alexnet", x, 9000)
    with torch.no_grad():
        conv1 = model.features[:3](x)  # conv, batch norm, relu
    torch.testing.assert_close(features["conv1"], functional.adaptive_avg_pool2d(conv1, (10, 10)).flatten(1))
    assert features["conv3"].shape == (2, 384 * 5 * 5) and features["pool5"].shape == (2, 256 * 2 * 2)


def test_a_network_without_a_relu_after_a_layer_is_refused():
    model = build_model("alexnet", 10, fc_width=32)
    model.classifier[2] = nn.Identity()  # the ReLU after fc6
    with pytest.raises(ValueError, match="layer fc6: no ReLU follows Linear"):
        layer_modules(model, "alexnet")
    with pytest.raises(ValueError, match="unknown architecture"):
        layer_modules(model, "vgg16")


def test_images_are_resized_whole_and_normalised():
    image = np.zeros((40, 80, 3), dtype=np.uint8)
    image[:, 40:] = 255  # right half white
    batch = prepare_images([image], 32, torch.device("cpu"))
    assert batch.shape == (1, 3, 32, 32)
    white = (1 - 0.485) / 0.229
    assert batch[0, 0, :, -1].min() == pytest.approx(white, abs=1e-4)  # the right edge survives: no crop
    assert batch[0, 0, :, 0].max() == pytest.approx(-0.485 / 0.229, abs=1e-4)
    with pytest.raises(ValueError, match="image 0"):
        prepare_images([image[..., 0]], 32, torch.device("cpu"))


# ---------------------------------------------------------------------------------------------
# feature files


def test_feature_files_round_trip_and_refuse_mismatches(tmp_path):
    ids = ["000001", "000002", "000003"]
    features = {"conv1": np.arange(12, dtype=np.float32).reshape(3, 4), "fc7": np.ones((3, 2), np.float32)}
    path = tmp_path / "trainval.npz"
    save_features(path, ids, features)
    np.testing.assert_array_equal(load_features(path, "conv1", ids), features["conv1"])
    with pytest.raises(ValueError, match=r"no 'pool5'; layers \['conv1', 'fc7'\]"):
        load_features(path, "pool5")
    with pytest.raises(ValueError, match="image ids differ from the VOC labels.*row 1"):
        load_features(path, "fc7", ["000001", "000009", "000003"])
    with pytest.raises(ValueError, match="must be"):
        save_features(tmp_path / "bad.npz", ids, {"conv1": np.ones((2, 4), np.float32)})
    (tmp_path / "broken.npz").write_bytes(b"not a zip file")
    with pytest.raises(ValueError, match="broken.npz: not a feature file"):
        load_features(tmp_path / "broken.npz", "conv1")
    with pytest.raises(FileNotFoundError, match="missing.npz"):
        load_features(tmp_path / "missing.npz", "conv1")


# ---------------------------------------------------------------------------------------------
# tables and figures

MODELS = {
    "texture-k8-alexnet": {"arch": "alexnet", "init": "sound"},
    "random-alexnet": {"arch": "alexnet", "init": "random"},
    "texture-k8-resnet18": {"arch": "resnet18", "init": "sound"},
    "random-resnet18": {"arch": "resnet18", "init": "random"},
}


def write_ap(path, aps):
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"class": [f"c{i}" for i in range(len(aps))], "ap": aps}).to_csv(path, index=False)
    return path


@pytest.fixture()
def result_files(tmp_path):
    svm, lowshot, knn = {}, {}, {}
    for index, (model, spec) in enumerate(MODELS.items()):
        boost = 0.3 if spec["init"] == "sound" else 0.0
        for position, layer in enumerate(FROZEN_LAYERS[spec["arch"]]):
            level = 0.2 + boost * position / 8 + 0.01 * index
            svm[(model, layer)] = write_ap(tmp_path / model / "svm" / layer / "ap.csv", [level, level + 0.1])
        rows = [
            {"positives": size, "sample": sample, "cost": cost, "map": 20 + 5 * np.log2(size) + sample + cost,
             "selected": cost == 1.0}
            for size in (1, 2, 4) for sample in (1, 2, 3) for cost in (0.1, 1.0)
        ]  # fmt: skip
        layer = FROZEN_LAYERS[spec["arch"]][-1]
        path = tmp_path / model / "lowshot" / layer / "map.csv"
        path.parent.mkdir(parents=True)
        pd.DataFrame(rows).to_csv(path, index=False)
        lowshot[(model, layer)] = path
        frame = pd.DataFrame(
            [
                {"layer": layer, "class": c, "ap": 0.1 * (i + 1)}
                for i, layer in enumerate(FROZEN_LAYERS[spec["arch"]])
                for c in "ab"
            ]
        )
        knn[model] = tmp_path / model / "knn" / "ap.csv"
        knn[model].parent.mkdir(parents=True)
        frame.to_csv(knn[model], index=False)
    return svm, lowshot, knn


def test_tables_hold_one_row_per_model_and_one_column_per_layer(result_files):
    svm, lowshot, knn = result_files
    table = svm_layers_table(svm, MODELS)
    assert list(table["model"]) == list(MODELS)
    layers = [*FROZEN_LAYERS["alexnet"], *FROZEN_LAYERS["resnet18"]]
    assert list(table.columns) == ["model", "arch", "init", *layers, "best_layer", "best_map"]
    alexnet = table.set_index("model").loc["texture-k8-alexnet"]
    assert alexnet["conv1"] == pytest.approx(25.0) and np.isnan(alexnet["layer1"])
    assert alexnet["best_layer"] == "fc7" and alexnet["best_map"] == pytest.approx(100 * (0.25 + 0.3 * 7 / 8))
    low = lowshot_table(lowshot, MODELS)
    assert len(low) == 4 * 3 and set(low["cost"]) == {1.0} and (low["n_samples"] == 3).all()
    first = low.iloc[0]
    assert first["map_mean"] == pytest.approx(20 + 2 + 1) and first["map_sd"] == pytest.approx(1.0)
    neighbours = knn_table(knn, MODELS, k=20)
    assert neighbours.set_index("model").loc["random-resnet18", "layer4"] == pytest.approx(40.0)
    assert (neighbours["k"] == 20).all()


def test_tables_name_a_bad_input(result_files, tmp_path):
    svm, lowshot, _ = result_files
    bad = write_ap(tmp_path / "bad" / "ap.csv", [0.5, 1.5])
    with pytest.raises(FrozenTableError, match=r"bad/ap.csv: AP must be numbers in \[0, 1\]"):
        svm_layers_table({**svm, ("random-alexnet", "conv1"): bad}, MODELS)
    path = next(iter(lowshot.values()))
    frame = pd.read_csv(path).assign(selected=True)
    frame.to_csv(path, index=False)
    with pytest.raises(FrozenTableError, match="exactly one selected cost per size"):
        lowshot_table(lowshot, MODELS)


def test_figures_are_drawn(result_files, tmp_path):
    svm, lowshot, _ = result_files
    plot_svm_layers(svm_layers_table(svm, MODELS), tmp_path / "svm_layers.png")
    plot_lowshot(lowshot_table(lowshot, MODELS), tmp_path / "svm_lowshot.png")
    plot_lowshot(lowshot_table({}, MODELS), tmp_path / "empty.png")
    for name in ("svm_layers", "svm_lowshot", "empty"):
        assert (tmp_path / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# ---------------------------------------------------------------------------------------------
# config


def test_layers_all_or_a_list_in_network_order():
    config = validate_config({"svm": {"layers": {"alexnet": ["fc7", "conv2"]}}}, SCHEMA)
    assert frozen_layers(config, "alexnet") == ["conv2", "fc7"]
    assert frozen_layers(config, "resnet18") == ["layer1", "layer2", "layer3", "layer4"]
    assert frozen_layers(config, "resnet18", "lowshot_layers") == ["layer3", "layer4"]
    with pytest.raises(Exception, match="svm.layers.resnet18"):
        validate_config({"svm": {"layers": {"resnet18": ["conv1"]}}}, SCHEMA)


# ---------------------------------------------------------------------------------------------
# the adapters, on a real VOC layout, with a stand-in for snakemake


def adapter(name, **fields):
    """Run workflow_scripts/<name>.py with a stand-in ``snakemake`` object (what the script
    preamble of Snakemake gives the adapter)."""

    class Names(list):
        def __init__(self, items=(), **named):
            super().__init__([*items, *named.values()])
            self.__dict__.update(named)

        def __getitem__(self, key):
            return self.__dict__[key] if isinstance(key, str) else super().__getitem__(key)

        def keys(self):
            return self.__dict__.keys()

    stand_in = types.SimpleNamespace(
        rule=name,
        input=Names(**fields.get("input", {})),
        output=Names(**fields.get("output", {})),
        params=types.SimpleNamespace(**fields.get("params", {})),
        wildcards=Names(**fields.get("wildcards", {})),
        log=[str(fields["log"])],
        threads=fields.get("threads", 1),
        config=fields["config"],
    )
    handlers, level = logging.root.handlers[:], logging.root.level  # run() routes logging to the log
    sys.path.insert(0, str(REPO / "workflow_scripts"))
    try:
        runpy.run_path(str(REPO / "workflow_scripts" / f"{name}.py"), init_globals={"snakemake": stand_in})
    finally:
        sys.path.remove(str(REPO / "workflow_scripts"))
        for handler in logging.root.handlers[:]:
            if handler not in handlers:
                logging.root.removeHandler(handler)
                handler.close()
        logging.root.handlers[:] = handlers
        logging.root.setLevel(level)


@pytest.fixture(scope="module")
def tiny_voc(tmp_path_factory):
    from soundsup.synthetic import SyntheticConfig, write_voc

    root = tmp_path_factory.mktemp("voc") / "VOC2007"
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        write_voc(root, SyntheticConfig(n_voc_trainval=40, n_voc_test=40, voc_image_size=64), 0, pool)
    return root


def test_adapters_extract_train_score_and_tabulate(tiny_voc, tmp_path):
    config = validate_config(yaml.safe_load((REPO / "configs" / "test.yaml").read_text()), SCHEMA)
    config["svm"]["lowshot_sizes"] = [1]
    schema = yaml.safe_load(SCHEMA.read_text())
    svm = rule_params(config, schema, "svm")
    features = {split: str(tmp_path / "features" / f"{split}.npz") for split in ("trainval", "test")}
    adapter(
        "extract_frozen_features",
        input={"model": [], "weights": []},
        output={**features, "meta": features["trainval"] + ".meta.json"},
        params={
            "svm": svm,
            "backbone": {"init": "random", "arch": "alexnet", "fc_width": 32},
            "crop_size": 64,
            "seed": 0,
            "voc_root": str(tiny_voc),
        },  # fmt: skip
        wildcards={"model": "random-alexnet"},
        log=tmp_path / "extract.log",
        config=config,
        threads=2,
    )
    meta = json.loads(Path(features["trainval"] + ".meta.json").read_text())
    assert meta["dims"] == {"conv1": 9600, "conv2": 9216, "conv3": 3456, "conv4": 3456, "conv5": 2304,
                            "pool5": 256, "fc6": 32, "fc7": 32}  # fmt: skip
    assert load_features(features["test"], "conv5").shape == (40, 2304)
    common = {
        "input": features,
        "params": {"svm": svm, "seed": 0, "voc_root": str(tiny_voc)},
        "config": config,
    }
    ap = tmp_path / "svm" / "ap.csv"
    layer = {"model": "random-alexnet", "layer": "conv5"}
    outputs = {"ap": str(ap), "meta": f"{ap}.meta.json"}
    adapter("train_svm", output=outputs, wildcards=layer, log=tmp_path / "svm.log", threads=2, **common)
    table = pd.read_csv(ap)
    assert len(table) == 20 and table["ap"].between(0, 1).all() and table["cost"].notna().any()
    lowshot = tmp_path / "lowshot" / "map.csv"
    outputs = {"map": str(lowshot), "meta": f"{lowshot}.meta.json"}
    adapter("train_lowshot_svm", output=outputs, wildcards=layer, log=tmp_path / "low.log", **common)
    assert pd.read_csv(lowshot)["selected"].sum() == config["svm"]["lowshot_samples"]
    knn = tmp_path / "knn" / "ap.csv"
    adapter("score_knn", input=features, output={"ap": str(knn)},
            params={"svm": svm, "layers": ["conv5", "fc7"], "voc_root": str(tiny_voc)},
            wildcards={"model": "random-alexnet"}, log=tmp_path / "knn.log", config=config)  # fmt: skip
    assert list(pd.read_csv(knn)["layer"].unique()) == ["conv5", "fc7"]
    # The tables' rule is told which model and layer each file holds (params), whatever its path.
    tables = {name: str(tmp_path / f"{name}.csv") for name in ("svm", "lowshot", "knn")}
    adapter(
        "tabulate_frozen",
        input={"svm": [str(ap)], "lowshot": [str(lowshot)], "knn": [str(knn)]},
        output=tables,
        params={
            "models": {"random-alexnet": {"arch": "alexnet", "init": "random"}},
            "svm_runs": [["random-alexnet", "conv5"]],
            "lowshot_runs": [["random-alexnet", "conv5"]],
            "knn_k": 20,
        },
        log=tmp_path / "tabulate.log",
        config=config,
    )
    layers = pd.read_csv(tables["svm"])
    assert list(layers.columns) == ["model", "arch", "init", "conv5", "best_layer", "best_map"]
    assert layers["conv5"][0] == pytest.approx(round(100 * table["ap"].mean(), 2))
    figures = {name: str(tmp_path / f"{name}.png") for name in ("svm", "lowshot")}
    adapter("plot_frozen", input={"svm": tables["svm"], "lowshot": tables["lowshot"]}, output=figures,
            log=tmp_path / "plot.log", config=config)  # fmt: skip
    assert all(Path(path).read_bytes()[:4] == b"\x89PNG" for path in figures.values())


def test_an_adapter_failure_names_the_file(tiny_voc, tmp_path):
    config = validate_config(yaml.safe_load((REPO / "configs" / "test.yaml").read_text()), SCHEMA)
    svm = rule_params(config, yaml.safe_load(SCHEMA.read_text()), "svm")
    features = {split: str(tmp_path / f"{split}.npz") for split in ("trainval", "test")}
    save_features(features["trainval"], ["000001"], {"conv5": np.ones((1, 4), np.float32)})
    with pytest.raises(ValueError, match="trainval.npz: image ids differ"):
        adapter(
            "train_svm",
            input=features,
            output={"ap": str(tmp_path / "ap.csv"), "meta": str(tmp_path / "ap.csv.meta.json")},
            params={"svm": svm, "seed": 0, "voc_root": str(tiny_voc)},
            wildcards={"model": "m", "layer": "conv5"},
            log=tmp_path / "svm.log",
            config=config,
        )
    assert "image ids differ" in (tmp_path / "svm.log").read_text()
    assert not (tmp_path / "ap.csv").exists()
