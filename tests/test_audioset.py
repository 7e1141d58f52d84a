"""AudioSet CSV parsing, damage detection, ontology filters, stable shards, seeded sampling."""

from __future__ import annotations

import csv
import gzip
import hashlib
import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from adapter_helpers import REPO, Job, run_adapter

from soundsup.audioset import (
    ID_PATTERN,
    MUSIC,
    SPEECH,
    SegmentsFormatError,
    SelectConfig,
    descendants,
    exclusively_under,
    load_ontology,
    read_segments,
    segments_csv_header,
    segments_csv_row,
    select_segments,
    shard_of,
)

HEADER = (
    "# Segments csv created Sun Mar  5 10:54:31 2017\n"
    "# num_ytids=22160, num_segs=22160, num_unique_labels=527, num_positive_labels=52882\n"
    "# YTID, start_seconds, end_seconds, positive_labels\n"
)
REAL_ROWS = (
    '--4gqARaEJE, 0.000, 10.000, "/m/068hy,/m/07q6cd_"\n'
    '--BfvyPmVMo, 20.000, 30.000, "/m/03l9g"\n'
    '-0RWZT-miFs, 420.000, 430.000, "/m/03v3yw,/m/0k4j"\n'
    'zzya4dDVRLk, 30.500, 36.123, "/m/0838f,/m/0jb2l,/m/09x0r"\n'
)


def write(tmp_path, text: str, name: str = "segments.csv", mode: str = "w"):
    path = tmp_path / name
    if mode == "wb":
        path.write_bytes(text)
    else:
        path.write_text(text)
    return path


def test_real_format_rows_parse_exactly(tmp_path):
    segments, bad = read_segments(write(tmp_path, HEADER + REAL_ROWS))
    assert bad == []
    assert list(segments.columns) == ["ytid", "start", "end", "labels"]
    assert segments["ytid"].tolist() == ["--4gqARaEJE", "--BfvyPmVMo", "-0RWZT-miFs", "zzya4dDVRLk"]
    assert segments["start"].tolist() == [0.0, 20.0, 420.0, 30.5]
    assert segments["end"].tolist() == [10.0, 30.0, 430.0, 36.123]
    assert segments["labels"].tolist() == [
        "/m/068hy,/m/07q6cd_",
        "/m/03l9g",
        "/m/03v3yw,/m/0k4j",
        "/m/0838f,/m/0jb2l,/m/09x0r",
    ]
    assert segments["start"].dtype == np.float64


def test_crlf_line_endings_and_no_final_newline(tmp_path):
    text = (HEADER + REAL_ROWS).replace("\n", "\r\n").rstrip("\r\n")
    segments, bad = read_segments(write(tmp_path, text))
    assert bad == [] and len(segments) == 4
    assert segments["labels"].iloc[-1] == "/m/0838f,/m/0jb2l,/m/09x0r"


def test_malformed_lines_are_reported_with_line_numbers_and_skipped(tmp_path):
    rows = REAL_ROWS.splitlines(keepends=True)
    broken = [
        rows[0],
        '--BfvyPmVMo, 20.000, "/m/03l9g"\n',  # line 5: a missing field
        'short_id, 0.000, 10.000, "/m/03l9g"\n',  # line 6: bad id
        rows[2],
        'aaaaaaaaaaa, 30.000, 20.000, "/m/03l9g"\n',  # line 8: start after end
        "bbbbbbbbbbb, 0.000, 10.000, /m/03l9g\n",  # line 9: unquoted label list
        'ccccccccccc, 1e3, 10.000, "/m/03l9g"\n',  # line 10: not a decimal time
        rows[3],
    ]
    segments, bad = read_segments(write(tmp_path, HEADER + "".join(broken)))
    assert segments["ytid"].tolist() == ["--4gqARaEJE", "-0RWZT-miFs", "zzya4dDVRLk"]
    assert [number for number, _, _ in bad] == [5, 6, 8, 9, 10]
    reasons = {number: reason for number, _, reason in bad}
    assert "expected 4 fields" in reasons[5]
    assert "short_id" in reasons[6] and "11 characters" in reasons[6]
    assert "not before end" in reasons[8]
    assert "double-quoted" in reasons[9]
    assert "1e3" in reasons[10]
    assert bad[0][1] == '--BfvyPmVMo, 20.000, "/m/03l9g"'


def test_html_page_saved_as_csv_is_detected(tmp_path):
    page = "<!DOCTYPE html>\n<html><head><title>Sign in</title></head><body>Moved</body></html>\n"
    with pytest.raises(SegmentsFormatError, match=r"segments\.csv is an HTML page"):
        read_segments(write(tmp_path, page))


def test_gzip_and_missing_header_are_detected(tmp_path):
    with pytest.raises(SegmentsFormatError, match="gzip"):
        read_segments(write(tmp_path, gzip.compress((HEADER + REAL_ROWS).encode()), "a.csv", mode="wb"))
    with pytest.raises(SegmentsFormatError, match="YTID, start_seconds"):
        read_segments(write(tmp_path, REAL_ROWS, "b.csv"))


def test_spreadsheet_damage_is_detected(tmp_path):
    good = [f'{i:011d}, 0.000, 10.000, "/m/03l9g"\n' for i in range(200)]
    name_errors = [f'#NAME?, {i}.000, {i + 10}.000, "/m/03l9g"\n' for i in range(20)]
    with pytest.raises(SegmentsFormatError, match=r"damaged by a spreadsheet.*#NAME\?"):
        read_segments(write(tmp_path, HEADER + "".join(good + name_errors), "name.csv"))
    padded = [line.rstrip("\n") + ",,,\n" for line in good]
    with pytest.raises(SegmentsFormatError, match="padding commas"):
        read_segments(write(tmp_path, HEADER + "".join(padded), "padded.csv"))
    # One damaged row among many is a malformed line, not a damaged file.
    segments, bad = read_segments(write(tmp_path, HEADER + "".join(good + name_errors[:1]), "one.csv"))
    assert len(segments) == 200 and len(bad) == 1 and "#NAME?" in bad[0][2] and bad[0][0] == 204


def test_the_csv_writer_is_the_exact_format_and_round_trips(tmp_path):
    segments, _ = read_segments(write(tmp_path, HEADER + REAL_ROWS))
    labels = [label for text in segments["labels"] for label in text.split(",")]
    lines = segments_csv_header(segments["ytid"].nunique(), len(segments), labels)
    lines += [
        segments_csv_row(*row) for row in segments[["ytid", "start", "end", "labels"]].itertuples(index=False)
    ]
    assert lines[0] == "# Segments csv created Sun Mar  5 10:54:31 2017"
    assert lines[1] == "# num_ytids=4, num_segs=4, num_unique_labels=8, num_positive_labels=8"
    assert lines[2] == "# YTID, start_seconds, end_seconds, positive_labels"
    assert "\n".join(lines[3:]) + "\n" == REAL_ROWS
    path = tmp_path / "out.csv"
    path.write_text("\n".join(lines) + "\n")
    again, bad = read_segments(path)
    assert bad == [] and again.equals(segments)


ONTOLOGY = [
    {"id": "/m/04rlf", "name": "Music", "child_ids": ["/m/0342h", "/m/064t9"]},
    {"id": "/m/0342h", "name": "Guitar", "child_ids": []},
    {"id": "/m/064t9", "name": "Pop music", "child_ids": []},
    {"id": "/m/09x0r", "name": "Speech", "child_ids": ["/m/01h8n0"]},
    {"id": "/m/01h8n0", "name": "Conversation", "child_ids": []},
    {"id": "/m/09l8g", "name": "Human voice", "child_ids": ["/m/09x0r", "/m/015lz1"]},
    {"id": "/m/015lz1", "name": "Singing", "child_ids": []},
    {"id": "/m/0838f", "name": "Water", "child_ids": ["/m/06mb1"]},
    {"id": "/m/06mb1", "name": "Rain", "child_ids": []},
    {"id": "/m/0jb2l", "name": "Thunderstorm", "child_ids": []},
]


@pytest.fixture
def ontology(tmp_path):
    path = tmp_path / "ontology.json"
    path.write_text(json.dumps([{**node, "description": "", "restrictions": []} for node in ONTOLOGY]))
    return load_ontology(path)


def test_ontology_descendants(ontology, tmp_path):
    assert descendants(ontology, ["/m/04rlf"]) == {"/m/04rlf", "/m/0342h", "/m/064t9"}
    assert "/m/015lz1" not in descendants(ontology, ["/m/04rlf", "/m/09x0r"])  # Singing is not Music
    with pytest.raises(ValueError, match="/m/nope"):
        descendants(ontology, ["/m/nope"])
    page = tmp_path / "page.json"
    page.write_text("<html>not json</html>")
    with pytest.raises(ValueError, match="page.json is not JSON .it looks like an HTML page"):
        load_ontology(page)


def segments_frame() -> pd.DataFrame:
    rows = [
        ("music_only1", 0.0, 10.0, "/m/04rlf"),
        ("guitar_only", 0.0, 10.0, "/m/0342h,/m/064t9"),  # Music subtree only
        ("speech_only", 0.0, 10.0, "/m/09x0r,/m/01h8n0"),
        ("music_speec", 0.0, 10.0, "/m/04rlf,/m/09x0r"),  # all labels excluded
        ("music_water", 0.0, 10.0, "/m/04rlf,/m/0838f"),  # keeps: Water is not excluded
        ("singing_000", 0.0, 10.0, "/m/015lz1"),
        ("rain_000000", 5.0, 15.0, "/m/06mb1"),
        ("thunder_000", 0.0, 10.0, "/m/0jb2l"),
        ("short_water", 0.0, 3.0, "/m/0838f"),  # shorter than the window
        ("exact_windw", 1.0, 4.75, "/m/0838f"),
        ("bad/id_0000", 0.0, 10.0, "/m/0838f"),
        ("neg_start00", -1.0, 10.0, "/m/0838f"),
        ("rain_000000", 5.0, 15.0, "/m/06mb1"),  # a repeated segment
    ]
    return pd.DataFrame(rows, columns=["ytid", "start", "end", "labels"])


def test_selection_excludes_music_and_speech_only_and_short(ontology):
    selected = select_segments(segments_frame(), ontology, SelectConfig(n_segments=0), n_shards=3, seed=0)
    assert sorted(selected["ytid"]) == sorted(
        ["music_water", "singing_000", "rain_000000", "thunder_000", "exact_windw"]
    )
    assert list(selected.columns) == ["ytid", "start", "end", "labels", "shard"]
    assert selected.equals(selected.sort_values(["shard", "ytid", "start"]).reset_index(drop=True))
    assert all(ID_PATTERN.match(ytid) for ytid in selected["ytid"])


def test_selection_include_labels(ontology):
    config = SelectConfig(n_segments=0, include_labels=["/m/0838f"], exclude_labels=[])
    selected = select_segments(segments_frame(), ontology, config, n_shards=1, seed=0)
    assert sorted(selected["ytid"]) == ["exact_windw", "music_water", "rain_000000"]


def test_shards_are_sha1_of_the_id_and_stable():
    for ytid in ["--4gqARaEJE", "-0RWZT-miFs", "zzya4dDVRLk"]:
        expected = int.from_bytes(hashlib.sha1(ytid.encode()).digest()[:8], "big") % 7
        assert shard_of(ytid, 7) == expected
    assert [shard_of("--4gqARaEJE", n) for n in (1, 2, 100)] == [
        0,
        int.from_bytes(hashlib.sha1(b"--4gqARaEJE").digest()[:8], "big") % 2,
        int.from_bytes(hashlib.sha1(b"--4gqARaEJE").digest()[:8], "big") % 100,
    ]


def test_seeded_sample_is_reproducible_and_order_independent(ontology):
    rng = np.random.default_rng(1)
    ids = ["".join(rng.choice(list("abcdefghijkLMNOP0123_-"), 11)) for _ in range(300)]
    frame = pd.DataFrame({"ytid": ids, "start": 0.0, "end": 10.0, "labels": "/m/0838f"})
    config = SelectConfig(n_segments=50)
    first = select_segments(frame, ontology, config, n_shards=4, seed=7)
    shuffled = frame.sample(frac=1.0, random_state=3)
    assert first.equals(select_segments(shuffled, ontology, config, n_shards=4, seed=7))
    other = select_segments(frame, ontology, config, n_shards=4, seed=8)
    assert len(first) == len(other) == 50 and set(first["ytid"]) != set(other["ytid"])
    everything = select_segments(frame, ontology, SelectConfig(n_segments=0), n_shards=4, seed=7)
    assert len(everything) == 300 and set(everything["shard"]) == {0, 1, 2, 3}


# ----------------------------------------------------------------------------------------------
# Music and speech on the real ontology and real eval rows (tests/data/audioset, see its README)

DATA = Path(__file__).parent / "data" / "audioset"
SHARED = REPO.parent / "shared" / "data" / "audioset"  # the real metadata beside the checkout
CHURCH_BELL, CHIME, BELL, BEATBOXING = "/m/03w41f", "/m/07n_g", "/m/0395lw", "/m/02cz_7"


@pytest.fixture(scope="module")
def real_ontology():
    return load_ontology(DATA / "ontology.json")


def paths_to_top(ontology, label):
    """Every path from ``label`` up to a node without parents, as lists of ids (brute force)."""
    parents = {}
    for node_id, node in ontology.items():
        for child in node.get("child_ids", []):
            parents.setdefault(child, []).append(node_id)
    if not parents.get(label):
        return [[label]]
    return [[label, *path] for parent in parents[label] for path in paths_to_top(ontology, parent)]


def test_exclusion_means_every_path_passes_through_music_or_speech(real_ontology):
    roots = {MUSIC, SPEECH}
    oracle = {
        label
        for label in real_ontology
        if all(any(node in roots for node in path) for path in paths_to_top(real_ontology, label))
    }
    excluded = exclusively_under(real_ontology, roots)
    assert excluded == oracle
    assert (len(real_ontology), len(descendants(real_ontology, roots)), len(excluded)) == (632, 197, 185)
    for label in (BELL, CHURCH_BELL, CHIME):  # also under Sounds of things
        assert label in descendants(real_ontology, [MUSIC]) and label not in excluded
    assert BEATBOXING in excluded  # under Hip hop music and Vocal music: both paths are music
    assert "/m/015lz1" not in excluded  # Singing sits under Human voice only
    with pytest.raises(ValueError, match="/m/nope"):
        exclusively_under(real_ontology, ["/m/nope"])


def test_exclusively_under_handles_shared_children_and_cycles():
    ontology = {
        "/m/a": {"id": "/m/a", "name": "A", "child_ids": ["/m/x", "/m/y"]},
        "/m/b": {"id": "/m/b", "name": "B", "child_ids": ["/m/x"]},
        "/m/x": {"id": "/m/x", "name": "X", "child_ids": ["/m/z"]},
        "/m/y": {"id": "/m/y", "name": "Y", "child_ids": ["/m/z", "/m/w"]},
        "/m/z": {"id": "/m/z", "name": "Z", "child_ids": []},
        "/m/w": {"id": "/m/w", "name": "W", "child_ids": ["/m/v"]},
        "/m/v": {"id": "/m/v", "name": "V", "child_ids": ["/m/w"]},  # a cycle below A only
    }
    # x has a parent outside A's subtree, so x and z (one of whose parents is x) are not A-only
    assert exclusively_under(ontology, ["/m/a"]) == {"/m/a", "/m/y", "/m/w", "/m/v"}
    assert exclusively_under(ontology, ["/m/a", "/m/b"]) == set(ontology)


def real_excerpt_selection(ontology):
    segments, bad = read_segments(DATA / "eval_excerpt.csv")
    assert bad == [] and len(segments) == 59
    config = SelectConfig(n_segments=0, min_duration_s=0)  # labels only (one of these rows lasts 2 s)
    selected = select_segments(segments, ontology, config, n_shards=1, seed=0)
    return segments, set(zip(selected["ytid"], selected["start"], strict=True))


def test_bells_and_chimes_are_not_music_on_real_eval_rows(real_ontology):
    segments, kept = real_excerpt_selection(real_ontology)
    old = descendants(real_ontology, [MUSIC, SPEECH])
    labels = segments["labels"].str.split(",")
    keys = list(zip(segments["ytid"], segments["start"], strict=True))
    all_old = labels.map(lambda row: all(label in old for label in row)).to_numpy()
    for bell in (CHURCH_BELL, BELL, CHIME):
        rows = [key for key, row, music in zip(keys, labels, all_old, strict=True) if music and bell in row]
        assert rows and set(rows) <= kept  # every label under Music or Speech, one of them a bell
    beatboxing = [
        key for key, row, music in zip(keys, labels, all_old, strict=True) if music and BEATBOXING in row
    ]
    assert len(beatboxing) == 2 and not set(beatboxing) & kept
    assert (int(all_old.sum()), len(segments) - len(kept)) == (51, 11)  # 40 rows held bells, choirs, chants


@pytest.mark.skipif(not (SHARED / "eval_segments.csv").is_file(), reason="the full eval CSV is not here")
def test_full_eval_csv_counts():
    ontology = load_ontology(SHARED / "ontology.json")
    segments, _ = read_segments(SHARED / "eval_segments.csv")
    selected = select_segments(segments, ontology, SelectConfig(n_segments=0, min_duration_s=0), 1, 0)
    labels = segments["labels"].str.split(",")
    old = descendants(ontology, [MUSIC, SPEECH])
    assert int(labels.map(lambda row: all(label in old for label in row)).sum()) == 4502  # data README
    assert len(segments) - len(selected) == 4502 - 553


# Real files: excerpts committed in tests/data/audioset, the whole files from shared/data


DATA = Path(__file__).resolve().parent / "data" / "audioset"
SHARED = next(
    (
        folder
        for folder in (
            REPO.parent / "shared" / "data" / "audioset",
            REPO.parent.parent / "shared" / "data" / "audioset",
        )
        if (folder / "eval_segments.csv").is_file()
    ),
    None,
)
needs_shared = pytest.mark.skipif(
    SHARED is None, reason="the whole AudioSet CSVs (shared/data/audioset beside the repository) are not here"
)


def csv_module_rows(path: Path) -> list[tuple[str, float, float, str]]:
    """The rows as the csv module reads them: an independent reading to compare with."""
    with open(path, newline="") as handle:
        return [
            (row[0], float(row[1]), float(row[2]), row[3])
            for row in csv.reader(handle, skipinitialspace=True)
            if row and not row[0].startswith("#")
        ]


def header_warnings(caplog) -> list[str]:
    return [record.getMessage() for record in caplog.records if "num_segs" in record.getMessage()]


@pytest.mark.parametrize(
    ("name", "stated"), [("eval_segments_excerpt.csv", 20371), ("balanced_train_segments_head.csv", 22160)]
)
def test_real_excerpts_parse_exactly_and_their_header_is_compared(name, stated, caplog):
    path = DATA / name
    with caplog.at_level(logging.WARNING, logger="soundsup.audioset"):
        segments, bad = read_segments(path)
    assert bad == [] and len(segments) == 300
    expected = csv_module_rows(path)
    assert list(segments.itertuples(index=False, name=None)) == expected
    assert segments.attrs == {"num_segs_header": stated, "n_data_lines": 300}
    (warning,) = header_warnings(caplog)
    assert f"num_segs={stated}" in warning and "300 data lines" in warning and "truncated" in warning


@needs_shared
@pytest.mark.parametrize(
    ("name", "rows"), [("eval_segments.csv", 20371), ("balanced_train_segments.csv", 22160)]
)
def test_whole_real_files_match_their_headers(name, rows, caplog):
    with caplog.at_level(logging.WARNING, logger="soundsup.audioset"):
        segments, bad = read_segments(SHARED / name)
    assert bad == [] and len(segments) == rows
    assert segments.attrs == {"num_segs_header": rows, "n_data_lines": rows}
    assert header_warnings(caplog) == []
    assert segments["ytid"].str.match(ID_PATTERN.pattern).all()


@needs_shared
def test_a_truncated_copy_of_balanced_train_is_told(tmp_path, caplog):
    """As the public copy that lacks 5 rows under a header saying num_segs=22160."""
    lines = (SHARED / "balanced_train_segments.csv").read_bytes().splitlines(keepends=True)
    copy = tmp_path / "balanced_train_segments.csv"
    copy.write_bytes(b"".join(lines[:1000] + lines[1005:]))
    with caplog.at_level(logging.WARNING, logger="soundsup.audioset"):
        segments, bad = read_segments(copy)
    assert bad == [] and len(segments) == 22155
    (warning,) = header_warnings(caplog)
    assert "num_segs=22160" in warning and "22155 data lines" in warning


def test_a_line_longer_than_the_csv_field_limit_is_one_malformed_line(tmp_path):
    lines = (DATA / "eval_segments_excerpt.csv").read_text().splitlines(keepends=True)
    giant_field = '"' + "x" * 200_000 + ' y", 0.000, 10.000, "/m/0838f"\n'  # a field csv refuses
    giant_labels = 'abcdefghijk, 0.000, 10.000, "' + "/m/0838f," * 20_000 + '/m/0838f"\n'
    path = tmp_path / "long.csv"
    path.write_text("".join(lines[:10] + [giant_field] + lines[10:20] + [giant_labels] + lines[20:]))
    segments, bad = read_segments(path)
    assert len(segments) == 300
    assert [number for number, _, _ in bad] == [11, 22]
    assert f"{len(giant_field.strip()):,} characters" in bad[0][2] and len(bad[0][1]) == 1000
    assert "label list of" in bad[1][2]


def test_times_have_an_upper_bound_so_keys_stay_distinct(tmp_path, ontology):
    rows = (
        'aaaaaaaaaaa, 0.000, 10.000, "/m/0838f"\n'
        'aaaaaaaaaaa, 1099511627.776, 1099511637.776, "/m/0838f"\n'  # start in ms = 2^40
        'bbbbbbbbbbb, 999990.000, 1000000.000, "/m/0838f"\n'
    )
    segments, bad = read_segments(write(tmp_path, HEADER + rows))
    assert segments["ytid"].tolist() == ["aaaaaaaaaaa", "bbbbbbbbbbb"]
    assert [number for number, _, _ in bad] == [5] and "beyond any video" in bad[0][2]
    unchecked = pd.DataFrame(
        {"ytid": ["aaaaaaaaaaa"] * 2, "start": [0.0, 1099511627.776], "end": [10.0, 1099511637.776],
         "labels": "/m/0838f"}
    )  # fmt: skip
    selected = select_segments(unchecked, ontology, SelectConfig(n_segments=0), n_shards=1, seed=0)
    assert selected["start"].tolist() == [0.0]  # dropped as invalid, not merged with the first


def test_a_header_only_file_says_it_has_no_data_lines(tmp_path):
    real_header = "".join((DATA / "eval_segments_excerpt.csv").read_text().splitlines(keepends=True)[:3])
    with pytest.raises(
        SegmentsFormatError, match=r"header but no data lines \(its header says num_segs=20371\)"
    ):
        read_segments(write(tmp_path, real_header + "\n\n", "empty.csv"))


def test_select_segments_records_the_header_count_in_its_metadata(tmp_path):
    ontology_path = tmp_path / "ontology.json"
    ontology_path.write_text(json.dumps(ONTOLOGY))
    selection = tmp_path / "results" / "selection.parquet"
    job = Job(
        input=Job(segments=str(DATA / "balanced_train_segments_head.csv"), ontology=str(ontology_path)),
        output=Job(selection=str(selection), rejected=str(tmp_path / "results" / "malformed.csv")),
        params=Job(select={"n_segments": 0}, shards=2, seed=0),
        wildcards=Job(),
        log=[str(tmp_path / "select.log")],
        rule="select_segments",
        threads=1,
    )
    run_adapter("select_segments", job)
    meta = json.loads(Path(f"{selection}.meta.json").read_text())
    assert (meta["num_segs_header"], meta["n_data_lines"], meta["n_rows_read"]) == (22160, 300, 300)
    assert "num_segs=22160 but 300 data lines" in (tmp_path / "select.log").read_text()
