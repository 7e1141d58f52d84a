"""Rule ``select_segments``, whatever the world: the segments of the run, each with its shard.

AudioSet (and the synthetic world, which writes AudioSet's format): parse the CSV, filter by
ontology, sample (:mod:`soundsup.audioset`). VGGSound: parse its CSV, filter by split and label
text, sample (:mod:`soundsup.vggsound`). A folder: gather the segments of its shards (rule
``scan_folder``) and report the rows of its labels CSV that were not used
(:mod:`soundsup.folder`). The lines that could not be read are written with their numbers and
reasons, and logged.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from soundsup.io import write_meta, write_parquet, write_text

log = logging.getLogger(__name__)


def select_job(
    *,
    select: Mapping[str, Any],
    shards: int,
    seed: int,
    source: Mapping[str, Any] | None,
    selection_path: str | Path,
    rejected_path: str | Path,
    segments_path: str | Path | None = None,
    ontology_path: str | Path | None = None,
    shard_paths: Sequence[str | Path] = (),
    labels_path: str | Path | None = None,
) -> pd.DataFrame:
    """Select, and write the selection (with its provenance) and the rejected lines; the selection.

    ``source`` is None for AudioSet-format CSVs (``segments_path`` and ``ontology_path``),
    ``{"world": "vggsound", "vggsound": {...}}`` (``segments_path``) or ``{"world": "folder"}``
    (``shard_paths``, optional ``labels_path``).
    """
    world = source["world"] if source else "audioset"
    if world == "folder":
        from soundsup.folder import gather_selection

        selection, bad_lines, facts = gather_selection(
            [pd.read_parquet(path) for path in shard_paths], labels_csv=labels_path
        )
    elif world == "vggsound":
        selection, bad_lines, facts = _select_vggsound(segments_path, source, select, shards, seed)
    else:
        selection, bad_lines, facts = _select_audioset(segments_path, ontology_path, select, shards, seed)
    for line_number, text, reason in bad_lines:
        log.warning("line %d skipped (%s): %r", line_number, reason, text[:200])
    bad = pd.DataFrame(bad_lines, columns=["line", "text", "reason"])
    write_text(rejected_path, bad.to_csv(index=False))
    write_parquet(selection_path, selection)
    write_meta(
        selection_path,
        {"select": dict(select), "shards": shards, **({"source": dict(source)} if source else {})},
        seed=seed,
        n_malformed_lines=len(bad_lines),
        n_selected=len(selection),
        **facts,
    )
    return selection


def _select_audioset(segments_path, ontology_path, select, shards: int, seed: int):
    from soundsup.audioset import SelectConfig, load_ontology, read_segments, select_segments

    segments, bad_lines = read_segments(segments_path)
    ontology = load_ontology(ontology_path)
    selection = select_segments(segments, ontology, SelectConfig(**select), n_shards=shards, seed=seed)
    facts = {
        "n_rows_read": len(segments),
        "num_segs_header": segments.attrs.get("num_segs_header"),
        "n_data_lines": segments.attrs.get("n_data_lines"),
    }
    return selection, bad_lines, facts


def _select_vggsound(segments_path, source, select, shards: int, seed: int):
    from soundsup.audioset import SelectConfig
    from soundsup.config import build_settings
    from soundsup.vggsound import VGGSoundConfig, read_vggsound, select_vggsound

    segments, bad_lines = read_vggsound(segments_path)
    config = build_settings(VGGSoundConfig, source["vggsound"])
    selection = select_vggsound(segments, config, SelectConfig(**select), n_shards=shards, seed=seed)
    return selection, bad_lines, {"n_rows_read": len(segments), **segments.attrs}
