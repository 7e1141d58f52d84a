"""Progress lines: the remaining-time estimate and its format (training runs: test_pretext, test_finetune)."""

from __future__ import annotations

import logging
import math

import pytest

from soundsup.progress import Eta, eta_seconds, format_duration, job_logger


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0s"), (0.9, "0s"), (45.7, "45s"), (60, "1m00s"), (192, "3m12s"), (3599, "59m59s"),
     (3600, "1h00m"), (7500, "2h05m"), (51 * 3600 + 59, "51h00m"), (-3, "0s"), (math.inf, "?")],
)  # fmt: skip
def test_format_duration(seconds, text):
    assert format_duration(seconds) == text


def test_eta_is_the_remaining_units_at_the_rate_measured_so_far():
    assert eta_seconds(done=2, remaining=8, elapsed=4.0) == 16.0
    assert eta_seconds(done=0, remaining=8, elapsed=4.0) == math.inf  # no rate yet
    assert eta_seconds(done=5, remaining=0, elapsed=4.0) == 0.0


def test_a_resumed_job_measures_its_rate_on_the_units_done_since_it_started():
    times = iter([100.0, 106.0, 112.0])  # made at t=100; asked at t=106 and t=112
    eta = Eta(total=40, start=30, clock=lambda: next(times))
    assert eta(32) == "ETA 24s"  # 2 units in 6 s, 8 to go (not 32 units in 6 s)
    assert eta(40) == "ETA 0s"


def test_job_logger_names_the_job_on_every_line(caplog):
    caplog.set_level("INFO", logger="soundsup.test")
    job_logger(logging.getLogger("soundsup.test"), "random-resnet18 all seed0").info("step %d", 3)
    assert [record.getMessage() for record in caplog.records] == ["[random-resnet18 all seed0] step 3"]
