"""Where a result was made: the machine and the tool versions, recorded in every JSON we write
(the bundle's manifest, parity.json, the benchmarks).

Standard library and numpy only; tools are looked up by their installed metadata, never
imported (TensorFlow alone takes seconds to import).
"""
from __future__ import annotations

import os
import platform
import sys
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from . import __version__

# Tool name -> the distributions that provide it, first match wins (TensorFlow ships as
# tensorflow-cpu on CI and tensorflow-aarch64 on some ARM boards; TensorRT's wheels name the
# CUDA major version).
TOOLS = {
    "tensorflow": ("tensorflow", "tensorflow-cpu", "tensorflow-aarch64"),
    "onnxruntime": ("onnxruntime", "onnxruntime-gpu"),
    "onnx": ("onnx",),
    "tf2onnx": ("tf2onnx",),
    "onnx-graphsurgeon": ("onnx-graphsurgeon",),
    "tensorrt": ("tensorrt", "tensorrt-cu13", "tensorrt-cu12", "tensorrt-cu11"),
    "pycuda": ("pycuda",),
    "matplotlib": ("matplotlib",),
}


def _installed_version(tool: str, dists: tuple[str, ...]) -> str | None:
    for dist in dists:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    # JetPack installs TensorRT's bindings from a .deb without Python metadata.
    mod = sys.modules.get(tool)
    version = getattr(mod, "__version__", None) if mod is not None else None
    return str(version) if version else None


def tool_versions() -> dict[str, str]:
    """trtdeploy, Python and numpy, then each optional tool installed here (absent ones left out)."""
    out = {"trtdeploy": __version__, "python": platform.python_version(), "numpy": np.__version__}
    for tool, dists in TOOLS.items():
        version = _installed_version(tool, dists)
        if version is not None:
            out[tool] = version
    return out


def _cpu_model() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or platform.machine()
    # x86 says "model name"; ARM (Jetson) says "Model" or "Hardware", if anything.
    for key in ("model name", "Model", "Hardware"):
        for line in text.splitlines():
            if line.split(":")[0].strip() == key:
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def _usable_cpus() -> int | None:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count()


@dataclass(frozen=True)
class GpuDevice:
    """A GPU as the device side reads it through pycuda (deploy/trt/machine.py); a clock the
    driver does not report is None (left out of the JSON rather than guessed)."""

    index: int
    name: str
    compute_capability: str  # "sm_87"
    memory_mib: int
    cuda_driver: str  # "12.8", as nvidia-smi's "CUDA Version"
    clock_mhz: int | None = None
    memory_clock_mhz: int | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"index": self.index, "name": self.name, "compute_capability": self.compute_capability,
                               "memory_mib": self.memory_mib, "cuda_driver": self.cuda_driver}
        for key, value in (("clock_mhz", self.clock_mhz), ("memory_clock_mhz", self.memory_clock_mhz)):
            if value is not None:
                out[key] = value
        return out


@dataclass(frozen=True)
class MachineInfo:
    """The machine a result was made on; `cpu_usable` is what this process may use (a container
    or taskset often allows fewer than `cpu_count`). `gpu`: the GPU a device-side result
    (`trtdeploy bench`, `profile`) ran on; None elsewhere."""

    python: str
    numpy: str
    platform: str
    machine: str
    cpu: str
    cpu_count: int | None
    cpu_usable: int | None
    tools: dict[str, str] = field(default_factory=dict)
    gpu: GpuDevice | None = None

    def to_json(self) -> dict[str, Any]:
        out = {"python": self.python, "numpy": self.numpy, "platform": self.platform, "machine": self.machine,
               "cpu": self.cpu, "cpu_count": self.cpu_count, "cpu_usable": self.cpu_usable,
               "tools": dict(self.tools)}
        if self.gpu is not None:
            out["gpu"] = self.gpu.to_json()
        return out


def machine_info() -> MachineInfo:
    # Python and numpy are fields of their own here; `tools` holds the rest of `tool_versions()`.
    tools = {k: v for k, v in tool_versions().items() if k not in ("python", "numpy")}
    return MachineInfo(python=platform.python_version(), numpy=np.__version__, platform=platform.platform(),
                       machine=platform.machine(), cpu=_cpu_model(), cpu_count=os.cpu_count(),
                       cpu_usable=_usable_cpus(), tools=tools)
