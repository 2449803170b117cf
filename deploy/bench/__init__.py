"""Benchmarks: how fast each backend runs a model, and how long INT8 calibration takes.

The timing primitives they use (the latency summary, the timing loop) are
`deploy.runners.timing`, below the device code that times itself.

- `forward`: the forward-pass benchmark over every backend (`tools/benchmark.py forward`).
- `calibration`: our calibration against ONNX Runtime's `quantize_static`
  (`tools/benchmark.py calibration`).

Importing this package needs only numpy.
"""
