"""Tables from hand-made AP files: exact mean/sd over seeds, ordering, published rows, bad input."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from soundsup import tables
from soundsup.tables import VOC_CLASSES, TableError

PAPER_TABLES = Path(__file__).parent / "data" / "paper_tables.txt"
PUBLISHED_MD = Path(tables.__file__).parent / "data" / "PUBLISHED.md"


def records_of(paths):
    """The (model, mode, seed, path) records of AP files written under {model}/{mode}/seed{seed}/
    (the rule tabulate_ap gets them as params; tests lay their files out the same way)."""
    return [(Path(p).parts[-4], Path(p).parts[-3], int(Path(p).parts[-2][4:]), p) for p in paths]


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
    return records_of(paths)


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
    assert list(table["source"]) == ["measured"] * 7 + ["published"] * 14
    assert list(quoted["method"]) == [
        "Imagenet(pretrained)",
        "Random",
        "Pathak et al.",
        "Donahue et al.",
        "Owens et al.",
        "Pathak et al.",
        "Wang et al.",
        "Doersch et al.",
        "Bojanowski et al.",
        "Zhang et al.",
        "Zhang et al.",
        "Noroozi and Favaro",
        "Noroozi et al.",
        "Our model",
    ]  # fmt: skip  (the paper's order)
    ours = quoted.iloc[-1]
    assert (ours["head_map"], ours["all_map"], ours["model"]) == (52.8, 55.1, "texture-k15-alexnet")
    assert (ours["feature"], ours["k"], ours["arch"]) == ("texture", 15, "alexnet")
    assert ours["citation"].startswith("Rohan Mahadev and Hongyu Lu") and ours["quoted_from"].endswith(
        "Table 1"
    )
    assert set(quoted["ap_definition"]) == {"unstated"}  # the paper never says which AP
    jigsaw = quoted.loc[quoted["method"] == "Noroozi and Favaro"].iloc[0]
    assert math.isnan(jigsaw["head_map"]) and jigsaw["all_map"] == 67.6 and "printed as '-'" in jigsaw["note"]
    assert quoted.loc[quoted["method"] == "Pathak et al.", "citation"].str[:4].tolist() == ["[27]", "[26]"]
    assert quoted["model"].isna().sum() == 11 and quoted["init"].isna().sum() == 11
    assert (
        quoted[["git_commit", "cluster_backend", "head_n"]].isna().all().all()
        and quoted["head_sd"].isna().all()
    )
    measured = table.loc[table["source"] == "measured"]
    assert measured[["citation", "method", "note"]].isna().all().all()
    assert set(measured["ap_definition"]) == {"step"}


def test_table2_per_class_and_published(runs):
    long = tables.collect_ap(runs)
    published = tables.load_published()
    table = tables.build_table2(long, published)
    assert list(table.columns) == list(tables.TABLE2_COLUMNS)
    assert list(table.columns[3:23]) == list(VOC_CLASSES) and table.columns[23] == "map"
    measured = table.loc[table["source"] == "measured"]
    assert list(measured["mode"]) == ["head"] * 6 + ["all"] * 2
    assert list(measured.loc[measured["mode"] == "all", "model"]) == [
        "texture-k5-alexnet",
        "imagenet-alexnet",
    ]
    row = measured.loc[(measured["mode"] == "all") & (measured["model"] == "texture-k5-alexnet")].iloc[0]
    np.testing.assert_allclose(row[list(VOC_CLASSES)].astype(float), 100 * np.linspace(0.2, 0.6, 20))
    assert row["map"] == pytest.approx(40.0)
    head = measured.loc[measured["mode"] == "head"].set_index("model")
    assert head.loc["texture-k5-alexnet", "aeroplane"] == pytest.approx(55.0)
    quoted = table.loc[table["source"] == "published"]
    assert len(quoted) == 11 and set(quoted["mode"]) == {"unstated"}  # Table 2 never says head or all
    assert list(quoted["method"][-2:]) == ["Ours - Sound Texture", "Ours - MFCC"]
    texture = quoted.iloc[-2]
    assert texture["map"] == pytest.approx(53.5) and texture["aeroplane"] == 76 and texture["tvmonitor"] == 43
    assert "Table 1 prints 52.8 (head) / 55.1 (all)" in texture["note"]
    assert list(tables.build_table2(long, None, ["all"])["mode"]) == ["all", "all"]
    with pytest.raises(TableError, match="modes"):
        tables.build_table2(long, None, ["fc7"])
    with pytest.raises(TableError, match="modes"):
        tables.build_table2(long, None, "all")  # a string is not a list of modes


def paper_lines():
    """(Table 1 lines, Table 2 lines) of the verbatim extraction in tests/data/paper_tables.txt."""
    lines = [
        line for line in PAPER_TABLES.read_text(encoding="utf-8").splitlines() if not line.startswith("#")
    ]
    first = lines[
        lines.index("Head All") + 1 : next(i for i, line in enumerate(lines) if line.startswith("Table 1:"))
    ]
    start = next(i for i, line in enumerate(lines) if line.startswith("aer bk brd"))
    second = lines[start + 1 : next(i for i, line in enumerate(lines) if line.startswith("Table 2:"))]
    return first, second


def split_printed(line: str, n_values: int) -> tuple[str, str | None, list[str]]:
    """(method, reference number or None, the last ``n_values`` tokens) of a printed table line."""
    tokens = line.split()
    label, values = " ".join(tokens[:-n_values]), tokens[-n_values:]
    match = re.fullmatch(r"(.*?) ?\[(\d+)\]", label)
    method, reference = (match[1], match[2]) if match else (label, None)
    return method.replace("k\U0001d458k-means", "k-means"), reference, values


def raw_published():
    """published.csv as text cells, exactly as written (no number parsing)."""
    return pd.read_csv(tables.published_path(), dtype=str, keep_default_na=False)


def test_published_csv_quotes_every_number_of_the_papers_tables_as_printed():
    first, second = paper_lines()
    assert len(first) == 14 and len(second) == 11
    raw = raw_published()
    table1, table2 = raw.loc[raw["table"] == "1"], raw.loc[raw["table"] == "2"]
    assert len(table1) == 28 and len(table2) == 11 and len(raw) == 39
    absent = 0
    for line, (head, all_) in zip(
        first, zip(table1.iloc[::2].itertuples(), table1.iloc[1::2].itertuples(), strict=True), strict=True
    ):
        method, reference, printed = split_printed(line, 2)
        for entry, value, mode in ((head, printed[0], "head"), (all_, printed[1], "all")):
            assert (entry.method, entry.mode) == (method, mode), line
            assert entry.citation.startswith(
                f"[{reference}] " if reference else "Rohan Mahadev and Hongyu Lu"
            )
            assert entry.map == ("" if value == "-" else value), line  # the printed digits, not a rounding
            absent += value == "-"
            if value == "-":
                assert "printed as '-'" in entry.note
            assert all(entry._asdict()[name] == "" for name in VOC_CLASSES)  # Table 1 prints mAP only
    assert absent == 3
    for line, entry in zip(second, table2.itertuples(), strict=True):
        method, reference, printed = split_printed(line, 20)
        assert entry.method == method and entry.mode == "unstated" and entry.map == "", line
        assert entry.citation.startswith(f"[{reference}] " if reference else "Rohan Mahadev and Hongyu Lu")
        assert [entry._asdict()[name] for name in VOC_CLASSES] == printed, line
    assert (
        set(raw["ap_definition"]) == {"unstated"}
        and (raw["quoted_from"].str.startswith("Mahadev & Lu")).all()
    )


# Table 2 rows and the Table 1 row that prints the same method's mAP (the same reference;
# k-means [16] is another initialisation than Table 1's Random [16]; MFCC is not in Table 1).
TABLE1_OF_TABLE2 = {
    "Imagenet(pretrained)": "Imagenet(pretrained)",
    "Owens et al.": "Owens et al.",
    "Colorization": "Zhang et al.",
    "Tracking": "Wang et al.",
    "Object motion": "Pathak et al.",
    "Patch position": "Doersch et al.",
    "Ours - Sound Texture": "Our model",
}


def test_table2_row_means_disagree_with_table1_and_the_disagreement_is_recorded():
    """Table 2's caption: the mean of a row's 20 APs is its mAP. Recompute it for every row and
    compare with the mAP that Table 1 prints for the same method: they never agree, and each
    row's note and PUBLISHED.md say so with the numbers."""
    first, second = paper_lines()
    printed_maps = {}
    for line in first:
        method, reference, values = split_printed(line, 2)
        printed_maps[(method, reference)] = values
    published = tables.load_published()
    quoted = published.loc[published["table"] == 2]
    documented = PUBLISHED_MD.read_text(encoding="utf-8")
    disagreements = {}
    for line, (_, entry) in zip(second, quoted.iterrows(), strict=True):
        method, reference, values = split_printed(line, 20)
        mean = sum(float(value) for value in values) / 20
        assert entry["map"] == pytest.approx(mean, abs=1e-12)
        assert f"mean of the 20 printed APs, {mean:.2f}" in entry["note"]
        assert f"| {method} | {mean:.2f} |" in documented.replace(f"[{reference}] ", "")
        if method in TABLE1_OF_TABLE2:
            head, all_ = printed_maps[(TABLE1_OF_TABLE2[method], reference)]
            stated = [float(value) for value in (head, all_) if value != "-"]
            assert all(abs(mean - value) > 0.5 for value in stated), (method, mean, stated)
            assert f"Table 1 prints {head} (head) / {all_} (all)" in entry["note"]
            disagreements[method] = (round(mean, 2), head, all_)
    assert disagreements["Ours - Sound Texture"] == (53.5, "52.8", "55.1")
    assert disagreements["Owens et al."] == (45.7, "52.3", "61.3")
    assert disagreements["Imagenet(pretrained)"] == (65.55, "78.9", "79.9")
    mfcc = quoted.loc[quoted["method"] == "Ours - MFCC"].iloc[0]
    assert mfcc["map"] == pytest.approx(53.85) and "Table 1 has no MFCC row" in mfcc["note"]
    # no absolute path of the machine it was written on: files are named relative to the repo
    assert re.search(r"(?:^|[\s`(])/[A-Za-z][\w.-]*/", documented) is None
    assert "arXiv:1912.11659" in documented


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


def test_undefined_class_ap_is_left_out_of_the_mean(tmp_path):
    values = np.full(20, 0.5)
    values[0] = np.nan
    path = write_ap(tmp_path, "random-resnet18", "all", 0, values)
    table = tables.build_table1(tables.collect_ap(records_of([path])), None)
    assert table.loc[0, "all_map"] == pytest.approx(50.0)


def test_load_published_checks_its_file(tmp_path):
    published = tables.load_published()
    assert list(published.columns) == list(tables.PUBLISHED_COLUMNS)
    assert published["citation"].str.len().gt(0).all() and published["map"].notna().sum() == 25 + 11
    raw = raw_published()

    def refused(match, row=2, **cells):
        bad = raw.copy()
        for column, value in cells.items():
            bad.loc[row - 2, column] = value
        bad.to_csv(tmp_path / "bad.csv", index=False)
        with pytest.raises(TableError, match=match):
            tables.load_published(tmp_path / "bad.csv")

    refused(r"row 2: bad model name", model="texture-alexnet")
    refused(r"row 3: mode 'unstated' not in \('head', 'all'\)", row=3, mode="unstated")  # Table 1 has columns
    refused(r"row 30: mode 'fc7'", row=30, mode="fc7")
    refused(r"row 4: ap_definition 'map'", row=4, ap_definition="map")
    refused(r"row 5: citation is empty", row=5, citation="  ")
    refused(r"row 6: table '3'", row=6, table="3")
    refused(r"row 7: map='-' is not a percentage", row=7, map="-")
    refused(r"row 31: bus='101' is not a percentage", row=31, bus="101")
    refused(r"row 3: a second entry", row=3, mode="head")
    with pytest.raises(FileNotFoundError, match="nowhere.csv"):
        tables.load_published(tmp_path / "nowhere.csv")
    complete = raw.iloc[[0]].copy()
    complete[list(VOC_CLASSES)] = [str(value) for value in range(20)]
    complete["map"] = ""
    complete.to_csv(tmp_path / "complete.csv", index=False)
    assert tables.load_published(tmp_path / "complete.csv").loc[0, "map"] == pytest.approx(9.5)


def test_clustering_backend_reaches_table1(runs, tmp_path):
    summaries = []
    for feature, k, backend in (("texture", 5, "faiss"), ("mfcc", 5, "sklearn"), ("texture", 10, "faiss")):
        path = tmp_path / "clusters" / feature / f"k{k}" / "summary.json"
        path.parent.mkdir(parents=True)
        path.write_text(
            json.dumps({"feature": feature, "k": k, "backend": backend, "backend_version": "1.2.3"})
        )
        summaries.append(path)
    table = tables.build_table1(tables.collect_ap(runs, summaries), None).set_index("model")
    assert table.loc["texture-k5-alexnet", "cluster_backend"] == "faiss 1.2.3"
    assert table.loc["mfcc-k5-alexnet", "cluster_backend"] == "sklearn 1.2.3"
    assert table.loc["texture-k10-resnet18", "cluster_backend"] == "faiss 1.2.3"  # same clusters, either arch
    assert pd.isna(table.loc["texture-k20-alexnet", "cluster_backend"])  # no summary given
    assert pd.isna(table.loc["random-alexnet", "cluster_backend"])  # no clusters at all
    summaries[0].write_text("{not json")
    with pytest.raises(TableError, match=r"texture/k5/summary.json: not valid JSON"):
        tables.collect_ap(runs, summaries)
    (tmp_path / "summary.json").write_text(json.dumps({"k": 5, "backend": "faiss"}))
    with pytest.raises(TableError, match="summary.json: a clustering summary names its 'feature'"):
        tables.collect_ap(runs, [tmp_path / "summary.json"])
    with pytest.raises(FileNotFoundError, match="k7/summary.json"):
        tables.collect_ap(runs, [tmp_path / "clusters" / "texture" / "k7" / "summary.json"])


def test_ap_a_rounding_step_above_one_is_clipped_not_refused(tmp_path):
    # AP files written before the metric was clipped hold 1.0000000000000002 for a perfect class:
    # the tables read them as 1 (nothing is rerun); a real excursion is still refused.
    values = np.full(20, 0.5)
    values[3] = 1.0000000000000002
    path = write_ap(
        tmp_path, "random-alexnet", "all", 0, values, ap_voc07=np.minimum(values + 0.5, 1.0000000000000002)
    )
    long = tables.collect_ap(records_of([path]))
    assert long["ap"].max() == 1.0 and long["ap_voc07"].max() == 1.0
    values[3] = 1.001
    path = write_ap(tmp_path, "random-alexnet", "all", 0, values)
    with pytest.raises(TableError, match=r"row 5 \(boat\): ap=1.001 not in \[0, 1\]"):
        tables.collect_ap(records_of([path]))


def test_no_measured_runs_leaves_the_published_rows():
    long = tables.collect_ap([])
    table = tables.build_table1(long, tables.load_published())
    assert set(table["source"]) == {"published"} and list(table.columns) == list(tables.TABLE1_COLUMNS)
    assert list(tables.build_table2(long, tables.load_published())["source"]) == ["published"] * 11


def test_the_tabulate_ap_adapter_is_one_call_naming_each_run(tmp_path):
    """The rule's adapter with a stand-in job: runs come as params, not from the paths."""
    from adapter_helpers import Job, run_adapter

    # Files laid out under names that say nothing: the params name the runs.
    first = write_ap(tmp_path / "a", "x", "y", 0, 0.5, meta={"git_commit": "c0"})
    second = write_ap(tmp_path / "b", "x", "y", 0, 0.25)
    dataset = tmp_path / "dataset.csv"
    pd.DataFrame({"shard": ["0", "1", "total"], "skipped": [0, 1, 1]}).to_csv(dataset, index=False)
    published = str(tables.published_path())
    runs = [["texture-k4-resnet18", "head", 0], ["mine-resnet18", "all", 0]]
    job = Job(
        rule="tabulate_ap",
        input=Job(ap=[str(first), str(second)], clusters=[], published=published, dataset=str(dataset)),
        output=Job(table1=str(tmp_path / "table1.csv"), table2=str(tmp_path / "table2.csv")),
        params=Job(runs=runs, modes=["head", "all"]),
        log=[str(tmp_path / "tabulate.log")], wildcards=Job(), threads=1, config={},
    )  # fmt: skip
    run_adapter("tabulate_ap", job)
    table1 = pd.read_csv(tmp_path / "table1.csv").set_index("model")
    assert table1.loc["texture-k4-resnet18", "head_map"] == pytest.approx(50.0)
    assert table1.loc["texture-k4-resnet18", "git_commit"] == "c0"
    assert table1.loc["texture-k4-resnet18", "skipped_shards"] == "1 of 2 (shard 1)"
    assert table1.loc["mine-resnet18", "init"] == "external" and table1.loc[
        "mine-resnet18", "all_map"
    ] == pytest.approx(25.0)
    assert pd.isna(table1.loc["mine-resnet18", "skipped_shards"])
    job["params"]["runs"] = job["params"]["runs"][:1]
    with pytest.raises(TableError, match="1 runs named for 2 AP files"):
        run_adapter("tabulate_ap", job)
