"""The feature rules' adapters (compute_texture, compute_mfcc) run with a stand-in job on a shard
of real windows: a tone, noise and a silent one."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from adapter_helpers import Job, run_adapter, workflow_config

from soundsup.io import save_npy, write_parquet
from soundsup.mfcc import MfccConfig, mfcc_features
from soundsup.texture import TextureConfig, texture_stats_batch

RATE = 20000


def shard(tmp_path, n_audio_rows=None):
    samples = int(3.75 * RATE)
    t = np.arange(samples) / RATE
    audio = np.stack(
        [
            0.3 * np.sin(2 * np.pi * 440 * t),
            0.1 * np.random.default_rng(0).standard_normal(samples),
            np.zeros(samples),  # silent: kept, and flagged
        ]
    ).astype(np.float32)
    index = pd.DataFrame({"pair_id": ["a-0", "a-1", "b-0"], "ytid": ["a", "a", "b"], "labels": ["/m/x"] * 3})
    write_parquet(tmp_path / "index.parquet", index)
    save_npy(tmp_path / "audio.npy", audio[: n_audio_rows or len(audio)])
    return audio


def job(tmp_path, rule, feature):
    config = workflow_config()
    return Job(
        input=Job(index=str(tmp_path / "index.parquet"), audio=str(tmp_path / "audio.npy")),
        output=Job(features=str(tmp_path / f"{feature}.npy"), ids=str(tmp_path / f"{feature}.parquet")),
        params=Job(
            **{feature: config["features"][feature]},
            sample_rate=config["pairs"]["sample_rate"],
            silence_rms=config["pairs"]["silence_rms"],
        ),
        config=config,
        wildcards=Job(shard="0"),
        log=[str(tmp_path / f"{rule}.log")],
        rule=rule,
        threads=1,
    )


@pytest.mark.parametrize(("rule", "feature"), [("compute_texture", "texture"), ("compute_mfcc", "mfcc")])
def test_feature_adapter_writes_the_features_ids_and_provenance_of_a_shard(tmp_path, rule, feature):
    audio = shard(tmp_path)
    run_adapter(rule, job(tmp_path, rule, feature))
    settings = workflow_config()["features"]
    if feature == "texture":
        texture = TextureConfig(
            **{**settings["texture"], "corr_offsets": tuple(settings["texture"]["corr_offsets"])}
        )
        expected = texture_stats_batch(audio, RATE, config=texture)
    else:
        expected = mfcc_features(audio, RATE, MfccConfig(**settings["mfcc"]))
    features = np.load(tmp_path / f"{feature}.npy")
    assert features.dtype == np.float32 and features.shape == expected.shape
    np.testing.assert_allclose(features, expected, rtol=1e-5, atol=1e-6)
    assert not np.allclose(features[0], features[1])  # a tone and noise differ
    ids = pd.read_parquet(tmp_path / f"{feature}.parquet")
    assert ids["pair_id"].tolist() == ["a-0", "a-1", "b-0"] and ids["silent"].tolist() == [False, False, True]
    meta = json.loads((tmp_path / f"{feature}.npy.meta.json").read_text())
    assert meta["sample_rate"] == RATE and meta["n_windows"] == 3


def test_feature_adapter_refuses_audio_that_does_not_match_its_index(tmp_path):
    shard(tmp_path, n_audio_rows=2)
    with pytest.raises(ValueError, match=r"index\.parquet has 3 rows but .*audio\.npy 2"):
        run_adapter("compute_texture", job(tmp_path, "compute_texture", "texture"))
    assert not (tmp_path / "texture.npy").exists()
