"""Adapter of rule train_svm: one model's features at one layer -> per-class VOC test AP of
cross-validated linear SVMs."""

import logging

from _common import run, settings


def main(snakemake) -> None:
    from threadpoolctl import threadpool_limits

    from soundsup.config import build_settings
    from soundsup.io import write_meta, write_text
    from soundsup.metrics import mean_ap
    from soundsup.svm import SolverConfig, SvmConfig, load_features, svm_ap_table, train_svms
    from soundsup.voc import read_labels

    log = logging.getLogger("soundsup.rule.train_svm")
    values = settings(snakemake, "svm")
    solver, config = build_settings(SolverConfig, values), build_settings(SvmConfig, values)
    layer, voc_root, seed = snakemake.wildcards.layer, snakemake.params.voc_root, snakemake.params.seed
    train_ids, train_labels = read_labels(voc_root, "trainval")
    test_ids, test_labels = read_labels(voc_root, "test")
    train = load_features(snakemake.input.trainval, layer, train_ids)
    test = load_features(snakemake.input.test, layer, test_ids)
    with threadpool_limits(limits=snakemake.threads):
        scores, summary = train_svms(train, train_labels, test, solver, config, seed, snakemake.threads)
    table = svm_ap_table(test_labels, scores, summary)
    log.info(
        "%s %s (%d dims): mAP %.2f", snakemake.wildcards.model, layer, train.shape[1], 100 * mean_ap(table)
    )
    write_text(snakemake.output.ap, table.to_csv(index=False))
    write_meta(
        snakemake.output.ap,
        {"svm": snakemake.params.svm},
        seed=seed,
        model=snakemake.wildcards.model,
        layer=layer,
        dims=int(train.shape[1]),
        costs=list(solver.costs),
        cv_ap_by_cost=dict(zip(summary["class"], summary["cv_ap_by_cost"], strict=True)),
    )


run(main, snakemake)  # noqa: F821
