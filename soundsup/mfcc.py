"""MFCC summaries of audio windows: librosa MFCC, 20 coefficients x 155 frames = 3100 values.

The authors' code loads each 3.75-s segment with ``librosa.load(sr=None)``, which keeps the
21 kHz of their ffmpeg extraction, and calls ``librosa.feature.mfcc`` with librosa's defaults
(2048-point FFT, hop 512): 155 frames 24.4 ms apart, each 97.5 ms long, FFT bins 10.25 Hz
apart, flattened coefficient-major to 20 x 155 = 3100 values. Here the audio is the workflow's
20 kHz (``MfccConfig.sample_rate``), and the defaults put the same STFT grid on it: hop 487
samples (24.35 ms) and a 1950-point FFT (97.5 ms, bins 10.26 Hz apart), so a 3.75-s window
(75,000 samples) has ``1 + 75000 // 487 = 155`` centred frames, the last centred 0.1 ms before
the window's end, and no zero columns (librosa's 2048/512 at 20 kHz would give 147 frames
25.6 ms apart and 8 zero columns). The FFT length need not be a power of two: 1950 = 2 * 3 *
5^2 * 13 points cost what 2048 do (2-3 ms per window either way, one core). Input at any other
rate is resampled to ``sample_rate`` first (``librosa.resample``, soxr high quality), so every
window gives the same frame grid; a grid of another length is zero-padded at the end or trimmed
to ``n_frames``. The other settings are librosa's defaults (128 mel bands, power spectrogram,
dB with ``top_db=80`` per clip, orthonormal DCT-II).

:func:`mfcc_features` computes a whole batch with one STFT (librosa's conventions) and one mel filter
bank (built once instead of once per clip), contiguous frames through a reused buffer,
and applies the per-clip dB floor itself (the multichannel ``librosa.feature.mfcc`` would take
it over the whole batch). The numbers equal ``librosa.feature.mfcc`` called on each clip to
float rounding.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import librosa
import numpy as np
import scipy.fft
import scipy.signal
import torch

from soundsup.waves import check_waves

log = logging.getLogger(__name__)

_TOP_DB = 80.0  # librosa.power_to_db default, applied per clip
_AMIN = 1e-10


@dataclass(frozen=True)
class MfccConfig:
    """MFCC settings: 20 coefficients x 155 frames on the authors' STFT grid at 20 kHz (hop 487,
    1950-point FFT; module docstring), librosa's 128 mel bands."""

    n_mfcc: int = 20
    n_frames: int = 155
    sample_rate: int = 20000
    n_fft: int = 1950
    hop_length: int = 487
    n_mels: int = 128

    def __post_init__(self) -> None:
        for name in ("n_mfcc", "n_frames", "sample_rate", "n_fft", "hop_length", "n_mels"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"MfccConfig.{name} must be a positive integer, got {getattr(self, name)}")
        if self.n_mfcc > self.n_mels:
            raise ValueError(f"MfccConfig.n_mfcc={self.n_mfcc} exceeds n_mels={self.n_mels}")

    @property
    def n_features(self) -> int:
        return self.n_mfcc * self.n_frames


def _check_waves(waves: np.ndarray, sample_rate: int, config: MfccConfig) -> np.ndarray:
    """(N, T) windows (one window may come as (T,)), resampled to ``config.sample_rate``."""
    waves = np.asarray(waves)
    waves = check_waves(waves[None, :] if waves.ndim == 1 else waves, sample_rate, ndim=2)
    if sample_rate != config.sample_rate and waves.shape[0]:
        log.debug("resampling audio from %d Hz to %d Hz", sample_rate, config.sample_rate)
        waves = librosa.resample(waves, orig_sr=sample_rate, target_sr=config.sample_rate, axis=-1)
    return waves


def fit_frames(coefficients: np.ndarray, n_frames: int) -> np.ndarray:
    """Pad with zeros at the end, or trim, the last (time) axis to ``n_frames``."""
    have = coefficients.shape[-1]
    if have >= n_frames:
        return coefficients[..., :n_frames]
    padding = [(0, 0)] * (coefficients.ndim - 1) + [(0, n_frames - have)]
    return np.pad(coefficients, padding)


def _power_spectrogram(waves: np.ndarray, config: MfccConfig) -> np.ndarray:
    """``|STFT|^2`` as ``librosa.stft`` computes it, frames contiguous: ``(B, frames, n_fft // 2 + 1)``.

    Centred frames over zero padding, periodic Hann window in float64 (librosa multiplies the
    float32 samples by a float64 window), FFT in float64 (torch's, faster here than numpy's and
    equal to rounding), then rounded to the input's complex type before the magnitude, as
    librosa stores its STFT. One clip at a time through a reused buffer, which stays in cache.
    """
    half = config.n_fft // 2
    padded = np.pad(waves, ((0, 0), (half, half)))
    frames = np.lib.stride_tricks.sliding_window_view(padded, config.n_fft, axis=-1)[:, :: config.hop_length]
    window = scipy.signal.get_window("hann", config.n_fft, fftbins=True)
    complex_type = np.result_type(waves.dtype, np.complex64)
    power = np.empty(frames.shape[:2] + (half + 1,), dtype=np.finfo(complex_type).dtype)
    buffer = np.empty(frames.shape[1:])
    for row in range(len(waves)):
        np.multiply(frames[row], window, out=buffer)
        spectrum = torch.fft.rfft(torch.from_numpy(buffer), dim=-1).numpy()
        np.square(np.abs(spectrum.astype(complex_type, copy=False)), out=power[row])
    return power


def _batch_mfcc(waves: np.ndarray, config: MfccConfig, mel_basis: np.ndarray) -> np.ndarray:
    """``(B, T)`` -> ``(B, n_mfcc, frames)``, as ``librosa.feature.mfcc`` on each clip."""
    mel = _power_spectrogram(waves, config) @ mel_basis.T  # (B, frames, n_mels)
    decibels = 10.0 * np.log10(np.maximum(_AMIN, mel))
    floor = decibels.max(axis=(-2, -1), keepdims=True) - _TOP_DB
    decibels = np.maximum(decibels, floor)
    coefficients = scipy.fft.dct(decibels, axis=-1, type=2, norm="ortho")[..., : config.n_mfcc]
    return coefficients.transpose(0, 2, 1)


def mfcc_features(
    waves: np.ndarray, sample_rate: int, config: MfccConfig | None = None, *, batch_size: int = 64
) -> np.ndarray:
    """MFCC features of ``(N, T)`` mono float windows: ``(N, n_mfcc * n_frames)`` float32.

    Each row is the ``(n_mfcc, n_frames)`` matrix flattened coefficient-major (all frames of
    coefficient 0, then coefficient 1, ...).
    """
    config = config or MfccConfig()
    waves = _check_waves(waves, sample_rate, config)
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    result = np.zeros((waves.shape[0], config.n_features), dtype=np.float32)
    if waves.shape[0] == 0:
        return result
    mel_basis = librosa.filters.mel(sr=config.sample_rate, n_fft=config.n_fft, n_mels=config.n_mels)
    for start in range(0, waves.shape[0], batch_size):
        chunk = waves[start : start + batch_size]
        coefficients = fit_frames(_batch_mfcc(chunk, config, mel_basis), config.n_frames)
        result[start : start + len(chunk)] = coefficients.reshape(len(chunk), -1)
    return result
