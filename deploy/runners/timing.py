"""Timing primitives every timing in the project uses, below the device code that times
itself (deploy.trt's runtime, profiler and engine benchmark) and the benchmarks above it
(deploy.bench): the latency summary (`summarize_ms`), random inputs of a runner's shapes, and
the timing loop (warm-up, timed passes, latency percentiles, images/s) for any runner.

Wall-clock latency is measured around `Runner.infer` (host to host, copies included). A
runner that measures more precisely exposes `last_timing` for the last call: a mapping or a
dataclass whose `*_ms` fields are milliseconds (TrtRunner's `Timing`: `gpu_ms`, CUDA events
around `execute_async_v3`, and `host_ms`, H2D + compute + D2H). Each series is summarised
separately under `device_ms` (`gpu`, `host`).

Needs only numpy.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, is_dataclass
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from ..errors import UsageError
from ..progress import progress
from .base import Runner, TensorSpec


def summarize_ms(values: Sequence[float]) -> dict[str, float]:
    """Median, mean, p90, p99 (linear interpolation, numpy's default), min, max, std of
    timings in milliseconds. No timings is a usage error (nothing was run)."""
    a = np.asarray(values, dtype=np.float64)
    if a.size == 0:
        raise UsageError("no timings to summarise")
    return {"median": float(np.median(a)), "mean": float(a.mean()), "p90": float(np.percentile(a, 90)),
            "p99": float(np.percentile(a, 99)), "min": float(a.min()), "max": float(a.max()),
            "std": float(a.std())}


@dataclass(frozen=True)
class TimingConfig:
    """Warm-up runs (not timed: first calls pay for allocation, autotuning, lazy init) and
    timed runs. Defaults are small for CI: resnet_v2_152 at batch 32 takes ~24 s a pass on a
    2-core CPU, so 1 + 5 passes is ~2.5 minutes (percentiles of 5 samples are rough). The seed
    tutorial used 10 warm-up and 100 timed runs: use those (--warmup 10 --iters 100) for
    numbers you publish."""

    warmup: int = 1
    iters: int = 5

    def __post_init__(self) -> None:
        if self.warmup < 0 or self.iters < 1:
            raise UsageError(f"need at least 0 warm-up and 1 timed run, got {self.warmup} and {self.iters}")


def random_feed(specs: Sequence[TensorSpec], batch: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Random inputs: dimension 0 is the batch, every other dimension must be static."""
    rng = np.random.default_rng(seed)
    feed = {}
    for s in specs:
        rest = s.shape[1:]
        if any(d is None or d < 0 for d in rest):
            raise UsageError(f"input {s.name!r} has dynamic non-batch dimensions {s.shape}; give a fixed size")
        shape = (batch, *rest)
        if np.issubdtype(s.dtype, np.floating):
            feed[s.name] = rng.standard_normal(shape).astype(s.dtype)
        else:
            feed[s.name] = np.zeros(shape, dtype=s.dtype)
    return feed


def _timing_series(timing: Any) -> dict[str, float]:
    """`*_ms` entries of a runner's `last_timing` (mapping or dataclass), keyed without `_ms`."""
    if timing is None:
        return {}
    if isinstance(timing, Mapping):
        items = timing.items()
    elif is_dataclass(timing):
        items = asdict(timing).items()
    else:
        return {}
    return {k[: -len("_ms")]: float(v) for k, v in items if k.endswith("_ms")}


def time_runner(runner: Runner, feed: Mapping[str, np.ndarray], config: TimingConfig = TimingConfig(),
                clock: Callable[[], float] = time.perf_counter, desc: str = "timing") -> dict[str, Any]:
    """Warm up, then time `config.iters` passes of `feed` through `runner.infer`.

    A batch above the runner's `max_batch` (a TensorRT profile's maximum) is split, and one
    pass is then that many calls back to back (`calls_per_pass`; `last_timing` series summed).
    Returns latency statistics in ms per pass, images/s at the median latency, and the
    statistics of each series in the runner's `last_timing` (if it has one) under `device_ms`.
    """
    chunks = runner.split_batch(feed)
    for _ in range(config.warmup):
        for chunk in chunks:
            runner.infer(chunk)
    wall: list[float] = []
    series: dict[str, list[float]] = {}
    for _ in progress(range(config.iters), desc=desc, total=config.iters):
        summed: dict[str, float] = {}
        t0 = clock()
        for chunk in chunks:
            runner.infer(chunk)
            for key, ms in _timing_series(getattr(runner, "last_timing", None)).items():
                summed[key] = summed.get(key, 0.0) + ms
        wall.append((clock() - t0) * 1e3)
        for key, ms in summed.items():
            series.setdefault(key, []).append(ms)
    batch = int(len(next(iter(feed.values())))) if feed else 0
    latency = summarize_ms(wall)
    out: dict[str, Any] = {
        "warmup": config.warmup, "iters": config.iters, "batch": batch, "calls_per_pass": len(chunks),
        "input_shapes": {k: list(v.shape) for k, v in feed.items()},
        "latency_ms": latency,
        "images_per_s": batch * 1e3 / latency["median"] if latency["median"] > 0 else None,
    }
    if series:
        out["device_ms"] = {k: summarize_ms(v) for k, v in series.items()}
    return out
