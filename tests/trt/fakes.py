"""A stand-in for `tensorrt` with the same names, for CPU tests of the bookkeeping around it:
the runtime (engines bound to fake device memory, see fake_cuda.py) and the builder (an ONNX
parser, builder config, calibration and timing caches). They model what the code relies on and
nothing more; names and signatures are checked against the real bindings in
test_bindings_api.py."""
from __future__ import annotations

import enum
import types

import numpy as np

from .fake_cuda import FakeCuda


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


class LayerType(enum.Enum):
    CONVOLUTION = 0
    CONSTANT = 1
    ELEMENTWISE = 2
    OTHER = 3


class BuilderFlag(enum.Enum):
    FP16 = 0
    INT8 = 1
    TF32 = 2
    VERSION_COMPATIBLE = 3


class NetworkDefinitionCreationFlag(enum.IntEnum):
    STRONGLY_TYPED = 5


class MemoryPoolType(enum.Enum):
    WORKSPACE = 0


class HardwareCompatibilityLevel(enum.Enum):
    NONE = 0
    AMPERE_PLUS = 1


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


# ---------------------------------------------------------------- tensorrt: the builder
class FakeTensor:
    def __init__(self, name, dtype=DataType.FLOAT):
        self.name, self.dtype = name, dtype


class FakeLayer:
    def __init__(self, type, outputs):
        self.type, self._outputs = type, outputs
        self.num_outputs = len(outputs)

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


class FakeParserError:
    """`trt.ParserError`: what the parser says about one node."""

    def __init__(self, node: int, name: str, op: str, desc: str):
        self._node, self._name, self._op, self._desc = node, name, op, desc

    def node(self):
        return self._node

    def node_name(self):
        return self._name

    def node_operator(self):
        return self._op

    def desc(self):
        return self._desc


class FakeOnnxParser:
    """`trt.OnnxParser`; `trt` is the fake module it belongs to (its `parse_errors`, when any,
    make the parse fail with them)."""

    trt: types.SimpleNamespace
    num_errors = 0

    def __init__(self, network, logger):
        self.network = network

    def get_error(self, index):
        return self.trt.parse_errors[index]

    def parse_from_file(self, path):
        import onnx
        from onnx import TensorProto

        if self.trt.parse_errors:
            self.num_errors = len(self.trt.parse_errors)
            return False
        model = onnx.load(path)
        dtypes = {TensorProto.FLOAT: DataType.FLOAT, TensorProto.INT64: DataType.INT64}
        inits = {t.name for t in model.graph.initializer}
        self.network.inputs = [FakeTensor(i.name, dtypes[i.type.tensor_type.elem_type])
                               for i in model.graph.input if i.name not in inits]
        self.network.layers = [FakeLayer(LayerType.CONSTANT, [FakeTensor(t.name)]) for t in model.graph.initializer]
        kinds = {"Conv": LayerType.CONVOLUTION, "Add": LayerType.ELEMENTWISE}
        self.network.layers += [FakeLayer(kinds.get(n.op_type, LayerType.OTHER), [FakeTensor(o) for o in n.output])
                                for n in model.graph.node]
        return True


class FakeTimingCache:
    def __init__(self, data: bytes):
        self.data = data

    def serialize(self):
        return memoryview(self.data)


class FakeBuilderConfig:
    def __init__(self, trt):
        self._trt = trt
        self.flags: set = set()
        self.profiles: list = []
        self.calibration_profile = None
        self.int8_calibrator = None
        self.progress_monitor = None
        self.hardware_compatibility_level = HardwareCompatibilityLevel.NONE
        self.timing_cache: FakeTimingCache | None = None

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
    from deploy.trt.calibration_cache import trt_version_code

    return f"TRT-{trt_version_code(version)}-EntropyCalibration2"


class FakeBuilder:
    """`trt.Builder`; `trt` is the fake module it belongs to (see make_fake_trt)."""

    trt: types.SimpleNamespace

    def __init__(self, logger):
        self.logger = logger

    def create_network(self, flags):
        return FakeNetwork(flags)

    def create_builder_config(self):
        return FakeBuilderConfig(self.trt)

    def create_optimization_profile(self):
        return FakeProfile()

    def build_serialized_network(self, network, config):
        self.trt.built_with = (network, config)
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


def make_fake_trt(version: str, cuda: FakeCuda | None = None) -> types.SimpleNamespace:
    """A `tensorrt` module object: ILogger, IInt8EntropyCalibrator2, IProgressMonitor, the
    enums, nptype, a Builder and a Runtime that deserializes to FakeEngine.

    The builder does what build_engine relies on: it parses the ONNX into a FakeNetwork,
    returns plan bytes (None, with an error in the log, when `trt.fail_build` is set), keeps a
    timing cache keyed by its version (`trt.timing_key`), and for implicit INT8 reads the
    calibrator's cache as TensorRT does: only under a header naming its own version and
    EntropyCalibration2 (and only while `trt.accept_cache`); otherwise it asks `get_batch`
    for data and fails with no scaling factors when none comes. `trt.scales` keeps the
    scales it accepted, `trt.batches_asked` the get_batch calls, `trt.built_with` the network
    and builder config of the last build. Set `trt.parse_errors` to make the parse fail, and
    `trt.load_back = False` to make the Runtime refuse the plan.
    """
    trt = types.SimpleNamespace(__version__=version, ILogger=ILogger, TensorIOMode=TensorIOMode,
                                DataType=DataType, nptype=nptype, LayerType=LayerType, BuilderFlag=BuilderFlag,
                                NetworkDefinitionCreationFlag=NetworkDefinitionCreationFlag,
                                MemoryPoolType=MemoryPoolType, HardwareCompatibilityLevel=HardwareCompatibilityLevel,
                                IProgressMonitor=IProgressMonitor)
    trt.IInt8EntropyCalibrator2 = IInt8EntropyCalibrator2
    trt.deserialized: list[bytes] = []
    trt.timing_key = f"TIMING:{version}".encode()
    trt.fail_build = False
    trt.parse_errors: list[FakeParserError] = []
    trt.built_with = None  # (network, builder config) of the last build
    trt.load_back = True  # whether the Runtime deserializes the plan it is given
    trt.host_code_allowed: list[bool] = []  # Runtime.engine_host_code_allowed at each deserialize
    trt.accept_cache = True
    trt.scales: dict[str, float] = {}
    trt.batches_asked = 0

    class Runtime:
        engine_host_code_allowed = False

        def __init__(self, logger):
            self.logger = logger

        def deserialize_cuda_engine(self, data):
            trt.deserialized.append(bytes(data))
            trt.host_code_allowed.append(self.engine_host_code_allowed)
            if not trt.load_back:
                self.logger.log(Severity.ERROR, "engine plan is corrupt")
                return None
            return FakeEngine(cuda)

    trt.Builder = type("Builder", (FakeBuilder,), {"trt": trt})
    trt.OnnxParser = type("OnnxParser", (FakeOnnxParser,), {"trt": trt})
    trt.Runtime = Runtime
    return trt
