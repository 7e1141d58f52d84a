"""Adapter of rule tabulate_frozen: every SVM, low-shot and k-NN result -> svm_layers,
svm_lowshot and knn_layers tables."""

import re

from _common import run

_LAYER_FILE = re.compile(r"(?P<model>[^/]+)/(?:svm|lowshot)/(?P<layer>[^/]+)/[^/]+\.csv$")
_MODEL_FILE = re.compile(r"(?P<model>[^/]+)/knn/ap\.csv$")


def _match(path, pattern):
    match = pattern.search(str(path))
    if match is None:
        raise ValueError(f"{path}: not a path the frozen-feature rules write")
    return match


def main(snakemake) -> None:
    from soundsup.frozen_report import knn_table, lowshot_table, svm_layers_table
    from soundsup.tables import write_table

    models = dict(snakemake.params.models)
    by_layer = {
        name: {
            (match["model"], match["layer"]): path
            for path in snakemake.input[name]
            if (match := _match(path, _LAYER_FILE))
        }
        for name in ("svm", "lowshot")
    }
    by_model = {_match(path, _MODEL_FILE)["model"]: path for path in snakemake.input.knn}
    write_table(svm_layers_table(by_layer["svm"], models), snakemake.output.svm)
    write_table(lowshot_table(by_layer["lowshot"], models), snakemake.output.lowshot)
    write_table(knn_table(by_model, models, snakemake.params.knn_k), snakemake.output.knn)


run(main, snakemake)  # noqa: F821
