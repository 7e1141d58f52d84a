"""The finetune_voc job as one call: one model, one mode, one seed -> per-class VOC 2007 AP.

:func:`run_finetune_job` reads the VOC labels and decodes the images once (on the job's
threads), builds the starting network, fine-tunes it with a checkpoint beside the outputs
(resumed when the job is started again after a kill), scores the test set and writes
``scores.npy``, ``ap.csv`` and its provenance sidecar ``ap.csv.meta.json`` (and, when asked,
the fine-tuned network), each atomically.
The checkpoint is removed only once all three are written. A full disk, at a checkpoint or at
an output, stops the job with an error naming the file and the cause (ENOSPC) and leaves the
last complete checkpoint in place, so the job resumes once there is room again.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from soundsup.device import retain_freed_host_memory, seed_everything, set_threads
from soundsup.finetune import FinetuneConfig, backbone_from_spec, finetune_voc
from soundsup.io import naming_write_errors, write_durably, write_meta
from soundsup.metrics import average_precision_table, mean_ap
from soundsup.models import save_torch
from soundsup.progress import job_logger
from soundsup.voc import load_packed_images, read_labels

log = logging.getLogger(__name__)


def _npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def run_finetune_job(
    *,
    voc_root: str | Path,
    mode: str,
    seed: int,
    config: FinetuneConfig,
    backbone: Mapping,
    model_path: str | None,
    pretext_meta_path: str | None,
    scores_path: str | Path,
    ap_path: str | Path,
    checkpoint_path: str | Path,
    config_slice: Mapping,
    model_name: str,
    device: torch.device,
    n_threads: int = 1,
    crop_method: str = "auto",
    tensorboard_dir: str | Path | None = None,
    finetuned_path: str | Path | None = None,
) -> pd.DataFrame:
    """Fine-tune one backbone on VOC 2007 trainval, score test, write the outputs; return the AP table.

    ``backbone``: ``init`` (``sound``, ``random`` or ``imagenet``), ``arch``, and ``fc_width``
    (random) or ``weights`` (imagenet), as the rule's params give them; ``model_path`` and
    ``pretext_meta_path``: the pretext model and its sidecar (sound models only). Writes
    ``scores_path`` ((N_test, 20) float32 sums of test logits), ``ap_path`` (one row per class:
    class, ap, ap_voc07, n_pos, n_neg) and ``<ap_path>.meta.json`` (``config_slice``, backbone,
    pretext settings, seed, history). ``checkpoint_path`` holds the training state in between.
    Every log line starts with the job's name, ``[{model_name} {mode} seed{seed}]``;
    ``tensorboard_dir``: see :func:`soundsup.finetune.finetune_voc`. ``finetuned_path`` (when
    given): the fine-tuned network's state dict, 20-class output layer included; it loads with
    ``strict=True`` into ``soundsup.models.build_model(arch, 20, fc_width, variant)``.
    """
    job_name = f"{model_name} {mode} seed{seed}"
    job_log = job_logger(log, job_name)
    set_threads(n_threads)
    retain_freed_host_memory()  # training re-allocates the same big buffers every step
    train_ids, train_labels = read_labels(voc_root, "trainval")
    test_ids, test_labels = read_labels(voc_root, "test")
    train = load_packed_images(voc_root, train_ids, config.max_side, n_threads)
    test = load_packed_images(voc_root, test_ids, config.max_side, n_threads)
    job_log.info("VOC: %d trainval, %d test images from %s", len(train_ids), len(test_ids), voc_root)
    pretext = json.loads(Path(pretext_meta_path).read_text()) if pretext_meta_path else {}

    seed_everything(seed)  # a random backbone is drawn from the global generator
    model = backbone_from_spec(backbone, model_path)
    scores, history = finetune_voc(
        model, train, train_labels, test, mode, config, seed, device,
        checkpoint_path=checkpoint_path, crop_method=crop_method, job_name=job_name,
        tensorboard_dir=tensorboard_dir,
    )  # fmt: skip
    table = average_precision_table(test_labels, scores)
    job_log.info(
        "mAP %.2f (step), %.2f (VOC07 11-point)", 100 * mean_ap(table), 100 * table["ap_voc07"].mean()
    )

    payload = _npy_bytes(np.asarray(scores, dtype=np.float32))
    write_durably(scores_path, lambda handle: handle.write(payload))
    text = table.to_csv(index=False).encode()
    write_durably(ap_path, lambda handle: handle.write(text))
    with naming_write_errors(f"{ap_path}.meta.json"):
        write_meta(
            ap_path,
            {"voc": dict(config_slice), "backbone": dict(backbone), "pretext": pretext.get("config")},
            seed=seed,
            model=model_name,
            mode=mode,
            n_pretext_pairs=pretext.get("n_pretext_pairs"),
            n_trainval=len(train_ids),
            n_test=len(test_ids),
            device=str(device),
            history=history,
        )
    if finetuned_path is not None:
        save_torch(
            finetuned_path, {k: v.detach().cpu() for k, v in model.state_dict().items()}, "fine-tuned model"
        )
    Path(checkpoint_path).unlink(missing_ok=True)
    return table
