"""Adapter of rule train_lowshot_svm: one model's features at one layer -> VOC test mAP of
low-shot linear SVMs per size, sample and cost."""

import logging

from _common import run, settings


def main(snakemake) -> None:
    from threadpoolctl import threadpool_limits

    from soundsup.config import build_settings
    from soundsup.io import write_meta, write_text
    from soundsup.svm import LowShotConfig, SolverConfig, load_features, lowshot_svms
    from soundsup.voc import read_labels

    log = logging.getLogger("soundsup.rule.train_lowshot_svm")
    values = settings(snakemake, "svm")
    solver, config = build_settings(SolverConfig, values), build_settings(LowShotConfig, values)
    layer, voc_root, seed = snakemake.wildcards.layer, snakemake.params.voc_root, snakemake.params.seed
    train_ids, train_labels = read_labels(voc_root, "trainval")
    test_ids, test_labels = read_labels(voc_root, "test")
    train = load_features(snakemake.input.trainval, layer, train_ids)
    test = load_features(snakemake.input.test, layer, test_ids)
    with threadpool_limits(limits=snakemake.threads):
        runs = lowshot_svms(train, train_labels, test, test_labels, solver, config, seed, snakemake.threads)
    chosen = runs[runs["selected"]].groupby("positives")["map"].mean()
    log.info(
        "%s %s: low-shot mAP %s",
        snakemake.wildcards.model, layer, ", ".join(f"{size}: {value:.2f}" for size, value in chosen.items()),
    )  # fmt: skip
    write_text(snakemake.output.map, runs.to_csv(index=False))
    write_meta(
        snakemake.output.map,
        {"svm": snakemake.params.svm},
        seed=seed,
        model=snakemake.wildcards.model,
        layer=layer,
    )


run(main, snakemake)  # noqa: F821
