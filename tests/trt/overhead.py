"""The runner's own cost per call, measured on the CPU with the test fakes: a CPU proxy for
the Python that `TrtRunner.infer` adds around TensorRT, not a GPU measurement.

The fake device does no work (copies and `execute_async_v3` return at once), so what is
timed is Python: validation, shapes, host staging, the calls into pycuda and TensorRT, the
output copy. The same calls made by hand ("bare": copy into the pinned buffer, H2D, execute,
D2H, synchronize, copy out) are timed alongside; the runner's fixed cost is the difference
of the medians. Input 3x224x224 float32, output 1001 float32, as an ImageNet classifier.

usage: PYTHONPATH=. python -m tests.trt.overhead [--calls 20000] [--batch 1] [--timing] [--cuda-graph]
Prints one JSON line; the numbers move with the machine and its load (compare in one run).
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from deploy.fsutil import sha256_bytes
from deploy.trt import runtime as runtime_module
from deploy.trt.sidecar import IOTensor, Sidecar, sidecar_path

from .fake_cuda import FakeCuda
from .fake_engine import FakeEngine, TensorIOMode
from .fakes import make_fake_trt

SHAPE = (3, 224, 224)
CLASSES = 1001
PROFILE = ((1, *SHAPE), (8, *SHAPE), (32, *SHAPE))
PLAN = b"overhead plan"


class IdleCuda(FakeCuda):
    """FakeCuda whose copies cost nothing: the device side is not what is measured."""

    def memcpy_htod_async(self, dest, src, stream=None):
        pass

    def memcpy_dtoh_async(self, dest, src, stream=None):
        pass


class ImageEngine(FakeEngine):
    """FakeEngine's tensor queries on an ImageNet classifier's shapes; its contexts do no work."""

    io = {"input": (TensorIOMode.INPUT, (-1, *SHAPE)), "logits": (TensorIOMode.OUTPUT, (-1, CLASSES))}
    profile = PROFILE

    def create_execution_context(self, strategy=None):
        return IdleContext(self.cuda)


class IdleContext:
    """Answers shapes like TensorRT's context; execution enqueues nothing."""

    def __init__(self, cuda: FakeCuda):
        self.cuda = cuda
        self.batch = -1
        self.profiler = None
        self.enqueue_emits_profile = True
        self.shape_calls = 0

    def set_input_shape(self, name, shape):
        self.shape_calls += 1
        self.batch = shape[0]
        return True

    def get_tensor_shape(self, name):
        return (self.batch, CLASSES) if name == "logits" else (self.batch, *SHAPE)

    def set_tensor_address(self, name, ptr):
        pass

    def set_device_memory(self, memory, size):
        pass

    def execute_async_v3(self, stream_handle):
        capture = self.cuda.capturing.get(stream_handle) if hasattr(self.cuda, "capturing") else None
        if capture is not None:
            capture.append(lambda: None)
        return True


def write_plan(root: Path) -> Path:
    plan = root / "engines" / "image.fp32.plan"
    plan.parent.mkdir(parents=True, exist_ok=True)
    plan.write_bytes(PLAN)
    sidecar = Sidecar(plan=plan.name, plan_sha256=sha256_bytes(PLAN), model="image", tensorrt="10.16.1.11",
                      gpu_name="Fake GPU", compute_capability="sm_87", precision="fp32", mode="explicit",
                      version_compatible=False, hardware_compat=None, batch=(1, 8, 32),
                      io=(IOTensor("input", "input", "float32", (-1, *SHAPE), PROFILE),
                          IOTensor("logits", "output", "float32", (-1, CLASSES))),
                      onnx="model.onnx", onnx_sha256="00" * 32)
    sidecar_path(plan).write_text(json.dumps(sidecar.to_json()))
    return plan


def median_us(fn: Callable[[], Any], calls: int) -> float:
    for _ in range(min(calls // 10, 1000)):
        fn()
    samples = []
    clock = time.perf_counter_ns
    for _ in range(calls):
        t0 = clock()
        fn()
        samples.append(clock() - t0)
    return statistics.median(samples) / 1e3


def bare_pipeline(cuda: FakeCuda, batch: int) -> Callable[[np.ndarray], np.ndarray]:
    """The calls any runner must make, by hand, with buffers and shapes prepared once."""
    context = IdleContext(cuda)
    context.set_input_shape("input", (batch, *SHAPE))
    host_in = cuda.pagelocked_empty((batch, *SHAPE), np.float32)
    host_out = cuda.pagelocked_empty((batch, CLASSES), np.float32)
    ctx = cuda.Device(0).retain_primary_context()
    ctx.push()
    dev_in, dev_out = cuda.mem_alloc(host_in.nbytes), cuda.mem_alloc(host_out.nbytes)
    cuda.Context.pop()
    stream = cuda.Stream()

    def run(x: np.ndarray) -> np.ndarray:
        ctx.push()
        try:
            np.copyto(host_in, x)
            cuda.memcpy_htod_async(dev_in, host_in, stream)
            context.execute_async_v3(stream.handle)
            cuda.memcpy_dtoh_async(host_out, dev_out, stream)
            stream.synchronize()
            return host_out.copy()
        finally:
            cuda.Context.pop()

    return run


def measure(calls: int, batch: int, runner_options: dict[str, Any]) -> dict[str, Any]:
    cuda = IdleCuda()
    trt = make_fake_trt("10.16.1.11", cuda)
    trt.Runtime.deserialize_cuda_engine = lambda self, data: ImageEngine(cuda)
    runtime_module.import_cuda = lambda: cuda
    runtime_module.import_tensorrt = lambda: trt
    if runner_options.get("cuda_graph"):
        from .fake_cuda import FakeLibcuda

        runtime_module.open_driver = lambda: FakeLibcuda(cuda)
    x = np.random.default_rng(0).standard_normal((batch, *SHAPE), dtype=np.float32)
    feed = {"input": x}
    bare = bare_pipeline(cuda, batch)
    with tempfile.TemporaryDirectory() as tmp:
        with runtime_module.TrtRunner(write_plan(Path(tmp)), **runner_options) as runner:
            runner_us = median_us(lambda: runner.infer(feed), calls)
            bare_us = median_us(lambda: bare(x), calls)
            shape_calls = runner._context.shape_calls
    return {"batch": batch, "calls": calls, "options": runner_options, "runner_us": round(runner_us, 2),
            "bare_us": round(bare_us, 2), "runner_cost_us": round(runner_us - bare_us, 2),
            "set_input_shape_calls": shape_calls, "python": sys.version.split()[0]}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--calls", type=int, default=20000)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--timing", action="store_true", help="TrtRunner(..., timing=True)")
    p.add_argument("--cuda-graph", action="store_true", help="TrtRunner(..., cuda_graph=True)")
    p.add_argument("--defaults", action="store_true", help="TrtRunner(plan) with no options")
    args = p.parse_args(argv)
    options: dict[str, Any] = {}
    if not args.defaults:
        options["timing"] = args.timing
        if args.cuda_graph:
            options["cuda_graph"] = True
    print(json.dumps(measure(args.calls, args.batch, options)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
