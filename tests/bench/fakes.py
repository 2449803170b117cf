"""Fakes for the benchmark tests: a clock the runners advance, runners with known durations,
a bundle with one engine, and tools/benchmark.py loaded as a module."""
from __future__ import annotations

import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from deploy.errors import InputError
from deploy.runners.base import Runner, TensorSpec

ROOT = Path(__file__).resolve().parents[2]


class Clock:
    def __init__(self):
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


@dataclass(frozen=True)
class FakeTiming:
    batch: int
    gpu_ms: float
    host_ms: float


class SteppingRunner(Runner):
    """Each call advances the fake clock by the next duration (seconds) in `durations`."""

    def __init__(self, clock: Clock, durations, timings: bool = False):
        self.clock = clock
        self.durations = list(durations)
        self.calls = 0
        self.timings = timings
        self.last_timing = None
        self.name = "fake"

    def input_specs(self):
        return [TensorSpec("x", (None, 3, 4, 4), np.dtype(np.float32))]

    def _infer(self, feed):
        d = self.durations[self.calls]
        self.calls += 1
        self.clock.t += d
        if self.timings:
            self.last_timing = FakeTiming(len(feed["x"]), gpu_ms=d * 500.0, host_ms=d * 900.0)
        return {"y": feed["x"].sum(axis=(1, 2, 3))}


class LimitedRunner(SteppingRunner):
    """A runner whose calls take at most `max_batch` samples, as a TensorRT profile does."""

    max_batch = 3

    def validate(self, feed):
        super().validate(feed)
        if len(feed["x"]) > self.max_batch:
            raise InputError(f"batch {len(feed['x'])} is outside the engine's profile [1, {self.max_batch}]")


def fake_bundle(tmp_path: Path) -> Path:
    root = tmp_path / "bundle"
    root.mkdir()
    (root / "manifest.json").write_text(json.dumps({
        "format": 1, "model": {"name": "tiny", "num_classes": 3},
        "inputs": [{"name": "x", "shape": [-1, 3, 4, 4], "dtype": "float32", "layout": "NCHW"}],
        "outputs": [{"name": "y", "shape": [-1], "dtype": "float32"}], "preprocessing": {}}))
    (root / "engines").mkdir()
    (root / "engines" / "tiny.fp16.plan").write_bytes(b"plan")
    (root / "engines" / "tiny.fp16.json").write_text(json.dumps({"precision": "fp16", "tensorrt": "10.3.0"}))
    return root


def load_tool():
    spec = importlib.util.spec_from_file_location("benchmark_tool", ROOT / "tools" / "benchmark.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod
