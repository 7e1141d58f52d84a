"""Adapter of rule score_knn: one model's features -> per-class VOC test AP of a cosine k-NN
classifier at each layer."""

import logging

from _common import run, settings


def main(snakemake) -> None:
    import pandas as pd
    from threadpoolctl import threadpool_limits

    from soundsup.config import build_settings
    from soundsup.io import write_text
    from soundsup.metrics import average_precision_table, mean_ap
    from soundsup.svm import KnnConfig, knn_scores, load_features
    from soundsup.voc import read_labels

    log = logging.getLogger("soundsup.rule.score_knn")
    config = build_settings(KnnConfig, settings(snakemake, "svm"))
    voc_root = snakemake.params.voc_root
    train_ids, train_labels = read_labels(voc_root, "trainval")
    test_ids, test_labels = read_labels(voc_root, "test")
    tables = []
    for layer in snakemake.params.layers:
        train = load_features(snakemake.input.trainval, layer, train_ids)
        test = load_features(snakemake.input.test, layer, test_ids)
        with threadpool_limits(limits=snakemake.threads):
            scores = knn_scores(train, train_labels, test, config.knn_k)
        table = average_precision_table(test_labels, scores)
        log.info(
            "%s %s: %d-NN mAP %.2f", snakemake.wildcards.model, layer, config.knn_k, 100 * mean_ap(table)
        )
        tables.append(table.assign(layer=layer))
    result = pd.concat(tables, ignore_index=True)
    write_text(snakemake.output.ap, result[["layer", *tables[0].columns[:-1]]].to_csv(index=False))


run(main, snakemake)  # noqa: F821
