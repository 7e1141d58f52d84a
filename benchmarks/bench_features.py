"""Sound features per 3.75-s window on one core: fast texture statistics and batched MFCC,
each against the straightforward per-clip version measured in the same run.

    .venv/bin/python benchmarks/bench_features.py [--windows 24]

Prints the time per window of each, the speed-up, and the largest deviation from the
per-clip result per block (relative L2 for texture, absolute for MFCC); the last line states
the figures and the ratios.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # before numpy / torch load their thread pools
os.environ.setdefault("MKL_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse  # noqa: E402
import time  # noqa: E402

import librosa  # noqa: E402
import numpy as np  # noqa: E402
import scipy.signal  # noqa: E402
import torch  # noqa: E402

from soundsup.mfcc import MfccConfig, fit_frames, mfcc_features  # noqa: E402
from soundsup.texture import (  # noqa: E402
    AUDIO_RATE,
    STAT_BLOCKS,
    texture_stats_batch,
    texture_stats_reference,
)

N_SAMPLES = 75000  # 3.75 s at 20 kHz


def synthetic_windows(n_windows: int, seed: int) -> np.ndarray:
    """Noise, pink noise, AM tones, rain-like clicks, FM chirps and mixtures: ``(n, 75000)`` float32."""
    rng = np.random.default_rng(seed)
    t = np.arange(N_SAMPLES) / AUDIO_RATE
    windows = []
    for index in range(n_windows):
        kind = index % 5
        if kind == 0:
            wave = rng.standard_normal(N_SAMPLES)
        elif kind == 1:
            spectrum = np.fft.rfft(rng.standard_normal(N_SAMPLES))
            spectrum[1:] /= np.sqrt(np.arange(1, len(spectrum)))
            wave = np.fft.irfft(spectrum, N_SAMPLES)
        elif kind == 2:
            carrier, rate = rng.uniform(200, 6000), rng.uniform(1, 30)
            wave = (1 + 0.9 * np.sin(2 * np.pi * rate * t)) * np.sin(2 * np.pi * carrier * t)
        elif kind == 3:
            drops = (rng.random(N_SAMPLES) < 0.003) * rng.standard_normal(N_SAMPLES)
            wave = np.convolve(drops, np.exp(-np.arange(120) / 15.0), "same")
            wave += scipy.signal.lfilter([1.0], [1.0, -0.95], 0.03 * rng.standard_normal(N_SAMPLES))
        else:
            phase = (
                2 * np.pi * np.cumsum(3500 + 1200 * np.sin(2 * np.pi * rng.uniform(3, 9) * t)) / AUDIO_RATE
            )
            wave = np.sin(phase) * (np.sin(2 * np.pi * 1.3 * t) > 0.2) + 0.05 * rng.standard_normal(N_SAMPLES)
        windows.append(0.2 * wave / np.abs(wave).max())
    return np.stack(windows).astype(np.float32)


def timed(function, *args, repeats: int = 1, **kwargs):
    """Best wall time of ``repeats`` calls and the last result."""
    best, result = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        result = function(*args, **kwargs)
        best = min(best, time.perf_counter() - start)
    return best, result


def bench_texture(windows: np.ndarray) -> tuple[float, float, dict[str, float]]:
    texture_stats_batch(windows[:2], AUDIO_RATE)  # plan and warm-up
    texture_stats_reference(windows[0], AUDIO_RATE)
    reference_s, reference = timed(
        lambda: np.stack([texture_stats_reference(w, AUDIO_RATE) for w in windows])
    )
    fast_s, fast = timed(texture_stats_batch, windows, AUDIO_RATE, repeats=2)
    deviation = {
        name: max(
            np.linalg.norm(fast[row, part] - reference[row, part])
            / max(np.linalg.norm(reference[row, part]), 1e-30)
            for row in range(len(windows))
        )
        for name, part in STAT_BLOCKS.items()
    }
    return reference_s / len(windows), fast_s / len(windows), deviation


def librosa_per_clip(windows: np.ndarray, config: MfccConfig) -> np.ndarray:
    rows = []
    for wave in windows:
        coefficients = librosa.feature.mfcc(
            y=wave,
            sr=config.sample_rate,
            n_mfcc=config.n_mfcc,
            n_fft=config.n_fft,
            hop_length=config.hop_length,
            n_mels=config.n_mels,
        )
        rows.append(fit_frames(coefficients, config.n_frames).ravel())
    return np.stack(rows)


def bench_mfcc(windows: np.ndarray) -> tuple[float, float, float]:
    config = MfccConfig()
    librosa_per_clip(windows[:2], config)  # warm-up (librosa's first calls compile and cache)
    mfcc_features(windows[:2], AUDIO_RATE, config)
    loop_s, loop = timed(librosa_per_clip, windows, config, repeats=5)
    batch_s, batch = timed(mfcc_features, windows, AUDIO_RATE, config, repeats=5)
    return loop_s / len(windows), batch_s / len(windows), float(np.abs(batch - loop).max())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--windows", type=int, default=24)
    parser.add_argument("--seed", type=int, default=0)
    arguments = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    torch.set_num_threads(1)
    windows = synthetic_windows(arguments.windows, arguments.seed)
    print(f"{len(windows)} windows of {N_SAMPLES} samples at {AUDIO_RATE} Hz, one core, one thread")

    reference_s, fast_s, deviation = bench_texture(windows)
    print(f"texture  reference per clip {1e3 * reference_s:8.1f} ms/window")
    print(f"texture  fast (batched)     {1e3 * fast_s:8.1f} ms/window   {reference_s / fast_s:5.1f}x")
    print(
        "texture  max relative L2 deviation per block: "
        + ", ".join(f"{k} {v:.1e}" for k, v in deviation.items())
    )

    loop_s, batch_s, mfcc_deviation = bench_mfcc(windows)
    print(f"mfcc     librosa per clip   {1e3 * loop_s:8.1f} ms/window")
    print(f"mfcc     batched            {1e3 * batch_s:8.1f} ms/window   {loop_s / batch_s:5.1f}x")
    print(f"mfcc     max absolute deviation {mfcc_deviation:.1e}")
    worst = max(deviation, key=deviation.get)
    print(
        f"texture {1e3 * fast_s:.1f} ms/window vs reference {1e3 * reference_s:.1f} ms "
        f"({reference_s / fast_s:.1f}x, worst block {worst} {deviation[worst]:.1e}); "
        f"mfcc {1e3 * batch_s:.2f} ms/window vs librosa per clip {1e3 * loop_s:.2f} ms "
        f"({loop_s / batch_s:.1f}x, max deviation {mfcc_deviation:.1e})"
    )


if __name__ == "__main__":
    main()
