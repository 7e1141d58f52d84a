"""VGGSound segment lists (``world: vggsound``): read the CSV, filter by split and label, select.

The CSV that VGGSound publishes (``vggsound.csv``, about 200,000 rows) has no header; each line
is ``youtube_id,start_seconds,label,split``::

    ---g-f_I2yQ,1,people marching,test
    --9O4XZOge4,30,"female speech, woman speaking",train

The id is an 11-character YouTube id (some start with ``-``), ``start_seconds`` a whole number,
the clip the 10 s from it; the label is free text, double-quoted when it holds a comma (standard
CSV quoting); the split is ``train`` or ``test``. Copies that circulate with a header row or a
``#`` comment line on top are read too. A line that does not fit is reported with its line
number and a reason and skipped; a file that is not such a CSV (an AudioSet CSV, an HTML page,
binary data, mostly malformed lines) raises :class:`SegmentsFormatError`.

The labels are not ontology ids, so no ontology is needed or used: ``vggsound.splits`` keeps
the splits named, ``vggsound.include_labels`` keeps only segments with one of these label
texts, ``vggsound.exclude_labels`` drops those whose labels are all among these (both compared
without regard to case or spacing). The ``labels`` column holds the label texts as
:func:`soundsup.folder.label_text` writes them (a comma inside a label becomes ``;``, since
the column separates labels by commas); a segment listed twice with different labels keeps both.
"""

from __future__ import annotations

import csv
import difflib
import io
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from soundsup.audioset import (
    ID_PATTERN,
    MAX_SECONDS,
    SegmentsFormatError,
    SelectConfig,
    check_not_damaged,
    select_segments,
)
from soundsup.folder import label_text

log = logging.getLogger(__name__)

CLIP_SECONDS = 10.0
SPLITS = ("train", "test")
COLUMNS = ("ytid", "start", "end", "labels", "split")
_START = re.compile(r"[0-9]+(?:\.[0-9]+)?")
_SPREADSHEET_ERRORS = ("#NAME?", "#VALUE!", "#REF!", "#N/A", "#NUM!", "#DIV/0!", "#NULL!")
_HEADER_WORDS = ("youtube", "ytid", "video_id", "id")


@dataclass(frozen=True)
class VGGSoundConfig:
    """Which VGGSound segments to use (config section ``vggsound``)."""

    csv: str | None = None
    splits: tuple = SPLITS
    include_labels: tuple = ()
    exclude_labels: tuple = ()

    def __post_init__(self) -> None:
        unknown = sorted(set(self.splits) - set(SPLITS))
        if unknown or not self.splits:
            raise ValueError(f"vggsound.splits must name some of {list(SPLITS)}, got {list(self.splits)}")


def _check_text(raw: bytes, path: Path) -> str:
    check_not_damaged(raw, path, "the VGGSound CSV")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise SegmentsFormatError(
            f"{path} is not UTF-8 text (byte {error.start}): not the VGGSound CSV"
        ) from error
    start = text[:4096].lstrip(" \t\r\n").lower()
    if start.startswith("# segments csv created") or start.startswith("# ytid, start_seconds, end_seconds"):
        raise SegmentsFormatError(
            f"{path} is an AudioSet segments CSV, not the VGGSound CSV: use world: audioset"
        )
    return text


def _is_header(fields: list[str]) -> bool:
    return (
        len(fields) >= 2
        and fields[0].strip().lstrip("#").strip().lower().startswith(_HEADER_WORDS)
        and not _START.fullmatch(fields[1].strip())
    )


def _diagnose(fields: list[str]) -> tuple[str | None, tuple[str, float, str, str] | None]:
    """``(reason, None)`` for a line that is not a segment, else ``(None, (ytid, start, label, split))``."""
    stripped = [field.strip() for field in fields]
    if stripped and stripped[0].startswith(_SPREADSHEET_ERRORS):
        return f"spreadsheet error value {stripped[0]!r} in place of the YouTube id", None
    if len(stripped) > 4 and not any(stripped[4:]):
        return "padding commas at the end of the line (spreadsheet export)", None
    if len(stripped) != 4:
        return f"expected 4 fields (youtube_id, start_seconds, label, split), found {len(stripped)}", None
    ytid, start, label, split = stripped
    if not ID_PATTERN.match(ytid):
        return f"YouTube id {ytid!r} is not 11 characters of [A-Za-z0-9_-]", None
    if not _START.fullmatch(start):
        return f"start_seconds {start!r} is not a non-negative number", None
    if float(start) + CLIP_SECONDS > MAX_SECONDS:
        return f"start_seconds {start} is beyond any video", None
    if not label_text(label):
        return "the label is empty", None
    if split.lower() not in SPLITS:
        return f"split {split!r} is not one of {list(SPLITS)}", None
    return None, (ytid, float(start), label_text(label), split.lower())


def read_vggsound(path: str | Path) -> tuple[pd.DataFrame, list[tuple[int, str, str]]]:
    """Parse a VGGSound CSV.

    Returns ``(segments, bad_lines)``: ``segments`` has columns ``ytid`` (str), ``start``,
    ``end`` (float64 seconds, ``end = start + 10``), ``labels`` (str, one label text) and
    ``split`` (``train``/``test``), in file order; ``bad_lines`` lists ``(line_number, text,
    reason)`` for each skipped line. ``segments.attrs['n_data_lines']`` counts the non-blank
    lines that are not a header or comment. Raises :class:`SegmentsFormatError` (naming the
    file) for a file that is not such a CSV.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"VGGSound CSV not found: {path}")
    text = _check_text(path.read_bytes(), path)
    reader = csv.reader(io.StringIO(text, newline=""))
    rows: list[tuple[str, float, str, str]] = []
    bad: list[tuple[int, str, str]] = []
    n_data = 0
    last_line = 0
    for fields in reader:
        line, last_line = last_line + 1, reader.line_num  # the first and last line of the record
        if not any(field.strip() for field in fields):
            continue
        first = fields[0].strip()
        comment = first.startswith("#") and not first.startswith(_SPREADSHEET_ERRORS)
        if comment or (n_data == 0 and _is_header(fields)):
            log.info("%s line %d is a header or comment: skipped", path, line)
            continue
        n_data += 1
        reason, row = _diagnose(fields)
        if last_line > line:  # a double quote left open: the field ran over the next lines
            reason, row = f"an unbalanced double quote: one field runs over lines {line}-{last_line}", None
        if row is None:
            bad.append((line, ",".join(fields)[:1000], str(reason)))
        else:
            rows.append(row)
    _raise_if_damaged(bad, n_data, len(rows), path)
    if bad:
        log.warning(
            "%s: %d malformed lines skipped (first: line %d: %s)", path, len(bad), bad[0][0], bad[0][2]
        )
    frame = pd.DataFrame(rows, columns=["ytid", "start", "labels", "split"])
    frame = frame.astype({"ytid": str, "start": float, "labels": str, "split": str})
    frame.insert(2, "end", frame["start"] + CLIP_SECONDS)
    frame.attrs = {"n_data_lines": n_data}
    log.info("%s: %d segments read", path, len(frame))
    return frame, bad


def _raise_if_damaged(bad: list[tuple[int, str, str]], n_data: int, n_good: int, path: Path) -> None:
    if n_data == 0:
        raise SegmentsFormatError(f"{path} has no data lines: not the VGGSound CSV")
    spreadsheet = [entry for entry in bad if entry[2].startswith(("spreadsheet", "padding"))]
    if len(spreadsheet) > max(10, 0.001 * n_data):
        raise SegmentsFormatError(
            f"{path} was damaged by a spreadsheet: {len(spreadsheet)} of {n_data} rows hold spreadsheet "
            f"error values or padding commas (first at line {spreadsheet[0][0]}: {spreadsheet[0][2]}); "
            "use the original CSV"
        )
    if n_good == 0 or (len(bad) >= 10 and len(bad) > 0.05 * n_data):
        raise SegmentsFormatError(
            f"{path} is not the VGGSound CSV (youtube_id,start_seconds,label,split): {len(bad)} of {n_data} "
            f"data lines are malformed (first: line {bad[0][0]}: {bad[0][2]})"
        )


def _folded(text: str) -> str:
    return label_text(text).casefold()


def _warn_unknown(names: Iterable[str], present: set[str], key: str) -> None:
    for name in names:
        if _folded(name) not in present:
            close = difflib.get_close_matches(_folded(name), sorted(present), n=3)
            hint = f" (close: {close})" if close else ""
            log.warning("vggsound.%s: no segment has the label %r%s", key, name, hint)


def select_vggsound(
    segments: pd.DataFrame, config: VGGSoundConfig, select: SelectConfig, n_shards: int, seed: int
) -> pd.DataFrame:
    """Filter :func:`read_vggsound`'s segments by split and label, merge repeated segments,
    then draw and shard as :func:`soundsup.audioset.select_segments` does (no ontology).

    Returns columns ``ytid, start, end, labels, shard`` sorted by ``(shard, ytid, start)``.
    """
    frame = segments[segments["split"].isin(config.splits)]
    folded = frame["labels"].str.casefold()  # the labels are label_text already
    present = set(folded)
    _warn_unknown(config.include_labels, present, "include_labels")
    _warn_unknown(config.exclude_labels, present, "exclude_labels")
    wanted = {_folded(name) for name in config.include_labels}
    unwanted = {_folded(name) for name in config.exclude_labels}
    # Most segments are listed once, with one label: vectorised; the repeated ones merged first.
    repeated = frame.duplicated(["ytid", "start"], keep=False).to_numpy()
    single = frame[~repeated]
    keep = np.ones(len(single), dtype=bool)
    if wanted:
        keep &= folded[~repeated].isin(wanted).to_numpy()
    if unwanted:
        keep &= ~folded[~repeated].isin(unwanted).to_numpy()
    merged = (
        frame[repeated]
        .groupby(["ytid", "start"], sort=False, as_index=False)
        .agg(end=("end", "max"), labels=("labels", lambda texts: ",".join(dict.fromkeys(texts))))
    )
    label_sets = [{label.casefold() for label in labels.split(",")} for labels in merged["labels"]]
    keep_merged = np.array(
        [
            (not wanted or bool(labels & wanted)) and not (unwanted and labels <= unwanted)
            for labels in label_sets
        ],
        dtype=bool,
    )
    if len(merged):
        log.info("%d segments listed more than once: their labels kept together", len(merged))
    columns = ["ytid", "start", "end", "labels"]
    kept = pd.concat([single.loc[keep, columns], merged.loc[keep_merged, columns]], ignore_index=True)
    log.info(
        "vggsound: %d rows, %d in splits %s, %d segments pass the labels",
        len(segments), len(frame), list(config.splits), len(kept),
    )  # fmt: skip
    plain = SelectConfig(n_segments=select.n_segments, include_labels=(), exclude_labels=[],
                         min_duration_s=select.min_duration_s)  # fmt: skip
    return select_segments(kept, None, plain, n_shards=n_shards, seed=seed)
