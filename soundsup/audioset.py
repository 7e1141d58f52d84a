"""AudioSet segment lists: parse the official CSVs, filter by ontology, sample, assign shards.

The CSV format (``eval``, ``balanced_train``, ``unbalanced_train``)::

    # Segments csv created Sun Mar  5 10:54:31 2017
    # num_ytids=22160, num_segs=22160, num_unique_labels=527, num_positive_labels=52882
    # YTID, start_seconds, end_seconds, positive_labels
    --4gqARaEJE, 0.000, 10.000, "/m/068hy,/m/07q6cd_"

The 2-million-row file parses in about two seconds: its lines are checked by one RE2 pattern,
vectorised over an Arrow array; only the lines that fail it are diagnosed. A line that does not
fit (of any length) is reported with its line number and a reason, and skipped; a file that is
not such a CSV (an HTML page, binary data, rows mangled by a spreadsheet, a header and no data)
raises :class:`SegmentsFormatError`. Times must lie in ``[0, MAX_SECONDS]``: no video is that
long. The header's
``num_segs`` is compared with the data lines read: truncated copies of these files circulate
under their original header.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

log = logging.getLogger(__name__)

ID_PATTERN = re.compile(r"^[A-Za-z0-9_-]{11}$")
MAX_SECONDS = 1_000_000.0
"""Upper bound of segment times (no video is 10^6 s long); start in ms then fits in 40 bits."""
MAX_LINE_CHARS = 4096
"""A data line longer than this is diagnosed without parsing it (real rows are < 300 characters)."""
LABEL_PATTERN = re.compile(r"^/[a-z]/[A-Za-z0-9_]+$")
MUSIC, SPEECH = "/m/04rlf", "/m/09x0r"
COLUMNS_HEADER = "# YTID, start_seconds, end_seconds, positive_labels"
CREATED = "Sun Mar  5 10:54:31 2017"

_ROW = (
    r"^(?P<ytid>[A-Za-z0-9_-]{11}), *(?P<start>[0-9]+(?:\.[0-9]+)?), *(?P<end>[0-9]+(?:\.[0-9]+)?),"
    r' *"(?P<labels>[/a-zA-Z0-9_,]+)"[\r\n]*$'
)
_LABEL_LIST = r"^/[a-z]/[A-Za-z0-9_]+(?:,/[a-z]/[A-Za-z0-9_]+)*$"
_SPREADSHEET_ERRORS = ("#NAME?", "#VALUE!", "#REF!", "#N/A", "#NUM!", "#DIV/0!", "#NULL!")
_PADDING = re.compile(r",\s*$")
_NUM_SEGS = re.compile(r"\bnum_segs\s*=\s*(\d+)")


class SegmentsFormatError(ValueError):
    """The segments file is not an AudioSet segments CSV, or is damaged beyond single lines."""


@dataclass(frozen=True)
class SelectConfig:
    """Which segments to use (config section ``select``).

    ``include_labels``: keep only segments with at least one label in these subtrees (empty =
    no constraint). ``exclude_labels``: drop segments whose labels are ALL excluded, a label
    being excluded when every path from it to the top of the ontology passes through one of
    these (:func:`exclusively_under`; default Music and Speech). ``n_segments``: seeded sample
    size (0 = all that pass).
    """

    n_segments: int = 33500
    include_labels: tuple | list = ()
    exclude_labels: list = field(default_factory=lambda: [MUSIC, SPEECH])
    min_duration_s: float = 3.75

    def __post_init__(self) -> None:
        if self.n_segments < 0:
            raise ValueError(f"select.n_segments must be >= 0, got {self.n_segments}")
        if not math.isfinite(self.min_duration_s) or self.min_duration_s < 0:
            raise ValueError(f"select.min_duration_s must be a finite number >= 0, got {self.min_duration_s}")


# ----------------------------------------------------------------------------------------------
# Reading


def check_not_damaged(raw: bytes, path: Path, what: str = "an AudioSet segments CSV") -> None:
    """Raise :class:`SegmentsFormatError` for what a segment list that was damaged or never was
    one looks like: gzip, binary data, an HTML page (a saved web page or a download's error page)."""
    head = raw[:65536]
    if head.startswith(b"\x1f\x8b"):
        raise SegmentsFormatError(f"{path} is gzip-compressed, not {what}: decompress it first")
    if b"\x00" in head:
        raise SegmentsFormatError(f"{path} holds binary data, not {what}")
    text = head[:4096].decode("utf-8", errors="replace").lstrip("\ufeff \t\r\n").lower()
    if text.startswith("<") or "<html" in text or "<!doctype" in text:
        raise SegmentsFormatError(
            f"{path} is an HTML page, not {what} (a saved web page or an error page from the "
            "download): fetch the raw file again"
        )


def _split_lines(raw: bytes) -> pa.LargeStringArray:
    """Every line of ``raw`` (UTF-8) as one Arrow string, newline removed; line ``i`` is index ``i - 1``."""
    return pa.array(raw.decode("utf-8").split("\n"), pa.large_string())


def _count_header(lines: pa.LargeStringArray, path: Path) -> int:
    """Number of leading ``# `` header lines; raise if the column header is missing."""
    n_header = 0
    has_columns = False
    for value in lines.slice(0, min(len(lines), 20)).to_pylist():
        text = value.lstrip("\ufeff").rstrip("\r\n")
        if not (text.startswith("# ") or text == "#"):
            break
        has_columns = has_columns or text.replace(" ", "").startswith(COLUMNS_HEADER.replace(" ", ""))
        n_header += 1
    if not has_columns:
        raise SegmentsFormatError(
            f"{path}: no '{COLUMNS_HEADER}' header line at the top: not an AudioSet segments CSV, "
            "or its header was lost (e.g. re-saved by a spreadsheet)"
        )
    if n_header != 3:
        log.warning("%s: %d header lines instead of the usual 3", path, n_header)
    return n_header


def _header_num_segs(lines: pa.LargeStringArray, n_header: int) -> int | None:
    """The ``num_segs=N`` that a header line states, or None."""
    for value in lines.slice(0, n_header).to_pylist():
        found = _NUM_SEGS.search(value)
        if found:
            return int(found.group(1))
    return None


def _diagnose(text: str) -> str:
    """Why one line is not a segment row (slow path: only for lines that failed the pattern)."""
    stripped = text.strip()
    if stripped.startswith(_SPREADSHEET_ERRORS):
        return f"spreadsheet error value {stripped.split(',')[0]!r} in place of the YouTube id"
    if len(stripped) > MAX_LINE_CHARS:
        return (
            f"a line of {len(stripped):,} characters (segment rows are a few hundred at most): "
            "lines run together or binary data"
        )
    if _PADDING.search(stripped):
        return "padding commas at the end of the line (spreadsheet export)"
    try:
        fields = next(csv.reader([stripped], skipinitialspace=True))
    except csv.Error as error:
        return f"not a CSV row ({error})"
    if len(fields) != 4:
        return f"expected 4 fields (YTID, start, end, labels), found {len(fields)}"
    ytid, start, end, labels = fields
    if not ID_PATTERN.match(ytid):
        return f"YouTube id {ytid!r} is not 11 characters of [A-Za-z0-9_-]"
    for name, value in (("start", start), ("end", end)):
        if not re.fullmatch(r"[0-9]+(?:\.[0-9]+)?", value):
            return f"{name} time {value!r} is not a non-negative decimal number"
    if not stripped.endswith('"'):
        return "label list is not double-quoted"
    if not re.fullmatch(_LABEL_LIST, labels):
        return f"label list {labels!r} is not comma-separated ontology ids like /m/068hy"
    return "does not match 'YTID, start, end, \"labels\"'"


def _raise_if_damaged(
    bad: list[tuple[int, str, str]], n_bad: int, n_rows: int, n_good: int, path: Path
) -> None:
    """Raise for a damaged file: ``bad`` holds diagnosed lines (all of them, or a first few)."""
    spreadsheet = [entry for entry in bad if entry[2].startswith(("spreadsheet", "padding"))]
    n_spreadsheet = round(len(spreadsheet) * n_bad / max(len(bad), 1))
    if n_spreadsheet > max(10, 0.001 * n_rows):
        first = spreadsheet[0]
        raise SegmentsFormatError(
            f"{path} was damaged by a spreadsheet: about {n_spreadsheet} of {n_rows} rows hold spreadsheet "
            f"error values (#NAME? ids) or padding commas (first at line {first[0]}: {first[2]}); "
            "use the original CSV"
        )
    if n_good == 0 or (n_bad >= 10 and n_bad > 0.05 * n_rows):
        detail = f" (first: line {bad[0][0]}: {bad[0][2]})" if bad else ""
        raise SegmentsFormatError(
            f"{path} is not an AudioSet segments CSV: {n_bad} of {n_rows} data lines are malformed{detail}"
        )


def read_segments(path: str | Path) -> tuple[pd.DataFrame, list[tuple[int, str, str]]]:
    """Parse an AudioSet segments CSV.

    Returns ``(segments, bad_lines)``: ``segments`` has columns ``ytid`` (str), ``start``,
    ``end`` (float64 seconds) and ``labels`` (str, comma-separated ontology ids), in file order;
    ``bad_lines`` lists ``(line_number, raw_text, reason)`` for each skipped line (1-based; the
    text cut to 1000 characters). ``segments.attrs`` holds ``num_segs_header`` (the header's
    ``num_segs``, None when absent) and ``n_data_lines`` (non-blank lines after the header);
    when they differ a WARNING names both. Raises :class:`SegmentsFormatError` (naming the
    file) for a file that is not such a CSV, or has no data lines.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"segments CSV not found: {path}")
    raw = path.read_bytes()
    check_not_damaged(raw, path)
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise SegmentsFormatError(
            f"{path} is not UTF-8 text (byte {error.start}): not a segments CSV"
        ) from error
    lines = _split_lines(raw)
    n_header = _count_header(lines, path)
    num_segs = _header_num_segs(lines, n_header)
    body = lines.slice(n_header)
    parsed = pc.extract_regex(body, _ROW)
    matched = pc.is_valid(parsed).to_numpy(zero_copy_only=False)
    blank = pc.match_substring_regex(body, r"^\s*$").to_numpy(zero_copy_only=False)
    good = pc.filter(parsed, pa.array(matched))
    frame = pd.DataFrame(
        {
            "ytid": pc.struct_field(good, "ytid").to_pandas(),
            "start": pc.cast(pc.struct_field(good, "start"), pa.float64()).to_numpy(),
            "end": pc.cast(pc.struct_field(good, "end"), pa.float64()).to_numpy(),
            "labels": pc.struct_field(good, "labels").to_pandas(),
        }
    )
    line_numbers = np.flatnonzero(matched) + n_header + 1
    bad_index = np.flatnonzero(~matched & ~blank)
    n_rows, n_bad = int((~blank).sum()), len(bad_index)
    if n_rows == 0:
        stated = f" (its header says num_segs={num_segs})" if num_segs is not None else ""
        raise SegmentsFormatError(f"{path} has the segments header but no data lines{stated}")
    _compare_with_header(num_segs, n_rows, path)
    hopeless = n_bad >= 10 and n_bad > 0.5 * n_rows
    bad = []
    for index in bad_index[:20] if hopeless else bad_index:
        text = body[int(index)].as_py().rstrip("\r\n")
        bad.append((int(index) + n_header + 1, text[:1000], _diagnose(text)))
    if hopeless:
        _raise_if_damaged(bad, n_bad, n_rows, len(frame), path)
    frame, more_bad = _check_rows(frame, line_numbers)
    bad = sorted(bad + more_bad)
    _raise_if_damaged(bad, len(bad), n_rows, len(frame), path)
    if bad:
        log.warning(
            "%s: %d malformed lines skipped (first: line %d: %s)", path, len(bad), bad[0][0], bad[0][2]
        )
    log.info("%s: %d segments read", path, len(frame))
    frame = frame.reset_index(drop=True)
    frame.attrs = {"num_segs_header": num_segs, "n_data_lines": n_rows}
    return frame, bad


def _compare_with_header(num_segs: int | None, n_rows: int, path: Path) -> None:
    """Warn when the data lines are not as many as the header's ``num_segs`` says."""
    if num_segs is None:
        log.warning("%s: the header states no num_segs; %d data lines read", path, n_rows)
    elif num_segs != n_rows:
        what = "truncated (rows lost)" if n_rows < num_segs else "extended (rows added)"
        log.warning(
            "%s: the header says num_segs=%d but %d data lines were read (%+d): the file was %s "
            "since it was made; use an intact copy if this is not intended",
            path, num_segs, n_rows, n_rows - num_segs, what,
        )  # fmt: skip


def _check_rows(
    frame: pd.DataFrame, line_numbers: np.ndarray
) -> tuple[pd.DataFrame, list[tuple[int, str, str]]]:
    """Drop rows whose label list or times are invalid; report them as bad lines."""
    labels = pa.array(frame["labels"], pa.large_string())
    labels_ok = pc.and_(
        pc.match_substring_regex(labels, _LABEL_LIST), pc.less_equal(pc.utf8_length(labels), MAX_LINE_CHARS)
    )
    labels_ok = labels_ok.to_numpy(zero_copy_only=False)
    start, end = frame["start"].to_numpy(), frame["end"].to_numpy()
    in_range = np.isfinite(end) & (end <= MAX_SECONDS)
    times_ok = (start < end) & in_range
    keep = labels_ok & times_ok
    bad = []
    for index in np.flatnonzero(~keep):
        row = frame.iloc[index]
        text = f'{row.ytid}, {row.start:.3f}, {row.end:.3f}, "{row.labels}"'[:1000]
        if len(row.labels) > MAX_LINE_CHARS:
            reason = f"a label list of {len(row.labels):,} characters (real ones are a few hundred at most)"
        elif not labels_ok[index]:
            reason = f"label list {row.labels!r} is not comma-separated ontology ids like /m/068hy"
        elif not in_range[index]:
            reason = f"time {max(row.start, row.end):g} s is beyond any video (limit {MAX_SECONDS:g} s)"
        else:
            reason = f"start {row.start} is not before end {row.end}"
        bad.append((int(line_numbers[index]), text, reason))
    return frame[keep], bad


def segments_csv_header(n_ytids: int, n_segs: int, labels: list[str], created: str = CREATED) -> list[str]:
    """The three header lines of an AudioSet segments CSV (``labels``: every positive label of
    every row, repeats included)."""
    return [
        f"# Segments csv created {created}",
        f"# num_ytids={n_ytids}, num_segs={n_segs}, "
        f"num_unique_labels={len(set(labels))}, num_positive_labels={len(labels)}",
        COLUMNS_HEADER,
    ]


def segments_csv_row(ytid: str, start: float, end: float, labels: str) -> str:
    """One row of an AudioSet segments CSV, as the published files write it."""
    return f'{ytid}, {start:.3f}, {end:.3f}, "{labels}"'


# ----------------------------------------------------------------------------------------------
# Ontology


def load_ontology(path: str | Path) -> dict[str, dict]:
    """Read an AudioSet ``ontology.json`` (a list of nodes with ``id``, ``name``, ``child_ids``).

    Returns ``{id: node}``. Raises ``ValueError`` naming the file for anything else.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"ontology not found: {path}")
    text = path.read_text(encoding="utf-8", errors="replace")
    try:
        nodes = json.loads(text)
    except json.JSONDecodeError as error:
        hint = " (it looks like an HTML page)" if text.lstrip().startswith("<") else ""
        raise ValueError(f"{path} is not JSON{hint}: {error}") from error
    if not isinstance(nodes, list):
        raise ValueError(
            f"{path}: an AudioSet ontology is a JSON list of nodes, found {type(nodes).__name__}"
        )
    ontology: dict[str, dict] = {}
    for position, node in enumerate(nodes):
        if not isinstance(node, dict) or not isinstance(node.get("id"), str) or "name" not in node:
            raise ValueError(f"{path}: node {position} lacks an 'id' or a 'name'")
        children = node.get("child_ids", [])
        if not isinstance(children, list):
            raise ValueError(f"{path}: node {node['id']} has child_ids that are not a list")
        ontology[node["id"]] = node
    return ontology


def descendants(ontology: dict[str, dict], root_ids: Iterable[str]) -> set[str]:
    """Every id in the subtrees of ``root_ids`` (the roots included)."""
    found: set[str] = set()
    pending = list(root_ids)
    for root in pending:
        if root not in ontology:
            raise ValueError(f"label {root!r} is not in the ontology")
    while pending:
        node = pending.pop()
        if node in found:
            continue
        found.add(node)
        pending.extend(child for child in ontology.get(node, {}).get("child_ids", []) if child not in found)
    return found


def parents_of(ontology: dict[str, dict]) -> dict[str, list[str]]:
    """``{id: [parent ids]}`` from the nodes' ``child_ids`` (a top-level node has no entry)."""
    parents: dict[str, list[str]] = {}
    for node_id, node in ontology.items():
        for child in node.get("child_ids", []):
            parents.setdefault(child, []).append(node_id)
    return parents


def exclusively_under(ontology: dict[str, dict], root_ids: Iterable[str]) -> set[str]:
    """The ids every path of which to the top of the ontology passes through one of ``root_ids``.

    The roots are included. A label can sit in several subtrees: Bell (and below it Church bell,
    Chime, Jingle bell, ...) is a Musical instrument, under Music, and also under Sounds of
    things; Choir and Chant sit under Singing (Human voice) too. Such a label is in
    :func:`descendants` of Music but not here: it is music only when all its paths say so.
    Computed as the largest subset S of the descendants in which every id is a root or has
    parents, all of them in S (so a cycle, which the real ontology does not have, cannot loop).
    """
    roots = set(root_ids)
    parents = parents_of(ontology)
    selected = descendants(ontology, roots)
    changed = True
    while changed:
        leaving = {
            node
            for node in selected
            if node not in roots
            and (not parents.get(node) or any(parent not in selected for parent in parents[node]))
        }
        selected -= leaving
        changed = bool(leaving)
    return selected


# ----------------------------------------------------------------------------------------------
# Selection


def shard_of(ytid: str, n_shards: int) -> int:
    """The shard of a YouTube id: SHA-1 of the id modulo ``n_shards`` (stable across runs)."""
    if n_shards < 1:
        raise ValueError(f"n_shards must be >= 1, got {n_shards}")
    return int.from_bytes(hashlib.sha1(ytid.encode("utf-8")).digest()[:8], "big") % n_shards


def valid_rows(segments: pd.DataFrame) -> np.ndarray:
    """Boolean mask: id matches :data:`ID_PATTERN` and 0 <= start < end <= :data:`MAX_SECONDS`."""
    ids = pa.array(segments["ytid"].astype(str), pa.large_string())
    ids_ok = pc.match_substring_regex(ids, ID_PATTERN.pattern).to_numpy(zero_copy_only=False)
    start = pd.to_numeric(segments["start"], errors="coerce").to_numpy(dtype=float)
    end = pd.to_numeric(segments["end"], errors="coerce").to_numpy(dtype=float)
    with np.errstate(invalid="ignore"):
        times = np.isfinite(start) & np.isfinite(end) & (start >= 0) & (start < end) & (end <= MAX_SECONDS)
    return ids_ok & times


def _label_mask(labels: pd.Series, ontology: dict, config: SelectConfig) -> np.ndarray:
    """Keep-mask of the label filters, vectorised over the flattened label lists (Arrow)."""
    lists = pc.split_pattern(pa.array(labels.astype(str), pa.large_string()), ",")
    items = pc.list_flatten(lists)
    parents = pc.list_parent_indices(lists).to_numpy()
    n_items = np.bincount(parents, minlength=len(labels))

    def count_in(ids: set[str]) -> np.ndarray:
        member = pc.is_in(items, value_set=pa.array(sorted(ids), pa.large_string())).to_numpy(
            zero_copy_only=False
        )
        return np.bincount(parents, weights=member, minlength=len(labels))

    keep = np.ones(len(labels), dtype=bool)
    if config.exclude_labels:
        excluded = exclusively_under(ontology, config.exclude_labels)
        also_elsewhere = descendants(ontology, config.exclude_labels) - excluded
        if also_elsewhere:
            log.info(
                "%d labels under %s also sit elsewhere in the ontology and do not count as excluded: %s",
                len(also_elsewhere),
                list(config.exclude_labels),
                sorted(ontology[label]["name"] for label in also_elsewhere if label in ontology),
            )
        keep &= ~((n_items > 0) & (count_in(excluded) == n_items))
    if config.include_labels:
        keep &= count_in(descendants(ontology, config.include_labels)) > 0
    known = pc.is_in(items, value_set=pa.array(sorted(ontology), pa.large_string()))
    unknown = pc.unique(pc.filter(items, pc.invert(known))).to_pylist()
    if unknown:
        log.warning(
            "%d labels are not in the ontology (kept as ordinary labels), e.g. %s", len(unknown), unknown[:5]
        )
    return keep


def _sorted_unique(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows in (ytid, start) order, repeated (ytid, start in ms) segments dropped (valid ids only)."""
    ids = frame["ytid"].to_numpy().astype("S11")
    start_ms = np.round(frame["start"].to_numpy(dtype=float) * 1000).astype(np.int64)
    order = np.lexsort((start_ms, ids))
    ids, start_ms = ids[order], start_ms[order]
    repeated = np.zeros(len(order), dtype=bool)
    repeated[1:] = (ids[1:] == ids[:-1]) & (start_ms[1:] == start_ms[:-1])
    if repeated.any():
        log.warning("%d repeated (ytid, start) segments dropped", int(repeated.sum()))
    return frame.iloc[order[~repeated]].reset_index(drop=True)


def select_segments(
    segments: pd.DataFrame, ontology: dict | None, config: SelectConfig, n_shards: int, seed: int
) -> pd.DataFrame:
    """Filter by labels and duration, draw a seeded sample, assign shards.

    Returns columns ``ytid, start, end, labels, shard`` sorted by ``(shard, ytid, start)``.
    Rows with an invalid id or times and repeated ``(ytid, start)`` pairs are dropped; the
    sample is drawn from the rows in ``(ytid, start)`` order, so it does not depend on the
    order of the input. ``ontology`` None: labels are free text (VGGSound), not filtered here;
    ``include_labels`` and ``exclude_labels`` must then be empty.
    """
    frame = segments[["ytid", "start", "end", "labels"]].reset_index(drop=True)
    frame = frame.astype({"ytid": str, "labels": str, "start": float, "end": float})
    counts = {"read": len(frame)}
    frame = frame[valid_rows(frame)]
    counts["valid"] = len(frame)
    if ontology is not None:
        frame = frame[_label_mask(frame["labels"], ontology, config)]
    elif config.include_labels or config.exclude_labels:
        raise ValueError(
            "select.include_labels and select.exclude_labels are ontology ids: they need an ontology"
        )
    counts["labels"] = len(frame)
    frame = frame[(frame["end"] - frame["start"]) >= config.min_duration_s - 1e-9]
    counts["duration"] = len(frame)
    frame = _sorted_unique(frame)
    counts["unique"] = len(frame)
    if 0 < config.n_segments < len(frame):
        rng = np.random.default_rng(seed)
        frame = frame.iloc[np.sort(rng.choice(len(frame), size=config.n_segments, replace=False))]
    elif config.n_segments > len(frame):
        log.warning("only %d segments pass the filters; %d were asked for", len(frame), config.n_segments)
    counts["sampled"] = len(frame)
    shards = np.array([shard_of(ytid, n_shards) for ytid in frame["ytid"]], dtype=np.int64)
    order = np.argsort(shards, kind="stable")  # rows are already in (ytid, start) order
    frame = frame.iloc[order].assign(shard=shards[order]).reset_index(drop=True)
    log.info(
        "segments: %d read, %d valid, %d pass the labels, %d long enough, %d unique, %d sampled, %d shards",
        *counts.values(),
        n_shards,
    )
    return frame
