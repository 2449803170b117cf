"""What `bench` and `profile` JSON record about the device: GPU, driver, clocks, TensorRT.

Read through pycuda (`Device` attributes, `get_driver_version`); a value the driver does
not give (clock rates on some drivers) is left out rather than guessed.
"""
from __future__ import annotations

from types import ModuleType
from typing import Any

from ..bench import machine_info
from .cuda import sm_tag


def driver_version(cuda: ModuleType) -> str:
    version = int(cuda.get_driver_version())  # 12080 -> "12.8", as nvidia-smi's "CUDA Version"
    return f"{version // 1000}.{version % 1000 // 10}"


def gpu_report(cuda: ModuleType, device: int = 0) -> dict[str, Any]:
    """Name, compute capability, memory, CUDA driver version and, where readable, clocks."""
    dev = cuda.Device(device)
    out: dict[str, Any] = {"index": device, "name": dev.name(), "compute_capability": sm_tag(dev.compute_capability()),
                           "memory_mib": int(dev.total_memory()) // (1 << 20),
                           "cuda_driver": driver_version(cuda)}
    try:
        out["clock_mhz"] = int(dev.get_attribute(cuda.device_attribute.CLOCK_RATE)) // 1000  # kHz
        out["memory_clock_mhz"] = int(dev.get_attribute(cuda.device_attribute.MEMORY_CLOCK_RATE)) // 1000
    except (AttributeError, cuda.Error):
        pass  # not every driver reports clocks (CUDA 13 deprecates these attributes)
    return out


def device_machine(cuda: ModuleType, trt: ModuleType, device: int = 0) -> dict[str, Any]:
    """deploy.bench.machine_info() plus the GPU and the TensorRT that ran."""
    return {**machine_info(), "gpu": gpu_report(cuda, device), "tensorrt": str(trt.__version__)}
