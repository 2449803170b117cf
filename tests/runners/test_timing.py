"""deploy.runners.timing: the timing loop and the latency summary, with a fake runner and a fake clock."""
from __future__ import annotations

import json

import numpy as np
import pytest

from deploy.runners.timing import TimingConfig, random_feed, summarize_ms, time_runner
from deploy.errors import UsageError
from deploy.runners.base import TensorSpec

from ..bench.fakes import Clock, LimitedRunner, SteppingRunner


def test_warmup_excluded_and_percentiles():
    clock = Clock()
    # 3 warm-up calls take 5 s each; the timed calls take 1..10 ms.
    runner = SteppingRunner(clock, [5.0] * 3 + [k / 1000 for k in range(1, 11)])
    feed = random_feed(runner.input_specs(), batch=8)
    res = time_runner(runner, feed, TimingConfig(warmup=3, iters=10), clock=clock)
    assert runner.calls == 13
    lat = res["latency_ms"]
    assert lat["max"] == pytest.approx(10.0) and lat["min"] == pytest.approx(1.0)  # no 5000 ms warm-up
    assert lat["median"] == pytest.approx(5.5)
    assert lat["mean"] == pytest.approx(5.5)
    assert lat["p90"] == pytest.approx(9.1)  # linear interpolation between the 9th and 10th values
    assert lat["p99"] == pytest.approx(9.91)
    assert res["images_per_s"] == pytest.approx(8 / 0.0055)
    assert res["batch"] == 8 and res["warmup"] == 3 and res["iters"] == 10
    assert res["input_shapes"] == {"x": [8, 3, 4, 4]}
    assert "device_ms" not in res
    json.dumps(res, allow_nan=False)


def test_runner_timings_are_reported_separately():
    clock = Clock()
    runner = SteppingRunner(clock, [1.0] + [0.002, 0.004, 0.006], timings=True)
    res = time_runner(runner, random_feed(runner.input_specs(), 2), TimingConfig(warmup=1, iters=3), clock=clock)
    assert set(res["device_ms"]) == {"gpu", "host"}
    assert res["device_ms"]["gpu"]["median"] == pytest.approx(2.0)  # 0.004 s * 500
    assert res["device_ms"]["host"]["max"] == pytest.approx(5.4)
    assert res["latency_ms"]["median"] == pytest.approx(4.0)


def test_config_and_feed_validation():
    with pytest.raises(UsageError):
        TimingConfig(warmup=-1)
    with pytest.raises(UsageError):
        TimingConfig(iters=0)
    with pytest.raises(UsageError):
        summarize_ms([])
    feed = random_feed([TensorSpec("a", (None, 2), np.dtype(np.float16)), TensorSpec("b", (None,), np.dtype(np.int64))],
                       batch=4, seed=1)
    assert feed["a"].shape == (4, 2) and feed["a"].dtype == np.float16 and feed["b"].shape == (4,)
    with pytest.raises(UsageError, match="dynamic"):
        random_feed([TensorSpec("a", (None, None), np.dtype(np.float32))], batch=1)


def test_batches_above_max_batch_are_timed_in_slices():
    clock = Clock()
    runner = LimitedRunner(clock, [0.001] * 30, timings=True)
    res = time_runner(runner, random_feed(runner.input_specs(), 8), TimingConfig(warmup=1, iters=2), clock=clock)
    assert runner.calls == 3 * 3  # 8 = 3 + 3 + 2, for the warm-up and both timed passes
    assert res["calls_per_pass"] == 3 and res["batch"] == 8
    assert res["latency_ms"]["median"] == pytest.approx(3.0)  # one pass is all three calls
    assert res["device_ms"]["gpu"]["median"] == pytest.approx(1.5)  # 3 x 0.001 s x 500, summed over slices
    assert res["images_per_s"] == pytest.approx(8 / 0.003)
