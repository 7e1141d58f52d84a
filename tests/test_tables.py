"""Tables from hand-made AP files: exact mean/sd over seeds, ordering, published rows, bad input."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from soundsup import tables
from soundsup.tables import VOC_CLASSES, TableError


def write_ap(root, model, mode, seed, ap, ap_voc07=None, meta=None):
    """Write ``root/model/mode/seed{seed}/ap.csv`` with per-class AP ``ap`` (scalar or 20 values)."""
    path = root / model / mode / f"seed{seed}" / "ap.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    ap = np.broadcast_to(np.asarray(ap, dtype=float), (20,))
    voc07 = ap if ap_voc07 is None else np.broadcast_to(np.asarray(ap_voc07, dtype=float), (20,))
    frame = pd.DataFrame({"class": VOC_CLASSES, "ap": ap, "ap_voc07": voc07, "n_pos": 7, "n_neg": 30})
    frame.to_csv(path, index=False)
    if meta is not None:
        path.with_name("ap.csv.meta.json").write_text(json.dumps(meta))
    return path


@pytest.fixture
def runs(tmp_path):
    """Sound, random and imagenet runs, two seeds for texture-k5-alexnet/head."""
    per_class = np.linspace(0.2, 0.6, 20)  # mean 0.4
    paths = [
        write_ap(
            tmp_path,
            "texture-k5-alexnet",
            "head",
            0,
            0.50,
            ap_voc07=0.52,
            meta={"git_commit": "abc123", "config_hash": "h1", "seed": 0, "n_pretext_pairs": 1200},
        ),  # fmt: skip
        write_ap(
            tmp_path,
            "texture-k5-alexnet",
            "head",
            1,
            0.60,
            ap_voc07=0.58,
            meta={"git_commit": "abc123", "config_hash": "h1", "seed": 1, "n_pretext_pairs": 1200},
        ),  # fmt: skip
        write_ap(tmp_path, "texture-k5-alexnet", "all", 0, per_class),
        write_ap(tmp_path, "random-alexnet", "head", 0, 0.30),
        write_ap(tmp_path, "imagenet-alexnet", "all", 0, 0.80),
        write_ap(tmp_path, "mfcc-k5-alexnet", "head", 0, 0.45),
        write_ap(tmp_path, "texture-k20-alexnet", "head", 0, 0.55),
        write_ap(tmp_path, "texture-k10-resnet18", "head", 0, 0.40),
        write_ap(tmp_path, "texture-k10-alexnet", "head", 0, 0.52),
    ]
    return tables.records_from_paths(paths)


def test_parse_model_name():
    assert tables.parse_model_name("texture-k15-alexnet") == {
        "model": "texture-k15-alexnet", "init": "sound", "feature": "texture", "k": 15, "arch": "alexnet"
    }  # fmt: skip
    assert tables.parse_model_name("imagenet-resnet18")["init"] == "imagenet"
    assert tables.parse_model_name("random-alexnet")["k"] is None
    for bad in ("texture-15-alexnet", "sound-k5-alexnet", "texture-k5-vgg16", "random", "texture-k0-alexnet"):
        with pytest.raises(TableError, match="bad model name"):
            tables.parse_model_name(bad)


def test_two_seeds_give_exact_mean_and_sd(runs):
    long = tables.collect_ap(runs)
    assert len(long) == 20 * len(runs)
    table = tables.build_table1(long, None)
    row = table.set_index("model").loc["texture-k5-alexnet"]
    assert row["head_map"] == pytest.approx(55.0)
    assert row["head_sd"] == pytest.approx(math.sqrt(50.0))  # sample sd of 50 and 60
    assert row["head_n"] == 2
    assert row["head_map_voc07"] == pytest.approx(55.0)
    assert row["all_map"] == pytest.approx(40.0)
    assert row["all_n"] == 1 and math.isnan(row["all_sd"])  # one seed: sd undefined
    assert row["git_commit"] == "abc123" and row["config_hash"] == "h1" and row["n_pretext_pairs"] == 1200
    assert (row["source"], row["init"], row["feature"], row["k"], row["arch"]) == (
        "measured", "sound", "texture", 5, "alexnet")  # fmt: skip
    baseline = table.set_index("model").loc["random-alexnet"]
    assert baseline["all_n"] == 0 and math.isnan(baseline["all_map"]) and pd.isna(baseline["git_commit"])


def test_table1_order_and_columns(runs):
    table = tables.build_table1(tables.collect_ap(runs), None)
    assert list(table.columns) == list(tables.TABLE1_COLUMNS)
    assert list(table["model"]) == [
        "texture-k5-alexnet", "texture-k10-alexnet", "texture-k20-alexnet", "texture-k10-resnet18",
        "mfcc-k5-alexnet", "random-alexnet", "imagenet-alexnet",
    ]  # fmt: skip


def test_published_rows_are_marked_and_last(runs):
    published = tables.load_published()
    table = tables.build_table1(tables.collect_ap(runs), published)
    quoted = table.loc[table["source"] == "published"]
    assert list(table["source"]) == ["measured"] * 7 + ["published"] * len(quoted)
    row = quoted.set_index("model").loc["texture-k15-alexnet"]
    assert row["head_map"] == pytest.approx(52.8) and row["all_map"] == pytest.approx(55.1)
    assert "Mahadev" in row["citation"]
    assert pd.isna(row["git_commit"]) and pd.isna(row["head_n"]) and math.isnan(row["head_sd"])
    assert table.loc[table["source"] == "measured", "citation"].isna().all()


def test_table2_per_class_and_published(runs, tmp_path):
    long = tables.collect_ap(runs)
    published = tables.load_published()
    table = tables.build_table2(long, published, mode="all")
    assert list(table.columns) == list(tables.TABLE2_COLUMNS)
    assert list(table["model"]) == ["texture-k5-alexnet", "imagenet-alexnet", "texture-k15-alexnet"]
    assert list(table["source"]) == ["measured", "measured", "published"]
    measured = table.iloc[0]
    np.testing.assert_allclose(measured[list(VOC_CLASSES)].astype(float), 100 * np.linspace(0.2, 0.6, 20))
    assert measured["map"] == pytest.approx(40.0)
    assert table.iloc[2]["map"] == pytest.approx(55.1) and table.iloc[2][list(VOC_CLASSES)].isna().all()
    head = tables.build_table2(long, None, mode="head")
    assert head.set_index("model").loc["texture-k5-alexnet", "aeroplane"] == pytest.approx(55.0)
    with pytest.raises(TableError, match="mode"):
        tables.build_table2(long, None, mode="fc7")


def test_write_table_rounds_and_reads_back(runs, tmp_path):
    table = tables.build_table1(tables.collect_ap(runs), tables.load_published())
    path = tmp_path / "out" / "table1.csv"
    tables.write_table(table, path)
    back = pd.read_csv(path)
    assert back.loc[0, "head_sd"] == pytest.approx(7.07)  # sqrt(50) rounded to 2 decimals
    assert back.loc[0, "n_pretext_pairs"] == 1200
    assert back["citation"].notna().sum() == (table["source"] == "published").sum()


def test_missing_file_is_named(tmp_path):
    missing = tmp_path / "texture-k5-alexnet" / "head" / "seed3" / "ap.csv"
    with pytest.raises(FileNotFoundError, match="seed3/ap.csv"):
        tables.collect_ap([("texture-k5-alexnet", "head", 3, missing)])


def test_bad_inputs_are_named(tmp_path):
    path = write_ap(tmp_path, "texture-k5-alexnet", "head", 0, 0.5)
    with pytest.raises(TableError, match="bad model name"):
        tables.collect_ap([("texture-five-alexnet", "head", 0, path)])
    with pytest.raises(TableError, match="appears twice"):
        tables.collect_ap([("texture-k5-alexnet", "head", 0, path)] * 2)
    frame = pd.read_csv(path)
    frame.loc[3, "ap"] = 1.7
    frame.to_csv(path, index=False)
    with pytest.raises(TableError, match=r"ap.csv: row 5 \(boat\)"):
        tables.collect_ap([("texture-k5-alexnet", "head", 0, path)])
    frame.loc[3, "ap"] = 0.5
    frame.iloc[[0, 1]] = frame.iloc[[1, 0]].to_numpy()
    frame.to_csv(path, index=False)
    with pytest.raises(TableError, match="devkit order"):
        tables.collect_ap([("texture-k5-alexnet", "head", 0, path)])
    with pytest.raises(TableError, match="not an AP file path"):
        tables.records_from_paths([tmp_path / "ap.csv"])


def test_undefined_class_ap_is_left_out_of_the_mean(tmp_path):
    values = np.full(20, 0.5)
    values[0] = np.nan
    path = write_ap(tmp_path, "random-resnet18", "all", 0, values)
    table = tables.build_table1(tables.collect_ap(tables.records_from_paths([path])), None)
    assert table.loc[0, "all_map"] == pytest.approx(50.0)


def test_load_published_checks_its_file(tmp_path):
    published = tables.load_published()
    assert list(published.columns) == list(tables.PUBLISHED_COLUMNS)
    assert set(published["metric"]) <= set(tables.METRICS) and published["citation"].str.len().gt(0).all()
    bad = published.copy()
    bad.loc[0, "model"] = "texture-alexnet"
    bad.to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(TableError, match="row 2"):
        tables.load_published(tmp_path / "bad.csv")
    with pytest.raises(FileNotFoundError, match="nowhere.csv"):
        tables.load_published(tmp_path / "nowhere.csv")
    complete = published.iloc[[0]].copy()
    complete[list(VOC_CLASSES)] = np.arange(20.0)
    complete["map"] = np.nan
    complete.to_csv(tmp_path / "complete.csv", index=False)
    assert tables.load_published(tmp_path / "complete.csv").loc[0, "map"] == pytest.approx(9.5)


def test_no_measured_runs_leaves_the_published_rows():
    long = tables.collect_ap([])
    table = tables.build_table1(long, tables.load_published())
    assert set(table["source"]) == {"published"} and list(table.columns) == list(tables.TABLE1_COLUMNS)
    assert list(tables.build_table2(long, tables.load_published())["source"]) == ["published"]
