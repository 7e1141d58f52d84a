"""Audio windows as the feature stages take them: the one check of their samples, and the one
rule of silence (pairs.silence_rms) for every stage that asks."""

from __future__ import annotations

import numpy as np


def check_waves(waves: np.ndarray, sample_rate: int, ndim: int) -> np.ndarray:
    """Mono float audio in [-1, 1]: one window (``ndim`` 1) or rows of windows (``ndim`` 2, time
    last; no rows is allowed). Returns it as an array, unconverted; raises ``ValueError``
    saying what is wrong (shape, dtype, non-finite samples, the rate)."""
    waves = np.asarray(waves)
    if waves.ndim != ndim or (waves.shape[-1] == 0 and (ndim == 1 or len(waves))):
        raise ValueError(f"expected a {ndim}-d array of audio samples, got shape {waves.shape}")
    if not np.issubdtype(waves.dtype, np.floating):
        raise ValueError(f"audio must be floating point in [-1, 1], got dtype {waves.dtype}")
    if not np.all(np.isfinite(waves)):
        raise ValueError("audio contains NaN or infinite samples")
    if sample_rate <= 0:
        raise ValueError(f"sample_rate must be positive, got {sample_rate}")
    return waves


def window_rms(audio: np.ndarray) -> np.ndarray:
    """The RMS of each row of ``(N, T)`` audio windows, in float64: ``(N,)``."""
    audio = np.asarray(audio)
    if not len(audio):
        return np.zeros(0)
    return np.sqrt(np.mean(np.square(audio, dtype=np.float64), axis=1))


def silent_windows(audio: np.ndarray, silence_rms: float) -> np.ndarray:
    """Which of ``(N, T)`` audio windows are silent: RMS below ``silence_rms`` (pairs.silence_rms).
    The one rule of silence for a window: pair extraction drops these, the feature rules flag them."""
    return window_rms(audio) < silence_rms
