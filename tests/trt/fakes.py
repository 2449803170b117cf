"""Stand-ins for `tensorrt`, `pycuda.driver` and libcuda's graph functions with the same
names, for CPU tests of the bookkeeping around them. They model what the code relies on
(per-thread context stack, device memory addressed by integer pointers, tensor addresses
bound once, stream capture recording work instead of running it) and nothing more; names
and signatures are checked against the real bindings in test_bindings_api.py."""
from __future__ import annotations

import enum
import itertools
import threading
import types

import numpy as np


# ---------------------------------------------------------------- pycuda.driver
class FakeCudaError(Exception):
    pass


class FakeCuda(types.SimpleNamespace):
    """`pycuda.driver`: memory is a dict pointer -> bytearray; contexts a per-thread stack."""

    def __init__(self, name="Fake GPU", capability=(8, 7), devices=1):
        super().__init__()
        self.memory: dict[int, np.ndarray] = {}
        self.freed: list[int] = []
        self.host_freed = 0
        self.retained = 0
        self.detached = 0
        self.capturing: dict[int, list] = {}  # stream handle -> work recorded by a capture
        self._next = itertools.count(0x1000, 0x1000)
        self._local = threading.local()
        fake = self

        class Device:
            def __init__(self, ordinal):
                self.ordinal = ordinal

            @staticmethod
            def count():
                return devices

            def name(self):
                return name

            def compute_capability(self):
                return capability

            def total_memory(self):
                return 8 << 30

            def get_attribute(self, attribute):
                return {"CLOCK_RATE": 1_300_000, "MEMORY_CLOCK_RATE": 3_200_000}[attribute]  # kHz

            def retain_primary_context(self):
                fake.retained += 1
                return Context()

        class Context:
            def push(self):
                fake.stack().append(self)

            @staticmethod
            def pop():
                fake.stack().pop()

            def detach(self):
                fake.detached += 1

        class Stream:
            handle = 0xCAFE

            def synchronize(self):
                fake.require_context()

        class Event:
            _clock = itertools.count()

            def record(self, stream=None):
                fake.require_context()
                self.t = next(Event._clock)
                return self

            def time_till(self, other):
                return float(other.t - self.t)

        self.Device, self.Context, self.Stream, self.Event = Device, Context, Stream, Event
        self.Error = FakeCudaError
        self.device_attribute = types.SimpleNamespace(CLOCK_RATE="CLOCK_RATE", MEMORY_CLOCK_RATE="MEMORY_CLOCK_RATE")

    @staticmethod
    def get_driver_version():
        return 12080

    def stack(self) -> list:
        if not hasattr(self._local, "stack"):
            self._local.stack = []
        return self._local.stack

    def require_context(self) -> None:
        if not self.stack():
            raise FakeCudaError("invalid device context (no context current on this thread)")

    def init(self):
        pass

    def mem_alloc(self, nbytes):
        self.require_context()
        fake = self
        ptr = next(self._next)
        self.memory[ptr] = np.zeros(nbytes, np.uint8)

        class DeviceAllocation:
            def __int__(self):
                return ptr

            def free(self):
                fake.freed.append(ptr)
                del fake.memory[ptr]

        return DeviceAllocation()

    def pagelocked_empty(self, shape, dtype):
        fake = self

        class PagelockedHostAllocation(bytearray):
            def free(self):
                fake.host_freed += 1

        n = int(np.prod(shape)) * np.dtype(dtype).itemsize
        return np.ndarray(shape, dtype, buffer=PagelockedHostAllocation(n))

    def memcpy_htod(self, dest, src):
        self.require_context()
        raw = np.ascontiguousarray(src).view(np.uint8).reshape(-1)
        self.memory[int(dest)][: raw.size] = raw

    def memcpy_htod_async(self, dest, src, stream=None):
        self.memcpy_htod(dest, src)

    def memcpy_dtoh_async(self, dest, src, stream=None):
        self.require_context()
        raw = dest.view(np.uint8).reshape(-1)
        raw[:] = self.memory[int(src)][: raw.size]


# ---------------------------------------------------------------- tensorrt
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


def nptype(dtype):
    return {DataType.FLOAT: np.float32, DataType.HALF: np.float16}[dtype]


class IInt8EntropyCalibrator2:
    def __init__(self):
        pass


class IProfiler:
    def __init__(self):
        pass


class FakeEngine:
    """An engine with input x [-1, 3] (profile batch 1..8) and output y [-1, 2] where
    y = x[:, :2] * 2 + x[:, 2:], computed from the device memory bound to each name."""

    io = {"x": (TensorIOMode.INPUT, (-1, 3)), "y": (TensorIOMode.OUTPUT, (-1, 2))}
    profile = ((1, 3), (4, 3), (8, 3))

    def __init__(self, cuda: FakeCuda):
        self.cuda = cuda
        self.num_io_tensors = len(self.io)

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


# ---------------------------------------------------------------- libcuda (graphs)
def _value(arg):
    """The integer inside a ctypes argument (c_void_p, byref(...)) or a plain int."""
    arg = getattr(arg, "_obj", arg)
    return int(getattr(arg, "value", arg) or 0)


class FakeLibcuda:
    """libcuda's graph calls over a FakeCuda: a capture records what execute_async_v3
    enqueues on the stream, a launch runs it. `fail` maps a function name to the CUresult
    it returns instead of working."""

    INVALIDATED = 901  # CUDA_ERROR_STREAM_CAPTURE_INVALIDATED

    def __init__(self, cuda: FakeCuda, fail: dict[str, int] | None = None):
        self.cuda = cuda
        self.fail = dict(fail or {})
        self.graphs: dict[int, list] = {}
        self.execs: dict[int, list] = {}
        self.launches = 0
        self.calls: list[str] = []
        self._ids = itertools.count(0x100)

    def _enter(self, name):
        self.calls.append(name)
        self.cuda.require_context()
        return self.fail.get(name, 0)

    def cuStreamBeginCapture_v2(self, stream, mode):  # noqa: N802 - the driver's names
        code = self._enter("cuStreamBeginCapture_v2")
        if not code:
            self.cuda.capturing[_value(stream)] = []
        return code

    def cuStreamEndCapture(self, stream, graph_out):  # noqa: N802
        code = self._enter("cuStreamEndCapture")
        work = self.cuda.capturing.pop(_value(stream))
        if code:
            return code
        graph = next(self._ids)
        self.graphs[graph] = work
        graph_out._obj.value = graph
        return 0

    def cuGraphInstantiateWithFlags(self, exec_out, graph, flags):  # noqa: N802
        code = self._enter("cuGraphInstantiateWithFlags")
        if code:
            return code
        exe = next(self._ids)
        self.execs[exe] = self.graphs[_value(graph)]
        exec_out._obj.value = exe
        return 0

    def cuGraphLaunch(self, exe, stream):  # noqa: N802
        code = self._enter("cuGraphLaunch")
        if code:
            return code
        for work in self.execs[_value(exe)]:
            work()
        self.launches += 1
        return 0

    def cuGraphExecDestroy(self, exe):  # noqa: N802
        self._enter("cuGraphExecDestroy")
        del self.execs[_value(exe)]
        return 0

    def cuGraphDestroy(self, graph):  # noqa: N802
        self._enter("cuGraphDestroy")
        del self.graphs[_value(graph)]
        return 0

    def cuGetErrorName(self, code, name_out):  # noqa: N802
        name_out._obj.value = {self.INVALIDATED: b"CUDA_ERROR_STREAM_CAPTURE_INVALIDATED"}.get(code, b"CUDA_ERROR_UNKNOWN")
        return 0


def make_fake_trt(version: str, cuda: FakeCuda | None = None) -> types.SimpleNamespace:
    """A `tensorrt` module object: ILogger, IInt8EntropyCalibrator2, IProfiler, TensorIOMode,
    nptype and a Runtime that deserializes to FakeEngine."""
    trt = types.SimpleNamespace(__version__=version, ILogger=ILogger, TensorIOMode=TensorIOMode,
                                DataType=DataType, nptype=nptype)
    trt.IInt8EntropyCalibrator2 = IInt8EntropyCalibrator2
    trt.IProfiler = IProfiler
    trt.deserialized: list[bytes] = []

    class Runtime:
        engine_host_code_allowed = False

        def __init__(self, logger):
            self.logger = logger

        def deserialize_cuda_engine(self, data):
            trt.deserialized.append(bytes(data))
            return FakeEngine(cuda)

    trt.Runtime = Runtime
    return trt
