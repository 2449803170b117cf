"""Build a TensorRT engine from a bundle: `build_engine(bundle, BuildConfig(...))`.

One path serves TensorRT 10 and 11: precision lives in the ONNX file (model.fp16.onnx,
the Q/DQ model.int8.onnx) and the network is strongly typed. TensorRT 10 users may
instead build INT8 "implicitly" from the FP32 ONNX with BuilderFlag.INT8 + FP16 and the
entropy calibrator, which serves the bundle's calibration/trt.cache (no GPU calibration
pass). TensorRT 11 removed that path; asking for it there is refused with the reason.
Every engine is built with detailed profiling verbosity and gets NAME.PRECISION.layers.json
beside it from TensorRT's engine inspector (inspection.py); `dla_core` builds for a Jetson
DLA core (dla.py: one batch size, and on TensorRT 10.x a weakly typed network with FP16/INT8
flags, as trtexec builds DLA engines). The sidecar's `builder` records the typing and flags.

The decisions (which ONNX, which flags, profile shapes, file names) are pure functions
tested without TensorRT; `build_engine` only carries them out.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Iterable, Mapping, Sequence

from ..bundle import ONNX_FILES, TRT_CACHE, Bundle, BundleUpdate, TensorInfo
from ..bundle.engines import layers_path
from ..errors import BundleError, CalibrationError, EngineError, UsageError
from ..fsutil import sha256_bytes, sha256_file
from .choices import (DEFAULT_BATCH, DEFAULT_DLA_BATCH, DEFAULT_WORKSPACE_MIB, HARDWARE_COMPAT_LEVELS, INT8_MODES,
                      PRECISIONS)
from .engine_files import engine_paths, replaced_engine_note, write_engine
from .dla import check_dla_io, check_dla_options, configure_dla, dla_network, dla_refusal
from .inspection import engine_information, layers_document, network_convolutions
from .logger import make_logger, make_progress_monitor
from .sidecar import Sidecar
from .timing_cache import load_timing_cache, save_timing_cache
from .versions import check_supported, import_tensorrt, supports_implicit_int8

log = logging.getLogger("trtdeploy.trt")


@dataclass(frozen=True)
class BuildConfig:
    """What to build. Validated on construction (UsageError with the fix)."""

    precision: str = "fp32"
    # (min, opt, max) of the batch dimension; one N means (N, N, N); None: DEFAULT_BATCH, or for a
    # DLA build (static shapes only) DEFAULT_DLA_BATCH.
    batch: tuple[int, int, int] | tuple[int] | int | None = None
    workspace_mib: int = DEFAULT_WORKSPACE_MIB
    timing_cache: Path | None = None
    int8_mode: str = "explicit"  # explicit: Q/DQ ONNX; implicit (TensorRT <= 10): flags + calibrator
    version_compatible: bool = False
    hardware_compat: str | None = None  # None | "ampere+"
    # TF32 rounds FP32 convolution inputs to 10-bit mantissas (TensorRT enables it by default on
    # Ampere and newer). Off unless asked, so an "fp32" engine is FP32 and meets the FP32 parity
    # threshold, as in Polygraphy; --tf32 turns it on (trtexec's default).
    tf32: bool = False
    calib_data: Path | None = None  # implicit INT8 only: calibrate live on this data instead of the cache
    out: Path | None = None  # the plan file; default BUNDLE/engines/NAME.PRECISION.plan
    calib_count: int = 512
    calib_batch: int = 8
    calib_seed: int = 0
    dla_core: int | None = None  # run on this DLA core (Jetson Orin); None: the GPU
    gpu_fallback: bool = False  # DLA build: layers the DLA cannot run go to the GPU instead of failing

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise UsageError(f"--precision {self.precision!r}: use one of {', '.join(PRECISIONS)}")
        if self.int8_mode not in INT8_MODES:
            raise UsageError(f"--int8-mode {self.int8_mode!r}: use one of {', '.join(INT8_MODES)}")
        if self.int8_mode == "implicit" and self.precision != "int8":
            raise UsageError(f"--int8-mode implicit applies to --precision int8, not {self.precision}")
        object.__setattr__(self, "batch", _batch_range(self.batch, self.dla_core is not None))
        if self.workspace_mib < 1:
            raise UsageError(f"--workspace {self.workspace_mib}: give the workspace limit in MiB (>= 1)")
        if self.hardware_compat is not None and self.hardware_compat not in HARDWARE_COMPAT_LEVELS:
            raise UsageError(
                f"--hardware-compat {self.hardware_compat!r}: use {', '.join(HARDWARE_COMPAT_LEVELS)}"
            )
        if self.calib_data is not None and self.mode != "implicit":
            raise UsageError(
                "--data applies to --precision int8 --int8-mode implicit; explicit INT8 takes its "
                "scales from model.int8.onnx (`trtdeploy calibrate BUNDLE --data DIR`)"
            )
        if self.calib_count < 1 or self.calib_batch < 1:
            raise UsageError("calibration count and batch size must be >= 1")
        if self.timing_cache is not None:
            object.__setattr__(self, "timing_cache", Path(self.timing_cache))
        if self.calib_data is not None:
            object.__setattr__(self, "calib_data", Path(self.calib_data))
        if self.out is not None:
            out = Path(self.out)
            if out.suffix != ".plan":
                raise UsageError(f"--out {out}: name the engine FILE.plan (its sidecar is FILE.json beside it)")
            object.__setattr__(self, "out", out)
        check_dla_options(self.dla_core, self.gpu_fallback, self.precision, self.batch, self.version_compatible,
                          self.hardware_compat)

    @property
    def mode(self) -> str:
        return "implicit" if self.precision == "int8" and self.int8_mode == "implicit" else "explicit"

    def options(self) -> dict[str, Any]:
        """What the sidecar records about how the engine was built."""
        d: dict[str, Any] = {"workspace_mib": self.workspace_mib, "tf32": self.tf32,
                             "timing_cache": str(self.timing_cache) if self.timing_cache else None}
        if self.mode == "implicit":
            d["calibration"] = ({"data": str(self.calib_data), "count": self.calib_count,
                                 "batch": self.calib_batch, "seed": self.calib_seed}
                                if self.calib_data else {"cache": TRT_CACHE})
        return d


def _batch_range(batch: Any, dla: bool) -> tuple[int, int, int]:
    """`--batch` as (min, opt, max): N alone is (N, N, N); nothing is the default range, or on
    the DLA the default batch size."""
    if batch is None:
        return (DEFAULT_DLA_BATCH,) * 3 if dla else DEFAULT_BATCH
    values = (batch,) if isinstance(batch, int) else tuple(batch)
    if len(values) not in (1, 3) or not all(isinstance(b, int) and not isinstance(b, bool) for b in values):
        raise UsageError(f"--batch takes one integer N or three integers MIN OPT MAX, got {batch!r}")
    lo, opt, hi = values * 3 if len(values) == 1 else values
    if not 1 <= lo <= opt <= hi:
        raise UsageError(f"--batch {lo} {opt} {hi}: need 1 <= MIN <= OPT <= MAX")
    return lo, opt, hi


@dataclass(frozen=True)
class NetworkPlan:
    """What to ask of TensorRT for one config on one TensorRT version."""

    onnx_precision: str  # key of bundle.onnx_path
    strongly_typed: bool  # STRONGLY_TYPED network: precision exactly as the ONNX says
    implicit_int8: bool  # IInt8EntropyCalibrator2 serving the cache (TensorRT <= 10)
    version_compatible: bool
    hardware_compat: str | None
    tf32: bool = False  # BuilderFlag.TF32 set (True) or cleared (False)
    dla_core: int | None = None
    gpu_fallback: bool = False
    # BuilderFlag names ("FP16", "INT8") of a weakly typed network (TensorRT <= 10 only): implicit
    # INT8, and DLA builds on 10.x
    precision_flags: tuple[str, ...] = ()


def plan_network(config: BuildConfig, trt_version: str) -> NetworkPlan:
    """Decide the ONNX file and builder settings, refusing what this TensorRT lacks."""
    version = check_supported(trt_version)  # every supported release has version/hardware compatibility
    implicit = config.mode == "implicit"
    if implicit and not supports_implicit_int8(version):
        raise UsageError(
            f"--int8-mode implicit needs TensorRT <= 10 (this is {version}): TensorRT 11 removed the INT8 "
            "calibrators and BuilderFlag.INT8; use --int8-mode explicit (the Q/DQ model.int8.onnx)"
        )
    if config.dla_core is not None:
        refusal = dla_refusal(version)
        if refusal:
            raise UsageError(refusal)
        onnx, strongly_typed, flags = dla_network(version, config.precision, config.mode)
    elif implicit:
        onnx, strongly_typed, flags = "fp32", False, ("FP16", "INT8")
    else:
        onnx, strongly_typed, flags = config.precision, True, ()
    return NetworkPlan(onnx_precision=onnx, strongly_typed=strongly_typed, implicit_int8=implicit,
                       version_compatible=config.version_compatible, hardware_compat=config.hardware_compat,
                       tf32=config.tf32, dla_core=config.dla_core, gpu_fallback=config.gpu_fallback,
                       precision_flags=flags)


def profile_shapes(inputs: Sequence[TensorInfo], batch: tuple[int, int, int]
                   ) -> dict[str, tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]]:
    """(min, opt, max) shapes for every input: the batch range on dimension 0, the
    manifest's static dimensions elsewhere."""
    if not inputs:
        raise BundleError("manifest lists no inputs; re-run `trtdeploy export`")
    shapes = {}
    for t in inputs:
        if not t.shape:
            raise BundleError(f"input {t.name!r} is a scalar in the manifest; expected a batch dimension")
        dynamic = [i for i, d in enumerate(t.shape) if d < 0]
        if any(i != 0 for i in dynamic):
            raise BundleError(
                f"input {t.name!r} has dynamic non-batch dimensions {list(t.shape)}; re-export with a fixed "
                "image size (only the batch may vary)"
            )
        rest = tuple(t.shape[1:])
        if not dynamic:  # static batch: the only profile is the exported shape
            if batch != (t.shape[0],) * 3:
                raise BundleError(
                    f"input {t.name!r} has a fixed batch of {t.shape[0]}; build with --batch "
                    f"{t.shape[0]} {t.shape[0]} {t.shape[0]} or re-export with a dynamic batch"
                )
        shapes[t.name] = tuple((b, *rest) for b in batch)  # type: ignore[assignment]
    return shapes  # type: ignore[return-value]


def format_parser_errors(parser_errors: Iterable[Any]) -> list[str]:
    """One line per ONNX parser error, with the node's index, name and operator."""
    lines = []
    for parser_error in parser_errors:
        where = []
        if parser_error.node() >= 0:
            where.append(f"node {parser_error.node()}")
        if parser_error.node_name():
            where.append(repr(parser_error.node_name()))
        if parser_error.node_operator():
            where.append(f"({parser_error.node_operator()})")
        lines.append(f"{' '.join(where) or 'model'}: {parser_error.desc()}")
    return lines


def network_input_names(network: Any) -> list[str]:
    names = []
    for i in range(network.num_inputs):
        network_input = network.get_input(i)
        names.append(network_input.name)
    return names


def network_activation_names(trt: ModuleType, network: Any) -> set[str]:
    """The float tensors of a parsed network but its constants (weights): the inputs and the
    other layers' outputs. TensorRT's own calibrator gives each of them a scale."""
    names = set()
    for i in range(network.num_inputs):
        network_input = network.get_input(i)
        if network_input.dtype == trt.DataType.FLOAT:
            names.add(network_input.name)
    for i in range(network.num_layers):
        layer = network.get_layer(i)
        if layer.type == trt.LayerType.CONSTANT:
            continue
        for j in range(layer.num_outputs):
            layer_output = layer.get_output(j)
            if layer_output.dtype == trt.DataType.FLOAT:
                names.add(layer_output.name)
    return names


def check_network_inputs(network: Any, inputs: Sequence[TensorInfo], onnx_path: Path) -> None:
    got = sorted(network_input_names(network))
    want = sorted(t.name for t in inputs)
    if got != want:
        raise BundleError(
            f"{onnx_path}: inputs {got} differ from the manifest's {want}; re-run `trtdeploy export`"
        )


def _calibration_batches(bundle: Bundle, config: BuildConfig) -> Iterable[Any]:
    """Preprocessed calibration batches for live implicit calibration."""
    from ..data.inputs import InputSet
    from ..data.preprocess import Preprocess

    (tensor,) = bundle.inputs  # the calibrator feeds one image input
    data = InputSet.from_path(config.calib_data, input=tensor, preprocess=Preprocess.from_json(bundle.preprocessing),
                              num=config.calib_count, seed=config.calib_seed)
    return data.batches(config.calib_batch, desc="calibration")


def build_engine(bundle: Bundle, config: BuildConfig) -> Path:
    """Build engines/NAME.PRECISION.plan (+ .json sidecar) and return the plan's path; the
    bundle is held for the build (its ONNX read, a live-calibrated cache recorded)."""
    with bundle.update("build") as up:
        return _build_engine(up, config)


def _build_engine(up: BundleUpdate, config: BuildConfig) -> Path:
    from .cuda import gpu_info, import_cuda, primary_context

    bundle = up.bundle
    plan_path, json_path = engine_paths(bundle, config.precision, config.out)  # before any work, TensorRT's import too
    trt = import_tensorrt()
    plan = plan_network(config, trt.__version__)
    onnx_path = bundle.onnx_path(plan.onnx_precision)  # checked against the manifest
    onnx_rel = ONNX_FILES[plan.onnx_precision]
    if plan.dla_core is not None:
        check_dla_io(plan.strongly_typed, plan.gpu_fallback, (t.dtype for t in (*bundle.inputs, *bundle.outputs)))
    shapes = profile_shapes(bundle.inputs, config.batch)
    note = replaced_engine_note(json_path, config.precision, config.mode)
    if note:
        log.warning("%s", note)
    cuda = import_cuda()
    gpu = gpu_info(cuda)
    log.info("building %s (%s, %s INT8) with TensorRT %s on %s (%s)", plan_path.name, onnx_path.name,
             config.mode if config.precision == "int8" else "no", trt.__version__, gpu.name,
             gpu.compute_capability)
    with primary_context(cuda):
        built = _build_in_context(trt, cuda, bundle, config, plan, onnx_path, shapes, plan_path.name)

    cache_path = bundle.path(TRT_CACHE)
    cache_sha = sha256_file(cache_path) if plan.implicit_int8 and cache_path.is_file() else None
    if plan.implicit_int8 and config.calib_data is not None:
        # TensorRT wrote a fresh cache for this very model: record it, so later builds
        # accept it instead of refusing it as stale.
        bundle.record_file(TRT_CACHE)
        up.commit()
    sidecar = Sidecar(
        plan=plan_path.name, plan_sha256=sha256_bytes(built.data), model=bundle.model_name, tensorrt=trt.__version__,
        gpu_name=gpu.name, compute_capability=gpu.compute_capability, precision=config.precision,
        mode=config.mode, version_compatible=plan.version_compatible, hardware_compat=plan.hardware_compat,
        batch=config.batch, io=built.io, onnx=onnx_rel, onnx_sha256=sha256_file(onnx_path),
        calibration_cache_sha256=cache_sha, build_seconds=round(built.seconds, 3), timing_cache=built.timing_stats,
        builder={**config.options(), "strongly_typed": plan.strongly_typed,
                 "precision_flags": list(plan.precision_flags)},
        dla_core=plan.dla_core, gpu_fallback=plan.gpu_fallback,
        layers=layers_path(plan_path).name if built.layers is not None else None,
    )
    write_engine(plan_path, built.data, built.layers, sidecar)
    log.info("wrote %s (%.1f MiB, built in %.0f s) and %s", plan_path, len(built.data) / 2**20, built.seconds,
             json_path.name)
    return plan_path


@dataclass(frozen=True)
class _Built:
    """What one TensorRT build made: the plan's bytes, its I/O as loaded back, how long it took,
    and the content of its layers file (None when the inspector gave nothing readable)."""

    data: bytes
    io: Any
    seconds: float
    timing_stats: dict[str, Any]
    layers: dict[str, Any] | None


def _build_in_context(trt: ModuleType, cuda: ModuleType, bundle: Bundle, config: BuildConfig, plan: NetworkPlan,
                      onnx_path: Path, shapes: Mapping[str, tuple[tuple[int, ...], ...]], plan_name: str) -> _Built:
    """Parse, configure, build, and load the plan back once (with the CUDA context current)."""
    logger = make_logger(trt)
    # The parser owns the network's weights: it stays referenced until the build returns.
    builder, network, parser = _parse(trt, logger, plan, onnx_path, bundle.inputs)
    convolutions = network_convolutions(trt, network)  # the inspection counts how many run in INT8
    builder_config = builder.create_builder_config()
    _configure(trt, builder, builder_config, config, plan, shapes)
    calibrator = None
    if plan.implicit_int8:
        from .calibrator import make_calibrator

        calibrator = _configure_implicit_int8(trt, cuda, builder, network, builder_config, bundle, config, shapes,
                                              make_calibrator)
    timing_cache, timing_stats = load_timing_cache(builder_config, config.timing_cache)
    monitor = make_progress_monitor(trt)  # referenced until the build returns
    builder_config.progress_monitor = monitor

    log.info("TensorRT is building %s (minutes for a large model)", plan_name)
    t0 = time.perf_counter()
    try:
        serialized = builder.build_serialized_network(network, builder_config)
    finally:
        if calibrator is not None:
            calibrator.close()
    seconds = time.perf_counter() - t0
    if calibrator is not None:
        calibrator.raise_pending()
    if serialized is None:
        causes = ("layers the DLA cannot run (--gpu-fallback lets them run on the GPU), a batch the DLA cannot "
                  "hold (--batch N)" if plan.dla_core is not None else
                  "a workspace too small (--workspace MiB), a batch range the GPU memory cannot hold (--batch)")
        raise EngineError(f"{onnx_path}: TensorRT {trt.__version__} could not build an engine "
                          f"({logger.last_errors()}); common causes: {causes}")
    data = bytes(memoryview(serialized))
    save_timing_cache(builder_config, config.timing_cache, timing_stats)
    io, layers = _load_back(trt, logger, data, plan, config, shapes, plan_name, convolutions)
    del timing_cache, parser
    return _Built(data=data, io=io, seconds=seconds, timing_stats=timing_stats, layers=layers)


def _load_back(trt: ModuleType, logger: Any, data: bytes, plan: NetworkPlan, config: BuildConfig,
               shapes: Mapping[str, tuple[tuple[int, ...], ...]], plan_name: str, convolutions: Sequence[str]
               ) -> tuple[Any, dict[str, Any] | None]:
    """Deserialize the new engine as the runtime will (same DLA core): its I/O for the sidecar
    and the content of its layers file."""
    from .runtime import describe_engine

    runtime = trt.Runtime(logger)
    if plan.version_compatible:
        runtime.engine_host_code_allowed = True
    if plan.dla_core is not None:
        runtime.DLA_core = plan.dla_core
    engine = runtime.deserialize_cuda_engine(data)
    if engine is None:
        raise EngineError(f"{plan_name}: TensorRT built an engine it cannot load back ({logger.last_errors()})")
    return describe_engine(trt, engine), _inspect(trt, engine, shapes, plan_name, config, convolutions,
                                                  plan.dla_core)


def _inspect(trt: ModuleType, engine: Any, shapes: Mapping[str, tuple[tuple[int, ...], ...]], plan_name: str,
             config: BuildConfig, convolutions: Sequence[str], dla_core: int | None) -> dict[str, Any] | None:
    """The content of the layers file, or None (with a warning) when TensorRT's inspector gives
    nothing readable: the engine itself is fine then, only its layer information is missing."""
    try:
        info = engine_information(trt, engine, {name: opt for name, (_lo, opt, _hi) in shapes.items()})
        return layers_document(info, plan=plan_name, tensorrt=trt.__version__, precision=config.precision,
                               mode=config.mode, convolutions=convolutions, dla_core=dla_core)
    except EngineError as e:
        log.warning("%s: no layer information: %s", plan_name, e)
        return None


def _parse(trt: ModuleType, logger: Any, plan: NetworkPlan, onnx_path: Path,
           inputs: Sequence[TensorInfo]) -> tuple[Any, Any, Any]:
    """A builder, and the network parsed from `onnx_path` (strongly typed unless implicit INT8)."""
    try:
        builder = trt.Builder(logger)
    except TypeError as e:  # "factory function returned nullptr": no usable GPU for TensorRT
        raise EngineError(f"TensorRT cannot create a builder ({e}); check the GPU with `nvidia-smi`") from None
    flags = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED) if plan.strongly_typed else 0
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        lines = format_parser_errors(parser.get_error(i) for i in range(parser.num_errors))
        raise EngineError(f"{onnx_path}: TensorRT {trt.__version__} cannot parse it:\n  " + "\n  ".join(lines))
    check_network_inputs(network, inputs, onnx_path)
    return builder, network, parser


def _configure(trt: ModuleType, builder: Any, builder_config: Any, config: BuildConfig, plan: NetworkPlan,
               shapes: Mapping[str, tuple[tuple[int, ...], ...]]) -> None:
    """Workspace, the optimization profile, TF32, the compatibility settings, detailed profiling
    verbosity (for the engine inspector) and the DLA core."""
    builder_config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, config.workspace_mib << 20)
    profile = builder.create_optimization_profile()
    for name, (lo, opt, hi) in shapes.items():
        profile.set_shape(name, lo, opt, hi)
    builder_config.add_optimization_profile(profile)
    if plan.tf32:
        builder_config.set_flag(trt.BuilderFlag.TF32)
    else:
        builder_config.clear_flag(trt.BuilderFlag.TF32)
    if plan.version_compatible:
        builder_config.set_flag(trt.BuilderFlag.VERSION_COMPATIBLE)
    if plan.hardware_compat == "ampere+":
        builder_config.hardware_compatibility_level = trt.HardwareCompatibilityLevel.AMPERE_PLUS
    builder_config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED
    if plan.precision_flags:
        _set_precision_flags(trt, builder_config, plan.precision_flags)
    if plan.dla_core is not None:
        configure_dla(trt, builder, builder_config, plan.dla_core, plan.gpu_fallback)


def _set_precision_flags(trt: ModuleType, builder_config: Any, flags: Sequence[str]) -> None:
    """TensorRT <= 10 only (11 removed the flags): the precisions a weakly typed network may use."""
    if "FP16" in flags:
        builder_config.set_flag(trt.BuilderFlag.FP16)
    if "INT8" in flags:
        builder_config.set_flag(trt.BuilderFlag.INT8)


def _configure_implicit_int8(trt: ModuleType, cuda: ModuleType, builder: Any, network: Any, builder_config: Any,
                             bundle: Bundle, config: BuildConfig,
                             shapes: Mapping[str, tuple[tuple[int, ...], ...]], make_calibrator: Any) -> Any:
    """TensorRT <= 10 only: the entropy calibrator (the INT8 + FP16 flags are the plan's
    precision_flags), and a calibration profile fixed at the calibration batch (dynamic shapes
    need one)."""
    cache_path = bundle.path(TRT_CACHE)
    if config.calib_data is not None:
        calibrator = make_calibrator(trt, cache_path, batches=_calibration_batches(bundle, config),
                                     batch_size=config.calib_batch, cuda=cuda)
    else:
        if not cache_path.is_file():
            raise CalibrationError(
                f"{cache_path}: missing; make it with `trtdeploy calibrate {bundle.root} --data DIR`, "
                "or calibrate live with --data DIR"
            )
        calibrator = make_calibrator(trt, cache_path, batch_size=config.calib_batch,
                                     expected_sha256=bundle.file_hash(TRT_CACHE),
                                     known_tensors=network_activation_names(trt, network))
    builder_config.int8_calibrator = calibrator
    calibration_profile = builder.create_optimization_profile()
    for name, (lo, _opt, _hi) in shapes.items():
        fixed = (config.calib_batch, *lo[1:])
        calibration_profile.set_shape(name, fixed, fixed, fixed)
    builder_config.set_calibration_profile(calibration_profile)
    return calibrator
