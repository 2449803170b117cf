"""Benchmarks: how fast each backend runs a model, and how long INT8 calibration takes.

- `stats`: the latency summary every timing in the project uses (`summarize_ms`).
- `timing`: the runner-agnostic timing loop (warm-up, timed passes, runner-side timings).
- `forward`: the forward-pass benchmark over every backend (`tools/benchmark.py forward`).
- `calibration`: our calibration against ONNX Runtime's `quantize_static`
  (`tools/benchmark.py calibration`).

Importing this package needs only numpy.
"""
from .stats import summarize_ms

__all__ = ["summarize_ms"]
