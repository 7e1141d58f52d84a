"""Adapter of rule tabulate_frozen: every SVM, low-shot and k-NN result -> svm_layers,
svm_lowshot and knn_layers tables."""

from _common import run


def main(snakemake) -> None:
    from soundsup.frozen_report import tabulate_frozen

    params = snakemake.params
    tabulate_frozen(
        svm_paths=list(snakemake.input.svm),
        svm_runs=params.svm_runs,
        lowshot_paths=list(snakemake.input.lowshot),
        lowshot_runs=params.lowshot_runs,
        knn_paths=list(snakemake.input.knn),
        models=dict(params.models),
        knn_k=params.knn_k,
        svm_table_path=snakemake.output.svm,
        lowshot_table_path=snakemake.output.lowshot,
        knn_table_path=snakemake.output.knn,
    )


run(main, snakemake)  # noqa: F821
