"""The VGGSound CSV: the real format, damaged copies, selection without an ontology."""

from __future__ import annotations

import gzip
import logging
from pathlib import Path

import pandas as pd
import pytest

from soundsup.audioset import ID_PATTERN, SegmentsFormatError, SelectConfig, shard_of
from soundsup.vggsound import VGGSoundConfig, read_vggsound, select_vggsound

DATA = Path(__file__).resolve().parent / "data"
EXCERPT = DATA / "vggsound" / "vggsound_excerpt.csv"


def write(tmp_path: Path, text: str, name: str = "vggsound.csv") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_the_published_format_is_read_as_it_is():
    segments, bad = read_vggsound(EXCERPT)
    assert bad == [] and len(segments) == 80 and segments.attrs["n_data_lines"] == 80
    assert list(segments.columns) == ["ytid", "start", "end", "labels", "split"]
    first = segments.iloc[0]
    assert (first.ytid, first.start, first.end, first.labels, first.split) == (
        "---g-f_I2yQ",
        1.0,
        11.0,
        "people marching",
        "test",
    )
    assert segments["ytid"].map(lambda ytid: bool(ID_PATTERN.match(ytid))).all()
    assert segments["ytid"].str.startswith("-").sum() == 60
    assert (segments["end"] - segments["start"] == 10.0).all()
    labels = set(segments["labels"])
    # A comma inside one label becomes ';': the labels column separates labels by commas.
    assert {"female speech; woman speaking", "bee; wasp; etc. buzzing", "playing violin; fiddle"} <= labels
    assert not any("," in label for label in labels)
    assert segments["split"].value_counts().to_dict() == {"train": 75, "test": 5}


def test_header_comments_and_crlf_copies_are_read(tmp_path):
    text = (
        "# YouTube ID, start seconds, label, train/test split\r\n"
        "youtube_id,start_seconds,label,split\r\n"
        '--9O4XZOge4,30,"female speech, woman speaking",train\r\n'
        "\r\n"
        "zzbTaK7CXJY,30,wind noise,TEST\r\n"
    )
    segments, bad = read_vggsound(write(tmp_path, text))
    assert bad == [] and segments["ytid"].tolist() == ["--9O4XZOge4", "zzbTaK7CXJY"]
    assert segments["split"].tolist() == ["train", "test"]


def test_malformed_lines_are_reported_with_their_number_and_reason(tmp_path):
    lines = EXCERPT.read_text().splitlines()[:30]
    lines[3] = "--5OkAjC,40,people belly laughing,train"  # an id that is too short
    lines[5] = "--96EN9NUQM,two,alarm clock ringing,train"
    lines[7] = "--Aa4M484QM,0,cricket chirping,validation"
    lines[9] = "--CC5pH97q4,4,  ,train"
    lines[11] = "--DTR0_mIGI,11,people, battle cry,train"  # an unquoted comma
    lines[13] = '--EquRwM9IQ,8,"playing volleyball,train'  # an unterminated quote runs to the end
    segments, bad = read_vggsound(write(tmp_path, "\n".join(lines) + "\n"))
    reasons = {line: reason for line, _, reason in bad}
    assert sorted(reasons) == [4, 6, 8, 10, 12, 14]
    assert "'--5OkAjC' is not 11 characters" in reasons[4]
    assert "start_seconds 'two'" in reasons[6]
    assert "split 'validation'" in reasons[8]
    assert "label is empty" in reasons[10]
    assert "found 5" in reasons[12]
    assert "unbalanced double quote: one field runs over lines 14-16" in reasons[14]
    assert len(segments) == 30 - 6 - 2  # lines 15 and 16 went with the open quote of line 14


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (b"<!DOCTYPE html><html><body>Not Found</body></html>", "HTML page"),
        (gzip.compress(b"---g-f_I2yQ,1,people marching,test\n"), "gzip"),
        (b"\x00\x01\x02binary", "binary"),
        ((DATA / "audioset" / "eval_excerpt.csv").read_bytes(), "AudioSet segments CSV"),
        (b"a,b\n" * 40, "40 of 40 data lines are malformed"),
        (b"\n\n", "no data lines"),
        (b"#NAME?,30,dog barking,train\n" * 30 + b"--9O4XZOge4,30,dog,train\n", "damaged by a spreadsheet"),
        (b"--9O4XZOge4,30,dog,train\xff\n", "not UTF-8"),
    ],
)
def test_a_file_that_is_not_the_vggsound_csv_is_named(tmp_path, content, match):
    path = tmp_path / "vggsound.csv"
    path.write_bytes(content)
    with pytest.raises(SegmentsFormatError, match=match) as caught:
        read_vggsound(path)
    assert str(path) in str(caught.value)


def selection_of(segments, select=None, **config) -> pd.DataFrame:
    return select_vggsound(
        segments,
        VGGSoundConfig(csv="x.csv", **config),
        select or SelectConfig(n_segments=0, exclude_labels=[]),
        n_shards=3,
        seed=0,
    )


def test_selection_filters_by_split_and_label_text_without_an_ontology():
    segments, _ = read_vggsound(EXCERPT)
    everything = selection_of(segments)
    assert len(everything) == 80 and list(everything.columns) == ["ytid", "start", "end", "labels", "shard"]
    assert (everything["shard"] == everything["ytid"].map(lambda ytid: shard_of(ytid, 3))).all()
    train = selection_of(segments, splits=("train",))
    assert len(train) == 75
    speech = ["  Female Speech,  woman speaking", "male speech, man speaking", "child speech, kid speaking"]
    without_speech = selection_of(segments, exclude_labels=tuple(speech))
    assert len(without_speech) == 80 - 4 and not without_speech["labels"].str.contains("speech").any()
    bees = selection_of(segments, include_labels=("BEE, WASP, ETC. BUZZING", "foghorn"))
    assert sorted(bees["ytid"]) == ["--CC5pH97q4", "--Lj4Y_96f0", "--PlJNEnf-s"]


def test_a_segment_listed_twice_keeps_both_labels_and_exclusion_needs_all(tmp_path):
    text = (
        "--9O4XZOge4,30,dog barking,train\n"
        "--9O4XZOge4,30,male singing,train\n"
        "zzbTaK7CXJY,30,male singing,test\n"
    )
    segments, _ = read_vggsound(write(tmp_path, text))
    selection = selection_of(segments, exclude_labels=("male singing",))
    assert selection["ytid"].tolist() == ["--9O4XZOge4"]
    assert selection["labels"].tolist() == ["dog barking,male singing"]


def test_sampling_is_seeded_and_independent_of_the_file_order(tmp_path):
    segments, _ = read_vggsound(EXCERPT)
    config = SelectConfig(n_segments=20, exclude_labels=[])
    first = selection_of(segments, select=config)
    shuffled = selection_of(segments.sample(frac=1.0, random_state=3), select=config)
    assert len(first) == 20 and first.equals(shuffled)


def test_a_label_that_no_segment_has_is_named_with_close_ones(caplog):
    segments, _ = read_vggsound(EXCERPT)
    with caplog.at_level(logging.WARNING, logger="soundsup.vggsound"):
        selection_of(segments, exclude_labels=("male speach, man speaking",))
    assert "no segment has the label 'male speach, man speaking'" in caplog.text
    assert "male speech; man speaking" in caplog.text


def test_splits_must_be_known():
    with pytest.raises(ValueError, match="vggsound.splits"):
        VGGSoundConfig(csv="x.csv", splits=("validation",))
