"""MFCC features: the batched path gives librosa's per-clip numbers, in the documented layout."""

import librosa
import numpy as np
import pytest

from soundsup.mfcc import MfccConfig, fit_frames, mfcc_features

RATE = 20000
N_SAMPLES = 75000  # 3.75 s


def librosa_frames(n_samples: int, config: MfccConfig) -> int:
    """The number of centred STFT frames librosa gives for ``n_samples``."""
    return 1 + n_samples // config.hop_length


def clips(dtype=np.float32, n_samples=N_SAMPLES, seed=0):
    """Noise, a quiet noise, a tone with silence before it, an AM chirp: ``(4, n_samples)``."""
    rng = np.random.default_rng(seed)
    t = np.arange(n_samples) / RATE
    tone = 0.5 * np.sin(2 * np.pi * 440 * t)
    tone[: n_samples // 2] = 0
    chirp = 0.3 * (1 + np.sin(2 * np.pi * 3 * t)) * np.sin(2 * np.pi * (300 + 400 * t) * t)
    waves = np.stack(
        [0.1 * rng.standard_normal(n_samples), 1e-4 * rng.standard_normal(n_samples), tone, chirp]
    )
    return waves.astype(dtype)


def librosa_per_clip(waves, config, sample_rate=RATE):
    rows = []
    for wave in waves:
        coefficients = librosa.feature.mfcc(
            y=wave,
            sr=sample_rate,
            n_mfcc=config.n_mfcc,
            n_fft=config.n_fft,
            hop_length=config.hop_length,
            n_mels=config.n_mels,
        )
        rows.append(librosa.util.fix_length(coefficients, size=config.n_frames, axis=-1).ravel())
    return np.stack(rows)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_batched_path_equals_librosa_on_each_clip(dtype):
    waves = clips(dtype)
    config = MfccConfig()
    features = mfcc_features(waves, RATE, config, batch_size=3)
    assert features.shape == (4, 3100) and features.dtype == np.float32
    np.testing.assert_allclose(features, librosa_per_clip(waves, config), rtol=0, atol=1e-4)


def test_a_window_gives_155_real_frames_at_the_authors_time_resolution():
    """20 kHz, hop 487, 1950-point FFT: the authors' 21 kHz, hop 512, 2048 within 0.2 % in time,
    155 frames spanning the 3.75-s window, none of them padding."""
    config = MfccConfig()
    assert librosa_frames(N_SAMPLES, config) == config.n_frames == 155
    assert config.hop_length / RATE == pytest.approx(512 / 21000, rel=2e-3)
    assert config.n_fft / RATE == pytest.approx(2048 / 21000, rel=2e-3)
    assert (config.n_frames - 1) * config.hop_length / RATE == pytest.approx(3.75, abs=1e-3)
    burst = np.zeros((1, N_SAMPLES), np.float32)
    burst[0, -400:] = 0.1 * np.random.default_rng(1).standard_normal(400)  # noise in the last 20 ms only
    waves = np.concatenate([clips(), burst])
    features = mfcc_features(waves, RATE).reshape(5, 20, 155)
    direct = librosa.feature.mfcc(y=waves[3], sr=RATE, n_mfcc=20, n_fft=1950, hop_length=487)
    assert direct.shape == (20, 155)
    np.testing.assert_allclose(features[3], direct, atol=1e-4)
    assert not np.any(np.all(features == 0, axis=1))  # no zero column in any clip
    floor = features[4, 0, 0]  # the burst clip's silent frames sit on its dB floor
    assert np.all(features[4, 0, :-3] == floor) and np.all(features[4, 0, -2:] > floor + 100)


def test_layout_is_coefficient_major_with_zero_padded_frames():
    config = MfccConfig(n_fft=2048, hop_length=512)  # librosa's defaults: 147 frames at 20 kHz
    waves = clips()[:1]
    features = mfcc_features(waves, RATE, config).reshape(1, 20, 155)
    direct = librosa.feature.mfcc(y=waves[0], sr=RATE, n_mfcc=20)
    n_frames = librosa_frames(N_SAMPLES, config)
    assert direct.shape == (20, n_frames) == (20, 147)
    np.testing.assert_allclose(features[0, :, :n_frames], direct, atol=1e-4)
    assert np.all(features[0, :, n_frames:] == 0)


def test_a_loud_clip_in_the_batch_does_not_change_a_quiet_one():
    waves = clips()
    together = mfcc_features(waves, RATE)
    alone = mfcc_features(waves[1:2], RATE)
    np.testing.assert_array_equal(together[1], alone[0])


def test_longer_frame_grids_are_trimmed():
    config = MfccConfig(sample_rate=21000)  # the authors' rate on the default hop: 162 frames in 3.75 s
    waves = clips(n_samples=int(3.75 * 21000))
    assert librosa_frames(waves.shape[1], config) == 162
    features = mfcc_features(waves, 21000, config)
    np.testing.assert_allclose(features, librosa_per_clip(waves, config, 21000), rtol=0, atol=1e-4)


def test_other_rates_are_resampled_to_the_configured_rate_first():
    waves = clips(n_samples=16000 * 3)  # treated as 3 s at 16 kHz
    resampled = librosa.resample(waves, orig_sr=16000, target_sr=RATE, axis=-1)
    np.testing.assert_array_equal(mfcc_features(waves, 16000), mfcc_features(resampled, RATE))


def test_config_takes_the_workflow_keys_and_bad_input_is_refused():
    config = MfccConfig(**{"n_mfcc": 13, "n_frames": 100})
    assert mfcc_features(clips()[:2], RATE, config).shape == (2, 1300)
    assert mfcc_features(np.zeros((0, N_SAMPLES), np.float32), RATE).shape == (0, 3100)
    assert fit_frames(np.ones((2, 5)), 3).shape == (2, 3)
    with pytest.raises(ValueError, match="n_mfcc"):
        MfccConfig(n_mfcc=200)
    with pytest.raises(ValueError, match="NaN"):
        mfcc_features(np.full((1, N_SAMPLES), np.nan), RATE)
    with pytest.raises(ValueError, match="floating point"):
        mfcc_features(np.zeros((1, N_SAMPLES), np.int16), RATE)
    with pytest.raises(ValueError, match=r"2-d array of audio samples, got shape \(1, 2, "):
        mfcc_features(np.zeros((1, 2, N_SAMPLES), np.float32), RATE)
