"""A stand-in for the run-time half of `tensorrt` with the same names: the logger, the I/O
enums, an engine (FakeEngine) whose execution context computes on fake device memory
(fake_cuda.py), records CUDA-graph captures and reports layer times to an IProfiler, and its
engine inspector. They model what the code relies on and nothing more; names and signatures
are checked against the real bindings in test_bindings_api.py. The builder is in
fake_builder.py; make_fake_trt (fakes.py) assembles the module."""
from __future__ import annotations

import enum
import json

import numpy as np

from .fake_cuda import FakeCuda


class Severity(enum.Enum):
    INTERNAL_ERROR = 0
    ERROR = 1
    WARNING = 2
    INFO = 3
    VERBOSE = 4


class ILogger:
    Severity = Severity

    def __init__(self):
        pass


class TensorIOMode(enum.Enum):
    NONE = 0
    INPUT = 1
    OUTPUT = 2


class DataType(enum.Enum):
    FLOAT = 0
    HALF = 1
    INT32 = 3
    INT64 = 10


def nptype(dtype):
    return {DataType.FLOAT: np.float32, DataType.HALF: np.float16}[dtype]


class IProfiler:
    def __init__(self):
        pass


class LayerInformationFormat(enum.Enum):
    ONELINE = 0
    JSON = 1


# What the inspector of an engine built by make_fake_trt's builder says when a test gives nothing
# else: names only, as for an engine built without ProfilingVerbosity.DETAILED.
NAMES_ONLY_INFORMATION = {"Layers": ["x + y"], "Bindings": ["x", "y"]}


class FakeInspector:
    def __init__(self, engine):
        self.engine = engine
        self.execution_context = None

    def get_engine_information(self, fmt):
        assert fmt is LayerInformationFormat.JSON
        info = self.engine.information
        return info if isinstance(info, str) else json.dumps(info)


class FakeEngine:
    """An engine with input x [-1, 3] (profile batch 1..8) and output y [-1, 2] where
    y = x[:, :2] * 2 + x[:, 2:], computed from the device memory bound to each name."""

    io = {"x": (TensorIOMode.INPUT, (-1, 3)), "y": (TensorIOMode.OUTPUT, (-1, 2))}
    profile = ((1, 3), (4, 3), (8, 3))

    def __init__(self, cuda: FakeCuda, information=NAMES_ONLY_INFORMATION):
        self.cuda = cuda
        self.num_io_tensors = len(self.io)
        self.information = information  # what its engine inspector returns (JSON text or a dict)
        self.inspectors: list[FakeInspector] = []

    def get_tensor_name(self, i):
        return list(self.io)[i]

    def get_tensor_mode(self, name):
        return self.io[name][0]

    def get_tensor_dtype(self, name):
        return DataType.FLOAT

    def get_tensor_shape(self, name):
        return self.io[name][1]

    def get_tensor_profile_shape(self, name, profile_index):
        return self.profile

    def create_execution_context(self):
        return FakeContext(self)

    def create_engine_inspector(self):
        self.inspectors.append(FakeInspector(self))
        return self.inspectors[-1]


class FakeContext:
    # Layer times TensorRT would report per call: (name, ms per image).
    layers = (("conv1 + relu", 0.5), ("pool", 0.01), ("fc", 0.1))

    def __init__(self, engine: FakeEngine):
        self.engine = engine
        self.addresses: dict[str, int] = {}
        self.shapes: dict[str, tuple[int, ...]] = {}
        self.calls = 0
        self.shape_calls = 0
        self.capturable = True  # False: like an engine with data-dependent shapes
        self.profiler = None
        self.enqueue_emits_profile = True
        self.last_batch = None

    def set_input_shape(self, name, shape):
        self.shape_calls += 1
        lo, _opt, hi = self.engine.profile
        if not all(a <= d <= b for d, a, b in zip(shape, lo, hi)):
            return False
        self.shapes[name] = tuple(shape)
        return True

    def report_to_profiler(self):
        if self.profiler is None or self.last_batch is None:
            return False
        for name, ms in self.layers:
            self.profiler.report_layer_time(name, ms * self.last_batch)
        return True

    def get_tensor_shape(self, name):
        if name == "y":
            return (self.shapes["x"][0], 2)
        return self.shapes[name]

    def set_tensor_address(self, name, ptr):
        self.addresses[name] = ptr

    def execute_async_v3(self, stream_handle):
        cuda = self.engine.cuda
        cuda.require_context()
        self.calls += 1
        n = self.shapes["x"][0]
        capture = cuda.capturing.get(stream_handle)
        if capture is None:
            self._compute(n)
            self.last_batch = n
        elif not self.capturable:
            return False
        else:
            capture.append(lambda: self._compute(n))  # the shape is baked into the graph
        return True

    def _compute(self, n):
        cuda = self.engine.cuda
        x = cuda.memory[self.addresses["x"]][: n * 3 * 4].view(np.float32).reshape(n, 3)
        y = x[:, :2] * 2 + x[:, 2:]
        cuda.memory[self.addresses["y"]][: y.nbytes] = y.astype(np.float32).view(np.uint8).reshape(-1)
