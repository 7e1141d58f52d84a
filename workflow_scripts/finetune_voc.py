"""Adapter of rule finetune_voc: one model, one mode, one seed -> per-class VOC 2007 AP."""

import json
import logging

from _common import run, settings


def main(snakemake) -> None:
    from soundsup.gpu import claim_gpu

    claim_gpu()  # a card of its own on a workstation; SLURM's choice is kept
    import numpy as np

    from soundsup.config import build_settings
    from soundsup.device import pick_device, retain_freed_host_memory, seed_everything, set_threads
    from soundsup.finetune import FinetuneConfig, backbone_from_spec, finetune_voc
    from soundsup.io import save_npy, write_meta, write_text
    from soundsup.metrics import average_precision_table, mean_ap
    from soundsup.voc import load_images, read_labels

    log = logging.getLogger("soundsup.rule.finetune_voc")
    set_threads(snakemake.threads)
    retain_freed_host_memory()  # training re-allocates the same big buffers every step
    seed = int(snakemake.wildcards.seed)
    mode = snakemake.wildcards.mode
    config = build_settings(FinetuneConfig, settings(snakemake, "voc"))
    voc_root = snakemake.params.voc_root

    train_ids, train_labels = read_labels(voc_root, "trainval")
    test_ids, test_labels = read_labels(voc_root, "test")
    train_images = load_images(voc_root, train_ids, config.max_side)
    test_images = load_images(voc_root, test_ids, config.max_side)
    log.info("VOC: %d trainval, %d test images from %s", len(train_ids), len(test_ids), voc_root)

    backbone = snakemake.params.backbone
    seed_everything(seed)
    model = backbone_from_spec(backbone, snakemake.input.model)
    device = pick_device(snakemake.config["device"])
    scores, history = finetune_voc(model, train_images, train_labels, test_images, mode, config, seed, device)
    table = average_precision_table(test_labels, scores)
    log.info(
        "%s %s seed %d: mAP %.2f (step), %.2f (VOC07 11-point)",
        snakemake.wildcards.model,
        mode,
        seed,
        100 * mean_ap(table),
        100 * table["ap_voc07"].mean(),
    )

    pretext = json.loads(open(snakemake.input.meta).read()) if snakemake.input.meta else {}
    save_npy(snakemake.output.scores, np.asarray(scores, dtype=np.float32))
    write_text(snakemake.output.ap, table.to_csv(index=False))
    write_meta(
        snakemake.output.ap,
        {"voc": snakemake.params.voc, "backbone": backbone, "pretext": pretext.get("config")},
        seed=seed,
        model=snakemake.wildcards.model,
        mode=mode,
        n_pretext_pairs=pretext.get("n_pretext_pairs"),
        n_trainval=len(train_ids),
        n_test=len(test_ids),
        device=str(device),
        history=history,
    )


run(main, snakemake)  # noqa: F821
