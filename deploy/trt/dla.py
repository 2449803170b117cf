"""DLA builds for Jetson Orin: which TensorRT releases run them, and the builder settings.

The names (`Builder.num_DLA_cores`, `IBuilderConfig.default_device_type` / `DLA_core`,
`BuilderFlag.GPU_FALLBACK`, `Runtime.DLA_core`) exist in the 10.16 and 11.4 bindings alike, so
the refusal is by release, from NVIDIA's "Working with DLA" pages (TensorRT 11.4.1 docs):
TensorRT 10.7 was the last 10.x release with DLA (JetPack 6 ships 10.3); DLA was unavailable in
11.0 through 11.3; 11.4.0 has it on Windows on ARM only; 11.4.1 restores it on Jetson AGX Orin
under JetPack 7.2.2 or later. Whatever the release says, the builder's `num_DLA_cores` decides
on the device (0 on every GPU without a DLA, Jetson Thor included).

DLA runs FP16 and INT8 only; layers it cannot run fail the build unless `--gpu-fallback` lets
them run on the GPU (which `trtdeploy build` then lists from the engine inspector).

The rules a DLA build follows here, each from NVIDIA's sources:
- Static shapes. "DLA does not support dynamic dimensions, so the profile's min, max, and opt
  values must be equal for wildcard dimensions. The runtime dimensions must be the same as the
  dimensions used for building"; the largest DLA batch is 4096 (developer guide, "DLA Supported
  Layers and Restrictions", General Restrictions). A DLA build takes one batch size.
- Precision on TensorRT 10.x comes from builder flags on a weakly typed network: trtexec 10.3
  (`samples/common/sampleEngines.cpp`, `setupNetworkAndConfig`) sets `kFP16` for every DLA build
  without `--int8` and the user's `kINT8` with it, and the developer guide runs DLA as
  `trtexec --onnx=ResNet50.onnx --useDLACore=0 --fp16 --allowGPUFallback`: an FP32 ONNX with the
  flag. Strongly typed networks for DLA are new in 11.4.1 (its release notes: "DLA builds on
  NVIDIA Jetson AGX Orin use strongly typed networks"), where precision is the ONNX's tensor
  types and the flags no longer exist. So 10.x builds FP16 from model.onnx with kFP16, INT8 from
  the Q/DQ model.int8.onnx (or, --int8-mode implicit, model.onnx and the served cache) with kINT8
  and kFP16 (layers without an INT8 scale then run FP16 on the DLA rather than FP32 on the GPU);
  11.4.1+ builds model.fp16.onnx / model.int8.onnx strongly typed.
- A strongly typed network keeps the bundle's FP32 inputs and outputs, so its first and last
  layers (the ONNX's Casts, the Q of the input) take or give FP32, which the DLA cannot hold
  ("Strongly Typed Networks for DLA": add casts at DLA subgraph boundaries; DLA I/O formats are
  FP16 or INT8 only): those layers run only on the GPU, so such a build needs --gpu-fallback.
- No portability modes: hardware compatibility "is not supported on NVIDIA DRIVE OS or JetPack"
  (developer guide, "Hardware Compatibility"), and a version-compatible plan is "restricted to
  lean runtime operators" (`BuilderFlag::kVERSION_COMPATIBLE`, NvInfer.h), which carry no DLA
  loadables; both are refused with --dla-core.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from types import ModuleType
from typing import Any, Iterable

from ..errors import EngineError, UsageError
from .sidecar import Sidecar, bundle_of, rebuild_command
from .versions import TrtVersion, parse_version

LAST_10X_WITH_DLA = (10, 7)
FIRST_11X_WITH_DLA = (11, 4, 1)
MAX_DLA_BATCH = 4096


def dla_refusal(trt_version: str | TrtVersion) -> str | None:
    """Why this TensorRT release cannot build for the DLA on Jetson, or None when it can."""
    here = parse_version(trt_version)
    if (here.major, here.minor) <= LAST_10X_WITH_DLA or (here.major, here.minor, here.patch) >= FIRST_11X_WITH_DLA:
        return None
    return (f"--dla-core: TensorRT {here} has no DLA support on Jetson (TensorRT 10.7 was the last 10.x "
            "release with DLA; 11.x has it again from 11.4.1 under JetPack 7.2.2 on Jetson AGX Orin); build for "
            "the GPU without --dla-core, or use the TensorRT of JetPack 6 or of JetPack 7.2.2+")


def check_dla_options(core: int | None, gpu_fallback: bool, precision: str, batch: tuple[int, int, int] = (1, 1, 1),
                      version_compatible: bool = False, hardware_compat: str | None = None) -> None:
    """The DLA options of a build, checked before anything is loaded (so also where TensorRT is not)."""
    if core is None:
        if gpu_fallback:
            raise UsageError("--gpu-fallback applies to DLA builds: add --dla-core N")
        return
    if isinstance(core, bool) or not isinstance(core, int) or core < 0:
        raise UsageError(f"--dla-core {core!r}: give the DLA core number (0 or 1 on Jetson AGX Orin)")
    if precision == "fp32":
        raise UsageError("--dla-core: the DLA runs FP16 and INT8 only; build --precision fp16 or int8")
    lo, opt, hi = batch
    if not lo == opt == hi:
        raise UsageError(f"--batch {lo} {opt} {hi} with --dla-core: the DLA has no dynamic shapes (its profile's min, "
                         f"opt and max must be equal); give one batch size, e.g. --batch {opt}")
    if opt > MAX_DLA_BATCH:
        raise UsageError(f"--batch {opt} with --dla-core: the DLA runs batches of at most {MAX_DLA_BATCH}")
    for flag, given in (("--version-compatible", version_compatible), ("--hardware-compat", hardware_compat)):
        if given:
            raise UsageError(f"{flag} with --dla-core: a DLA engine runs on the Jetson that built it (hardware "
                             "compatibility is not supported on JetPack; a version-compatible plan is restricted to "
                             f"the lean runtime's GPU operators); drop {flag}")


def dla_network(version: TrtVersion, precision: str, mode: str) -> tuple[str, bool, tuple[str, ...]]:
    """(the ONNX to build from, strongly typed, builder precision flags) of a DLA build on
    `version`, which `dla_refusal` accepted: weak typing with flags on 10.x, the ONNX's own
    types from 11.4.1 (see the module doc)."""
    if version.major >= 11:
        return precision, True, ()
    if mode == "implicit" or precision == "fp16":
        onnx = "fp32"
    else:
        onnx = "int8"
    return onnx, False, ("FP16", "INT8") if precision == "int8" else ("FP16",)


def check_dla_io(strongly_typed: bool, gpu_fallback: bool, io_dtypes: Iterable[str]) -> None:
    """Refuse a strongly typed DLA build without --gpu-fallback of a model with FP32 I/O: its
    FP32 boundary layers run only on the GPU (see the module doc)."""
    if strongly_typed and not gpu_fallback and "float32" in set(io_dtypes):
        raise UsageError("--dla-core without --gpu-fallback: this TensorRT builds the DLA engine strongly typed, and "
                         "the model's FP32 inputs and outputs make its first and last layers (the ONNX's Casts to "
                         "and from FP16, the Q of the input) FP32 layers that run only on the GPU; add --gpu-fallback")


def check_dla_core(core: int, num_cores: int) -> None:
    """Refuse a DLA core this device does not have (`builder.num_DLA_cores` of them)."""
    if num_cores <= 0:
        raise UsageError(f"--dla-core {core}: this device has no DLA (TensorRT reports 0 DLA cores; DLA exists on "
                         "Jetson AGX Orin and Orin NX); build for the GPU without --dla-core")
    if not 0 <= core < num_cores:
        raise UsageError(f"--dla-core {core}: this device has {num_cores} DLA core{'s' if num_cores > 1 else ''} "
                         f"(0..{num_cores - 1})")


def configure_dla(trt: ModuleType, builder: Any, builder_config: Any, core: int, gpu_fallback: bool) -> None:
    """Make the DLA core the default device of every layer, after checking the device has it."""
    check_dla_core(core, int(builder.num_DLA_cores))
    builder_config.default_device_type = trt.DeviceType.DLA
    builder_config.DLA_core = core
    if gpu_fallback:
        builder_config.set_flag(trt.BuilderFlag.GPU_FALLBACK)


def check_engine_dla(sidecar: Sidecar, num_cores: int, plan: str | Path) -> None:
    """Refuse, before TensorRT sees it, a DLA engine whose core this device lacks."""
    if sidecar.dla_core is None or 0 <= sidecar.dla_core < num_cores:
        return
    has = f"has {num_cores} DLA core{'s' if num_cores != 1 else ''}" if num_cores else "has no DLA"
    for_gpu = rebuild_command(dataclasses.replace(sidecar, dla_core=None, gpu_fallback=False), bundle_of(plan))
    raise EngineError(f"{plan}: built for DLA core {sidecar.dla_core}, but this device {has}: rebuild it for the GPU "
                      f"with `{for_gpu}`" + (f", or with --dla-core 0..{num_cores - 1}" if num_cores else ""))
