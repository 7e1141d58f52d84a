"""Figures are written as PNGs of the expected size; activation search finds hand-made answers."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from matplotlib.collections import PathCollection
from matplotlib.container import ErrorbarContainer
from PIL import Image
from test_tables import records_of

from soundsup import activations, figures, tables
from soundsup.augment import IMAGENET_MEAN, IMAGENET_STD
from soundsup.canvas import DPI
from soundsup.figures import FigureError
from soundsup.models import build_model, conv_layers
from soundsup.names import MODES, VOC_CLASSES


def assert_png(path, width_inches, height_inches):
    """A non-empty PNG of ``width x height`` inches at the figures' DPI (1-pixel rounding allowed)."""
    assert path.is_file() and path.stat().st_size > 2000
    with Image.open(path) as image:
        assert image.format == "PNG"
        width, height = image.size
        pixels = np.asarray(image.convert("L"))
    assert abs(width - width_inches * DPI) <= 1 and abs(height - height_inches * DPI) <= 1
    assert pixels.std() > 5  # something was drawn
    assert not list(path.parent.glob(".*.tmp*"))  # no temporary left behind


def table_from_runs(root, seeds_of, rng) -> pd.DataFrame:
    """Table 1 (with the published rows) from AP files written for ``seeds_of``: (model, mode) ->
    number of seeds, random per-class APs."""
    paths = []
    for (model, mode), n_seeds in seeds_of.items():
        for seed in range(n_seeds):
            path = root / model / mode / f"seed{seed}" / "ap.csv"
            path.parent.mkdir(parents=True)
            ap = rng.uniform(0.2, 0.7, 20)
            pd.DataFrame({"class": VOC_CLASSES, "ap": ap, "ap_voc07": ap, "n_pos": 5, "n_neg": 9}).to_csv(
                path, index=False
            )
            paths.append(path)
    long = tables.collect_ap(records_of(paths))
    return tables.build_table1(long, tables.load_published())


@pytest.fixture(scope="module")
def table1(tmp_path_factory):
    """Table 1 built from hand-made AP files: two features, two archs, three k, baselines, 2 seeds."""
    models = [
        f"{f}-k{k}-{a}" for f in ("texture", "mfcc") for k in (5, 10, 20) for a in ("alexnet", "resnet18")
    ]
    runs = {(model, mode): 2 for model in [*models, "random-alexnet", "random-resnet18"] for mode in MODES}
    return table_from_runs(tmp_path_factory.mktemp("voc"), runs, np.random.default_rng(0))


@pytest.fixture(scope="module")
def uneven_seeds(tmp_path_factory):
    """Table 1 whose points have 1, 2 or 3 seeds: alexnet only, both features."""
    runs = {}
    for feature in ("texture", "mfcc"):
        for k, n_seeds in ((5, 1), (10, 2), (20, 3)):
            runs[(f"{feature}-k{k}-alexnet", "head")] = n_seeds
            runs[(f"{feature}-k{k}-alexnet", "all")] = 4 - n_seeds
    runs[("random-alexnet", "head")], runs[("random-alexnet", "all")] = 1, 3
    return table_from_runs(tmp_path_factory.mktemp("uneven"), runs, np.random.default_rng(5))


def error_bars(axes) -> list[tuple[float, float, float]]:
    """(x, y centre, half height) of every error bar drawn on ``axes``."""
    bars = []
    for container in axes.containers:
        if isinstance(container, ErrorbarContainer):
            for collection in container.lines[2]:
                for (x, low), (_, high) in collection.get_segments():
                    bars.append((float(x), (low + high) / 2, (high - low) / 2))
    return bars


def spread(table: pd.DataFrame, mode: str, **match) -> list[tuple[int, float, float]]:
    """(k, mAP, sd) of the measured sound rows of ``table`` that match and have 2+ seeds in ``mode``."""
    rows = table.loc[(table["source"] == "measured") & (table["init"] == "sound")]
    for column, value in match.items():
        rows = rows.loc[rows[column] == value]
    rows = rows.loc[pd.to_numeric(rows[f"{mode}_n"]) >= 2]
    return sorted(
        (int(k), float(m), float(sd)) for k, m, sd in rows[["k", f"{mode}_map", f"{mode}_sd"]].to_numpy()
    )


def test_map_vs_k(table1, tmp_path):
    # published rows present: a second panel of their own beside the measured one
    figures.plot_map_vs_k(table1, tmp_path / "map_vs_k.png")
    assert_png(tmp_path / "map_vs_k.png", 13.0, 5.0)
    figures.plot_map_vs_k(table1, tmp_path / "mfcc.png", feature="mfcc")
    assert_png(tmp_path / "mfcc.png", 13.0, 5.0)
    measured_only = table1.loc[table1["source"] == "measured"]
    figures.plot_map_vs_k(measured_only, tmp_path / "measured.png")
    assert_png(tmp_path / "measured.png", 7.5, 5.0)
    with pytest.raises(FigureError, match="unknown feature"):
        figures.plot_map_vs_k(table1, tmp_path / "x.png", feature="spectrum")


def test_published_panel_takes_any_method_name_and_keeps_published_off_the_measured_axes(table1, tmp_path):
    extra = table1.loc[table1["source"] == "published"].iloc[[0]].copy()
    extra[["method", "citation", "model", "init", "feature", "k", "arch"]] = [
        "Sound of Silence (résumé), v2",
        "[99] Someone Else",
        None,
        None,
        None,
        pd.NA,
        None,
    ]
    extra[["head_map", "all_map"]] = [12.5, np.nan]
    table = pd.concat([table1, extra], ignore_index=True)
    figure = figures.map_vs_k_figure(table)
    measured_axes, published_axes = figure.axes[:2]
    published = table.loc[table["source"] == "published"]
    labels = [label.get_text() for label in published_axes.get_yticklabels()]
    assert labels[0] == "Imagenet(pretrained) [17]" and labels[-1] == "Sound of Silence (résumé), v2 [99]"
    assert "Our model" in labels and "Noroozi and Favaro [22]" in labels
    widths = [round(patch.get_width(), 2) for patch in published_axes.patches]
    assert 12.5 in widths and 52.8 in widths and 55.1 in widths
    assert len(widths) == 2 * len(published) - 3 - 1  # three '-' cells and the NaN draw no bar
    drawn = np.concatenate([np.asarray(line.get_ydata(), dtype=float) for line in measured_axes.get_lines()])
    quoted = published[["head_map", "all_map"]].to_numpy(dtype=float).ravel()
    assert len(drawn) and not np.isin(drawn, quoted[~np.isnan(quoted)]).any()  # none on the measured axes
    # the only patches there are the random baselines' +-1 sd bands, across the whole width
    assert all((patch.get_x(), patch.get_width()) == (0, 1) for patch in measured_axes.patches)
    assert not [c for c in measured_axes.collections if isinstance(c, PathCollection)]
    figures.plot_map_vs_k(table, tmp_path / "any.png")
    assert_png(tmp_path / "any.png", 13.0, 5.0)


def test_map_vs_k_has_error_bars_only_where_there_are_several_seeds(uneven_seeds, tmp_path):
    figure = figures.map_vs_k_figure(uneven_seeds)
    measured = figure.axes[0]
    expected = spread(uneven_seeds, "head", feature="texture") + spread(
        uneven_seeds, "all", feature="texture"
    )
    drawn = sorted((round(x), y, half) for x, y, half in error_bars(measured))
    assert [k for k, _, _ in drawn] == sorted([10, 20, 5, 10])  # head: k 10 and 20; all: k 5 and 10
    np.testing.assert_allclose(
        [(y, half) for _, y, half in drawn], [(m, sd) for _, m, sd in sorted(expected)]
    )
    labels = [text.get_text() for text in measured.get_legend().get_texts()]
    assert "alexnet, head (1-3 seeds)" in labels and "random init alexnet, head (1 seed)" in labels
    bands = measured.patches  # the random baseline: none for head (1 seed), +-1 sd for all (3 seeds)
    random = uneven_seeds.loc[(uneven_seeds["model"] == "random-alexnet")].iloc[0]
    assert len(bands) == 1
    np.testing.assert_allclose(
        [bands[0].get_y(), bands[0].get_height()],
        [random["all_map"] - random["all_sd"], 2 * random["all_sd"]],
    )
    one_seed = uneven_seeds.loc[pd.to_numeric(uneven_seeds["head_n"], errors="coerce") != 2]
    one_seed = one_seed.loc[pd.to_numeric(one_seed["all_n"], errors="coerce") != 2]
    figure = figures.map_vs_k_figure(one_seed.loc[one_seed["k"].isin([5, 20]) | one_seed["k"].isna()])
    points = [line for line in figure.axes[0].get_lines() if line.get_marker() == "o"]
    assert len(points) == 2 and all(len(line.get_xdata()) == 2 for line in points)
    assert len(error_bars(figure.axes[0])) == 2  # k = 20 head (3 seeds) and k = 5 all (3 seeds)


def test_feature_comparison_has_error_bars_only_where_there_are_several_seeds(uneven_seeds, tmp_path):
    figure = figures.feature_comparison_figure(uneven_seeds)
    panels = {axes.get_title(): axes for axes in figure.axes}
    assert set(panels) == {"alexnet, head", "alexnet, all"}
    for mode, ks_with_bars in (("head", [10, 20]), ("all", [5, 10])):
        bars = error_bars(panels[f"alexnet, {mode}"])
        expected = spread(uneven_seeds, mode)
        assert sorted(k for k, _, _ in expected) == sorted(ks_with_bars * 2)  # texture and mfcc
        np.testing.assert_allclose(
            sorted((y, half) for _, y, half in bars), sorted((m, sd) for _, m, sd in expected)
        )
    figures.plot_feature_comparison(uneven_seeds, tmp_path / "features.png")
    assert_png(tmp_path / "features.png", 11.0, 3.8 + 0.4)


def test_figures_from_the_csv_as_written(table1, tmp_path):
    """The plotting rules read table1.csv back: empty cells and float k must work."""
    tables.write_table(table1, tmp_path / "table1.csv")
    back = pd.read_csv(tmp_path / "table1.csv")
    figures.plot_map_vs_k(back, tmp_path / "map_vs_k.png")
    assert_png(tmp_path / "map_vs_k.png", 13.0, 5.0)
    figures.plot_feature_comparison(back, tmp_path / "features.png")
    assert_png(tmp_path / "features.png", 11.0, 2 * 3.8 + 0.4)


def test_feature_comparison_with_few_models(table1, tmp_path):
    only_alexnet_head = table1.loc[table1["arch"] == "alexnet"].assign(all_map=np.nan)
    figures.plot_feature_comparison(only_alexnet_head, tmp_path / "one.png")
    assert_png(tmp_path / "one.png", 5.5, 3.8 + 0.4)
    # an architecture trained on one feature only has nothing to compare: no panel of its own
    no_resnet_mfcc = table1.loc[~((table1["arch"] == "resnet18") & (table1["feature"] == "mfcc"))]
    figure = figures.feature_comparison_figure(no_resnet_mfcc)
    assert [axes.get_title() for axes in figure.axes] == ["alexnet, head", "alexnet, all"]
    # with no architecture of both features, the panels of the one there is
    texture_only = table1.loc[table1["feature"] != "mfcc"]
    titles = [axes.get_title() for axes in figures.feature_comparison_figure(texture_only).axes]
    assert titles == ["alexnet, head", "alexnet, all", "resnet18, head", "resnet18, all"]


def test_cluster_montage(tmp_path):
    rng = np.random.default_rng(1)
    clusters = np.repeat([4, 7, 2], [3, 10, 6])  # sizes 3, 10, 6
    frames = rng.integers(0, 256, (len(clusters), 32, 32, 3), dtype=np.uint8)
    rows = figures.montage_rows(clusters, per_cluster=5, max_clusters=2, seed=0)
    assert [(cluster, size) for cluster, size, _ in rows] == [(7, 10), (2, 6)]
    for cluster, _, chosen in rows:
        assert len(chosen) == 5 and len(set(chosen)) == 5 and (clusters[chosen] == cluster).all()
    again = figures.montage_rows(clusters, per_cluster=5, max_clusters=2, seed=0)
    assert all((a[2] == b[2]).all() for a, b in zip(rows, again, strict=True))
    figures.plot_cluster_montage(frames, clusters, tmp_path / "montage.png", per_cluster=8, max_clusters=12)
    assert_png(tmp_path / "montage.png", 1.0 + 0.9 * 8, 0.7 + 0.9 * 3)
    with pytest.raises(FigureError, match="match frames"):
        figures.plot_cluster_montage(frames, clusters[:-1], tmp_path / "bad.png")
    with pytest.raises(FigureError, match="uint8"):
        figures.plot_cluster_montage(frames.astype(np.float32), clusters, tmp_path / "bad.png")


def test_to_model_input():
    frames = np.full((2, 16, 16, 3), 255, dtype=np.uint8)
    images = activations.to_model_input(frames, 24)
    assert images.shape == (2, 3, 24, 24) and images.dtype == torch.float32
    expected = (1 - torch.tensor(IMAGENET_MEAN)) / torch.tensor(IMAGENET_STD)
    torch.testing.assert_close(images[0, :, 5, 5], expected)


def hand_set_alexnet(bright_filter: int, dark_filter: int) -> torch.nn.Module:
    """A tiny AlexNet whose conv3 filter ``bright_filter`` tracks image brightness and
    ``dark_filter`` its negative; every other conv3 filter is zero.

    conv1 channel 0 = mean of the normalised input + 10 (so ReLU passes it), conv2 channel 0 and
    conv3 read only that channel through their centre taps.
    """
    model = build_model("alexnet", 5, fc_width=64)
    convs = conv_layers(model)
    with torch.no_grad():
        for name in ("conv1", "conv2", "conv3"):
            convs[name].weight.zero_()
            convs[name].bias.zero_()
        conv1 = convs["conv1"]
        conv1.weight[0] = 1.0 / conv1.weight[0].numel()
        conv1.bias[0] = 10.0
        convs["conv2"].weight[0, 0, 2, 2] = 1.0
        convs["conv3"].weight[bright_filter, 0, 1, 1] = 1.0
        convs["conv3"].weight[dark_filter, 0, 1, 1] = -1.0
    return model


def test_top_activations_finds_the_hand_set_answer():
    torch.manual_seed(0)
    levels = np.random.default_rng(2).permutation(np.linspace(10, 245, 12)).astype(np.uint8)
    frames = np.broadcast_to(levels[:, None, None, None], (12, 40, 40, 3)).copy()
    images = activations.to_model_input(frames, 64)
    model = hand_set_alexnet(bright_filter=17, dark_filter=200)
    model.train()
    layer = conv_layers(model)["conv3"]
    top = activations.top_activations(model, layer, images, [17, 200, 3], top=9, batch_size=5)
    assert model.training  # mode restored
    brightest_first = np.argsort(-levels.astype(int), kind="stable")
    np.testing.assert_array_equal(top[17], brightest_first[:9])
    assert top[200][0] == int(np.argmin(levels))
    assert top[3].shape == (9,) and top[3].dtype == np.int64
    lazy = activations.FrameInputs(frames, 64)  # converted a batch at a time: the same answers
    assert lazy.shape == tuple(images.shape) and len(lazy) == 12
    torch.testing.assert_close(lazy[3:7], images[3:7])
    assert all((activations.top_activations(model, layer, lazy, [17, 200], batch_size=5)[f] == top[f]).all()
               for f in (17, 200))  # fmt: skip
    chosen = activations.choose_filters(model, layer, images, n_filters=2, batch_size=5)
    assert activations.choose_filters(model, layer, lazy, n_filters=2, batch_size=5) == chosen
    assert sorted(chosen) == [17, 200]
    assert activations.choose_filters(model, layer, images, n_filters=2, batch_size=7) == chosen
    with pytest.raises(FigureError, match="out of range"):
        activations.top_activations(model, layer, images, [384])


def test_plot_top_activations_prints_each_frames_activation(tmp_path):
    torch.manual_seed(0)
    levels = np.random.default_rng(3).permutation(np.linspace(10, 245, 20)).astype(np.uint8)
    images = np.broadcast_to(levels[:, None, None, None], (20, 40, 40, 3)).copy()
    model = hand_set_alexnet(bright_filter=17, dark_filter=200)
    maxima = activations.max_activations(
        model, conv_layers(model)["conv3"], activations.to_model_input(images, 64)
    )
    top, values = activations.strongest_images(maxima, [17, 200, 5], top=9)
    for index in top:
        np.testing.assert_array_equal(values[index], maxima[top[index], index])
        assert (np.diff(values[index]) <= 0).all()  # highest first
    assert 10 < values[17][0] < 100 and values[5].max() == 0  # the brightness filter responds, 5 is zero
    top[5], values[5] = top[5][:3], values[5][:3]  # a filter with fewer images than the grid holds
    figure = activations.top_activations_figure(images, top, "conv3 of texture-k8-alexnet", values)
    for axes, index in zip(figure.axes, top, strict=True):
        assert axes.get_title() == f"filter {index}"
        # one format for the figure, three significant digits on its largest value (10 to 100 here)
        assert [text.get_text() for text in axes.texts] == [f"{value:.1f}" for value in values[index]]
    activations.plot_top_activations(images, top, tmp_path / "top.png", "conv3", values)
    assert_png(tmp_path / "top.png", 3 * 3.2, 3.4 + 0.6)
    with pytest.raises(FigureError, match="out of range"):
        activations.plot_top_activations(images, {1: np.array([25])}, tmp_path / "bad.png", "x", {1: [1.0]})
    with pytest.raises(FigureError, match="filter 17: 9 images but 3 activation values"):
        bad_values = {**values, 17: values[17][:3]}
        activations.plot_top_activations(images, top, tmp_path / "bad.png", "x", bad_values)


def test_pretext_curves(tmp_path):
    history = tmp_path / "history.jsonl"
    lines = [
        json.dumps(
            {"epoch": e, "loss": 1.0, "train_acc": e / 10, "val_loss": 1.1, "val_acc": e / 12, "lr": 0.01}
        )
        for e in range(1, 6)
    ]
    history.write_text("\n".join(lines) + "\n")
    histories = {
        "texture-k8-alexnet": figures.read_history(history),
        "mfcc-k8-alexnet": [{"epoch": e, "val_acc": 0.1 * e} for e in range(1, 4)],
    }
    assert len(histories["texture-k8-alexnet"]) == 5
    histories["texture-k3-alexnet"] = [{"epoch": e, "val_acc": 0.4} for e in range(1, 6)]
    n_clusters = {"texture-k8-alexnet": 8, "mfcc-k8-alexnet": 8, "texture-k3-alexnet": 3}
    figure = figures.pretext_curves_figure(histories, n_clusters)
    chance = {
        line.get_label(): line for line in figure.axes[0].get_lines() if line.get_label().startswith("chance")
    }
    assert set(chance) == {"chance 1/3 (k=3)", "chance 1/8 (k=8)"}  # one line per distinct k
    for k in (3, 8):
        np.testing.assert_allclose(chance[f"chance 1/{k} (k={k})"].get_ydata(), [1 / k, 1 / k])
    legend = [text.get_text() for text in figure.axes[0].get_legend().get_texts()]
    assert "chance 1/3 (k=3)" in legend and "chance 1/8 (k=8)" in legend
    figures.plot_pretext_curves(histories, tmp_path / "curves.png", n_clusters)
    assert_png(tmp_path / "curves.png", 7.5, 5.0)
    with pytest.raises(FigureError, match="no number of clusters k given for \\['texture-k3-alexnet'\\]"):
        figures.plot_pretext_curves(
            histories, tmp_path / "bad.png", {"texture-k8-alexnet": 8, "mfcc-k8-alexnet": 8}
        )
    with pytest.raises(FigureError, match="lacks"):
        figures.plot_pretext_curves({"m": [{"epoch": 1}]}, tmp_path / "bad.png", {"m": 2})
    history.write_text("{not json\n")
    with pytest.raises(FigureError, match="line 1"):
        figures.read_history(history)


def test_the_plot_results_adapter_plots_the_feature_the_rule_names(table1, tmp_path):
    """A config with MFCC only: the rule names mfcc and the figure has its lines."""
    from adapter_helpers import Job, run_adapter

    mfcc_only = table1.loc[(table1["feature"] != "texture") | (table1["source"] != "measured")]
    mfcc_only = mfcc_only.loc[mfcc_only["source"] == "measured"]
    mfcc_only.to_csv(tmp_path / "table1.csv", index=False)
    job = Job(
        rule="plot_results",
        input=Job(table1=str(tmp_path / "table1.csv")),
        output=Job(map_vs_k=str(tmp_path / "map_vs_k.png"), features=str(tmp_path / "features.png")),
        params=Job(feature="mfcc"),
        log=[str(tmp_path / "plot.log")], wildcards=Job(), threads=1, config={},
    )  # fmt: skip
    run_adapter("plot_results", job)
    assert_png(tmp_path / "map_vs_k.png", 7.5, 5.0)
    assert (tmp_path / "features.png").stat().st_size > 2000
    # mfcc's figure has its four sound lines (AlexNet and ResNet-18, head and all) beside the
    # random baselines; texture's, which the adapter once drew whatever the config, has none.
    written = pd.read_csv(tmp_path / "table1.csv")
    mfcc_lines = figures.map_vs_k_figure(written, "mfcc").axes[0].get_lines()
    texture_lines = figures.map_vs_k_figure(written, "texture").axes[0].get_lines()
    assert len(mfcc_lines) >= len(texture_lines) + 4
    assert all(len(set(line.get_ydata())) == 1 for line in texture_lines)  # only the flat baselines


def test_the_plot_training_adapter_names_each_history_by_its_param(tmp_path):
    """The model of each history comes from params.models, not from the file's path."""
    from adapter_helpers import Job, run_adapter

    paths = []
    for index, accuracy in enumerate((0.3, 0.6)):
        path = tmp_path / f"run{index}" / "history.jsonl"  # a path that names no model
        path.parent.mkdir()
        path.write_text("".join(json.dumps({"epoch": e, "val_acc": accuracy}) + "\n" for e in (1, 2, 3)))
        paths.append(str(path))
    job = Job(
        input=Job(histories=paths),
        output=[str(tmp_path / "curves.png")],
        params=Job(models=["texture-k4-alexnet", "mfcc-k8-resnet18"]),
        wildcards=Job(),
        log=[str(tmp_path / "plot.log")],
        rule="plot_training",
        threads=1,
    )
    run_adapter("plot_training", job)
    assert_png(tmp_path / "curves.png", 7.5, 5.0)
    expected = {name: figures.read_history(path) for name, path in zip(job.params.models, paths, strict=True)}
    figures.plot_pretext_curves(
        expected, tmp_path / "expected.png", {"texture-k4-alexnet": 4, "mfcc-k8-resnet18": 8}
    )
    drawn, wanted = (np.asarray(Image.open(tmp_path / name)) for name in ("curves.png", "expected.png"))
    assert np.array_equal(drawn, wanted)  # the same names, ks (chance lines) and curves
    with pytest.raises(FigureError, match="2 training histories for 1 models"):
        figures.plot_training(paths, ["texture-k4-alexnet"], tmp_path / "bad.png")
