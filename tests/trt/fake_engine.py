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

from .fake_cuda import FakeCuda, FakeCudaError


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


class ExecutionContextAllocationStrategy(enum.Enum):
    STATIC = 0
    ON_PROFILE_CHANGE = 1
    USER_MANAGED = 2


class LayerInformationFormat(enum.Enum):
    ONELINE = 0
    JSON = 1


# What the inspector of an engine built by make_fake_trt's builder says when a test gives nothing
# else: names only, as for an engine built without ProfilingVerbosity.DETAILED.
NAMES_ONLY_INFORMATION = {"Layers": ["x + y"], "Bindings": ["x", "y"]}


_FORMAT_KEYS = ("Format/Datatype", "Format", "Datatype", "DataType")


class FakeInspector:
    """`EngineInspector`. TensorRT's rule (NvInferRuntime.h, IEngineInspector::setExecutionContext):
    "Setting the execution context and specifying all the input shapes allows the inspector to
    calculate concrete dimensions for any dynamic shapes and display their format information.
    Otherwise, values dependent on input shapes will be displayed as -1 and format information
    will not be shown." For an engine with dynamic inputs the fake answers so: without such a
    context, every tensor loses its format and its batch dimension reads -1."""

    def __init__(self, engine):
        self.engine = engine
        self.execution_context = None

    def get_engine_information(self, fmt):
        assert fmt is LayerInformationFormat.JSON
        info = self.engine.information
        if isinstance(info, str) or self._shapes_known():
            return info if isinstance(info, str) else json.dumps(info)
        return json.dumps(_without_shapes(info))

    def _shapes_known(self) -> bool:
        dynamic = [n for n, (mode, shape) in self.engine.io.items() if mode is TensorIOMode.INPUT and -1 in shape]
        context = self.execution_context
        return not dynamic or (context is not None and all(n in context.shapes for n in dynamic))


def _without_shapes(info):
    """`info` as the inspector prints it without a context: no formats, -1 for the batch."""
    layers = []
    for layer in info.get("Layers", []):
        if isinstance(layer, dict):
            layer = dict(layer)
            for key in ("Inputs", "Outputs"):
                layer[key] = [{**{k: v for k, v in t.items() if k not in _FORMAT_KEYS},
                               **({"Dimensions": [-1, *t["Dimensions"][1:]]} if t.get("Dimensions") else {})}
                              for t in layer.get(key) or ()]
        layers.append(layer)
    return {**info, "Layers": layers}


class FakeEngine:
    """An engine with input x [-1, 3] (profile batch 1..8) and output y [-1, 2] where
    y = x[:, :2] * 2 + x[:, 2:], computed from the device memory bound to each name."""

    io = {"x": (TensorIOMode.INPUT, (-1, 3)), "y": (TensorIOMode.OUTPUT, (-1, 2))}
    profile = ((1, 3), (4, 3), (8, 3))
    device_memory_size_v2 = 4096  # activation memory a context needs (bytes)

    def __init__(self, cuda: FakeCuda, information=NAMES_ONLY_INFORMATION):
        self.cuda = cuda
        self.num_io_tensors = len(self.io)
        self.information = information  # what its engine inspector returns (JSON text or a dict)
        self.inspectors: list[FakeInspector] = []
        self.contexts = 0  # execution contexts created

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

    def create_execution_context(self, strategy=ExecutionContextAllocationStrategy.STATIC):
        self.contexts += 1
        return FakeContext(self, strategy)

    def create_engine_inspector(self):
        self.inspectors.append(FakeInspector(self))
        return self.inspectors[-1]


class FakeContext:
    # Layer times TensorRT would report per call: (name, ms per image).
    layers = (("conv1 + relu", 0.5), ("pool", 0.01), ("fc", 0.1))

    def __init__(self, engine: FakeEngine, strategy=ExecutionContextAllocationStrategy.STATIC):
        self.engine = engine
        self.addresses: dict[str, int] = {}
        self.shapes: dict[str, tuple[int, ...]] = {}
        # A USER_MANAGED context runs only once set_device_memory gave it at least
        # device_memory_size_v2 bytes (NvInferRuntime.h, setDeviceMemoryV2).
        self.needs_memory = strategy is ExecutionContextAllocationStrategy.USER_MANAGED
        self.device_memory: int | None = None
        # Bumped by every change of shapes, addresses or memory: "the captured graph is specific to
        # the input shapes and the state of the execution context. Modifying the context with which
        # the graph was captured will result in undefined behavior" (developer guide, CUDA Graphs),
        # which a replay after any change turns into an error here.
        self.state = 0
        self.calls = 0
        self.shape_calls = 0
        self.capturable = True  # False: like an engine with data-dependent shapes
        self.profiler = None
        # setEnqueueEmitsProfile: "If set to true (default), enqueue is synchronous and does layer
        # timing profiling implicitly if there is a profiler attached."
        self.enqueue_emits_profile = True
        self.last_batch = None
        self.reported_by: list[str] = []  # who reported each call's layer times: "enqueue" | "report_to_profiler"

    def set_input_shape(self, name, shape):
        self.shape_calls += 1
        lo, _opt, hi = self.engine.profile
        if not all(a <= d <= b for d, a, b in zip(shape, lo, hi)):
            return False
        if self.shapes.get(name) != tuple(shape):
            self.state += 1
        self.shapes[name] = tuple(shape)
        return True

    def set_device_memory(self, memory, size):
        cuda = self.engine.cuda
        if size < self.engine.device_memory_size_v2 or memory not in cuda.memory or cuda.memory[memory].size < size:
            raise FakeCudaError(f"set_device_memory({memory:#x}, {size}): needs {self.engine.device_memory_size_v2} "
                                "bytes of device memory")
        self.device_memory = memory
        self.state += 1

    def report_to_profiler(self):
        """TensorRT's IExecutionContext::reportToProfiler: with enqueue_emits_profile true (the
        default) the enqueue already reported, "this function returns true and does nothing";
        with it false, it reports the previous enqueue's layer times; false without a profiler."""
        if self.profiler is None or self.last_batch is None:
            return False
        if not self.enqueue_emits_profile:
            self._report("report_to_profiler")
        return True

    def _report(self, by: str) -> None:
        self.reported_by.append(by)
        for name, ms in self.layers:
            self.profiler.report_layer_time(name, ms * self.last_batch)

    def get_tensor_shape(self, name):
        if name == "y":
            return (self.shapes["x"][0], 2)
        return self.shapes[name]

    def set_tensor_address(self, name, ptr):
        if self.addresses.get(name) != ptr:
            self.state += 1
        self.addresses[name] = ptr

    def execute_async_v3(self, stream_handle):
        cuda = self.engine.cuda
        cuda.require_context()
        self.calls += 1
        if cuda.runtime_error:  # TensorRT checks the runtime's last error after its launches
            return False
        if self.needs_memory and self.device_memory is None:
            return False
        n = self.shapes["x"][0]
        capture = cuda.capturing.get(stream_handle)
        if capture is None:
            self._compute(n)
            self.last_batch = n
            if self.profiler is not None and self.enqueue_emits_profile:
                self._report("enqueue")
        elif not self.capturable:
            cuda.invalidate_capture(stream_handle)
            return False
        else:
            state = self.state
            capture.append(lambda: self._replay(n, state))  # the shape is baked into the graph
        return True

    def _replay(self, n, state):
        if state != self.state:
            raise FakeCudaError("CUDA graph replayed after its execution context changed (shapes, addresses or "
                                "memory): undefined behaviour in TensorRT")
        self._compute(n)

    def _compute(self, n):
        cuda = self.engine.cuda
        x = cuda.memory[self.addresses["x"]][: n * 3 * 4].view(np.float32).reshape(n, 3)
        y = x[:, :2] * 2 + x[:, 2:]
        cuda.memory[self.addresses["y"]][: y.nbytes] = y.astype(np.float32).view(np.uint8).reshape(-1)
