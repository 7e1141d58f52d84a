"""Adapter of rule select_segments: the world's segments -> the selection, with shards.

AudioSet (and the synthetic world): parse the CSV, filter by ontology, sample. VGGSound: parse
its CSV, filter by split and label text, sample. A folder: gather the segments of its shards
(rule scan_folder) and report the rows of its labels CSV that were not used.
"""

import logging

from _common import run


def main(snakemake) -> None:
    import pandas as pd

    from soundsup.io import write_meta, write_parquet, write_text

    log = logging.getLogger("soundsup.rule.select_segments")
    source = snakemake.params.source if hasattr(snakemake.params, "source") else None
    if source and source["world"] == "folder":
        selection, bad_lines, facts = _select_folder(snakemake, source)
    else:
        selection, bad_lines, facts = _select_from_csv(snakemake, source)
    for line_number, text, reason in bad_lines:
        log.warning("line %d skipped (%s): %r", line_number, reason, text[:200])
    bad = pd.DataFrame(bad_lines, columns=["line", "text", "reason"])
    write_text(snakemake.output.rejected, bad.to_csv(index=False))
    write_parquet(snakemake.output.selection, selection)
    select = dict(snakemake.params.select)
    write_meta(
        snakemake.output.selection,
        {"select": select, "shards": snakemake.params.shards, **({"source": source} if source else {})},
        seed=snakemake.params.seed,
        n_malformed_lines=len(bad_lines),
        n_selected=len(selection),
        **facts,
    )


def _select_from_csv(snakemake, source: dict | None):
    from soundsup.audioset import SelectConfig, load_ontology, read_segments, select_segments
    from soundsup.config import build_settings
    from soundsup.vggsound import VGGSoundConfig, read_vggsound, select_vggsound

    select = SelectConfig(**snakemake.params.select)
    shards, seed = snakemake.params.shards, snakemake.params.seed
    if source and source["world"] == "vggsound":
        segments, bad_lines = read_vggsound(snakemake.input.segments)
        config = build_settings(VGGSoundConfig, source["vggsound"])
        selection = select_vggsound(segments, config, select, n_shards=shards, seed=seed)
        return selection, bad_lines, {"n_rows_read": len(segments), **segments.attrs}
    segments, bad_lines = read_segments(snakemake.input.segments)
    ontology = load_ontology(snakemake.input.ontology)
    selection = select_segments(segments, ontology, select, n_shards=shards, seed=seed)
    facts = {
        "n_rows_read": len(segments),
        "num_segs_header": segments.attrs.get("num_segs_header"),
        "n_data_lines": segments.attrs.get("n_data_lines"),
    }
    return selection, bad_lines, facts


def _select_folder(snakemake, source: dict):
    import pandas as pd

    from soundsup.folder import gather_selection

    shards = [pd.read_parquet(path) for path in snakemake.input.shards]
    return gather_selection(shards, labels_csv=snakemake.input.get("labels"))


run(main, snakemake)  # noqa: F821
