"""Stand-ins for `tensorrt` and `pycuda.driver` with the same names, for CPU tests of the
bookkeeping around them. They model what the code relies on (per-thread context stack,
device memory addressed by integer pointers, tensor addresses bound once) and nothing
more; names and signatures are checked against the real bindings in test_bindings_api.py."""
from __future__ import annotations

import enum
import itertools
import json
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
    def __init__(self, engine: FakeEngine):
        self.engine = engine
        self.addresses: dict[str, int] = {}
        self.shapes: dict[str, tuple[int, ...]] = {}
        self.calls = 0

    def set_input_shape(self, name, shape):
        lo, _opt, hi = self.engine.profile
        if not all(a <= d <= b for d, a, b in zip(shape, lo, hi)):
            return False
        self.shapes[name] = tuple(shape)
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
        n = self.shapes["x"][0]
        x = cuda.memory[self.addresses["x"]][: n * 3 * 4].view(np.float32).reshape(n, 3)
        y = x[:, :2] * 2 + x[:, 2:]
        cuda.memory[self.addresses["y"]][: y.nbytes] = y.astype(np.float32).view(np.uint8).reshape(-1)
        self.calls += 1
        return True


def make_fake_trt(version: str, cuda: FakeCuda | None = None) -> types.SimpleNamespace:
    """A `tensorrt` module object: ILogger, IInt8EntropyCalibrator2, TensorIOMode,
    nptype and a Runtime that deserializes to FakeEngine."""
    trt = types.SimpleNamespace(__version__=version, ILogger=ILogger, TensorIOMode=TensorIOMode,
                                DataType=DataType, nptype=nptype)
    trt.IInt8EntropyCalibrator2 = IInt8EntropyCalibrator2
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


# ---------------------------------------------------------------- engine inspector, DLA, builder
# For build_engine end to end on the CPU: a builder that "builds" a FakeEngine whose inspector
# answers with recorded JSON (tests/trt/inspector_fixtures.py), and the DLA settings it was given.
class ProfilingVerbosity(enum.Enum):
    LAYER_NAMES_ONLY = 0
    NONE = 1
    DETAILED = 2


class LayerInformationFormat(enum.Enum):
    ONELINE = 0
    JSON = 1


class DeviceType(enum.Enum):
    GPU = 0
    DLA = 1


class LayerType(enum.Enum):
    CONVOLUTION = 0
    ACTIVATION = 1
    POOLING = 2


class FakeInspector:
    def __init__(self, engine):
        self.engine = engine
        self.execution_context = None

    def get_engine_information(self, fmt):
        assert fmt is LayerInformationFormat.JSON
        info = self.engine.information
        return info if isinstance(info, str) else json.dumps(info)


class FakeInspectableEngine(FakeEngine):
    """FakeEngine plus `create_engine_inspector`; `information` is what the inspector returns."""

    def __init__(self, cuda, information):
        super().__init__(cuda)
        self.information = information
        self.inspectors: list[FakeInspector] = []

    def create_engine_inspector(self):
        self.inspectors.append(FakeInspector(self))
        return self.inspectors[-1]


class FakeNetworkLayer:
    def __init__(self, name, layer_type, metadata=""):
        self.name, self.type, self.metadata = name, layer_type, metadata
        self.num_outputs = 1

    def get_output(self, i):
        return types.SimpleNamespace(name=f"{self.name}:0")


class FakeBuilderConfig:
    def __init__(self):
        self.flags: set = set()
        self.profiles: list = []
        self.default_device_type = DeviceType.GPU
        self.DLA_core = -1
        self.profiling_verbosity = ProfilingVerbosity.LAYER_NAMES_ONLY
        self.progress_monitor = None
        self.hardware_compatibility_level = None
        self._timing = b""

    def set_memory_pool_limit(self, pool, nbytes):
        self.workspace = nbytes

    def add_optimization_profile(self, profile):
        self.profiles.append(profile)

    def set_flag(self, flag):
        self.flags.add(flag)

    def clear_flag(self, flag):
        self.flags.discard(flag)

    def create_timing_cache(self, data):
        return types.SimpleNamespace(serialize=lambda: bytes(data) or b"timing")

    def set_timing_cache(self, cache, ignore_mismatch):
        self._timing_cache = cache
        return True

    def get_timing_cache(self):
        return self._timing_cache


class FakeProfile:
    def __init__(self):
        self.shapes = {}

    def set_shape(self, name, lo, opt, hi):
        self.shapes[name] = (tuple(lo), tuple(opt), tuple(hi))


def with_driver(cuda: FakeCuda, driver_version: int = 12060, total_memory: int = 32 << 30) -> FakeCuda:
    """FakeCuda plus what `trtdeploy doctor` asks of the driver: its version and each GPU's memory."""
    cuda.get_driver_version = lambda: driver_version
    cuda.Device.total_memory = lambda self: total_memory
    return cuda


def make_fake_builder_trt(version: str, cuda: FakeCuda, information, dla_cores: int = 0,
                          network_layers=()) -> types.SimpleNamespace:
    """make_fake_trt plus a Builder/OnnxParser/builder config that record what build_engine
    asked for (`trt.built`: the config and network of the last build), a Runtime that records
    `DLA_core` when it deserializes, and engines whose inspector returns `information`."""
    trt = make_fake_trt(version, cuda)
    trt.ProfilingVerbosity, trt.LayerInformationFormat = ProfilingVerbosity, LayerInformationFormat
    trt.DeviceType, trt.LayerType = DeviceType, LayerType
    trt.BuilderFlag = enum.Enum("BuilderFlag", "TF32 VERSION_COMPATIBLE GPU_FALLBACK INT8 FP16")
    trt.MemoryPoolType = enum.Enum("MemoryPoolType", "WORKSPACE")
    trt.NetworkDefinitionCreationFlag = enum.IntEnum("NetworkDefinitionCreationFlag", "STRONGLY_TYPED")
    trt.HardwareCompatibilityLevel = enum.Enum("HardwareCompatibilityLevel", "AMPERE_PLUS")
    trt.IProgressMonitor = type("IProgressMonitor", (), {"__init__": lambda self: None})
    trt.built = {}
    trt.runtime_dla_cores = []

    class Network:
        num_inputs = 1

        def __init__(self):
            self.layers = [FakeNetworkLayer(*spec) for spec in network_layers]
            self.num_layers = len(self.layers)

        def get_input(self, i):
            return types.SimpleNamespace(name="x")

        def get_layer(self, i):
            return self.layers[i]

    class Builder:
        num_DLA_cores = dla_cores

        def __init__(self, logger):
            self.logger = logger

        def create_network(self, flags):
            return Network()

        def create_builder_config(self):
            return FakeBuilderConfig()

        def create_optimization_profile(self):
            return FakeProfile()

        def build_serialized_network(self, network, config):
            trt.built.update(config=config, network=network)
            return b"fake serialized engine"

    class OnnxParser:
        num_errors = 0

        def __init__(self, network, logger):
            pass

        def parse_from_file(self, path):
            return True

    class Runtime(trt.Runtime):
        DLA_core = -1
        num_DLA_cores = dla_cores

        def deserialize_cuda_engine(self, data):
            trt.runtime_dla_cores.append(self.DLA_core)
            trt.deserialized.append(bytes(data))
            return FakeInspectableEngine(cuda, information)

    trt.Builder, trt.OnnxParser, trt.Runtime = Builder, OnnxParser, Runtime
    return trt
