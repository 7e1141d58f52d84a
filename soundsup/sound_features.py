"""The feature rules as calls: one shard's audio windows -> sound-texture statistics or MFCCs.

Both read a shard's ``index.parquet`` and ``audio.npy`` (checked to agree row for row), write
the features (``(N, D)`` float32), an ids table (``pair_id``, ``silent``) and a provenance
sidecar. A window is silent by one rule, :func:`silent_windows` (RMS below
``pairs.silence_rms``), the rule that pair extraction drops windows by: the flags of the
windows that reach these rules are all false unless a shard's audio was edited in between.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from soundsup.io import save_npy, write_meta, write_parquet
from soundsup.waves import silent_windows

log = logging.getLogger(__name__)


def _shard_audio(index_path: str | Path, audio_path: str | Path) -> tuple[pd.DataFrame, np.ndarray]:
    index = pd.read_parquet(index_path)
    audio = np.load(audio_path, mmap_mode="r")
    if len(index) != len(audio):
        raise ValueError(f"{index_path} has {len(index)} rows but {audio_path} {len(audio)}")
    return index, np.asarray(audio)


def _compute(
    name: str,
    summarise: Callable[[np.ndarray], np.ndarray],
    index_path: str | Path,
    audio_path: str | Path,
    features_path: str | Path,
    ids_path: str | Path,
    config_slice: Mapping[str, Any],
    sample_rate: int,
    silence_rms: float,
) -> None:
    index, audio = _shard_audio(index_path, audio_path)
    features = summarise(audio)
    silent = silent_windows(audio, silence_rms)
    log.info("%s: %d windows -> features %s, %d silent", name, len(index), features.shape, int(silent.sum()))
    save_npy(features_path, np.asarray(features, dtype=np.float32))
    write_parquet(ids_path, pd.DataFrame({"pair_id": index["pair_id"], "silent": silent}))
    write_meta(features_path, dict(config_slice), sample_rate=sample_rate, n_windows=len(index))


def compute_texture(
    index_path: str | Path,
    audio_path: str | Path,
    features_path: str | Path,
    ids_path: str | Path,
    texture: Mapping[str, Any],
    sample_rate: int,
    silence_rms: float,
) -> None:
    """McDermott sound-texture statistics of a shard's windows (``texture``: features.texture)."""
    from soundsup.texture import TextureConfig, texture_stats_batch

    config = TextureConfig(**{**texture, "corr_offsets": tuple(texture["corr_offsets"])})
    _compute(
        "texture", lambda audio: texture_stats_batch(audio, sample_rate, config=config),
        index_path, audio_path, features_path, ids_path, texture, sample_rate, silence_rms,
    )  # fmt: skip


def compute_mfcc(
    index_path: str | Path,
    audio_path: str | Path,
    features_path: str | Path,
    ids_path: str | Path,
    mfcc: Mapping[str, Any],
    sample_rate: int,
    silence_rms: float,
) -> None:
    """MFCCs of a shard's windows (``mfcc``: features.mfcc)."""
    from soundsup.mfcc import MfccConfig, mfcc_features

    config = MfccConfig(**mfcc)
    _compute(
        "mfcc", lambda audio: mfcc_features(audio, sample_rate, config),
        index_path, audio_path, features_path, ids_path, mfcc, sample_rate, silence_rms,
    )  # fmt: skip
