"""Texture statistics: known answers, invariances, layout, and fast path == reference."""

import math

import numpy as np
import pytest
import scipy.signal
import torch

from soundsup.texture import (
    AUDIO_RATE,
    STAT_BLOCKS,
    TextureConfig,
    constq_cos_filters,
    erb_cos_filters,
    freq_to_erb,
    octave_resample_kernel,
    resample_octave,
    stat_blocks,
    texture_stats,
    texture_stats_batch,
    texture_stats_reference,
)

RATE = AUDIO_RATE
N_SAMPLES = 75000  # 3.75 s, the workflow's window


def times(n_samples=N_SAMPLES):
    return np.arange(n_samples) / RATE


def pink_noise(rng, n_samples=N_SAMPLES):
    spectrum = np.fft.rfft(rng.standard_normal(n_samples))
    spectrum[1:] /= np.sqrt(np.arange(1, len(spectrum)))
    spectrum[0] = 0
    wave = np.fft.irfft(spectrum, n_samples)
    return 0.1 * wave / wave.std()


def am_tone(n_samples=N_SAMPLES, carrier=1000.0, rate_hz=4.0):
    t = times(n_samples)
    return 0.3 * (1 + 0.9 * np.sin(2 * np.pi * rate_hz * t)) * np.sin(2 * np.pi * carrier * t)


def rain(rng, n_samples=N_SAMPLES):
    """Sparse decaying clicks over a bed of filtered noise: a crude rain texture."""
    drops = (rng.random(n_samples) < 0.003) * rng.standard_normal(n_samples)
    clicks = np.convolve(drops, np.exp(-np.arange(120) / 15.0), "same")
    bed = scipy.signal.lfilter([1.0], [1.0, -0.95], 0.01 * rng.standard_normal(n_samples))
    return 0.3 * clicks + bed


def birdsong(n_samples=N_SAMPLES):
    t = times(n_samples)
    phase = 2 * np.pi * np.cumsum(3500 + 1200 * np.sin(2 * np.pi * 7 * t)) / RATE
    return 0.2 * np.sin(phase) * (np.sin(2 * np.pi * 1.3 * t) > 0.2)


def block(stats, name):
    return stats[..., STAT_BLOCKS[name]]


def relative_error(fast, reference):
    return np.linalg.norm(fast - reference) / np.linalg.norm(reference)


# --- layout and configuration ------------------------------------------------------------------


def test_blocks_have_the_documented_sizes_and_order():
    sizes = {name: s.stop - s.start for name, s in STAT_BLOCKS.items()}
    assert sizes == {"mean": 32, "env_cv": 32, "corr": 117, "mod_power": 320, "loudness": 1}
    assert list(STAT_BLOCKS) == ["mean", "env_cv", "corr", "mod_power", "loudness"]
    assert STAT_BLOCKS["loudness"].stop == 502
    assert stat_blocks(TextureConfig()) == STAT_BLOCKS
    starts = [s.start for s in STAT_BLOCKS.values()]
    stops = [s.stop for s in STAT_BLOCKS.values()]
    assert starts[1:] == stops[:-1]


def test_config_takes_the_workflow_keys_and_rejects_bad_values():
    config = TextureConfig(**{"corr_offsets": [1, 2, 3, 5], "mod_norm": "mean2"})
    assert config.corr_offsets == (1, 2, 3, 5) and config.n_bands == 32 and config.decimation == 50
    assert TextureConfig().mod_norm == "var" and TextureConfig().silence_threshold == 1e-6
    with pytest.raises(ValueError, match="mod_norm"):
        TextureConfig(mod_norm="power")
    with pytest.raises(ValueError, match="env_sample_rate"):
        TextureConfig(env_sample_rate=300)
    smaller = TextureConfig(n_filters=10, n_mod=6, corr_offsets=(1, 2))
    assert stat_blocks(smaller)["loudness"].stop == 12 + 12 + 21 + 72 + 1


def test_bad_audio_is_refused_with_a_clear_message():
    with pytest.raises(ValueError, match="NaN"):
        texture_stats(np.full(20000, np.nan), RATE)
    with pytest.raises(ValueError, match="1-d"):
        texture_stats(np.zeros((2, 20000)), RATE)
    with pytest.raises(ValueError, match="floating point"):
        texture_stats_batch(np.zeros((2, 20000), dtype=np.int16), RATE)


# --- filters and resampler -----------------------------------------------------------------------


def test_erb_filters_tile_the_spectrum_between_erb_spaced_cutoffs():
    filters = erb_cos_filters(N_SAMPLES, RATE, 30, 20.0, 10000.0)
    assert filters.shape == (N_SAMPLES // 2 + 1, 32)
    np.testing.assert_allclose(np.sum(filters**2, axis=1), 1.0, atol=1e-12)
    freqs = np.arange(filters.shape[0]) * RATE / N_SAMPLES
    cutoffs_erb = np.linspace(freq_to_erb(20.0), freq_to_erb(10000.0), 32)
    for k in range(1, 31):  # half-cosine k spans cutoffs k-1 .. k+1 and peaks at cutoff k
        support = freq_to_erb(freqs[filters[:, k] > 0])
        assert support.min() > cutoffs_erb[k - 1] - 1e-9 and support.max() < cutoffs_erb[k + 1] + 1e-9
        assert support.min() - cutoffs_erb[k - 1] < 0.01 and cutoffs_erb[k + 1] - support.max() < 0.01
        peak = freq_to_erb(freqs[np.argmax(filters[:, k])])
        assert peak == pytest.approx(cutoffs_erb[k], abs=0.01)
    assert freq_to_erb(1000.0) == pytest.approx(9.265 * math.log(1 + 1000.0 / (24.7 * 9.265)))


def test_modulation_filters_are_constant_q_with_unit_mean_power():
    n_env = 1500
    filters = constq_cos_filters(n_env, 400, 10, 0.5, 200.0, 1.0)
    freqs = np.arange(filters.shape[0]) * 400 / n_env
    centres = 2.0 ** np.linspace(np.log2(0.5), np.log2(200.0), 10)
    for k, centre in enumerate(centres):
        support = freqs[filters[:, k] > 0]
        assert support.min() > 0 and support.max() < 2 * centre + 1e-9
        assert freqs[np.argmax(filters[:, k])] == pytest.approx(centre, abs=400 / n_env)
    energy = np.sum(filters**2, axis=1)
    assert energy[(freqs >= centres[3]) & (freqs <= centres[-4])].mean() == pytest.approx(1.0)


def octave_resample(x, q):
    """Octave's resample.m for p = 1, step by step (prepad, postpad, upfirdn, offset)."""
    h, _ = octave_resample_kernel(q)
    half = (len(h) - 1) / 2.0
    n_out = math.ceil(len(x) / q)
    nz_pre = math.floor(q - half % q)
    offset = math.floor((half + nz_pre) / q)
    nz_post = 0
    while math.ceil(((len(x) - 1) + nz_pre + len(h) + nz_post) / q) - offset < n_out:
        nz_post += 1
    padded = np.concatenate([np.zeros(nz_pre), h, np.zeros(nz_post)])
    return scipy.signal.upfirdn(padded, x, 1, q)[offset : offset + n_out]


@pytest.mark.parametrize("n_samples", [75000, 20011])
def test_resampler_is_octaves(n_samples):
    kernel, half_length = octave_resample_kernel(50)
    assert half_length == 1811 and len(kernel) == 3623
    assert kernel.sum() == pytest.approx(1.0, abs=2e-3)
    x = np.random.default_rng(3).random(n_samples)
    np.testing.assert_allclose(resample_octave(x, 50), octave_resample(x, 50), atol=1e-12)


# --- known answers ---------------------------------------------------------------------------------


def test_am_tone_peaks_in_the_modulation_band_nearest_its_rate():
    stats = texture_stats(am_tone(), RATE)
    band = int(np.argmax(block(stats, "mean")))
    mod = block(stats, "mod_power").reshape(32, 10)[band]
    centres = 2.0 ** np.linspace(np.log2(0.5), np.log2(200.0), 10)
    assert np.argmax(mod) == np.argmin(np.abs(np.log(centres / 4.0)))


def test_pure_tone_excites_only_the_bands_that_pass_it():
    tone = 0.5 * np.sin(2 * np.pi * 1000.0 * times())  # 3750 cycles: one FFT bin
    mean = block(texture_stats(tone, RATE), "mean")
    filters = erb_cos_filters(N_SAMPLES, RATE, 30, 20.0, 10000.0)
    passing = filters[int(1000.0 * N_SAMPLES / RATE)] > 0
    assert 1 <= passing.sum() <= 2
    assert np.all(mean[passing] > 0.1) and np.all(mean[~passing] < 1e-3 * mean.max())


def test_normalised_statistics_ignore_gain_while_mean_and_loudness_scale_as_gain_to_the_0_3():
    wave = pink_noise(np.random.default_rng(0))
    quiet, loud = texture_stats_batch(np.stack([wave, 20.0 * wave]), RATE)
    for name in ("env_cv", "corr", "mod_power"):
        np.testing.assert_allclose(block(loud, name), block(quiet, name), rtol=1e-9, atol=1e-12)
    for name in ("mean", "loudness"):
        np.testing.assert_allclose(block(loud, name), 20.0**0.3 * block(quiet, name), rtol=1e-9)


def test_silence_gives_zeros_and_is_flagged_by_the_one_rule_of_silence():
    from soundsup.waves import silent_windows

    silence = np.zeros(N_SAMPLES)
    for stats in (texture_stats(silence, RATE), texture_stats_reference(silence, RATE)):
        assert stats.shape == (502,) and np.all(stats == 0)
    windows = np.stack([silence, pink_noise(np.random.default_rng(1))])
    assert np.all(texture_stats_batch(windows, RATE)[0] == 0)
    assert silent_windows(windows, 1e-4).tolist() == [True, False]


def test_empty_bands_give_zeros_not_nan():
    tone = 0.5 * np.sin(2 * np.pi * 1000.0 * times())
    stats = texture_stats(tone, RATE)
    assert np.all(np.isfinite(stats))
    mean = block(stats, "mean")
    empty = mean == 0
    assert empty.sum() >= 25
    assert np.all(block(stats, "env_cv")[empty] == 0)
    assert np.all(block(stats, "mod_power").reshape(32, 10)[empty] == 0)


def test_mean2_differs_from_var_normalisation_by_sigma_over_mu():
    wave = rain(np.random.default_rng(2))
    by_var = texture_stats(wave, RATE)
    by_mean2 = texture_stats(wave, RATE, config=TextureConfig(mod_norm="mean2"))
    cv = block(by_var, "env_cv")[:, None]
    np.testing.assert_allclose(
        block(by_mean2, "mod_power").reshape(32, 10),
        block(by_var, "mod_power").reshape(32, 10) * cv,
        rtol=1e-9,
    )


# --- fast path against the reference ------------------------------------------------------------


def test_batch_equals_single_windows():
    rng = np.random.default_rng(4)
    waves = np.stack([pink_noise(rng), am_tone(), rain(rng)])
    batch = texture_stats_batch(waves, RATE, batch_size=2)
    singles = np.stack([texture_stats(wave, RATE) for wave in waves])
    np.testing.assert_allclose(batch, singles, rtol=1e-7, atol=1e-10)


TOLERANCE = {"mean": 5e-4, "loudness": 5e-4, "env_cv": 5e-3, "mod_power": 5e-3, "corr": 2e-2}


def test_fast_path_matches_the_reference_on_noise_tones_and_textures():
    rng = np.random.default_rng(5)
    waves = {
        "white": 0.1 * rng.standard_normal(N_SAMPLES),
        "pink": pink_noise(rng),
        "am tone": am_tone(carrier=2345.6, rate_hz=4.0),
        "rain": rain(rng),
        "birdsong": birdsong(),
    }
    fast = texture_stats_batch(np.stack(list(waves.values())), RATE)
    for row, (name, wave) in enumerate(waves.items()):
        reference = texture_stats_reference(wave, RATE)
        for block_name, tolerance in TOLERANCE.items():
            error = relative_error(block(fast[row], block_name), block(reference, block_name))
            assert error < tolerance, f"{name}: {block_name} differs by {error:.2e}"


def test_odd_window_lengths_take_the_reference_path():
    wave = pink_noise(np.random.default_rng(6), 20011)
    np.testing.assert_allclose(texture_stats(wave, RATE), texture_stats_reference(wave, RATE), rtol=1e-12)


def test_other_sample_rates_are_resampled_to_20_khz():
    wave = am_tone(n_samples=60000)[: 16000 * 3]  # any content; 3 s at 16 kHz
    stats = texture_stats(wave, 16000)
    upsampled = scipy.signal.resample_poly(wave, 5, 4)
    np.testing.assert_allclose(stats, texture_stats(upsampled, RATE), rtol=1e-12)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_gives_the_cpu_numbers():
    rng = np.random.default_rng(7)
    waves = np.stack([pink_noise(rng), rain(rng)])
    np.testing.assert_allclose(
        texture_stats_batch(waves, RATE, device="cuda"),
        texture_stats_batch(waves, RATE),
        rtol=1e-7,
        atol=1e-9,
    )
