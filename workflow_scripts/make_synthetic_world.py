"""Adapter of rule make_synthetic_world: the demo's AudioSet CSV, ontology, videos and VOC."""

from _common import run


def main(snakemake) -> None:
    from soundsup.io import write_json
    from soundsup.synthetic import SyntheticConfig, make_world

    summary = make_world(
        SyntheticConfig(**snakemake.params.synthetic),
        segments_csv=snakemake.output.segments,
        ontology_json=snakemake.output.ontology,
        videos_dir=snakemake.output.videos,
        voc_root=snakemake.params.voc_root,
        seed=snakemake.params.seed,
        threads=snakemake.threads,
    )
    write_json(snakemake.output.summary, summary)


run(main, snakemake)  # noqa: F821
