"""Stand-ins for `tensorrt`, `pycuda.driver` and libcuda's graph functions with the same
names, for CPU tests of the bookkeeping around them. They model what the code relies on
(per-thread context stack, device memory addressed by integer pointers, tensor addresses
bound once, stream capture recording work instead of running it) and nothing more; names
and signatures are checked against the real bindings in test_bindings_api.py."""
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


class FakeContextBase:
    """pycuda's `Context` for a retained primary context; `_fake` is the FakeCuda it lives in."""

    _fake: "FakeCuda"

    def __init__(self, device):
        self.handle = 0xC0000 + device  # the primary context's CUcontext
        self.device = device
        self.valid = True
        self.thread = threading.get_ident()

    def push(self):
        self._fake.prepare_context_switch()
        self._fake.driver_stack().append(self.handle)
        self._fake.stack().append(self)

    @classmethod
    def pop(cls):
        fake = cls._fake
        fake.prepare_context_switch()
        if not fake.stack():
            raise FakeCudaError("context::pop: cannot pop non-current context")
        fake.stack().pop()
        current = fake.current_context()
        if current is not None:
            fake.driver_stack().append(current.handle)

    @classmethod
    def get_current(cls):
        return cls._fake.current_context()

    def detach(self):
        fake = self._fake
        if not self.valid:
            raise FakeCudaError("context::detach: cannot detach from invalid context")
        fake.detached += 1
        active = fake.current_context() is self
        if active:
            fake.release_primary(self.device)
        elif self.thread == threading.get_ident():
            fake.driver_stack().append(self.handle)  # cuCtxPushCurrent; the release never pops it
            fake.release_primary(self.device)
        self.valid = False
        if active:
            new_active = fake.current_context(except_=self)
            if new_active is not None:
                fake.driver_stack().append(new_active.handle)


class FakeCuda(types.SimpleNamespace):
    """`pycuda.driver` 2026.1 over a stand-in driver: memory is a dict pointer -> bytearray.

    Two per-thread stacks, as in reality: the driver's context stack (`driver_stack()`,
    handles; what CUDA calls run in) and pycuda's own (`stack()`, Context objects), kept in
    step by pycuda the way src/cpp/cuda.hpp does it:
    - `ctx.push()` (context_push): if pycuda's stack is not empty, pop the driver's top
      (prepare_context_switch), then push on both;
    - `Context.pop()`: the same driver pop, pop pycuda's stack, push pycuda's new top (if
      any) back on the driver's;
    - `ctx.detach()` of a primary context: if it is pycuda's current context, release it
      (cuDevicePrimaryCtxRelease, which never pops), drop it from pycuda's stack and push
      pycuda's next context on the driver's; else, on the thread that retained it, push it on
      the driver's stack (cuCtxPushCurrent) and release it, never popping; from another
      thread, nothing (the reference leaks). It is invalid afterwards either way.
    A primary context whose last reference is released is reset: CUDA calls fail in it.
    `driver_version` (12060 for CUDA 12.6) and each GPU's `total_memory` are what
    `get_driver_version()` and `Device.total_memory()` answer.
    """

    def __init__(self, name="Fake GPU", capability=(8, 7), devices=1, driver_version=12080, total_memory=8 << 30):
        super().__init__()
        self.driver_version = driver_version
        self.memory: dict[int, np.ndarray] = {}
        self.freed: list[int] = []
        self.host_freed = 0
        self.retained = 0
        self.detached = 0
        self.primary_refs: dict[int, int] = {}  # device -> the driver's reference count
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
                return total_memory

            def get_attribute(self, attribute):
                return {"CLOCK_RATE": 1_300_000, "MEMORY_CLOCK_RATE": 3_200_000}[attribute]  # kHz

            def retain_primary_context(self):
                fake.retained += 1
                fake.primary_refs[self.ordinal] = fake.primary_refs.get(self.ordinal, 0) + 1
                return Context(self.ordinal)

        class Context(FakeContextBase):
            _fake = fake

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

    def get_driver_version(self):
        return self.driver_version

    def stack(self) -> list:
        """pycuda's context stack on this thread."""
        if not hasattr(self._local, "stack"):
            self._local.stack = []
        return self._local.stack

    def driver_stack(self) -> list:
        """The driver's context stack on this thread (CUcontext handles); its top is current."""
        if not hasattr(self._local, "driver"):
            self._local.driver = []
        return self._local.driver

    def current_context(self, except_=None):
        """pycuda's `context::current_context`: its stack's top, dropping invalid entries."""
        stack = self.stack()
        while stack:
            if stack[-1] is not except_ and stack[-1].valid:
                return stack[-1]
            stack.pop()
        return None

    def prepare_context_switch(self) -> None:
        if self.stack():
            if not self.driver_stack():
                raise FakeCudaError("cuCtxPopCurrent: no current context")
            self.driver_stack().pop()

    def release_primary(self, device: int) -> None:
        if self.primary_refs.get(device, 0) < 1:
            raise FakeCudaError("cuDevicePrimaryCtxRelease: not retained")
        self.primary_refs[device] -= 1

    def require_context(self) -> None:
        driver = self.driver_stack()
        if not driver:
            raise FakeCudaError("invalid device context (no context current on this thread)")
        if self.primary_refs.get(driver[-1] - 0xC0000, 0) < 1:
            raise FakeCudaError("invalid device context (the current primary context was released)")

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
    INT32 = 3
    INT64 = 10


def nptype(dtype):
    return {DataType.FLOAT: np.float32, DataType.HALF: np.float16}[dtype]


class IInt8EntropyCalibrator2:
    def __init__(self):
        pass


class IProgressMonitor:
    def __init__(self):
        pass


class IProfiler:
    def __init__(self):
        pass


class LayerType(enum.Enum):
    CONVOLUTION = 0
    CONSTANT = 1
    ELEMENTWISE = 2
    ACTIVATION = 3
    POOLING = 4
    OTHER = 5


class BuilderFlag(enum.Enum):
    FP16 = 0
    INT8 = 1
    TF32 = 2
    VERSION_COMPATIBLE = 3
    GPU_FALLBACK = 4


class NetworkDefinitionCreationFlag(enum.IntEnum):
    STRONGLY_TYPED = 5


class MemoryPoolType(enum.Enum):
    WORKSPACE = 0


class HardwareCompatibilityLevel(enum.Enum):
    NONE = 0
    AMPERE_PLUS = 1


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


# ---------------------------------------------------------------- tensorrt: the builder
class FakeTensor:
    def __init__(self, name, dtype=DataType.FLOAT):
        self.name, self.dtype = name, dtype


class FakeLayer:
    """A network layer; `metadata` is what TensorRT 10's ONNX parser records ("[ONNX Layer: NODE]")."""

    def __init__(self, type, outputs, name="", metadata=""):
        self.type, self._outputs = type, outputs
        self.num_outputs = len(outputs)
        self.name, self.metadata = name, metadata

    @classmethod
    def named(cls, name, type, metadata=""):
        """A layer with one output, `NAME:0`."""
        return cls(type, [FakeTensor(f"{name}:0")], name, metadata)

    def get_output(self, index):
        return self._outputs[index]


class FakeNetwork:
    """What the ONNX parser makes of a model: one layer per ONNX node (outputs named as in the
    ONNX), one constant layer per initializer, the graph inputs as network inputs."""

    def __init__(self, flags):
        self.flags = flags
        self.inputs: list[FakeTensor] = []
        self.layers: list[FakeLayer] = []

    @property
    def num_inputs(self):
        return len(self.inputs)

    def get_input(self, index):
        return self.inputs[index]

    @property
    def num_layers(self):
        return len(self.layers)

    def get_layer(self, index):
        return self.layers[index]


class FakeOnnxParser:
    """Parses the ONNX file at `path`, or, where the test gave `trt.network_layers`, makes the
    network from those (inputs: the manifest's "x") without reading the file."""

    trt: types.SimpleNamespace
    num_errors = 0

    def __init__(self, network, logger):
        self.network = network

    def parse_from_file(self, path):
        if self.trt.network_layers is not None:
            self.network.inputs = [FakeTensor("x")]
            self.network.layers = list(self.trt.network_layers)
            return True
        import onnx
        from onnx import TensorProto

        model = onnx.load(path)
        dtypes = {TensorProto.FLOAT: DataType.FLOAT, TensorProto.INT64: DataType.INT64}
        inits = {t.name for t in model.graph.initializer}
        self.network.inputs = [FakeTensor(i.name, dtypes[i.type.tensor_type.elem_type])
                               for i in model.graph.input if i.name not in inits]
        self.network.layers = [FakeLayer(LayerType.CONSTANT, [FakeTensor(t.name)]) for t in model.graph.initializer]
        kinds = {"Conv": LayerType.CONVOLUTION, "Add": LayerType.ELEMENTWISE}
        self.network.layers += [FakeLayer(kinds.get(n.op_type, LayerType.OTHER), [FakeTensor(o) for o in n.output],
                                          n.name, f"[ONNX Layer: {n.name}]")
                                for n in model.graph.node]
        return True


class FakeTimingCache:
    def __init__(self, data: bytes):
        self.data = data

    def serialize(self):
        return memoryview(self.data)


class FakeBuilderConfig:
    """`IBuilderConfig`; `trt` (the fake module) is needed only to check a loaded timing cache."""

    def __init__(self, trt=None):
        self._trt = trt
        self.flags: set = set()
        self.profiles: list = []
        self.calibration_profile = None
        self.int8_calibrator = None
        self.progress_monitor = None
        self.hardware_compatibility_level = HardwareCompatibilityLevel.NONE
        self.timing_cache: FakeTimingCache | None = None
        self.default_device_type = DeviceType.GPU
        self.DLA_core = -1
        self.profiling_verbosity = ProfilingVerbosity.LAYER_NAMES_ONLY

    def set_memory_pool_limit(self, pool, size):
        self.workspace = size

    def set_flag(self, flag):
        self.flags.add(flag)

    def clear_flag(self, flag):
        self.flags.discard(flag)

    def add_optimization_profile(self, profile):
        self.profiles.append(profile)
        return len(self.profiles) - 1

    def set_calibration_profile(self, profile):
        self.calibration_profile = profile
        return True

    def create_timing_cache(self, blob):
        """As TensorRT: a new cache from b"", the cache from a serialized one, None (and an
        error in the log) for bytes that are not a timing cache."""
        blob = bytes(blob)
        if blob and not blob.startswith(b"TIMING:"):
            return None
        return FakeTimingCache(blob)

    def set_timing_cache(self, cache, ignore_mismatch):
        if not isinstance(cache, FakeTimingCache):  # pybind11 refuses None for an ITimingCache
            raise TypeError("set_timing_cache(): incompatible function arguments")
        if cache.data and cache.data != self._trt.timing_key and not ignore_mismatch:
            return False  # made by another TensorRT or GPU
        self.timing_cache = cache
        return True

    def get_timing_cache(self):
        return self.timing_cache


class FakeProfile:
    def __init__(self):
        self.shapes = {}

    def set_shape(self, name, lo, opt, hi):
        self.shapes[name] = (tuple(lo), tuple(opt), tuple(hi))


def _cache_header(version: str) -> str:
    from calibration.cache import trt_version_code

    return f"TRT-{trt_version_code(version)}-EntropyCalibration2"


class FakeBuilder:
    """`trt.Builder`; `trt` is the fake module it belongs to (see make_fake_trt)."""

    trt: types.SimpleNamespace

    def __init__(self, logger):
        self.logger = logger
        self.num_DLA_cores = self.trt.dla_cores

    def create_network(self, flags):
        return FakeNetwork(flags)

    def create_builder_config(self):
        return FakeBuilderConfig(self.trt)

    def create_optimization_profile(self):
        return FakeProfile()

    def build_serialized_network(self, network, config):
        self.trt.built.update(config=config, network=network)
        if self.trt.fail_build:
            self.logger.log(Severity.ERROR, "out of memory")
            return None
        if BuilderFlag.INT8 in config.flags and config.int8_calibrator is not None:
            if not self._calibrate(network, config.int8_calibrator):
                return None
        if config.timing_cache is not None:
            config.timing_cache.data = self.trt.timing_key
        return memoryview(b"fake plan")

    def _calibrate(self, network, calibrator) -> bool:
        import struct

        trt = self.trt
        cache = calibrator.read_calibration_cache()
        lines = bytes(cache).decode().splitlines() if cache is not None else []
        if lines and lines[0] == _cache_header(trt.__version__) and trt.accept_cache:
            for line in lines[1:]:
                name, _, value = line.rpartition(": ")
                trt.scales[name] = struct.unpack("!f", bytes.fromhex(value))[0]
            return True
        names = [t.name for t in network.inputs]
        served = 0
        while True:
            trt.batches_asked += 1
            if calibrator.get_batch(names) is None:
                break
            served += 1
        if not served:
            self.logger.log(Severity.ERROR, "Calibration failure occurred with no scaling factors detected.")
            return False
        calibrator.write_calibration_cache(f"{_cache_header(trt.__version__)}\n{names[0]}: 3c010a14\n".encode())
        return True


def make_fake_trt(version: str, cuda: FakeCuda | None = None, *, information=NAMES_ONLY_INFORMATION,
                  dla_cores: int = 0, network_layers=None) -> types.SimpleNamespace:
    """A `tensorrt` module object: ILogger, IInt8EntropyCalibrator2, IProgressMonitor, IProfiler, the
    enums, nptype, a Builder and a Runtime that deserializes to FakeEngine.

    The builder does what build_engine relies on: it parses the ONNX into a FakeNetwork,
    returns plan bytes (None, with an error in the log, when `trt.fail_build` is set), keeps a
    timing cache keyed by its version (`trt.timing_key`), and for implicit INT8 reads the
    calibrator's cache as TensorRT does: only under a header naming its own version and
    EntropyCalibration2 (and only while `trt.accept_cache`); otherwise it asks `get_batch`
    for data and fails with no scaling factors when none comes. `trt.scales` keeps the
    scales it accepted, `trt.batches_asked` the get_batch calls, `trt.built` the config and
    network of the last build.

    Builder and Runtime report `dla_cores` DLA cores; the Runtime records the `DLA_core` it
    deserializes on (`trt.runtime_dla_cores`); engines' inspectors answer `information`.
    `network_layers` (FakeLayer), when given, is the parsed network instead of the ONNX file.
    """
    trt = types.SimpleNamespace(__version__=version, ILogger=ILogger, TensorIOMode=TensorIOMode,
                                DataType=DataType, nptype=nptype, LayerType=LayerType, BuilderFlag=BuilderFlag,
                                NetworkDefinitionCreationFlag=NetworkDefinitionCreationFlag,
                                MemoryPoolType=MemoryPoolType, HardwareCompatibilityLevel=HardwareCompatibilityLevel,
                                IProgressMonitor=IProgressMonitor, ProfilingVerbosity=ProfilingVerbosity,
                                LayerInformationFormat=LayerInformationFormat, DeviceType=DeviceType)
    trt.IInt8EntropyCalibrator2 = IInt8EntropyCalibrator2
    trt.IProfiler = IProfiler
    trt.deserialized: list[bytes] = []
    trt.information, trt.dla_cores = information, dla_cores
    trt.network_layers = None if network_layers is None else list(network_layers)
    trt.built: dict = {}
    trt.runtime_dla_cores: list[int] = []
    trt.timing_key = f"TIMING:{version}".encode()
    trt.fail_build = False
    trt.accept_cache = True
    trt.scales: dict[str, float] = {}
    trt.batches_asked = 0

    class Runtime:
        engine_host_code_allowed = False
        DLA_core = -1
        num_DLA_cores = dla_cores

        def __init__(self, logger):
            self.logger = logger

        def deserialize_cuda_engine(self, data):
            trt.runtime_dla_cores.append(self.DLA_core)
            trt.deserialized.append(bytes(data))
            return FakeEngine(cuda, trt.information)

    trt.Builder = type("Builder", (FakeBuilder,), {"trt": trt})
    trt.OnnxParser = type("OnnxParser", (FakeOnnxParser,), {"trt": trt})
    trt.Runtime = Runtime
    return trt


def make_fake_builder_trt(version: str, cuda: FakeCuda, information, dla_cores: int = 0,
                          network_layers=()) -> types.SimpleNamespace:
    """make_fake_trt for a build that never reads its ONNX file: the network is
    `network_layers`, given as (name, LayerType, metadata) tuples."""
    return make_fake_trt(version, cuda, information=information, dla_cores=dla_cores,
                         network_layers=[FakeLayer.named(*spec) for spec in network_layers])
