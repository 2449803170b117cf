"""A stand-in `tensorrt` module for CPU tests: `make_fake_trt` puts together the run-time
objects of fake_engine.py, the builder of fake_builder.py and a Runtime that deserializes to
FakeEngine over the fake pycuda of fake_cuda.py."""
from __future__ import annotations

import re
import types

# Absolute imports: ../shared/gpu/runner_check.py imports this file as a top-level `fakes` module.
from tests.trt.fake_builder import (BuilderFlag, BuilderFlag11, DeviceType, FakeBuilder, FakeLayer, FakeOnnxParser,
                                    FakeParserError, HardwareCompatibilityLevel, IInt8EntropyCalibrator2,
                                    IProgressMonitor, LayerType, MemoryPoolType, NetworkDefinitionCreationFlag,
                                    ProfilingVerbosity)
from tests.trt.fake_cuda import FakeCuda
from tests.trt.fake_engine import (NAMES_ONLY_INFORMATION, DataType, ExecutionContextAllocationStrategy, FakeEngine,
                                   ILogger, IProfiler, LayerInformationFormat, Severity, TensorIOMode, nptype)


def make_fake_trt(version: str, cuda: FakeCuda | None = None, *, information=NAMES_ONLY_INFORMATION,
                  dla_cores: int = 0, network_layers=None, engine=FakeEngine) -> types.SimpleNamespace:
    """A `tensorrt` module object: ILogger, IInt8EntropyCalibrator2, IProgressMonitor, IProfiler, the
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

    A version 11.x module has TensorRT 11's names: no BuilderFlag.FP16/INT8, no calibrator.

    Builder and Runtime report `dla_cores` DLA cores; the Runtime records the `DLA_core` it
    deserializes on (`trt.runtime_dla_cores`); engines' inspectors answer `information`. A DLA
    build fails as TensorRT's DLA rules say (FakeBuilder._dla_refusal: a dynamic profile, a
    strongly typed network before 11.4.1, a weakly typed one without an FP16/INT8 flag).
    `network_layers` (FakeLayer), when given, is the parsed network instead of the ONNX file;
    `engine` is the FakeEngine class the Runtime deserializes to.
    """
    major = re.match(r"\d+", version)
    trt10 = major is None or int(major.group()) <= 10  # an unparsable version: refused before the names matter
    trt = types.SimpleNamespace(__version__=version, ILogger=ILogger, TensorIOMode=TensorIOMode,
                                DataType=DataType, nptype=nptype, LayerType=LayerType,
                                BuilderFlag=BuilderFlag if trt10 else BuilderFlag11,
                                NetworkDefinitionCreationFlag=NetworkDefinitionCreationFlag,
                                MemoryPoolType=MemoryPoolType, HardwareCompatibilityLevel=HardwareCompatibilityLevel,
                                IProgressMonitor=IProgressMonitor, ProfilingVerbosity=ProfilingVerbosity,
                                LayerInformationFormat=LayerInformationFormat, DeviceType=DeviceType,
                                ExecutionContextAllocationStrategy=ExecutionContextAllocationStrategy)
    if trt10:  # TensorRT 11 removed the calibrators
        trt.IInt8EntropyCalibrator2 = IInt8EntropyCalibrator2
    trt.IProfiler = IProfiler
    trt.deserialized: list[bytes] = []
    trt.information, trt.dla_cores = information, dla_cores
    trt.network_layers = None if network_layers is None else list(network_layers)
    trt.built_with = None  # (network, builder config) of the last build
    trt.runtime_dla_cores: list[int] = []
    trt.timing_key = f"TIMING:{version}".encode()
    trt.fail_build = False
    trt.parse_errors: list[FakeParserError] = []
    trt.load_back = True  # whether the Runtime deserializes the plan it is given
    trt.host_code_allowed: list[bool] = []  # Runtime.engine_host_code_allowed at each deserialize
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
            trt.host_code_allowed.append(self.engine_host_code_allowed)
            if not trt.load_back:
                self.logger.log(Severity.ERROR, "engine plan is corrupt")
                return None
            return engine(cuda, trt.information)

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
