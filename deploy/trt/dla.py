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
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from types import ModuleType
from typing import Any

from ..errors import EngineError, UsageError
from .sidecar import Sidecar, bundle_of, rebuild_command
from .versions import TrtVersion, parse_version

LAST_10X_WITH_DLA = (10, 7)
FIRST_11X_WITH_DLA = (11, 4, 1)


def dla_refusal(trt_version: str | TrtVersion) -> str | None:
    """Why this TensorRT release cannot build for the DLA on Jetson, or None when it can."""
    here = parse_version(trt_version)
    if (here.major, here.minor) <= LAST_10X_WITH_DLA or (here.major, here.minor, here.patch) >= FIRST_11X_WITH_DLA:
        return None
    return (f"--dla-core: TensorRT {here} has no DLA support on Jetson (TensorRT 10.7 was the last 10.x "
            "release with DLA; 11.x has it again from 11.4.1 under JetPack 7.2.2 on Jetson AGX Orin); build for "
            "the GPU without --dla-core, or use the TensorRT of JetPack 6 or of JetPack 7.2.2+")


def check_dla_options(core: int | None, gpu_fallback: bool, precision: str) -> None:
    """The DLA options of a build, checked before anything is loaded."""
    if core is None:
        if gpu_fallback:
            raise UsageError("--gpu-fallback applies to DLA builds: add --dla-core N")
        return
    if isinstance(core, bool) or not isinstance(core, int) or core < 0:
        raise UsageError(f"--dla-core {core!r}: give the DLA core number (0 or 1 on Jetson AGX Orin)")
    if precision == "fp32":
        raise UsageError("--dla-core: the DLA runs FP16 and INT8 only; build --precision fp16 or int8")


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
