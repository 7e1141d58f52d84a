"""The one rule of silence for an audio window (pairs.silence_rms), for every stage that asks."""

from __future__ import annotations

import numpy as np


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
