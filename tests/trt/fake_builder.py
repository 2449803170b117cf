"""A stand-in for the build half of `tensorrt` with the same names: builder, builder config,
network, ONNX parser, timing cache, the TensorRT <= 10 calibration handshake, DLA settings.
They model what build_engine relies on and nothing more; names and signatures are checked
against the real bindings in test_bindings_api.py. make_fake_trt (fakes.py) assembles the
module."""
from __future__ import annotations

import enum
import types

from .fake_engine import DataType, Severity


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
    ACTIVATION = 3
    POOLING = 4
    OTHER = 5


class BuilderFlag(enum.Enum):
    FP16 = 0
    INT8 = 1
    TF32 = 2
    VERSION_COMPATIBLE = 3
    GPU_FALLBACK = 4


class BuilderFlag11(enum.Enum):
    """TensorRT 11's BuilderFlag: the precision flags are gone (migration guide; the real 11.4
    bindings lack FP16 and INT8, see test_bindings_api.py)."""

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


class DeviceType(enum.Enum):
    GPU = 0
    DLA = 1


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
    """`trt.OnnxParser`; `trt` is the fake module it belongs to. Its `parse_errors`, when any,
    make the parse fail with them; else it parses the ONNX file at `path`, or, where the test
    gave `trt.network_layers`, makes the network from those (inputs: the manifest's "x")
    without reading the file."""

    trt: types.SimpleNamespace
    num_errors = 0

    def __init__(self, network, logger):
        self.network = network

    def get_error(self, index):
        return self.trt.parse_errors[index]

    def parse_from_file(self, path):
        if self.trt.parse_errors:
            self.num_errors = len(self.trt.parse_errors)
            return False
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
    from deploy.trt.calibration_cache import trt_version_code

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
        self.trt.built_with = (network, config)
        if self.trt.fail_build:
            self.logger.log(Severity.ERROR, "out of memory")
            return None
        if config.default_device_type is DeviceType.DLA:
            refusal = self._dla_refusal(network, config)
            if refusal:
                self.logger.log(Severity.ERROR, refusal)
                return None
        if BuilderFlag.INT8 in config.flags and config.int8_calibrator is not None:
            if not self._calibrate(network, config.int8_calibrator):
                return None
        if config.timing_cache is not None:
            config.timing_cache.data = self.trt.timing_key
        return memoryview(b"fake plan")

    def _dla_refusal(self, network, config) -> str | None:
        """What TensorRT's DLA rejects, with the source of each rule (the messages are the fake's).
        Real TensorRT with GPU_FALLBACK would instead move such layers to the GPU, which leaves a
        "DLA" engine with nothing on the DLA: as wrong for these tests, so the fake fails it."""
        # Developer guide, "DLA Supported Layers and Restrictions", General Restrictions: "DLA does
        # not support dynamic dimensions, so the profile's min, max, and opt values must be equal".
        for profile in config.profiles:
            for name, (lo, opt, hi) in profile.shapes.items():
                if not lo == opt == hi:
                    return f"DLA: input {name} has a dynamic profile {lo}..{hi}; DLA needs min == opt == max"
        strongly_typed = bool(network.flags & (1 << int(NetworkDefinitionCreationFlag.STRONGLY_TYPED)))
        major = int(self.trt.__version__.split(".", 1)[0])
        # TensorRT 11.4.1 release notes: "Strongly typed networks for DLA" are new there; 10.x
        # drives the DLA with precision flags on a weakly typed network.
        if strongly_typed and major < 11:
            return "DLA: strongly typed networks are not supported on the DLA before TensorRT 11.4.1"
        # "DLA support is currently limited to networks running in FP16 and INT8 mode" (developer
        # guide, "Running on DLA during TensorRT Inference"); trtexec 10.3 sets kFP16 for every DLA
        # build without --int8 (samples/common/sampleEngines.cpp, setupNetworkAndConfig).
        if not strongly_typed and not ({"FP16", "INT8"} & {f.name for f in config.flags}):
            return "DLA: a weakly typed network needs BuilderFlag.FP16 or INT8 to run on the DLA"
        return None

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
