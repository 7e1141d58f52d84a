"""Adapter of rule train_lowshot_svm: one model's frozen features at one layer -> low-shot mAP."""

from _common import run, settings


def main(snakemake) -> None:
    from soundsup.config import build_settings
    from soundsup.frozen_jobs import train_lowshot_job
    from soundsup.svm import LowShotConfig, SolverConfig

    values = settings(snakemake, "svm")
    train_lowshot_job(
        model=snakemake.wildcards.model,
        layer=snakemake.wildcards.layer,
        voc_root=snakemake.params.voc_root,
        trainval_path=snakemake.input.trainval,
        test_path=snakemake.input.test,
        solver=build_settings(SolverConfig, values),
        config=build_settings(LowShotConfig, values),
        config_slice=snakemake.params.svm,
        seed=snakemake.params.seed,
        n_threads=snakemake.threads,
        map_path=snakemake.output.map,
    )


run(main, snakemake)  # noqa: F821
