"""Adapter of rule score_knn: one model's frozen features -> k-NN AP at each layer."""

from _common import run, settings


def main(snakemake) -> None:
    from soundsup.config import build_settings
    from soundsup.frozen_jobs import score_knn_job
    from soundsup.svm import KnnConfig

    score_knn_job(
        model=snakemake.wildcards.model,
        layers=snakemake.params.layers,
        voc_root=snakemake.params.voc_root,
        trainval_path=snakemake.input.trainval,
        test_path=snakemake.input.test,
        config=build_settings(KnnConfig, settings(snakemake, "svm")),
        n_threads=snakemake.threads,
        ap_path=snakemake.output.ap,
    )


run(main, snakemake)  # noqa: F821
