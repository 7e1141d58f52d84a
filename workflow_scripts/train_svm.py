"""Adapter of rule train_svm: one model's frozen features at one layer -> VOC07 linear-SVM AP."""

from _common import run, settings


def main(snakemake) -> None:
    from soundsup.config import build_settings
    from soundsup.frozen_jobs import train_svm_job
    from soundsup.svm import SolverConfig, SvmConfig

    values = settings(snakemake, "svm")
    train_svm_job(
        model=snakemake.wildcards.model,
        layer=snakemake.wildcards.layer,
        voc_root=snakemake.params.voc_root,
        trainval_path=snakemake.input.trainval,
        test_path=snakemake.input.test,
        solver=build_settings(SolverConfig, values),
        config=build_settings(SvmConfig, values),
        config_slice=snakemake.params.svm,
        seed=snakemake.params.seed,
        n_threads=snakemake.threads,
        ap_path=snakemake.output.ap,
    )


run(main, snakemake)  # noqa: F821
